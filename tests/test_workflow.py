"""The workflow as users run it: lint, config validation, clear errors, the smoke DAG end to end
through the generic cluster executor, and reruns limited to the stages an edit touches."""

import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
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
def mirror(data_root, tmp_path_factory):
    """A copy of the dataset mirror the smoke run reads, so a test can re-copy (re-date) it."""
    root = tmp_path_factory.mktemp("data")
    for name in ("mnist", "cifar10-jpeg.tar.gz"):  # what tests/smoke/config.yaml reads, not all of data_root
        (shutil.copytree if (data_root / name).is_dir() else shutil.copy2)(data_root / name, root / name)
    return root


@pytest.fixture(scope="module")
def smoke_run(project, mirror):
    code, out = snakemake("all", "--workflow-profile", "workflow/profiles/local-cluster", *SMOKE,
                          "--config", f"data_root={mirror}", cwd=project)
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


def test_jobs_never_ask_for_more_threads_than_the_machine_has():
    """--cores and a rule's threads above the machine's physical cores are scaled down to them."""
    from memgen.runtime import usable_cores

    cores = usable_cores()
    code, out = snakemake("results/retrieval/cifar10/full/backbone.pt", "-n", "-F", "--cores", str(4 * cores),
                          "--set-threads", f"train_backbone={4 * cores}", *SMOKE, "--config", f"data_root={DATA_ROOT}")
    assert code == 0, out[-3000:]
    assert f"--cores {4 * cores} is more than the {cores} physical cores" in out
    assert re.findall(r"^\s+threads: (\d+)$", out, re.M) == ([str(cores)] if cores > 1 else [])


def test_missing_data_file_is_named(tmp_path):
    shutil.copy2(REPO / "config.yaml", tmp_path)
    code, out = snakemake("-n", "-s", str(REPO / "Snakefile"), "--config", f"data_root={tmp_path}", cwd=tmp_path)
    assert code != 0
    assert f"{tmp_path}/mnist/train-images-idx3-ubyte[.gz]" in out and "data_root" in out, out[-3000:]
    assert not (tmp_path / "results").exists()


def test_smoke_report_has_every_section_with_numbers(smoke_run):
    html = (smoke_run / "results/report/study.html").read_text()
    for heading in ("Data", "LUT networks", "Memory-augmented classifier", "Memorization and influence", "Runtime"):
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
    studies = pd.read_csv(smoke_run / "results/tables/influence_summary.csv").set_index("study")
    assert set(studies.index) == {"mnist_mlp", "mnist_knn", "mnist_lut", "cifar10_linear", "cifar10_linear_rerun",
                                  "cifar10_knn", "cifar10_net"}
    assert studies.loc["mnist_mlp", "t"] == 8 and studies.loc["mnist_mlp", "n_train"] == 600  # smoke sizes
    assert (studies["n_train"] > 0).all() and studies["test_acc_mean"].between(0, 1).all()
    last = pd.read_csv(smoke_run / "results/tables/influence_last_layer.csv")
    assert last["measured"].notna().all() and (last["published (CIFAR-100, ResNet50)"].iloc[-1] == 18099)
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


def test_editing_a_module_reruns_only_its_dependents(smoke_run, mirror):
    code, out = snakemake("-n", *SMOKE, "--config", f"data_root={mirror}", cwd=smoke_run)
    assert code == 0 and "Nothing to be done" in out, out[-3000:]
    modules = {name: smoke_run / f"src/memgen/{name}.py" for name in ("figures", "splits")}
    originals = {name: path.read_text() for name, path in modules.items()}
    try:
        edit(modules["figures"])
        code, out = snakemake("-n", *SMOKE, "--config", f"data_root={mirror}", cwd=smoke_run)
        assert code == 0, out[-3000:]
        assert set(planned_jobs(out)) == {"summarize_data", "plot_data", "influence_figures", "runtime_table",
                                          "render_report", "all"}
        edit(modules["splits"])
        code, out = snakemake("-n", *SMOKE, "--config", f"data_root={mirror}", cwd=smoke_run)
        jobs = planned_jobs(out)
        assert "make_split" in jobs and "prepare_data" not in jobs
    finally:  # the later tests start from a finished DAG again
        for name, path in modules.items():
            path.write_text(originals[name])


