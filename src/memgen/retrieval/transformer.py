"""The neighbour Transformer: reads a query embedding with its k retrieved neighbours (embedding, label, rank
and distance) and classifies from the query token. Variants (:data:`TRANSFORMER_VARIANTS`): ``ce`` (plain cross
entropy), ``query_drop`` (the query embedding is replaced by a learned mask token with probability ``query_drop``
during training, so the model must read the neighbourhood), ``aux`` (neighbour tokens cannot attend to the query,
and an auxiliary head on the pooled neighbour tokens is trained jointly). Trained with leave-one-out neighbours.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from memgen.retrieval.memory import Neighbors
from memgen.runtime import progress, resolve_device, seed_everything


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
               # fp32 whatever the config's precision: bf16 autocast was slower for this small model
               # (d_model 128, k + 1 tokens) in most short CPU runs (tests/benchmarks/bench_precision.py)
               "precision": "fp32",
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
