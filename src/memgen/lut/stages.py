"""The LUT study's workflow stages (workflow/rules/lut.smk): what the rule scripts call.

A rule's script loads a dataset cache and split(s), binarizes them (:func:`memgen.bits.binarize_cache`) into a
:class:`Task` and calls one of :func:`run_table1_method` (one Table 1 method of :data:`TABLE1_METHODS`),
:func:`run_layer_stats` (Table 2), :func:`run_sweep_task` (Table 3, the extensions) or :func:`run_pairwise_tasks`
(Figure 1, Table 4); each returns raw rows, one per network (or method) and seed, with training and test accuracy,
which the script writes. The tables beside the published numbers are built by :mod:`memgen.lut.tables`, the
figures by :mod:`memgen.lut.figures`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from memgen.lut import baselines as lb
from memgen.lut.network import LUTNetwork, evaluate, layer_stats


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

    @property
    def arrays(self) -> tuple:
        """``(x_train, y_train, x_test, y_test)``, the argument order of the baselines."""
        return self.x_train, self.y_train, self.x_test, self.y_test


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
        parts.append(stats.assign(**extra, k=k, seed=seed, train_acc=row["train_acc"], test_acc=row["test_acc"],
                                  n_train=row["n_train"], n_test=row["n_test"]))
    return pd.concat(parts, ignore_index=True)


@dataclass(frozen=True)
class Table1Options:
    """What the Table 1 jobs read beside the task; each method uses its own few (config ``lut.table1``)."""

    image_shape: tuple
    device: str = "cpu"
    threads: int | None = None
    memorization_k: int | None = None
    width: int | None = None
    depth: int | None = None
    knn_ks: tuple = ()
    knn_train_queries: int | None = None
    conv_net: dict | None = None
    logistic_regression: dict | None = None


@dataclass(frozen=True)
class Table1Method:
    """A Table 1 job: ``run(task, seed, options) -> [(row method name, result dict), ...]``; a ``seeded`` method
    runs once per configured seed, the others once (seed None)."""

    run: Callable
    seeded: bool


# Table 1 methods by job name (the values of config lut.table1.methods), in the document's order.
TABLE1_METHODS: dict[str, Table1Method] = {}


def table1_method(name: str, *, seeded: bool):
    """Register the decorated function as the Table 1 job ``name``."""
    def register(run):
        TABLE1_METHODS[name] = Table1Method(run, seeded)
        return run
    return register


@table1_method("conv_net", seeded=True)
def _conv_net(task: Task, seed, o: Table1Options):
    import torch

    from memgen.runtime import seed_everything

    torch.set_num_threads(o.threads or torch.get_num_threads())
    seed_everything(seed)                      # the net's initial weights
    return [("conv_net", lb.conv_net(*task.arrays, image_shape=tuple(o.image_shape), seed=seed, device=o.device,
                                     **(o.conv_net or {})))]


@table1_method("knn", seeded=False)
def _knn(task: Task, seed, o: Table1Options):
    """One row per k of ``knn_ks``, from one search."""
    return [(f"knn{r['k']}", r) for r in lb.knn_many(*task.arrays, ks=o.knn_ks, train_queries=o.knn_train_queries,
                                                      threads=o.threads)]


def _random_forest(n_trees: int):
    def run(task: Task, seed, o: Table1Options):
        return [(f"rf{n_trees}", lb.random_forest(*task.arrays, n_trees=n_trees, seed=seed, n_jobs=o.threads or 1))]
    return run


table1_method("rf10", seeded=True)(_random_forest(10))
table1_method("rf300", seeded=True)(_random_forest(300))


@table1_method("memorization", seeded=True)
def _memorization(task: Task, seed, o: Table1Options):
    row, _ = fit_and_score(*task.arrays, o.memorization_k, (o.width,) * o.depth, seed, o.device, o.threads)
    return [("memorization", {**row, "width": o.width, "depth": o.depth})]


@table1_method("logistic_regression", seeded=False)
def _logistic_regression(task: Task, seed, o: Table1Options):
    return [("logistic_regression", lb.logistic_regression(*task.arrays, **(o.logistic_regression or {})))]


@table1_method("naive_bayes", seeded=False)
def _naive_bayes(task: Task, seed, o: Table1Options):
    return [("naive_bayes", lb.naive_bayes(*task.arrays))]


@table1_method("random_guess", seeded=True)
def _random_guess(task: Task, seed, o: Table1Options):
    return [("random_guess", lb.random_guess(*task.arrays, seed=seed))]


def run_table1_method(method: str, task: Task, *, image_shape, seeds, device: str = "cpu", threads: int | None = None,
                      memorization_k: int | None = None, width: int | None = None, depth: int | None = None,
                      knn_ks=(), knn_train_queries: int | None = None, conv_net: dict | None = None,
                      logistic_regression: dict | None = None, **extra) -> pd.DataFrame:
    """Raw Table 1 rows of one method (a :data:`TABLE1_METHODS` name) on one binarized task, per seed for the
    seeded methods; ``extra`` is copied into every row. Columns: method (a
    :data:`memgen.lut.tables.TABLE1_ORDER` name), train_acc, test_acc, seed, n_train (used), n_train_full (of the
    split), seconds, settings (JSON)."""
    if method not in TABLE1_METHODS:
        raise ValueError(f"unknown Table 1 method '{method}'; use one of {list(TABLE1_METHODS)}")
    job = TABLE1_METHODS[method]
    options = Table1Options(image_shape=tuple(image_shape), device=device, threads=threads,
                            memorization_k=memorization_k, width=width, depth=depth, knn_ks=tuple(knn_ks),
                            knn_train_queries=knn_train_queries, conv_net=conv_net,
                            logistic_regression=logistic_regression)
    y, yt = task.y_train, task.y_test
    rows = []
    for seed in (seeds if job.seeded else [None]):
        t0 = time.perf_counter()
        out = job.run(task, seed, options)
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
