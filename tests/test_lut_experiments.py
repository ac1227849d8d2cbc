"""Tests of the LUT experiment helpers (Tables 2-4, Figure 1) and the Table 1 baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memgen import lut_baselines as lb
from memgen.lut import LUTNetwork
from memgen.lut_experiments import evaluate, gap_summary, layer_stats, pairwise, pairwise_matrix, sweep, table3

from conftest import bit_blobs


def test_layer_stats_table2():
    x, y, _, _ = bit_blobs()
    net = LUTNetwork(4, (32, 16), seed=0).fit(x, y)
    t = layer_stats(net, x, y)
    assert t["layer"].tolist() == [0, 1, 2, 3] and t["count"].tolist() == [64, 32, 16, 1]
    per_bit = (x == y[:, None]).mean(0)
    assert t.loc[0, "mean"] == pytest.approx(per_bit.mean()) and t.loc[0, "min"] == pytest.approx(per_bit.min())
    assert t.loc[1, "std"] == pytest.approx(net.lut_train_accuracy[0].std())
    assert t.loc[3, "mean"] == pytest.approx(net.train_accuracy)
    assert (t["min"] <= t["mean"]).all() and (t["mean"] <= t["max"]).all()


def test_sweep_and_table3():
    x, y, xt, yt = bit_blobs()
    real = sweep(x, y, xt, yt, ks=(2, 6), depths=(2,), width=32, labels="real")
    y_rand = np.random.default_rng(1).permutation(y)
    rand = sweep(x, y_rand, xt, yt, ks=(2, 6), depths=(2,), width=32, labels="random")
    assert real[["k", "depth", "width", "labels"]].values.tolist() == [[2, 2, 32, "real"], [6, 2, 32, "real"]]
    assert (real["test_acc"] > 0.8).all()                                    # the blobs are easy
    assert (rand["test_acc"] < 0.7).all() and (rand["train_acc"] > rand["test_acc"]).all()
    np.testing.assert_allclose(real["gap"], real["train_acc"] - real["test_acc"])
    t3 = table3(real, rand)
    assert list(t3.index) == [2, 6] and t3.loc[6, ("random", "train_acc")] == rand.loc[1, "train_acc"]


def test_pairwise_rows_matrix_and_gap_summary():
    x, c, xt, ct = bit_blobs(n=600, n_test=300, n_classes=4)
    rows = pairwise(x, c, xt, ct, k=4, widths=(16,), class_names=list("ABCD"))
    assert len(rows) == 6 and rows[["a", "b"]].values.tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    first = rows.iloc[0]
    mask = (c == 0) | (c == 1)
    assert first["n_train"] == mask.sum()
    direct = evaluate(x[mask], (c[mask] == 1).astype(int), xt[(ct == 0) | (ct == 1)],
                      (ct[(ct == 0) | (ct == 1)] == 1).astype(int), k=4, widths=(16,))
    assert first["test_acc"] == direct["test_acc"] and first["train_acc"] == direct["train_acc"]
    m = pairwise_matrix(rows, list("ABCD"))
    assert m.loc["B", "A"] == first["train_acc"] and m.loc["A", "B"] == first["test_acc"]
    assert np.isnan(np.diag(m.values)).all()
    summary = gap_summary(pd.concat([rows.assign(k=4), rows.assign(k=8, gap=rows["gap"] + 0.1)]), by="k")
    assert summary["count"].tolist() == [6, 6]
    assert summary.loc[1, "mean"] == pytest.approx(summary.loc[0, "mean"] + 0.1)


def test_baselines_beat_chance_and_random_guess_does_not():
    x, y, xt, yt = bit_blobs(n=500, n_test=300)
    skip = ("conv net", "random forest (300 trees)")                        # slow; covered elsewhere / same code
    table = lb.table1(x, y, xt, yt, methods=[m for m in lb.METHODS if m not in skip],
                      options={"memorization": {"k": 6, "widths": (64, 64)}, "random_forest": {"n_jobs": 1}})
    rows = table.set_index("method")
    assert set(rows.index) == {m for m in lb.METHODS if m not in (*skip, "memorization")} | {"memorization (k=6)"}
    for method, row in rows.iterrows():
        if method == "random guess":
            assert 0.35 < row["test_acc"] < 0.65
        else:
            assert row["test_acc"] > 0.85, method
    assert rows.loc["1-nearest neighbor", "train_acc"] == 1.0                  # each point is its own neighbour
    assert table["test_acc"].is_monotonic_decreasing


def test_knn_votes_by_majority():
    keys = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=np.uint8)
    labels = np.array([0, 0, 1, 1])
    res = lb.knn(keys, labels, np.array([[0, 0, 0], [1, 1, 1]], np.uint8), np.array([0, 1]), k=3)
    assert res["test_acc"] == 1.0 and res["train_acc"] == 1.0


def test_conv_net_runs_on_bits():
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 256)
    img = np.zeros((256, 28, 28, 1), np.uint8)
    img[y == 1, 4:24, 12:16] = 255                                   # class 1: a vertical bar
    img[y == 0, 12:16, 4:24] = 255                                   # class 0: a horizontal bar
    bits = (img.reshape(256, -1) > 0).astype(np.uint8)
    res = lb.conv_net(bits[:192], y[:192], bits[192:], y[192:], image_shape=(28, 28, 1), epochs=3, lr=0.05,
                      batch_size=32, device="cpu")
    assert res["test_acc"] > 0.9
    with pytest.raises(ValueError, match="do not make 32x32 images"):
        lb.bits_to_images(bits, (32, 32, 1))
    with pytest.raises(ValueError, match="unknown Table 1 method"):
        lb.run_method("svm", bits, y, bits, y)
