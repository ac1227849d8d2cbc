"""Tests of Table 2's layer statistics and the Table 1 baselines of the LUT study."""

from __future__ import annotations

import numpy as np
import pytest

from memgen.lut import baselines as lb
from memgen.lut.network import LUTNetwork, layer_stats

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


def test_knn_votes_by_majority():
    keys = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=np.uint8)
    labels = np.array([0, 0, 1, 1])
    queries, truth = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 1]], np.uint8), np.array([0, 1, 0])
    three, one = lb.knn_many(keys, labels, queries, truth, ks=(3, 1))
    assert three["k"] == 3 and three["test_acc"] == 1.0 and three["train_acc"] == 1.0
    assert one["test_acc"] == 1.0 and one["train_acc"] == 1.0 and one["n_train_eval"] == 4


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
