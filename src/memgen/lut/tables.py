"""Tables of the LUT study (Chatterjee 2018, "Learning and memorization"): the document's published numbers,
the builders that turn the workflow's raw rows into the report's tables (long format, ``published`` beside
``measured`` = mean over seeds, with ``measured_sd``, ``n_seeds`` and ``n``, the examples an accuracy is measured
on), and the level verdicts computed from them; the document's claims are tested in :mod:`memgen.lut.claims`.

Kept apart from :mod:`memgen.lut.stages` (the jobs that fit networks), so that editing a table or a verdict reruns
the cheap table and figure steps only.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from memgen.bits import parse_coding
from memgen.scorecard import DATASET_NAMES, anchor, group_verdict

TOLERANCE = 0.03          # |measured - published| within this counts as reproduced (numbers are given to 2 digits)
ACCURACY_STATISTICS = ("mean", "min", "max", "test accuracy")   # the Table 2 rows that are accuracies

# ------------------------------------------------------------------------------------ published numbers
# Table 1: (training, test) accuracy; None where the document has no row for that dataset.
TABLE1_ORDER = ("conv_net", "knn5", "knn1", "rf10", "rf300", "memorization", "logistic_regression", "naive_bayes",
                "random_guess")
TABLE1_NAMES = {"conv_net": "conv net", "knn5": "5-nearest neighbors", "knn1": "1-nearest neighbor",
                "rf10": "random forest (10 trees)", "rf300": "random forest (300 trees)", "memorization": "memorization",
                "logistic_regression": "logistic regression", "naive_bayes": "naive Bayes",
                "random_guess": "random guess"}
PUBLISHED_TABLE1 = {
    "mnist": {"conv_net": (0.98, 0.98), "knn5": (0.99, 0.97), "knn1": (1.00, 0.97), "rf10": (1.00, 0.96),
              "memorization": (0.99, 0.90), "logistic_regression": (0.87, 0.87), "naive_bayes": (0.76, 0.77),
              "random_guess": (0.50, 0.50)},
    "cifar10": {"conv_net": (0.93, 0.71), "rf300": (1.00, 0.66), "knn5": (0.75, 0.63), "knn1": (1.00, 0.63),
                "memorization": (0.79, 0.63), "logistic_regression": (0.64, 0.56), "naive_bayes": (0.55, 0.56),
                "random_guess": (0.50, 0.50)},
}
PUBLISHED_TABLE1_K = {"mnist": 12, "cifar10": 10}
# Table 2 (Binary-MNIST, k=8, 5 x 1024): layer, count, mean, std, min, max of each LUT's training accuracy.
PUBLISHED_TABLE2_K = 8
PUBLISHED_TABLE2 = [(0, 784, 0.51, 0.0340, 0.40, 0.66), (1, 1024, 0.61, 0.0403, 0.51, 0.73),
                    (2, 1024, 0.74, 0.0191, 0.67, 0.79), (3, 1024, 0.83, 0.0068, 0.80, 0.85),
                    (4, 1024, 0.87, 0.0033, 0.86, 0.88), (5, 1024, 0.88, 0.0015, 0.88, 0.88),
                    (6, 1, 0.89, 0.0000, 0.89, 0.89)]
PUBLISHED_TABLE2_TEST = 0.87
# Table 3 (Binary-MNIST): k -> (real train, real test, random train, random test).
PUBLISHED_TABLE3 = {2: (0.66, 0.66, 0.51, 0.53), 4: (0.81, 0.81, 0.53, 0.54), 6: (0.85, 0.86, 0.55, 0.52),
                    8: (0.89, 0.87, 0.60, 0.51), 10: (0.94, 0.89, 0.69, 0.50), 12: (0.99, 0.90, 0.82, 0.51),
                    14: (1.00, 0.83, 0.92, 0.51), 16: (1.00, 0.66, 0.98, 0.52)}
PUBLISHED_TABLE3_DATASET = "mnist"
# Table 4 (Pairwise-CIFAR-10, k=10): training accuracy below the diagonal (row b > column a), test above; rows and
# columns in CIFAR-10's class order (plane, auto, bird, cat, deer, dog, frog, horse, ship, truck).
PUBLISHED_TABLE4_K = 10
PUBLISHED_TABLE4_DATASET = "cifar10"
PUBLISHED_TABLE4 = np.array([
    [np.nan, .77, .77, .80, .82, .81, .84, .81, .71, .79],
    [.96, np.nan, .79, .77, .79, .80, .80, .78, .76, .67],
    [.95, .98, np.nan, .68, .63, .69, .66, .72, .83, .81],
    [.96, .98, .96, np.nan, .70, .61, .68, .71, .81, .76],
    [.96, .98, .95, .96, np.nan, .73, .69, .71, .83, .81],
    [.98, .99, .97, .96, .97, np.nan, .72, .70, .82, .79],
    [.97, .98, .95, .95, .97, .96, np.nan, .75, .85, .80],
    [.98, .99, .96, .97, .96, .98, .97, np.nan, .81, .75],
    [.93, .96, .98, .98, .98, .98, .99, .98, np.nan, .77],
    [.97, .95, .98, .97, .97, .98, .98, .97, .98, np.nan]])
PUBLISHED_DEPTH, PUBLISHED_WIDTH = 5, 1024   # the document's baseline network: 5 hidden layers of 1024 LUTs

# ------------------------------------------------------------------------------------------ table builders
SWEEP_COUNTS = {"train": "n_train", "test": "n_test"}   # a network's row: the examples its accuracies are on


def read_rows(paths) -> pd.DataFrame:
    """The raw rows of one or more job outputs (CSV), concatenated."""
    paths = [paths] if isinstance(paths, (str, bytes)) or not hasattr(paths, "__iter__") else list(paths)
    return pd.concat([pd.read_csv(f) for f in paths], ignore_index=True)


def _measured(raw: pd.DataFrame, keys: list[str], values: dict[str, str], counts: dict[str, str]) -> pd.DataFrame:
    """Mean / sd over seeds of ``values`` ({split name: column}) per ``keys``; long format with a split column
    and ``n``, the number of examples each accuracy is measured on (``counts``: {split name: column})."""
    parts = []
    for split, column in values.items():
        g = raw.groupby(keys, sort=False, dropna=False)
        parts.append(pd.DataFrame({"split": split, "measured": g[column].mean(), "measured_sd": g[column].std(ddof=1),
                                   "n_seeds": g[column].count(), "n": g[counts[split]].first()}).reset_index())
    return pd.concat(parts, ignore_index=True)


def build_table1(raw: pd.DataFrame) -> pd.DataFrame:
    """Long Table 1: dataset, method, split (train/test), published, measured, measured_sd, n_seeds, n_train,
    n_train_full, n_train_eval, note. ``published`` is empty where the document has no number (or ran
    memorization with another k)."""
    raw = raw.copy()
    raw["k"] = pd.to_numeric(raw.get("k"), errors="coerce")
    keys = ["dataset", "method"]
    table = _measured(raw, keys, {"train": "train_acc", "test": "test_acc"},
                      {"train": "n_train_eval", "test": "n_test"})
    info = raw.groupby(keys, sort=False).agg(k=("k", "first"), n_train=("n_train", "first"),
                                             n_train_full=("n_train_full", "first"),
                                             n_train_eval=("n_train_eval", "first")).reset_index()
    table = table.merge(info, on=keys)

    def published(r):
        pub = PUBLISHED_TABLE1.get(r.dataset, {}).get(r.method)
        if pub is None or (r.method == "memorization" and r.k != PUBLISHED_TABLE1_K.get(r.dataset)):
            return np.nan
        return pub[0 if r.split == "train" else 1]

    def label(r):
        if r.method == "memorization":
            return f"memorization (k={int(r.k)})"
        if re.fullmatch(r"knn\d+", r.method) and r.method not in TABLE1_NAMES:
            return f"{r.method[3:]}-nearest neighbors"
        return TABLE1_NAMES.get(r.method, r.method)

    def note(r):
        notes = []
        if r.n_train < r.n_train_full:
            notes.append(f"trained on {r.n_train} of {r.n_train_full} examples (config lut.table1.max_train)")
        if r.split == "train" and r.n_train_eval < r.n_train:
            notes.append(f"training accuracy on {r.n_train_eval} training examples")
        return "; ".join(notes)

    table["published"] = [published(r) for r in table.itertuples()]
    table["note"] = [note(r) for r in table.itertuples()]
    table["method_key"] = table["method"]
    table["method"] = [label(r) for r in table.itertuples()]
    order = {m: i for i, m in enumerate(TABLE1_ORDER)}
    datasets = {d: i for i, d in enumerate(dict.fromkeys(raw["dataset"]))}       # as the rows come (config order)
    table["_d"] = table["dataset"].map(datasets)
    table["_o"] = [order.get(m, len(order)) for m in table["method_key"]]
    table["_s"] = table["split"].map({"train": 0, "test": 1})
    table = table.sort_values(["_d", "_o", "method_key", "_s"], kind="stable")
    cols = ["dataset", "method", "method_key", "split", "published", "measured", "measured_sd", "n_seeds", "n",
            "n_train", "n_train_full", "n_train_eval", "note"]
    return table[cols].reset_index(drop=True)


def build_table2(raw: pd.DataFrame) -> pd.DataFrame:
    """Long Table 2: layer ("0" = inputs ... last = output LUT, "network" = the test accuracy), statistic
    (count/mean/std/min/max, test accuracy), published, measured, measured_sd, n_seeds, n (the training examples a
    LUT's accuracy is measured on; the test examples of the network's)."""
    k = int(raw["k"].iloc[0])
    stats = ["count", "mean", "std", "min", "max"]
    long = raw.melt(id_vars=["layer", "seed", "n_train"], value_vars=stats, var_name="statistic", value_name="value")
    table = _measured(long, ["layer", "statistic"], {"train": "value"}, {"train": "n_train"}).drop(columns="split")
    test = _measured(raw.drop_duplicates("seed"), ["k"], {"test": "test_acc"}, {"test": "n_test"})
    test = test.assign(layer="network", statistic="test accuracy").drop(columns=["k", "split"])
    table["layer"] = table["layer"].astype(int)
    table["_s"] = table["statistic"].map({s: i for i, s in enumerate(stats)})
    table = table.sort_values(["layer", "_s"]).drop(columns="_s")
    table["layer"] = table["layer"].astype(str)
    table = pd.concat([table, test], ignore_index=True)
    pub = {}
    if k == PUBLISHED_TABLE2_K and raw["layer"].max() == len(PUBLISHED_TABLE2) - 1:
        for row in PUBLISHED_TABLE2:
            pub.update({(str(row[0]), s): v for s, v in zip(stats, row[1:])})
        pub[("network", "test accuracy")] = PUBLISHED_TABLE2_TEST
    table["published"] = [pub.get((r.layer, r.statistic), np.nan) for r in table.itertuples()]
    table.insert(0, "k", k)
    return table[["k", "layer", "statistic", "published", "measured", "measured_sd", "n_seeds", "n"]]


def build_table3(raw: pd.DataFrame, depth: int = PUBLISHED_DEPTH, ks=None) -> pd.DataFrame:
    """Long Table 3 from sweep rows (columns labels = real/random, k, depth; only ``ks`` if given): k, labels,
    split, published, measured, measured_sd, n_seeds, n."""
    raw = raw[(raw["depth"] == depth) & (raw["k"].isin(list(ks)) if ks is not None else True)]
    table = _measured(raw, ["labels", "k"], {"train": "train_acc", "test": "test_acc"}, SWEEP_COUNTS)
    col = {("real", "train"): 0, ("real", "test"): 1, ("random", "train"): 2, ("random", "test"): 3}
    same = raw["dataset"].iloc[0] == PUBLISHED_TABLE3_DATASET if len(raw) else False
    table["published"] = [PUBLISHED_TABLE3[r.k][col[(r.labels, r.split)]]
                          if same and r.k in PUBLISHED_TABLE3 and (r.labels, r.split) in col else np.nan
                          for r in table.itertuples()]
    table = table.sort_values(["k", "labels", "split"], ascending=[True, True, False]).reset_index(drop=True)
    return table[["k", "labels", "split", "published", "measured", "measured_sd", "n_seeds", "n"]]


def build_table4(raw: pd.DataFrame, k: int = PUBLISHED_TABLE4_K, depth: int = PUBLISHED_DEPTH) -> pd.DataFrame:
    """Long Table 4 from pairwise rows: a, b, name_a, name_b, split, published, measured, measured_sd,
    n_seeds, n. In the matrix layout training accuracy is at (row b, column a), test at (row a, column b)."""
    raw = raw[(raw["k"] == k) & (raw["depth"] == depth)]
    table = _measured(raw, ["a", "b", "name_a", "name_b"], {"train": "train_acc", "test": "test_acc"}, SWEEP_COUNTS)
    same = (len(raw) and raw["dataset"].iloc[0] == PUBLISHED_TABLE4_DATASET and k == PUBLISHED_TABLE4_K)

    def published(r):
        if not same or max(r.a, r.b) >= len(PUBLISHED_TABLE4):
            return np.nan
        lo, hi = min(r.a, r.b), max(r.a, r.b)
        return PUBLISHED_TABLE4[hi, lo] if r.split == "train" else PUBLISHED_TABLE4[lo, hi]

    table["published"] = [published(r) for r in table.itertuples()]
    table = table.sort_values(["a", "b", "split"], ascending=[True, True, False]).reset_index(drop=True)
    table.insert(0, "k", k)
    return table[["k", "a", "b", "name_a", "name_b", "split", "published", "measured", "measured_sd", "n_seeds",
                  "n"]]


def table4_matrices(table4: pd.DataFrame, n_classes: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(published, measured) matrices of a long Table 4: training below the diagonal, test above."""
    n = n_classes or int(max(table4["a"].max(), table4["b"].max())) + 1
    names = {**{r.a: r.name_a for r in table4.itertuples()}, **{r.b: r.name_b for r in table4.itertuples()}}
    labels = [names.get(i, str(i)) for i in range(n)]
    mats = {c: np.full((n, n), np.nan) for c in ("published", "measured")}
    for r in table4.itertuples():
        lo, hi = min(r.a, r.b), max(r.a, r.b)
        cell = (hi, lo) if r.split == "train" else (lo, hi)
        for c in mats:
            mats[c][cell] = getattr(r, c)
    return tuple(pd.DataFrame(mats[c], index=labels, columns=labels) for c in ("published", "measured"))


