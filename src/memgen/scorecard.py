"""What the report opens with: the documents' claims (every study's claims table, merged) and one scorecard of
levels across the three documents: every published number this run can be set beside, as
document | item | published | measured | difference | tolerance | verdict | scale, with the report anchor of the
table each row comes from. Each study's tables module turns its own tables into rows (``scorecard_rows``), so a
table and its scorecard row never disagree; this module holds what the rows share.

Accuracies are in percent (as the documents give them); ``decimals`` is the document's precision for the row. A
level measured below the document's scale (a preset whose ``scale`` is not ``full``) is not judged against the
document's level: its verdict says the scale it was measured at.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["document", "item", "published", "measured", "difference", "tolerance", "verdict", "scale", "decimals",
           "anchor"]

# The documents, by the short names the report uses for their tables ("LUT Table 1", "Memory Table 1", "F&Z ...").
DOCUMENTS = {
    "LUT": "Learning and memorization (Chatterjee 2018)",
    "Memory": "Memory-augmented classifier (ResNet-20 + k-NN memory)",
    "F&Z": "What neural networks memorize and why (Feldman & Zhang 2020)",
}
DATASET_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
# The memory document's backbone: ResNet-20 trained the standard 200 epochs on the original CIFAR-10 images (91.83%).
MEMORY_DOCUMENT_EPOCHS = 200

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


FULL_SCALE = "full"          # the preset scale that is the documents' own (workflow/schemas: preset.scale)


def document_scales(config: dict) -> dict[str, str]:
    """What each document's levels are measured at in this configuration, in a few words."""
    lut, backbone = config["lut"], config["retrieval"]["backbone"].get("cifar10")
    ts = sorted({int(s["t"]) for s in config.get("influence", {}).get("studies", {}).values()})
    memory = f"{backbone['epochs']} of {MEMORY_DOCUMENT_EPOCHS} epochs" if backbone else "no CIFAR-10 backbone"
    return {"LUT": f"{lut['depth']} x {lut['width']} LUTs, {len(lut['seeds'])} seed(s)", "Memory": memory,
            "F&Z": f"t = {ts[0]}-{ts[-1]} models per study" if ts else "no influence study"}


def at_scale(verdict: str, scale: str, preset_scale: str) -> str:
    """A level's verdict at the preset's scale: below the documents' scale a level that misses the document's
    is reported as measured at that scale, not as a failed reproduction; at full scale it stands."""
    if preset_scale == FULL_SCALE or not verdict.startswith(("not reproduced", "partly reproduced")):
        return verdict
    counts = verdict[verdict.index("(") + 1:-1] if verdict.endswith(")") else ""
    return f"level at {preset_scale} scale ({scale}{'; ' + counts if counts else ''})"


def build_scorecard(*parts: list[dict], scales: dict[str, str], preset_scale: str) -> pd.DataFrame:
    """The scorecard from the rows of every configured study (a study that is not configured adds none), each
    row marked with the scale its document's levels were measured at (``scales``, by document)."""
    rows = [{**row, "scale": scales[row["document"]],
             "verdict": at_scale(row["verdict"], scales[row["document"]], preset_scale)}
            for rows in parts for row in rows]
    return pd.DataFrame(rows, columns=COLUMNS)


def write_scorecard(output, *parts: list[dict], scales: dict[str, str], preset_scale: str) -> pd.DataFrame:
    from memgen.runtime import write_csv

    card = build_scorecard(*parts, scales=scales, preset_scale=preset_scale)
    write_csv(output, card)
    return card


def merge_claims(paths, output) -> pd.DataFrame:
    """Every study's claims table (:func:`memgen.claims.write_claims`) in one, in the documents' order; a table
    that is missing or has other columns is an error, so no study's claims drop out silently."""
    from memgen.claims import CLAIM_COLUMNS
    from memgen.runtime import write_csv

    parts = []
    for path in paths:
        part = pd.read_csv(path)
        if list(part.columns) != CLAIM_COLUMNS:
            raise ValueError(f"{path} has columns {list(part.columns)}, a claims table has {CLAIM_COLUMNS}: write it "
                             "with memgen.claims.write_claims")
        parts.append(part)
    claims = pd.concat(parts, ignore_index=True)
    unknown = sorted(set(claims["document"]) - set(DOCUMENTS))
    if unknown:
        raise ValueError(f"claims of unknown documents {unknown}; a claim's document is one of {list(DOCUMENTS)}")
    order = {d: i for i, d in enumerate(DOCUMENTS)}
    claims = claims.sort_values("document", key=lambda d: d.map(order), kind="stable").reset_index(drop=True)
    write_csv(output, claims)
    return claims
