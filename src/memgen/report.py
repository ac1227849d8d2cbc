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


def show_table(path: str | os.PathLike, caption: str | None = None) -> pd.DataFrame:
    """Display a CSV table in the report under a caption naming its file."""
    from IPython.display import Markdown, display

    table = pd.read_csv(path)
    if caption:
        display(Markdown(f"**{caption}** (`{path}`)"))
    display(table.style.hide(axis="index").format(precision=3))
    return table


def show_figure(path: str | os.PathLike, caption: str | None = None) -> None:
    from IPython.display import Image, Markdown, display

    if caption:
        display(Markdown(f"**{caption}** (`{path}`)"))
    display(Image(filename=str(path)))


def render_notebooks(sections: list[tuple[str, dict]], notebook_out: str | os.PathLike,
                     html_out: str | os.PathLike) -> None:
    """Execute each section template with its parameters (papermill) and join them into one notebook
    and one self-contained HTML page; each experiment owns its own section template."""
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    joined = None
    for template, parameters in sections:
        parameters = {k: (list(map(str, v)) if isinstance(v, (list, tuple)) else str(v)) for k, v in parameters.items()}
        executed = papermill.execute_notebook(str(template), None, parameters=parameters, kernel_name="python3",
                                              cwd=os.getcwd(), progress_bar=False)
        if joined is None:
            joined = executed
        else:
            joined.cells.extend(executed.cells)
    with atomic_path(notebook_out) as tmp:
        nbformat.write(joined, tmp)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = exporter.from_notebook_node(joined)
    with atomic_path(html_out) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
