"""The study report: runtime table, comparison tables, and rendering the notebook to HTML."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from memgen.runtime import atomic_path

RESULTS = Path("results")


def runtime_table(benchmark_files: list[str]) -> pd.DataFrame:
    """One row per job: rule, wildcards, wall seconds, peak memory (from Snakemake benchmark TSVs)."""
    rows = []
    for path in benchmark_files:
        rel = Path(path).relative_to(RESULTS / "benchmarks") if Path(path).is_relative_to(RESULTS / "benchmarks") else Path(path)
        bench = pd.read_csv(path, sep="\t")
        rows.append({"rule": rel.parts[0].removesuffix(".tsv"), "job": "/".join(rel.parts[1:]).removesuffix(".tsv"),
                     "seconds": round(float(bench["s"].iloc[0]), 2),
                     "max_rss_mb": round(float(pd.to_numeric(bench["max_rss"], errors="coerce").iloc[0]), 1)})
    table = pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss_mb"])
    return table.sort_values(["rule", "job"]).reset_index(drop=True)


def runtime_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Jobs, total and slowest wall time per rule."""
    return (table.groupby("rule")["seconds"].agg(jobs="count", total_s="sum", max_s="max")
            .sort_values("total_s", ascending=False).round(2).reset_index())


def render_notebook(template: str | os.PathLike, notebook_out: str | os.PathLike, html_out: str | os.PathLike,
                    parameters: dict) -> None:
    """Execute ``template`` with papermill and convert the result into one self-contained HTML page."""
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    parameters = {k: (list(map(str, v)) if isinstance(v, (list, tuple)) else str(v)) for k, v in parameters.items()}
    with atomic_path(notebook_out) as tmp_nb:
        papermill.execute_notebook(str(template), str(tmp_nb), parameters=parameters, kernel_name="python3",
                                   cwd=os.getcwd(), progress_bar=False)
        exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
        html, _ = exporter.from_notebook_node(nbformat.read(tmp_nb, as_version=4))
        with atomic_path(html_out) as tmp_html:
            Path(tmp_html).write_text(html, encoding="utf-8")
