"""The recipes of CONTRIBUTING.md, followed as written: the example each adds reaches the outputs and the report's
tables. (The gate recipe's test is `test_a_registered_gate_is_fit_saved_evaluated_and_reported` in
tests/test_retrieval_stages.py, beside the synthetic memory it runs on.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from memgen.influence import stages, tables
from memgen.influence.learners import LEARNERS, Outputs, register_learner, scores_from_logits
from memgen.proxies.stages import study_proxies_stage, validation_table
from memgen.runtime import resolve_device, resolve_precision
from memgen.splits import make_split, save_split

from test_data import write_idx_dataset
from test_workflow import copy_project, snakemake


@pytest.fixture
def learner_registry(monkeypatch):
    """The registry, restored after the test registered its own learner."""
    monkeypatch.setattr(LEARNERS, "_classes", dict(LEARNERS._classes))
    return LEARNERS


def test_a_learner_added_as_the_recipe_says_reaches_the_estimate_the_proxies_and_their_tables(learner_registry,
                                                                                              tmp_path):
    """The learner recipe's example: a nearest-class-mean learner with ``mixed_precision`` (it receives the
    precision setting) and a ``record`` parameter (its shards keep each example's learning speed)."""
    import torch

    @register_learner("centroid")
    class Centroid:
        mixed_precision = True

        @classmethod
        def from_settings(cls, x_train, y_train, x_test, y_test, settings, *, n_classes, device, show_progress,
                          precision="auto"):
            return cls(x_train, y_train, x_test, y_test, n_classes=n_classes,
                       precision=resolve_precision(precision, resolve_device(device)), **settings)

        def __init__(self, x_train, y_train, x_test, y_test, *, n_classes, precision, temperature=1.0, record=None):
            self.y_train, self.y_test = np.asarray(y_train, np.int64), np.asarray(y_test, np.int64)
            self.n_train, self.n_test, self.n_classes = len(y_train), len(y_test), n_classes
            x = torch.from_numpy(np.concatenate([x_train, x_test]).reshape(self.n_train + self.n_test, -1))
            self.x = x.to(torch.bfloat16 if precision == "bf16" else torch.float32).float()
            self.temperature, self.record = temperature, record
            self.name = f"centroid_T{temperature:g}" + ("_bf16" if precision == "bf16" else "")

        def fit_predict(self, subsets, seeds) -> Outputs:
            out = Outputs.empty(len(subsets), self.n_train, self.n_test)
            y = torch.from_numpy(np.concatenate([self.y_train, self.y_test]))
            for q, (subset, seed) in enumerate(zip(subsets, seeds)):
                onehot = torch.nn.functional.one_hot(y[subset], self.n_classes).float()
                means = onehot.T @ self.x[subset] / onehot.sum(0).clamp(min=1)[:, None]
                logits = -torch.cdist(self.x, means) ** 2 / self.temperature
                correct, prob, margin = scores_from_logits(logits[None], y)
                if self.record is not None:   # one pass over the subset: its examples' scores after it
                    self.record(0, subset[None], prob[:, subset], correct[:, subset], models=[seed])
                n = self.n_train
                out.put([q], Outputs(correct[:, :n], correct[:, n:], prob[:, :n], prob[:, n:], margin[:, :n],
                                     margin[:, n:]))
            return out

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 4)) * 2
    y_train, y_test = np.arange(60) % 3, np.arange(30) % 3
    x_train, x_test = centers[y_train] + rng.normal(size=(60, 4)), centers[y_test] + rng.normal(size=(30, 4))
    split = make_split("all", y_train, y_test, ["a", "b", "c"], dataset="toy", validation_size=0)
    save_split(split, tmp_path / "split.npz")
    task = stages.Task(x_train[split.train_idx], split.train_y, x_test[split.test_idx], split.test_y,
                       split.train_idx, split.test_idx, ["a", "b", "c"])
    study = {"dataset": "toy", "split": "all", "learner": "centroid", "features": "pixels", "t": 8, "seed": 0,
             "settings": {"temperature": 2.0}}
    shards = [tmp_path / "s0.npz", tmp_path / "s1.npz"]
    for path, (start, stop) in zip(shards, ((0, 4), (4, 8))):
        stages.shard_stage(study, task, start, stop, path, ratio=0.7, device="cpu", precision="bf16")
    with np.load(shards[0]) as z:
        assert z["learn_count"].shape == (4, 1, 60) and z["learn_count"].sum() == 4 * 42   # 42 = 70% of 60

    outputs = {name: tmp_path / f"{name}.out" for name in ("scores_csv", "scores_npz", "pairs", "influencers",
                                                           "convergence", "summary")}
    summary = stages.estimate_stage("toy_centroid", study, task, shards, outputs,
                                    influence={"threshold": 0.15, "mem_threshold": 0.25, "top_k": 2, "rows": "all"},
                                    precision={"half_width": 0.1, "fraction": 0.95}, device="cpu",
                                    training_precision="bf16")
    assert summary["learner_name"] == "centroid_T2_bf16" and summary["training_precision"] == "bf16"
    report_summary = tables.summary_table(tables.read_summaries({"toy_centroid": outputs["summary"]}),
                                          {"toy_centroid": tables.study_counts(outputs["scores_npz"], [0.25])})
    row = report_summary.set_index("study").loc["toy_centroid"]
    assert (row.learner, row.learner_name, row.training_precision) == ("centroid", "centroid_T2_bf16", "bf16")

    study_proxies_stage(shards, tmp_path / "split.npz", tmp_path / "proxies.csv", tmp_path / "proxies.npz")
    proxies = pd.read_csv(tmp_path / "proxies.csv")
    assert len(proxies) == 60 and proxies["index"].tolist() == split.train_idx.tolist()
    validation = validation_table({"toy_centroid": study}, {"toy_centroid": outputs["scores_csv"]},
                                  {"centroid_models": {"path": tmp_path / "proxies.csv", "dataset": "toy",
                                                       "kind": "learning speed", "study": "toy_centroid"}})
    assert set(validation.learner) == {"centroid"} and validation.same_models.all() and len(validation) >= 1


