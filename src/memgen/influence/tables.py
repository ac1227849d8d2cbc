"""The influence study's report tables: per-study summary with counts above thresholds, histograms of ``mem``,
convergence in t, consistency across studies (Figure 7), removal (Figure 2) and the last-layer finding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from memgen.influence.estimator import consistency_infl, consistency_mem, count_above, mem_histogram, summarize_removal
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


def consistency_table(pairs_of_studies, scores: dict, pair_csvs: dict, thetas, infl_thetas) -> pd.DataFrame:
    """Figure 7: D_mem / J_mem (and J_infl / D_infl on the pairs both kept) between two studies of the
    same training set, for every configured pair."""
    frames = []
    for a, b in pairs_of_studies:
        ma, mb = load_mem(scores[a]), load_mem(scores[b])
        if ma.shape != mb.shape:
            raise ValueError(f"consistency pair ({a}, {b}): the studies have different training sets "
                             f"({len(ma)} vs {len(mb)} examples); compare studies of the same dataset and split")
        m = consistency_mem(ma, mb, thetas).assign(kind="mem")
        pa, pb = pd.read_csv(pair_csvs[a]), pd.read_csv(pair_csvs[b])
        i = consistency_infl(pa, pb, infl_thetas).assign(kind="infl")
        frames.append(pd.concat([m, i], ignore_index=True).assign(a=a, b=b))
    cols = ["a", "b", "kind", "theta", "n_a", "n_b", "n_union", "D_mem", "J_mem", "J_infl", "D_infl_common"]
    if not frames:
        return pd.DataFrame(columns=cols)
    df = pd.concat(frames, ignore_index=True)
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
        "examples with mem >= 0.25, linear models": get(linear, "n_mem_ge_0.25"),
        "examples with mem >= 0.25, full networks": get(network, "n_mem_ge_0.25"),
    }
    notes = {
        "test accuracy, backbone trained on 100% (%)": "the memory study's backbone of the same split",
        "test accuracy, full networks on 70% (%)": f"study {network}" if network else "not configured at this preset",
        "examples with mem >= 0.25, full networks": f"study {network}" if network else "not configured at this preset",
        "test accuracy, linear models on 70% (%)": f"study {linear}",
        "examples with mem >= 0.25, linear models": f"study {linear}",
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
    counts = []
    hist = []
    for name in studies:
        mem = load_mem(inputs["scores"][name])
        counts.append(count_above(mem, thetas).query("`class` == 'all'").drop(columns="class").assign(study=name))
        hist.append(mem_histogram(mem).assign(study=name))
    summary = summaries.merge(pd.concat(counts).pivot(index="study", columns="theta", values="count")
                              .rename(columns=lambda th: f"count_mem_ge_{th:g}").reset_index(), on="study")
    write_csv(outputs["summary"], summary)
    write_csv(outputs["histograms"], pd.concat(hist, ignore_index=True))
    conv = pd.concat([pd.read_csv(p) for p in inputs["convergence"].values()], ignore_index=True)
    write_csv(outputs["convergence"], conv)
    write_csv(outputs["consistency"], consistency_table(consistency, inputs["scores"], inputs["pairs"], thetas,
                                                         infl_thetas))
    removal = [summarize_removal(pd.read_csv(p)).assign(study=s) for s, p in inputs["removal"].items()]
    write_csv(outputs["removal"], pd.concat(removal, ignore_index=True) if removal else
               pd.DataFrame(columns=["theta", "kind", "test_acc_mean", "test_acc_std", "trials", "n_removed",
                                     "frac_remaining", "study"]))
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
