"""The learning-speed record of training: each time a training example passes through a training batch, its
true-class probability and 0/1 correctness, summed per epoch. Per example, the mean over all its passes
(``learn_prob``, ``learn_acc``, the learning-speed proxy of memorization, :mod:`memgen.proxies`) and the
per-epoch curve.

A foundation, beside :mod:`memgen.train`: :class:`LearningSpeedRecorder` is the callback that
:func:`memgen.train.train_classifier`, the retrieval study's backbone training and the influence study's MLP
learner accept as ``record``; :func:`shard_arrays` / :func:`from_shards` store it in an estimator study's shards
and read it back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LEARNING_PROXIES = ("learn_prob", "learn_acc")


class LearningSpeedRecorder:
    """Sums of the true-class probability and correctness of every pass of every training example through a
    training batch, per epoch, for one model or several (``models``: the keys the caller passes, e.g. model
    seeds).

    Call it as ``recorder(epoch, idx, prob, correct)`` with 1-D arrays or tensors (one model), or with
    ``[k, b]`` arrays and ``models=`` the ``k`` keys (``k`` models trained at once); ``idx`` are positions
    ``0..n-1`` in the training set. The sums stay on the device of the first tensors passed (no copy to the host
    per training step); the epoch axis grows as epochs are seen.
    """

    def __init__(self, n: int, models=(0,)):
        self.n = int(n)
        self.keys = [int(m) for m in models]
        self.row = {m: r for r, m in enumerate(self.keys)}
        if len(self.row) != len(self.keys):
            raise ValueError("recorder model keys must be distinct")
        self.epochs: list = []   # per epoch: (prob_sum, correct_sum, count), torch [models * n]
        self.device = None

    def _epoch(self, epoch: int):
        import torch

        while len(self.epochs) <= epoch:
            size = len(self.keys) * self.n
            self.epochs.append((torch.zeros(size, dtype=torch.float64, device=self.device),
                                torch.zeros(size, dtype=torch.int32, device=self.device),
                                torch.zeros(size, dtype=torch.int32, device=self.device)))
        return self.epochs[epoch]

    def __call__(self, epoch: int, idx, prob, correct, models=None) -> None:
        import torch

        idx, prob, correct = (torch.as_tensor(a) for a in (idx, prob, correct))
        if models is None:
            if len(self.keys) != 1:
                raise ValueError("a recorder of several models needs models= with every call")
            models, idx, prob, correct = self.keys, idx[None], prob[None], correct[None]
        if self.device is None:
            self.device = idx.device
        rows = torch.tensor([self.row[int(key)] for key in models], device=self.device)
        flat = (rows[:, None] * self.n + idx.to(self.device, torch.int64)).reshape(-1)
        psum, csum, count = self._epoch(int(epoch))
        psum.index_add_(0, flat, prob.to(self.device, torch.float64).reshape(-1))
        csum.index_add_(0, flat, correct.to(self.device, torch.int32).reshape(-1))
        count.index_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))

    def state_dict(self) -> dict:
        """The sums so far (on the CPU), for a training job's resume file (:func:`memgen.train.train_classifier`)."""
        return {"keys": list(self.keys), "device": None if self.device is None else str(self.device),
                "epochs": [tuple(t.cpu() for t in sums) for sums in self.epochs]}

    def load_state_dict(self, state: dict) -> None:
        if state["keys"] != self.keys:
            raise ValueError(f"recorder state of models {state['keys']} loaded into a recorder of {self.keys}")
        import torch

        self.device = None if state["device"] is None else torch.device(state["device"])
        self.epochs = [tuple(t.to(self.device) for t in sums) for sums in state["epochs"]]

    def arrays(self) -> dict:
        """``prob_sum``, ``correct_sum``, ``count``: numpy ``[models, epochs, n]``."""
        if not self.epochs:
            raise ValueError("the recorder saw no training batch")
        shape = (len(self.keys), len(self.epochs), self.n)
        return {name: np.stack([e[i].cpu().numpy().reshape(len(self.keys), self.n) for e in self.epochs],
                               axis=1).reshape(shape)
                for i, name in enumerate(("prob_sum", "correct_sum", "count"))}