def build_figure1(k_rows: pd.DataFrame, depth_rows: pd.DataFrame | None, depth: int = PUBLISHED_DEPTH,
                  depth_k: int | None = None, depths=None) -> pd.DataFrame:
    """The data behind Figure 1, one row per task, seed and network: panel ``k`` (gap vs k at the baseline
    ``depth``) and panel ``depth`` (gap vs number of hidden layers at ``depth_k``: ``depth_rows``, joined by the
    baseline-depth networks of the k sweep at ``depth_k`` when ``depths`` includes the baseline)."""
    cols = ["panel", "task", "a", "b", "k", "depth", "seed", "n_train", "n_test", "train_acc", "test_acc", "gap"]
    k_panel = k_rows[k_rows["depth"] == depth].assign(panel="k")
    parts = [k_panel]
    if depth_k is None and depth_rows is not None and len(depth_rows):
        depth_k = int(depth_rows["k"].iloc[0])
    if depth_k is not None:
        extra = k_panel[k_panel["k"] == depth_k]
        if depths is not None:
            extra = extra[extra["depth"].isin(list(depths))]
        if depth_rows is not None:
            extra = extra[~extra["depth"].isin(depth_rows["depth"])]
        parts.append(pd.concat([d for d in (depth_rows, extra) if d is not None]).assign(panel="depth"))
    out = pd.concat(parts, ignore_index=True)[cols]
    return out.sort_values(["panel", "k", "depth", "a", "b", "seed"],
                           ascending=[False, True, True, True, True, True]).reset_index(drop=True)


