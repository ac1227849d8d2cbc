"""The memorization study's workflow stages on a small generated task: inputs by feature kind, exports in the
dataset's original order, the last-layer and consistency tables, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from memgen.influence import stages, tables
from memgen.influence.estimator import removal_difference, t_for_precision, threshold_counts
from memgen.data import Dataset, save_cache
from memgen.runtime import save_npz
from memgen.splits import make_split, save_split

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture
def files(tmp_path):
    """A 10-class image cache, its 'full' split (with a hold-out) and matching 'embeddings' of that split."""
    rng = np.random.default_rng(0)
    y_train, y_test = np.arange(300) % 10, np.arange(60) % 10
    x_train = rng.integers(0, 256, (300, 8, 8, 1), dtype=np.uint8)
    x_test = rng.integers(0, 256, (60, 8, 8, 1), dtype=np.uint8)
    save_cache(Dataset(x_train, y_train, x_test, y_test, [str(c) for c in range(10)]), tmp_path / "cache.npz")
    split = make_split("full", y_train, y_test, [str(c) for c in range(10)], dataset="toy", validation_size=50)
    save_split(split, tmp_path / "split.npz")
    centers = rng.normal(size=(10, 4))
    emb = {"train": centers[split.train_y] + 0.3 * rng.normal(size=(len(split.train_y), 4)),
           "test": centers[split.test_y] + 0.3 * rng.normal(size=(len(split.test_y), 4))}
    save_npz(tmp_path / "embeddings.npz", train_emb=emb["train"].astype(np.float32), train_ids=split.train_idx,
             test_emb=emb["test"].astype(np.float32), test_ids=split.test_idx, train_y=split.train_y,
             test_y=split.test_y, test_logits=np.eye(10)[split.test_y].astype(np.float32))
    return {"cache": tmp_path / "cache.npz", "split": tmp_path / "split.npz", "embeddings": tmp_path / "embeddings.npz",
            "split_obj": split, "x_train": x_train, "dir": tmp_path}


def test_task_inputs_follow_the_split_and_the_feature_kind(files):
    sp = files["split_obj"]
    pixels = stages.load_task({"features": "pixels"}, files["cache"], files["split"])
    assert np.array_equal(pixels.train_index, sp.train_idx) and len(pixels.train_index) == 250
    assert np.array_equal(pixels.x_train, files["x_train"][sp.train_idx])
    emb = stages.load_task({"features": "embeddings"}, files["cache"], files["split"], files["embeddings"])
    assert emb.x_train.shape == (250, 4) and np.array_equal(emb.y_train, sp.train_y)
    bits = stages.load_task({"features": "bits"}, files["cache"], files["split"],
                        binarization={"scheme": "threshold", "threshold": 128})
    assert set(np.unique(bits.x_train)) <= {0, 1} and bits.x_train.shape == (250, 64)
    with pytest.raises(ValueError, match="lut.binarize"):
        stages.load_task({"features": "bits"}, files["cache"], files["split"])


def test_embeddings_of_another_split_are_refused(files, tmp_path):
    with np.load(files["embeddings"]) as e:
        arrays = {k: e[k] for k in e.files}
    arrays["train_ids"] = arrays["train_ids"][::-1]
    save_npz(tmp_path / "other.npz", **arrays)
    with pytest.raises(ValueError, match="another split.*rerun embed"):
        stages.load_task({"features": "embeddings"}, files["cache"], files["split"], tmp_path / "other.npz")


def test_unknown_learner_is_named(files):
    task = stages.load_task({"features": "pixels"}, files["cache"], files["split"])
    with pytest.raises(ValueError, match="unknown learner 'svm'"):
        stages.build_learner({"learner": "svm"}, task)


def test_shards_estimate_and_exports_use_the_dataset_order(files, tmp_path):
    study = {"dataset": "toy", "split": "full", "learner": "knn", "features": "embeddings", "t": 8, "seed": 0,
             "settings": {"k": 1}}
    task = stages.load_task(study, files["cache"], files["split"], files["embeddings"])
    shards = [tmp_path / "a.npz", tmp_path / "b.npz"]
    stages.shard_stage(study, task, 0, 5, shards[0], ratio=0.7, device="cpu")
    stages.shard_stage(study, task, 5, 8, shards[1], ratio=0.7, device="cpu")
    names = ("scores_csv", "scores_npz", "pairs", "influencers", "convergence", "summary")
    outputs = {n: tmp_path / f"{n}.out" for n in names}
    influence = {"threshold": 0.15, "mem_threshold": 0.25, "top_k": 2, "rows": "all"}
    precision = {"half_width": 0.1, "fraction": 0.95}
    summary = stages.estimate_stage("toy_knn", study, task, shards, outputs, influence=influence,
                                    precision=precision, device="cpu")
    scores = pd.read_csv(outputs["scores_csv"])
    assert np.array_equal(scores["index"], files["split_obj"].train_idx)      # original dataset indices
    assert np.array_equal(scores["label"], files["split_obj"].train_y)
    assert summary["t"] == 8 and summary["n_train"] == 250
    assert summary["n_mem_ge_0.25"] == int((scores["mem"] >= 0.25).sum())
    assert summary["n_mem_lower_ge_0.25"] == int((scores["mem_lo"] >= 0.25).sum()) < summary["n_mem_ge_0.25"]
    k_in = np.rint(scores["in_acc"] * scores["n_in"])
    counts = threshold_counts(scores["mem"], scores["mem_lo"], k_in, scores["n_in"], scores["n_correct"], 8, [0.25])
    assert summary["false_n_mem_ge_0.25"] == pytest.approx(counts["false_count"].iloc[0])
    assert summary["false_n_mem_lower_ge_0.25"] == pytest.approx(counts["false_count_lower"].iloc[0])
    assert summary["false_n_mem_lower_ge_0.25"] < summary["false_n_mem_ge_0.25"] <= summary["n_mem_ge_0.25"]
    # the precision target of the config at the quoted threshold, from the held-out counts
    assert summary["t_for_precision"] == t_for_precision(scores["n_correct"] - k_in, scores["n_out"], 0.7, 0.25, 0.1,
                                                         0.95) > 8
    assert json.loads(outputs["summary"].read_text())["learner_name"] == "knn_k1_l2_d4"
    top = pd.read_csv(outputs["influencers"])
    assert set(top["test_index"]) == set(files["split_obj"].test_idx) and len(top) == 2 * 60
    with pytest.raises(Exception, match="models 8..11"):                       # t larger than the shards cover
        stages.estimate_stage("toy_knn", {**study, "t": 12}, task, shards, outputs, influence=influence,
                              precision=precision, device="cpu")


def test_last_layer_table_puts_published_beside_measured():
    summaries = pd.DataFrame([{"study": "lin", "test_acc_mean": 0.9, "n_mem_ge_0.25": 12, "n_mem_lower_ge_0.25": 3,
                               "false_n_mem_ge_0.25": 8.0, "false_n_mem_lower_ge_0.25": 0.2},
                              {"study": "net", "test_acc_mean": 0.8, "n_mem_ge_0.25": 900, "n_mem_lower_ge_0.25": 700,
                               "false_n_mem_ge_0.25": 50.0, "false_n_mem_lower_ge_0.25": 4.0}])
    table = tables.last_layer_table(summaries, "lin", "net", {"test_accuracy": 0.95}).set_index("quantity")
    assert table.loc["examples with mem >= 0.25, linear models", "published (CIFAR-100, ResNet50)"] == 38
    # the count quoted is the one whose interval clears the threshold, the false discoveries and point count in the note
    assert table.loc["examples with mem >= 0.25, full networks", "measured"] == 700
    assert table.loc["examples with mem >= 0.25, linear models", "measured"] == 3
    note = table.loc["examples with mem >= 0.25, linear models", "note"]
    assert "0.2 of them expected false (point count 12, 8 of them expected false)" in note
    assert table.loc["test accuracy, backbone trained on 100% (%)", "measured"] == pytest.approx(95)
    alone = tables.last_layer_table(summaries, "lin", None, None).set_index("quantity")
    assert np.isnan(alone.loc["examples with mem >= 0.25, full networks", "measured"])
    assert alone.loc["examples with mem >= 0.25, full networks", "note"] == "not configured at this preset"


def _scores(tmp_path, name, mem, seed, t=16):
    np.savez(tmp_path / f"{name}.npz", mem=mem, seed=np.int64(seed), ratio=np.float64(0.7), t=np.int64(t))
    pd.DataFrame({"train_pos": [0], "test_pos": [0], "mem": [0.9], "infl": [0.5]}).to_csv(tmp_path / f"{name}.csv")
    return tmp_path / f"{name}.npz", tmp_path / f"{name}.csv"


STUDY = {"dataset": "toy", "split": "all", "learner": "linear", "features": "embeddings", "settings": {"epochs": 2}}


def test_consistency_needs_the_same_training_set(tmp_path):
    files = {name: _scores(tmp_path, name, np.linspace(0, 1, n), 0) for name, n in (("a", 10), ("b", 10), ("c", 12))}
    scores, pairs = {k: v[0] for k, v in files.items()}, {k: v[1] for k, v in files.items()}
    studies = {k: STUDY for k in "abc"}
    same = tables.consistency_table([("a", "b")], scores, pairs, [0.5], [0.15], studies)
    row = same[same.kind == "mem"].iloc[0]
    assert row.J_mem == 1.0 and row.D_mem == 0.0
    assert same[same.kind == "infl"].iloc[0].J_infl == 1.0
    with pytest.raises(ValueError, match="different training sets"):
        tables.consistency_table([("a", "c")], scores, pairs, [0.5], [0.15], studies)


def test_consistency_says_when_studies_share_subsets(tmp_path):
    """Two studies with the same seed train on the same subsets: the table must say so."""
    rng = np.random.default_rng(0)
    mem = rng.uniform(-0.2, 1, 200)
    seeds = {"lin": 5, "lin_rerun": 6, "knn": 5, "knn_indep": 7}
    files = {k: _scores(tmp_path, k, np.clip(mem + 0.1 * rng.normal(size=200), -1, 1), s) for k, s in seeds.items()}
    scores, pairs = {k: v[0] for k, v in files.items()}, {k: v[1] for k, v in files.items()}
    studies = {"lin": STUDY, "lin_rerun": {**STUDY, "seed": 6, "settings": {"epochs": 2, "order_seed": 1}},
               "knn": {**STUDY, "learner": "knn", "settings": {"k": 1}},
               "knn_indep": {**STUDY, "learner": "knn", "settings": {"k": 1}}}
    config = [("lin", "lin_rerun"), ("lin", "knn"), ("lin", "knn_indep")]
    table = tables.consistency_table(config, scores, pairs, [0.25, 0.5], [0.15], studies)
    by = table[table.kind == "mem"].set_index(["a", "b", "theta"])
    assert by.loc[("lin", "knn", 0.25), "shared_subsets"] and by.loc[("lin", "knn", 0.25), "seed_b"] == 5
    assert not by.loc[("lin", "knn_indep", 0.25), "shared_subsets"]
    assert not by.loc[("lin", "lin_rerun", 0.25), "shared_subsets"]
    assert by.loc[("lin", "lin_rerun", 0.5), "same_algorithm"] and not by.loc[("lin", "knn", 0.5), "same_algorithm"]


def test_each_side_has_its_own_noise_floor_and_the_worse_one_judges(tmp_path):
    """(mlp, knn): the floor of each side is the independent same-algorithm pair of that side's algorithm at its t,
    (mlp, mlp_rerun) and (knn, knn_rerun), not the first such pair of the task; the judged floor is the worse of
    the two (smaller J, larger D).  A k-NN pair at another t is never borrowed: a side without a pair at its t
    gets an empty floor and a note."""
    rng = np.random.default_rng(1)
    base = rng.uniform(-0.2, 1, 400)
    noise = {"mlp": 0.3, "mlp_rerun": 0.3, "knn": 0.02, "knn_rerun": 0.02, "knn_t64": 0.02, "knn_t64_rerun": 0.02}
    ts = {"knn_t64": 64, "knn_t64_rerun": 64}
    files = {}
    for i, (k, sd) in enumerate(noise.items()):
        files[k] = _scores(tmp_path, k, np.clip(base + sd * rng.normal(size=400), -1, 1), i, t=ts.get(k, 16))
    scores, pairs = {k: v[0] for k, v in files.items()}, {k: v[1] for k, v in files.items()}
    mlp, knn = {**STUDY, "learner": "mlp", "settings": {}}, {**STUDY, "learner": "knn", "settings": {"k": 1}}
    studies = {"mlp": mlp, "mlp_rerun": mlp, "knn": knn, "knn_rerun": knn, "knn_t64": knn, "knn_t64_rerun": knn}
    config = [("knn_t64", "knn_t64_rerun"), ("knn", "knn_rerun"), ("mlp", "mlp_rerun"), ("mlp", "knn"),
              ("mlp", "knn_t64")]
    table = tables.consistency_table(config, scores, pairs, [0.3], [0.15], studies)
    by = table[table.kind == "mem"].set_index(["a", "b"])
    row = by.loc[("mlp", "knn")]
    assert (row.floor_a, row.floor_b) == ("mlp vs mlp_rerun", "knn vs knn_rerun")
    assert row.J_mem_floor_a == by.loc[("mlp", "mlp_rerun"), "J_mem"]
    assert row.J_mem_floor_b == by.loc[("knn", "knn_rerun"), "J_mem"]
    assert row.J_mem_floor_a < row.J_mem_floor_b and row.D_mem_floor_a > row.D_mem_floor_b   # the MLP is noisier
    assert row.J_mem_floor == row.J_mem_floor_a and row.D_mem_floor == row.D_mem_floor_a
    assert row.floor_note == ""
    # knn_t64's own pair is at its t; mlp's floor stays mlp's
    other = by.loc[("mlp", "knn_t64")]
    assert other.floor_b == "knn_t64 vs knn_t64_rerun" and other.J_mem_floor_b == by.loc[("knn_t64", "knn_t64_rerun"),
                                                                                         "J_mem"]
    lone = tables.consistency_table([("mlp", "knn"), ("knn", "knn_rerun")], scores, pairs, [0.3], [0.15], studies)
    row = lone[lone.kind == "mem"].set_index(["a", "b"]).loc[("mlp", "knn")]
    assert row.floor_a == "" and np.isnan(row.J_mem_floor_a) and np.isnan(row.J_mem_floor)
    assert row.floor_b == "knn vs knn_rerun" and "no independent same-algorithm pair of mlp at t = 16" in row.floor_note


def test_removal_marks_frozen_representations_and_varies_linear_trials(files, tmp_path):
    """Removal on embeddings refits only the linear layer (the table must say so); its trials train with
    different batch orders, so the memorized rows differ between trials, while a k-NN's cannot."""
    task = stages.load_task({"features": "embeddings"}, files["cache"], files["split"], files["embeddings"])
    mem = np.where(np.arange(len(task.y_train)) % 5 == 0, 0.9, 0.0)
    np.savez(tmp_path / "scores.npz", mem=mem)
    rows = {}
    for learner, settings in (("linear", {"epochs": 2, "batch_size": 16, "lr": 0.5}), ("knn", {"k": 3})):
        study = {"learner": learner, "features": "embeddings", "seed": 0, "settings": settings}
        stages.removal_stage(study, task, tmp_path / "scores.npz", tmp_path / f"{learner}.csv", thetas=[0.5],
                             trials=3, device="cpu")
        rows[learner] = pd.read_csv(tmp_path / f"{learner}.csv")
    lin, knn = rows["linear"], rows["knn"]
    assert not lin.representation_retrained.any() and lin.seeded_trials.all() and not knn.seeded_trials.any()
    assert lin[lin.kind == "memorized"].test_acc.nunique() > 1            # batch order differs per trial
    assert knn[knn.kind == "memorized"].test_acc.nunique() == 1
    # the linear probe's difference interval has the spread of both kinds' trials
    d = removal_difference(lin).iloc[0]
    mem_acc, rand = (100 * lin.loc[lin.kind == k, "test_acc"].to_numpy() for k in ("memorized", "random"))
    assert d["difference"] == pytest.approx(mem_acc.mean() - rand.mean()) and d["trials"] == 3
    assert d["lo"] < d["difference"] < d["hi"]
