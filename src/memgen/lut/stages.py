"""The LUT study (Chatterjee 2018, "Learning and memorization") as workflow jobs.

Job functions, one per workflow rule: the rule's script loads a dataset cache and split(s), binarizes
(:func:`binarize_cache`, :class:`Task`) and calls one of :func:`run_table1_method`, :func:`run_layer_stats`,
:func:`run_sweep_task`, :func:`run_pairwise_tasks`; each returns raw rows, one per network (or method) and seed,
with training and test accuracy, and the script writes them with :func:`write_csv`. The published numbers and
the table builders live in :mod:`memgen.lut.tables`.

Binarization settings are dicts of :func:`memgen.bits.binarize` arguments; :func:`coding_name` gives each a
file-name-safe name (``threshold128``, ``thermometer2``, ``grey-msb3``), :func:`parse_coding` reads it back.
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pandas as pd

from memgen.lut.network import LUTNetwork
from memgen.lut.network import evaluate, layer_stats

# Table 1 methods as the workflow runs them (one job each): "knn" gives one row per k from one search.
TABLE1_JOBS = ("conv_net", "knn", "rf10", "rf300", "memorization", "logistic_regression", "naive_bayes",
               "random_guess")
SEEDED = {"conv_net", "rf10", "rf300", "memorization", "random_guess"}   # the rest run once (seed-independent)


def stratified_subset(y, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``n`` examples with the class proportions of ``y``
    (all indices when ``n`` is None or not smaller than ``len(y)``)."""
    y = np.asarray(y)
    if n is None or n >= len(y):
        return np.arange(len(y))
    if n < 1:
        raise ValueError(f"cap of {n} training examples: use a positive number or leave the cap out")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    take = np.floor(counts * n / len(y)).astype(int)
    for i in np.argsort(-(counts * n / len(y) - take))[: n - take.sum()]:   # largest remainders
        take[i] += 1
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), t, replace=False)
                                   for c, t in zip(classes, take)]))


class Task:
    """Binarized training and test arrays of one split (``x_*`` uint8 bits ``[N, D]``, ``y_*`` task labels)."""

    def __init__(self, bits_train, bits_test, split, max_train: int | None = None, seed: int = 0):
        sub = stratified_subset(split.train_y, max_train, seed)
        self.n_train_full = len(split.train_idx)
        self.x_train, self.y_train = bits_train[split.train_idx[sub]], np.asarray(split.train_y)[sub]
        self.x_test, self.y_test = bits_test[split.test_idx], np.asarray(split.test_y)


# ------------------------------------------------------------------------------------------ job functions
def fit_and_score(x_train, y_train, x_test, y_test, k: int, widths, seed: int, device: str = "cpu",
                  threads: int | None = None, **extra) -> tuple[dict, LUTNetwork]:
    """One network: fit (timed) and score; a row as :func:`memgen.lut.network.evaluate` makes it."""
    t0 = time.perf_counter()
    net = LUTNetwork(k, widths, seed=seed, device=device, threads=threads).fit(x_train, y_train)
    fit_s = time.perf_counter() - t0
    row = evaluate(x_train, y_train, x_test, y_test, k, net=net, **extra)
    row["fit_s"] = fit_s
    return row, net


def run_sweep_task(data: Task, ks, depths, width: int, seeds, device: str = "cpu", threads: int | None = None,
                   log=print, **extra) -> pd.DataFrame:
    """Rows for every seed x depth x k on one task (Table 3, the extensions, each pairwise task); ``extra``
    is copied into every row."""
    rows = []
    for seed in seeds:
        for depth in depths:
            for k in ks:
                row, _ = fit_and_score(data.x_train, data.y_train, data.x_test, data.y_test, k, (width,) * depth,
                                       seed, device, threads, **extra)
                rows.append(row)
                log(f"{extra} k={k} depth={depth} seed={seed}: train {row['train_acc']:.4f} "
                    f"test {row['test_acc']:.4f} (fit {row['fit_s']:.1f} s)")
    return pd.DataFrame(rows)


