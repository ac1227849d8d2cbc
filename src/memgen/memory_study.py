"""The memory-augmented classifier as workflow stages (workflow/rules/memory.smk) and its report tables.

Stages, per (dataset, split): :func:`train_backbone` -> :func:`embed_split` -> :func:`knn_stage` ->
:func:`transformer_stage` / :func:`gate_stage` -> :func:`evaluate_stage`; then :func:`table1`,
:func:`longtail_table` and the figures of the report section. Every stage reads and writes files so that the
rule scripts only pass paths; logic stays here. Gates are fit on the split's validation hold-out only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from memgen.data import load_cache
from memgen.evaluation import evaluate_methods
from memgen.memory import (KnnInterpolation, LearnedGate, Neighbors, find_neighbors, knn_classify, knn_table,
                           leave_one_out_neighbors, oracle_gate, predict_neighbor_transformer, softmax,
                           train_neighbor_transformer)
from memgen.nets import build_net
from memgen.runtime import atomic_path, resolve_device, save_npz, seed_everything
from memgen.splits import load_split
from memgen.train import embed, load_checkpoint, predict_logits, recipe_kwargs, save_checkpoint, train_classifier

METRICS = ("l2", "cosine")
PARTS = ("train", "val", "test")

# Table 1 of the source document (CIFAR-10 test accuracy, %), in its order.
PUBLISHED_TABLE1 = {"ResNet-20": 91.83, "1-NN": 91.00, "10-NN": 91.55, "20-NN": 91.73, "30-NN": 91.65,
                    "10-NN Transformer": 91.38, "Oracle gate 1-NN/ResNet-20": 93.00}
# Published CIFAR-10-LT baselines (ResNet-32, cross entropy; Cao et al. 2019, LDAM paper), test accuracy %,
# by imbalance factor -- for orientation only, the backbone and budget here differ.
PUBLISHED_LT_BASELINE = {"lt100": 70.4, "lt50": 74.8, "lt10": 86.4}


# ------------------------------------------------------------------------------------------------ helpers
def _write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, default=float))


def _write_csv(path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def load_split_images(cache_path, split_path):
    """``{part: (x_uint8, y, dataset_ids)}`` for train / val / test of a split, plus the split itself."""
    ds = load_cache(cache_path)
    sp = load_split(split_path)
    parts = {"train": (ds.x_train[sp.train_idx], sp.train_y, sp.train_idx),
             "val": (ds.x_train[sp.val_idx], sp.val_y, sp.val_idx),
             "test": (ds.x_test[sp.test_idx], sp.test_y, sp.test_idx)}
    return parts, sp


def backbone_epochs(settings: dict, split: str) -> int:
    """Epochs for a split: ``split_epochs[split]`` when given, else ``epochs``."""
    return int((settings.get("split_epochs") or {}).get(split, settings["epochs"]))


# -------------------------------------------------------------------------------------------------- stages
def train_backbone(cache_path, split_path, checkpoint_path, metrics_path, *, settings: dict, split: str,
                   device: str = "auto", seed: int = 0) -> dict:
    """Train the configured backbone on the split's training part; validation accuracy on its hold-out."""
    parts, sp = load_split_images(cache_path, split_path)
    x, y, _ = parts["train"]
    if len(parts["val"][0]) == 0:
        raise ValueError(f"split '{split}' has no validation hold-out; the gates need one "
                         "(config splits.validation_size > 0)")
    seed_everything(seed)
    net_kwargs = {"num_classes": sp.n_classes, "in_channels": x.shape[-1]}
    if settings["arch"] in ("mnist_cnn", "lenet"):
        net_kwargs["image_size"] = x.shape[1]
    model = build_net(settings["arch"], **net_kwargs)
    metrics = train_classifier(model, x, y, **recipe_kwargs(settings, backbone_epochs(settings, split)),
                               device=device, seed=seed, x_val=parts["val"][0], y_val=parts["val"][1])
    metrics["arch"], metrics["epochs"] = settings["arch"], backbone_epochs(settings, split)
    save_checkpoint(checkpoint_path, model, metrics)
    _write_json(metrics_path, metrics)
    return metrics


