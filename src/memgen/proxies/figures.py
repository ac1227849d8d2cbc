"""Figures of the proxies' report section, from the tables of :mod:`memgen.proxies.stages`: each estimate against the
proxies that cover its examples (scatter), the least and most regular training images per class by a backbone's
learning speed, and that proxy's histogram per class."""

from __future__ import annotations

import numpy as np
import pandas as pd

from memgen.data import load_cache
from memgen.plots import plt, save_figure
from memgen.splits import load_split

# The proxy of each kind drawn in the scatter figure.
SCATTER_PROXIES = ("learn_prob", "knn_agree")


def plot_scatter(validation: pd.DataFrame, scores: dict, sources: dict, path, *, max_points: int = 4000,
                 seed: int = 0) -> None:
    """Each study's held-out accuracy against the main proxy of every source compared with it (a random
    ``max_points`` examples per panel), with the Spearman correlation."""
    rows = validation[validation["proxy"].isin(SCATTER_PROXIES)].reset_index(drop=True)
    n = max(len(rows), 1)
    cols = min(4, n)
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(3.2 * cols, 2.7 * -(-n // cols)), squeeze=False)
    axes = axes.ravel()
    for ax in axes[len(rows):]:
        ax.axis("off")
    if rows.empty:
        axes[0].text(0.5, 0.5, "no estimate and proxy cover the same examples", ha="center", va="center")
    rng = np.random.default_rng(seed)
    for ax, (_, r) in zip(axes, rows.iterrows()):
        joined = pd.read_csv(scores[r["study"]])[["index", "heldout_acc"]].merge(
            pd.read_csv(sources[r["source"]]["path"])[["index", r["proxy"]]], on="index").dropna()
        if len(joined) > max_points:
            joined = joined.iloc[rng.choice(len(joined), max_points, replace=False)]
        jitter = rng.uniform(-0.01, 0.01, len(joined))   # held-out accuracy of few models takes few values
        ax.scatter(joined[r["proxy"]], joined["heldout_acc"] + jitter, s=4, alpha=0.4, lw=0)
        ax.set_title(f"{r['study']} (t={r['t']}) vs {r['source']}\nrho={r['spearman_heldout']:+.2f}", fontsize=7)
        ax.set_xlabel(r["proxy"], fontsize=7)
        ax.set_ylabel("held-out accuracy", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle("Proxies against the subsampling estimate (held-out accuracy)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    save_figure(fig, path)


def plot_regularity_grid(cache_path, proxies_csv, class_names, path, *, per_class: int = 8, most: bool = False,
                         proxy: str = "learn_prob", title: str = "") -> None:
    """The ``per_class`` least (or, ``most``, most) regular training images of each class by ``proxy``."""
    ds = load_cache(cache_path)
    px = pd.read_csv(proxies_csv).dropna(subset=[proxy])
    fig, axes = plt.subplots(len(class_names), per_class, figsize=(per_class * 0.85, len(class_names) * 0.95),
                             squeeze=False)
    for c, row in enumerate(axes):
        for ax in row:
            ax.axis("off")
        members = px[px["label"] == c].sort_values(proxy, ascending=not most, kind="stable").head(per_class)
        for ax, (_, r) in zip(row, members.iterrows()):
            img = ds.x_train[int(r["index"])]
            ax.imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None)
            ax.set_title(f"{r[proxy]:.2f}", fontsize=6)
        row[0].text(-0.15, 0.5, str(class_names[c]), transform=row[0].transAxes, ha="right", va="center", fontsize=7)
    kind = "most" if most else "least"
    fig.suptitle(f"{title}: the {kind} regular training images per class ({proxy} above each)", fontsize=9)
    save_figure(fig, path)


def plot_class_histograms(proxies_csv, class_names, path, *, proxy: str = "learn_prob", title: str = "") -> None:
    """Histogram of ``proxy`` per class (one panel each, same bins)."""
    px = pd.read_csv(proxies_csv).dropna(subset=[proxy])
    bins = np.linspace(px[proxy].min(), px[proxy].max() + 1e-9, 31)
    cols = 5
    rows = -(-len(class_names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 1.9 * rows), squeeze=False, sharex=True)
    axes = axes.ravel()
    for ax in axes[len(class_names):]:
        ax.axis("off")
    for c, ax in enumerate(axes[:len(class_names)]):
        values = px.loc[px["label"] == c, proxy]
        ax.hist(values, bins=bins, color="tab:blue")
        ax.set_title(f"{class_names[c]} (median {values.median():.2f})" if len(values) else str(class_names[c]),
                     fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"{title}: {proxy} per class", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def figures_stage(validation_csv, scores: dict, sources: dict, cache_path, split_path, backbone_proxies, outputs: dict,
                  *, per_class: int, title: str) -> None:
    """The report's figures: ``outputs`` scatter, least, most, histograms."""
    class_names = load_split(split_path).class_names
    plot_scatter(pd.read_csv(validation_csv), scores, sources, outputs["scatter"])
    for kind in ("least", "most"):
        plot_regularity_grid(cache_path, backbone_proxies, class_names, outputs[kind], per_class=per_class,
                             most=kind == "most", title=title)
    plot_class_histograms(backbone_proxies, class_names, outputs["histograms"], title=title)
