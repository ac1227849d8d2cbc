"""The LUT document's claims (Chatterjee 2018, "Learning and memorization"), each tested on this run's long tables
(:mod:`memgen.lut.tables`) with a 95% interval: an accuracy's interval combines the binomial sampling of the
``n`` examples it is measured on with the spread over seeds; a difference of two accuracies treats them as
independent (conservative where they share a test set, as the methods of Table 1 do); claims over the pairwise
tasks resample the tasks. Accuracies are fractions, as the document gives them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from memgen.claims import Claim, above, below, bootstrap_interval, judge, within, write_claims
from memgen.lut.tables import (PUBLISHED_DEPTH, PUBLISHED_TABLE1, PUBLISHED_TABLE2, PUBLISHED_TABLE3, PUBLISHED_TABLE4,
                               PUBLISHED_WIDTH, TOLERANCE)

DOCUMENT = "LUT"
Z = float(stats.norm.ppf(0.975))
N_DRAWS = 2000                   # draws of the accuracies for the rank-agreement interval
CHANCE = 0.5                     # every task is binary
WELL_ABOVE_CHANCE = 0.55         # "well above chance": 5 points over the coin (the document's lowest test is 0.61)
MEMORIZED = 0.9                  # random labels count as memorized from this training accuracy (document: 0.98)
RANDOM_TEST_BAND = 0.05          # "no generalization": test accuracy within 0.50 ± 0.05 (document: 0.50-0.54)
RANK_AGREEMENT = 0.8             # Spearman correlation of the methods' order with the document's
FOLLOWS_DOCUMENT = 0.7           # Pearson correlation of the pairwise accuracies with the document's matrix
ACCURACY = "accuracy (fraction)"

# The document's own effects, from its tables: Table 2's std over LUTs (index 3) from layer 1 to the last hidden
# layer; Table 3's (real train, real test, random train, random test) by k; Table 4's lowest test accuracy.
_T3 = {k: dict(zip(("real train", "real test", "random train", "random test"), v)) for k, v in PUBLISHED_TABLE3.items()}
_T3_K = sorted(_T3)
PUBLISHED_SPREAD_CHANGE = round(PUBLISHED_TABLE2[-2][3] - PUBLISHED_TABLE2[1][3], 4)
PUBLISHED_TRAIN_RISE = round(_T3[_T3_K[-1]]["real train"] - _T3[_T3_K[0]]["real train"], 2)
PUBLISHED_TEST_PEAK = round(max(_T3[k]["real test"] for k in _T3_K[1:-1])
                            - max(_T3[k]["real test"] for k in (_T3_K[0], _T3_K[-1])), 2)
PUBLISHED_RANDOM_MEMORIZED = _T3[_T3_K[-1]]["random train"]
PUBLISHED_RANDOM_DEVIATION = round(max(abs(_T3[k]["random test"] - CHANCE) for k in _T3_K), 2)
PUBLISHED_LOWEST_PAIR = float(PUBLISHED_TABLE4[np.triu_indices(len(PUBLISHED_TABLE4), 1)].min())   # test: above


def _se(row) -> float:
    """Standard error of a measured accuracy: binomial over its ``n`` examples, plus the spread over seeds."""
    p, n = float(row["measured"]), float(row["n"])
    seeds = float(row["measured_sd"]) ** 2 / row["n_seeds"] if row["n_seeds"] > 1 else 0.0
    return float(np.sqrt(p * (1 - p) / n + seeds))


def _statistic(*rows) -> str:
    seeds = max(int(r["n_seeds"]) for r in rows)
    spread = f", spread over {seeds} seeds" if seeds > 1 else ", 1 seed"
    n = " and ".join(f"{int(r['n']):,}" for r in rows)
    return f"normal interval: binomial over {n} examples{spread}" + (", independent" if len(rows) > 1 else "")


def _level(claim: Claim, row, scale: str, offset: float = 0.0) -> dict:
    """A claim on one accuracy (minus ``offset``)."""
    p, se = float(row["measured"]) - offset, _se(row)
    return judge(claim, p, p - Z * se, p + Z * se, statistic=_statistic(row), scale=scale)


def _difference(claim: Claim, a, b, scale: str) -> dict:
    """A claim on accuracy a minus accuracy b."""
    d, se = float(a["measured"] - b["measured"]), float(np.hypot(_se(a), _se(b)))
    return judge(claim, d, d - Z * se, d + Z * se, statistic=_statistic(a, b), scale=scale)


def _draw_interval(statistic, rows: pd.DataFrame, seed: int = 0) -> tuple[float, float, float]:
    """``statistic(accuracies)`` with an interval from accuracies drawn around the measured ones (their
    standard errors): for statistics of a few accuracies, such as a rank correlation."""
    measured = rows["measured"].to_numpy(float)
    se = np.array([_se(r) for _, r in rows.iterrows()])
    draws = np.random.default_rng(seed).normal(measured, se, size=(N_DRAWS, len(measured)))
    values = np.array([statistic(d) for d in draws])
    lo, hi = np.nanquantile(values, [0.025, 0.975])
    return float(statistic(measured)), float(lo), float(hi)


def _spearman(published):
    return lambda measured: float(stats.spearmanr(published, measured)[0])


def claims_table1(table1: pd.DataFrame, scale: str) -> list[dict]:
    """Table 1, per dataset: memorization well above chance, the conv net best, memorization level with 1-NN on
    CIFAR-10, and the methods in the document's order."""
    rows = []
    for dataset in dict.fromkeys(table1["dataset"]):
        pub = PUBLISHED_TABLE1.get(dataset, {})
        t = table1[(table1["dataset"] == dataset) & (table1["split"] == "test")].set_index("method_key")
        if "memorization" in t.index:
            rows.append(_level(Claim(DOCUMENT, "Table 1", f"{dataset}: memorization is well above chance", ACCURACY,
                                     above(WELL_ABOVE_CHANCE), pub.get("memorization", (None, None))[1]),
                               t.loc["memorization"], scale))
        if "conv_net" in t.index and len(t) > 1:
            best = t.drop(index="conv_net")["measured"].idxmax()
            others = [m for m in pub if m != "conv_net"]
            rows.append(_difference(Claim(DOCUMENT, "Table 1", f"{dataset}: the conv net is the most accurate "
                                          f"(against this run's next best, {t.loc[best, 'method']})",
                                          "test accuracy difference", above(0),
                                          round(pub["conv_net"][1] - max(pub[m][1] for m in others), 2)
                                          if "conv_net" in pub else None),
                                    t.loc["conv_net"], t.loc[best], scale))
        if dataset == "cifar10" and {"memorization", "knn1"} <= set(t.index):
            rows.append(_difference(Claim(DOCUMENT, "Table 1", "cifar10: memorization is level with 1-nearest "
                                          "neighbour", "test accuracy difference", within(TOLERANCE),
                                          round(pub["memorization"][1] - pub["knn1"][1], 2)),
                                    t.loc["memorization"], t.loc["knn1"], scale))
        both = t.dropna(subset=["published", "measured"])
        if len(both) >= 3:
            effect, lo, hi = _draw_interval(_spearman(both["published"].to_numpy()), both)
            rows.append(judge(Claim(DOCUMENT, "Table 1", f"{dataset}: the methods rank as in the document",
                                    "Spearman correlation of test accuracies with the document's",
                                    above(RANK_AGREEMENT)), effect, lo, hi,
                              statistic=f"accuracies drawn within their standard errors, {len(both)} methods",
                              scale=scale))
    return rows