def test_recopying_the_mirror_reruns_nothing(smoke_run, mirror):
    """Re-provisioning the read-only mirror gives its files new mtimes but the same content: the study stays
    current, while --forcerun prepare_data still rebuilds from it."""
    later = time.time() + 60
    for path in mirror.rglob("*"):
        os.utime(path, (later, later))
    code, out = snakemake("-n", *SMOKE, "--config", f"data_root={mirror}", cwd=smoke_run)
    assert code == 0 and "Nothing to be done" in out, out[-3000:]
    code, out = snakemake("-n", "--forcerun", "prepare_data", *SMOKE, "--config", f"data_root={mirror}", cwd=smoke_run)
    assert code == 0 and planned_jobs(out).get("prepare_data") == 2, out[-3000:]


def test_snakemake_report_archive_holds_captioned_outputs(smoke_run, mirror):
    import zipfile

    code, out = snakemake("--report", "report.zip", *SMOKE, "--config", f"data_root={mirror}", cwd=smoke_run)
    assert code == 0, out[-3000:]
    names = zipfile.ZipFile(smoke_run / "report.zip").namelist()
    for expected in ("data_summary.csv", "split_counts.csv", "runtimes.csv", "samples_mnist.png", "seed001_table1.csv",
                     "seed001_figure1.png"):
        assert any(name.endswith(expected) for name in names), expected


def test_an_interrupted_study_reruns_only_its_missing_shard(smoke_run, mirror):
    """A run interrupted after one shard of a study (shards are written atomically: whole or not at all), before
    its estimate: the rerun trains only the missing shard, and the estimates equal the uninterrupted ones."""
    shard = smoke_run / "results/influence/mnist_knn/shards/models_000008-000016.npz"
    scores = smoke_run / "results/influence/mnist_knn/scores.npz"
    before = np.load(scores)["mem"]
    shard.unlink()
    scores.unlink()
    target = str(scores.relative_to(smoke_run))
    code, out = snakemake("-n", target, *SMOKE, "--config", f"data_root={mirror}", cwd=smoke_run)
    assert code == 0, out[-3000:]
    jobs = planned_jobs(out)
    assert jobs["influence_shard"] == 1 and jobs["influence_estimate"] == 1, jobs
    assert "models_000008-000016.npz" in out and "output: results/influence/mnist_knn/shards/models_000000" not in out
    code, out = snakemake("--cores", "2", target, *SMOKE, "--config", f"data_root={mirror}", cwd=smoke_run)
    assert code == 0, out[-3000:]
    assert shard.exists() and np.array_equal(np.load(scores)["mem"], before, equal_nan=True)


def test_raising_t_trains_only_the_new_models(smoke_run, mirror):
    config = (smoke_run / "tests/smoke/config.yaml").read_text()
    raised = config.replace("mnist_knn: {dataset: mnist, split: all, learner: knn, t: 16,",
                            "mnist_knn: {dataset: mnist, split: all, learner: knn, t: 24,")
    assert raised != config
    (smoke_run / "raised.yaml").write_text(raised)
    code, out = snakemake("-n", "--configfile", "raised.yaml", "--config", f"data_root={mirror}", cwd=smoke_run)
    assert code == 0, out[-3000:]
    assert planned_jobs(out)["influence_shard"] == 1 and "models_000016-000024.npz" in out