def test_a_dataset_added_to_the_config_alone_is_prepared_split_and_planned(data_root, tmp_path):
    """The dataset recipe's example: an IDX dataset named in the config and in an estimator study, nothing else;
    the workflow caches and splits it and plans its study and its data figures."""
    project = copy_project(tmp_path / "project")
    arrays = write_idx_dataset(tmp_path / "tiny", n_train=40, n_test=20, n_classes=4)
    extra = {"datasets": {"tiny": {"source": "idx", "path": str(tmp_path / "tiny"), "splits": ["all"],
                                   "expect": {"n_train": 40, "n_test": 20, "n_classes": 4}}},
             "influence": {"studies": {"tiny_knn": {"dataset": "tiny", "split": "all", "learner": "knn", "t": 4,
                                                    "shard_size": 4, "settings": {"k": 1}}}}}
    (project / "tiny.yaml").write_text(yaml.safe_dump(extra))
    config = ["--configfile", "tests/smoke/config.yaml", "tiny.yaml", "--config", f"data_root={data_root}"]

    code, out = snakemake("results/splits/tiny/all.npz", "--cores", "1", *config, cwd=project, timeout=600)
    assert code == 0, out[-3000:]
    from memgen.data import load_cache
    from memgen.plots import data_summary
    from memgen.splits import load_split

    cache = load_cache(project / "results/data/tiny.npz")
    assert np.array_equal(cache.y_train, arrays["train-labels-idx1-ubyte"]) and cache.x_train.shape == (40, 6, 5, 1)
    assert len(load_split(project / "results/splits/tiny/all.npz").train_idx) == 40
    assert data_summary({"tiny": project / "results/data/tiny.npz"}).dataset.tolist() == ["tiny"]

    code, out = snakemake("all", "-n", *config, cwd=project, timeout=600)
    assert code == 0, out[-3000:]
    for planned in ("results/influence/tiny_knn/summary.json", "results/figures/samples_tiny.png",
                    "results/tables/data_summary.csv"):
        assert planned in out
