"""One scorecard across the three documents: every published number this run can be set beside, as
document | item | published | measured | difference | tolerance | verdict, with the report anchor of the table
each row comes from. Each study's tables module turns its own tables into rows (``scorecard_rows``), so a table
and its scorecard row never disagree; this module holds what the rows share.

Accuracies are in percent (as the documents give them); ``decimals`` is the document's precision for the row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["document", "item", "published", "measured", "difference", "tolerance", "verdict", "decimals", "anchor"]

# The documents, by the short names the report uses for their tables ("LUT Table 1", "Memory Table 1", "F&Z ...").
DOCUMENTS = {
    "LUT": "Learning and memorization (Chatterjee 2018)",
    "Memory": "Memory-augmented classifier (ResNet-20 + k-NN memory)",
    "F&Z": "What neural networks memorize and why (Feldman & Zhang 2020)",
}
DATASET_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10"}

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


def build_scorecard(*parts: list[dict]) -> pd.DataFrame:
    """The scorecard from the rows of every configured study (a study that is not configured adds none)."""
    return pd.DataFrame([row for rows in parts for row in rows], columns=COLUMNS)


def write_scorecard(output, *parts: list[dict]) -> pd.DataFrame:
    from memgen.runtime import write_csv

    card = build_scorecard(*parts)
    write_csv(output, card)
    return card
