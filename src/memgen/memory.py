"""Explicit memory on top of a backbone: k-NN over stored embeddings, a Transformer over neighbours, gates.

The memory is the set of training embeddings (``keys``) with their labels. Pieces:

* :func:`find_neighbors` -- exact search via :func:`memgen.knn.search`, keeping neighbour ids and distances;
  ``exclude_ids`` gives leave-one-out retrieval (a training example never retrieves itself, even when exact
  duplicates exist), :func:`leave_one_out_neighbors` is the shorthand for the whole memory.
* :func:`knn_vote` / :func:`knn_classify` -- majority or distance-weighted vote of the first ``k`` neighbours;
  :func:`knn_softmax` -- the kNN-LM distribution ``softmax(-d / T)`` aggregated by label.
* :class:`NeighborTransformer` + :func:`train_neighbor_transformer` / :func:`predict_neighbor_transformer` --
  tokens are the query embedding plus ``k`` neighbour tokens (embedding + learned label embedding + rank
  and/or distance encoding); a small Transformer encoder; classification from the query token. Trained on the
  training set with leave-one-out neighbours. Variants (:data:`TRANSFORMER_VARIANTS`): ``ce`` (plain cross
  entropy), ``query_drop`` (the query embedding is replaced by a learned mask token with probability
  ``query_drop`` during training, so the model must read the neighbourhood), ``aux`` (neighbour tokens cannot
  attend to the query, and an auxiliary head on the pooled neighbour tokens is trained jointly).
* Gates between the network and the k-NN: :func:`oracle_gate` (upper bound), :class:`LearnedGate`
  (logistic regression on confidence / vote / distance features) and :class:`KnnInterpolation`
  (``p = lam * p_knn + (1 - lam) * p_net``). Both fitted gates take ``example_ids`` and
  ``backbone_train_ids`` and refuse to fit when they overlap: fit them on the validation hold-out only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from memgen.knn import search
from memgen.runtime import progress, resolve_device, seed_everything

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
def knn_vote(neighbor_labels: np.ndarray, n_classes: int, *, dist: np.ndarray | None = None,
             weighting: str = "majority", eps: float = 1e-8) -> np.ndarray:
    """Vote shares ``[N, n_classes]`` (rows sum to 1) of the given neighbours.

    ``majority``: one vote per neighbour. ``distance``: neighbour weight ``1 / (d + eps)`` with ``d`` the
    search distance (squared L2 or cosine distance), so closer neighbours count more.
    """
    labels = np.asarray(neighbor_labels, dtype=np.int64)
    if labels.ndim != 2:
        raise ValueError(f"neighbor_labels must be [N, k], got {labels.shape}")
    if weighting == "majority":
        w = np.ones(labels.shape, dtype=np.float64)
    elif weighting == "distance":
        if dist is None:
            raise ValueError("distance-weighted vote needs the neighbour distances (dist=...)")
        w = 1.0 / (np.maximum(np.asarray(dist, dtype=np.float64), 0.0) + eps)
    else:
        raise ValueError(f"unknown weighting '{weighting}'; use 'majority' or 'distance'")
    votes = np.zeros((len(labels), n_classes), dtype=np.float64)
    np.add.at(votes, (np.repeat(np.arange(len(labels)), labels.shape[1]), labels.ravel()), w.ravel())
    return votes / votes.sum(1, keepdims=True)


def _first_rank(neighbor_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Rank of the nearest neighbour of each class (k when the class is absent), ``[N, n_classes]``."""
    n, k = neighbor_labels.shape
    first = np.full((n, n_classes), k, dtype=np.int64)
    for r in range(k - 1, -1, -1):
        first[np.arange(n), neighbor_labels[:, r]] = r
    return first


def knn_classify(neighbor_labels: np.ndarray, n_classes: int, *, k: int | None = None,
                 dist: np.ndarray | None = None, weighting: str = "majority") -> tuple[np.ndarray, np.ndarray]:
    """k-NN prediction from the first ``k`` neighbours: ``(pred [N], vote_shares [N, n_classes])``.

    Ties in the vote go to the tied class whose nearest member ranks first.
    """
    labels = np.asarray(neighbor_labels, dtype=np.int64)
    k = labels.shape[1] if k is None else k
    labels = labels[:, :k]
    dist = None if dist is None else np.asarray(dist)[:, :k]
    shares = knn_vote(labels, n_classes, dist=dist, weighting=weighting)
    top = shares.max(1, keepdims=True)
    tied = np.isclose(shares, top, rtol=1e-9, atol=1e-12)
    first = np.where(tied, _first_rank(labels, n_classes), k + 1)
    return first.argmin(1), shares.astype(np.float32)


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


