"""Intervals, chance levels and precision targets of the per-example estimates: the Jeffreys interval of
each accuracy, Newcombe's interval of ``mem``, counts above thresholds with their chance levels, and the
number of models a target precision needs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

LEVEL = 0.95
_EPS = 1e-9   # counts use mem >= theta - _EPS: mem = 0.25 exactly must count even after rounding


def jeffreys_interval(successes, trials, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Jeffreys interval of a proportion: the ``(1 -/+ level) / 2`` quantiles of Beta(k + 1/2, n - k + 1/2),
    with 0 (k = 0) and 1 (k = n) as the outer ends (Brown, Cai & DasGupta 2001).  Its width is positive
    for every n >= 1, even when all n outcomes agree; NaN where n = 0."""
    from scipy.stats import beta

    k, n = np.asarray(successes, np.float64), np.asarray(trials, np.float64)
    a = (1.0 - level) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, beta.ppf(a, k + 0.5, n - k + 0.5), 0.0)
        hi = np.where(k < n, beta.ppf(1 - a, k + 0.5, n - k + 0.5), 1.0)
    lo, hi = np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)
    return lo, hi


def mem_interval(k_in, n_in, k_out, n_out, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Interval of ``mem = p_in - p_out`` from the Jeffreys intervals of the two proportions, combined
    by Newcombe's square-and-add rule (1998, the MOVER method): ``mem - sqrt((p_in - lo_in)^2 +
    (hi_out - p_out)^2)`` to ``mem + sqrt((hi_in - p_in)^2 + (p_out - lo_out)^2)``."""
    k_in, n_in = np.asarray(k_in, np.float64), np.asarray(n_in, np.float64)
    k_out, n_out = np.asarray(k_out, np.float64), np.asarray(n_out, np.float64)
    l1, u1 = jeffreys_interval(k_in, n_in, level)
    l2, u2 = jeffreys_interval(k_out, n_out, level)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p2 = k_in / n_in, k_out / n_out
    d = p1 - p2
    return d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def interval_se(lo, hi, level: float = LEVEL) -> np.ndarray:
    """Standard error implied by an interval: its width over ``2 z`` (never 0, unlike the plug-in SE of a
    0/1 sample whose outcomes all agree)."""
    from scipy.stats import norm

    return (np.asarray(hi) - np.asarray(lo)) / (2 * norm.ppf(0.5 + level / 2))


NEGLIGIBLE = 1e-12   # tail probabilities whose Serfling bound is below this are taken as 0 (speed)


def chance_probability(n_correct, n_in, t: int, theta: float, level: float | None = None) -> np.ndarray:
    """Per example, the probability that ``mem >= theta`` (``level`` given: that the interval's lower
    end ``>= theta``) when membership carries no information: the example's ``t`` in/out flags
    permuted across its models, its correctness kept.  Then the number of correct in-subset models
    is hypergeometric (t models, ``n_correct`` correct, ``n_in`` drawn), so the probability is exact
    (up to :data:`NEGLIGIBLE` per example, where Serfling's bound for sampling without replacement shows
    the tail is smaller).
    Summed over examples it is the count above ``theta`` expected by chance at this ``t``."""
    from scipy.stats import hypergeom

    C, m = np.asarray(n_correct, np.int64), np.asarray(n_in, np.int64)
    n_out = t - m
    lo_s, hi_s = np.maximum(0, m - (t - C)), np.minimum(C, m)          # support of the in-subset count
    # mem(s) = s / m - (C - s) / n_out >= theta  <=>  s >= m (theta n_out + C) / t
    first = np.maximum(np.ceil(m * ((theta - _EPS) * n_out + C) / t).astype(np.int64), lo_s)
    excess = np.maximum(first - m * C / t, 0.0)                          # above the mean of the in-subset count
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.exp(-2 * excess ** 2 / (np.maximum(m, 1) * (1 - (m - 1) / t)))
        live = (first <= hi_s) & (bound >= NEGLIGIBLE)
    if level is not None:
        # smallest s whose lower end clears theta (the lower end grows with s; it never exceeds mem, so
        # only examples whose point tail is not negligible can): bisection on the support
        rows = np.flatnonzero(live)
        lo, hi = first[rows], hi_s[rows] + 1                              # answer in [lo, hi]; hi = none
        mr, Cr, nr = m[rows], C[rows], n_out[rows]
        while np.any(lo < hi):
            mid = (lo + hi) // 2
            ok = mem_interval(mid, mr, Cr - mid, nr, level)[0] >= theta - _EPS
            hi = np.where((lo < hi) & ok, mid, hi)
            lo = np.where((lo < hi) & ~ok, mid + 1, lo)
        first = first.copy()
        first[rows] = lo
        live &= first <= hi_s
    p = np.zeros(len(C))
    p[live] = hypergeom.sf(first[live] - 1, t, C[live], m[live])
    return np.where((m >= 1) & (n_out >= 1), p, np.nan)


def threshold_counts(mem, mem_lo, n_correct, n_in, t: int, thetas: Sequence[float],
                     level: float = LEVEL) -> pd.DataFrame:
    """Every count above a threshold three ways, per ``theta``: ``count`` (``mem >= theta``),
    ``count_lower`` (the interval's lower end ``>= theta``: the examples reliably above it) and
    ``chance_count`` / ``chance_count_lower`` (the same counts expected by chance at this ``t``: see
    :func:`chance_probability`).  A point count near its chance count is estimation noise."""
    mem, mem_lo = np.asarray(mem, float), np.asarray(mem_lo, float)
    rows = []
    for theta in thetas:
        rows.append({"theta": float(theta), "count": int(np.sum(mem >= theta - _EPS)),
                     "count_lower": int(np.sum(mem_lo >= theta - _EPS)),
                     "chance_count": float(np.nansum(chance_probability(n_correct, n_in, t, theta))),
                     "chance_count_lower": float(np.nansum(chance_probability(n_correct, n_in, t, theta, level)))})
    return pd.DataFrame(rows)


PRECISION = (0.05, 0.95)   # default target: SE of mem <= 0.05 for 95% of the examples


def t_for_precision(k_in, n_in, k_out, n_out, ratio: float, target_se: float = PRECISION[0],
                    fraction: float = PRECISION[1]) -> float:
    """Models needed for ``fraction`` of the examples to have a standard error of ``mem`` <= ``target_se``.

    With ``t`` models an example is in about ``ratio t`` subsets, so ``t SE^2 ~ v_in / ratio +
    v_out / (1 - ratio)`` with ``v = p (1 - p)`` of its in- and out-of-subset accuracies.  The
    accuracies are the Jeffreys posterior means ``(k + 1/2) / (n + 1)`` of the counts measured so far
    (an example all models agree on still has a variance); the answer is the ``fraction`` quantile of
    the examples' ``v / target_se^2``.  Computed at each convergence checkpoint, it shows whether the
    prediction has settled."""
    k_in, n_in, k_out, n_out = (np.asarray(x, np.float64) for x in (k_in, n_in, k_out, n_out))
    p_in, p_out = (k_in + 0.5) / (n_in + 1), (k_out + 0.5) / (n_out + 1)
    need = (p_in * (1 - p_in) / ratio + p_out * (1 - p_out) / (1 - ratio)) / target_se ** 2
    need = need[(n_in > 0) & (n_out > 0)]
    return float(np.ceil(np.quantile(need, fraction))) if len(need) else np.nan
