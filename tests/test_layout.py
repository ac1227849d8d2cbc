"""The package's layers: foundations at the top of memgen/, one subpackage per study over them (the proxies are
shaped like a study), and the benchmarks in memgen/bench over the studies' algorithms. A study reaches another
study's core algorithm at most (the influence study trains LUT networks), never its stages, tables, figures or
claims;
the foundations import no study and no benchmark; nothing imports a benchmark; each study's package re-exports
its public names."""

from __future__ import annotations

import ast

import pytest

from conftest import REPO

SRC = REPO / "src" / "memgen"
STUDIES = ("lut", "retrieval", "influence", "proxies")
WORKFLOW_MODULES = ("stages", "tables", "figures", "claims")
BENCH = "bench"


def imported(path) -> set[str]:
    """Dotted memgen names a file imports (anywhere in it, also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n.split(".")[0] == "memgen"}


def test_the_foundations_import_no_study():
    for path in SRC.glob("*.py"):
        studies = {n for n in imported(path) if n.split(".")[1:2] and n.split(".")[1] in (*STUDIES, BENCH)}
        assert not studies, f"{path.name} imports {sorted(studies)}: a foundation must not depend on a study"


@pytest.mark.parametrize("study", STUDIES)
def test_a_study_never_imports_another_studys_workflow_modules(study):
    for path in (SRC / study).rglob("*.py"):   # subpackages too (the learners, the estimator)
        for name in imported(path):
            parts = name.split(".")
            if len(parts) > 2 and parts[1] in STUDIES and parts[1] != study:
                assert parts[2] not in WORKFLOW_MODULES, f"memgen/{path.relative_to(SRC)} imports {name}"


def test_benchmarks_live_in_their_own_package_and_nothing_imports_them():
    for path in SRC.rglob("*.py"):
        package = path.relative_to(SRC).parts[0]
        if package in STUDIES:
            assert BENCH not in path.stem, f"memgen/{path.relative_to(SRC)}: a benchmark belongs in memgen/{BENCH}/"
        for name in imported(path):
            parts = name.split(".")
            if package != BENCH:
                assert parts[1:2] != [BENCH], f"memgen/{path.relative_to(SRC)} imports the benchmark {name}"
            elif len(parts) > 2 and parts[1] in STUDIES:
                assert parts[2] not in WORKFLOW_MODULES, f"memgen/{path.relative_to(SRC)} imports {name}"


def test_each_study_reexports_its_public_names():
    import memgen.influence as influence
    import memgen.lut as lut
    import memgen.proxies as proxies
    import memgen.retrieval as retrieval
    from memgen import learning_speed
    from memgen.influence import estimator, learners
    from memgen.lut import network
    from memgen.proxies import neighbourhood, validation
    from memgen.retrieval import gates, memory

    for package, modules in ((influence, (estimator, learners)), (lut, (network,)), (retrieval, (gates, memory)),
                             (proxies, (learning_speed, neighbourhood, validation))):
        assert package.__doc__ and package.__all__
        for name in package.__all__:
            assert any(getattr(m, name, None) is getattr(package, name) for m in modules), (package.__name__, name)
        for module in (SRC / package.__name__.split(".")[1]).glob("*.py"):
            if module.stem != "__init__":
                assert f"memgen.{package.__name__.split('.')[1]}.{module.stem}" in package.__doc__, module  # described
