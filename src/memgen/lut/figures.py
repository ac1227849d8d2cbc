"""Figures of the LUT study, drawn from the tables of :mod:`memgen.lut.tables` (published beside measured)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from memgen.lut.tables import table4_matrices
from memgen.plots import integer_ticks, legend_outside, plt
from memgen.plots import save_figure as save

MEASURED, PUBLISHED = "tab:blue", "tab:orange"


def plot_table1(table1: pd.DataFrame, path) -> None:
    """Per dataset: measured training and test accuracy of each method (bars), the document's as markers."""
    datasets = list(dict.fromkeys(table1["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.2), squeeze=False,
                             layout="constrained")
    for ax, dataset in zip(axes[0], datasets):
        t = table1[table1["dataset"] == dataset]
        methods = list(dict.fromkeys(t["method"]))
        y = np.arange(len(methods))
        for offset, split, alpha in ((-0.2, "train", 0.45), (0.2, "test", 1.0)):
            s = t[t["split"] == split].set_index("method").reindex(methods)
            ax.barh(y + offset, s["measured"], height=0.38, color=MEASURED, alpha=alpha, label=f"measured {split}")
            ax.plot(s["published"], y + offset, "D", color=PUBLISHED, ms=5,
                    label="published" if split == "test" else None)
        ax.axvline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_yticks(y, methods, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0.4, 1.02)
        ax.set_xlabel("accuracy")
        ax.set_title(f"Table 1, binary {dataset} (0-4 vs 5-9)", fontsize=10)
    legend_outside(axes[0][-1])
    save(fig, path)


def plot_table3(table3: pd.DataFrame, path) -> None:
    """Training and test accuracy vs k on real and on random labels; published as dashed lines."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    styles = {("real", "train"): ("tab:blue", "o"), ("real", "test"): ("tab:blue", "s"),
              ("random", "train"): ("tab:red", "o"), ("random", "test"): ("tab:red", "s")}
    for (labels, split), (color, marker) in styles.items():
        t = table3[(table3["labels"] == labels) & (table3["split"] == split)].sort_values("k")
        if t.empty:
            continue
        ls = "-" if split == "train" else "--"
        ax.plot(t["k"], t["measured"], ls, color=color, marker=marker, label=f"{labels} labels, {split} (measured)")
        if t["published"].notna().any():
            ax.plot(t["k"], t["published"], ls, color=color, marker=marker, mfc="none", alpha=0.45,
                    label=f"{labels} labels, {split} (published)")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("k (inputs per LUT)")
    ax.set_ylabel("accuracy")
    ax.set_title("Table 3: LUT size on Binary-MNIST, real vs random labels", fontsize=10)
    integer_ticks(ax, table3["k"])
    legend_outside(ax)
    save(fig, path)


def plot_figure1(figure1: pd.DataFrame, path) -> None:
    """Left: generalization gap vs k over the pairwise tasks (boxes, mean line). Right: the gap's spread over
    tasks vs depth (boxes) with its standard deviation on a second axis."""
    panels = [p for p in ("k", "depth") if (figure1["panel"] == p).any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False, layout="constrained")
    axes = dict(zip(panels, axes[0]))
    for panel, by, xlabel in (("k", "k", "k (inputs per LUT)"), ("depth", "depth", "hidden layers")):
        if panel not in axes:
            continue
        ax, t = axes[panel], figure1[figure1["panel"] == panel]
        per_task = t.groupby([by, "task"])["gap"].mean().reset_index()          # mean over seeds
        values = sorted(per_task[by].unique())
        groups = [per_task.loc[per_task[by] == v, "gap"].to_numpy() for v in values]
        ax.boxplot(groups, positions=range(len(values)), widths=0.6)
        ax.plot(range(len(values)), [g.mean() for g in groups], "-", color=MEASURED, lw=1, label="mean over tasks")
        ax.set_xticks(range(len(values)), [str(v) for v in values])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("gap = train - test accuracy")
        ax.axhline(0, color="grey", lw=0.8, ls=":")
        n_tasks = per_task["task"].nunique()
        if panel == "k":
            depth = int(t["depth"].iloc[0])
            ax.set_title(f"gap vs k, {n_tasks} pairwise tasks, {depth} hidden layers", fontsize=10)
            ax.legend(fontsize=7, loc="upper left")
        else:
            k = int(t["k"].iloc[0])
            ax.set_title(f"spread of the gap vs depth, {n_tasks} tasks, k={k}", fontsize=10)
            twin = ax.twinx()
            twin.plot(range(len(values)), [g.std() for g in groups], "o-", color=PUBLISHED, label="std over tasks")
            twin.set_ylabel("std of the gap over tasks", color=PUBLISHED)
            twin.set_ylim(bottom=0)
    save(fig, path)


def plot_table4(table4: pd.DataFrame, path, n_classes: int | None = None) -> None:
    """Heatmaps: measured (training below the diagonal, test above), published, and measured - published."""
    published, measured = table4_matrices(table4, n_classes)
    tasks = measured.notna().any(axis=0) | measured.notna().any(axis=1)     # classes of at least one task
    published, measured = published.loc[tasks, tasks], measured.loc[tasks, tasks]
    has_pub = np.isfinite(published.values).any()
    panels = [("measured", measured, "viridis", (0.5, 1.0))]
    if has_pub:
        panels += [("published", published, "viridis", (0.5, 1.0)),
                   ("measured - published", measured - published, "RdBu", (-0.2, 0.2))]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False, layout="constrained")
    k = int(table4["k"].iloc[0]) if len(table4) else None
    for ax, (title, mat, cmap, (lo, hi)) in zip(axes[0], panels):
        im = ax.imshow(mat.values, cmap=cmap, vmin=lo, vmax=hi)
        n = len(mat)
        for i in range(n):
            for j in range(n):
                v = mat.values[i, j]
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2f}" if title != "measured - published" else f"{v:+.2f}", ha="center",
                            va="center", fontsize=7, color="white" if cmap == "viridis" and v < 0.75 else "black")
        ax.set_xticks(range(n), mat.columns, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), mat.index, fontsize=8)
        ax.set_title(f"{title} (train below, test above)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"Table 4: pairwise CIFAR-10 tasks, k={k}", fontsize=10)
    save(fig, path)


def plot_ext_bits(table: pd.DataFrame, path) -> None:
    """Test (solid) and training (faint) accuracy vs k for each binarization, real and random labels."""
    label_kinds = [labels for labels in ("real", "random") if (table["labels"] == labels).any()] or ["real"]
    fig, axes = plt.subplots(1, len(label_kinds), figsize=(5.5 * len(label_kinds) + 2, 4.2), sharey=True,
                             squeeze=False, layout="constrained")
    axes = axes[0]
    codings = list(dict.fromkeys(table.sort_values("bits")["coding"]))
    colors = plt.cm.viridis(np.linspace(0, 0.85, max(len(codings), 1)))
    for ax, labels in zip(axes, label_kinds):
        for coding, color in zip(codings, colors):
            for split, style in (("test", dict(ls="-", marker="s")), ("train", dict(ls=":", marker="o", alpha=0.5))):
                t = table[(table["coding"] == coding) & (table["labels"] == labels) & (table["split"] == split)]
                if len(t):
                    t = t.sort_values("k")
                    ax.plot(t["k"], t["measured"], color=color, label=f"{coding} {split}", **style)
        pub = table[(table["labels"] == labels)].dropna(subset=["published"])
        if len(pub):
            ax.plot(pub["k"], pub["published"], "D", color=PUBLISHED, label="published (Table 1)")
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("k (inputs per LUT)")
        integer_ticks(ax, table["k"])
        ax.set_title(f"Binary {table['dataset'].iloc[0] if len(table) else ''}, {labels} labels", fontsize=10)
    axes[0].set_ylabel("accuracy")
    legend_outside(axes[-1])
    save(fig, path)


def plot_ext_depth(table: pd.DataFrame, path) -> None:
    """Test (solid) and training (dotted) accuracy vs number of hidden layers, one colour per k."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    ks = sorted(table["k"].unique())
    colors = plt.cm.plasma(np.linspace(0, 0.85, max(len(ks), 1)))
    for k, color in zip(ks, colors):
        for split, style in (("test", dict(ls="-", marker="s")), ("train", dict(ls=":", marker="o", alpha=0.6))):
            t = table[(table["k"] == k) & (table["split"] == split)].sort_values("depth")
            ax.plot(t["depth"], t["measured"], color=color, label=f"k={k} {split}", **style)
    pub = table.dropna(subset=["published"])
    if len(pub):
        ax.plot(pub["depth"], pub["published"], "D", color=PUBLISHED, label="published (Table 3)")
    ax.set_xlabel("hidden layers")
    integer_ticks(ax, table["depth"])
    ax.set_ylabel("accuracy")
    ax.set_title(f"Depth sweep, binary {table['dataset'].iloc[0] if len(table) else ''}", fontsize=10)
    legend_outside(ax)
    save(fig, path)
