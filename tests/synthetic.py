"""Test helpers of the influence estimator: a learner with known memorization and influence, and a reference
for the blocked influence computation. Imported by the tests (tests/ is on their path) and by
tests/benchmarks/bench_influence.py."""

from __future__ import annotations

import numpy as np

from memgen.influence.learners import Outputs, _check_subsets


class SyntheticLearner:
    """A 'learner' whose correctness probabilities are set by hand: true memorization and influence are known.

    Model with subset ``S`` and seed ``s`` is correct on training example ``i`` with probability
    ``p_in[i]`` if ``i in S`` else ``p_out[i]`` (true mem = ``p_in - p_out``), and on test example
    ``j`` with probability ``clip(p_test[j] + sum_{(i, j, d) in effects, i in S} d)`` (true influence
    ``d`` while unclipped).  The reported true-class probability is a Beta draw with mean equal to
    that probability (concentration ``kappa``; lower variance than the 0/1 outcome), the margin its
    logit.  Draws come from ``numpy.random.default_rng(s)``.
    """

    name = "synthetic"

    def __init__(self, p_in, p_out, p_test, effects=None, kappa: float = 20.0, y_train=None, y_test=None):
        self.p_in, self.p_out = np.asarray(p_in, float), np.asarray(p_out, float)
        self.p_test = np.asarray(p_test, float)
        self.n_train, self.n_test = len(self.p_in), len(self.p_test)
        self.y_train = np.zeros(self.n_train, np.int64) if y_train is None else np.asarray(y_train, np.int64)
        self.y_test = np.zeros(self.n_test, np.int64) if y_test is None else np.asarray(y_test, np.int64)
        eff = np.zeros((0, 3)) if effects is None else np.asarray(effects, float).reshape(-1, 3)
        self.eff_i, self.eff_j, self.eff_d = eff[:, 0].astype(np.int64), eff[:, 1].astype(np.int64), eff[:, 2]
        self.kappa = float(kappa)

    def probabilities(self, subset) -> tuple[np.ndarray, np.ndarray]:
        member = np.zeros(self.n_train, bool)
        member[subset] = True
        q_train = np.where(member, self.p_in, self.p_out)
        q_test = self.p_test.copy()
        np.add.at(q_test, self.eff_j, self.eff_d * member[self.eff_i])
        return q_train, np.clip(q_test, 0.0, 1.0)

    def _draw(self, rng, q):
        correct = rng.random(len(q)) < q
        qc = np.clip(q, 1e-3, 1 - 1e-3)
        prob = rng.beta(qc * self.kappa, (1 - qc) * self.kappa)
        prob = np.where((q <= 0) | (q >= 1), q, prob).astype(np.float32)
        pc = np.clip(prob, 1e-6, 1 - 1e-6)
        return correct, prob, np.log(pc / (1 - pc)).astype(np.float32)

    def fit_predict(self, subsets, seeds) -> Outputs:
        subsets, seeds = _check_subsets(subsets, seeds, self.n_train)
        out = Outputs.empty(len(subsets), self.n_train, self.n_test)
        for q, (s, seed) in enumerate(zip(subsets, seeds)):
            rng = np.random.default_rng(seed)
            q_train, q_test = self.probabilities(s)
            c, p, mg = self._draw(rng, q_train)
            out.correct_train[q], out.prob_train[q], out.margin_train[q] = c, p, mg
            c, p, mg = self._draw(rng, q_test)
            out.correct_test[q], out.prob_test[q], out.margin_test[q] = c, p, mg
        return out


def influence_dense(masks: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The full ``[n, n_test]`` influence matrix and its standard errors in float64 (small cases only)."""
    M = masks.astype(np.float64)
    S = scores.astype(np.float64)
    k_in = M.sum(0)[:, None]
    k_out = len(M) - k_in
    s_in, q_in = M.T @ S, M.T @ (S * S)
    s_out, q_out = S.sum(0) - s_in, (S * S).sum(0) - q_in
    with np.errstate(invalid="ignore", divide="ignore"):
        mi, mo = s_in / k_in, s_out / k_out
        var_in = np.maximum(q_in - k_in * mi ** 2, 0) / (k_in - 1)
        var_out = np.maximum(q_out - k_out * mo ** 2, 0) / (k_out - 1)
        return mi - mo, np.sqrt(var_in / k_in + var_out / k_out)
