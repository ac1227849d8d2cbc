"""Claims of the source documents, each decided by an interval on the effect it is about.

A ``Claim`` names where a document makes it (``source``), what it says (``statement``), what is measured
(``quantity``, with its unit), the published effect where there is one, and a ``Decision``: how a 95%
interval of the measured effect decides it.  ``judge`` turns an effect and its interval into one row of a
claims table, with the verdict ``holds``, ``does not hold`` or ``inconclusive`` (the interval spans the
decision's line), so a verdict can fail and a small run is not mistaken for a failed one.

Each study declares its claims in ``memgen.<study>.claims`` and writes ``results/tables/claims_<study>.csv``;
the report merges them into ``results/tables/claims.csv``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy import stats

from memgen.runtime import write_csv

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)
CLAIM_COLUMNS = ["document", "source", "claim", "quantity", "published", "measured", "lo", "hi",
                 "statistic", "decision", "verdict", "scale"]


@dataclass(frozen=True)
class Decision:
    """How an interval [lo, hi] decides a claim: above a line, below it, or within centre ± tolerance."""

    kind: str  # "above", "below" or "within"
    line: float = 0.0
    tolerance: float = 0.0

    def __str__(self) -> str:
        if self.kind == "above":
            return f"> {self.line:g}"
        if self.kind == "below":
            return f"< {self.line:g}"
        centre = f"{self.line:g} " if self.line else ""
        return f"within {centre}±{self.tolerance:g}"

    def verdict(self, lo: float, hi: float) -> str:
        if not (np.isfinite(lo) and np.isfinite(hi)):
            return INCONCLUSIVE
        if self.kind == "above":
            return HOLDS if lo > self.line else FAILS if hi <= self.line else INCONCLUSIVE
        if self.kind == "below":
            return HOLDS if hi < self.line else FAILS if lo >= self.line else INCONCLUSIVE
        left, right = self.line - self.tolerance, self.line + self.tolerance
        if left <= lo and hi <= right:
            return HOLDS
        return FAILS if hi < left or lo > right else INCONCLUSIVE


def above(line: float = 0.0) -> Decision:
    """Holds when the whole interval lies above ``line``; does not hold when it lies wholly at or below."""
    return Decision("above", float(line))


def below(line: float = 0.0) -> Decision:
    """Holds when the whole interval lies below ``line``; does not hold when it lies wholly at or above."""
    return Decision("below", float(line))


def within(tolerance: float, centre: float = 0.0) -> Decision:
    """Equivalence: holds when the whole interval lies inside centre ± tolerance, fails when wholly outside."""
    if tolerance <= 0:
        raise ValueError(f"within(): the tolerance must be positive, got {tolerance}")
    return Decision("within", float(centre), float(tolerance))


@dataclass(frozen=True)
class Claim:
    document: str  # "Memory", "LUT" or "F&Z"
    source: str  # the document's table, figure or section, e.g. "Table 1"
    statement: str  # the claim in words
    quantity: str  # what is measured, with its unit
    decision: Decision
    published: float | None = None  # the document's own effect, where it gives one


def judge(claim: Claim, effect: float, lo: float, hi: float, *, statistic: str, scale: str) -> dict:
    """One row of a claims table (``CLAIM_COLUMNS``): the claim, its measured effect, interval and verdict."""
    return {"document": claim.document, "source": claim.source, "claim": claim.statement,
            "quantity": claim.quantity, "published": claim.published, "measured": float(effect),
            "lo": float(lo), "hi": float(hi), "statistic": statistic, "decision": str(claim.decision),
            "verdict": claim.decision.verdict(lo, hi), "scale": scale}


def paired_accuracy_difference(correct_a, correct_b, *, level: float = 0.95, n_boot: int = 2000,
                               seed: int = 0) -> tuple[float, float, float]:
    """Accuracy of a minus accuracy of b, in points, on one test set, with a paired bootstrap interval.

    ``correct_a`` and ``correct_b`` are the per-example correctness of the two methods on the same test
    examples; resampling examples (not methods) keeps the pairing, so the interval reflects only the
    examples on which the two disagree.  Percentile interval of ``n_boot`` resamples."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired_accuracy_difference needs two equal-length 1-d vectors, got {a.shape}, {b.shape}")
    d = a.astype(np.int8) - b.astype(np.int8)
    effect = 100.0 * d.mean()
    rng = np.random.default_rng(seed)
    # Only the discordant examples move the difference: resample their count, then their signs.
    n, plus, minus = d.size, int((d > 0).sum()), int((d < 0).sum())
    counts = rng.multinomial(n, [plus / n, minus / n, 1 - (plus + minus) / n], size=n_boot)
    boot = 100.0 * (counts[:, 0] - counts[:, 1]) / n
    alpha = 1 - level
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(effect), float(lo), float(hi)


def bootstrap_interval(statistic, *arrays, level: float = 0.95, n_boot: int = 2000,
                       seed: int = 0) -> tuple[float, float, float]:
    """``statistic(*arrays)`` with a percentile bootstrap interval, resampling the rows of the arrays together
    (one row per test example or task, aligned across the arrays), so paired quantities stay paired."""
    arrays = [np.asarray(x) for x in arrays]
    n = len(arrays[0]) if arrays else 0
    if n == 0 or any(len(x) != n for x in arrays):
        raise ValueError("bootstrap_interval needs non-empty arrays with one row per unit, aligned across arrays")
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, n, n)
        boot[i] = statistic(*(x[idx] for x in arrays))
    alpha = 1 - level
    lo, hi = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(statistic(*arrays)), float(lo), float(hi)


def trials_difference(a, b, *, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of trials a minus mean of trials b, with a Welch t interval (independent trials)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2:
        raise ValueError(f"trials_difference needs at least 2 trials on each side, got {a.size} and {b.size}")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    effect = a.mean() - b.mean()
    se = np.sqrt(va + vb)
    if se == 0:
        return float(effect), float(effect), float(effect)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return float(effect), float(effect - half), float(effect + half)


def write_claims(rows: list[dict], path: str | os.PathLike) -> None:
    """Write claim rows (from ``judge``) with ``CLAIM_COLUMNS``, atomically."""
    import pandas as pd

    bad = sorted({r["verdict"] for r in rows} - set(VERDICTS))
    if bad:
        raise ValueError(f"unknown verdicts {bad}; a claim reads one of {VERDICTS}")
    write_csv(path, pd.DataFrame(rows, columns=CLAIM_COLUMNS))
