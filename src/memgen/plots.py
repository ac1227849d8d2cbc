"""Data-section tables and figures: dataset summaries, sample images, class counts of the splits."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from memgen.data import Dataset, load_cache
from memgen.runtime import atomic_path
from memgen.splits import Split, load_split


FIGURE_DPI = 160      # sharp in the report at its 1,250 px column, small enough to embed


def save_figure(fig, path: str | os.PathLike) -> None:
    """Write a figure atomically at the report's resolution, trimmed to its content."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=FIGURE_DPI, bbox_inches="tight", format=Path(path).suffix.lstrip("."))
    plt.close(fig)


def integer_ticks(ax, values, axis: str = "x") -> None:
    """Ticks at exactly the given integer settings (k, depth), never fractional ones."""
    values = sorted({int(v) for v in values})
    (ax.set_xticks if axis == "x" else ax.set_yticks)(values, [str(v) for v in values])


def legend_outside(ax, **kwargs) -> None:
    """The legend right of the axes, off the data."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize=8, **kwargs)


def data_summary(caches: dict[str, str]) -> pd.DataFrame:
    rows = []
    for name, path in caches.items():
        ds = load_cache(path)
        rows.append({"dataset": name, **ds.summary(), "classes": ", ".join(ds.classes),
                     "pixel_mean": round(float(ds.x_train.mean()), 2), "pixel_std": round(float(ds.x_train.std()), 2)})
    return pd.DataFrame(rows)


def split_counts(paths: list[str]) -> pd.DataFrame:
    rows = []
    for path in paths:
        split = load_split(path)
        rows.append({"dataset": Path(path).parent.name, "split": Path(path).stem, "n_classes": split.n_classes,
                     "n_train": len(split.train_idx), "n_val": len(split.val_idx), "n_test": len(split.test_idx),
                     "train_counts": "/".join(map(str, split.class_counts()))})
    return pd.DataFrame(rows)


def plot_samples(ds: Dataset, path: str | os.PathLike, per_class: int = 8, seed: int = 0, title: str = "") -> None:
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(ds.n_classes, per_class, figsize=(per_class * 0.8, ds.n_classes * 0.8), squeeze=False,
                             layout="constrained")
    for c, row in enumerate(axes):
        members = np.flatnonzero(ds.y_train == c)
        for ax, i in zip(row, rng.choice(members, size=min(per_class, len(members)), replace=False)):
            img = ds.x_train[i]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
        for ax in row:
            ax.set_xticks([]), ax.set_yticks([])
        row[0].set_ylabel(ds.classes[c], rotation=0, ha="right", va="center", fontsize=10)
    fig.suptitle(f"{title}: random training images per class", fontsize=11)
    save_figure(fig, path)


def plot_split_counts(splits: dict[str, Split], path: str | os.PathLike, class_names: list[str],
                      title: str = "") -> None:
    """Heatmap of training examples per original class for every split (log colour scale).

    The one-vs-one ``pair*`` tasks are summarised in the title rather than drawn row by row.
    """
    names = [n for n in splits if not n.startswith("pair")]
    n_pairs = len(splits) - len(names)
    counts = np.array([np.bincount(splits[n].train_group, minlength=len(class_names)) for n in names]).reshape(
        len(names), len(class_names))
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * len(class_names), 1.2 + 0.35 * max(len(names), 1)),
                           layout="constrained")
    shown = np.ma.masked_where(counts == 0, np.log10(np.maximum(counts, 1)))   # a count of 1 is drawn, 0 is blank
    image = ax.imshow(shown, aspect="auto", cmap="viridis", vmin=0, vmax=np.log10(max(counts.max(), 10)))
    for (r, c), value in np.ndenumerate(counts):
        if value:
            ax.text(c, r, str(value), ha="center", va="center", fontsize=7,
                    color="white" if np.log10(value) < 0.6 * np.log10(max(counts.max(), 10)) else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), [f"{n} (n={len(splits[n].train_idx)})" for n in names], fontsize=8)
    fig.colorbar(image, ax=ax, label="log10 training examples")
    note = f"; plus {n_pairs} one-vs-one tasks, each with its two classes in full" if n_pairs else ""
    ax.set_title(f"{title}: training examples per class{note}", fontsize=9)
    save_figure(fig, path)
