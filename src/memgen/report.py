"""The study report: runtime table, provenance, the table and figure style of every section, and rendering the
section notebooks into one self-contained HTML page (no script from a CDN; it opens offline)."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from memgen.runtime import atomic_path, resolve_precision
from memgen.scorecard import DOCUMENTS, anchor

RESULTS = Path("results")
REPORT_DIR = RESULTS / "report"      # where study.html lies: links to tables and figures are relative to it
MISSING = "–"                        # shown for a missing value (never "nan")
FOLD_ROWS = 20                       # longer tables are folded into a collapsible block
CONTENTS_PLACEHOLDER = '<div id="memgen-contents"></div>'
VERSION_PACKAGES = ("python", "torch", "snakemake", "faiss", "numpy", "pandas")


# ------------------------------------------------------------------------------------------------ runtimes
def runtime_table(benchmark_files: list[str]) -> pd.DataFrame:
    """One row per job: rule, wildcards, wall seconds, peak memory, and when the job started and finished (UTC,
    from the benchmark file's time: Snakemake writes it when the job ends)."""
    rows = []
    for path in benchmark_files:
        rel = Path(path).relative_to(RESULTS / "benchmarks") if Path(path).is_relative_to(RESULTS / "benchmarks") else Path(path)
        bench = pd.read_csv(path, sep="\t")
        seconds = float(bench["s"].iloc[0])
        finished = Path(path).stat().st_mtime
        rows.append({"rule": rel.parts[0].removesuffix(".tsv"), "job": "/".join(rel.parts[1:]).removesuffix(".tsv"),
                     "seconds": round(seconds, 2),
                     "max_rss_mb": round(float(pd.to_numeric(bench["max_rss"], errors="coerce").iloc[0]), 1),
                     "started": _utc(finished - seconds), "finished": _utc(finished)})
    table = pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss_mb", "started", "finished"])
    return table.sort_values(["rule", "job"]).reset_index(drop=True)


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def runtime_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Jobs, total and slowest wall time per rule."""
    return (table.groupby("rule")["seconds"].agg(jobs="count", total_s="sum", max_s="max")
            .sort_values("total_s", ascending=False).round(1).reset_index())


def end_to_end_seconds(table: pd.DataFrame) -> float:
    """Wall time from the first job's start to the last job's end (NaN without timed jobs)."""
    if not len(table) or "started" not in table:
        return float("nan")
    start, end = pd.to_datetime(table["started"]).min(), pd.to_datetime(table["finished"]).max()
    return float((end - start).total_seconds())


def duration(seconds: float) -> str:
    """``3 h 12 min``, ``4 min 05 s``, ``42 s``; the missing sign when not known."""
    if not np.isfinite(seconds):
        return MISSING
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"


# ------------------------------------------------------------------------------------------------ provenance
def package_version(name: str) -> str:
    if name == "python":
        return platform.python_version()
    from importlib import metadata

    for dist in metadata.packages_distributions().get(name, [name]):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


# What a run's results are made from; a file elsewhere in the checkout (a shell's log, notes) changes no result.
RESULT_SOURCES = ("Snakefile", "config.yaml", "pyproject.toml", "envs", "reports", "src", "workflow", "tests/smoke")


def git_state(root: str | os.PathLike) -> dict:
    """The commit of the checkout at ``root``, and the files among ``RESULT_SOURCES`` that differ from it
    (modified or untracked, not ignored): ``dirty`` is whether there are any."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return {"commit": "not a git checkout", "dirty": None, "changed": []}
    status = git("status", "--porcelain", "--untracked-files=all", "--", *RESULT_SOURCES)
    changed = [line[3:] for line in status.stdout.splitlines()]
    return {"commit": head.stdout.strip(), "dirty": bool(changed), "changed": changed}


def config_hash(config: dict) -> str:
    """A short hash of the whole configuration (key order does not matter)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def provenance(config: dict, runtimes: pd.DataFrame, root: str | os.PathLike, device: str) -> dict:
    """What produced this report: preset, commit, config (and its hash), package versions, device and
    precision, the date and the end-to-end wall time of the run's jobs."""
    return {"preset": config.get("preset", {"name": "unnamed", "description": "no preset key in the config"}),
            **git_state(root), "config_hash": config_hash(config), "config": config,
            "versions": {name: package_version(name) for name in VERSION_PACKAGES},
            "device": {"config": config.get("device", "auto"), "used": device},
            "precision": {"config": config.get("precision", "auto"),
                          "used": resolve_precision(config.get("precision", "auto"), device)},
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "wall_time_s": end_to_end_seconds(runtimes), "job_time_s": float(runtimes["seconds"].sum()),
            "jobs": int(len(runtimes))}


# ------------------------------------------------------------------------------------------------ tables
def tidy(table: pd.DataFrame) -> pd.DataFrame:
    """Without the index, without columns that are empty everywhere (NaN or blank text)."""
    table = table.reset_index(drop=True)
    blank = table.apply(lambda c: c.isna() | c.astype(str).str.strip().eq(""))
    return table.loc[:, ~blank.all()]


def is_integral(column: pd.Series) -> bool:
    values = pd.to_numeric(column, errors="coerce").dropna()
    return pd.api.types.is_numeric_dtype(column) and len(values) > 0 and bool(np.all(values == np.round(values)))


def format_value(value, decimals: int | None = None, thousands: int = 10_000) -> str:
    """A cell as text: the missing sign for NaN/None/blank, integers without decimals, floats at ``decimals``;
    numbers from ``thousands`` on with thousands separators (18,099, as the documents write it)."""
    if isinstance(value, (float, np.floating)) and np.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or (isinstance(value, str) and not value.strip()):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if not isinstance(value, (int, np.integer, float, np.floating)):
        return str(value)
    sep = "," if abs(value) >= thousands else ""
    if isinstance(value, (int, np.integer)) or (decimals is None and float(value).is_integer()):
        return f"{int(value):{sep}d}"
    return f"{value:{sep}.{2 if decimals is None else decimals}f}"


def format_cells(table: pd.DataFrame, decimals: int | dict = 2, row_decimals: pd.Series | None = None) -> pd.DataFrame:
    """The table as escaped HTML text, cell by cell: integral columns as integers (counts, and published
    numbers given without decimals), other numbers at ``decimals`` (one value, or per column, default 2), per
    row where ``row_decimals`` is given. A column named in a ``decimals`` dict keeps its decimals even where its
    values happen to be whole (a measured accuracy of 74.0%)."""
    out = pd.DataFrame(index=table.index, columns=table.columns, dtype=object)
    for col in table.columns:
        integral = is_integral(table[col]) and not (isinstance(decimals, dict) and col in decimals)
        numbers = pd.to_numeric(table[col], errors="coerce").abs()
        thousands = 1_000 if (numbers[np.isfinite(numbers)] >= 10_000).any() else 10_000   # one style per column
        for i, value in table[col].items():
            d = (int(row_decimals[i]) if row_decimals is not None and pd.notna(row_decimals[i]) else
                 decimals.get(col, 2) if isinstance(decimals, dict) else decimals)
            if integral and not (isinstance(value, float) and not np.isfinite(value)):
                value = int(value)
            out.loc[i, col] = html.escape(format_value(value, d, thousands))
    return out


def verdict_class(text: str) -> str:
    """CSS class of a verdict's colour (reproduced/holds: good; partly/inconclusive: mixed; not/does not hold:
    bad)."""
    text = text.lower()
    if text.startswith(("not reproduced", "does not hold")) or text == "no":
        return "verdict-bad"
    if text.startswith(("partly", "inconclusive")):
        return "verdict-mixed"
    if text.startswith(("reproduced", "holds", "yes")):
        return "verdict-good"
    return "verdict-none"


def html_table(cells: pd.DataFrame, classes: pd.DataFrame | None = None) -> str:
    """An HTML table of already formatted cells (no index), with optional CSS classes per cell."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cells.columns)
    body = []
    for i, row in cells.iterrows():
        tds = []
        for col, value in row.items():
            cls = [classes.loc[i, col]] if classes is not None and classes.loc[i, col] else []
            cls += ["num"] if re.fullmatch(r"[−\-+]?[\d.,]+%?|–", str(value)) else []
            tds.append(f'<td class="{" ".join(cls)}">{value}</td>' if cls else f"<td>{value}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f'<table class="memgen"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def cell_classes(table: pd.DataFrame, tolerance: float | None = None) -> pd.DataFrame:
    """Verdict colours: verdict-like columns by their words, ``difference*`` columns by |value| <= tolerance."""
    classes = pd.DataFrame("", index=table.index, columns=table.columns)
    for col in table.columns:
        if col in ("verdict", "holds"):
            classes[col] = [verdict_class(str(v)) for v in table[col]]
        elif str(col).startswith("difference") and tolerance is not None:
            values = pd.to_numeric(table[col], errors="coerce")
            classes[col] = ["" if not np.isfinite(v) else "verdict-good" if abs(v) <= tolerance + 1e-9
                            else "verdict-bad" for v in values]
    return classes


def with_verdict(table: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """A ``published``/``measured`` table with ``difference`` (measured - published) and ``verdict`` columns
    on the rows that have a published number."""
    from memgen.scorecard import single_verdict

    table = table.copy()
    table["difference"] = table["measured"] - table["published"]
    table["verdict"] = [single_verdict(d, tolerance) if pd.notna(p) else "" for d, p in
                        zip(table["difference"], table["published"])]
    return table


def link(path: str | os.PathLike, label: str) -> str:
    """A link from the report page to one of the run's files."""
    return f'<a class="memgen-file" href="{html.escape(os.path.relpath(path, REPORT_DIR))}">{label}</a>'


def table_block(table: pd.DataFrame, name: str, caption: str, source: str | os.PathLike | None = None,
                decimals: int | dict = 2, fold_rows: int = FOLD_ROWS, cells: pd.DataFrame | None = None,
                tolerance: float | None = None, row_decimals: pd.Series | None = None) -> str:
    """A named table with its caption and a link to its CSV, folded into <details> when longer than
    ``fold_rows``; difference columns coloured by ``tolerance``."""
    table = tidy(table)
    if row_decimals is not None:
        row_decimals = row_decimals.reset_index(drop=True)
    cells = format_cells(table, decimals, row_decimals) if cells is None else cells[table.columns]
    files = f" {link(source, 'CSV')}" if source else ""
    head = f'<p class="memgen-caption"><b>{html.escape(name)}.</b> {caption}{files}</p>'
    body = html_table(cells, cell_classes(table, tolerance))
    if len(table) > fold_rows:
        body = f"<details><summary>Show all {len(table)} rows</summary>{body}</details>"
    return f'<div class="memgen-table" id="{anchor(name)}">{head}{body}</div>'


def show_table(table: pd.DataFrame | str | os.PathLike, name: str, caption: str, *, source=None,
               decimals: int | dict = 2, fold_rows: int = FOLD_ROWS, tolerance: float | None = None,
               row_decimals: pd.Series | None = None) -> None:
    """Display a table (a DataFrame, or the path of a CSV, then linked) under its name and caption. Returns
    nothing, so a cell that ends with it shows the table once."""
    from IPython.display import HTML, display

    if not isinstance(table, pd.DataFrame):
        source = source or table
        table = pd.read_csv(table)
    display(HTML(table_block(table, name, caption, source, decimals, fold_rows, tolerance=tolerance,
                             row_decimals=row_decimals)))


def as_percent(table: pd.DataFrame, columns) -> pd.DataFrame:
    """The given accuracy columns (fractions) in percent (rounded off float noise, so 0.57 stays 57)."""
    table = table.copy()
    for col in columns:
        if col in table:
            table[col] = (100 * pd.to_numeric(table[col], errors="coerce")).round(6)
    return table


def show_figure(path: str | os.PathLike, name: str, caption: str, alt: str | None = None) -> None:
    """Display a PNG embedded in the page, with its name, a one-sentence caption, alt text and a link to the
    file."""
    from IPython.display import HTML, display

    png = Path(path).read_bytes()
    data = base64.b64encode(png).decode()
    display(HTML(
        f'<figure class="memgen-figure" id="{anchor(name)}"><img src="data:image/png;base64,{data}" '
        f'style="width: {display_width(png)}px" alt="{html.escape(alt or caption)}"/><figcaption>'
        f'<b>{html.escape(name)}.</b> {caption} {link(path, "PNG")}</figcaption></figure>'))


def display_width(png: bytes) -> int:
    """The CSS width of a figure at its drawn size (96 px per inch), whatever dpi it was saved at, so
    sharper figures are not larger on the page: the PNG's width over the resolution its pHYs chunk records
    (matplotlib writes it; a PNG without one shows at its pixel width)."""
    pixels = int.from_bytes(png[16:20], "big")              # the PNG header's width field
    at = png.find(b"pHYs")
    if at < 0 or png[at + 12] != 1:                          # no resolution, or not in pixels per metre
        return pixels
    dpi = int.from_bytes(png[at + 4:at + 8], "big") * 0.0254
    return round(pixels * 96 / dpi)


def show_markdown(text: str) -> None:
    from IPython.display import Markdown, display

    display(Markdown(text))


# ------------------------------------------------------------------------------------------------ header
def claims_block(claims: pd.DataFrame, source: str | os.PathLike | None = None) -> str:
    """The documents' claims (:mod:`memgen.claims`): each with its measured effect, 95% interval, decision and
    verdict (coloured: holds, inconclusive, does not hold) and the scale it was measured at; a claim on a named
    table or figure links to it."""
    shown = claims[["document", "source", "claim", "published", "measured", "lo", "hi", "decision", "verdict",
                    "scale"]].rename(columns={"measured": "effect", "lo": "95% low", "hi": "95% high"})
    decimals = pd.Series([3 if d == "LUT" else 2 for d in claims["document"]], index=claims.index)
    cells = format_cells(shown, row_decimals=decimals)
    cells["source"] = [f'<a href="#{anchor(f"{d} {s}")}">{c}</a>' if re.fullmatch(r"(Table|Figure) \d+", str(s))
                       else c for d, s, c in zip(claims["document"], claims["source"], cells["source"])]
    counts = claims["verdict"].value_counts()
    caption = ("What the documents claim, each tested on this run: the measured effect with its 95% interval "
               "(differences paired on one test set where two methods share it), the decision that settles it, and "
               "the verdict: <i>inconclusive</i> when the interval spans the decision's line. "
               + ", ".join(f"{counts.get(v, 0)} {v}" for v in ("holds", "does not hold", "inconclusive")) + ".")
    return table_block(shown, "Claims", caption, source, cells=cells, fold_rows=10 ** 6)


def scorecard_block(card: pd.DataFrame, source: str | os.PathLike | None = None) -> str:
    """The scorecard of levels across the documents: each item links to the table it comes from; difference in
    the row's unit (percentage points for accuracies), verdict coloured, and the scale each level was measured
    at."""
    shown = card[["document", "item", "published", "measured", "difference", "tolerance", "verdict",
                  "scale"]].copy()
    shown = shown.rename(columns={"tolerance": "tolerance (±)"})
    cells = format_cells(shown, row_decimals=card["decimals"])
    cells["item"] = [f'<a href="#{a}">{item}</a>' for a, item in zip(card["anchor"], cells["item"])]
    cells["difference"] = [c if c == MISSING or c.startswith("-") else f"+{c}" for c in cells["difference"]]
    cells["difference"] = cells["difference"].str.replace("-", "−", regex=False)
    caption = ("Levels: every published number this run can be compared with, across the three documents: "
               "accuracies in percent, a group of numbers as its mean (the verdict counts how many are within "
               "tolerance); each item links to its table. A level measured below the documents' scale is marked "
               "with the scale it was measured at, not judged as a failed reproduction.")
    return table_block(shown, "Scorecard", caption, source, cells=cells, fold_rows=10 ** 6)


def fmt(value, decimals: int = 2) -> str:
    """A number for prose: the missing sign for NaN, integers without decimals."""
    return format_value(value, decimals)


def preset_block(prov: dict) -> str:
    preset = prov["preset"]
    warn = " memgen-warning" if preset.get("scale") == "smoke" else ""
    return (f'<div class="memgen-preset{warn}"><b>Preset: {html.escape(str(preset.get("name")))}</b>'
            f'{" (" + html.escape(preset["scale"]) + " scale)" if preset.get("scale") else ""}. '
            f'{html.escape(str(preset.get("description", "")))}</div>')


def provenance_block(prov: dict) -> str:
    """Provenance as a compact key/value table, the whole config in a collapsible block."""
    import yaml

    commit = prov["commit"]
    if prov.get("dirty") is not None:
        changed = prov.get("changed", [])
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        commit = f"{commit[:12]} ({f'with uncommitted changes: {shown}' if prov['dirty'] else 'clean'})"
    device = prov["device"]
    precision = f"{prov['precision']['used']} (config: {prov['precision']['config']})"
    rows = [("commit", commit), ("config", f"hash {prov['config_hash']}"),
            ("versions", ", ".join(f"{k} {v}" for k, v in prov["versions"].items())),
            ("device", f"{device['used']} (config: {device['config']})"), ("precision", precision),
            ("rendered", prov["date"]),
            ("wall time", f"{duration(prov['wall_time_s'])} end to end (first job start to last job end); "
                          f"{duration(prov['job_time_s'])} summed over {prov['jobs']} jobs")]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    config = html.escape(yaml.safe_dump(prov["config"], sort_keys=False, default_flow_style=None, width=110))
    return (f'<div class="memgen-table" id="provenance"><p class="memgen-caption"><b>Provenance.</b></p>'
            f'<table class="memgen memgen-kv">{body}</table>'
            f"<details><summary>The configuration of this run</summary><pre>{config}</pre></details></div>")


def documents_block() -> str:
    items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in DOCUMENTS.items())
    return f'<ul class="memgen-documents">{items}</ul>'


