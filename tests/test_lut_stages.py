"""Tests of the LUT study's workflow layer: job functions (memgen.lut.stages), tables with the document's published
numbers and verdicts (memgen.lut.tables), figures (memgen.lut.figures), the benchmark module (memgen.bench.lut)
and the multi-k Hamming k-NN of memgen.lut.baselines."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from memgen.lut import baselines as lb
from memgen.lut import tables as lt
from memgen.lut.stages import (TABLE1_METHODS, Task, run_layer_stats, run_pairwise_tasks, run_sweep_task,
                               run_table1_method, stratified_subset)
from memgen.bits import bit_image_shape, coding_name, parse_coding
from memgen.runtime import quick_device
from memgen.splits import Split

from conftest import REPO, bit_blobs


def split_of(y_train, y_test, classes=(0, 1), names=("a", "b")):
    """A Split over all examples of ``classes``, relabelled 0/1 (as memgen.splits makes pair splits)."""
    tr = np.flatnonzero(np.isin(y_train, classes))
    te = np.flatnonzero(np.isin(y_test, classes))
    relabel = lambda y: (np.asarray(y) == classes[1]).astype(np.int64)  # noqa: E731
    return Split(train_idx=tr, train_y=relabel(y_train[tr]), val_idx=tr[:0], val_y=tr[:0], test_idx=te,
                 test_y=relabel(y_test[te]), train_group=y_train[tr], test_group=y_test[te], n_classes=2,
                 class_names=list(names))


# ------------------------------------------------------------------------------------------ lut_study
def test_coding_names_round_trip_and_merge_identical_codings():
    assert coding_name({"scheme": "threshold", "threshold": 128}) == "threshold128"
    assert coding_name({"scheme": "thermometer", "bits": 1}) == "threshold128"   # same bits as the threshold
    assert coding_name({"scheme": "msb", "bits": 1, "threshold": 50}) == "threshold128"
    assert coding_name({"scheme": "thermometer", "bits": 4, "grey": True}) == "grey-thermometer4"
    for name in ("threshold100", "thermometer2", "msb3", "grey-threshold128"):
        assert coding_name(parse_coding(name)) == name
    assert parse_coding("msb3") == {"scheme": "msb", "bits": 3, "grey": False}
    with pytest.raises(ValueError, match="not a binarization name"):
        parse_coding("gray128")


def test_bit_image_shape():
    assert bit_image_shape((28, 28, 1), {"scheme": "threshold"}) == (28, 28, 1)
    assert bit_image_shape((32, 32, 3), {"scheme": "thermometer", "bits": 4}) == (32, 32, 12)
    assert bit_image_shape((32, 32, 3), {"scheme": "msb", "bits": 2, "grey": True}) == (32, 32, 2)


def test_stratified_subset_keeps_proportions_and_is_seeded():
    y = np.repeat([0, 1, 2], [600, 300, 100])
    idx = stratified_subset(y, 100, seed=3)
    assert len(idx) == 100 and np.all(np.diff(idx) > 0)
    assert np.bincount(y[idx]).tolist() == [60, 30, 10]
    np.testing.assert_array_equal(idx, stratified_subset(y, 100, seed=3))
    assert not np.array_equal(idx, stratified_subset(y, 100, seed=4))
    assert len(stratified_subset(y, 101, seed=0)) == 101
    np.testing.assert_array_equal(stratified_subset(y, None), np.arange(1000))
    np.testing.assert_array_equal(stratified_subset(y, 5000), np.arange(1000))


def test_task_indexes_the_split_and_caps_training_examples():
    x, c, xt, ct = bit_blobs(n=300, n_test=100, n_classes=3)
    split = split_of(c, ct, classes=(0, 2))
    task = Task(x, xt, split)
    assert task.n_train_full == len(split.train_idx) == len(task.y_train)
    np.testing.assert_array_equal(task.x_train, x[split.train_idx])
    np.testing.assert_array_equal(task.y_test, (ct[ct != 1] == 2).astype(int))
    capped = Task(x, xt, split, max_train=50, seed=1)
    assert len(capped.y_train) == 50 and capped.n_train_full == len(split.train_idx)
    assert set(np.unique(capped.y_train)) == {0, 1}


def test_quick_device_auto_without_a_gpu_driver_is_the_cpu(monkeypatch):
    assert quick_device("cpu") == "cpu"
    from memgen import runtime

    monkeypatch.setattr(runtime.Path, "exists", lambda self: False)
    assert quick_device("auto") == "cpu"


def test_table1_jobs_give_rows_per_seed_and_both_knn_rows():
    x, y, xt, yt = bit_blobs(n=300, n_test=100)
    task = Task(x, xt, split_of(y, yt))
    common = dict(image_shape=(8, 8, 1), seeds=[0, 1], memorization_k=4, width=16, depth=2, knn_ks=(5, 1),
                  knn_train_queries=50, threads=1, dataset="toy")
    for method, job in TABLE1_METHODS.items():
        if method in ("conv_net", "rf300"):
            continue                                          # conv net below with its own sizes; rf300 as rf10
        rows = run_table1_method(method, task, **common)
        if method == "knn":
            assert rows["method"].tolist() == ["knn5", "knn1"] and rows["n_train_eval"].tolist() == [50, 50]
            assert rows.set_index("method").loc["knn1", "train_acc"] == 1.0    # each point is its own neighbour
        elif job.seeded:
            assert rows["seed"].tolist() == [0, 1] and (rows["method"] == method).all()
        else:
            assert len(rows) == 1 and rows["seed"].isna().all()
        assert (rows["dataset"] == "toy").all() and rows["n_train_full"].eq(300).all()
        if method == "random_guess":
            assert rows["test_acc"].between(0.35, 0.65).all()
        else:
            assert rows["test_acc"].gt(0.85).all(), method                      # the blobs are easy
        json.loads(rows["settings"].iloc[0])
    mem = run_table1_method("memorization", task, **common)
    assert mem["k"].tolist() == [4, 4] and json.loads(mem["settings"].iloc[0])["width"] == 16
    with pytest.raises(ValueError, match="unknown Table 1 method 'svm'"):
        run_table1_method("svm", task, **common)


def test_table1_methods_are_the_schema_choices():
    import yaml

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "lut.schema.yaml").read_text())
    methods = schema["properties"]["table1"]["properties"]["methods"]
    assert methods["items"]["enum"] == list(TABLE1_METHODS) == methods["default"]


def test_table1_conv_net_job_on_bit_images():
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 240)
    img = np.zeros((240, 28, 28), np.uint8)
    img[y == 1, 4:24, 12:16] = 1
    img[y == 0, 12:16, 4:24] = 1
    bits = img.reshape(240, -1)
    task = Task(bits[:160], bits[160:], split_of(y[:160], y[160:]))
    rows = run_table1_method("conv_net", task, image_shape=(28, 28, 1), seeds=[0], threads=1, device="cpu",
                             conv_net={"epochs": 3, "batch_size": 32})
    assert rows["method"].tolist() == ["conv_net"] and rows["test_acc"].iloc[0] > 0.9


def test_sweep_pairwise_and_layer_stats_rows():
    x, c, xt, ct = bit_blobs(n=600, n_test=300, n_classes=3)
    task = Task(x, xt, split_of(c, ct))
    rows = run_sweep_task(task, ks=[2, 4], depths=[1, 2], width=16, seeds=[0], threads=1, log=lambda *_: None,
                          labels="real")
    assert rows[["depth", "k"]].values.tolist() == [[1, 2], [1, 4], [2, 2], [2, 4]]
    assert (rows["labels"] == "real").all() and rows["fit_s"].gt(0).all()
    splits = {"pair0v1": split_of(c, ct, (0, 1), ("A", "B")), "pair1v2": split_of(c, ct, (1, 2), ("B", "C"))}
    pairs = run_pairwise_tasks(x, xt, splits, ks=[4], depths=[2], width=16, seeds=[0], threads=1,
                               log=lambda *_: None, dataset="toy")
    assert pairs[["task", "a", "b", "name_a", "name_b"]].values.tolist() == [["pair0v1", 0, 1, "A", "B"],
                                                                            ["pair1v2", 1, 2, "B", "C"]]
    stats = run_layer_stats(task, k=4, width=16, depth=2, seeds=[0, 1], threads=1)
    assert stats["layer"].tolist() == [0, 1, 2, 3] * 2 and stats["count"].tolist()[:4] == [64, 16, 16, 1]
    assert (stats.loc[stats["layer"] == 3, "mean"].to_numpy() == stats["train_acc"].unique()).all()


# ------------------------------------------------------------------------------------------ k-NN
def test_hamming_knn_matches_exact_l2_search():
    from memgen.knn import search

    x, y, xt, yt = bit_blobs(n=300, n_test=50, d=70)                 # 70 bits: packing pads to whole bytes
    idx = lb.hamming_search(xt, x, 5)
    dist, _ = search(xt.astype(np.float32), x.astype(np.float32), 5)
    ham = (xt[:, None, :] != x[idx]).sum(-1)
    np.testing.assert_array_equal(ham, dist)                        # same distances (ties may reorder)
    rows = lb.knn_many(x, y, xt, yt, ks=(5, 1))
    order = np.argsort(((xt[:, None, :] != x[None]).sum(-1)), axis=1, kind="stable")   # brute-force Hamming
    for row in rows:
        votes = np.stack([np.bincount(r, minlength=2) for r in y[order[:, :row["k"]]]])
        assert row["test_acc"] == pytest.approx(np.mean(votes.argmax(1) == yt), abs=0.02)   # ties may differ
    assert rows[1]["train_acc"] == 1.0 and rows[1]["n_train_eval"] == 300
    sub = lb.knn_many(x, y, xt, yt, ks=(1,), train_queries=40, seed=2)[0]
    assert sub["n_train_eval"] == 40 and sub["train_acc"] == 1.0
    with pytest.raises(ValueError, match="between 1 and the number"):
        lb.hamming_search(xt, x[:3], 5)


# ------------------------------------------------------------------------------------------ tables
def raw_table1():
    rows = []
    for dataset, k in (("mnist", 12), ("cifar10", 8)):
        for method, train, test in (("random_guess", 0.5, 0.49), ("knn5", 0.99, 0.95), ("knn1", 1.0, 0.96),
                                    ("memorization", 0.98, 0.9), ("conv_net", 0.99, 0.99), ("rf300", 1.0, 0.7)):
            for seed in ((0, 1) if method in ("memorization", "conv_net") else (None,)):
                rows.append({"dataset": dataset, "method": method, "train_acc": train + (seed or 0) * 0.01,
                             "test_acc": test, "seed": seed, "n_train": 1000 if method == "conv_net" else 60000,
                             "n_train_full": 60000, "n_train_eval": 5000 if method.startswith("knn") else 60000,
                             "n_test": 10000, "k": k if method == "memorization" else None})
    return pd.DataFrame(rows)


def test_table1_has_published_beside_measured():
    t = lt.build_table1(raw_table1())
    assert t["dataset"].iloc[0] == "mnist" and t["split"].tolist()[:2] == ["train", "test"]
    assert t[t["dataset"] == "mnist"]["method_key"].drop_duplicates().tolist() == [
        "conv_net", "knn5", "knn1", "rf300", "memorization", "random_guess"]            # the document's order
    row = lambda d, m, s: t[(t.dataset == d) & (t.method_key == m) & (t.split == s)].iloc[0]  # noqa: E731
    assert row("mnist", "knn5", "test")["published"] == 0.97 and row("mnist", "knn5", "test")["measured"] == 0.95
    assert row("cifar10", "rf300", "test")["published"] == 0.66
    assert np.isnan(row("mnist", "rf300", "test")["published"])                   # the document has no such row
    mem = row("mnist", "memorization", "train")
    assert mem["method"] == "memorization (k=12)" and mem["published"] == 0.99
    assert mem["measured"] == pytest.approx(0.985) and mem["n_seeds"] == 2 and mem["measured_sd"] > 0
    assert np.isnan(row("cifar10", "memorization", "test")["published"])         # k=8, the document used 10
    assert "trained on 1000 of 60000" in row("mnist", "conv_net", "test")["note"]
    assert "training accuracy on 5000" in row("mnist", "knn1", "train")["note"]
    assert row("mnist", "knn1", "test")["note"] == ""


def test_table2_published_rows_and_test_accuracy():
    rng = np.random.default_rng(0)
    rows = []
    for seed in (0, 1):
        for layer, count in enumerate([784, 1024, 1024, 1024, 1024, 1024, 1]):
            accs = rng.uniform(0.5, 0.9, count)
            rows.append({"layer": layer, "count": count, "mean": accs.mean(), "std": accs.std(), "min": accs.min(),
                         "max": accs.max(), "k": 8, "seed": seed, "train_acc": 0.89, "test_acc": 0.86 + seed / 100,
                         "n_train": 60000, "n_test": 10000})
    t = lt.build_table2(pd.DataFrame(rows))
    assert len(t) == 7 * 5 + 1
    pub = t.set_index(["layer", "statistic"])["published"]
    assert pub[("1", "std")] == 0.0403 and pub[("0", "count")] == 784 and pub[("6", "max")] == 0.89
    last = t.iloc[-1]
    assert last["layer"] == "network" and last["published"] == 0.87 and last["measured"] == pytest.approx(0.865)
    t3 = lt.build_table2(pd.DataFrame(rows).assign(k=6))
    assert t3["published"].isna().all()                                            # another k: nothing to compare


def test_table3_and_ext_depth_published_values():
    rows = [{"dataset": "mnist", "labels": labels, "k": k, "depth": depth, "seed": 0, "train_acc": 0.9,
             "test_acc": 0.8, "n_train": 60000, "n_test": 10000}
            for labels in ("real", "random") for k in (2, 10, 11) for depth in (3, 5)]
    t = lt.build_table3(pd.DataFrame(rows), ks=[2, 10])
    assert t["k"].unique().tolist() == [2, 10] and len(t) == 8
    pub = t.set_index(["k", "labels", "split"])["published"]
    assert pub[(10, "real", "test")] == 0.89 and pub[(10, "random", "train")] == 0.69
    assert pub[(2, "random", "test")] == 0.53
    d = lt.build_ext_depth(pd.DataFrame(rows)[lambda r: r.labels == "real"])
    assert d.loc[(d.k == 10) & (d.depth == 5) & (d.split == "test"), "published"].item() == 0.89
    assert d.loc[d.depth == 3, "published"].isna().all()
    assert d.loc[d.k == 11, "published"].isna().all()


def test_table4_orientation_matches_the_document():
    rows = [{"dataset": "cifar10", "a": a, "b": b, "name_a": f"c{a}", "name_b": f"c{b}", "k": 10, "depth": 5,
             "seed": 0, "train_acc": 0.9 + a / 100, "test_acc": 0.7 + b / 100, "n_train": 10000, "n_test": 2000}
            for a in range(10) for b in range(a + 1, 10)]
    t = lt.build_table4(pd.DataFrame(rows))
    cat_dog = t[(t.a == 3) & (t.b == 5)].set_index("split")
    assert cat_dog.loc["test", "published"] == 0.61 and cat_dog.loc["train", "published"] == 0.96
    plane_ship = t[(t.a == 0) & (t.b == 8)].set_index("split")
    assert plane_ship.loc["test", "published"] == 0.71 and plane_ship.loc["train", "published"] == 0.93
    published, measured = lt.table4_matrices(t)
    np.testing.assert_allclose(published.values, lt.PUBLISHED_TABLE4)
    assert measured.loc["c5", "c3"] == pytest.approx(0.93) and measured.loc["c3", "c5"] == pytest.approx(0.75)
    assert lt.build_table4(pd.DataFrame(rows).assign(dataset="mnist"))["published"].isna().all()
    assert lt.build_table4(pd.DataFrame(rows), k=8).empty


def test_figure1_joins_the_baseline_depth_into_the_depth_panel():
    base = dict(a=0, b=1, seed=0, n_train=10, n_test=10, train_acc=0.9, test_acc=0.8, gap=0.1)
    k_rows = pd.DataFrame([{**base, "task": f"pair0v{t}", "k": k, "depth": 5} for t in (1, 2) for k in (2, 4)])
    depth_rows = pd.DataFrame([{**base, "task": f"pair0v{t}", "k": 2, "depth": d} for t in (1, 2) for d in (1, 8)])
    f = lt.build_figure1(k_rows, depth_rows, depth=5, depth_k=2, depths=[1, 5, 8])
    assert len(f[f.panel == "k"]) == 4
    assert sorted(f.loc[f.panel == "depth", "depth"].unique()) == [1, 5, 8]
    assert sorted(lt.build_figure1(k_rows, depth_rows, 5, 2, depths=[1, 8]).query("panel == 'depth'").depth.unique()) == [1, 8]
    stats = lt.gap_stats(f, "depth")
    assert stats["tasks"].tolist() == [2, 2, 2]
    assert lt.build_figure1(k_rows, None, 5)["panel"].eq("k").all()


def test_ext_bits_filters_and_publishes_table1_memorization():
    rows = [{"dataset": "cifar10", "coding": c, "labels": labels, "k": k, "depth": 5, "seed": 0, "train_acc": 0.8,
             "test_acc": 0.6, "n_train": 10000, "n_test": 2000}
            for c in ("threshold128", "thermometer2", "thermometer4") for labels in ("real", "random") for k in (8, 10)]
    t = lt.build_ext_bits(pd.DataFrame(rows), ks=[10], codings=["threshold128", "thermometer2"])
    assert set(t["coding"]) == {"threshold128", "thermometer2"} and set(t["k"]) == {10}
    pub = t.dropna(subset=["published"])
    assert pub[["coding", "labels", "split", "published"]].values.tolist() == [
        ["threshold128", "real", "train", 0.79], ["threshold128", "real", "test", 0.63]]
    assert t.loc[t.coding == "thermometer2", "bits"].eq(2).all()


def test_compare_verdict_and_wide():
    t = pd.DataFrame({"k": [1, 1, 2, 2], "split": ["train", "test"] * 2, "published": [0.5, 0.6, 0.7, np.nan],
                      "measured": [0.51, 0.7, 0.69, 0.8]})
    c = lt.compare(t)
    assert c["n"] == 3 and c["within"] == 2 and c["max_abs"] == pytest.approx(0.1)
    assert c["worst"]["measured"] == 0.7
    assert "partly reproduced" in lt.verdict(t, "T") and "2 of 3" in lt.verdict(t, "T")
    assert "no published number" in lt.verdict(t.assign(published=np.nan), "T")
    assert "within ±3 points" in lt.verdict(t, "T") and "largest 10.0" in lt.verdict(t, "T")
    w = lt.wide(t, ["k"])
    assert w.columns.tolist() == ["k", "published train", "measured train", "difference train", "published test",
                                  "measured test", "difference test"]
    assert w.loc[1, "measured test"] == 0.8 and np.isnan(w.loc[1, "difference test"])
    assert w.loc[0, "difference test"] == pytest.approx(0.1)


def test_figures_are_drawn(tmp_path):
    from memgen.lut import figures as lf

    t1 = lt.build_table1(raw_table1())
    lf.plot_table1(t1, tmp_path / "t1.png")
    rows = [{"dataset": "cifar10", "a": a, "b": b, "name_a": f"c{a}", "name_b": f"c{b}", "k": 10, "depth": 5,
             "seed": 0, "train_acc": 0.95, "test_acc": 0.75, "n_train": 10000, "n_test": 2000}
            for a in range(10) for b in range(a + 1, 10)]
    lf.plot_table4(lt.build_table4(pd.DataFrame(rows)), tmp_path / "t4.png")
    assert (tmp_path / "t1.png").stat().st_size > 1000 and (tmp_path / "t4.png").stat().st_size > 1000


# ------------------------------------------------------------------------------------------ benchmark module
def test_lut_bench_quick_on_a_small_cache(tmp_path):
    from memgen.bench.lut import run_benchmark, summary
    from memgen.data import Dataset, save_cache

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 1500)
    x = (rng.random((1500, 28, 28)) < 0.2 + y[:, None, None] / 20).astype(np.uint8) * 255
    cache = tmp_path / "mnist.npz"
    save_cache(Dataset(x[:1000, ..., None], y[:1000], x[1000:, ..., None], y[1000:], [str(i) for i in range(10)]),
               cache)
    res = run_benchmark(cache, quick=True, threads=1)
    assert res["plain_vs_fast"]["identical_tables"] is True
    assert res["speed_k10"]["n_train"] == 1000 and res["memory_k16"]["k"] == 16
    assert all(v is None for v in res["goals"].values())                            # goals need the full run
    assert "ratio plain / fast" in summary(res, 1)
