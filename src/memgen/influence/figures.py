"""Figures of the influence report section, from the tables of :mod:`memgen.influence.tables` and the
exports of :mod:`memgen.influence.stages`: histograms, the most memorized examples (document Figure 1),
removal (Figure 2), high-influence pairs (Figure 4), consistency (Figure 7) and convergence in ``t``."""

from __future__ import annotations

import pandas as pd

from memgen.data import load_cache
from memgen.plots import legend_outside, plt, save_figure
from memgen.influence.estimator import influence_examples, most_memorized
from memgen.splits import load_split


def _image(ax, img, title: str) -> None:
    ax.imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _panels(n: int, width: float = 3.2, height: float = 2.4, cols: int = 4):
    cols = min(cols, max(n, 1))
    rows = -(-max(n, 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    for ax in axes.ravel()[n:]:
        fig.delaxes(ax)
    return fig, axes.ravel()[:n]


def plot_histograms(histograms: pd.DataFrame, summary: pd.DataFrame, path) -> None:
    """Distribution of mem per study, with the count above 0.25 in each title."""
    studies = list(dict.fromkeys(histograms["study"]))
    fig, axes = _panels(len(studies))
    by = summary.set_index("study")
    for ax, name in zip(axes, studies):
        h = histograms[histograms["study"] == name]
        ax.bar(h["left"], h["count"], width=h["right"] - h["left"], align="edge", color="tab:blue")
        ax.set_yscale("log")
        ax.axvline(0.25, color="tab:red", lw=0.8, ls="--")
        s = by.loc[name]
        ax.set_title(f"{name} (t = {s['t']})\n{s['n_mem_ge_0.25']} of {s['n_train']} with mem ≥ 0.25", fontsize=9)
        ax.set_xlabel("memorization estimate", fontsize=8)
        ax.set_ylabel("training examples (log)", fontsize=8)
    fig.suptitle("Memorization estimates per dataset and algorithm", fontsize=10)
    save_figure(fig, path)


def plot_most_memorized(cache_path, scores: pd.DataFrame, class_names, path, *, title: str,
                        per_class: int = 8) -> None:
    """Document Figure 1: the most memorized training images of each class, with mem above each."""
    ds = load_cache(cache_path)
    top = most_memorized(scores["mem"].to_numpy(), scores["label"].to_numpy(), per_class=per_class,
                         index=scores["index"].to_numpy())
    classes = sorted(top["class"].unique())
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 1.0, len(classes) * 1.15), squeeze=False,
                             layout="constrained")
    for row, c in zip(axes, classes):
        for ax in row:
            ax.axis("off")
        for _, r in top[top["class"] == c].iterrows():
            _image(row[int(r["rank"])], ds.x_train[int(r["index"])], f"{r['mem']:.2f}")
        row[0].text(-0.15, 0.5, str(class_names[c]), transform=row[0].transAxes, ha="right", va="center", fontsize=9)
    fig.suptitle(f"{title}: most memorized training images per class (mem above each)", fontsize=11)
    save_figure(fig, path)


def plot_removal(removal: pd.DataFrame, path) -> None:
    """Document Figure 2: test accuracy after removing the examples with mem >= theta, or as many random
    ones (mean +- one standard deviation over trials), and the fraction of the training set left."""
    studies = list(dict.fromkeys(removal["study"])) if len(removal) else []
    fig, axes = plt.subplots(2, max(len(studies), 1), figsize=(3.6 * max(len(studies), 1), 4.6), squeeze=False,
                             sharex="col", gridspec_kw={"height_ratios": [2, 1]}, layout="constrained")
    for col, name in enumerate(studies):
        d = removal[removal["study"] == name]
        for kind, color in (("memorized", "tab:red"), ("random", "tab:blue")):
            k = d[d["kind"] == kind].sort_values("theta")
            ax = axes[0][col]
            ax.plot(k["theta"], 100 * k["test_acc_mean"], "o-", color=color, label=kind, ms=3)
            ax.fill_between(k["theta"], 100 * (k["test_acc_mean"] - k["test_acc_std"].fillna(0)),
                            100 * (k["test_acc_mean"] + k["test_acc_std"].fillna(0)), color=color, alpha=0.2)
        ax.set_title(name, fontsize=8)
        ax.set_ylabel("test accuracy (%)", fontsize=7)
        ax.legend(fontsize=6)
        f = d[d["kind"] == "memorized"].sort_values("theta")
        axes[1][col].plot(f["theta"], f["frac_remaining"], "o-", color="k", ms=3)
        axes[1][col].set_ylabel("fraction left", fontsize=7)
        axes[1][col].set_xlabel("memorization threshold", fontsize=7)
    fig.suptitle("Removing memorized examples vs as many random ones", fontsize=10)
    save_figure(fig, path)


