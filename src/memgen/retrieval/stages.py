"""The memory-augmented classifier's workflow stages (workflow/rules/retrieval.smk): what the rule scripts call.

Per memory (a dataset, a split and a backbone trained on it: :func:`memgen.splits.memory_name`):
:func:`train_backbone` -> :func:`embed_split` -> :func:`knn_stage` -> :func:`transformer_stage` / :func:`gate_stage`
-> :func:`evaluate_stage`. Every stage reads and writes files so that the rule scripts only pass paths. Gates are
fit on the split's validation hold-out only. The report's tables across splits are :mod:`memgen.retrieval.tables`,
its figures :mod:`memgen.retrieval.figures`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from memgen.data import load_cache
from memgen.retrieval.breakdown import evaluate_methods
from memgen.retrieval.gates import GATES, ORACLE_LABEL, GateInputs, oracle_gate
from memgen.retrieval.memory import Neighbors, find_neighbors, knn_classify, knn_table, leave_one_out_neighbors, softmax
from memgen.retrieval.transformer import predict_neighbor_transformer, train_neighbor_transformer
from memgen.nets import build_net
from memgen.learning_speed import LearningSpeed, LearningSpeedRecorder
from memgen.runtime import resolve_device, resolve_precision, save_npz, seed_everything, write_csv, write_json
from memgen.splits import load_split, parse_memory
from memgen.train import embed, load_checkpoint, recipe_kwargs, save_checkpoint, train_classifier

METRICS = ("l2", "cosine")
PARTS = ("train", "val", "test")


def load_split_images(cache_path, split_path):
    """``{part: (x_uint8, y, dataset_ids)}`` for train / val / test of a split, plus the split itself."""
    ds = load_cache(cache_path)
    sp = load_split(split_path)
    parts = {"train": (ds.x_train[sp.train_idx], sp.train_y, sp.train_idx),
             "val": (ds.x_train[sp.val_idx], sp.val_y, sp.val_idx),
             "test": (ds.x_test[sp.test_idx], sp.test_y, sp.test_idx)}
    return parts, sp


# -------------------------------------------------------------------------------------------------- stages
def train_backbone(cache_path, split_path, checkpoint_path, metrics_path, proxies_csv=None, proxies_npz=None, *,
                   settings: dict, device: str = "auto", seed: int = 0, precision: str = "auto", resume_path=None,
                   checkpoint_every_s: float = 300.0) -> dict:
    """Train the backbone on the split's training part; validation accuracy on its hold-out (none for a split
    without one, e.g. ``all``). ``settings`` is the memory's backbone entry (``retrieval.backbone`` or
    ``retrieval.extra_backbones``) with this split's epochs (the workflow's ``backbone_settings``). With
    ``proxies_csv`` / ``proxies_npz``, also the learning-speed proxy of every training example, recorded during
    this training (:mod:`memgen.learning_speed`).
    ``resume_path``: where training saves its state every ``checkpoint_every_s`` s and resumes from."""
    parts, sp = load_split_images(cache_path, split_path)
    x, y, ids = parts["train"]
    x_val, y_val = parts["val"][:2] if len(parts["val"][0]) else (None, None)
    recorder = LearningSpeedRecorder(len(y)) if proxies_csv else None
    seed_everything(seed)
    net_kwargs = {"num_classes": sp.n_classes, "in_channels": x.shape[-1]}
    if settings["arch"] in ("mnist_cnn", "lenet"):
        net_kwargs["image_size"] = x.shape[1]
    model = build_net(settings["arch"], **net_kwargs)
    metrics = train_classifier(model, x, y, **recipe_kwargs(settings), device=device, seed=seed,
                               x_val=x_val, y_val=y_val, record=recorder, precision=precision, resume_path=resume_path,
                               checkpoint_every_s=checkpoint_every_s)
    metrics["arch"], metrics["epochs"] = settings["arch"], int(settings["epochs"])
    if recorder is not None:
        LearningSpeed.from_recorder(recorder).write(proxies_csv, proxies_npz, index=ids, label=y)
    save_checkpoint(checkpoint_path, model, metrics)
    write_json(metrics_path, metrics)
    return metrics


def embed_split(cache_path, split_path, checkpoint_path, out_path, *, device: str = "auto",
                precision: str = "auto", flip_average: bool = False, translate_average: bool = False) -> None:
    """Embeddings and logits (one pass) of train / val / test, with labels and dataset ids (``{part}_emb`` ...),
    the ``precision`` they were computed in and the test-time views they average (``flip_average``,
    ``translate_average``, see :func:`memgen.train.embed`)."""
    parts, sp = load_split_images(cache_path, split_path)
    model, _ = load_checkpoint(checkpoint_path, device=resolve_device(device))
    precision = resolve_precision(precision, resolve_device(device))
    arrays = {"n_classes": np.int64(sp.n_classes), "test_group": sp.test_group,
              "class_names": np.asarray(sp.class_names), "precision": np.asarray(precision),
              "flip_average": np.asarray(bool(flip_average)), "translate_average": np.asarray(bool(translate_average))}
    for part, (x, y, ids) in parts.items():
        arrays[f"{part}_emb"], arrays[f"{part}_logits"] = embed(model, x, device=device, precision=precision,
                                                                flip_average=flip_average,
                                                                translate_average=translate_average)
        arrays[f"{part}_y"], arrays[f"{part}_ids"] = np.asarray(y, dtype=np.int64), np.asarray(ids, dtype=np.int64)
    save_npz(out_path, **arrays)


def load_npz(path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def neighbors_of(nb: dict, metric: str, part: str) -> Neighbors:
    return Neighbors(nb[f"{metric}_{part}_ids"], nb[f"{metric}_{part}_dist"], metric)


def knn_stage(emb_path, out_npz, out_csv, *, ks, device: str = "auto") -> pd.DataFrame:
    """Exact neighbours (ids + distances, both metrics) of train (leave-one-out), val and test among the
    training embeddings; accuracy of majority / distance-weighted votes for every k on val and test."""
    e = load_npz(emb_path)
    kmax = max(ks)
    keys, n_classes = e["train_emb"], int(e["n_classes"])
    if len(keys) <= kmax:
        raise ValueError(f"k up to {kmax} needs more than {kmax} training examples, the memory has {len(keys)}; "
                         "shorten retrieval.k")
    arrays, rows = {}, []
    for metric in METRICS:
        for part in PARTS:
            nb = (leave_one_out_neighbors(keys, kmax, metric=metric, device=device) if part == "train" else
                  find_neighbors(e[f"{part}_emb"], keys, kmax, metric=metric, device=device))
            arrays[f"{metric}_{part}_ids"], arrays[f"{metric}_{part}_dist"] = nb.ids, nb.dist
    for part in ("val", "test"):
        tab = knn_table({m: neighbors_of(arrays, m, part) for m in METRICS}, e["train_y"], e[f"{part}_y"],
                        n_classes, ks=ks)
        rows.append(tab.assign(part=part))
    save_npz(out_npz, **arrays)
    table = pd.concat(rows, ignore_index=True)
    write_csv(out_csv, table)
    return table


def transformer_stage(emb_path, nb_path, out_npz, out_json, *, variant: str, settings: dict, device: str = "auto",
                      seed: int = 0) -> dict:
    """Train the neighbour Transformer (one variant) on the memory with leave-one-out l2 neighbours; logits
    for val and test."""
    e, nb = load_npz(emb_path), load_npz(nb_path)
    k = int(settings["k"])
    train_nb = neighbors_of(nb, "l2", "train")
    if k > train_nb.k:
        raise ValueError(f"retrieval.transformer.k={k} exceeds the largest retrieval.k ({train_nb.k})")
    model, metrics = train_neighbor_transformer(
        e["train_emb"], e["train_y"], train_nb, n_classes=int(e["n_classes"]), variant=variant, k=k,
        epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
        d_model=settings["d_model"], n_layers=settings["layers"], n_heads=settings["heads"],
        dim_ff=2 * settings["d_model"], seed=seed, device=device,
        val=(e["val_emb"], e["val_y"], neighbors_of(nb, "l2", "val")), show_progress=True)
    out = {}
    for part in ("val", "test"):
        out[f"{part}_logits"] = predict_neighbor_transformer(model, e[f"{part}_emb"], e["train_emb"], e["train_y"],
                                                             neighbors_of(nb, "l2", part), device=device)
        out[f"{part}_accuracy"] = float((out[f"{part}_logits"].argmax(1) == e[f"{part}_y"]).mean())
    save_npz(out_npz, val_logits=out["val_logits"], test_logits=out["test_logits"])
    metrics = {**{k_: v for k_, v in metrics.items() if np.isscalar(v) or isinstance(v, (list, dict))},
               "variant": variant, "val_accuracy": out["val_accuracy"], "test_accuracy": out["test_accuracy"]}
    write_json(out_json, metrics)
    return metrics


def gate_stage(emb_path, nb_path, split_path, out_npz, out_json, *, gate_ks) -> dict:
    """Per k of ``gate_ks``, the pair (network, k-NN): its oracle gate (the pair's upper bound) and every fitted
    gate of :data:`GATES` between the same two (fit on validation only), on the test examples: predictions
    (``out_npz``, ``{key}_k{k}``) and fitted settings and accuracies (``out_json``, under ``k{k}``).  The
    oracle and the gates use the one k-NN answer of :func:`knn_classify`. ``out_json`` also names the gates it
    fit (``gates``: key -> ``label`` and the names of its ``settings``, the keys of its ``summary()``), so the
    report's gate table (:func:`memgen.retrieval.tables.gates_table`) needs no list of its own."""
    e, nb, sp = load_npz(emb_path), load_npz(nb_path), load_split(split_path)
    if len(e["val_y"]) == 0:
        raise ValueError(f"split {split_path} has no validation hold-out; the gates are fit on one "
                         "(config splits.validation_size > 0, and not the split 'all')")
    n_classes = int(e["n_classes"])
    arrays, info = {}, {"gate_ks": [int(k) for k in gate_ks], "n_val": int(len(e["val_y"])), "gates": {}}
    for k in gate_ks:
        inputs = {}
        for p in ("val", "test"):
            nbs = neighbors_of(nb, "l2", p).head(k)
            inputs[p] = GateInputs.from_neighbors(softmax(e[f"{p}_logits"]), e["train_y"][nbs.ids], nbs.dist,
                                                  n_classes)
        test = inputs["test"]
        predictions = {"knn": test.knn_pred, "oracle": oracle_gate(test.net_probs.argmax(1), test.knn_pred,
                                                                   e["test_y"])}
        pair = {}
        for key, gate_class in GATES.items():
            gate = gate_class().fit(inputs["val"], e["val_y"], example_ids=sp.val_idx, backbone_train_ids=sp.train_idx)
            predictions[key] = gate.predict(test)
            arrays.update({f"{key}_{name}_k{k}": a for name, a in gate.arrays(test).items()})
            settings = gate.summary()
            pair.update({f"{key}_{name}": v for name, v in settings.items()})
            info["gates"][key] = {"label": gate_class.label, "settings": list(settings)}
        for key, pred in predictions.items():
            arrays[f"{key}_k{k}"] = pred
            pair[f"{key}_accuracy"] = float((pred == e["test_y"]).mean())
        info[f"k{k}"] = pair
    save_npz(out_npz, **arrays)
    write_json(out_json, info)
    return info


def method_name(kind: str, *, k: int | None = None, metric: str = "l2", weighting: str = "majority",
                variant: str | None = None) -> str:
    """Display names of the network, k-NN and Transformer methods, as in the document's Table 1 where it has them
    (a gate's name is its ``label``)."""
    if kind == "net":
        return "network"
    if kind == "knn":
        extra = [s for s, on in (("distance-weighted", weighting == "distance"), ("cosine", metric == "cosine")) if on]
        return f"{k}-NN" + (f" ({', '.join(extra)})" if extra else "")
    if kind == "transformer":
        return f"{k}-NN Transformer" + ("" if variant == "ce" else f" ({variant})")
    raise ValueError(f"unknown method kind '{kind}'; gates are named by their own label")


def evaluate_stage(emb_path, nb_path, gate_npz, transformer_npzs: dict, split_path, out_predictions,
                   out_summary, out_per_class, out_per_group, *, ks, transformer_k: int, gate_ks,
                   dataset: str, memory: str) -> pd.DataFrame:
    """Test predictions of every method; summary (overall, many/medium/few, worst class / group), per class
    and per group tables, each with ``dataset``, ``split``, ``memory`` (:func:`memgen.splits.memory_name`) and
    ``method`` columns."""
    e, nb, g, sp = load_npz(emb_path), load_npz(nb_path), load_npz(gate_npz), load_split(split_path)
    n_classes, y = int(e["n_classes"]), e["test_y"]
    preds = {method_name("net"): e["test_logits"].argmax(1)}
    for metric in METRICS:
        labels = e["train_y"][nb[f"{metric}_test_ids"]]
        for weighting in ("majority", "distance"):
            for k in ks:
                if metric == "cosine" and weighting == "distance":
                    continue
                preds[method_name("knn", k=k, metric=metric, weighting=weighting)] = knn_classify(
                    labels, n_classes, k=k, dist=nb[f"{metric}_test_dist"], weighting=weighting)[0]
    for variant, path in transformer_npzs.items():
        preds[method_name("transformer", k=transformer_k, variant=variant)] = load_npz(path)["test_logits"].argmax(1)
    for k in gate_ks:
        preds[ORACLE_LABEL.format(k=k)] = g[f"oracle_k{k}"]
        for key, gate_class in GATES.items():
            preds[gate_class.label.format(k=k)] = g[f"{key}_k{k}"]
    counts = np.bincount(e["train_y"], minlength=n_classes)
    summary, per_class, per_group = evaluate_methods(preds, y, n_classes=n_classes, train_counts=counts,
                                                     groups=e["test_group"], class_names=sp.class_names)
    tag = {"dataset": dataset, "split": parse_memory(memory)[0], "memory": memory}
    summary = summary.assign(**tag)
    summary["arch"] = load_checkpoint_arch(emb_path)
    write_csv(out_summary, summary)
    write_csv(out_per_class, per_class.assign(**tag))
    write_csv(out_per_group, per_group.assign(**tag))
    save_npz(out_predictions, y=y, test_ids=e["test_ids"], train_ids=e["train_ids"], train_y=e["train_y"],
             l2_test_ids=nb["l2_test_ids"][:, :min(5, nb["l2_test_ids"].shape[1])],
             methods=np.asarray(list(preds)), preds=np.stack(list(preds.values())))
    return summary


def load_checkpoint_arch(emb_path) -> str:
    """The backbone's architecture name, read from the metrics json next to the embeddings."""
    path = Path(emb_path).with_name("backbone.json")
    return json.loads(path.read_text()).get("arch", "network") if path.exists() else "network"
