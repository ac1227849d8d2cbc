"""Memorization and influence estimation by subsampling (Feldman & Zhang 2020, Algorithm 1).

Workflow
--------
1. :class:`ShardSpec` fixes the study: ``n_train``, ``n_test``, the subset ratio ``m/n`` and a base
   seed.  The subset of model ``k`` and its training seed are pure functions of ``(seed, k)``
   (``numpy.random.SeedSequence([seed, k])``), so results never depend on how the ``t`` trainings
   are cut into shards, in which order shards run, or how many models a learner trains at once.
2. :func:`run_shard` trains models ``start..stop-1`` with a learner (see :mod:`memgen.influence.learners`) and
   writes one npz: subset masks, 0/1 correctness and the true-class probability and margin on every
   training and test example (``models_{start:06d}-{stop:06d}.npz``: ``meta`` json, ``model_ids``,
   ``model_seeds``, ``masks``/``correct_*`` as packed bits, ``prob_*``/``margin_*`` as float16).
   The workflow runs one :func:`run_shard` job per range of :func:`shard_ranges` and :func:`estimate` on
   the list of shard files (Snakemake resumes an interrupted study and, when ``t`` grows, trains only the
   new shards).
3. :func:`estimate` streams the shards once: per training example ``i``
   ``mem_i = P[correct on i | i in subset] - P[correct on i | i not in subset]`` with its standard
   error, the held-out accuracy ``P[correct on i | i not in subset]`` (the C-score at this ratio),
   the same differences of means for the true-class probability and the margin (other estimands,
   ``E[p | in] - E[p | out]``, with lower variance), the estimates as a function of ``t``
   (convergence), and the influence ``infl(i, j)`` on test example ``j``.  The
   ``n_train x n_test`` influence matrix is computed in blocks of training examples
   (``masks[:, block].T @ scores_test``); only the high-influence pairs and every test example's top
   influencers are kept.

Experiment helpers at the end (histograms, most memorized per class, removal experiment, Figure-4
pairs, consistency ``D``/``J`` between two estimates) return plain arrays/DataFrames.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from memgen.influence.learners import Outputs
from memgen.runtime import atomic_path, progress

FORMAT_VERSION = 1
SCORE_KINDS = ("correct", "prob", "margin")


class ShardError(RuntimeError):
    """Shards are missing, corrupt or belong to another study."""


# --- seeds and subsets ----------------------------------------------------------------------------

def subset_size(n: int, ratio: float) -> int:
    """``m = round(ratio * n)``; at least one example in and one out of every subset."""
    if not 0.0 < float(ratio) < 1.0:
        raise ValueError(f"subset ratio {ratio} must lie strictly between 0 and 1 (the paper uses 0.7)")
    m = int(round(float(ratio) * n))
    if not 1 <= m <= n - 1:
        raise ValueError(f"subset ratio {ratio} gives m={m} of n={n}: every subset must leave at least one "
                         f"example in and one out; use a ratio further from 0 and 1 or more examples")
    return m


def _seq(seed: int, k: int, stream: int) -> np.random.SeedSequence:
    if int(seed) < 0 or int(k) < 0:
        raise ValueError(f"seed ({seed}) and model id ({k}) must be non-negative integers")
    return np.random.SeedSequence([int(seed), int(k)], spawn_key=(stream,))


def subset_indices(n: int, m: int, seed: int, k: int) -> np.ndarray:
    """Sorted indices of the ``m`` training examples of model ``k``: a pure function of ``(seed, k)``."""
    rng = np.random.default_rng(_seq(seed, k, 0))
    return np.sort(rng.permutation(n)[:m]).astype(np.int64)


def model_seed(seed: int, k: int) -> int:
    """Training seed (63-bit) of model ``k``: a pure function of ``(seed, k)``, independent of the subset."""
    return int(_seq(seed, k, 1).generate_state(1, np.uint64)[0] >> np.uint64(1))


def study_seed(name: str, base_seed: int = 0) -> int:
    """Default seed of a study: derived from its name (and the top-level seed), so that two studies draw
    independent subsets unless the config gives them the same ``seed`` on purpose."""
    return (zlib.crc32(name.encode()) + int(base_seed)) % 2 ** 31


def labels_digest(y_train: np.ndarray, y_test: np.ndarray) -> str:
    """Short digest of the task labels, stored in shards so that shards of another task are rejected."""
    h = hashlib.sha1()
    for y in (y_train, y_test):
        h.update(np.ascontiguousarray(np.asarray(y, dtype=np.int64)).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class ShardSpec:
    """Everything that determines the models of a study, except the learner's own code.

    ``learner`` is a free tag (e.g. ``"mlp-e10"``) and ``labels`` a :func:`labels_digest`; a shard
    whose spec differs in any field is not used.
    """

    n_train: int
    n_test: int
    ratio: float = 0.7
    seed: int = 0
    learner: str = ""
    labels: str = ""

    @classmethod
    def for_learner(cls, learner, ratio: float = 0.7, seed: int = 0, tag: str | None = None) -> "ShardSpec":
        return cls(n_train=int(learner.n_train), n_test=int(learner.n_test), ratio=float(ratio), seed=int(seed),
                   learner=tag if tag is not None else getattr(learner, "name", ""),
                   labels=labels_digest(learner.y_train, learner.y_test))

    def __post_init__(self):
        subset_size(self.n_train, self.ratio)  # validates
        if self.n_test < 0:
            raise ValueError(f"n_test={self.n_test} must be >= 0")

    @property
    def m(self) -> int:
        return subset_size(self.n_train, self.ratio)

    def subset(self, k: int) -> np.ndarray:
        return subset_indices(self.n_train, self.m, self.seed, k)

    def mask(self, k: int) -> np.ndarray:
        mask = np.zeros(self.n_train, dtype=bool)
        mask[self.subset(k)] = True
        return mask

    def masks(self, ids: Iterable[int]) -> np.ndarray:
        ids = [int(k) for k in ids]
        out = np.zeros((len(ids), self.n_train), dtype=bool)
        for r, k in enumerate(ids):
            out[r, self.subset(k)] = True
        return out

    def model_seed(self, k: int) -> int:
        return model_seed(self.seed, k)

    def to_meta(self) -> dict:
        return {"n_train": self.n_train, "n_test": self.n_test, "ratio": self.ratio, "seed": self.seed,
                "learner": self.learner, "labels": self.labels}

    @classmethod
    def from_meta(cls, meta: dict) -> "ShardSpec":
        return cls(**{k: meta[k] for k in ("n_train", "n_test", "ratio", "seed", "learner", "labels")})


# --- shards ---------------------------------------------------------------------------------------

def shard_ranges(t: int, shard_size: int) -> list[tuple[int, int]]:
    """``[(0, s), (s, 2s), ..., (.., t)]``: the model ranges of ``t`` models in shards of ``shard_size``."""
    if t < 1 or shard_size < 1:
        raise ValueError(f"t={t} and shard_size={shard_size} must be positive")
    return [(a, min(a + shard_size, t)) for a in range(0, t, shard_size)]


def shard_path(directory: str | os.PathLike, start: int, stop: int) -> Path:
    return Path(directory) / f"models_{start:06d}-{stop:06d}.npz"


def run_shard(learner, spec: ShardSpec, start: int, stop: int, path: str | os.PathLike | None = None,
              models_per_call: int | None = None) -> dict:
    """Train models ``start..stop-1`` and return (and write to ``path``, atomically) the shard arrays.

    ``models_per_call`` bounds how many models the learner gets at once (memory); it does not
    change any result.
    """
    if not 0 <= start < stop:
        raise ValueError(f"bad model range {start}..{stop}")
    if (learner.n_train, learner.n_test) != (spec.n_train, spec.n_test):
        raise ValueError(f"learner has {learner.n_train} train / {learner.n_test} test examples but the spec "
                         f"says {spec.n_train} / {spec.n_test}; build both from the same data")
    if spec.labels and spec.labels != labels_digest(learner.y_train, learner.y_test):
        raise ValueError("the learner's labels differ from the spec's (labels digest); build both from the same task")
    ids = np.arange(start, stop, dtype=np.int64)
    step = models_per_call or len(ids)
    parts = []
    for a in range(0, len(ids), step):
        chunk = ids[a:a + step]
        subsets = [spec.subset(int(k)) for k in chunk]
        seeds = [spec.model_seed(int(k)) for k in chunk]
        out = learner.fit_predict(subsets, seeds)
        out.check(len(chunk), spec.n_train, spec.n_test)
        parts.append(out)
    out = Outputs.concat(parts)
    masks = spec.masks(ids)
    arrays = {
        "meta": np.array(json.dumps({**spec.to_meta(), "start": int(start), "stop": int(stop),
                                     "format": FORMAT_VERSION})),
        "model_ids": ids,
        "model_seeds": np.array([spec.model_seed(int(k)) for k in ids], dtype=np.int64),
        "masks": np.packbits(masks, axis=1),
        "correct_train": np.packbits(out.correct_train, axis=1),
        "correct_test": np.packbits(out.correct_test, axis=1),
        "prob_train": out.prob_train.astype(np.float16),
        "prob_test": out.prob_test.astype(np.float16),
        "margin_train": _to_f16(out.margin_train),
        "margin_test": _to_f16(out.margin_test),
    }
    if path is not None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
    return arrays


def _to_f16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.float32), -6e4, 6e4).astype(np.float16)


def check_shard(path: str | os.PathLike, spec: ShardSpec | None = None, deep: bool = True) -> dict:
    """Return the shard's meta if it is readable, complete and (when given) belongs to ``spec``; else raise.

    ``deep`` also checks that the stored subset of the shard's first model is the one the spec
    prescribes (catches a changed ratio or seed even in hand-made shards).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            k = int(meta["stop"]) - int(meta["start"])
            n, n_test = int(meta["n_train"]), int(meta["n_test"])
            shapes = {"model_ids": (k,), "masks": (k, (n + 7) // 8), "correct_train": (k, (n + 7) // 8),
                      "correct_test": (k, (n_test + 7) // 8), "prob_train": (k, n), "prob_test": (k, n_test),
                      "margin_train": (k, n), "margin_test": (k, n_test)}
            for key, shape in shapes.items():
                if z[key].shape != shape:
                    raise ShardError(f"shard {path}: '{key}' has shape {z[key].shape}, expected {shape}")
            if not np.array_equal(z["model_ids"], np.arange(meta["start"], meta["stop"])):
                raise ShardError(f"shard {path}: model ids do not match its range {meta['start']}..{meta['stop']}")
            first_mask = np.unpackbits(z["masks"][0], count=n).astype(bool) if deep else None
    except ShardError:
        raise
    except Exception as err:  # truncated file, bad zip, missing key, bad json
        raise ShardError(f"shard {path} is unreadable or incomplete ({type(err).__name__}: {err}); delete it "
                         f"and run the shard again") from err
    if meta.get("format") != FORMAT_VERSION:
        raise ShardError(f"shard {path} has format {meta.get('format')}, expected {FORMAT_VERSION}; rerun it")
    if spec is not None:
        other = ShardSpec.from_meta(meta)
        if other != spec:
            diff = {k: (v, getattr(spec, k)) for k, v in other.to_meta().items() if v != getattr(spec, k)}
            raise ShardError(f"shard {path} belongs to another study (stored vs expected: {diff}); "
                             f"use another shard directory or delete it")
        if deep and not np.array_equal(first_mask, spec.mask(int(meta["start"]))):
            raise ShardError(f"shard {path}: stored subset of model {meta['start']} differs from the one the "
                             f"seed prescribes; it was made by other code; delete it and rerun")
    return meta


def _cover(found: list[tuple[int, int, Path]], t: int):
    """Greedy cover of models ``0..t-1``: segments (path, row_lo, row_hi, first_model) and missing ranges."""
    segments, missing = [], []
    pos = 0
    while pos < t:
        best = None
        for a, b, p in found:
            if a <= pos < b and (best is None or b > best[1]):
                best = (a, b, p)
        if best is None:
            nxt = min([a for a, _, _ in found if a > pos] + [t])
            missing.append((pos, nxt))
            pos = nxt
            continue
        a, b, p = best
        hi = min(b, t)
        segments.append((p, pos - a, hi - a, pos))
        pos = hi
    return segments, missing


def collect_shards(paths: Sequence, spec: ShardSpec | None = None, t: int | None = None):
    """Segments ``(path, row_lo, row_hi, first_model)`` covering models ``0..t-1`` and the spec.

    ``paths`` are shard files (each checked with :func:`check_shard`; all must share one spec, ``spec``
    when given).  ``t=None`` takes the largest ``t`` covered without a gap.  A gap raises
    :class:`ShardError` naming the missing models.
    """
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError(f"pass the list of shard files, not {paths}")
    found = []
    for p in paths:
        meta = check_shard(p, spec, deep=spec is not None)
        s = ShardSpec.from_meta(meta)
        if spec is None:
            spec = s
        elif s != spec:
            raise ShardError(f"shard {p} belongs to another study than the other shards ({s} vs {spec})")
        found.append((int(meta["start"]), int(meta["stop"]), Path(p)))
    if not found:
        raise ShardError("no shard given; run the study's shards first (the workflow's influence_shard rule)")
    if t is None:
        _, missing = _cover(found, max(b for _, b, _ in found))
        t = missing[0][0] if missing else max(b for _, b, _ in found)
        if t == 0:
            raise ShardError("no shard starts at model 0; run the shard with models 0..")
    segments, missing = _cover(found, t)
    if missing:
        raise ShardError(f"models {', '.join(f'{a}..{b - 1}' for a, b in missing)} of t={t} have no shard; "
                         f"run them (the influence_shard rule) or lower t")
    return segments, spec, t


def _read_rows(path: Path, lo: int, hi: int, spec: ShardSpec, keys: Sequence[str]) -> dict:
    out = {}
    with np.load(path, allow_pickle=False) as z:
        for key in keys:
            a = z[key][lo:hi]
            if key in ("masks", "correct_train"):
                a = np.unpackbits(a, axis=1, count=spec.n_train).astype(bool)
            elif key == "correct_test":
                a = np.unpackbits(a, axis=1, count=spec.n_test).astype(bool)
            out[key] = a
    return out


# --- intervals and chance levels ------------------------------------------------------------------

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


# --- estimation -----------------------------------------------------------------------------------

class _Acc:
    """Running sums for in/out means and variances of one score over models, kept separately for
    models with even and odd ids (their split-half agreement measures precision without assumptions)."""

    def __init__(self, n: int):
        self.s_in, self.q_in, self.s_all, self.q_all = (np.zeros((2, n)) for _ in range(4))
        self.n_in = np.zeros((2, n), dtype=np.int64)
        self.t = np.zeros(2, dtype=np.int64)

    def add(self, masks: np.ndarray, scores: np.ndarray, model_ids: np.ndarray) -> None:
        for h in (0, 1):
            rows = (model_ids % 2) == h
            if not rows.any():
                continue
            m = masks[rows]
            s = scores[rows].astype(np.float64)
            sq = s * s
            self.s_in[h] += np.where(m, s, 0.0).sum(0)
            self.q_in[h] += np.where(m, sq, 0.0).sum(0)
            self.s_all[h] += s.sum(0)
            self.q_all[h] += sq.sum(0)
            self.n_in[h] += m.sum(0)
            self.t[h] += int(rows.sum())

    def stats(self, half: int | None = None, binary: bool = False) -> dict:
        """Means, plug-in SEs and (``binary``: 0/1 scores) Jeffreys intervals of ``mem`` and of the
        held-out accuracy, and the number of models correct on each example."""
        sel = slice(None) if half is None else slice(half, half + 1)
        s_in, q_in, s_all, q_all = (x[sel].sum(0) for x in (self.s_in, self.q_in, self.s_all, self.q_all))
        n_in, t = self.n_in[sel].sum(0), self.t[sel].sum()
        n_out = t - n_in
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_in = s_in / n_in
            mean_out = (s_all - s_in) / n_out
            var_in = np.maximum(q_in - n_in * mean_in ** 2, 0.0) / (n_in - 1)
            var_out = np.maximum((q_all - q_in) - n_out * mean_out ** 2, 0.0) / (n_out - 1)
            se_in = np.sqrt(var_in / n_in)
            se_out = np.sqrt(var_out / n_out)
            se = np.sqrt(var_in / n_in + var_out / n_out)
        bad_in, bad_out = n_in < 2, n_out < 2
        se_in[bad_in] = np.nan
        se_out[bad_out] = np.nan
        se[bad_in | bad_out] = np.nan
        out = {"mem": mean_in - mean_out, "se": se, "in_mean": mean_in, "out_mean": mean_out,
               "in_se": se_in, "out_se": se_out, "n_in": n_in}
        if binary:
            k_in, k_out = np.rint(s_in), np.rint(s_all - s_in)
            out["lo"], out["hi"] = mem_interval(k_in, n_in, k_out, n_out)
            out["out_lo"], out["out_hi"] = jeffreys_interval(k_out, n_out)
            out["n_correct"] = np.rint(s_all).astype(np.int64)
        return out


def _split_half(acc: _Acc) -> tuple[float, float]:
    """(empirical SE of the full estimate, Spearman-Brown split-half reliability) from even vs odd models."""
    a, b = acc.stats(0)["mem"], acc.stats(1)["mem"]
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return np.nan, np.nan
    se = float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)) / 2)   # var(full) ~ var(half) / 2 = var(a - b) / 4
    if np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return se, np.nan
    r = float(np.corrcoef(a[ok], b[ok])[0, 1])
    return se, 2 * r / (1 + r) if r > -1 else np.nan


