"""memgen.code_inputs.script_modules and module_files on a tiny generated memgen package: what a job declares as its
code."""

import json
from pathlib import Path

import pytest

from memgen.code_inputs import module_files, script_modules

PACKAGE = {
    "memgen/__init__.py": "",
    "memgen/base.py": "import numpy\nVALUE = 1\n",
    "memgen/cycle_a.py": "import memgen.cycle_b\n",
    "memgen/cycle_b.py": "from memgen.cycle_a import something\n",
    "memgen/lazy.py": "def load():\n    from memgen import base\n    return base.VALUE\n",
    "memgen/unused.py": "import memgen.base\n",
    "memgen/study/__init__.py": "from memgen.study import registry\n",
    "memgen/study/registry.py": "",
    "memgen/study/core.py": "from .helpers import helper\nfrom ..base import VALUE\n",
    "memgen/study/helpers.py": "def helper():\n    return 0\n",
    "memgen/study/stages.py": "from memgen.study import core\n",
    "memgen/study/figures.py": "",
}


@pytest.fixture
def src(tmp_path):
    for name, text in PACKAGE.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "src"


def modules(script, src):
    return {Path(p).relative_to(src.resolve()).as_posix() for p in script_modules(script, src)}


def write_script(tmp_path, text, name="script.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_plain_import_gives_the_module_and_its_package(src, tmp_path):
    script = write_script(tmp_path, "import numpy\nfrom memgen.base import VALUE\nprint(VALUE)\n")
    assert modules(script, src) == {"memgen/__init__.py", "memgen/base.py"}


def test_imports_inside_functions_are_followed(src, tmp_path):
    script = write_script(tmp_path, "def main():\n    import memgen.lazy\n")
    assert modules(script, src) == {"memgen/__init__.py", "memgen/lazy.py", "memgen/base.py"}


def test_from_package_import_submodule_gives_the_submodule_and_the_package_init(src, tmp_path):
    """`from memgen.study import stages` names a submodule, not an attribute: its file is a dependency, and so is
    memgen/study/__init__.py (which runs first, and here imports registry)."""
    script = write_script(tmp_path, "from memgen.study import stages\n")
    assert modules(script, src) == {"memgen/__init__.py", "memgen/study/__init__.py", "memgen/study/registry.py",
                                    "memgen/study/stages.py", "memgen/study/core.py", "memgen/study/helpers.py",
                                    "memgen/base.py"}
    assert "memgen/study/figures.py" not in modules(script, src)   # a sibling the script never imports


def test_relative_imports_inside_the_package_are_followed(src, tmp_path):
    script = write_script(tmp_path, "import memgen.study.core\n")
    assert {"memgen/study/helpers.py", "memgen/base.py"} <= modules(script, src)


def test_import_cycles_terminate_and_include_both_modules(src, tmp_path):
    script = write_script(tmp_path, "import memgen.cycle_a\n")
    assert modules(script, src) == {"memgen/__init__.py", "memgen/cycle_a.py", "memgen/cycle_b.py"}


def test_names_that_are_not_memgen_modules_add_nothing(src, tmp_path):
    script = write_script(tmp_path, "import memgenx\nimport os.path\nfrom memgen.base import VALUE, missing\n")
    assert modules(script, src) == {"memgen/__init__.py", "memgen/base.py"}


def test_a_notebook_contributes_the_imports_of_its_code_cells(src, tmp_path):
    cells = [{"cell_type": "markdown", "source": ["import memgen.unused is prose here"]},
             {"cell_type": "code", "source": ["%matplotlib inline\n", "from memgen.study import figures\n"]}]
    notebook = write_script(tmp_path, json.dumps({"cells": cells}), name="section.ipynb")
    assert modules(notebook, src) == {"memgen/__init__.py", "memgen/study/__init__.py", "memgen/study/registry.py",
                                      "memgen/study/figures.py"}


def test_paths_are_absolute_files_under_src(src, tmp_path):
    script = write_script(tmp_path, "from memgen import base\n")
    paths = script_modules(script, src)
    assert paths == sorted(paths) and all(Path(p).is_absolute() and Path(p).is_file() for p in paths)


def test_a_module_gives_its_file_its_packages_and_what_it_imports(src):
    """module_files: the code importing one module (by name) runs: memgen/study/core.py, the packages on the way
    (whose __init__ imports registry), its relative imports; not the package's other modules."""
    found = {Path(p).relative_to(src.resolve()).as_posix() for p in module_files("memgen.study.core", src)}
    assert found == {"memgen/__init__.py", "memgen/study/__init__.py", "memgen/study/registry.py",
                     "memgen/study/core.py", "memgen/study/helpers.py", "memgen/base.py"}
    with pytest.raises(ValueError, match="no module memgen.study.missing"):
        module_files("memgen.study.missing", src)