def build_ext_bits(raw: pd.DataFrame, depth: int = PUBLISHED_DEPTH, ks=None, codings=None) -> pd.DataFrame:
    """Long table of the bits-per-channel sweep: coding, bits, k, labels, split, published, measured, ...
    ``published`` is the document's Table 1 memorization number where it applies (1 bit per channel at 128,
    real labels, k=10 on CIFAR-10; k=12 on MNIST)."""
    raw = raw[raw["depth"] == depth]
    if ks is not None:
        raw = raw[raw["k"].isin(list(ks))]
    if codings is not None:
        raw = raw[raw["coding"].isin(list(codings))]
    table = _measured(raw, ["dataset", "coding", "labels", "k"], {"train": "train_acc", "test": "test_acc"},
                      SWEEP_COUNTS)
    table["bits"] = [parse_coding(c)["bits"] for c in table["coding"]]

    def published(r):
        pub = PUBLISHED_TABLE1.get(r.dataset, {}).get("memorization")
        if pub and r.coding == "threshold128" and r.labels == "real" and r.k == PUBLISHED_TABLE1_K.get(r.dataset):
            return pub[0 if r.split == "train" else 1]
        return np.nan

    table["published"] = [published(r) for r in table.itertuples()]
    table = table.sort_values(["bits", "coding", "labels", "k", "split"],
                              ascending=[True, True, True, True, False]).reset_index(drop=True)
    return table[["dataset", "coding", "bits", "labels", "k", "split", "published", "measured", "measured_sd",
                  "n_seeds"]]