def show_header(provenance_path, claims_path, scorecard_path) -> None:
    """The report's opening: preset, the documents' claims, the scorecard of levels, provenance and the place of
    the table of contents."""
    from IPython.display import HTML, display

    prov = json.loads(Path(provenance_path).read_text())
    display(HTML(preset_block(prov) + documents_block()))
    display(HTML(claims_block(pd.read_csv(claims_path), claims_path)))
    display(HTML(scorecard_block(pd.read_csv(scorecard_path), scorecard_path)))
    display(HTML(provenance_block(prov) + CONTENTS_PLACEHOLDER))


# ------------------------------------------------------------------------------------------------ page
STYLE = """
<style>
body.jp-Notebook main { max-width: 1250px; margin: 0 auto; }
.memgen-preset { padding: 8px 12px; border-left: 5px solid #4a7bb7; background: #eef3fa; margin: 8px 0; }
.memgen-preset.memgen-warning { border-left-color: #c77700; background: #fff4e0; }
.memgen-caption { margin: 14px 0 4px 0; }
.jp-RenderedHTMLCommon table.memgen { border-collapse: collapse; font-size: 13px; margin: 4px 0 10px 0;
  table-layout: auto; }
.jp-RenderedHTMLCommon table.memgen th, .jp-RenderedHTMLCommon table.memgen td { padding: 3px 8px;
  border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; max-width: 520px; }
.jp-RenderedHTMLCommon table.memgen thead th { border-bottom: 2px solid #888; background: #f6f6f6; }
.jp-RenderedHTMLCommon table.memgen td.num { text-align: right; font-variant-numeric: tabular-nums;
  white-space: nowrap; }
.jp-RenderedHTMLCommon table.memgen tbody tr:nth-child(odd) { background: #fbfbfb; }
.jp-RenderedHTMLCommon table.memgen-kv th { background: #f6f6f6; white-space: nowrap; }
.jp-RenderedHTMLCommon table.memgen td.verdict-good { background: #dcf2dc; color: #145214; }
.jp-RenderedHTMLCommon table.memgen td.verdict-mixed { background: #fbefd0; color: #6b4a00; }
.jp-RenderedHTMLCommon table.memgen td.verdict-bad { background: #f8dcdc; color: #7a1414; }
.jp-RenderedHTMLCommon table.memgen td.verdict-none { color: #666; }
figure.memgen-figure { margin: 10px 0 18px 0; }
figure.memgen-figure img { max-width: 100%; height: auto; }
figure.memgen-figure figcaption { font-size: 13px; margin-top: 4px; }
nav.memgen-contents { font-size: 14px; margin: 10px 0; }
nav.memgen-contents ul { list-style: none; padding-left: 0; margin: 4px 0; }
nav.memgen-contents li { margin: 3px 0; }
nav.memgen-contents span.sub { font-size: 13px; color: #555; }
details > summary { cursor: pointer; color: #335; margin: 4px 0; }
a.memgen-file { font-size: 12px; }
</style>
"""

