"""The workflow as users run it: lint, config validation, clear errors, the smoke DAG end to end
through the generic cluster executor, and reruns limited to the stages an edit touches."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import DATA_ROOT, REPO

PROJECT_FILES = ["Snakefile", "config.yaml", "workflow", "src", "reports", "envs", "tests/smoke"]
SMOKE = ["--configfile", "tests/smoke/config.yaml"]


def snakemake(*args, cwd=REPO, timeout=1500):
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc.returncode, proc.stdout + proc.stderr


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    table = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project, so runs and edits never touch the checkout."""
    root = tmp_path_factory.mktemp("project")
    for name in PROJECT_FILES:
        src, dst = REPO / name, root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    return root


@pytest.fixture(scope="module")
def smoke_run(project, data_root):
    code, out = snakemake("all", "--workflow-profile", "workflow/profiles/local-cluster", *SMOKE,
                          "--config", f"data_root={data_root}", cwd=project)
    assert code == 0, out[-5000:]
    return project


def test_lint_is_clean():
    code, out = snakemake("--lint")
    assert code == 0 and "Congratulations" in out, out[-3000:]


@pytest.mark.parametrize("override, message", [
    ("device=gpu", r"device.*gpu|gpu.*device"),
    ("epochs=3", r"epochs"),
    ("seed=-1", r"seed|-1"),
])
def test_bad_config_value_stops_with_its_name(override, message):
    code, out = snakemake("-n", "--config", override)
    assert code != 0
    assert re.search(message, out, re.S), out[-3000:]


def test_missing_data_file_is_named(tmp_path):
    shutil.copy2(REPO / "config.yaml", tmp_path)
    code, out = snakemake("-n", "-s", str(REPO / "Snakefile"), "--config", f"data_root={tmp_path}", cwd=tmp_path)
    assert code != 0
    assert f"{tmp_path}/mnist/train-images-idx3-ubyte[.gz]" in out and "data_root" in out, out[-3000:]
    assert not (tmp_path / "results").exists()


def test_smoke_report_has_every_section_with_numbers(smoke_run):
    html = (smoke_run / "results/report/study.html").read_text()
    for heading in ("Data", "LUT networks", "Memory-augmented classifier", "Runtime"):
        assert re.search(rf"<h2[^>]*>{heading}", html), f"section {heading} missing"
    assert "Traceback" not in html and "output_error" not in html
    assert html.count("<img") >= 4  # sample images and split counts of both datasets
    summary = pd.read_csv(smoke_run / "results/tables/data_summary.csv")
    assert summary.set_index("dataset").loc["mnist", "n_train"] == 600
    counts = pd.read_csv(smoke_run / "results/tables/split_counts.csv")
    assert (counts.dataset == "mnist").sum() == 4 + 45 and (counts.n_train > 0).all()
    for name in ("table1", "table2", "table3", "table4"):                 # the LUT study's tables
        table = pd.read_csv(smoke_run / f"results/tables/seed001_{name}.csv")
        assert {"published", "measured"} <= set(table.columns) and table["measured"].notna().all(), name
    assert pd.read_csv(smoke_run / "results/tables/seed001_figure1.csv")["gap"].notna().all()
    memory = pd.read_csv(smoke_run / "results/tables/seed000_table1.csv")     # the memory study's Table 1
    assert memory["measured"].notna().all() and pd.api.types.is_numeric_dtype(memory["measured"])
    runtimes = pd.read_csv(smoke_run / "results/tables/runtimes.csv")
    assert len(runtimes) == sum(planned_jobs_all(smoke_run).values()) - 3  # all but runtime_table, render_report, all
    assert (runtimes.seconds > 0).all()


def planned_jobs_all(project):
    code, out = snakemake("all", "-n", "-F", *SMOKE, "--config", f"data_root={DATA_ROOT}", cwd=project)
    assert code == 0, out[-3000:]
    return planned_jobs(out)


def test_every_job_went_through_the_cluster_executor(smoke_run):
    ledger = pd.read_csv(smoke_run / ".snakemake/local-cluster/jobs.tsv", sep="\t", names=["rule", "inputs"])
    assert set(ledger.rule) == set(planned_jobs_all(smoke_run)) - {"all"}
    assert len(ledger) == sum(planned_jobs_all(smoke_run).values()) - 1


def edit(path):
    """A real edit: Snakemake compares checksums, so a mere touch does not count."""
    path.write_text(path.read_text() + "\n# edited by the test\n")


def test_editing_a_module_reruns_only_its_dependents(smoke_run, data_root):
    code, out = snakemake("-n", *SMOKE, "--config", f"data_root={data_root}", cwd=smoke_run)
    assert code == 0 and "Nothing to be done" in out, out[-3000:]
    edit(smoke_run / "src/memgen/figures.py")
    code, out = snakemake("-n", *SMOKE, "--config", f"data_root={data_root}", cwd=smoke_run)
    assert code == 0, out[-3000:]
    assert set(planned_jobs(out)) == {"summarize_data", "plot_data", "runtime_table", "render_report", "all"}
    edit(smoke_run / "src/memgen/splits.py")
    code, out = snakemake("-n", *SMOKE, "--config", f"data_root={data_root}", cwd=smoke_run)
    jobs = planned_jobs(out)
    assert "make_split" in jobs and "prepare_data" not in jobs


def test_snakemake_report_archive_holds_captioned_outputs(smoke_run, data_root):
    import zipfile

    code, out = snakemake("--report", "report.zip", *SMOKE, "--config", f"data_root={data_root}", cwd=smoke_run)
    assert code == 0, out[-3000:]
    names = zipfile.ZipFile(smoke_run / "report.zip").namelist()
    for expected in ("data_summary.csv", "split_counts.csv", "runtimes.csv", "samples_mnist.png", "seed001_table1.csv",
                     "seed001_figure1.png"):
        assert any(name.endswith(expected) for name in names), expected
