"""Cheap per-example proxies of memorization, and their validation against the subsampling estimator.

Feldman & Zhang's estimator (:mod:`memgen.influence.estimator`) needs thousands of models; Jiang et al. 2021
("Characterizing structural regularities of labeled data in overparameterized models") show that statistics of
one ordinary training run, or of the data's geometry, rank examples much like it. Two kinds, both "regularity"
scores (high = typical, learned early and everywhere; low = atypical, mislabelled or memorized):

* **learning speed**: each time a training example passes through a training batch, its true-class
  probability and 0/1 correctness; per example, the mean over all its passes (``learn_prob``,
  ``learn_acc``) and the per-epoch curve. :class:`LearningSpeedRecorder` is the callback that
  :func:`memgen.train.train_classifier` and the estimator's MLP learner accept as ``record``.
* **neighbourhood** (:func:`neighbourhood_proxies`): on embeddings or (PCA-reduced) pixels, the share of an
  example's ``k`` nearest neighbours (itself excluded) with its label (``knn_agree``), the kernel estimate of
  its class's posterior among them (``kde_posterior``) and of its class-conditional density
  (``class_density``, log scale), all through the exact faiss search of :mod:`memgen.knn`.

:func:`validate` compares a proxy with an estimate (Spearman correlation with held-out accuracy and with
``mem``, overlap of the top-1% sets) on the examples both cover.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LEARNING_PROXIES = ("learn_prob", "learn_acc")
NEIGHBOURHOOD_PROXIES = ("knn_agree", "kde_posterior", "class_density")


# ------------------------------------------------------------------------------------------ learning speed
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


# ------------------------------------------------------------------------------------------- neighbourhood
def pca_features(x: np.ndarray, dims: int | None) -> np.ndarray:
    """Rows of ``x`` flattened to float32 (uint8 scaled to [0, 1]), projected on their top ``dims`` principal
    components (``None`` or at least the input dimension: no projection)."""
    flat = np.asarray(x).reshape(len(x), -1)
    flat = flat.astype(np.float32) / 255.0 if flat.dtype == np.uint8 else flat.astype(np.float32)
    if dims is None or dims >= flat.shape[1]:
        return flat
    centred = flat - flat.mean(0, dtype=np.float64).astype(np.float32)
    cov = centred.T.astype(np.float64) @ centred.astype(np.float64)
    _, vecs = np.linalg.eigh(cov)
    return np.ascontiguousarray(centred @ vecs[:, ::-1][:, :dims].astype(np.float32))


def _neighbours_excluding_self(x: np.ndarray, k: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances and positions of the ``k`` nearest other rows of ``x`` (the row itself dropped by
    index, so exact duplicates stay neighbours)."""
    from memgen.knn import search

    dist, idx = search(x, x, k + 1, device=device)
    keep = idx != np.arange(len(x))[:, None]
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]   # the first k entries that are not the row itself
    return np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)


def neighbourhood_proxies(x: np.ndarray, y: np.ndarray, k: int = 20, device: str = "cpu") -> pd.DataFrame:
    """``knn_agree``, ``kde_posterior`` and ``class_density`` per row of features ``x`` (float ``[n, d]``) with
    labels ``y``; positions ``0..n-1``.

    A Gaussian kernel with one bandwidth for all (``h^2`` = the median squared distance to the ``k``-th
    neighbour) weighs the ``k`` nearest neighbours (itself excluded): ``kde_posterior`` is the kernel share of
    those with the example's label; ``class_density`` the log kernel density of the example's class at it,
    ``log(sum_{j in class, j != i, among its k nearest in the class} K(x_i, x_j) / n_class)``.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y, np.int64)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} feature rows but {len(y)} labels")
    counts = np.bincount(y)
    if not 1 <= k < len(x):
        raise ValueError(f"k={k} must be between 1 and the number of examples minus one ({len(x) - 1}); "
                         "lower the neighbourhood k")
    dist, idx = _neighbours_excluding_self(x, k, device)
    same = y[idx] == y[:, None]
    h2 = max(float(np.median(dist[:, -1])), 1e-12)
    kern = np.exp(-(dist - dist[:, :1]) / (2 * h2))   # shifted by the nearest distance: same ratio, no underflow
    posterior = (kern * same).sum(1) / kern.sum(1)
    density = np.full(len(x), -np.inf)
    for c in np.flatnonzero(counts > 1):
        members = np.flatnonzero(y == c)
        kc = min(k, len(members) - 1)
        d_c, _ = _neighbours_excluding_self(x[members], kc, device)
        density[members] = (np.log(np.exp(-(d_c - d_c[:, :1]) / (2 * h2)).sum(1)) - d_c[:, 0] / (2 * h2)
                            - np.log(counts[c]))
    return pd.DataFrame({"knn_agree": same.mean(1), "kde_posterior": posterior, "class_density": density})


# -------------------------------------------------------------------------------------------- validation
def _least_set(values: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Positions of the ``size`` smallest values, ties broken at random (seeded): estimates of few models tie."""
    tiebreak = np.random.default_rng(seed).random(len(values))
    return np.lexsort((tiebreak, values))[:size]