def run_pairwise_tasks(bits_train, bits_test, splits: dict, ks, depths, width: int, seeds, device: str = "cpu",
                       threads: int | None = None, log=print, **extra) -> pd.DataFrame:
    """:func:`run_sweep_task` on every one-vs-one split (``{"pair3v5": Split, ...}``): label 0 = class a."""
    parts = []
    for name, split in splits.items():
        a, b = (int(v) for v in re.fullmatch(r"pair(\d+)v(\d+)", name).groups())
        parts.append(run_sweep_task(Task(bits_train, bits_test, split), ks, depths, width, seeds, device, threads,
                                    log, **extra, task=name, a=a, b=b, name_a=split.class_names[0],
                                    name_b=split.class_names[1]))
    return pd.concat(parts, ignore_index=True)


def run_layer_stats(task: Task, k: int, width: int, depth: int, seeds, device: str = "cpu",
                    threads: int | None = None, **extra) -> pd.DataFrame:
    """Table 2 rows (:func:`memgen.lut.network.layer_stats`) per seed, with the network's accuracies."""
    parts = []
    for seed in seeds:
        row, net = fit_and_score(task.x_train, task.y_train, task.x_test, task.y_test, k, (width,) * depth, seed,
                                 device, threads)
        stats = layer_stats(net, task.x_train, task.y_train)
        parts.append(stats.assign(**extra, k=k, seed=seed, train_acc=row["train_acc"], test_acc=row["test_acc"]))
    return pd.concat(parts, ignore_index=True)


def run_table1_method(method: str, task: Task, *, image_shape, seeds, memorization_k: int = 10, width: int = 1024,
                      depth: int = 5, knn_ks=(5, 1), knn_train_queries: int | None = None, conv_net: dict | None = None,
                      logistic_regression: dict | None = None, device: str = "cpu", threads: int | None = None,
                      **extra) -> pd.DataFrame:
    """Raw Table 1 rows of one method (a :data:`TABLE1_JOBS` name) on one binarized task, per seed for the
    seeded methods. Columns: method (a :data:`TABLE1_ORDER` name), train_acc, test_acc, seed, n_train (used),
    n_train_full (of the split), seconds, settings (JSON)."""
    from memgen.lut import baselines as lb

    if method not in TABLE1_JOBS:
        raise ValueError(f"unknown Table 1 method '{method}'; use one of {list(TABLE1_JOBS)}")
    x, y, xt, yt = task.x_train, task.y_train, task.x_test, task.y_test
    rows = []
    for seed in (seeds if method in SEEDED else [None]):
        t0 = time.perf_counter()
        if method == "conv_net":
            import torch

            torch.set_num_threads(threads or torch.get_num_threads())
            from memgen.runtime import seed_everything

            seed_everything(seed)                      # the net's initial weights
            out = [("conv_net", lb.conv_net(x, y, xt, yt, image_shape=tuple(image_shape), seed=seed, device=device,
                                            **(conv_net or {})))]
        elif method == "knn":
            out = [(f"knn{r['k']}", r) for r in lb.knn_many(x, y, xt, yt, ks=knn_ks, train_queries=knn_train_queries,
                                                            threads=threads)]
        elif method in ("rf10", "rf300"):
            out = [(method, lb.random_forest(x, y, xt, yt, n_trees=int(method[2:]), seed=seed, n_jobs=threads or 1))]
        elif method == "memorization":
            row, _ = fit_and_score(x, y, xt, yt, memorization_k, (width,) * depth, seed, device, threads)
            out = [("memorization", {**row, "width": width, "depth": depth})]
        elif method == "logistic_regression":
            out = [(method, lb.logistic_regression(x, y, xt, yt, **(logistic_regression or {})))]
        elif method == "naive_bayes":
            out = [(method, lb.naive_bayes(x, y, xt, yt))]
        else:
            out = [(method, lb.random_guess(x, y, xt, yt, seed=seed))]
        seconds = time.perf_counter() - t0
        for name, res in out:
            settings = {key: v for key, v in res.items()
                        if key not in ("train_acc", "test_acc", "n_train", "n_test", "n_train_eval", "gap", "seed")
                        and not key.endswith("_s") and isinstance(v, (int, float, str, bool))}
            rows.append({**extra, "method": name, "train_acc": res["train_acc"], "test_acc": res["test_acc"],
                         "seed": seed, "n_train": len(y), "n_train_full": task.n_train_full, "n_test": len(yt),
                         "n_train_eval": res.get("n_train_eval", len(y)), "seconds": seconds / len(out),
                         "k": res.get("k") if name == "memorization" else None,
                         "settings": json.dumps(settings, sort_keys=True)})
    return pd.DataFrame(rows)

