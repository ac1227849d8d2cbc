"""The estimate (Feldman & Zhang 2020, Algorithm 1, step 3): :func:`estimate` streams a study's shards once and
gives, per training example ``i``, ``mem_i = P[correct on i | i in subset] - P[correct on i | i not in subset]``
with its standard error and 95% interval, the held-out accuracy ``P[correct on i | i not in subset]`` (the
C-score at this ratio), the same differences of means for the true-class probability and the margin (other
estimands, ``E[p | in] - E[p | out]``, with lower variance), the estimates as a function of ``t`` (convergence,
with split-half agreement of even- vs odd-numbered models) and the influence ``infl(i, j)`` on test example
``j`` (:func:`memgen.influence.estimator.influence.influence_blocks`: only the high-influence pairs and every
test example's top influencers are kept).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from memgen.influence.estimator.influence import influence_blocks
from memgen.influence.estimator.intervals import (interval_se, jeffreys_interval, mem_interval, t_for_precision,
                                                  threshold_counts)
from memgen.influence.estimator.shards import ShardSpec, collect_shards, labels_digest, read_rows
from memgen.runtime import atomic_path, progress

SCORE_KINDS = ("correct", "prob", "margin")


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

    @property
    def k_in(self) -> np.ndarray:
        """Number of the models trained on each example that are correct on it."""
        return np.rint(self.stats["correct"]["in_mean"] * self.n_in)

    def threshold_counts(self, thetas: Sequence[float]) -> pd.DataFrame:
        """Point and lower-bound counts above each ``theta``, their expected false discoveries and the counts
        expected if nothing were memorized (:func:`threshold_counts`)."""
        return threshold_counts(self.mem, self.mem_lo, self.k_in, self.n_in, self.n_correct, self.t, thetas)

    def t_for_precision(self, theta: float, half_width: float, fraction: float) -> float:
        """Models needed for ``fraction`` of the examples to have a 95% interval of ``mem`` no wider than
        ``half_width`` on each side at the threshold ``theta``, from all ``t`` models (:func:`t_for_precision`;
        the convergence table has it at every checkpoint)."""
        return t_for_precision(self.n_correct - self.k_in, self.t - self.n_in, self.spec.ratio, theta, half_width,
                               fraction)

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
                          model_test_acc=self.model_test_acc,
                          test_n_correct=np.rint(self.test_mean["correct"] * self.t).astype(np.int64))
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
             influence_rows: str = "all", precision: tuple[float, float] | None = None,
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
    ``(half_width, fraction)``, when given: the convergence table's ``t_for_precision`` is the number of models
    needed for ``fraction`` of the examples to have a 95% interval of ``mem`` no wider than ``half_width`` on each
    side at ``mem_threshold`` (:func:`t_for_precision`).

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
        rows = read_rows(path, lo, hi, spec, keys)
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
                        if precision is not None:
                            k_in = np.rint(st["in_mean"] * st["n_in"])
                            row["t_for_precision"] = t_for_precision(
                                st["n_correct"] - k_in, done - st["n_in"], spec.ratio, mem_threshold, *precision)
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