def agreement(proxy: np.ndarray, heldout: np.ndarray, mem: np.ndarray, top_fraction: float = 0.01,
              seed: int = 0) -> dict:
    """Spearman correlation of a regularity proxy with held-out accuracy and with ``mem``, and the share of the
    ``top_fraction`` most memorized (and of the lowest held-out accuracy) examples that are also among the
    ``top_fraction`` least regular by the proxy (chance: ``top_fraction``)."""
    from scipy.stats import spearmanr

    proxy, heldout, mem = (np.asarray(a, np.float64) for a in (proxy, heldout, mem))
    ok = np.isfinite(proxy) & np.isfinite(heldout) & np.isfinite(mem)
    proxy, heldout, mem = proxy[ok], heldout[ok], mem[ok]
    size = max(1, int(round(top_fraction * len(proxy))))
    least = set(_least_set(proxy, size, seed))
    return {"n": int(ok.sum()), "top_size": size,
            "spearman_heldout": float(spearmanr(proxy, heldout).statistic) if len(proxy) > 2 else np.nan,
            "spearman_mem": float(spearmanr(proxy, mem).statistic) if len(proxy) > 2 else np.nan,
            "top_overlap_mem": len(least & set(_least_set(-mem, size, seed + 1))) / size,
            "top_overlap_heldout": len(least & set(_least_set(heldout, size, seed + 2))) / size}


def verdict(row: dict) -> str:
    """Plain words on how well a proxy tracks the estimate (regularity proxies should rise with held-out accuracy
    and fall with mem)."""
    rho, rho_mem = row["spearman_heldout"], row["spearman_mem"]
    if not np.isfinite(rho):
        return "fails: too few examples to correlate"
    if rho <= -0.1:
        return f"fails: ranks against the estimate (rho {rho:+.2f} with held-out accuracy)"
    if rho < 0.3:
        return f"fails: does not track the estimate (rho {rho:+.2f} with held-out accuracy)"
    strength = "tracks the estimate well" if rho >= 0.6 else "tracks the estimate partly"
    extra = "" if rho_mem <= -0.3 else f"; weak on mem itself (rho {rho_mem:+.2f})"
    return strength + extra


def validate(scores: pd.DataFrame, proxies: pd.DataFrame, names, top_fraction: float = 0.01,
             seed: int = 0) -> pd.DataFrame:
    """One row per proxy column in ``names``: :func:`agreement` on the examples that ``scores`` (an estimate's
    ``index``, ``label``, ``mem``, ``heldout_acc``) and ``proxies`` (``index``, ``label``, proxies) share, with
    a ``note``. Where a shared example has another label in the two (another task on the same images: binary,
    random labels) or fewer than 3 examples are shared, every proxy is reported as not comparable."""
    joined = scores[["index", "label", "mem", "heldout_acc"]].merge(proxies, on="index", suffixes=("", "_proxy"))
    same_task = "label_proxy" not in joined or bool((joined["label"] == joined["label_proxy"]).all())
    rows = []
    for name in names:
        if len(joined) < 3 or not same_task:
            why = "another task (labels differ)" if not same_task else "fewer than 3 shared examples"
            rows.append({"proxy": name, "n": len(joined), "note": f"not comparable: {why}"})
            continue
        row = {"proxy": name, **agreement(joined[name].to_numpy(), joined["heldout_acc"].to_numpy(),
                                          joined["mem"].to_numpy(), top_fraction, seed)}
        row["note"] = verdict(row)
        rows.append(row)
    return pd.DataFrame(rows)