def build_ext_depth(raw: pd.DataFrame) -> pd.DataFrame:
    """Long table of the depth sweep on the binary task: k, depth, split, published, measured, ...
    ``published`` is the document's Table 3 (real labels) at its baseline depth of 5."""
    table = _measured(raw, ["dataset", "k", "depth"], {"train": "train_acc", "test": "test_acc"}, SWEEP_COUNTS)

    def published(r):
        if r.dataset == PUBLISHED_TABLE3_DATASET and r.depth == PUBLISHED_DEPTH and r.k in PUBLISHED_TABLE3:
            return PUBLISHED_TABLE3[r.k][0 if r.split == "train" else 1]
        return np.nan

    table["published"] = [published(r) for r in table.itertuples()]
    table = table.sort_values(["k", "depth", "split"], ascending=[True, True, False]).reset_index(drop=True)
    return table[["dataset", "k", "depth", "split", "published", "measured", "measured_sd", "n_seeds"]]


# ------------------------------------------------------------------------------------------ verdicts
def compare(table: pd.DataFrame, tolerance: float = TOLERANCE) -> dict:
    """Published vs measured over the rows where both exist: count, how many within ``tolerance``, mean and
    largest absolute difference (and where), mean signed difference (measured - published)."""
    both = table.dropna(subset=["published", "measured"])
    diff = both["measured"] - both["published"]
    if both.empty:
        return {"n": 0, "within": 0, "mean_abs": np.nan, "max_abs": np.nan, "mean_diff": np.nan, "worst": None}
    worst = both.loc[diff.abs().idxmax()]
    return {"n": len(both), "within": int((diff.abs() <= tolerance + 1e-9).sum()), "mean_abs": float(diff.abs().mean()),
            "max_abs": float(diff.abs().max()), "mean_diff": float(diff.mean()), "worst": worst.to_dict()}


