"""The ``knn`` learner: k-nearest neighbours inside each subset, from one shared search (:class:`KNNLearner`)."""

from __future__ import annotations

import numpy as np

from memgen.influence.learners import Outputs, _check_subsets, _check_task, _flat_float, register_learner
from memgen.knn import vote
from memgen.runtime import resolve_device

__all__ = ["KNNLearner", "knn_vote"]


def knn_vote(labels: np.ndarray, y: np.ndarray, k: int):
    """Majority vote over neighbour labels ``[..., k]`` (nearest first) by :func:`memgen.knn.vote`: ties go
    to the tied class whose nearest member is nearest.  Returns (prediction, correct, true-class vote share, margin), where
    margin = (votes of the true class - most votes of another class) / k."""
    pred, counts = vote(labels)                                   # votes of the class at each position
    is_true = labels == y[..., None] if np.ndim(y) else labels == y
    votes_true = is_true.sum(-1)
    votes_other = np.where(is_true, 0, counts).max(-1)
    return pred, pred == y, (votes_true / k).astype(np.float32), ((votes_true - votes_other) / k).astype(np.float32)


@register_learner("knn")
class KNNLearner:
    """k-nearest-neighbour classifier (majority vote of the ``k`` nearest in-subset training examples;
    a training example is its own nearest neighbour when it is in the subset: that is memorization).

    The ``candidates`` nearest training examples of every train and test point are searched once
    (:func:`memgen.knn.search`); a model's prediction takes the first ``k`` candidates inside its
    subset, vectorised over models.  Points with fewer than ``k`` candidates in a subset fall back to an
    exact search over that subset, so the result equals brute-force k-NN on the subset.  Models are a
    deterministic function of the subset (seeds unused).
    """

    @classmethod
    def from_settings(cls, x_train, y_train, x_test, y_test, settings: dict, *, n_classes: int, device: str,
                      show_progress: bool):
        return cls(x_train, y_train, x_test, y_test, **settings, device=resolve_device(device))

    def __init__(self, x_train, y_train, x_test, y_test, k: int = 1, candidates: int | None = None,
                 metric: str = "l2", device: str = "cpu", parallel: int = 16, scale_uint8: bool = True):
        from memgen.knn import search

        self.y_train, self.y_test = _check_task(x_train, y_train, x_test, y_test)
        self.n_train, self.n_test = len(self.y_train), len(self.y_test)
        if not 1 <= k <= self.n_train:
            raise ValueError(f"k={k} must be between 1 and the number of training examples ({self.n_train})")
        self.k, self.metric, self.device, self.parallel = int(k), metric, device, int(parallel)
        self.candidates = int(min(self.n_train, candidates or max(32, 8 * self.k)))
        to = (lambda x: _flat_float(x, __import__("torch").float32, scale_uint8).numpy())
        self.x_train, self.x_test = to(x_train), to(x_test)
        queries = np.concatenate([self.x_train, self.x_test])
        _, self.nbr = search(queries, self.x_train, self.candidates, metric=metric, device=device)
        self.nbr_labels = self.y_train[self.nbr]
        self.y_all = np.concatenate([self.y_train, self.y_test])
        self.name = f"knn_k{self.k}_{metric}_d{self.x_train.shape[1]}"

    def fit_predict(self, subsets, seeds) -> Outputs:
        subsets, seeds = _check_subsets(subsets, seeds, self.n_train)
        out = Outputs.empty(len(subsets), self.n_train, self.n_test)
        n = self.n_train
        for a in range(0, len(subsets), self.parallel):
            qs = list(range(a, min(len(subsets), a + self.parallel)))
            member = np.zeros((len(qs), n), bool)
            for r, q in enumerate(qs):
                member[r, subsets[q]] = True
            inside = member[:, self.nbr]                              # [km, N, K]
            found = inside.sum(-1) >= self.k
            if self.k == 1:
                pos = inside.argmax(-1)[..., None]
            else:
                pos = np.argsort(~inside, axis=-1, kind="stable")[..., :self.k]
            labels = np.take_along_axis(np.broadcast_to(self.nbr_labels, inside.shape), pos, -1)
            _, correct, prob, margin = knn_vote(labels, self.y_all[None, :], self.k)
            for r in range(len(qs)):                                  # exact fallback where candidates ran out
                miss = np.flatnonzero(~found[r])
                if len(miss):
                    correct[r, miss], prob[r, miss], margin[r, miss] = self._exact(subsets[qs[r]], miss)
            out.put(qs, Outputs(correct[:, :n], correct[:, n:], prob[:, :n], prob[:, n:], margin[:, :n], margin[:, n:]))
        return out

    def _exact(self, subset, rows):
        from memgen.knn import search

        queries = np.concatenate([self.x_train, self.x_test])[rows]
        _, idx = search(queries, self.x_train[subset], self.k, metric=self.metric, device=self.device)
        _, correct, prob, margin = knn_vote(self.y_train[subset][idx], self.y_all[rows], self.k)
        return correct, prob, margin
