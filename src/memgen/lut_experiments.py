"""Experiment helpers for the LUT study: fitted networks and task arrays in, pandas DataFrames out.

* :func:`evaluate` -- one network on one task: a row with k, depth, width, seed, train/test accuracy, gap, times.
* :func:`layer_stats` -- Table 2: per layer, count / mean / std / min / max of each LUT's own training accuracy;
  layer 0 is the input bits themselves used as predictors (bit value = predicted label).
* :func:`sweep` -- rows of :func:`evaluate` over a grid of k and depth (Table 3, depth sweep, Figure 1).
* :func:`pairwise` -- one row per one-vs-one task ``a`` vs ``b`` (label 0 for ``a``, 1 for ``b``, as the
  ``pair{a}v{b}`` splits), and :func:`pairwise_matrix` lays them out as Table 4 (train below, test above).
* :func:`table3` pivots real-label and random-label sweep rows; :func:`gap_summary` gives the distribution of the
  generalization gap per k or depth (Figure 1: gap vs k over the 45 tasks, and its spread vs depth).
"""

from __future__ import annotations

import time
from itertools import combinations

import numpy as np
import pandas as pd

from memgen.lut import LUTNetwork, check_bits

BASELINE_WIDTHS = (1024,) * 5


def evaluate(x_train, y_train, x_test, y_test, k: int, widths=BASELINE_WIDTHS, seed: int = 0,
             device: str = "cpu", net: LUTNetwork | None = None, **extra) -> dict:
    """Fit (unless ``net`` is given, already fitted) and score one network; ``extra`` is copied into the row."""
    t0 = time.perf_counter()
    if net is None:
        net = LUTNetwork(k, widths, seed=seed, device=device).fit(x_train, y_train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    test_acc = net.score(x_test, y_test)
    return {**extra, "k": net.k, "depth": len(net.widths), "width": max(net.widths, default=0), "seed": net.seed,
            "n_train": len(y_train), "n_test": len(y_test), "train_acc": net.train_accuracy, "test_acc": test_acc,
            "gap": net.train_accuracy - test_acc, "fit_s": fit_s, "predict_s": time.perf_counter() - t0}


def layer_stats(net: LUTNetwork, bits, y) -> pd.DataFrame:
    """Table 2 for a network fitted on ``bits``/``y``: one row per layer (0 = inputs, last = output LUT).

    Standard deviations are population (ddof=0) values over the layer's LUTs.
    """
    bits = check_bits(bits, net.n_inputs)
    y = np.asarray(y)
    hits = np.zeros(bits.shape[1], dtype=np.int64)
    for start in range(0, len(bits), 8192):                    # input bit as a predictor of the label
        hits += (bits[start:start + 8192] == y[start:start + 8192, None]).sum(0)
    accs = [hits / len(y), *net.lut_train_accuracy]
    return pd.DataFrame([{"layer": i, "count": len(a), "mean": a.mean(), "std": a.std(), "min": a.min(),
                          "max": a.max()} for i, a in enumerate(accs)])


def sweep(x_train, y_train, x_test, y_test, ks=(10,), depths=(5,), width: int = 1024, seed: int = 0,
          device: str = "cpu", **extra) -> pd.DataFrame:
    """:func:`evaluate` for every (k, depth) with ``depth`` hidden layers of ``width`` LUTs."""
    return pd.DataFrame([evaluate(x_train, y_train, x_test, y_test, k, (width,) * depth, seed, device, **extra)
                         for depth in depths for k in ks])


def pairwise(x_train, classes_train, x_test, classes_test, k: int = 10, widths=BASELINE_WIDTHS, seed: int = 0,
             class_names=None, pairs=None, device: str = "cpu", **extra) -> pd.DataFrame:
    """One row per one-vs-one task (all pairs of classes unless ``pairs`` is given) on original class labels."""
    classes_train, classes_test = np.asarray(classes_train), np.asarray(classes_test)
    n_classes = int(max(classes_train.max(), classes_test.max())) + 1
    names = list(class_names) if class_names is not None else [str(c) for c in range(n_classes)]
    rows = []
    for a, b in pairs if pairs is not None else combinations(range(n_classes), 2):
        tr = np.flatnonzero((classes_train == a) | (classes_train == b))
        te = np.flatnonzero((classes_test == a) | (classes_test == b))
        rows.append(evaluate(x_train[tr], (classes_train[tr] == b).astype(np.int64), x_test[te],
                             (classes_test[te] == b).astype(np.int64), k, widths, seed, device,
                             a=a, b=b, name_a=names[a], name_b=names[b], **extra))
    return pd.DataFrame(rows)


def pairwise_matrix(rows: pd.DataFrame, class_names=None) -> pd.DataFrame:
    """Table 4 layout: training accuracy below the diagonal (row = b, column = a), test accuracy above."""
    n = int(max(rows["a"].max(), rows["b"].max())) + 1
    names = list(class_names) if class_names is not None else [str(c) for c in range(n)]
    table = np.full((n, n), np.nan)
    for r in rows.itertuples():
        lo, hi = min(r.a, r.b), max(r.a, r.b)
        table[hi, lo], table[lo, hi] = r.train_acc, r.test_acc
    return pd.DataFrame(table, index=names, columns=names)


def table3(real: pd.DataFrame, random: pd.DataFrame) -> pd.DataFrame:
    """Table 3: per k, train/test accuracy on real labels and on random labels (rows from :func:`sweep`)."""
    parts = {"real": real.set_index("k")[["train_acc", "test_acc"]],
             "random": random.set_index("k")[["train_acc", "test_acc"]]}
    return pd.concat(parts, axis=1).sort_index()


def gap_summary(rows: pd.DataFrame, by: str = "k") -> pd.DataFrame:
    """Distribution of the generalization gap (train - test accuracy) per value of ``by`` (k or depth)."""
    g = rows.groupby(by)["gap"]
    out = g.agg(["count", "mean", "std", "min", "median", "max"])
    out["iqr"] = g.quantile(0.75) - g.quantile(0.25)
    return out.reset_index()
