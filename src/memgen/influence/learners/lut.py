"""The ``lut`` learner: networks of lookup tables on bits (:class:`LUTLearner`, binary tasks)."""

from __future__ import annotations

import numpy as np

from memgen.influence.learners import Outputs, _check_subsets, _check_task, register_learner

__all__ = ["LUTLearner"]


@register_learner("lut")
class LUTLearner:
    """Adapter for :class:`memgen.lut.LUTNetwork` (networks of ``k``-input lookup tables, binary 0/1
    tasks, 0/1 input bits from :func:`memgen.bits.binarize`).  Model ``q`` is ``LUTNetwork(k, (width,) *
    depth, seed=seeds[q]).fit(bits_train[subset], y_train[subset])``, one at a time (the network's own kernels
    are vectorised over LUTs).  The network outputs hard labels, so the
    reported probability is the 0/1 outcome and the margin is +1/-1 (no variance reduction there).
    """

    @classmethod
    def from_settings(cls, bits_train, y_train, bits_test, y_test, settings: dict, *, n_classes: int, device: str,
                      show_progress: bool):
        from memgen.runtime import quick_device

        return cls(bits_train, y_train, bits_test, y_test, **settings, device=quick_device(device))

    def __init__(self, bits_train, y_train, bits_test, y_test, k: int = 8, width: int = 1024, depth: int = 5,
                 device: str = "cpu", threads: int | None = None):
        from memgen.lut.network import check_bits, check_labels

        self.y_train, self.y_test = _check_task(bits_train, y_train, bits_test, y_test)
        check_labels(self.y_train, len(self.y_train))
        if len(self.y_test) and not np.isin(self.y_test, [0, 1]).all():
            raise ValueError("LUT networks learn binary tasks: test labels must be 0/1; relabel the task")
        self.bits_train, self.bits_test = check_bits(bits_train), check_bits(bits_test, np.shape(bits_train)[1])
        self.bits_all = np.concatenate([self.bits_train, self.bits_test])
        self.n_train, self.n_test = len(self.y_train), len(self.y_test)
        self.k, self.widths, self.device, self.threads = int(k), (int(width),) * int(depth), device, threads
        self.name = f"lut_k{self.k}_w{'-'.join(map(str, self.widths))}"

    def fit_predict(self, subsets, seeds) -> Outputs:
        from memgen.lut.network import LUTNetwork

        subsets, seeds = _check_subsets(subsets, seeds, self.n_train)
        y_all = np.concatenate([self.y_train, self.y_test])
        out = Outputs.empty(len(subsets), self.n_train, self.n_test)
        n = self.n_train
        for q, (sub, seed) in enumerate(zip(subsets, seeds)):
            net = LUTNetwork(self.k, self.widths, seed=seed, device=self.device, threads=self.threads)
            net.fit(self.bits_train[sub], self.y_train[sub])
            correct = net.predict(self.bits_all).astype(np.int64) == y_all
            out.correct_train[q], out.correct_test[q] = correct[:n], correct[n:]
            out.prob_train[q], out.prob_test[q] = correct[:n], correct[n:]
            out.margin_train[q], out.margin_test[q] = 2.0 * correct[:n] - 1, 2.0 * correct[n:] - 1
        return out
