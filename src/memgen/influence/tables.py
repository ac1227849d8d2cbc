"""The influence study's report tables: per-study summary with counts above thresholds, histograms of ``mem``,
convergence in t, consistency across studies (Figure 7), removal (Figure 2) and the last-layer finding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from memgen.influence.estimator import (consistency_infl, consistency_mem, mem_histogram, summarize_removal,
                                       threshold_counts)
from memgen.runtime import write_csv
from memgen.scorecard import anchor


# The document's last-layer experiment (CIFAR-100, ResNet50 representations; t = 4,000 models at m = 0.7 n).
PUBLISHED_LAST_LAYER = {
    "test accuracy, linear models on 70% (%)": 75.8,
    "test accuracy, backbone trained on 100% (%)": 75.9,
    "test accuracy, full networks on 70% (%)": 72.3,
    "examples with mem >= 0.25, linear models": 38,
    "examples with mem >= 0.25, full networks": 18099,
}


def read_summaries(paths: dict) -> pd.DataFrame:
    rows = []
    for name, path in paths.items():
        s = json.loads(Path(path).read_text())
        s.pop("timings_s", None)
        rows.append(s)
    return pd.DataFrame(rows)


def load_mem(scores_npz) -> np.ndarray:
    with np.load(scores_npz) as z:
        return z["mem"]


def study_counts(scores_npz, thetas) -> pd.DataFrame:
    """Point and lower-bound counts above each theta from a study's scores.npz, with their expected false
    discoveries and the counts expected if nothing were memorized (:func:`threshold_counts`)."""
    with np.load(scores_npz) as z:
        k_in = np.rint(z["in_acc"] * z["n_in"])
        return threshold_counts(z["mem"], z["mem_lo"], k_in, z["n_in"], z["n_correct"], int(z["t"]), thetas)


def summary_table(summaries: pd.DataFrame, counts: dict) -> pd.DataFrame:
    """The per-study summary with, per theta, ``count_mem_ge_{theta}`` (point count) and
    ``false_mem_ge_{theta}`` (the expected number of them whose true mem is below theta), ``lower_mem_ge_{theta}``
    (examples whose interval's lower end clears theta: the reliable count) and ``false_lower_mem_ge_{theta}``,
    and ``chance_mem_ge_{theta}`` (the point count expected if no example were memorized, at the study's t)."""
    wide = []
    for study, c in counts.items():
        row = {"study": study}
        for _, r in c.iterrows():
            th = f"{r['theta']:g}"
            row[f"count_mem_ge_{th}"] = int(r["count"])
            row[f"false_mem_ge_{th}"] = round(float(r["false_count"]), 1)
            row[f"lower_mem_ge_{th}"] = int(r["count_lower"])
            row[f"false_lower_mem_ge_{th}"] = round(float(r["false_count_lower"]), 1)
            row[f"chance_mem_ge_{th}"] = round(float(r["chance_count"]), 1)
        wide.append(row)
    wide = pd.DataFrame(wide)
    clash = sorted(set(wide.columns) & set(summaries.columns) - {"study"})
    if clash:
        raise ValueError(f"summary columns {clash} exist in the studies' summary.json too; rename one of them")
    return summaries.merge(wide, on="study")


ALGORITHM_KEYS = ("dataset", "split", "learner", "features")


def same_algorithm(a: dict, b: dict) -> bool:
    """Two study configs run the same algorithm on the same task: they differ at most in seeds
    (``seed``, the linear probe's ``order_seed``), t and how the work is cut."""
    def settings(s):
        return {k: v for k, v in (s.get("settings") or {}).items() if k != "order_seed"}
    return all(a.get(k) == b.get(k) for k in ALGORITHM_KEYS) and settings(a) == settings(b)


def study_run(scores_npz) -> tuple[int, float, int]:
    """(seed, ratio, t) of a study's estimate: its subsets and its number of models."""
    with np.load(scores_npz) as z:
        return int(z["seed"]), float(z["ratio"]), int(z["t"])


FLOOR_COLUMNS = ("D_mem", "J_mem", "J_infl", "D_infl_common")


def worse(column: str, a, b):
    """The noisier of two floors of one quantity: the larger difference ``D_*``, the smaller overlap ``J_*``
    (NaN when either is missing: a floor is never borrowed from another algorithm)."""
    return np.maximum(a, b) if column.startswith("D_") else np.minimum(a, b)


def floor_pair(side: str, pairs_of_studies, studies: dict, runs: dict):
    """The noise floor of one side of a consistency pair: a configured pair of two independent runs (subsets
    not shared) of that side's algorithm on its task, both at its t (the pair holding the side itself first);
    None when no such pair is configured.  ``runs`` maps a study to its ``(seed, ratio, t)``."""
    def floor_of_side(x, y):
        return (same_algorithm(studies[x], studies[y]) and same_algorithm(studies[x], studies[side])
                and runs[x][:2] != runs[y][:2] and runs[x][2] == runs[y][2] == runs[side][2])
    found = [(x, y) for x, y in pairs_of_studies if floor_of_side(x, y)]
    found.sort(key=lambda pair: side not in pair)
    return found[0] if found else None


def consistency_table(pairs_of_studies, scores: dict, pair_csvs: dict, thetas, infl_thetas,
                      studies: dict) -> pd.DataFrame:
    """Figure 7: D_mem / J_mem (and J_infl / D_infl on the pairs both kept) between two studies of the
    same training set, for every configured pair.

    ``shared_subsets`` says whether the two studies trained on the same subsets (same seed and ratio,
    read from their scores): their noise is then correlated, which raises J and lowers D.  Every row
    also shows the noise floor of each side: the same quantity between two independent runs of that side's
    algorithm on the same task at its t (``floor_a`` / ``floor_b``: the configured pair ``x vs y``, with
    ``{quantity}_floor_a`` / ``_floor_b``), and ``{quantity}_floor``, the worse of the two (:func:`worse`) that
    a cross-study number is judged against; ``floor_note`` names a side without such a pair (its floor is left
    empty, never borrowed from another algorithm or t)."""
    frames = []
    runs = {name: study_run(scores[name]) for pair in pairs_of_studies for name in pair}
    for a, b in pairs_of_studies:
        ma, mb = load_mem(scores[a]), load_mem(scores[b])
        if ma.shape != mb.shape:
            raise ValueError(f"consistency pair ({a}, {b}): the studies have different training sets "
                             f"({len(ma)} vs {len(mb)} examples); compare studies of the same dataset and split")
        m = consistency_mem(ma, mb, thetas).assign(kind="mem")
        pa, pb = pd.read_csv(pair_csvs[a]), pd.read_csv(pair_csvs[b])
        i = consistency_infl(pa, pb, infl_thetas).assign(kind="infl")
        frames.append(pd.concat([m, i], ignore_index=True).assign(
            a=a, b=b, seed_a=runs[a][0], seed_b=runs[b][0], t_a=runs[a][2], t_b=runs[b][2],
            shared_subsets=runs[a][:2] == runs[b][:2], same_algorithm=same_algorithm(studies[a], studies[b])))
    cols = ["a", "b", "seed_a", "seed_b", "t_a", "t_b", "shared_subsets", "same_algorithm", "kind", "theta", "n_a",
            "n_b", "n_union", "D_mem", "J_mem", "J_infl", "D_infl_common", "floor_a", "floor_b"] + \
        [f"{c}_floor{side}" for c in FLOOR_COLUMNS for side in ("_a", "_b", "")] + ["floor_note"]
    if not frames:
        return pd.DataFrame(columns=cols)
    df = pd.concat(frames, ignore_index=True)
    by_pair = df.set_index(["a", "b", "kind", "theta"])
    for (a, b), frame in zip(pairs_of_studies, frames):
        rows = (df.a == a) & (df.b == b)
        keys = list(zip(df.loc[rows, "kind"], df.loc[rows, "theta"]))
        notes = []
        for side, name in (("a", a), ("b", b)):
            pair = floor_pair(name, pairs_of_studies, studies, runs)
            df.loc[rows, f"floor_{side}"] = f"{pair[0]} vs {pair[1]}" if pair else ""
            if pair is None:
                notes.append(f"no independent same-algorithm pair of {name} at t = {runs[name][2]} configured")
            for c in FLOOR_COLUMNS:
                df.loc[rows, f"{c}_floor_{side}"] = [by_pair[c].get((*pair, *k), np.nan) for k in keys] \
                    if pair else np.nan
        df.loc[rows, "floor_note"] = "; ".join(notes)
    for c in FLOOR_COLUMNS:
        df[f"{c}_floor"] = worse(c, df[f"{c}_floor_a"].astype(float), df[f"{c}_floor_b"].astype(float))
    return df.reindex(columns=cols)


def last_layer_table(summaries: pd.DataFrame, linear: str | None, network: str | None,
                     backbone_metrics: dict | None) -> pd.DataFrame:
    """The document's last-layer finding beside this run: linear models on frozen features against
    full networks (published: CIFAR-100 / ResNet50; measured: the configured studies)."""
    by = summaries.set_index("study") if len(summaries) else pd.DataFrame()

    def get(study, col, scale=1.0):
        return float(by.loc[study, col]) * scale if study and study in by.index else np.nan

    backbone = (backbone_metrics or {}).get("test_accuracy")
    measured = {
        "test accuracy, linear models on 70% (%)": get(linear, "test_acc_mean", 100),
        "test accuracy, backbone trained on 100% (%)": np.nan if backbone is None else 100 * backbone,
        "test accuracy, full networks on 70% (%)": get(network, "test_acc_mean", 100),
        # the examples whose 95% interval clears 0.25: a point count at small t holds many false discoveries
        "examples with mem >= 0.25, linear models": get(linear, "n_mem_lower_ge_0.25"),
        "examples with mem >= 0.25, full networks": get(network, "n_mem_lower_ge_0.25"),
    }

    def count_note(study):
        return (f"study {study}: 95% interval above 0.25, {get(study, 'false_n_mem_lower_ge_0.25'):.1f} of them "
                f"expected false (point count {get(study, 'n_mem_ge_0.25'):.0f}, "
                f"{get(study, 'false_n_mem_ge_0.25'):.0f} of them expected false)")

    notes = {
        "test accuracy, backbone trained on 100% (%)": "the memory study's backbone of the same split",
        "test accuracy, full networks on 70% (%)": f"study {network}" if network else "not configured at this preset",
        "examples with mem >= 0.25, full networks": count_note(network) if network else "not configured at this preset",
        "test accuracy, linear models on 70% (%)": f"study {linear}",
        "examples with mem >= 0.25, linear models": count_note(linear),
    }
    rows = [{"quantity": q, "published (CIFAR-100, ResNet50)": p, "measured": measured[q], "note": notes[q]}
            for q, p in PUBLISHED_LAST_LAYER.items()]
    return pd.DataFrame(rows)


def backbone_test_accuracy(embeddings_path) -> dict:
    """Test accuracy of the backbone whose embeddings a study uses (from its stored logits)."""
    with np.load(embeddings_path) as e:
        return {"test_accuracy": float(np.mean(e["test_logits"].argmax(1) == e["test_y"]))}


def write_tables(studies: dict, inputs: dict, outputs: dict, *, consistency, last_layer: dict,
                 thetas, infl_thetas, backbone_embeddings=None) -> None:
    """Every table of the report section (see workflow/rules/influence.smk for the files)."""
    summaries = read_summaries(inputs["summaries"])
    hist = [mem_histogram(load_mem(inputs["scores"][name])).assign(study=name) for name in studies]
    counts = {name: study_counts(inputs["scores"][name], thetas) for name in studies}
    write_csv(outputs["summary"], summary_table(summaries, counts))
    write_csv(outputs["histograms"], pd.concat(hist, ignore_index=True))
    conv = pd.concat([pd.read_csv(p) for p in inputs["convergence"].values()], ignore_index=True)
    write_csv(outputs["convergence"], conv)
    write_csv(outputs["consistency"], consistency_table(consistency, inputs["scores"], inputs["pairs"], thetas,
                                                         infl_thetas, studies))
    removal = []
    for study, path in inputs["removal"].items():
        df = pd.read_csv(path)
        removal.append(summarize_removal(df, representation_retrained=bool(df["representation_retrained"].iloc[0]),
                                         seeded_trials=bool(df["seeded_trials"].iloc[0])).assign(study=study))
    write_csv(outputs["removal"], pd.concat(removal, ignore_index=True) if removal else
               pd.DataFrame(columns=["theta", "kind", "test_acc_mean", "test_acc_std", "trials", "n_removed",
                                     "frac_remaining", "representation_retrained", "spread", "study"]))
    metrics = backbone_test_accuracy(backbone_embeddings) if backbone_embeddings else None
    write_csv(outputs["last_layer"], last_layer_table(summaries, last_layer.get("linear"), last_layer.get("network"),
                                                       metrics))


def scorecard_rows(last_layer: pd.DataFrame) -> list[dict]:
    """The last-layer finding: the published numbers (CIFAR-100, ResNet50) set beside this run for orientation,
    and the claim they support, checked: full networks memorize many more examples than linear models on
    frozen features."""
    published_column = next(c for c in last_layer.columns if c.startswith("published"))
    table = last_layer.set_index("quantity")
    rows = []
    for quantity, r in table.iterrows():
        counts = quantity.startswith("examples")
        rows.append({"document": "F&Z", "item": f"Last layer: {quantity}", "published": r[published_column],
                     "measured": r["measured"], "difference": np.nan, "tolerance": np.nan,
                     "verdict": "not measured" if pd.isna(r["measured"]) else "orientation only (other data set)",
                     "decimals": 0 if counts else 1, "anchor": anchor("F&Z last layer")})
    counts = table[table.index.str.startswith("examples")]
    linear = counts[counts.index.str.contains("linear")]
    network = counts[counts.index.str.contains("full network")]
    if len(linear) and len(network):
        pub_lin, pub_net = linear[published_column].iloc[0], network[published_column].iloc[0]
        lin, net = linear["measured"].iloc[0], network["measured"].iloc[0]
        measured = net / max(lin, 1) if np.isfinite(lin) and np.isfinite(net) else np.nan
        rows.append({"document": "F&Z", "item": "Last layer: full networks memorize more examples than linear "
                     "models (ratio of the counts, linear count at least 1)", "published": pub_net / max(pub_lin, 1),
                     "measured": measured, "difference": np.nan, "tolerance": np.nan,
                     "verdict": "not measured" if not np.isfinite(measured) else
                     "holds" if measured > 1 else "does not hold",
                     "decimals": 1, "anchor": anchor("F&Z last layer")})
    return rows