@pytest.mark.parametrize("change, message", [
    ({"consistency": [["mnist_mlp", "nowhere"]]}, r"influence.consistency names study 'nowhere'"),
    ({"studies": {"bad": {"dataset": "mnist", "split": "all", "learner": "mlp", "t": 4, "shard_size": 2,
                          "settings": {"epoch": 3}}}}, r"epoch"),
    ({"studies": {"bad": {"dataset": "mnist", "split": "lt10", "learner": "knn", "t": 4, "shard_size": 2}}},
     r"split 'lt10' is not in datasets.mnist.splits"),
    ({"studies": {"bad": {"dataset": "mnist", "split": "all", "learner": "lut", "features": "pixels", "t": 4,
                          "shard_size": 2}}}, r"bits"),
])
def test_bad_memorization_config_is_named(change, message, tmp_path):
    import yaml

    config = yaml.safe_load((REPO / "tests/smoke/config.yaml").read_text())
    for key, value in change.items():
        config["influence"][key] = {**config["influence"][key], **value} if key == "studies" else value
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    code, out = snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"))
    assert code != 0
    assert re.search(message, out, re.S), out[-3000:]


PAPER = ["--configfile", "workflow/presets/paper.yaml"]
# Every rule of the study: all of them but the benchmark target's (bench, bench_lut) are part of `all`.
STUDY_RULES = {
    "prepare_data", "make_split", "summarize_data", "plot_data",
    "lut_sweep", "lut_depth", "lut_pairwise", "lut_table1", "lut_table2", "lut_tables", "lut_figures",
    "train_backbone", "embed", "knn", "neighbor_transformer", "gate", "evaluate_retrieval", "retrieval_tables",
    "retrieval_figures",
    "influence_shard", "influence_estimate", "influence_removal", "influence_tables", "influence_figures",
    "runtime_table", "render_report", "all",
}


def test_paper_preset_plans_every_rule_of_the_study():
    import yaml

    code, out = snakemake("all", "-n", "-F", *PAPER, "--config", f"data_root={DATA_ROOT}")
    assert code == 0, out[-3000:]
    jobs = planned_jobs(out)
    assert set(jobs) == STUDY_RULES, set(jobs) ^ STUDY_RULES
    paper = yaml.safe_load((REPO / "workflow/presets/paper.yaml").read_text())
    studies = paper["influence"]["studies"]
    assert jobs["influence_shard"] == sum(-(-s["t"] // s["shard_size"]) for s in studies.values())
    assert jobs["influence_estimate"] == len(studies)
    assert jobs["influence_removal"] == len(paper["influence"]["removal"])
    transformer = paper["retrieval"]["transformer"]
    assert jobs["neighbor_transformer"] == len(transformer["variants"]) * sum(map(len, transformer["splits"].values()))


def test_paper_preset_backbone_runs_through_the_cluster_executor_at_tiny_size(tmp_path):
    """The paper's 200-epoch ResNet-20 recipe, cut to 2 SGD steps on 600 images, as three cluster jobs."""
    import json

    for name in PROJECT_FILES:
        src, dst = REPO / name, tmp_path / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    (tmp_path / "tiny.yaml").write_text(json.dumps({
        "datasets": {"cifar10": {"limit": {"train": 600, "test": 100}}}, "splits": {"validation_size": 100},
        "retrieval": {"backbone": {"cifar10": {"max_steps": 2}}}}))
    target = "results/retrieval/cifar10/full/backbone.json"
    code, out = snakemake(target, "--workflow-profile", "workflow/profiles/local-cluster", *PAPER, "tiny.yaml",
                          "--config",
                          f"data_root={DATA_ROOT}", cwd=tmp_path, timeout=600)
    assert code == 0, out[-5000:]
    ledger = pd.read_csv(tmp_path / ".snakemake/local-cluster/jobs.tsv", sep="\t", names=["rule", "inputs"])
    assert sorted(ledger.rule) == ["make_split", "prepare_data", "train_backbone"]
    metrics = json.loads((tmp_path / target).read_text())
    assert (metrics["epochs"], metrics["batch_size"], metrics["lr"], metrics["steps"]) == (200, 128, 0.1, 2)
    assert not list((tmp_path / "results").glob("checkpoints/**/*.pt")), "the resume file is removed at the end"