@dataclass
class Estimate:
    """Result of :func:`estimate`; positions (0..n-1) refer to the learner's order of examples,
    ``train_index``/``test_index`` map them to the original dataset order for exports."""

    spec: ShardSpec
    t: int
    stats: dict            # kind -> {"mem","se","in_mean","out_mean","in_se","out_se"} arrays [n_train]
    n_in: np.ndarray       # [n_train] number of models trained on each example
    test_mean: dict        # kind -> [n_test] mean over all models
    model_test_acc: np.ndarray  # [t] test accuracy of every model
    convergence: pd.DataFrame
    mem_by_t: dict         # kind -> (ts [c], mem [c, n_train], se [c, n_train])
    pairs: pd.DataFrame | None = None     # train_pos, test_pos, mem, infl, infl_se
    top_pos: np.ndarray | None = None     # [n_test, top_k] training positions, most influential first
    top_infl: np.ndarray | None = None    # [n_test, top_k]
    top_se: np.ndarray | None = None      # [n_test, top_k] standard errors of top_infl
    infl_score: str = "correct"
    thresholds: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    train_index: np.ndarray | None = None
    test_index: np.ndarray | None = None
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None

    @property
    def mem(self) -> np.ndarray:
        return self.stats["correct"]["mem"]

    @property
    def mem_se(self) -> np.ndarray:
        return self.stats["correct"]["se"]

    @property
    def mem_lo(self) -> np.ndarray:
        """Lower end of the 95% interval of ``mem`` (:func:`mem_interval`)."""
        return self.stats["correct"]["lo"]

    @property
    def mem_hi(self) -> np.ndarray:
        return self.stats["correct"]["hi"]

    @property
    def n_correct(self) -> np.ndarray:
        """Number of the ``t`` models correct on each training example."""
        return self.stats["correct"]["n_correct"]

    def threshold_counts(self, thetas: Sequence[float]) -> pd.DataFrame:
        """Point, lower-bound and chance counts above each ``theta`` (:func:`threshold_counts`)."""
        return threshold_counts(self.mem, self.mem_lo, self.n_correct, self.n_in, self.t, thetas)

    def t_for_precision(self, target_se: float = PRECISION[0], fraction: float = PRECISION[1]) -> float:
        """Models needed for ``fraction`` of the examples to have SE(mem) <= ``target_se``, from all
        ``t`` models (:func:`t_for_precision`; the convergence table has it at every checkpoint)."""
        c = self.stats["correct"]
        k_in = np.rint(c["in_mean"] * self.n_in)
        return t_for_precision(k_in, self.n_in, self.n_correct - k_in, self.t - self.n_in, self.spec.ratio,
                               target_se, fraction)

    @property
    def heldout(self) -> np.ndarray:
        """``P[correct on i | i not in subset]``: the C-score estimate at this subset ratio."""
        return self.stats["correct"]["out_mean"]

    def _train_index(self) -> np.ndarray:
        return np.arange(self.spec.n_train) if self.train_index is None else np.asarray(self.train_index)

    def _test_index(self) -> np.ndarray:
        return np.arange(self.spec.n_test) if self.test_index is None else np.asarray(self.test_index)

    def scores_frame(self) -> pd.DataFrame:
        """Per training example: original index, label, mem, its SE, held-out accuracy, ... (one row each)."""
        c = self.stats["correct"]
        df = pd.DataFrame({"index": self._train_index(), "position": np.arange(self.spec.n_train)})
        if self.y_train is not None:
            df["label"] = np.asarray(self.y_train)
        df["mem"] = c["mem"]
        df["mem_se"] = c["se"]
        df["heldout_acc"] = c["out_mean"]
        df["heldout_acc_se"] = c["out_se"]
        df["in_acc"] = c["in_mean"]
        df["n_in"] = self.n_in
        df["n_out"] = self.t - self.n_in
        df["mem_lo"] = c["lo"]
        df["mem_hi"] = c["hi"]
        df["heldout_acc_lo"] = c["out_lo"]
        df["heldout_acc_hi"] = c["out_hi"]
        df["n_correct"] = c["n_correct"]
        for kind in self.stats:
            if kind != "correct":
                df[f"mem_{kind}"] = self.stats[kind]["mem"]
                df[f"mem_{kind}_se"] = self.stats[kind]["se"]
                df[f"heldout_{kind}"] = self.stats[kind]["out_mean"]
        return df

    def pairs_frame(self) -> pd.DataFrame:
        """High-influence pairs with original indices (and labels when known)."""
        if self.pairs is None:
            raise ValueError("influence was not computed; call estimate(..., influence=True)")
        p = self.pairs
        df = pd.DataFrame({"train_index": self._train_index()[p["train_pos"].to_numpy()],
                           "test_index": self._test_index()[p["test_pos"].to_numpy()]})
        if self.y_train is not None:
            df["train_label"] = np.asarray(self.y_train)[p["train_pos"].to_numpy()]
        if self.y_test is not None:
            df["test_label"] = np.asarray(self.y_test)[p["test_pos"].to_numpy()]
        for col in ("mem", "infl", "infl_se", "train_pos", "test_pos"):
            df[col] = p[col].to_numpy()
        return df

    def top_influencers_frame(self) -> pd.DataFrame:
        if self.top_pos is None:
            raise ValueError("influence was not computed; call estimate(..., influence=True)")
        n_test, k = self.top_pos.shape
        pos = self.top_pos.ravel()
        found = pos >= 0   # position -1: fewer candidate rows than top_k (e.g. nothing memorized)
        return pd.DataFrame({"test_index": np.repeat(self._test_index(), k)[found],
                             "rank": np.tile(np.arange(k), n_test)[found],
                             "train_index": self._train_index()[pos[found]],
                             "infl": self.top_infl.ravel()[found], "infl_se": self.top_se.ravel()[found]})

    def top_train_index(self) -> np.ndarray:
        """``[n_test, top_k]`` dataset indices of every test example's top influencers; -1 where there is
        no such training example (fewer candidates than ``top_k``)."""
        return np.where(self.top_pos >= 0, self._train_index()[np.maximum(self.top_pos, 0)], -1)

    def write_scores(self, csv_path: str | os.PathLike | None = None,
                     npz_path: str | os.PathLike | None = None) -> None:
        df = self.scores_frame()
        if csv_path is not None:
            with atomic_path(csv_path) as tmp:
                df.to_csv(tmp, index=False, float_format="%.6g")
        if npz_path is not None:
            arrays = {col: df[col].to_numpy() for col in df.columns}
            arrays.update(t=np.int64(self.t), ratio=np.float64(self.spec.ratio), seed=np.int64(self.spec.seed),
                          model_test_acc=self.model_test_acc)
            for kind, (ts, mem_t, se_t) in self.mem_by_t.items():
                arrays[f"by_t_{kind}_t"], arrays[f"by_t_{kind}_mem"], arrays[f"by_t_{kind}_se"] = ts, mem_t, se_t
            if self.top_pos is not None:
                arrays["top_train_index"] = self.top_train_index()
                arrays["top_infl"] = self.top_infl
                arrays["top_infl_se"] = self.top_se
                arrays["test_index"] = self._test_index()
            with atomic_path(npz_path) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez_compressed(fh, **arrays)

    def write_pairs(self, csv_path: str | os.PathLike) -> None:
        df = self.pairs_frame()
        with atomic_path(csv_path) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")