# ------------------------------------------------------------------------------------ neighbour transformer
TRANSFORMER_VARIANTS = {
    "ce": {},
    "query_drop": {"query_drop": 0.5},
    "aux": {"aux_weight": 1.0, "isolate_neighbors": True},
}


class NeighborTransformer(nn.Module):
    """Transformer over ``[query] + k neighbour`` tokens; classifies from the query token's output.

    * query token = ``W e_q + type_q`` (or a learned mask token when the query is dropped);
    * neighbour token = ``W e_j + label_emb(y_j) + pos_j + type_nb`` where ``pos_j`` is a learned rank
      embedding (``position="rank"``), an MLP of the normalized distance (``"distance"``) or both (``"both"``);
    * ``W`` is shared by query and neighbours; embeddings are standardized with the memory's statistics and
      distances divided by the memory's median 1-NN distance (buffers, set by ``set_memory_stats``);
    * ``isolate_neighbors``: neighbour tokens cannot attend to the query token, so the auxiliary head on the
      pooled neighbour tokens is a pure function of the neighbourhood.
    """

    def __init__(self, emb_dim: int, n_classes: int, k: int, *, d_model: int = 128, n_heads: int = 4,
                 n_layers: int = 2, dim_ff: int = 256, dropout: float = 0.1, position: str = "rank",
                 isolate_neighbors: bool = False):
        super().__init__()
        if position not in ("rank", "distance", "both"):
            raise ValueError(f"unknown position encoding '{position}'; use 'rank', 'distance' or 'both'")
        self.config = {"emb_dim": emb_dim, "n_classes": n_classes, "k": k, "d_model": d_model,
                       "n_heads": n_heads, "n_layers": n_layers, "dim_ff": dim_ff, "dropout": dropout,
                       "position": position, "isolate_neighbors": isolate_neighbors}
        self.k = k
        self.position = position
        self.isolate_neighbors = isolate_neighbors
        self.register_buffer("emb_mean", torch.zeros(emb_dim))
        self.register_buffer("emb_std", torch.ones(emb_dim))
        self.register_buffer("dist_scale", torch.ones(()))
        self.proj = nn.Linear(emb_dim, d_model)
        self.type_emb = nn.Parameter(torch.zeros(2, d_model))
        self.mask_token = nn.Parameter(torch.zeros(d_model))
        self.label_emb = nn.Embedding(n_classes, d_model)
        self.rank_emb = nn.Embedding(k, d_model) if position in ("rank", "both") else None
        self.dist_mlp = (nn.Sequential(nn.Linear(1, d_model), nn.GELU(), nn.Linear(d_model, d_model))
                         if position in ("distance", "both") else None)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_ff, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_classes)
        self.aux_head = nn.Linear(d_model, n_classes)
        nn.init.normal_(self.type_emb, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.normal_(self.label_emb.weight, std=0.02)
        if self.rank_emb is not None:
            nn.init.normal_(self.rank_emb.weight, std=0.02)

    def set_memory_stats(self, keys: np.ndarray, first_dist: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.float64)
        self.emb_mean.copy_(torch.as_tensor(keys.mean(0), dtype=torch.float32))
        self.emb_std.copy_(torch.as_tensor(np.maximum(keys.std(0), 1e-6), dtype=torch.float32))
        self.dist_scale.fill_(float(max(np.median(first_dist), 1e-6)))

    def forward(self, q: torch.Tensor, nb: torch.Tensor, nb_labels: torch.Tensor, nb_dist: torch.Tensor,
                query_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``q [B, D]``, ``nb [B, k, D]``, ``nb_labels [B, k]``, ``nb_dist [B, k]``; ``query_mask [B]`` bool
        replaces those queries by the mask token. Returns ``(logits, aux_logits)``, each ``[B, n_classes]``."""
        b, k, _ = nb.shape
        if k > self.k:
            raise ValueError(f"model was built for k={self.k} neighbours, got {k}")
        qt = self.proj((q - self.emb_mean) / self.emb_std)
        if query_mask is not None:
            qt = torch.where(query_mask[:, None], self.mask_token.expand_as(qt), qt)
        qt = qt + self.type_emb[0]
        nt = self.proj((nb - self.emb_mean) / self.emb_std) + self.label_emb(nb_labels) + self.type_emb[1]
        if self.rank_emb is not None:
            nt = nt + self.rank_emb.weight[:k]
        if self.dist_mlp is not None:
            nt = nt + self.dist_mlp(torch.log1p(nb_dist / self.dist_scale)[..., None])
        tokens = torch.cat([qt[:, None], nt], 1)
        mask = None
        if self.isolate_neighbors:
            mask = torch.zeros(k + 1, k + 1, dtype=torch.bool, device=tokens.device)
            mask[1:, 0] = True  # neighbour tokens do not attend to the query token
        out = self.norm(self.encoder(tokens, mask=mask))
        return self.head(out[:, 0]), self.aux_head(out[:, 1:].mean(1))


def _gather(keys_t, labels_t, ids_t, dist_t, rows):
    nb_ids = ids_t[rows]
    return keys_t[nb_ids], labels_t[nb_ids], dist_t[rows]


def train_neighbor_transformer(keys: np.ndarray, key_labels: np.ndarray, neighbors: Neighbors, *, n_classes: int,
                               variant: str = "ce", k: int | None = None, epochs: int = 10, batch_size: int = 256,
                               lr: float = 1e-3, weight_decay: float = 0.05, warmup_frac: float = 0.05,
                               query_drop: float | None = None, aux_weight: float | None = None,
                               isolate_neighbors: bool | None = None, label_smoothing: float = 0.0,
                               d_model: int = 128, n_heads: int = 4, n_layers: int = 2, dim_ff: int = 256,
                               dropout: float = 0.1, position: str = "rank", seed: int = 0, device: str = "auto",
                               val: tuple | None = None, show_progress: bool = True
                               ) -> tuple[NeighborTransformer, dict]:
    """Train a :class:`NeighborTransformer` on the memory itself with leave-one-out ``neighbors``.

    ``keys [N, D]`` / ``key_labels [N]`` are the training embeddings and labels, ``neighbors`` their
    leave-one-out neighbours (:func:`leave_one_out_neighbors`, ids into ``keys``). ``variant`` picks defaults
    from :data:`TRANSFORMER_VARIANTS`; explicit ``query_drop`` / ``aux_weight`` / ``isolate_neighbors``
    override them. ``val = (query_emb, y, neighbors)`` adds a per-epoch validation accuracy.
    AdamW with warm-up + cosine decay. Returns ``(model, metrics)``.
    """
    from memgen.train import lr_factor

    if variant not in TRANSFORMER_VARIANTS:
        raise ValueError(f"unknown variant '{variant}'; use one of {sorted(TRANSFORMER_VARIANTS)}")
    opts = {"query_drop": 0.0, "aux_weight": 0.0, "isolate_neighbors": False, **TRANSFORMER_VARIANTS[variant]}
    for name, value in (("query_drop", query_drop), ("aux_weight", aux_weight),
                        ("isolate_neighbors", isolate_neighbors)):
        if value is not None:
            opts[name] = value
    k = neighbors.k if k is None else k
    neighbors = neighbors.head(k)
    keys = np.asarray(keys, dtype=np.float32)
    key_labels = np.asarray(key_labels, dtype=np.int64)
    n = len(keys)
    if len(key_labels) != n or len(neighbors.ids) != n:
        raise ValueError(f"keys ({n}), key_labels ({len(key_labels)}) and neighbors ({len(neighbors.ids)}) must "
                         "describe the same memory: train on the memory with leave_one_out_neighbors(keys, k)")
    if np.any(neighbors.ids == np.arange(n)[:, None]):
        raise ValueError("training neighbours include the example itself; use leave_one_out_neighbors(keys, k)")

    wall0 = time.perf_counter()
    device = resolve_device(device)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    model = NeighborTransformer(keys.shape[1], n_classes, k, d_model=d_model, n_heads=n_heads, n_layers=n_layers,
                                dim_ff=dim_ff, dropout=dropout, position=position,
                                isolate_neighbors=bool(opts["isolate_neighbors"]))
    model.set_memory_stats(keys, neighbors.dist[:, 0])
    model.config.update(variant=variant, query_drop=float(opts["query_drop"]), aux_weight=float(opts["aux_weight"]))
    model.to(device)
    keys_t = torch.from_numpy(keys).to(device)
    labels_t = torch.from_numpy(key_labels).to(device)
    ids_t = torch.from_numpy(neighbors.ids).to(device)
    dist_t = torch.from_numpy(neighbors.dist).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    bs = min(batch_size, n)
    steps_per_epoch = math.ceil(n / bs)
    total = epochs * steps_per_epoch
    loss_curve, val_curve, step = [], [], 0
    bar = progress(total=total, desc=f"transformer[{variant}]", disable=not show_progress)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum, seen = 0.0, 0
        for b in range(steps_per_epoch):
            rows = perm[b * bs:(b + 1) * bs]
            for g in opt.param_groups:
                g["lr"] = lr * lr_factor("cosine", step / total, warmup_frac)
            nb, nb_y, nb_d = _gather(keys_t, labels_t, ids_t, dist_t, rows)
            qmask = None
            if opts["query_drop"] > 0:
                qmask = (torch.rand(len(rows), generator=gen) < opts["query_drop"]).to(device)
            logits, aux = model(keys_t[rows], nb, nb_y, nb_d, qmask)
            loss = F.cross_entropy(logits, labels_t[rows], label_smoothing=label_smoothing)
            if opts["aux_weight"] > 0:
                loss = loss + opts["aux_weight"] * F.cross_entropy(aux, labels_t[rows], label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(rows)
            seen += len(rows)
            step += 1
            bar.update(1)
        loss_curve.append(loss_sum / seen)
        if val is not None:
            q_val, y_val, nb_val = val
            pred = predict_neighbor_transformer(model, q_val, keys, key_labels, nb_val, device=device).argmax(1)
            val_curve.append({"epoch": epoch + 1, "accuracy": float((pred == np.asarray(y_val)).mean())})
    bar.close()
    model.eval()
    metrics = {"variant": variant, **{k_: (float(v) if not isinstance(v, bool) else v) for k_, v in opts.items()},
               "k": k, "epochs": epochs, "batch_size": bs, "lr": lr, "weight_decay": weight_decay,
               "loss_curve": loss_curve, "val_curve": val_curve,
               "val_accuracy": val_curve[-1]["accuracy"] if val_curve else None, "device": device,
               "time_s": time.perf_counter() - wall0, "seed": seed,
               "n_params": sum(p.numel() for p in model.parameters()), "model": dict(model.config)}
    return model, metrics


@torch.inference_mode()
def predict_neighbor_transformer(model: NeighborTransformer, query_emb: np.ndarray, keys: np.ndarray,
                                 key_labels: np.ndarray, neighbors: Neighbors, *, device: str = "auto",
                                 batch_size: int = 2048, mask_query: bool = False, aux: bool = False) -> np.ndarray:
    """Logits ``[N, n_classes]`` for queries with their neighbours (ids into ``keys``) in the memory.

    ``mask_query`` replaces every query embedding by the mask token (a diagnostic: how much the model gets from
    the neighbourhood alone); ``aux`` returns the auxiliary neighbour-only head instead of the main head.
    """
    device = resolve_device(device)
    model.to(device).eval()
    neighbors = neighbors.head(min(model.k, neighbors.k))
    keys_t = torch.as_tensor(np.asarray(keys, dtype=np.float32), device=device)
    labels_t = torch.as_tensor(np.asarray(key_labels, dtype=np.int64), device=device)
    q_all = torch.as_tensor(np.asarray(query_emb, dtype=np.float32))
    ids = torch.as_tensor(neighbors.ids)
    dist = torch.as_tensor(neighbors.dist)
    if len(q_all) != len(ids):
        raise ValueError(f"{len(q_all)} queries but {len(ids)} neighbour rows")
    outs = []
    for start in range(0, len(q_all), batch_size):
        sl = slice(start, start + batch_size)
        nb_ids = ids[sl].to(device)
        qmask = torch.full((len(nb_ids),), bool(mask_query), device=device)
        logits, aux_logits = model(q_all[sl].to(device), keys_t[nb_ids], labels_t[nb_ids], dist[sl].to(device),
                                   qmask if mask_query else None)
        outs.append((aux_logits if aux else logits).float().cpu())
    return torch.cat(outs).numpy() if outs else np.zeros((0, model.config["n_classes"]), np.float32)


# ------------------------------------------------------------------------------------------------- gates
def oracle_gate(pred_a: np.ndarray, pred_b: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Upper bound: per example, the prediction of whichever model is correct (``pred_a`` when neither is).

    Its accuracy is the fraction of examples that at least one of the two gets right.
    """
    pred_a, pred_b, y = np.asarray(pred_a), np.asarray(pred_b), np.asarray(y)
    return np.where(pred_a == y, pred_a, np.where(pred_b == y, pred_b, pred_a))


def _check_holdout(example_ids, backbone_train_ids, n: int, what: str) -> None:
    example_ids = np.asarray(example_ids)
    if example_ids.shape != (n,):
        raise ValueError(f"{what}: example_ids must name each of the {n} fitting examples, got {example_ids.shape}")
    overlap = np.intersect1d(example_ids, np.asarray(backbone_train_ids))
    if len(overlap):
        raise ValueError(f"{what}: {len(overlap)} fitting examples (e.g. id {overlap[0]}) are in the backbone's "
                         "training set; fit gates on the validation hold-out (split val_idx) only")


GATE_FEATURES = ("net_conf", "net_margin", "net_entropy", "knn_share", "knn_margin", "knn_share_of_net_pred",
                 "net_prob_of_knn_pred", "agree", "log_d1", "log_dmean", "d1_over_dmean")


def gate_features(net_probs: np.ndarray, knn_shares: np.ndarray, nb_dist: np.ndarray) -> np.ndarray:
    """Features ``[N, len(GATE_FEATURES)]`` for :class:`LearnedGate`: softmax confidence and margin, entropy,
    k-NN vote share and margin, cross-support of the two predictions, agreement, neighbour distances."""
    p = np.asarray(net_probs, dtype=np.float64)
    s = np.asarray(knn_shares, dtype=np.float64)
    d = np.maximum(np.asarray(nb_dist, dtype=np.float64), 0.0)
    rows = np.arange(len(p))
    ps, ss = np.sort(p, 1), np.sort(s, 1)
    net_pred, knn_pred = p.argmax(1), s.argmax(1)
    feats = [ps[:, -1], ps[:, -1] - ps[:, -2], -(p * np.log(np.clip(p, 1e-12, 1))).sum(1),
             ss[:, -1], ss[:, -1] - ss[:, -2], s[rows, net_pred], p[rows, knn_pred],
             (net_pred == knn_pred).astype(np.float64),
             np.log1p(d[:, 0]), np.log1p(d.mean(1)), d[:, 0] / np.maximum(d.mean(1), 1e-12)]
    return np.stack(feats, 1)


class LearnedGate:
    """Logistic-regression gate that picks the network's or the k-NN's prediction per example.

    Fitted on the examples where exactly one of the two is right (elsewhere the choice does not matter),
    with target "the k-NN is right"; at prediction time the k-NN answer is used when that probability exceeds
    ``threshold``. If the fitting set has fewer than ``min_per_side`` examples on either side, the gate is
    constant: it always uses whichever model was more accurate on the fitting set (``constant`` says which).
    """

    def __init__(self, C: float = 1.0, threshold: float = 0.5, min_per_side: int = 5):
        self.C, self.threshold, self.min_per_side = C, threshold, min_per_side
        self.model = None
        self.constant: str | None = None
        self.n_fit = 0

    def fit(self, net_probs, knn_shares, nb_dist, y, *, example_ids, backbone_train_ids) -> "LearnedGate":
        """Fit on held-out examples. ``example_ids`` are the dataset indices of these examples and
        ``backbone_train_ids`` those the backbone (and memory) trained on; any overlap raises ValueError."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        y = np.asarray(y)
        _check_holdout(example_ids, backbone_train_ids, len(y), "LearnedGate.fit")
        net_ok = np.asarray(net_probs).argmax(1) == y
        knn_ok = np.asarray(knn_shares).argmax(1) == y
        informative = net_ok != knn_ok
        target = knn_ok[informative].astype(int)
        self.n_fit = int(informative.sum())
        if target.sum() < self.min_per_side or (1 - target).sum() < self.min_per_side:
            self.constant = "knn" if knn_ok.mean() > net_ok.mean() else "net"
            self.model = None
            return self
        X = gate_features(net_probs, knn_shares, nb_dist)[informative]
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))
        self.model.fit(X, target)
        self.constant = None
        return self

    def knn_probability(self, net_probs, knn_shares, nb_dist) -> np.ndarray:
        """Probability, per example, that the gate should trust the k-NN."""
        if self.model is None and self.constant is None:
            raise RuntimeError("LearnedGate is not fitted; call fit() on validation examples first")
        if self.model is None:
            return np.full(len(net_probs), 1.0 if self.constant == "knn" else 0.0)
        return self.model.predict_proba(gate_features(net_probs, knn_shares, nb_dist))[:, 1]

    def predict(self, net_probs, knn_shares, nb_dist) -> np.ndarray:
        use_knn = self.knn_probability(net_probs, knn_shares, nb_dist) > self.threshold
        return np.where(use_knn, np.asarray(knn_shares).argmax(1), np.asarray(net_probs).argmax(1))


class KnnInterpolation:
    """kNN-LM-style mixture ``p = lam * p_knn + (1 - lam) * p_net`` with ``p_knn = softmax(-d / T)`` by label.

    ``lam`` (grid ``lambdas``) and ``T`` (grid: ``temperature_factors`` x the median 1-NN distance of the
    fitting set, plus ``inf`` = plain vote share) are chosen on held-out examples by accuracy, ties broken by
    lower negative log-likelihood.
    """

    def __init__(self, lambdas=None, temperature_factors=(0.1, 0.3, 1.0, 3.0, 10.0)):
        self.lambdas = np.linspace(0, 1, 21) if lambdas is None else np.asarray(lambdas, dtype=np.float64)
        self.temperature_factors = tuple(temperature_factors)
        self.lam: float | None = None
        self.temperature: float | None = None
        self.table: pd.DataFrame | None = None

    def fit(self, net_probs, neighbor_labels, nb_dist, y, *, n_classes: int, example_ids,
            backbone_train_ids) -> "KnnInterpolation":
        """Pick ``lam`` and ``T`` on held-out examples (``example_ids`` must not overlap ``backbone_train_ids``)."""
        y = np.asarray(y)
        _check_holdout(example_ids, backbone_train_ids, len(y), "KnnInterpolation.fit")
        p_net = np.asarray(net_probs, dtype=np.float64)
        d = np.asarray(nb_dist, dtype=np.float64)
        scale = max(float(np.median(d[:, 0])), 1e-12)
        rows = []
        for T in [scale * f for f in self.temperature_factors] + [np.inf]:
            p_knn = knn_softmax(neighbor_labels, d, n_classes, T)
            for lam in self.lambdas:
                p = lam * p_knn + (1 - lam) * p_net
                acc = float((p.argmax(1) == y).mean())
                nll = float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean())
                rows.append({"temperature": T, "lam": float(lam), "accuracy": acc, "nll": nll})
        self.table = pd.DataFrame(rows)
        best = self.table.sort_values(["accuracy", "nll"], ascending=[False, True]).iloc[0]
        self.lam, self.temperature = float(best["lam"]), float(best["temperature"])
        self.n_classes = n_classes
        return self

    def predict_proba(self, net_probs, neighbor_labels, nb_dist) -> np.ndarray:
        if self.lam is None:
            raise RuntimeError("KnnInterpolation is not fitted; call fit() on validation examples first")
        p_knn = knn_softmax(neighbor_labels, nb_dist, self.n_classes, self.temperature)
        return self.lam * p_knn + (1 - self.lam) * np.asarray(net_probs, dtype=np.float64)
