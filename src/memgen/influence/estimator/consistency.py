"""Consistency of two estimates of the same training set (Feldman & Zhang 2020, Figure 7): ``D``/``J`` of the
memorized sets and of the high-influence pairs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def consistency_mem(mem_a: np.ndarray, mem_b: np.ndarray, thetas: Sequence[float]) -> pd.DataFrame:
    """Figure 7 (top): ``D_mem(theta)`` (mean |mem_a - mem_b| over the union of the two sets
    ``{i: mem >= theta}``) and ``J_mem(theta)`` (Jaccard similarity of the sets)."""
    a, b = np.asarray(mem_a, float), np.asarray(mem_b, float)
    if a.shape != b.shape:
        raise ValueError(f"the two estimates cover different numbers of examples ({a.shape} vs {b.shape})")
    rows = []
    for theta in thetas:
        ia, ib = a >= theta, b >= theta
        union, inter = ia | ib, ia & ib
        diff = np.abs(a[union] - b[union])
        rows.append({"theta": float(theta), "n_a": int(ia.sum()), "n_b": int(ib.sum()), "n_union": int(union.sum()),
                     "D_mem": float(np.nanmean(diff)) if union.any() else np.nan,
                     "J_mem": float(inter.sum() / union.sum()) if union.any() else np.nan})
    return pd.DataFrame(rows)


def consistency_infl(pairs_a: pd.DataFrame, pairs_b: pd.DataFrame, thetas: Sequence[float],
                     mem_theta: float = 0.25) -> pd.DataFrame:
    """Figure 7 (bottom): ``J_infl(theta)`` (Jaccard similarity of the two estimates' pair sets
    ``{(i, j): infl >= theta, mem_i >= mem_theta}``) and ``D_infl_common(theta)``, the mean absolute
    difference of the two influence estimates over the pairs both sets hold (the stored pairs carry
    only their own estimate's influence).

    The stored pairs are complete only for ``theta`` at or above the threshold they were kept at.
    """
    def key(df):
        return df["train_pos"].to_numpy(np.int64), df["test_pos"].to_numpy(np.int64)

    rows = []
    for theta in thetas:
        sets = []
        for df in (pairs_a, pairs_b):
            sel = (df["infl"].to_numpy() >= theta) & (df["mem"].to_numpy() >= mem_theta)
            i, j = key(df[sel])
            sets.append(pd.DataFrame({"train_pos": i, "test_pos": j, "infl": df["infl"].to_numpy()[sel]}))
        a, b = sets
        merged = a.merge(b, on=["train_pos", "test_pos"], how="outer", suffixes=("_a", "_b"), indicator=True)
        n_union = len(merged)
        n_inter = int((merged["_merge"] == "both").sum())
        row = {"theta": float(theta), "n_a": len(a), "n_b": len(b), "n_union": n_union,
               "J_infl": n_inter / n_union if n_union else np.nan}
        both = merged["_merge"] == "both"
        row["D_infl_common"] = float(np.mean(np.abs(merged.loc[both, "infl_a"] - merged.loc[both, "infl_b"]))) \
            if both.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
