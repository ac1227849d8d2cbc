"""Screenshots of the study report as a reader first sees it: the first screen, and each section from its heading
through its first table, rendered by headless Chromium (``snakemake report_screenshots``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["report_screenshots", "section_pages"]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def _div_end(html: str, start: int) -> int:
    """The index just past the ``</div>`` that closes the ``<div`` opened at ``start``."""
    depth = 0
    for tag in re.finditer(r"<(/?)div\b[^>]*>", html[start:]):
        depth += -1 if tag.group(1) else 1
        if depth == 0:
            return start + tag.end()
    raise ValueError("unbalanced <div> in the report")


def section_pages(html: str) -> dict[str, str]:
    """``{section id: page}``: the report's head and styles with, per section (each ``<h2>``), its content from the
    heading through the end of its first table (all of the section when it has none)."""
    body = re.search(r"<body[^>]*>", html)
    if body is None:
        raise ValueError("not an HTML page: no <body>")
    head = html[:body.end()]
    headings = list(re.finditer(r'<h2[^>]*\bid="([^"]+)"', html))
    pages = {}
    for i, h in enumerate(headings):
        stop = headings[i + 1].start() if i + 1 < len(headings) else html.rindex("</body>")
        table = html.find('<div class="memgen-table"', h.start(), stop)
        end = _div_end(html, table) if table >= 0 else stop
        cell = html.rfind('<div class="jp-Cell ', 0, h.start())   # from the notebook cell that holds the heading
        pages[h.group(1)] = head + html[max(cell, 0):end] + "\n</body></html>\n"
    return pages


def _shoot(chromium: str, page: Path, png: Path, width: int, height: int, profile: Path) -> None:
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                           f"--screenshot={png}", page.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    if proc.returncode != 0 or not png.exists():
        raise RuntimeError(f"{chromium} could not render {page}:\n{proc.stderr[-2000:]}")


def report_screenshots(report_html, out_dir, *, chromium: str = "chromium", width: int = 1400,
                       height: int = 1000) -> list[Path]:
    """``first_screen.png`` (the top of the report) and ``<nn>_<section>.png`` for every section, in ``out_dir``;
    the written paths. ``chromium``: the browser's executable (Debian's ``chromium`` package)."""
    exe = shutil.which(chromium)
    if exe is None:
        raise FileNotFoundError(f"no '{chromium}' browser on PATH: install Debian's chromium package "
                                "(apt-get install chromium) or pass chromium=<path>")
    report_html, out_dir = Path(report_html), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "first_screen.png"]
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "profile"
        _shoot(exe, report_html, written[0], width, height, profile)
        for n, (name, page) in enumerate(section_pages(report_html.read_text()).items(), start=1):
            # beside the report, so that its relative links and images resolve the same way
            page_path = report_html.parent / f".screenshot_{n:02d}.html"
            page_path.write_text(page)
            try:
                png = out_dir / f"{n:02d}_{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')[:40]}.png"
                _shoot(exe, page_path, png, width, height, profile)
                written.append(png)
            finally:
                page_path.unlink()
    return written