def verdict(table: pd.DataFrame, what: str, tolerance: float = TOLERANCE) -> str:
    """One markdown sentence: how many published numbers of ``what`` this run reproduces within ``tolerance``
    (accuracies, so the differences are given in percentage points)."""
    c = compare(table, tolerance)
    if c["n"] == 0:
        return f"{what}: no published number to compare with in this configuration."
    share = c["within"] / c["n"]
    word = "reproduced" if share >= 0.8 else "partly reproduced" if share >= 0.5 else "not reproduced"
    return (f"**{what}: {word}** — {c['within']} of {c['n']} published numbers within ±{100 * tolerance:.0f} "
            f"points (mean |difference| {100 * c['mean_abs']:.1f} points, mean measured − published "
            f"{100 * c['mean_diff']:+.1f}, largest {100 * c['max_abs']:.1f}).")


# ------------------------------------------------------------------------------------------ report helpers
def wide(table: pd.DataFrame, index: list[str], columns: str = "split") -> pd.DataFrame:
    """A long table side by side: one row per ``index`` (in the table's order); ``published``, ``measured`` and
    their ``difference`` per value of ``columns``."""
    table = table.assign(difference=table["measured"] - table["published"])
    values = ["published", "measured", "difference"]
    t = table.set_index([*index, columns])[values].unstack(columns)
    t = t.reindex(pd.MultiIndex.from_frame(table[index].drop_duplicates()) if len(index) > 1
                  else pd.Index(table[index[0]].drop_duplicates(), name=index[0]))
    t.columns = [f"{value} {split}" for value, split in t.columns]
    order = [f"{v} {s}" for s in dict.fromkeys(table[columns]) for v in values]
    return t[[c for c in order if c in t.columns]].reset_index()