def _default_checkpoints(t: int) -> list[int]:
    ts, x = [], 4
    while x < t:
        ts.append(x)
        x *= 2
    return sorted(set(ts + [t]))


def estimate(paths: Sequence, spec: ShardSpec | None = None, *, t: int | None = None,
             kinds: Sequence[str] = SCORE_KINDS, influence: bool = True, infl_score: str = "correct",
             infl_threshold: float = 0.15, mem_threshold: float = 0.25, top_k: int = 4,
             checkpoints: Sequence[int] | None = None, block_size: int = 1024, device: str = "cpu",
             influence_rows: str = "all", precision: tuple[float, float] = PRECISION,
             train_index=None, test_index=None, y_train=None, y_test=None,
             show_progress: bool = True) -> Estimate:
    """Estimate memorization, held-out accuracy and influence from the shards of models ``0..t-1``.

    Memory: ``t x (n_train + n_test)`` bytes of masks/scores plus ``block_size x n_test`` floats;
    the dense influence matrix is never built.  ``kinds`` are the per-model scores to estimate from
    (``correct`` always included).  Pairs kept: ``infl >= infl_threshold`` and
    ``mem >= mem_threshold`` (mem from 0/1 correctness), and every test example's ``top_k``
    influencers (among all training examples, or with ``influence_rows="memorized"`` among the
    memorized ones only: same pairs, far less work).  ``checkpoints``: the ``t`` values at which the
    estimates are also reported (convergence); default 4, 8, 16, ..., t.  ``precision``
    ``(target_se, fraction)``: the convergence table's ``t_for_precision`` is the number of models
    needed for ``fraction`` of the examples to reach ``SE(mem) <= target_se`` (:func:`t_for_precision`).

    Every 0/1 estimate also gets a 95% interval that never has width 0 (Jeffreys intervals of the two
    accuracies, combined for ``mem``: :func:`mem_interval`); :meth:`Estimate.threshold_counts` gives
    counts above thresholds with their lower-bound and chance versions.

    Standard errors are the plug-in ``sqrt(var_in / n_in + var_out / n_out)`` (sample variances;
    0 when all models agree, NaN with fewer than 2 models on a side).  ``Estimate.convergence``
    also gives, per score kind and ``t``, the split-half SE (estimates from even- vs odd-numbered
    models: ``rms(diff) / 2``) and the Spearman-Brown split-half reliability, which compare the
    precision of 0/1 correctness, probability and margin without trusting either SE formula.
    """

    kinds = tuple(dict.fromkeys(("correct",) + tuple(kinds)))
    for kind in kinds:
        if kind not in SCORE_KINDS:
            raise ValueError(f"unknown score kind '{kind}'; use one of {SCORE_KINDS}")
    if infl_score not in SCORE_KINDS:
        raise ValueError(f"unknown influence score '{infl_score}'; use one of {SCORE_KINDS}")
    segments, spec, t = collect_shards(paths, spec, t)
    n, n_test = spec.n_train, spec.n_test
    if y_train is not None and y_test is not None and spec.labels and labels_digest(y_train, y_test) != spec.labels:
        raise ValueError("y_train/y_test differ from the labels the shards were trained on; pass the task's labels")
    ckpts = checkpoints if checkpoints is not None else _default_checkpoints(t)
    ckpts = sorted({int(c) for c in ckpts if 0 < c <= t})
    if not ckpts or ckpts[-1] != t:
        ckpts.append(t)

    accs = {kind: _Acc(n) for kind in kinds}
    test_sums = {kind: np.zeros(n_test) for kind in kinds}
    model_test_acc = np.empty(t)
    by_t = {kind: ([], [], []) for kind in kinds}
    conv_rows = []
    if influence:
        masks_all = np.empty((t, n), dtype=bool)
        test_scores = np.empty((t, n_test), dtype=np.float32)
    keys = ["masks"] + [f"{kind}_train" for kind in kinds] + [f"{kind}_test" for kind in kinds]
    if influence and f"{infl_score}_test" not in keys:
        keys.append(f"{infl_score}_test")

    clock = time.perf_counter()
    done = 0
    for path, lo, hi, first in progress(segments, desc="read shards", disable=not show_progress):
        rows = _read_rows(path, lo, hi, spec, keys)
        m = rows["masks"]
        ids = np.arange(first, first + len(m))
        if influence:
            masks_all[first:first + len(m)] = m
            test_scores[first:first + len(m)] = rows[f"{infl_score}_test"]
        model_test_acc[first:first + len(m)] = rows["correct_test"].mean(1) if n_test else np.nan
        for kind in kinds:
            test_sums[kind] += rows[f"{kind}_test"].astype(np.float64).sum(0)
        a = 0
        while a < len(m):  # split at checkpoints
            nxt = next(c for c in ckpts if c > done)
            b = min(len(m), a + nxt - done)
            for kind in kinds:
                accs[kind].add(m[a:b], rows[f"{kind}_train"][a:b], ids[a:b])
            done += b - a
            a = b
            if done == nxt:
                for kind in kinds:
                    st = accs[kind].stats(binary=kind == "correct")
                    by_t[kind][0].append(done)
                    by_t[kind][1].append(st["mem"].astype(np.float32))
                    by_t[kind][2].append(st["se"].astype(np.float32))
                    row = {"score": kind, "t": done, "split_half": _split_half(accs[kind])}
                    if kind == "correct":
                        ci_se = interval_se(st["lo"], st["hi"])
                        row["interval_se_q95"] = float(np.nanquantile(ci_se, 0.95)) if np.isfinite(ci_se).any() \
                            else np.nan
                        k_in = np.rint(st["in_mean"] * st["n_in"])
                        row["t_for_precision"] = t_for_precision(
                            k_in, st["n_in"], st["n_correct"] - k_in, done - st["n_in"], spec.ratio, *precision)
                    conv_rows.append(row)
    stats = {kind: accs[kind].stats(binary=kind == "correct") for kind in kinds}
    n_in = stats["correct"].pop("n_in")
    for kind in kinds:
        stats[kind].pop("n_in", None)
    mem_by_t = {kind: (np.array(v[0]), np.stack(v[1]), np.stack(v[2])) for kind, v in by_t.items()}
    for row in conv_rows:
        ts, mem_t, se_t = mem_by_t[row["score"]]
        c = list(ts).index(row["t"])
        mt, st, final = mem_t[c], se_t[c], mem_t[-1]
        ok = np.isfinite(mt) & np.isfinite(final)
        row["mean_se"] = float(np.nanmean(st)) if np.isfinite(st).any() else np.nan
        row["rms_se"] = float(np.sqrt(np.nanmean(st.astype(np.float64) ** 2))) if np.isfinite(st).any() else np.nan
        row["median_se"] = float(np.nanmedian(st)) if np.isfinite(st).any() else np.nan
        row["split_half_se"], row["split_half_reliability"] = row.pop("split_half")
        row["rms_diff_to_final"] = float(np.sqrt(np.mean((mt[ok] - final[ok]) ** 2))) if ok.any() else np.nan
        row["n_defined"] = int(np.isfinite(mt).sum())
        row["n_mem_ge_0.25"] = int(np.sum(mt >= 0.25)) if row["score"] != "margin" else np.nan
    est = Estimate(spec=spec, t=t, stats=stats, n_in=n_in,
                   test_mean={kind: test_sums[kind] / t for kind in kinds}, model_test_acc=model_test_acc,
                   convergence=pd.DataFrame(conv_rows).sort_values(["score", "t"], key=lambda c: c.map(
                       {k: i for i, k in enumerate(SCORE_KINDS)}) if c.name == "score" else c, ignore_index=True),
                   mem_by_t=mem_by_t, infl_score=infl_score,
                   thresholds={"infl": infl_threshold, "mem": mem_threshold},
                   train_index=None if train_index is None else np.asarray(train_index),
                   test_index=None if test_index is None else np.asarray(test_index),
                   y_train=None if y_train is None else np.asarray(y_train),
                   y_test=None if y_test is None else np.asarray(y_test))
    for name, arr, size in (("train_index", est.train_index, n), ("test_index", est.test_index, n_test),
                            ("y_train", est.y_train, n), ("y_test", est.y_test, n_test)):
        if arr is not None and len(arr) != size:
            raise ValueError(f"{name} has {len(arr)} entries but the shards have {size} examples")
    est.timings["read_and_mem_s"] = time.perf_counter() - clock
    if influence and n_test:
        clock = time.perf_counter()
        est.pairs, est.top_pos, est.top_infl, est.top_se = influence_blocks(
            masks_all, test_scores, est.mem, infl_threshold=infl_threshold, mem_threshold=mem_threshold,
            top_k=top_k, block_size=block_size, device=device, binary=infl_score == "correct",
            rows=influence_rows, show_progress=show_progress)
        del masks_all, test_scores
        est.timings["influence_s"] = time.perf_counter() - clock
    return est


