"""The removal experiment (Feldman & Zhang 2020, Figure 2): retrain without the memorized examples and
without as many random ones.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from memgen.claims import trials_difference
from memgen.influence.estimator.shards import model_seed
from memgen.runtime import progress


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


def removal_difference(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per threshold, test accuracy after removing the memorized examples minus after removing as many random
    ones, in points, with a ``level`` interval from the trials (:func:`memgen.claims.trials_difference`, Welch);
    NaN interval with fewer than 2 trials of a kind.  ``df`` as from :func:`removal_experiment`."""
    rows = []
    for theta, d in df.groupby("theta", sort=True):
        mem, rand = (100 * d.loc[d["kind"] == kind, "test_acc"].to_numpy() for kind in ("memorized", "random"))
        effect, lo, hi = trials_difference(mem, rand, level=level) if min(len(mem), len(rand)) >= 2 else \
            (float(mem.mean() - rand.mean()), np.nan, np.nan)
        rows.append({"theta": float(theta), "n_removed": int(d["n_removed"].iloc[0]), "trials": len(mem),
                     "memorized_acc": float(mem.mean()), "random_acc": float(rand.mean()),
                     "difference": effect, "lo": lo, "hi": hi})
    return pd.DataFrame(rows, columns=["theta", "n_removed", "trials", "memorized_acc", "random_acc", "difference",
                                       "lo", "hi"])