def gap_stats(figure1: pd.DataFrame, panel: str) -> pd.DataFrame:
    """Per k (panel ``k``) or depth (panel ``depth``): the gap over tasks (mean over seeds first)."""
    by = "k" if panel == "k" else "depth"
    t = figure1[figure1["panel"] == panel].groupby([by, "task"])["gap"].mean().reset_index()
    g = t.groupby(by)["gap"]
    out = g.agg(tasks="count", mean="mean", std="std", min="min", max="max")
    out["range"] = out["max"] - out["min"]
    return out.reset_index()


# ------------------------------------------------------------------------------------------ scorecard
def scorecard_rows(tables: dict[str, pd.DataFrame]) -> list[dict]:
    """One row per LUT table part (per dataset, label kind or triangle): the mean of its published and measured
    accuracies (%), the mean difference, and how many of its numbers are within the document's ±3 points."""
    parts = []
    if "table1" in tables:
        t1 = tables["table1"]
        parts += [(f"Table 1, {DATASET_NAMES.get(d, d)}: training and test accuracy per method", "LUT Table 1",
                   t1[t1["dataset"] == d]) for d in dict.fromkeys(t1["dataset"])]
    if "table2" in tables:
        t2 = tables["table2"]
        parts.append(("Table 2: LUT training accuracy per layer (mean, min, max) and test accuracy", "LUT Table 2",
                      t2[t2["statistic"].isin(ACCURACY_STATISTICS)]))
    if "table3" in tables:
        t3 = tables["table3"]
        parts += [(f"Table 3, {labels} labels: accuracy vs k", "LUT Table 3", t3[t3["labels"] == labels])
                  for labels in ("real", "random")]
    if "table4" in tables:
        t4 = tables["table4"]
        parts += [(f"Table 4: pairwise CIFAR-10 {name} accuracy", "LUT Table 4", t4[t4["split"] == split])
                  for split, name in (("test", "test"), ("train", "training"))]
    rows = []
    for item, table_name, part in parts:
        both = part.dropna(subset=["published", "measured"])
        c = compare(both)
        rows.append({"document": "LUT", "item": f"{item} (mean of {c['n']} numbers)" if c["n"] else item,
                     "published": 100 * both["published"].mean() if c["n"] else np.nan,
                     "measured": 100 * both["measured"].mean() if c["n"] else np.nan,
                     "difference": 100 * c["mean_diff"], "tolerance": 100 * TOLERANCE,
                     "verdict": group_verdict(c["within"], c["n"]), "decimals": 1, "anchor": anchor(table_name)})
    return rows