def influence_blocks(masks: np.ndarray, scores: np.ndarray, mem: np.ndarray | None = None, *,
                     infl_threshold: float = 0.15, mem_threshold: float = 0.25, top_k: int = 4,
                     block_size: int = 1024, device: str = "cpu", binary: bool | None = None,
                     rows: str = "all", show_progress: bool = False):
    """Blocked influence: ``infl(i, j) = mean(scores[:, j] | i in) - mean(scores[:, j] | i out)``.

    ``masks`` bool ``[t, n]``, ``scores`` ``[t, n_test]``.  Returns ``(pairs, top_pos, top_infl,
    top_se)``: the pairs with ``infl >= infl_threshold`` whose training example has
    ``mem >= mem_threshold`` (all training examples when ``mem`` is None) as a DataFrame
    (train_pos, test_pos, mem, infl, infl_se), and each test example's ``top_k`` most influential
    training examples ``[n_test, top_k]`` (positions, influence, standard error).  Only
    ``block_size x n_test`` influence values exist at a time; non-0/1 scores need a second product
    per block (for the variances).

    ``rows="all"`` computes every training example's row (top influencers among all of them);
    ``rows="memorized"`` only the rows with ``mem >= mem_threshold``: the same pairs, top
    influencers among memorized examples only, about ``n / #memorized`` times less work.
    """
    import torch

    t, n = masks.shape
    n_test = scores.shape[1]
    if rows not in ("all", "memorized"):
        raise ValueError(f"rows='{rows}': use 'all' or 'memorized'")
    if binary is None:
        binary = bool(np.isin(scores, (0.0, 1.0)).all())
    dev = torch.device(device)
    S = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32)).to(dev)
    tot = S.sum(0, dtype=torch.float64)
    S2 = None if binary else S * S
    tot2 = tot if binary else S2.sum(0, dtype=torch.float64)
    eligible = np.ones(n, bool) if mem is None else (np.asarray(mem) >= mem_threshold)
    todo = np.arange(n) if rows == "all" else np.flatnonzero(eligible)
    top_k = max(1, min(top_k, len(todo)))
    top_v = torch.full((top_k, n_test), -torch.inf, dtype=torch.float64, device=dev)
    top_s = torch.full((top_k, n_test), torch.nan, dtype=torch.float64, device=dev)
    top_i = torch.full((top_k, n_test), -1, dtype=torch.int64, device=dev)
    pair_parts = []
    for a in progress(range(0, len(todo), block_size), desc="influence blocks", disable=not show_progress):
        idx = todo[a:a + block_size]
        cols = masks[:, idx[0]:idx[-1] + 1] if rows == "all" else masks[:, idx]
        Mb = torch.from_numpy(np.ascontiguousarray(cols)).to(dev).to(torch.float32)   # [t, B]
        s_in = (Mb.T @ S).double()                                    # [B, n_test]
        q_in = s_in if binary else (Mb.T @ S2).double()
        k_in = Mb.sum(0, dtype=torch.float64)[:, None]                # [B, 1]
        k_out = t - k_in
        # infl = s_in / k_in - (tot - s_in) / k_out, as two in-place passes over the block
        infl = (s_in * (1.0 / k_in + 1.0 / k_out)).addr_((1.0 / k_out)[:, 0], tot, alpha=-1.0)
        undefined = ((k_in == 0) | (k_out == 0))[:, 0]
        if undefined.any():                                           # never in / never out: no estimate
            infl[undefined] = -torch.inf

        def se_at(ii, jj):
            kin, kout = k_in[ii, 0], k_out[ii, 0]
            sin, qin = s_in[ii, jj], q_in[ii, jj]
            mi, mo = sin / kin, (tot[jj] - sin) / kout
            var_in = torch.clamp(qin - kin * mi * mi, min=0) / (kin - 1)
            var_out = torch.clamp((tot2[jj] - qin) - kout * mo * mo, min=0) / (kout - 1)
            return torch.sqrt(var_in / kin + var_out / kout)

        idx_t = torch.from_numpy(idx).to(dev)
        kb = min(top_k, len(idx))
        v, i = torch.topk(infl, kb, dim=0)
        jj = torch.arange(n_test, device=dev).expand(kb, n_test)
        cat_v = torch.cat([top_v, v])
        cat_i = torch.cat([top_i, idx_t[i]])
        cat_s = torch.cat([top_s, se_at(i.reshape(-1), jj.reshape(-1)).view(kb, n_test)])
        sel = torch.topk(cat_v, top_k, dim=0).indices
        top_v, top_i, top_s = (torch.gather(x, 0, sel) for x in (cat_v, cat_i, cat_s))
        erows = torch.from_numpy(np.flatnonzero(eligible[idx])).to(dev)
        if len(erows):
            hit = infl.index_select(0, erows) >= infl_threshold
            rr, jj = hit.nonzero(as_tuple=True)
            ii = erows[rr]
            pair_parts.append((idx[ii.cpu().numpy()], jj.cpu().numpy(), infl[ii, jj].cpu().numpy(),
                               se_at(ii, jj).cpu().numpy()))
        del s_in, q_in, infl
    if pair_parts:
        tp, jp, iv, sv = (np.concatenate(x) for x in zip(*pair_parts))
    else:
        tp = jp = np.zeros(0, np.int64)
        iv = sv = np.zeros(0)
    pairs = pd.DataFrame({"train_pos": tp.astype(np.int64), "test_pos": jp.astype(np.int64),
                          "mem": np.asarray(mem)[tp] if mem is not None else np.full(len(tp), np.nan),
                          "infl": iv, "infl_se": sv})
    pairs = pairs.sort_values(["infl", "train_pos", "test_pos"], ascending=[False, True, True], ignore_index=True)
    return pairs, top_i.T.cpu().numpy(), top_v.T.cpu().numpy(), top_s.T.cpu().numpy()


