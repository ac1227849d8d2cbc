"""Accuracy breakdowns: overall, per class, many/medium/few-shot, worst class and worst group.

Shot groups follow the long-tail literature (Liu et al. 2019, OLTR, ImageNet-LT): a class is *many-shot*
with more than 100 training examples, *few-shot* with fewer than 20, *medium-shot* otherwise
(``scheme="absolute"``). Those thresholds were set for ImageNet-LT, whose largest class has 1,280 images;
``scheme="scaled"`` multiplies them by ``max(train_counts) / 1280`` so that they keep their meaning on
datasets with larger head classes (CIFAR-10-LT with imbalance 100: head 5,000 -> many > 390.6, few < 78.1).
Shot accuracy is the accuracy over all test examples of the classes in that group (NaN for an empty group).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MANY_SHOT = 100
FEW_SHOT = 20
IMAGENET_LT_MAX = 1280
SHOTS = ("many", "medium", "few")


def shot_thresholds(train_counts, scheme: str = "absolute", many: float = MANY_SHOT, few: float = FEW_SHOT,
                    reference_max: float = IMAGENET_LT_MAX) -> tuple[float, float]:
    """``(many_threshold, few_threshold)``: many-shot is ``count > many``, few-shot ``count < few``."""
    if scheme == "absolute":
        return float(many), float(few)
    if scheme == "scaled":
        factor = float(np.max(train_counts)) / reference_max
        return many * factor, few * factor
    raise ValueError(f"unknown shot scheme '{scheme}'; use 'absolute' or 'scaled'")


def shot_groups(train_counts, scheme: str = "absolute", **kwargs) -> np.ndarray:
    """``"many"`` / ``"medium"`` / ``"few"`` for every class, from its number of training examples."""
    counts = np.asarray(train_counts)
    many, few = shot_thresholds(counts, scheme, **kwargs)
    return np.where(counts > many, "many", np.where(counts < few, "few", "medium"))


def _check(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be 1-d arrays of equal length; "
                         "pass predicted labels (argmax of the logits), not scores")
    return y_true, y_pred


def per_class_accuracy(y_true, y_pred, n_classes: int, *, train_counts=None, class_names=None,
                       scheme: str = "absolute") -> pd.DataFrame:
    """One row per class: ``class, name, n_test, n_correct, accuracy`` (+ ``train_count, shot``)."""
    y_true, y_pred = _check(y_true, y_pred)
    n_test = np.bincount(y_true, minlength=n_classes)[:n_classes]
    n_correct = np.bincount(y_true[y_true == y_pred], minlength=n_classes)[:n_classes]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n_test > 0, n_correct / np.maximum(n_test, 1), np.nan)
    df = pd.DataFrame({"class": np.arange(n_classes),
                       "name": list(class_names) if class_names is not None else [str(c) for c in range(n_classes)],
                       "n_test": n_test, "n_correct": n_correct, "accuracy": acc})
    if train_counts is not None:
        counts = np.asarray(train_counts)
        if len(counts) != n_classes:
            raise ValueError(f"train_counts has {len(counts)} entries for {n_classes} classes")
        df["train_count"] = counts
        df["shot"] = shot_groups(counts, scheme)
    return df


def per_group_accuracy(y_true, y_pred, groups, *, group_names=None) -> pd.DataFrame:
    """One row per test group (e.g. ``test_group``, the original class): ``group, name, n_test, accuracy``."""
    y_true, y_pred = _check(y_true, y_pred)
    groups = np.asarray(groups)
    if groups.shape != y_true.shape:
        raise ValueError(f"groups {groups.shape} must give one group per test example {y_true.shape}")
    rows = []
    for g in np.unique(groups):
        m = groups == g
        name = group_names[int(g)] if group_names is not None else str(g)
        rows.append({"group": g, "name": name, "n_test": int(m.sum()),
                     "accuracy": float((y_true[m] == y_pred[m]).mean())})
    return pd.DataFrame(rows)


def summarize(y_true, y_pred, *, n_classes: int, train_counts=None, groups=None, scheme: str = "absolute") -> dict:
    """Headline numbers: ``accuracy``, ``balanced_accuracy`` (mean per-class), ``worst_class_accuracy``,
    ``many/medium/few_accuracy`` (with ``train_counts``) and ``worst_group_accuracy`` (with ``groups``)."""
    y_true, y_pred = _check(y_true, y_pred)
    pc = per_class_accuracy(y_true, y_pred, n_classes, train_counts=train_counts, scheme=scheme)
    present = pc[pc.n_test > 0]
    out = {"n_test": int(len(y_true)), "accuracy": float((y_true == y_pred).mean()),
           "balanced_accuracy": float(present.accuracy.mean()),
           "worst_class_accuracy": float(present.accuracy.min()),
           "worst_class": int(present["class"].iloc[int(np.argmin(present.accuracy.to_numpy()))])}
    if train_counts is not None:
        for shot in SHOTS:
            classes = pc["class"][pc.shot == shot].to_numpy()
            m = np.isin(y_true, classes)
            out[f"{shot}_accuracy"] = float((y_true[m] == y_pred[m]).mean()) if m.any() else float("nan")
            out[f"n_{shot}_classes"] = int(len(classes))
        many, few = shot_thresholds(train_counts, scheme)
        out["many_threshold"], out["few_threshold"] = many, few
    if groups is not None:
        pg = per_group_accuracy(y_true, y_pred, groups)
        i = int(np.argmin(pg.accuracy.to_numpy()))
        out["worst_group_accuracy"] = float(pg.accuracy.iloc[i])
        out["worst_group"] = pg.group.iloc[i].item() if hasattr(pg.group.iloc[i], "item") else pg.group.iloc[i]
    return out


def evaluate_methods(predictions: dict, y_true, *, n_classes: int, train_counts=None, groups=None,
                     class_names=None, group_names=None, scheme: str = "absolute"
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Evaluate several methods' predicted labels at once.

    Returns ``(summary, per_class, per_group)``: ``summary`` has one row per method (columns of
    :func:`summarize`), ``per_class`` / ``per_group`` are long tables with a ``method`` column
    (``per_group`` is None without ``groups``).
    """
    summary, per_class, per_group = [], [], []
    for method, pred in predictions.items():
        summary.append({"method": method, **summarize(y_true, pred, n_classes=n_classes, train_counts=train_counts,
                                                      groups=groups, scheme=scheme)})
        per_class.append(per_class_accuracy(y_true, pred, n_classes, train_counts=train_counts,
                                            class_names=class_names, scheme=scheme).assign(method=method))
        if groups is not None:
            per_group.append(per_group_accuracy(y_true, pred, groups, group_names=group_names).assign(method=method))
    return (pd.DataFrame(summary), pd.concat(per_class, ignore_index=True),
            pd.concat(per_group, ignore_index=True) if groups is not None else None)