def claims_table2(table2: pd.DataFrame, scale: str) -> list[dict]:
    """Table 2: LUT training accuracy rises layer by layer and its spread over LUTs shrinks; the network's test
    accuracy where the run has the document's k."""
    t = table2[table2["layer"] != "network"].assign(layer=lambda d: d["layer"].astype(int))
    stat = {s: g.set_index("layer").sort_index() for s, g in t.groupby("statistic")}
    mean, std, count = stat["mean"], stat["std"], stat["count"]["measured"]
    rows = []
    if len(mean) > 1:
        # The mean over a layer's LUTs: its standard error is the spread over LUTs / sqrt(count).
        se = np.sqrt((std["measured"] ** 2) / count + mean["measured_sd"].fillna(0) ** 2 / mean["n_seeds"])
        rises = mean["measured"].diff().iloc[1:]
        layer = int(rises.idxmin())
        half = Z * float(np.hypot(se[layer], se[layer - 1]))
        rows.append(judge(Claim(DOCUMENT, "Table 2", "the LUTs' training accuracy rises layer by layer (its "
                                f"smallest rise, layer {layer - 1} to {layer})", "mean LUT training accuracy rise",
                                above(0)), float(rises[layer]), float(rises[layer]) - half, float(rises[layer]) + half,
                          statistic=f"normal interval over the LUTs of each layer ({int(count[layer]):,} and "
                                    f"{int(count[layer - 1]):,})", scale=scale))
    hidden = std[(std.index >= 1) & (count > 1)]["measured"]
    if len(hidden) > 1:
        first, last = int(hidden.index[0]), int(hidden.index[-1])
        # The standard error of a standard deviation over c LUTs: sd / sqrt(2 (c - 1)).
        se = [hidden[i] / np.sqrt(2 * (count[i] - 1)) for i in (first, last)]
        d, half = float(hidden[last] - hidden[first]), Z * float(np.hypot(*se))
        rows.append(judge(Claim(DOCUMENT, "Table 2", f"the spread of the LUTs' training accuracy shrinks with depth "
                                f"(layer {first} to {last})", "standard deviation over LUTs, last minus first",
                                below(0), PUBLISHED_SPREAD_CHANGE), d, d - half, d + half,
                          statistic=f"normal interval over {int(count[first]):,} and {int(count[last]):,} LUTs",
                          scale=scale))
    test = table2[table2["layer"] == "network"].iloc[0]
    if pd.notna(test["published"]):
        rows.append(_level(Claim(DOCUMENT, "Table 2", "the network's test accuracy is the document's",
                                 "test accuracy minus the document's", within(TOLERANCE)),
                           test, scale, offset=float(test["published"])))
    return rows


