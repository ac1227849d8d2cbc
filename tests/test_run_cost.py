"""What a run says it will cost: job prices, the estimate's sum over cores, the start message, and the real
start of a run printing it."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from memgen.run_cost import (ADVISE_PRESET_HOURS, ARCH_COST, QUICK_PRESET_COMMAND, Job, Speed, estimate, job_seconds,
                             measure_speed, planned_jobs, start_message, train_size)
from memgen.splits import make_split
from test_workflow import copy_project
from test_workflow import planned_jobs as dry_run_counts

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
SPEED = Speed("bf16", "cpu", 2, resnet_img_s=800.0, mlp_gflop_s=300.0)
CIFAR = {"expect": {"n_train": 50000, "n_classes": 10}}
SPLITS = {"validation_size": 5000, "rare": {"rare_classes": [1, 3], "keep_fraction": 0.02}}


def backbone(epochs, memory="full", arch="resnet20"):
    return Job("train_backbone", {"dataset": "cifar10", "memory": memory},
               {"settings": {"arch": arch, "epochs": epochs}}, threads=2)


def mlp_shard(models, epochs=10):
    return Job("influence_shard", {"study": "mnist_mlp", "start": "000000", "stop": f"{models:06d}"},
               {"study": {"dataset": "mnist", "split": "all", "learner": "mlp",
                          "settings": {"hidden": [512, 256], "epochs": epochs}}, "ratio": 0.7}, threads=2)


@pytest.mark.parametrize("split", ["full", "lt10", "lt100", "all"])
def test_train_size_is_what_make_split_keeps(split):
    y = np.repeat(np.arange(10), 5000)
    made = make_split(split, y, np.arange(10).repeat(10), [str(c) for c in range(10)], dataset="cifar10",
                      validation_size=SPLITS["validation_size"], seed=0)
    assert train_size("cifar10", CIFAR, split, SPLITS) == len(made.train_idx)


def test_backbone_price_follows_epochs_images_and_speed():
    datasets = {"cifar10": CIFAR}
    one, two = (job_seconds(backbone(e), SPEED, datasets, SPLITS) for e in (6, 12))
    slower = job_seconds(backbone(12), Speed("fp32", "cpu", 2, 400.0, 300.0), datasets, SPLITS)
    lt = job_seconds(backbone(12, "lt100"), SPEED, datasets, SPLITS)
    assert two - one == pytest.approx(one - 2.0, rel=1e-6)      # twice the epochs, twice the training time
    assert slower - 2.0 == pytest.approx(2 * (two - 2.0), rel=1e-6)
    assert lt < two / 3                                          # lt100 keeps about a quarter of full's images
    # an extra backbone's memory: its split's images, at its network's cost per image
    extra = job_seconds(backbone(12, "full@fast", arch="airbench94"), SPEED, datasets, SPLITS)
    assert extra - 2.0 == pytest.approx(ARCH_COST["airbench94"] * (two - 2.0), rel=1e-6)


def test_mlp_price_follows_models_epochs_and_flops():
    datasets = {"mnist": {"expect": {"n_train": 60000, "n_classes": 10}}}
    base = job_seconds(mlp_shard(32), SPEED, datasets, SPLITS) - 2.0
    assert job_seconds(mlp_shard(64), SPEED, datasets, SPLITS) - 2.0 == pytest.approx(2 * base)
    assert job_seconds(mlp_shard(32, epochs=5), SPEED, datasets, SPLITS) - 2.0 == pytest.approx(base / 2)
    # 6 FLOP per parameter and example: 535,818 parameters x 10 epochs x 42,000 images per model
    assert base / 32 == pytest.approx(6 * 535_818 * 10 * 42_000 / (300e9 * 0.71), rel=1e-3)


def test_estimate_counts_a_job_by_the_share_of_cores_it_holds():
    datasets = {"cifar10": CIFAR}
    whole = backbone(12)
    half = Job("train_backbone", whole.wildcards, whole.params, threads=1)
    t = job_seconds(whole, SPEED, datasets, SPLITS)
    assert estimate([whole], SPEED, datasets, SPLITS, cores=2) == {"backbones": pytest.approx(t)}
    assert estimate([half, half], SPEED, datasets, SPLITS, cores=2) == {"backbones": pytest.approx(t)}
    assert estimate([half, half], SPEED, datasets, SPLITS, cores=None) == {"backbones": pytest.approx(2 * t)}


def test_start_message_says_precision_cores_estimate_and_the_preset_when_long():
    short = start_message(precision_setting="auto", speed=SPEED, cores=2, requested_cores=8,
                          stages={"backbones": 600.0}, n_jobs=3)
    assert "precision auto -> bf16" in short and "2 cores (--cores 8 capped" in short
    assert "estimated wall time here: 10 min 00 s" in short and QUICK_PRESET_COMMAND not in short
    long = start_message(precision_setting="auto", speed=Speed("fp32", "cpu", 2, 200.0, 100.0), cores=2,
                         requested_cores=2, stages={"MNIST MLPs": ADVISE_PRESET_HOURS * 3600 + 60}, n_jobs=3)
    assert "precision auto -> fp32 (no native bf16 here)" in long and "capped" not in long
    assert QUICK_PRESET_COMMAND in long


def test_the_speed_probe_measures_both_loops_in_the_precision_asked():
    speed = measure_speed("fp32", "cpu", 1)
    assert speed.precision == "fp32" and speed.resnet_img_s > 0 and speed.mlp_gflop_s > 0


def test_planned_jobs_are_the_dry_runs_jobs(data_root):
    jobs, config = planned_jobs(REPO, ["tests/smoke/config.yaml"], config={"data_root": str(data_root)})
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-F", "all", "--configfile",
                          "tests/smoke/config.yaml", "--config", f"data_root={data_root}"], cwd=REPO,
                         capture_output=True, text=True)
    mine = {}
    for job in jobs:
        mine[job.rule] = mine.get(job.rule, 0) + 1
    assert mine == {rule: n for rule, n in dry_run_counts(dry.stdout).items() if rule != "all"}
    assert config["preset"]["name"] == "smoke"


def test_a_run_says_its_precision_cores_and_cost_before_its_first_job(tmp_path, data_root):
    root = copy_project(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "results/data/mnist.npz", "--cores", "64",
                           "--configfile", "tests/smoke/config.yaml", "--config", f"data_root={data_root}"],
                          cwd=root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MEMGEN_NO_NATIVE_BF16": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    said = re.search(r"memgen: precision auto -> (\w+) .*; (\d+) cores \(--cores 64 capped", out)
    assert said and said.group(1) == "fp32", out[-3000:]
    assert re.search(r"memgen: 1 jobs to run, estimated wall time here: \d+ s", out), out[-3000:]
    assert out.index("memgen: 1 jobs to run") < out.index("rule prepare_data")