def embed_split(cache_path, split_path, checkpoint_path, out_path, *, device: str = "auto") -> None:
    """Embeddings and logits of train / val / test, with labels and dataset ids (``{part}_emb`` ...)."""
    parts, sp = load_split_images(cache_path, split_path)
    model, _ = load_checkpoint(checkpoint_path, device=resolve_device(device))
    arrays = {"n_classes": np.int64(sp.n_classes), "test_group": sp.test_group,
              "class_names": np.asarray(sp.class_names)}
    for part, (x, y, ids) in parts.items():
        arrays[f"{part}_emb"] = embed(model, x, device=device).astype(np.float32)
        arrays[f"{part}_logits"] = predict_logits(model, x, device=device).astype(np.float32)
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
                         "shorten memory.k")
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
    _write_csv(out_csv, table)
    return table


def transformer_stage(emb_path, nb_path, out_npz, out_json, *, variant: str, settings: dict, device: str = "auto",
                      seed: int = 0) -> dict:
    """Train the neighbour Transformer (one variant) on the memory with leave-one-out l2 neighbours; logits
    for val and test."""
    e, nb = load_npz(emb_path), load_npz(nb_path)
    k = int(settings["k"])
    train_nb = neighbors_of(nb, "l2", "train")
    if k > train_nb.k:
        raise ValueError(f"memory.transformer.k={k} exceeds the largest memory.k ({train_nb.k})")
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
    _write_json(out_json, metrics)
    return metrics


def gate_stage(emb_path, nb_path, split_path, out_npz, out_json, *, gate_k: int) -> dict:
    """Oracle gate (network vs 1-NN), learned gate and kNN-LM interpolation, fit on validation only."""
    e, nb, sp = load_npz(emb_path), load_npz(nb_path), load_split(split_path)
    n_classes = int(e["n_classes"])
    probs = {p: softmax(e[f"{p}_logits"]) for p in ("val", "test")}
    nbs = {p: neighbors_of(nb, "l2", p).head(gate_k) for p in ("val", "test")}
    labels = {p: e["train_y"][nbs[p].ids] for p in ("val", "test")}
    shares = {p: knn_classify(labels[p], n_classes, k=gate_k)[1] for p in ("val", "test")}
    one_nn = e["train_y"][nb["l2_test_ids"][:, 0]]
    net_pred = probs["test"].argmax(1)
    oracle = oracle_gate(net_pred, one_nn, e["test_y"])
    gate = LearnedGate().fit(probs["val"], shares["val"], nbs["val"].dist, e["val_y"],
                             example_ids=sp.val_idx, backbone_train_ids=sp.train_idx)
    learned = gate.predict(probs["test"], shares["test"], nbs["test"].dist)
    interp = KnnInterpolation().fit(probs["val"], labels["val"], nbs["val"].dist, e["val_y"], n_classes=n_classes,
                                    example_ids=sp.val_idx, backbone_train_ids=sp.train_idx)
    knnlm = interp.predict_proba(probs["test"], labels["test"], nbs["test"].dist).argmax(1)
    save_npz(out_npz, oracle=oracle, learned_gate=learned, knn_lm=knnlm,
             learned_gate_use_knn=gate.knn_probability(probs["test"], shares["test"], nbs["test"].dist))
    info = {"gate_k": gate_k, "learned_gate_constant": gate.constant, "learned_gate_n_fit": gate.n_fit,
            "knn_lm_lambda": interp.lam, "knn_lm_temperature": interp.temperature,
            "n_val": int(len(e["val_y"])), "oracle_accuracy": float((oracle == e["test_y"]).mean()),
            "learned_gate_accuracy": float((learned == e["test_y"]).mean()),
            "knn_lm_accuracy": float((knnlm == e["test_y"]).mean())}
    _write_json(out_json, info)
    return info


def method_name(kind: str, *, k: int | None = None, metric: str = "l2", weighting: str = "majority",
                variant: str | None = None) -> str:
    """Display names of the methods, as in the document's Table 1 where it has them."""
    if kind == "net":
        return "network"
    if kind == "knn":
        extra = [s for s, on in (("distance-weighted", weighting == "distance"), ("cosine", metric == "cosine")) if on]
        return f"{k}-NN" + (f" ({', '.join(extra)})" if extra else "")
    if kind == "transformer":
        return f"{k}-NN Transformer" + ("" if variant == "ce" else f" ({variant})")
    return {"oracle": "Oracle gate 1-NN/network", "learned_gate": "Learned gate network/k-NN",
            "knn_lm": "kNN-LM interpolation"}[kind]