def plot_influence(cache_path, pairs: pd.DataFrame, path, *, title: str, n_examples: int = 6,
                   per_example: int = 4) -> None:
    """Document Figure 4: memorized training images (mem above) and their most influenced test images
    (influence above each)."""
    ds = load_cache(cache_path)
    ex = influence_examples(pairs, n_examples=n_examples, per_example=per_example)
    trains = list(dict.fromkeys(ex["train_index"]))
    fig, axes = plt.subplots(max(len(trains), 1), 1 + per_example, figsize=(1.5 * (1 + per_example),
                                                                          1.7 * max(len(trains), 1)), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    if not trains:
        axes[0][0].set_title("no pair above the thresholds", fontsize=7)
    for row, i in zip(axes, trains):
        d = ex[ex["train_index"] == i]
        _image(row[0], ds.x_train[int(i)], f"train, mem {d['mem'].iloc[0]:.2f}")
        for _, r in d.iterrows():
            _image(row[1 + int(r["rank"])], ds.x_test[int(r["test_index"])], f"infl {r['infl']:.2f}")
    fig.suptitle(f"{title}: memorized examples and the test images they influence most", fontsize=10)
    save_figure(fig, path)


def plot_consistency(consistency: pd.DataFrame, path) -> None:
    """Document Figure 7 (top): D_mem and J_mem against theta for each pair of studies; pairs of one algorithm
    with independent subsets (the noise floor) dashed, pairs that share subsets marked in the legend."""
    mem = consistency[consistency["kind"] == "mem"]
    fig, (ax_d, ax_j) = plt.subplots(1, 2, figsize=(10, 3.2), layout="constrained")
    for (a, b), d in mem.groupby(["a", "b"], sort=False):
        floor = bool(d["same_algorithm"].iloc[0]) and not bool(d["shared_subsets"].iloc[0])
        label = f"{a} vs {b}" + (" (noise floor)" if floor else "") + \
            (" (shared subsets)" if bool(d["shared_subsets"].iloc[0]) else "")
        style = "o--" if floor else "o-"
        ax_d.plot(d["theta"], d["D_mem"], style, ms=3, label=label)
        ax_j.plot(d["theta"], d["J_mem"], style, ms=3, label=label)
    ax_d.set(xlabel="theta_mem", ylabel="D_mem (mean |difference|)")
    ax_j.set(xlabel="theta_mem", ylabel="J_mem (Jaccard)", ylim=(0, 1))
    legend_outside(ax_j)
    fig.suptitle("Consistency of memorization estimates between algorithms and runs", fontsize=10)
    save_figure(fig, path)


def plot_convergence(convergence: pd.DataFrame, path) -> None:
    """Root-mean-square standard error of the mem estimate against t, for 0/1 correctness, true-class
    probability and margin (margins have another scale: their panel is separate)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    for (study, score), d in convergence.groupby(["study", "score"], sort=False):
        ax = axes[1] if score == "margin" else axes[0]
        ax.plot(d["t"], d["rms_se"], "o-" if score == "correct" else "s--", ms=3, label=f"{study}: {score}")
    for ax, title in zip(axes, ("correctness and probability", "margin")):
        ax.set(xscale="log", yscale="log", xlabel="models t", ylabel="rms standard error", title=title)
        ax.title.set_fontsize(9)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:                                  # one legend for both panels, below them, off the data
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=7)
    fig.suptitle("Precision of the estimates against the number of models", fontsize=10)
    save_figure(fig, path)


def write_figures(inputs: dict, outputs: dict, *, studies: dict, grid_studies, influence_study: str | None,
                  per_class: int = 8) -> None:
    """Every figure of the report section (see workflow/rules/influence.smk for the files)."""
    summary = pd.read_csv(inputs["summary"])
    plot_histograms(pd.read_csv(inputs["histograms"]), summary, outputs["fig_histograms"])
    removal = pd.read_csv(inputs["removal"]) if _has_rows(inputs["removal"]) else pd.DataFrame(columns=["study"])
    plot_removal(removal, outputs["fig_removal"])
    plot_consistency(pd.read_csv(inputs["consistency"]), outputs["fig_consistency"])
    plot_convergence(pd.read_csv(inputs["convergence"]), outputs["fig_convergence"])
    for name, out in zip(grid_studies, outputs["most_memorized"]):
        ds = studies[name]["dataset"]
        names = load_split(inputs["splits"][name]).class_names
        plot_most_memorized(inputs["caches"][ds], pd.read_csv(inputs["scores"][name]), names, out, title=name,
                            per_class=per_class)
    if influence_study:
        ds = studies[influence_study]["dataset"]
        plot_influence(inputs["caches"][ds], pd.read_csv(inputs["pairs"][influence_study]), outputs["fig_influence"],
                       title=influence_study)


def _has_rows(path) -> bool:
    with open(path) as fh:
        return sum(1 for _ in fh) > 1
