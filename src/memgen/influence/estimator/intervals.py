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


MEM_GRID_STEP = 0.01     # resolution of the estimated distribution of true mem (its support: -1, -0.99, ..., 1)
P_OUT_GRID = 101         # points of the held-out accuracy integrated out of each example's likelihood of mem
EM_STEPS = 300           # EM steps from the uniform distribution: stopping early keeps the estimate smooth


def _mixing_distribution(lik: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The distribution of true ``mem`` on the grid that explains all examples: :data:`EM_STEPS` steps of EM
    towards its nonparametric MLE from the uniform distribution.  Run to convergence the MLE has a few atoms,
    which can fall on either side of a threshold (on synthetic studies its false-discovery counts then swung
    from a twentieth to the whole of the truth); stopped early it stays smooth.  The counts it gives are
    approximate: on synthetic studies with many examples just below the threshold they came within 5% of the
    truth at t = 64 and 10-40% under it elsewhere, where a flat prior per example gives a third of the truth
    and the no-memorization null 0 (tests/test_influence_estimator.py)."""
    total = weight.sum()
    prior = np.full(lik.shape[1], 1.0 / lik.shape[1])
    for _ in range(EM_STEPS):
        prior = prior * (lik.T @ (weight / (lik @ prior))) / total
    return prior


def mem_posterior(k_in, n_in, k_out, n_out) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each example's posterior of its true ``mem`` on a grid, under the distribution of true ``mem`` across
    the examples estimated from all of them (empirical Bayes: :func:`_mixing_distribution`).  An example's
    likelihood of ``mem = d`` integrates its held-out accuracy ``p`` out (flat prior):
    ``mean_p Bin(k_in; n_in, p + d) Bin(k_out; n_out, p)``.  Unlike a flat prior per example, the shared
    distribution knows how many examples sit just below a threshold, so the posteriors of the examples
    counted above it are not optimistic (the winner's curse of selecting the largest noisy estimates).

    Returns ``(grid [g], posterior [u, g], inverse [n])``: the posterior of example ``i`` is row
    ``inverse[i]`` (examples with the same four counts share one row); rows of examples with no model on a
    side are NaN."""
    from scipy.special import logsumexp, xlog1py, xlogy

    counts = np.stack([np.asarray(x, np.float64) for x in (k_in, n_in, k_out, n_out)], 1)
    defined = (counts[:, 1] > 0) & (counts[:, 3] > 0)
    rows, inverse = np.unique(np.where(defined[:, None], counts, -1.0), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    ok = rows[:, 1] > 0
    ki, ni, ko, no = (rows[ok, c][:, None] for c in range(4))
    grid = np.round(np.arange(-1.0, 1.0 + MEM_GRID_STEP / 2, MEM_GRID_STEP), 10)
    p = np.linspace(0.0, 1.0, P_OUT_GRID)
    log_out = xlogy(ko, p[None]) + xlog1py(no - ko, -p[None])                   # [u, p]; binomial factors cancel
    log_lik = np.full((len(ki), len(grid)), -np.inf)
    for g, d in enumerate(grid):
        on = (p + d >= 0) & (p + d <= 1)
        if on.any():
            q = p[on] + d
            log_lik[:, g] = logsumexp(xlogy(ki, q[None]) + xlog1py(ni - ki, -q[None]) + log_out[:, on], axis=1)
    lik = np.exp(log_lik - log_lik.max(1, keepdims=True))
    prior = _mixing_distribution(lik, np.bincount(inverse, minlength=len(rows))[ok].astype(np.float64))
    post = lik * prior
    post /= post.sum(1, keepdims=True)
    out = np.full((len(rows), len(grid)), np.nan)
    out[ok] = post
    return grid, out, inverse


def below_probability(posterior: tuple, theta: float) -> np.ndarray:
    """Per example, the posterior probability that its true ``mem`` is below ``theta`` (from :func:`mem_posterior`)."""
    grid, post, inverse = posterior
    return post[:, grid < theta - _EPS].sum(1)[inverse]


def false_discoveries(below: np.ndarray, counted: np.ndarray) -> tuple[float, float]:
    """Expected number of false discoveries among the ``counted`` examples (those whose true ``mem`` is below
    the threshold, each with probability ``below``) and its standard deviation (a sum of independent
    Bernoulli variables)."""
    b = np.asarray(below, float)[np.asarray(counted, bool)]
    b = np.clip(b[np.isfinite(b)], 0.0, 1.0)
    return float(b.sum()), float(np.sqrt(np.sum(b * (1 - b))))


def threshold_counts(mem, mem_lo, k_in, n_in, n_correct, t: int, thetas: Sequence[float],
                     level: float = LEVEL) -> pd.DataFrame:
    """Every count above a threshold, per ``theta``: ``count`` (``mem >= theta``) and ``count_lower`` (the
    interval's lower end ``>= theta``: the examples reliably above it), each with ``false_*`` (the expected
    number of its examples whose true ``mem`` is below ``theta``: :func:`false_discoveries` under
    :func:`mem_posterior`) and ``false_*_sd``; and ``chance_count`` / ``chance_count_lower``, the counts
    expected if no example were memorized (each example's in/out flags permuted: :func:`chance_probability`),
    which at large ``t`` is near 0 whatever the data."""
    mem, mem_lo = np.asarray(mem, float), np.asarray(mem_lo, float)
    k_in, n_in, n_correct = (np.asarray(x, np.float64) for x in (k_in, n_in, n_correct))
    posterior = mem_posterior(k_in, n_in, n_correct - k_in, t - n_in)
    rows = []
    for theta in thetas:
        below = below_probability(posterior, theta)
        point, lower = mem >= theta - _EPS, mem_lo >= theta - _EPS
        (false, false_sd), (false_lower, false_lower_sd) = false_discoveries(below, point), \
            false_discoveries(below, lower)
        rows.append({"theta": float(theta), "count": int(point.sum()), "count_lower": int(lower.sum()),
                     "false_count": false, "false_count_sd": false_sd,
                     "false_count_lower": false_lower, "false_count_lower_sd": false_lower_sd,
                     "chance_count": float(np.nansum(chance_probability(n_correct, n_in, t, theta))),
                     "chance_count_lower": float(np.nansum(chance_probability(n_correct, n_in, t, theta, level)))})
    return pd.DataFrame(rows)


def t_for_precision(k_out, n_out, ratio: float, theta: float, half_width: float, fraction: float,
                    level: float = LEVEL, t_max: int = 2 ** 24) -> float:
    """Models needed for ``fraction`` of the examples to have a ``level`` interval of ``mem`` (:func:`mem_interval`,
    the interval that decides the quoted count) no wider than ``half_width`` on each side when their ``mem``
    sits at the threshold ``theta``.

    Each example keeps its held-out accuracy (the Jeffreys posterior mean ``(k + 1/2) / (n + 1)`` of the counts
    measured so far) and gets the in-subset accuracy ``theta`` above it (clipped at 1: then ``1 - theta`` and
    1); with ``t`` models it is in ``round(ratio t)`` subsets.  The answer is the smallest ``t`` whose
    ``fraction`` quantile of the half-widths is ``<= half_width`` (NaN above ``t_max``).  Computed at each
    convergence checkpoint, it shows whether the prediction has settled."""
    k_out, n_out = np.asarray(k_out, np.float64), np.asarray(n_out, np.float64)
    keep = n_out > 0
    if not keep.any():
        return np.nan
    p_out, weight = np.unique((k_out[keep] + 0.5) / (n_out[keep] + 1), return_counts=True)
    p_out = np.minimum(p_out, 1.0 - theta)
    p_in = p_out + theta

    def fits(t: int) -> bool:
        n_i = max(1, min(t - 1, int(round(ratio * t))))
        lo, hi = mem_interval(p_in * n_i, n_i, p_out * (t - n_i), t - n_i, level)
        half = (hi - lo) / 2
        by_width = np.argsort(half, kind="stable")
        share = np.cumsum(weight[by_width]) / weight.sum()
        return bool(half[by_width][np.searchsorted(share, fraction - 1e-12)] <= half_width)

    hi = 2
    while not fits(hi):
        if hi >= t_max:
            return np.nan
        hi *= 2
    lo = hi // 2 + 1 if hi > 2 else 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    return float(hi)