@dataclass
class LearningSpeed:
    """Learning-speed proxy per training example (positions ``0..n-1``): mean over passes and over models
    (``learn_prob``, ``learn_acc``), passes per example, per-epoch curves ``[n, epochs]`` (NaN where an
    example made no pass) and the number of models that trained on each example."""

    learn_prob: np.ndarray
    learn_acc: np.ndarray
    passes: np.ndarray
    curve_prob: np.ndarray
    curve_acc: np.ndarray
    n_models: np.ndarray

    @classmethod
    def from_sums(cls, prob_sum, correct_sum, count) -> "LearningSpeed":
        """From ``[models, epochs, n]`` sums: per model the mean over its passes, then the mean over the models
        that trained on the example (each model weighs the same, however many passes it made)."""
        prob_sum, correct_sum, count = (np.asarray(a, np.float64) for a in (prob_sum, correct_sum, count))
        passes = count.sum(1)                                          # [models, n]
        seen = passes > 0
        n_models = seen.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_model_p = np.where(seen, prob_sum.sum(1) / passes, 0.0)
            per_model_c = np.where(seen, correct_sum.sum(1) / passes, 0.0)
            learn_prob = per_model_p.sum(0) / n_models
            learn_acc = per_model_c.sum(0) / n_models
            epoch_count = count.sum(0)                                 # [epochs, n]
            curve_prob = (prob_sum.sum(0) / epoch_count).T
            curve_acc = (correct_sum.sum(0) / epoch_count).T
        return cls(learn_prob, learn_acc, passes.sum(0).astype(np.int64), curve_prob, curve_acc,
                   n_models.astype(np.int64))

    @classmethod
    def from_recorder(cls, recorder: LearningSpeedRecorder) -> "LearningSpeed":
        a = recorder.arrays()
        return cls.from_sums(a["prob_sum"], a["correct_sum"], a["count"])

    def frame(self, index=None, label=None) -> pd.DataFrame:
        """One row per training example: ``index`` (dataset index, default the position), ``label``, the proxies,
        ``passes`` and ``n_models``."""
        n = len(self.learn_prob)
        df = pd.DataFrame({"index": np.arange(n) if index is None else np.asarray(index)})
        if label is not None:
            df["label"] = np.asarray(label)
        return df.assign(learn_prob=self.learn_prob, learn_acc=self.learn_acc, passes=self.passes,
                         n_models=self.n_models)

    def write(self, csv_path, npz_path, index, label) -> None:
        """``proxies.csv`` (one row per example) and the per-epoch curves in ``npz_path``."""
        from memgen.runtime import save_npz, write_csv

        write_csv(csv_path, self.frame(index, label))
        save_npz(npz_path, index=np.asarray(index), label=np.asarray(label), curve_prob=self.curve_prob,
                 curve_acc=self.curve_acc, learn_prob=self.learn_prob, learn_acc=self.learn_acc)


def shard_arrays(recorder: LearningSpeedRecorder) -> dict:
    """The recorder's sums as compact arrays for an estimator shard (``learn_*``, ``[models, epochs, n]``)."""
    a = recorder.arrays()
    if a["count"].max(initial=0) > 255:
        raise ValueError("more than 255 passes of one example in one epoch; the shard stores counts as uint8")
    return {"learn_prob_sum": a["prob_sum"].astype(np.float32), "learn_correct_sum": a["correct_sum"].astype(np.uint8),
            "learn_count": a["count"].astype(np.uint8)}


def from_shards(paths) -> LearningSpeed:
    """The learning-speed proxy over all models of an estimator study's shards (those written with a recorder)."""
    parts = {"learn_prob_sum": [], "learn_correct_sum": [], "learn_count": []}
    for path in paths:
        with np.load(path) as z:
            if "learn_count" not in z.files:
                raise ValueError(f"shard {path} holds no learning-speed record (its learner records none, or it "
                                 "was written before recording existed); rerun the shard")
            for key in parts:
                parts[key].append(z[key])
    epochs = max(p.shape[1] for p in parts["learn_count"])
    padded = {key: np.concatenate([np.pad(p, ((0, 0), (0, epochs - p.shape[1]), (0, 0))) for p in arrs])
              for key, arrs in parts.items()}
    return LearningSpeed.from_sums(padded["learn_prob_sum"], padded["learn_correct_sum"], padded["learn_count"])
