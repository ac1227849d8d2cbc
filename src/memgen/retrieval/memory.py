"""The explicit memory on top of a backbone: exact k-NN over the stored training embeddings and their votes.

The memory is the set of training embeddings (``keys``) with their labels.

* :func:`find_neighbors` -- exact search via :func:`memgen.knn.search`, keeping neighbour ids and distances
  (:class:`Neighbors`); ``exclude_ids`` gives leave-one-out retrieval (a training example never retrieves itself,
  even when exact duplicates exist), :func:`leave_one_out_neighbors` is the shorthand for the whole memory.
* :func:`knn_vote` / :func:`knn_classify` -- majority or distance-weighted vote of the first ``k`` neighbours;
  :func:`knn_predictions` / :func:`knn_table` -- every metric, weighting and k at once;
  :func:`knn_softmax` -- the kNN-LM distribution ``softmax(-d / T)`` aggregated by label.

The Transformer over neighbours is :mod:`memgen.retrieval.transformer`, the gates between the network and the
memory :mod:`memgen.retrieval.gates`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from memgen.knn import search, vote
from memgen.runtime import resolve_device

KS = (1, 10, 20, 30)


# ------------------------------------------------------------------------------------------------ search
@dataclass
class Neighbors:
    """``ids`` ``[N, k]`` (int64 indices into the memory) and ``dist`` ``[N, k]`` (float32), nearest first.

    ``dist`` is the squared Euclidean distance for ``metric="l2"`` and ``1 - cosine`` for ``"cosine"``.
    """

    ids: np.ndarray
    dist: np.ndarray
    metric: str = "l2"

    @property
    def k(self) -> int:
        return self.ids.shape[1]

    def head(self, k: int) -> "Neighbors":
        if not 1 <= k <= self.k:
            raise ValueError(f"asked for {k} neighbours but only {self.k} were retrieved; search with a larger k")
        return Neighbors(self.ids[:, :k], self.dist[:, :k], self.metric)

    def subset(self, rows) -> "Neighbors":
        return Neighbors(self.ids[rows], self.dist[rows], self.metric)


def find_neighbors(queries: np.ndarray, keys: np.ndarray, k: int, *, metric: str = "l2", device: str = "cpu",
                   exclude_ids: np.ndarray | None = None) -> Neighbors:
    """The ``k`` nearest ``keys`` of every query (exact search through :func:`memgen.knn.search`).

    ``exclude_ids[i]`` (or -1) is a memory index query ``i`` must not retrieve -- its own entry for
    leave-one-out retrieval. The exclusion is by index, so an exact duplicate of the query stays a valid
    neighbour while the query itself never is.
    """
    queries = np.asarray(queries, dtype=np.float32)
    keys = np.asarray(keys, dtype=np.float32)
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(f"queries {queries.shape} and keys {keys.shape} must be [N, D] with the same D")
    device = resolve_device(device)
    if exclude_ids is None:
        dist, ids = search(queries, keys, k, metric=metric, device=device)
        return Neighbors(ids, dist.astype(np.float32), metric)
    exclude_ids = np.asarray(exclude_ids, dtype=np.int64)
    if exclude_ids.shape != (len(queries),):
        raise ValueError(f"exclude_ids must have one entry per query ({len(queries)}), got {exclude_ids.shape}")
    if k + 1 > len(keys):
        raise ValueError(f"leave-one-out search for k={k} needs at least {k + 1} keys, got {len(keys)}")
    dist, ids = search(queries, keys, k + 1, metric=metric, device=device)
    drop = ids == exclude_ids[:, None]
    # rows where the excluded id was not retrieved drop their (k+1)-th neighbour instead
    drop[~drop.any(1), -1] = True
    # a row can retrieve the excluded id at most once, so exactly one entry per row is dropped
    keep = ~drop
    ids = ids[keep].reshape(len(queries), k)
    dist = dist[keep].reshape(len(queries), k)
    return Neighbors(ids, dist.astype(np.float32), metric)


def leave_one_out_neighbors(keys: np.ndarray, k: int, *, metric: str = "l2", device: str = "cpu") -> Neighbors:
    """Neighbours of every memory entry among the *other* entries."""
    return find_neighbors(keys, keys, k, metric=metric, device=device, exclude_ids=np.arange(len(keys)))


# ------------------------------------------------------------------------------------------------ voting
def vote_weights(shape, dist: np.ndarray | None, weighting: str, eps: float = 1e-8) -> np.ndarray:
    """Neighbour weights ``[N, k]``: 1 (``majority``) or ``1 / (d + eps)`` (``distance``)."""
    if weighting == "majority":
        return np.ones(shape, dtype=np.float64)
    if weighting == "distance":
        if dist is None:
            raise ValueError("distance-weighted vote needs the neighbour distances (dist=...)")
        return 1.0 / (np.maximum(np.asarray(dist, dtype=np.float64), 0.0) + eps)
    raise ValueError(f"unknown weighting '{weighting}'; use 'majority' or 'distance'")


def knn_vote(neighbor_labels: np.ndarray, n_classes: int, *, dist: np.ndarray | None = None,
             weighting: str = "majority", eps: float = 1e-8) -> np.ndarray:
    """Vote shares ``[N, n_classes]`` (rows sum to 1) of the given neighbours.

    ``majority``: one vote per neighbour. ``distance``: neighbour weight ``1 / (d + eps)`` with ``d`` the
    search distance (squared L2 or cosine distance), so closer neighbours count more.
    """
    labels = np.asarray(neighbor_labels, dtype=np.int64)
    if labels.ndim != 2:
        raise ValueError(f"neighbor_labels must be [N, k], got {labels.shape}")
    w = vote_weights(labels.shape, dist, weighting, eps)
    votes = np.zeros((len(labels), n_classes), dtype=np.float64)
    np.add.at(votes, (np.repeat(np.arange(len(labels)), labels.shape[1]), labels.ravel()), w.ravel())
    return votes / votes.sum(1, keepdims=True)


def knn_classify(neighbor_labels: np.ndarray, n_classes: int, *, k: int | None = None,
                 dist: np.ndarray | None = None, weighting: str = "majority") -> tuple[np.ndarray, np.ndarray]:
    """k-NN prediction from the first ``k`` neighbours: ``(pred [N], vote_shares [N, n_classes])``.

    The prediction is :func:`memgen.knn.vote` (ties go to the tied class whose nearest member ranks first).
    """
    labels = np.asarray(neighbor_labels, dtype=np.int64)
    k = labels.shape[1] if k is None else k
    labels = labels[:, :k]
    dist = None if dist is None else np.asarray(dist)[:, :k]
    shares = knn_vote(labels, n_classes, dist=dist, weighting=weighting)
    pred, _ = vote(labels, None if weighting == "majority" else vote_weights(labels.shape, dist, weighting))
    return pred, shares.astype(np.float32)


def knn_softmax(neighbor_labels: np.ndarray, dist: np.ndarray, n_classes: int, temperature: float) -> np.ndarray:
    """kNN-LM distribution: neighbour weights ``softmax(-d / T)`` summed per label. ``T = inf`` = majority share."""
    labels = np.asarray(neighbor_labels, dtype=np.int64)
    if not np.isfinite(temperature):
        return knn_vote(labels, n_classes)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = -np.asarray(dist, dtype=np.float64) / temperature
    w = np.exp(logits - logits.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    probs = np.zeros((len(labels), n_classes))
    np.add.at(probs, (np.repeat(np.arange(len(labels)), labels.shape[1]), labels.ravel()), w.ravel())
    return probs


def knn_predictions(neighbors_by_metric: dict[str, Neighbors], key_labels: np.ndarray, n_classes: int, ks=KS,
                    weightings=("majority", "distance")) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Predictions of every (metric, k, weighting) combination from one search per metric (with k >= max(ks)).

    Returns ``{"knn-{metric}-k{k}-{weighting}": (pred [N], vote_shares [N, n_classes])}``.
    """
    out = {}
    for metric, nb in neighbors_by_metric.items():
        labels = np.asarray(key_labels)[nb.ids]
        for k in ks:
            if k > nb.k:
                raise ValueError(f"k={k} but only {nb.k} neighbours were retrieved for metric '{metric}'; "
                                 f"search with k >= {max(ks)}")
            for weighting in weightings:
                out[f"knn-{metric}-k{k}-{weighting}"] = knn_classify(labels, n_classes, k=k, dist=nb.dist,
                                                                     weighting=weighting)
    return out


def knn_table(neighbors_by_metric: dict[str, Neighbors], key_labels: np.ndarray, y: np.ndarray, n_classes: int,
              ks=KS, weightings=("majority", "distance")) -> pd.DataFrame:
    """Accuracy of every (metric, k, weighting) combination: a tidy DataFrame (``method`` names as in
    :func:`knn_predictions`)."""
    rows = []
    for name, (pred, _) in knn_predictions(neighbors_by_metric, key_labels, n_classes, ks, weightings).items():
        _, metric, k, weighting = name.split("-")
        rows.append({"method": name, "metric": metric, "k": int(k[1:]), "weighting": weighting,
                     "accuracy": float((pred == np.asarray(y)).mean())})
    return pd.DataFrame(rows)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)
