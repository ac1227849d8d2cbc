"""The memgen source files a rule's script runs, found from its imports, so the workflow declares them as inputs.

:func:`script_modules` follows ``import memgen.x`` / ``from memgen.x import y`` / ``from memgen import x``
statements (at any depth, including imports inside functions) transitively through the package, and returns
the files: the modules and the ``__init__.py`` of every package on the way. Editing one of them reruns the
rule's jobs; editing a module no script of a study reaches reruns nothing of that study.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = "memgen"


def _module_file(src: Path, dotted: str) -> Path | None:
    base = src.joinpath(*dotted.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported_modules(path: Path) -> set[str]:
    """Dotted names of the memgen modules (or candidate submodules) one file imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == PACKAGE:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}   # `from memgen.lut import tables`
    return names


@lru_cache(maxsize=None)
def _closure(src: Path, start: Path) -> tuple[Path, ...]:
    seen, todo = set(), [start]
    while todo:
        for dotted in _imported_modules(todo.pop()):
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):                      # the packages on the way, then the module
                path = _module_file(src, ".".join(parts[:i]))
                if path is not None and path not in seen:
                    seen.add(path)
                    todo.append(path)
    return tuple(sorted(seen))


def script_modules(script: str | Path, src: str | Path) -> list[str]:
    """The memgen files ``script`` runs (transitively), as paths under ``src`` (the folder holding memgen/)."""
    return [str(p) for p in _closure(Path(src).resolve(), Path(script).resolve())]
