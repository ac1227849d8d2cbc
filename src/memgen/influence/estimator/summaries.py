"""Summaries of the per-example estimates for the report: histograms of ``mem`` and the most memorized
examples of each class (Figure 1).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def mem_histogram(mem: np.ndarray, bins: int | Sequence[float] = 20, value_range=(-1.0, 1.0)) -> pd.DataFrame:
    """Counts of memorization estimates per bin (NaN estimates are left out)."""
    mem = np.asarray(mem, dtype=float)
    counts, edges = np.histogram(mem[np.isfinite(mem)], bins=bins, range=value_range if np.isscalar(bins) else None)
    return pd.DataFrame({"left": edges[:-1], "right": edges[1:], "count": counts})


def most_memorized(mem: np.ndarray, labels: np.ndarray, per_class: int = 10,
                   index: np.ndarray | None = None) -> pd.DataFrame:
    """The ``per_class`` most memorized examples of each class (for an image grid):
    class, rank, position, index, mem."""
    mem, labels = np.asarray(mem, dtype=float), np.asarray(labels)
    index = np.arange(len(mem)) if index is None else np.asarray(index)
    rows = []
    for c in np.unique(labels):
        pos = np.flatnonzero((labels == c) & np.isfinite(mem))
        order = pos[np.lexsort((pos, -mem[pos]))][:per_class]
        for r, p in enumerate(order):
            rows.append({"class": int(c), "rank": r, "position": int(p), "index": int(index[p]), "mem": float(mem[p])})
    return pd.DataFrame(rows, columns=["class", "rank", "position", "index", "mem"])
