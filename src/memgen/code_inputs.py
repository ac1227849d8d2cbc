"""The memgen source files a rule's script runs, found from its imports, so the workflow declares them as inputs.

:func:`script_modules` reads a script (or a notebook's code cells) and follows ``import memgen.x`` /
``from memgen.x import y`` / ``from memgen import x`` statements (at any depth, including imports inside
functions, and relative imports inside the package) transitively through the package, and returns the files:
the modules and the ``__init__.py`` of every package on the way. Editing one of them reruns the rule's jobs;
editing a module no script of a study reaches reruns nothing of that study. :func:`module_files` gives the same
for one module, for code a job imports by name at run time (an influence study's learner module).
"""

from __future__ import annotations

import ast
import json
from functools import lru_cache
from pathlib import Path

PACKAGE = "memgen"


def _module_file(src: Path, dotted: str) -> Path | None:
    base = src.joinpath(*dotted.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _source(path: Path) -> str:
    """A file's Python code: a script's text, or a notebook's code cells without IPython's % and ! lines."""
    if path.suffix != ".ipynb":
        return path.read_text()
    cells = [cell for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
    lines = [line for cell in cells for line in "".join(cell["source"]).splitlines()]
    return "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))


def _from_module(node: ast.ImportFrom, path: Path, src: Path) -> str | None:
    """The absolute dotted name ``from ... import`` reads: ``from .x import y`` in memgen/lut/a.py is memgen.lut.x."""
    if node.level == 0:
        return node.module
    if not path.is_relative_to(src):
        return None
    package = path.relative_to(src).parent.parts
    if node.level - 1 > len(package) - 1:
        return None
    base = package[:len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


@lru_cache(maxsize=None)
def _imported_modules(path: Path, src: Path) -> frozenset[str]:
    """Dotted names of the memgen modules (or candidate submodules) one file imports. Cached: each rule's closure
    walks the same modules, and parsing them once per workflow parse instead of once per rule halves its cost."""
    names = set()
    for node in ast.walk(ast.parse(_source(path), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            module = _from_module(node, path, src)
            if module and module.split(".")[0] == PACKAGE:
                names.add(module)
                names |= {f"{module}.{a.name}" for a in node.names}   # `from memgen.lut import tables`
    return frozenset(names)


@lru_cache(maxsize=None)
def _closure(src: Path, start: Path) -> tuple[Path, ...]:
    seen, todo = set(), [start]
    while todo:
        for dotted in _imported_modules(todo.pop(), src):
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):                      # the packages on the way, then the module
                path = _module_file(src, ".".join(parts[:i]))
                if path is not None and path not in seen:
                    seen.add(path)
                    todo.append(path)
    return tuple(sorted(seen))


def script_modules(script: str | Path, src: str | Path) -> list[str]:
    """The memgen files ``script`` (a .py file or a .ipynb notebook) runs, transitively, as paths under ``src``
    (the folder holding memgen/)."""
    return [str(p) for p in _closure(Path(src).resolve(), Path(script).resolve())]


def module_files(module: str, src: str | Path) -> list[str]:
    """The memgen files importing ``module`` (dotted, e.g. ``memgen.influence.learners.mlp``) runs, transitively:
    its own file, the ``__init__.py`` of the packages on the way and what it imports, as paths under ``src``."""
    src = Path(src).resolve()
    parts = module.split(".")
    own = [_module_file(src, ".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    if own[-1] is None or parts[0] != PACKAGE:
        raise ValueError(f"no module {module} under {src}: name a module of the {PACKAGE} package")
    return sorted({str(p) for p in [*filter(None, own), *_closure(src, own[-1])]})