def evaluate_stage(emb_path, nb_path, gate_npz, transformer_npzs: dict, split_path, out_predictions,
                   out_summary, out_per_class, out_per_group, *, ks, transformer_k: int, gate_k: int,
                   dataset: str, split: str) -> pd.DataFrame:
    """Test predictions of every method; summary (overall, many/medium/few, worst class / group), per class
    and per group tables, each with ``dataset``, ``split`` and ``method`` columns."""
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
    for kind in ("oracle", "learned_gate", "knn_lm"):
        preds[method_name(kind)] = g[kind]
    counts = np.bincount(e["train_y"], minlength=n_classes)
    summary, per_class, per_group = evaluate_methods(preds, y, n_classes=n_classes, train_counts=counts,
                                                     groups=e["test_group"], class_names=sp.class_names)
    tag = {"dataset": dataset, "split": split}
    summary = summary.assign(**tag)
    summary["arch"] = load_checkpoint_arch(emb_path)
    _write_csv(out_summary, summary)
    _write_csv(out_per_class, per_class.assign(**tag))
    _write_csv(out_per_group, per_group.assign(**tag))
    save_npz(out_predictions, y=y, test_ids=e["test_ids"], train_ids=e["train_ids"], train_y=e["train_y"],
             l2_test_ids=nb["l2_test_ids"][:, :min(5, nb["l2_test_ids"].shape[1])],
             methods=np.asarray(list(preds)), preds=np.stack(list(preds.values())))
    return summary


def load_checkpoint_arch(emb_path) -> str:
    """The backbone's architecture name, read from the metrics json next to the embeddings."""
    path = Path(emb_path).with_name("backbone.json")
    return json.loads(path.read_text()).get("arch", "network") if path.exists() else "network"


# ---------------------------------------------------------------------------------------------------- tables
ARCH_LABELS = {"resnet20": "ResNet-20", "resnet32": "ResNet-32", "resnet56": "ResNet-56", "mnist_cnn": "MNIST CNN",
               "lenet": "LeNet"}


def _display(method: str, arch: str) -> str:
    label = ARCH_LABELS.get(arch, arch)
    return "ResNet-20" if method == "network" and label == "ResNet-20" else method.replace("network", label)


def table1(summary: pd.DataFrame | None, published: dict | None = None) -> pd.DataFrame:
    """Table 1: ``model, published, measured`` (test accuracy %), the document's rows first (published
    numbers beside this run's), then the variants beyond the document with an empty ``published``.

    ``summary`` is one split's summary table (``method``, ``accuracy`` in [0, 1], ``arch``); None gives the
    published column with empty ``measured`` (the split was not configured)."""
    published = PUBLISHED_TABLE1 if published is None else published
    measured = {}
    if summary is not None and len(summary):
        arch = str(summary["arch"].iloc[0]) if "arch" in summary else "network"
        for method, acc in zip(summary["method"], summary["accuracy"]):
            measured[_display(method, arch)] = round(100 * float(acc), 2)
    rows = [{"model": m, "published": p, "measured": measured.pop(m, np.nan)} for m, p in published.items()]
    rows += [{"model": m, "published": np.nan, "measured": v} for m, v in measured.items()]
    return pd.DataFrame(rows, columns=["model", "published", "measured"])


LONGTAIL_COLUMNS = ["split", "method", "accuracy", "many_accuracy", "medium_accuracy", "few_accuracy",
                    "worst_class_accuracy", "worst_group_accuracy", "published_baseline", "note"]


def longtail_table(summaries: list[pd.DataFrame], published=None) -> pd.DataFrame:
    """Long-tail / rare-subpopulation table (accuracies in %): one row per split and method, plus a row per
    LT split with the published CIFAR-10-LT ResNet-32 CE baseline for orientation."""
    published = PUBLISHED_LT_BASELINE if published is None else published
    rows = []
    for s in summaries:
        for _, r in s.iterrows():
            row = {"split": r["split"], "method": _display(r["method"], str(r.get("arch", "network"))),
                   "published_baseline": np.nan, "note": ""}
            for col in LONGTAIL_COLUMNS[2:8]:
                row[col] = round(100 * float(r[col]), 2) if col in r and pd.notna(r[col]) else np.nan
            rows.append(row)
        split = str(s["split"].iloc[0]) if len(s) else None
        if split in published:
            rows.append({"split": split, "method": "ResNet-32 CE (published, CIFAR-10-LT)",
                         "published_baseline": published[split], "note": "Cao et al. 2019; orientation only"})
    return pd.DataFrame(rows, columns=LONGTAIL_COLUMNS)


