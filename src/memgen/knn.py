"""Exact nearest-neighbour search (faiss when installed, GPU index when available; torch otherwise) and the
one k-NN vote every study uses (:func:`vote`)."""

from __future__ import annotations

import numpy as np


def search(queries: np.ndarray, keys: np.ndarray, k: int, metric: str = "l2", device: str = "cpu",
           batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(distances, indices)`` of the ``k`` nearest ``keys`` for every query, nearest first.

    ``metric`` is ``"l2"`` (squared Euclidean distance) or ``"cosine"`` (distance = 1 - cosine similarity).
    """
    if metric not in ("l2", "cosine"):
        raise ValueError(f"unknown metric '{metric}'; use 'l2' or 'cosine'")
    if not 1 <= k <= len(keys):
        raise ValueError(f"k={k} must be between 1 and the number of stored keys ({len(keys)})")
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    keys = np.ascontiguousarray(keys, dtype=np.float32)
    if metric == "cosine":
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        keys = keys / np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
    try:
        import faiss
    except ImportError:
        dist, idx = search_torch(queries, keys, k, device, batch_size)
    else:
        index = faiss.IndexFlatL2(keys.shape[1])
        if device.startswith("cuda") and hasattr(faiss, "StandardGpuResources"):
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        index.add(keys)
        dist, idx = index.search(queries, k)
    if metric == "cosine":
        dist = dist / 2.0  # |a-b|^2 = 2 - 2 cos for unit vectors
    return dist, idx.astype(np.int64)


def search_torch(queries: np.ndarray, keys: np.ndarray, k: int, device: str = "cpu",
                 batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Plain ``cdist`` + ``topk`` search (squared L2), the reference the faiss path is measured against."""
    import torch

    keys_t = torch.from_numpy(keys).to(device)
    key_sq = (keys_t * keys_t).sum(1)
    dists, idxs = [], []
    for start in range(0, len(queries), batch_size):
        q = torch.from_numpy(queries[start:start + batch_size]).to(device)
        d = (q * q).sum(1, keepdim=True) - 2 * q @ keys_t.T + key_sq
        top = torch.topk(d, k, dim=1, largest=False)
        dists.append(top.values.clamp_min_(0).cpu().numpy())
        idxs.append(top.indices.cpu().numpy())
    return np.concatenate(dists), np.concatenate(idxs).astype(np.int64)


def vote(labels: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k-NN vote over neighbour labels ``[..., k]`` (nearest first), optionally weighted ``[..., k]``.

    Returns ``(pred [...], support [..., k])``: the winning label and, per position, the total weight
    of that position's label.  Ties go to the tied label whose nearest member ranks first -- the one
    rule for every k-NN vote (retrieval's k-NN rows and gates, the influence study's k-NN learner).
    """
    labels = np.asarray(labels)
    same = labels[..., :, None] == labels[..., None, :]                     # [..., k, k]
    if weights is None:
        support = same.sum(-1)
        top = support.max(-1, keepdims=True)
        tied = support == top
    else:
        support = (same * np.asarray(weights, dtype=np.float64)[..., None, :]).sum(-1)
        top = support.max(-1, keepdims=True)
        tied = np.isclose(support, top, rtol=1e-9, atol=1e-12)
    win = tied.argmax(-1)                                                    # first position of a top label
    return np.take_along_axis(labels, win[..., None], -1)[..., 0], support