def claims_table3(table3: pd.DataFrame, scale: str) -> list[dict]:
    """Table 3: larger LUTs memorize more, test accuracy peaks at an intermediate k, random labels can be
    memorized without generalizing and are harder to memorize than real ones."""
    def series(labels, split):
        return table3[(table3["labels"] == labels) & (table3["split"] == split)].set_index("k").sort_index()

    real_train, real_test = series("real", "train"), series("real", "test")
    rand_train, rand_test = series("random", "train"), series("random", "test")
    rows = []
    if len(real_train) > 1:
        lo, hi = real_train.index[0], real_train.index[-1]
        rows.append(_difference(Claim(DOCUMENT, "Table 3", f"training accuracy rises with k (real labels, k={lo} to "
                                      f"{hi})", "training accuracy difference", above(0), PUBLISHED_TRAIN_RISE),
                                real_train.loc[hi], real_train.loc[lo], scale))
    if len(real_test) > 2:
        inner, ends = real_test.iloc[1:-1], real_test.iloc[[0, -1]]
        peak, end = inner["measured"].idxmax(), ends["measured"].idxmax()
        rows.append(_difference(Claim(DOCUMENT, "Table 3", f"test accuracy peaks at an intermediate k (k={peak} "
                                      f"against k={end})", "test accuracy difference", above(0), PUBLISHED_TEST_PEAK),
                                real_test.loc[peak], real_test.loc[end], scale))
    if len(rand_train):
        k = rand_train.index[-1]
        rows.append(_level(Claim(DOCUMENT, "Table 3", f"random labels can be memorized (k={k})",
                                 ACCURACY, above(MEMORIZED), PUBLISHED_RANDOM_MEMORIZED), rand_train.loc[k], scale))
        far = (rand_test["measured"] - CHANCE).abs().idxmax()
        rows.append(_level(Claim(DOCUMENT, "Table 3", f"no generalization on random labels (k={far}, the farthest "
                                 "from chance)", "test accuracy minus chance", within(RANDOM_TEST_BAND),
                                 PUBLISHED_RANDOM_DEVIATION),
                           rand_test.loc[far], scale, offset=CHANCE))
        common = real_train.index.intersection(rand_train.index)
        if len(common):
            gaps = real_train.loc[common, "measured"] - rand_train.loc[common, "measured"]
            k = gaps.idxmin()
            rows.append(_difference(Claim(DOCUMENT, "Table 3", f"random labels are harder to memorize (k={k}, the "
                                          "closest of the k both ran)", "training accuracy, real minus random",
                                          above(0)), real_train.loc[k], rand_train.loc[k], scale))
    return rows