def accuracy_vs_k(knn_tables: dict, summaries: dict) -> pd.DataFrame:
    """Test accuracy (%) of every k-NN variant by k, with the network's accuracy, per (dataset, split)."""
    rows = []
    for (dataset, split), tab in knn_tables.items():
        net = summaries[(dataset, split)]
        net_acc = float(net.loc[net.method == "network", "accuracy"].iloc[0])
        for _, r in tab[tab.part == "test"].iterrows():
            rows.append({"dataset": dataset, "split": split, "metric": r["metric"], "weighting": r["weighting"],
                         "k": int(r["k"]), "accuracy": round(100 * r["accuracy"], 2),
                         "network_accuracy": round(100 * net_acc, 2)})
    return pd.DataFrame(rows)


def reproduction_notes(table: pd.DataFrame, tolerance: float = 1.0) -> list[str]:
    """Sentences comparing measured with published rows of a Table 1 (``model, published, measured``)."""
    notes = []
    rows = table.dropna(subset=["published"])
    if rows["measured"].isna().all():
        return ["This run did not measure the document's Table 1 (its split is not configured)."]
    for _, r in rows.iterrows():
        if pd.isna(r["measured"]):
            notes.append(f"{r['model']}: not measured in this run.")
            continue
        gap = r["measured"] - r["published"]
        verdict = "reproduced" if abs(gap) <= tolerance else ("above" if gap > 0 else "not reproduced")
        notes.append(f"{r['model']}: {r['measured']:.2f}% vs {r['published']:.2f}% published "
                     f"({gap:+.2f} points, {verdict} within {tolerance:g} point).")
    pub, mea = rows.set_index("model")["published"], rows.set_index("model")["measured"]
    for a, b in (("ResNet-20", "1-NN"), ("Oracle gate 1-NN/ResNet-20", "ResNet-20")):
        if a in mea and b in mea and pd.notna(mea[a]) and pd.notna(mea[b]):
            same = (pub[a] > pub[b]) == (mea[a] > mea[b])
            notes.append(f"Ordering {a} {'>' if pub[a] > pub[b] else '<'} {b} of the document "
                         f"{'holds' if same else 'does not hold'} in this run.")
    return notes


