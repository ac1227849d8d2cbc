"""Tests of memgen.lut: networks of k-input lookup tables trained by memorization."""

from __future__ import annotations

import numpy as np
import pytest

from memgen.lut.network import MAX_K, LUTNetwork, fit_plain
from memgen.bits import binarize


def random_task(n=600, d=40, seed=0):
    """Bits with a label that depends on a few of them (so deeper layers have something to learn)."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (n, d), dtype=np.uint8)
    y = ((bits[:, 0] + bits[:, 1] + bits[:, 2] + (rng.random(n) < 0.2)) >= 2).astype(np.int64)
    return bits, y


def assert_same_network(a: LUTNetwork, b: LUTNetwork):
    assert len(a.tables) == len(b.tables)
    for ca, cb, ta, tb, aa, ab in zip(a.connections, b.connections, a.tables, b.tables,
                                      a.lut_train_accuracy, b.lut_train_accuracy):
        np.testing.assert_array_equal(ca, cb)
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_array_equal(aa, ab)


# ------------------------------------------------------------------------------------------- memorization
def test_single_lut_memorizes_a_truth_table():
    """One LUT reading all 5 inputs: each seen pattern maps to its majority label; accuracy is Bayes-optimal."""
    rng = np.random.default_rng(1)
    patterns = np.array([[int(c) for c in f"{p:05b}"] for p in range(32)], dtype=np.uint8)
    truth = rng.integers(0, 2, 32)
    reps = rng.integers(1, 5, 32)                      # each pattern 1-4 times with its true label ...
    bits = np.repeat(patterns, reps, axis=0)
    y = np.repeat(truth, reps)
    noisy = np.flatnonzero(reps >= 3)[:4]              # ... plus one flipped copy of some (still a majority)
    bits = np.vstack([bits, patterns[noisy]])
    y = np.concatenate([y, 1 - truth[noisy]])
    net = LUTNetwork(k=5, widths=(), seed=0).fit(bits, y)
    np.testing.assert_array_equal(net.predict(patterns), truth)
    assert net.train_accuracy == pytest.approx(1 - len(noisy) / len(y))
    assert net.score(bits, y) == pytest.approx(net.train_accuracy)


def test_majority_and_ties_of_one_lut():
    """k=2 on 2 inputs: 00 -> 1 (2 of 3), 01 -> 0 (1 of 1), 10 tied, 11 never seen; ties follow the seed."""
    bits = np.array([[0, 0], [0, 0], [0, 0], [0, 1], [1, 0], [1, 0]], dtype=np.uint8)
    y = np.array([1, 1, 0, 0, 1, 0])
    queries = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.uint8)
    preds = np.array([LUTNetwork(2, (), seed=s).fit(bits, y).predict(queries) for s in range(40)])
    assert (preds[:, 0] == 1).all() and (preds[:, 1] == 0).all()
    for col in (2, 3):                                   # tied and unseen patterns: random, not constant
        assert 0 < preds[:, col].sum() < len(preds)
    again = np.array([LUTNetwork(2, (), seed=s).fit(bits, y).predict(queries) for s in range(40)])
    np.testing.assert_array_equal(preds, again)


def test_fast_path_equals_plain_reference():
    bits, y = random_task()
    for k, widths in ((4, (64, 32)), (7, (48,)), (3, ())):
        fast = LUTNetwork(k, widths, seed=5).fit(bits, y)
        plain = fit_plain(LUTNetwork(k, widths, seed=5), bits, y)
        assert_same_network(fast, plain)


def test_threads_do_not_change_results():
    bits, y = random_task()
    assert_same_network(LUTNetwork(6, (300, 40), seed=2, threads=1).fit(bits, y),
                        LUTNetwork(6, (300, 40), seed=2, threads=3).fit(bits, y))


def test_k16_layer_shapes_and_unseen_patterns_are_random():
    """k=16: 65536 entries per LUT, almost all unseen: their labels are seeded coin flips, not constant."""
    bits, y = random_task(n=300, d=20)
    net = LUTNetwork(16, (16,), seed=0).fit(bits, y)
    assert net.tables[0].shape == (16, 1 << 16) and net.tables[0].dtype == np.uint8
    assert 0.45 < net.tables[0].mean() < 0.55
    assert not np.array_equal(net.tables[0][0], net.tables[0][1])
    other = LUTNetwork(16, (16,), seed=1).fit(bits, y)
    assert (net.tables[0] != other.tables[0]).mean() > 0.3


def test_seeded_determinism():
    bits, y = random_task()
    a = LUTNetwork(5, (64, 64), seed=3).fit(bits, y)
    assert_same_network(a, LUTNetwork(5, (64, 64), seed=3).fit(bits, y))
    b = LUTNetwork(5, (64, 64), seed=4).fit(bits, y)
    assert not np.array_equal(a.connections[0], b.connections[0])
    assert not np.array_equal(a.tables[0], b.tables[0])


def test_wiring_reads_distinct_units_of_the_previous_layer():
    bits, y = random_task(d=30)
    net = LUTNetwork(9, (50, 12), seed=0).fit(bits, y)
    for conn, n_in in zip(net.connections, (30, 50, 12)):
        assert conn.shape[1] == 9 and conn.min() >= 0 and conn.max() < n_in
        assert all(len(set(row)) == 9 for row in conn.tolist())
    assert len(np.unique(net.connections[0])) > 20          # spread over the inputs, not a fixed subset


def test_layer_outputs_and_lut_accuracies_agree():
    bits, y = random_task()
    net = LUTNetwork(5, (40, 20), seed=0).fit(bits, y)
    outs = net.layer_outputs(bits)
    assert [o.shape for o in outs] == [(600, 40), (600, 20), (600, 1)]
    for out, acc in zip(outs, net.lut_train_accuracy):
        np.testing.assert_allclose((out == y[:, None]).mean(0), acc)
    np.testing.assert_array_equal(outs[-1][:, 0], net.predict(bits))
    assert net.lut_train_accuracy[-1].mean() > net.lut_train_accuracy[0].mean()   # depth helps here


def test_save_load_round_trip(tmp_path):
    bits, y = random_task()
    net = LUTNetwork(11, (64, 32), seed=7).fit(bits, y)
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = LUTNetwork.load(path)
    assert_same_network(net, loaded)
    assert (loaded.k, loaded.widths, loaded.seed, loaded.n_inputs) == (11, (64, 32), 7, 40)
    test_bits, _ = random_task(n=200, seed=9)
    np.testing.assert_array_equal(net.predict(test_bits), loaded.predict(test_bits))
    assert path.stat().st_size < sum(t.size for t in net.tables) / 4       # tables stored as packed bits
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]             # no temporary left behind


def test_torch_cpu_path_agrees_with_numpy():
    pytest.importorskip("torch")
    bits, y = random_task()
    test_bits, _ = random_task(n=100, seed=3)
    for k in (4, 10):
        a = LUTNetwork(k, (50, 30), seed=1).fit(bits, y)
        b = LUTNetwork(k, (50, 30), seed=1, backend="torch").fit(bits, y)
        assert_same_network(a, b)
        np.testing.assert_array_equal(a.predict(test_bits), b.predict(test_bits))
        np.testing.assert_array_equal(a.layer_outputs(test_bits)[0], b.layer_outputs(test_bits)[0])


@pytest.mark.gpu
def test_cuda_path_agrees_with_numpy():
    bits, y = random_task()
    a = LUTNetwork(10, (256, 64), seed=1).fit(bits, y)
    b = LUTNetwork(10, (256, 64), seed=1, device="cuda").fit(bits, y)
    assert_same_network(a, b)
    np.testing.assert_array_equal(a.predict(bits), b.predict(bits))


# ------------------------------------------------------------------------------------------- binarization
def test_binarize_schemes():
    img = np.array([[[0, 63, 64, 127], [128, 191, 192, 255]]], dtype=np.uint8)          # [1, 2, 4] grey
    np.testing.assert_array_equal(binarize(img)[0], [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(binarize(img, threshold=64)[0], [0, 0, 1, 1, 1, 1, 1, 1])
    thermo = binarize(img, "thermometer", bits=3).reshape(8, 3)                       # levels 64, 128, 192
    np.testing.assert_array_equal(thermo, [[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0],
                                           [1, 1, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(binarize(img, "thermometer", bits=1), binarize(img))
    msb = binarize(img, "msb", bits=2).reshape(8, 2)
    np.testing.assert_array_equal(msb, [[0, 0], [0, 0], [0, 1], [0, 1], [1, 0], [1, 0], [1, 1], [1, 1]])
    rgb = np.array([[[[255, 0, 0], [0, 255, 0], [200, 200, 200]]]], dtype=np.uint8)   # [1, 1, 3, 3]
    np.testing.assert_array_equal(binarize(rgb)[0], [1, 0, 0, 0, 1, 0, 1, 1, 1])     # colour: pixel, channel
    np.testing.assert_array_equal(binarize(rgb, grey=True)[0], [0, 1, 1])            # luminance 76, 150, 200
    assert binarize(np.zeros((5, 32, 32, 3), np.uint8), "thermometer", bits=4).shape == (5, 32 * 32 * 3 * 4)


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, message", [
    ({"k": MAX_K + 1}, "above|outside 1..16"),
    ({"k": 0}, "outside 1..16"),
    ({"k": 2.5}, "outside 1..16"),
    ({"k": 8, "widths": (64, 4)}, "k=8 exceeds the width 4 of hidden layer 2"),
    ({"k": 3, "widths": (0,)}, "widths must be positive"),
    ({"k": 3, "backend": "jax"}, "backend 'jax'"),
])
def test_bad_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LUTNetwork(**kwargs)


def test_bad_fit_and_predict_inputs():
    bits, y = random_task(d=12)
    with pytest.raises(ValueError, match="k=13 exceeds the 12 input bits"):
        LUTNetwork(13, (16,)).fit(bits, y)
    with pytest.raises(ValueError, match="labels must be 0/1, found \\[0, 1, 2\\]"):
        LUTNetwork(3, (8,)).fit(bits, np.where(np.arange(len(y)) == 0, 2, y))
    with pytest.raises(ValueError, match="no training example of class 1"):
        LUTNetwork(3, (8,)).fit(bits, np.zeros(len(y), int))
    with pytest.raises(ValueError, match="no training example of class 0"):
        LUTNetwork(3, (8,)).fit(bits, np.ones(len(y), int))
    with pytest.raises(ValueError, match="one label per example"):
        LUTNetwork(3, (8,)).fit(bits, y[:-1])
    with pytest.raises(ValueError, match="must be bits \\(0/1\\), found values 0..255.*binarize"):
        LUTNetwork(3, (8,)).fit(bits * 255, y)
    with pytest.raises(TypeError, match="0/1 integers or booleans"):
        LUTNetwork(3, (8,)).fit(bits.astype(float), y)
    with pytest.raises(ValueError, match="2-D array"):
        LUTNetwork(3, (8,)).fit(bits.reshape(len(bits), 3, 4), y)
    with pytest.raises(RuntimeError, match="not fitted yet"):
        LUTNetwork(3, (8,)).predict(bits)
    net = LUTNetwork(3, (8,)).fit(bits.astype(bool), y)                    # booleans are fine
    with pytest.raises(ValueError, match="fit on 12 input bits but got 11"):
        net.predict(bits[:, :11])


def test_bad_binarize_arguments():
    img = np.zeros((2, 4, 4), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        binarize(img.astype(float))
    with pytest.raises(ValueError, match="unknown binarization scheme"):
        binarize(img, "otsu")
    with pytest.raises(ValueError, match="threshold gives exactly 1 bit"):
        binarize(img, "threshold", bits=2)
    with pytest.raises(ValueError, match="bits=9"):
        binarize(img, "thermometer", bits=9)


# ------------------------------------------------------------------------------------------- real data
def test_real_mnist_slice_generalizes(data_root):
    """Binary-MNIST (0-4 vs 5-9) from 2,000 training images: well above chance on 2,000 held-out ones."""
    from memgen.data import read_idx_dataset

    ds = read_idx_dataset(data_root / "mnist")
    x_train, x_test = binarize(ds.x_train[:2000]), binarize(ds.x_test[:2000])
    y_train, y_test = (ds.y_train[:2000] >= 5).astype(int), (ds.y_test[:2000] >= 5).astype(int)
    net = LUTNetwork(8, (512,) * 3, seed=0).fit(x_train, y_train)
    assert net.train_accuracy > 0.85
    assert net.score(x_test, y_test) > 0.75
