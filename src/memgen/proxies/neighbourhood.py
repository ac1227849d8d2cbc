"""Neighbourhood proxies of memorization: on embeddings or (PCA-reduced) pixels, the share of an example's ``k``
nearest neighbours (itself excluded) with its label (``knn_agree``), the kernel estimate of its class's posterior
among them (``kde_posterior``) and of its class-conditional density (``class_density``, log scale), all through
the exact faiss search of :mod:`memgen.knn`."""

from __future__ import annotations

import numpy as np
import pandas as pd

NEIGHBOURHOOD_PROXIES = ("knn_agree", "kde_posterior", "class_density")


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