# --------------------------------------------------------------------------------------------------- figures
def _save(fig, path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_accuracy_vs_k(table: pd.DataFrame, path) -> None:
    """One panel per (dataset, split): k-NN test accuracy by k for each metric / weighting, network dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(zip(table.dataset, table.split)))
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.2 * max(len(keys), 1), 3), squeeze=False)
    for ax, (dataset, split) in zip(axes[0], keys):
        t = table[(table.dataset == dataset) & (table.split == split)]
        for (metric, weighting), g in t.groupby(["metric", "weighting"]):
            ax.plot(g.k, g.accuracy, marker="o", label=f"{metric}, {weighting}")
        ax.axhline(t.network_accuracy.iloc[0], color="k", ls="--", label="network")
        ax.set(title=f"{dataset} {split}", xlabel="k", ylabel="test accuracy (%)")
    axes[0][0].legend(fontsize=7)
    _save(fig, path)


def plot_per_class(per_class: pd.DataFrame, methods: list[str], path) -> None:
    """Per-class test accuracy of the given methods on each long-tail split (classes by training count)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(dict.fromkeys(per_class.split)) or ["(none)"]
    fig, axes = plt.subplots(1, len(splits), figsize=(4 * len(splits), 3), squeeze=False)
    for ax, split in zip(axes[0], splits):
        t = per_class[per_class.split == split]
        for i, m in enumerate(methods):
            g = t[t.method == m].sort_values("class")
            if len(g):
                ax.bar(g["class"] + (i - (len(methods) - 1) / 2) * 0.8 / len(methods), 100 * g.accuracy,
                       width=0.8 / len(methods), label=m)
        ax.set(title=split, xlabel="class (training count falls left to right)", ylabel="test accuracy (%)")
    axes[0][0].legend(fontsize=7)
    _save(fig, path)


def _spread(rows: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` of ``rows``, one per true class first (in order of appearance), then the rest."""
    _, first = np.unique(y[rows], return_index=True)
    picked = list(rows[np.sort(first)][:n])
    picked += [r for r in rows if r not in picked][:n - len(picked)]
    return np.asarray(picked, dtype=np.int64)


def plot_fixes(cache_path, predictions_path, path, *, n_examples: int = 4, n_neighbors: int = 3) -> None:
    """Test images the 1-NN memory gets right and the network wrong (top), and the reverse (bottom), each with
    its nearest stored training images and their labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds, p = load_cache(cache_path), load_npz(predictions_path)
    methods = list(p["methods"])
    net, one = p["preds"][methods.index("network")], p["preds"][methods.index("1-NN")]
    y, names = p["y"], list(ds.classes)
    cases = [("memory fixes the network", _spread(np.flatnonzero((one == y) & (net != y)), y, n_examples)),
             ("the network fixes memory", _spread(np.flatnonzero((net == y) & (one != y)), y, n_examples))]
    n_rows = sum(max(len(rows), 1) for _, rows in cases)
    fig, axes = plt.subplots(n_rows, 1 + n_neighbors, figsize=(1.6 * (1 + n_neighbors), 1.7 * n_rows), squeeze=False)
    r = 0
    cmap = "gray" if ds.x_test.shape[-1] == 1 else None
    for title, rows in cases:
        if len(rows) == 0:
            axes[r][0].set_title(f"{title}: none", fontsize=7)
            for ax in axes[r]:
                ax.axis("off")
            r += 1
        for i in rows:
            ax = axes[r][0]
            ax.imshow(ds.x_test[p["test_ids"][i]].squeeze(), cmap=cmap)
            ax.set_title(f"{title}\ntrue {names[y[i]] if y[i] < len(names) else y[i]}: net {net[i]}, 1-NN {one[i]}",
                         fontsize=6)
            for j in range(n_neighbors):
                nb = p["l2_test_ids"][i, j]
                axes[r][1 + j].imshow(ds.x_train[p["train_ids"][nb]].squeeze(), cmap=cmap)
                axes[r][1 + j].set_title(f"neighbour {j + 1}: {p['train_y'][nb]}", fontsize=6)
            for a in axes[r]:
                a.axis("off")
            r += 1
    _save(fig, path)


# ------------------------------------------------------------------------------------------- table/figure jobs
def write_tables(pairs, summary_paths, knn_paths, outputs: dict) -> None:
    """The tables of the report section from every (dataset, split)'s summary and k-NN table."""
    summaries = {pair: pd.read_csv(p) for pair, p in zip(pairs, summary_paths)}
    knns = {pair: pd.read_csv(p) for pair, p in zip(pairs, knn_paths)}
    _write_csv(outputs["table1"], table1(summaries.get(("cifar10", "full"))))
    _write_csv(outputs["mnist"], table1(summaries.get(("mnist", "full")), published={}))
    tail = [s for (d, split), s in summaries.items() if d == "cifar10" and split != "full"]
    if ("cifar10", "full") in summaries:
        tail = [summaries[("cifar10", "full")]] + tail
    _write_csv(outputs["longtail"], longtail_table(tail))
    _write_csv(outputs["accuracy_vs_k"], accuracy_vs_k(knns, summaries))


def write_figures(accuracy_vs_k_path, per_class_paths, fixes_cache, fixes_predictions, outputs: dict, *,
                  methods) -> None:
    plot_accuracy_vs_k(pd.read_csv(accuracy_vs_k_path), outputs["fig_accuracy_vs_k"])
    per_class = pd.concat([pd.read_csv(p) for p in per_class_paths], ignore_index=True)
    lt = per_class[per_class.split.astype(str).str.fullmatch(r"lt\d+")]
    plot_per_class(lt, methods, outputs["fig_per_class"])
    plot_fixes(fixes_cache, fixes_predictions, outputs["fig_fixes"])
