"""One scorecard across the three documents: every published number this run can be set beside, as
document | item | published | measured | difference | tolerance | verdict, with the report anchor of the table
each row comes from. Built from the studies' own tables (results/tables/*.csv), so a table and its scorecard
row never disagree.

Accuracies are in percent (as the documents give them); ``decimals`` is the document's precision for the row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from memgen.lut import tables as lt

COLUMNS = ["document", "item", "published", "measured", "difference", "tolerance", "verdict", "decimals", "anchor"]

# The documents, by the short names the report uses for their tables ("LUT Table 1", "Memory Table 1", "F&Z ...").
DOCUMENTS = {
    "LUT": "Learning and memorization (Chatterjee 2018)",
    "Memory": "Memory-augmented classifier (ResNet-20 + k-NN memory)",
    "F&Z": "What neural networks memorize and why (Feldman & Zhang 2020)",
}
DATASET_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
RETRIEVAL_TOLERANCE = 1.0      # percentage points: the document gives two decimals of a test accuracy on 10,000 images
LUT_ACCURACY_STATISTICS = ("mean", "min", "max", "test accuracy")   # Table 2 rows that are accuracies

# Verdict words (the report colours them): a group of numbers is reproduced when at least this share is within
# tolerance, partly reproduced from the lower share on.
REPRODUCED_SHARE, PARTLY_SHARE = 0.8, 0.5


def anchor(name: str) -> str:
    """The HTML id of a named table or figure in the report: "LUT Table 1" -> "lut-table-1"."""
    return "".join(c if c.isalnum() else "-" for c in name.lower().replace("&", "")).strip("-").replace("--", "-")


def group_verdict(within: int, n: int) -> str:
    if n == 0:
        return "not comparable (other settings than the document's)"
    share = within / n
    word = "reproduced" if share >= REPRODUCED_SHARE else "partly reproduced" if share >= PARTLY_SHARE else "not reproduced"
    return f"{word} ({within} of {n} within)"


def single_verdict(difference: float, tolerance: float) -> str:
    if not np.isfinite(difference):
        return "not measured"
    return "reproduced" if abs(difference) <= tolerance + 1e-9 else "not reproduced"


def lut_rows(tables: dict[str, pd.DataFrame]) -> list[dict]:
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
                      t2[t2["statistic"].isin(LUT_ACCURACY_STATISTICS)]))
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
        c = lt.compare(both)
        rows.append({"document": "LUT", "item": f"{item} (mean of {c['n']} numbers)" if c["n"] else item,
                     "published": 100 * both["published"].mean() if c["n"] else np.nan,
                     "measured": 100 * both["measured"].mean() if c["n"] else np.nan,
                     "difference": 100 * c["mean_diff"], "tolerance": 100 * lt.TOLERANCE,
                     "verdict": group_verdict(c["within"], c["n"]), "decimals": 1, "anchor": anchor(table_name)})
    return rows


def retrieval_rows(table1: pd.DataFrame) -> list[dict]:
    """One row per published model of the memory document's Table 1 (CIFAR-10 test accuracy, %)."""
    rows = []
    for r in table1.dropna(subset=["published"]).itertuples():
        diff = r.measured - r.published
        rows.append({"document": "Memory", "item": f"Table 1: {r.model}, CIFAR-10 test accuracy (%)",
                     "published": r.published, "measured": r.measured, "difference": diff,
                     "tolerance": RETRIEVAL_TOLERANCE, "verdict": single_verdict(diff, RETRIEVAL_TOLERANCE),
                     "decimals": 2, "anchor": anchor("Memory Table 1")})
    return rows


def influence_rows(last_layer: pd.DataFrame) -> list[dict]:
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


def build_scorecard(lut: dict[str, pd.DataFrame] | None = None, retrieval_table1: pd.DataFrame | None = None,
                    last_layer: pd.DataFrame | None = None) -> pd.DataFrame:
    """The scorecard of every configured study (a study that is not configured contributes no rows)."""
    rows = []
    if lut:
        rows += lut_rows(lut)
    if retrieval_table1 is not None:
        rows += retrieval_rows(retrieval_table1)
    if last_layer is not None:
        rows += influence_rows(last_layer)
    return pd.DataFrame(rows, columns=COLUMNS)


def write_scorecard(inputs: dict, output) -> pd.DataFrame:
    """Read the studies' tables named in ``inputs`` (``lut_table1`` ... ``lut_table4``, ``retrieval_table1``,
    ``influence_last_layer``; absent keys are studies not configured), write the scorecard CSV."""
    from memgen.runtime import write_csv

    lut = {key.removeprefix("lut_"): pd.read_csv(path) for key, path in inputs.items() if key.startswith("lut_")}
    retrieval = pd.read_csv(inputs["retrieval_table1"]) if "retrieval_table1" in inputs else None
    last_layer = pd.read_csv(inputs["influence_last_layer"]) if "influence_last_layer" in inputs else None
    card = build_scorecard(lut, retrieval, last_layer)
    write_csv(output, card)
    return card
