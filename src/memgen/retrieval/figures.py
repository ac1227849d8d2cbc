"""The memory-augmented classifier's report figures: accuracy against k, per-class accuracy on the long tail, and
test images the memory fixes (with their nearest training neighbours).
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from memgen.data import load_cache
from memgen.plots import integer_ticks, legend_outside
from memgen.plots import save_figure as _save
from memgen.retrieval.stages import load_npz


def plot_accuracy_vs_k(table: pd.DataFrame, path) -> None:
    """One panel per (dataset, split): k-NN test accuracy by k for each metric / weighting, network dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(zip(table.dataset, table.split)))
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.2 * max(len(keys), 1) + 1.5, 3), squeeze=False,
                             layout="constrained")
    for ax, (dataset, split) in zip(axes[0], keys):
        t = table[(table.dataset == dataset) & (table.split == split)]
        for (metric, weighting), g in t.groupby(["metric", "weighting"]):
            ax.plot(g.k, g.accuracy, marker="o", label=f"{metric}, {weighting}")
        ax.axhline(t.network_accuracy.iloc[0], color="k", ls="--", label="network")
        ax.set(title=f"{dataset} {split}", xlabel="k", ylabel="test accuracy (%)")
        integer_ticks(ax, t.k)
    legend_outside(axes[0][-1])
    _save(fig, path)


def plot_per_class(per_class: pd.DataFrame, methods: list[str], path) -> None:
    """Per-class test accuracy of the given methods on each long-tail split (classes by training count)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(dict.fromkeys(per_class.split)) or ["(none)"]
    fig, axes = plt.subplots(1, len(splits), figsize=(4 * len(splits) + 2, 3), squeeze=False, layout="constrained")
    for ax, split in zip(axes[0], splits):
        t = per_class[per_class.split == split]
        for i, m in enumerate(methods):
            g = t[t.method == m].sort_values("class")
            if len(g):
                ax.bar(g["class"] + (i - (len(methods) - 1) / 2) * 0.8 / len(methods), 100 * g.accuracy,
                       width=0.8 / len(methods), label=m)
        ax.set(title=split, xlabel="class (training count falls left to right)", ylabel="test accuracy (%)")
        if len(t):
            integer_ticks(ax, t["class"])
    legend_outside(axes[0][-1])
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
    fig, axes = plt.subplots(n_rows, 1 + n_neighbors, figsize=(2.0 * (1 + n_neighbors), 2.2 * n_rows), squeeze=False,
                             layout="constrained")

    def name(label):
        return names[label] if label < len(names) else str(label)

    r = 0
    cmap = "gray" if ds.x_test.shape[-1] == 1 else None
    for title, rows in cases:
        if len(rows) == 0:
            axes[r][0].set_title(f"{title}: none", fontsize=9)
            for ax in axes[r]:
                ax.axis("off")
            r += 1
        for i in rows:
            ax = axes[r][0]
            ax.imshow(ds.x_test[p["test_ids"][i]].squeeze(), cmap=cmap)
            ax.set_title(f"{title}\ntrue {name(y[i])}\nnet: {name(net[i])}, 1-NN: {name(one[i])}", fontsize=8)
            for j in range(n_neighbors):
                nb = p["l2_test_ids"][i, j]
                axes[r][1 + j].imshow(ds.x_train[p["train_ids"][nb]].squeeze(), cmap=cmap)
                axes[r][1 + j].set_title(f"neighbour {j + 1}: {name(p['train_y'][nb])}", fontsize=8)
            for a in axes[r]:
                a.axis("off")
            r += 1
    _save(fig, path)


def write_figures(accuracy_vs_k_path, per_class_paths, fixes_cache, fixes_predictions, outputs: dict, *,
                  methods) -> None:
    plot_accuracy_vs_k(pd.read_csv(accuracy_vs_k_path), outputs["fig_accuracy_vs_k"])
    per_class = pd.concat([pd.read_csv(p) for p in per_class_paths], ignore_index=True)
    lt = per_class[per_class.memory.astype(str).str.fullmatch(r"lt\d+")]   # the dataset's own backbone only
    plot_per_class(lt, methods, outputs["fig_per_class"])
    plot_fixes(fixes_cache, fixes_predictions, outputs["fig_fixes"])