def claims_figure1(figure1: pd.DataFrame, scale: str) -> list[dict]:
    """Figure 1: the generalization gap grows with k, and its spread over tasks shrinks with depth; intervals by
    resampling the pairwise tasks."""
    rows = []
    by_k = figure1[figure1["panel"] == "k"].groupby(["task", "k"])["gap"].mean().unstack("k")
    if by_k.shape[1] > 1:
        lo, hi = by_k.columns[0], by_k.columns[-1]
        effect, l, h = bootstrap_interval(lambda a, b: float(np.mean(a - b)), by_k[hi].to_numpy(), by_k[lo].to_numpy())
        rows.append(judge(Claim(DOCUMENT, "Figure 1", f"the generalization gap grows with k (k={lo} to {hi})",
                                "mean gap difference over the pairwise tasks", above(0)), effect, l, h,
                          statistic=f"bootstrap over {len(by_k)} tasks", scale=scale))
    by_d = figure1[figure1["panel"] == "depth"].groupby(["task", "depth"])["gap"].mean().unstack("depth")
    if by_d.shape[1] > 1 and len(by_d) > 2:
        lo, hi = by_d.columns[0], by_d.columns[-1]
        k = int(figure1.loc[figure1["panel"] == "depth", "k"].iloc[0])
        effect, l, h = bootstrap_interval(lambda a, b: float(np.std(a, ddof=1) - np.std(b, ddof=1)),
                                          by_d[hi].to_numpy(), by_d[lo].to_numpy())
        rows.append(judge(Claim(DOCUMENT, "Figure 1", f"the spread of the gap over tasks shrinks with depth (k={k}, "
                                f"{lo} to {hi} hidden layers)", "standard deviation of the gap over tasks, deepest "
                                "minus shallowest", below(0)), effect, l, h,
                          statistic=f"bootstrap over {len(by_d)} tasks", scale=scale))
    return rows


def claims_table4(table4: pd.DataFrame, scale: str) -> list[dict]:
    """Table 4: the per-task accuracies follow the document's matrix, and every pairwise task is above chance."""
    rows = []
    for split in ("test", "train"):
        t = table4[table4["split"] == split].dropna(subset=["published", "measured"])
        if len(t) > 2:
            effect, lo, hi = bootstrap_interval(lambda p, m: float(np.corrcoef(p, m)[0, 1]),
                                                t["published"].to_numpy(), t["measured"].to_numpy())
            rows.append(judge(Claim(DOCUMENT, "Table 4", f"{split} accuracy per pairwise task follows the document",
                                    "Pearson correlation with the document's matrix", above(FOLLOWS_DOCUMENT)),
                              effect, lo, hi, statistic=f"bootstrap over {len(t)} tasks", scale=scale))
    t = table4[table4["split"] == "test"]
    if len(t):
        worst = t.loc[t["measured"].idxmin()]
        rows.append(_level(Claim(DOCUMENT, "Table 4", f"every pairwise task is well above chance (the lowest, "
                                 f"{worst['name_a']}-{worst['name_b']})", ACCURACY, above(WELL_ABOVE_CHANCE),
                                 PUBLISHED_LOWEST_PAIR),
                           worst, scale))
    return rows


def lut_scale(depth: int, width: int, n_seeds: int) -> str:
    """The network this run fits beside the document's."""
    return (f"{depth} hidden layers of {width} LUTs, {n_seeds} seed{'s' if n_seeds > 1 else ''} (document: "
            f"{PUBLISHED_DEPTH} layers of {PUBLISHED_WIDTH})")


def lut_claims(tables: dict[str, pd.DataFrame], *, depth: int, width: int, n_seeds: int) -> list[dict]:
    """Every LUT claim this run can test, from the long tables ``table1``-``table4`` and ``figure1``."""
    scale = lut_scale(depth, width, n_seeds)
    return (claims_table1(tables["table1"], scale) + claims_table2(tables["table2"], scale)
            + claims_table3(tables["table3"], scale) + claims_figure1(tables["figure1"], scale)
            + claims_table4(tables["table4"], scale))


def write_lut_claims(paths: dict, out_csv, *, depth: int, width: int, n_seeds: int) -> list[dict]:
    rows = lut_claims({name: pd.read_csv(path) for name, path in paths.items()}, depth=depth, width=width,
                      n_seeds=n_seeds)
    write_claims(rows, out_csv)
    return rows