# --- experiment helpers ---------------------------------------------------------------------------

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


def influence_examples(pairs: pd.DataFrame, n_examples: int = 10, per_example: int = 4) -> pd.DataFrame:
    """Figure 4: memorized training examples (highest top influence first) with their ``per_example``
    most influenced test examples.  ``pairs`` as from :meth:`Estimate.pairs_frame` or ``Estimate.pairs``."""
    if len(pairs) == 0:
        return pairs.assign(rank=pd.Series(dtype=int)).iloc[:0]
    key = "train_index" if "train_index" in pairs else "train_pos"
    p = pairs.sort_values([key, "infl"], ascending=[True, False])
    p = p.groupby(key, sort=False).head(per_example).copy()
    p["rank"] = p.groupby(key).cumcount()
    best = p.groupby(key)["infl"].max().sort_values(ascending=False, kind="stable").index[:n_examples]
    p = p[p[key].isin(best)]
    p["_order"] = p[key].map({k: i for i, k in enumerate(best)})
    return p.sort_values(["_order", "rank"]).drop(columns="_order").reset_index(drop=True)


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


def removal_experiment(learner, mem: np.ndarray, thetas: Sequence[float], trials: int = 5, seed: int = 0,
                       show_progress: bool = True, trial_learner: Callable[[int], object] | None = None
                       ) -> pd.DataFrame:
    """Figure 2: for each ``theta`` drop the examples with ``mem >= theta`` ("memorized") or the same
    number chosen at random ("random"), train on the rest of the whole training set and measure
    test accuracy.  Trial ``r`` uses the same training seed for both kinds (paired comparison);
    the random sets are a pure function of ``(seed, theta index, r)``.  ``trial_learner(r)``, when
    given, trains trial ``r`` instead of ``learner``: for a learner that ignores the model seed (the
    linear probe's batch order is a setting), the way to make its trials differ.

    Returns one row per (theta, kind, trial): ``n_removed``, ``frac_remaining``, ``test_acc``;
    :func:`summarize_removal` gives mean and spread.
    """
    mem = np.asarray(mem, dtype=float)
    n = learner.n_train
    if len(mem) != n:
        raise ValueError(f"mem has {len(mem)} entries but the learner has {n} training examples")
    rows = []
    jobs = []
    for ti, theta in enumerate(thetas):
        removed = np.flatnonzero(mem >= theta)
        keep_mem = np.setdiff1d(np.arange(n), removed)
        if len(keep_mem) == 0:
            raise ValueError(f"theta={theta} removes every training example; use larger thresholds")
        for r in range(trials):
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), ti, r], spawn_key=(2,)))
            rand_removed = rng.choice(n, size=len(removed), replace=False)
            keep_rand = np.setdiff1d(np.arange(n), rand_removed)
            s = model_seed(seed, 10_000_000 + r)
            jobs.append((theta, "memorized", r, len(removed), keep_mem, s))
            jobs.append((theta, "random", r, len(removed), keep_rand, s))
    # one learner call per (trial learner, subset size) so that batched learners train equal-size subsets together
    by_size: dict[tuple[int, int], list[int]] = {}
    for q, job in enumerate(jobs):
        by_size.setdefault((job[2] if trial_learner else 0, len(job[4])), []).append(q)
    acc = np.empty(len(jobs))
    for (r, _), qs in progress(list(by_size.items()), desc="removal", disable=not show_progress):
        fit = (trial_learner(r) if trial_learner else learner).fit_predict
        out = fit([jobs[q][4] for q in qs], [jobs[q][5] for q in qs])
        acc[qs] = out.correct_test.mean(1)
    for q, (theta, kind, r, k, keep, _) in enumerate(jobs):
        rows.append({"theta": float(theta), "kind": kind, "trial": r, "n_removed": k,
                     "frac_remaining": len(keep) / n, "test_acc": float(acc[q])})
    return pd.DataFrame(rows)


def summarize_removal(df: pd.DataFrame, *, representation_retrained: bool, seeded_trials: bool) -> pd.DataFrame:
    """Mean and standard deviation over trials of the removal experiment (Figure 2), with what the
    numbers mean: ``representation_retrained`` (False: only a last layer / memory on fixed features
    was refit without the removed examples, not the document's experiment) and ``spread`` --
    ``measured`` where the trials' models differ, ``zero by construction`` where they cannot
    (a learner that is a function of its training set, removing the same memorized set each trial)."""
    g = df.groupby(["theta", "kind"], sort=True)
    out = g.agg(test_acc_mean=("test_acc", "mean"), test_acc_std=("test_acc", "std"),
                trials=("test_acc", "size"), n_removed=("n_removed", "first"),
                frac_remaining=("frac_remaining", "first")).reset_index()
    out["representation_retrained"] = bool(representation_retrained)
    fixed = (out["kind"] == "memorized") & (not seeded_trials)
    out["spread"] = np.where(out["trials"] < 2, "one trial", np.where(fixed, "zero by construction", "measured"))
    return out