# The lab template without the scripts it loads from a CDN (require.js, MathJax, Mermaid): the page has no
# JavaScript to run and renders offline.
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}""" + STYLE + """{% endblock extra_css %}
"""


def contents(page: str) -> str:
    """A table of contents: one line per section (h2 heading), its subsections (h3) after it, linked to their
    ids."""
    sections = []
    for level, ident, text in re.findall(r'<h([23]) id="([^"]+)"[^>]*>(.*?)</h\1>', page, re.S):
        text = html.escape(html.unescape(re.sub(r"<[^>]+>", "", text)).replace("¶", "").strip())
        entry = f'<a href="#{ident}">{text}</a>'
        if level == "2" or not sections:
            sections.append([f"<b>{entry}</b>", []])
        else:
            sections[-1][1].append(entry)
    lines = "".join(f'<li>{head}: <span class="sub">{" · ".join(subs)}</span></li>' if subs else f"<li>{head}</li>"
                    for head, subs in sections)
    return f'<nav class="memgen-contents" id="contents"><b>Contents</b><ul>{lines}</ul></nav>'


def render_notebooks(sections: list[tuple[str, dict]], notebook_out: str | os.PathLike,
                     html_out: str | os.PathLike, title: str) -> None:
    """Execute each section template with its parameters (papermill) and join them into one notebook and one
    self-contained HTML page titled ``title``, with a table of contents; each experiment owns its section."""
    import jinja2
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
    joined.metadata["title"] = title
    with atomic_path(notebook_out) as tmp:
        nbformat.write(joined, tmp)
    exporter = HTMLExporter(extra_loaders=[jinja2.DictLoader({"memgen_offline.html.j2": OFFLINE_TEMPLATE})],
                            template_file="memgen_offline.html.j2", exclude_input=True,
                            exclude_input_prompt=True, exclude_output_prompt=True)
    page, _ = exporter.from_notebook_node(joined)
    page = page.replace(CONTENTS_PLACEHOLDER, contents(page), 1)
    with atomic_path(html_out) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
