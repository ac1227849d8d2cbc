"""Splits: index arrays into a dataset cache (never copies of images), with the task's labels.

A split name picks its family:

``all``        every training example, no validation hold-out;
``full``       training set minus a stratified validation hold-out;
``lt{IF}``     long-tailed training set with Cui et al. 2019's counts: class c keeps
               ``floor(n_max * IF**(-c / (C-1)))`` with ``n_max`` the dataset's examples per class
               (CIFAR-10: 5,000), drawn from what the validation hold-out leaves; a class whose count
               exceeds that (with a hold-out: class 0 only) keeps all it has left -- ``lt_target`` stores
               Cui's counts beside the split's own; validation and test stay balanced;
``rare``       two groups of classes (e.g. vehicles vs animals) with some classes made rare in
               training; ``test_group`` keeps the original class for worst-group accuracy;
``binary``     classes ``negative`` vs ``positive`` (default 0-4 vs 5-9);
``pair{a}v{b}`` one-vs-one task between classes a and b (label 0 for a, 1 for b);
``{name}-rand`` any of the above with uniformly random training labels (seeded).

Test sets stay as in the dataset (balanced), restricted to the task's classes.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np

from memgen.runtime import save_npz

SPLIT_PATTERN = r"(all|full|lt\d+|rare|binary|pair\d+v\d+)(-rand)?"


def memory_name(split: str, backbone: str | None = None) -> str:
    """A memory's name, its folder under ``results/retrieval/{dataset}/``: the split for the dataset's backbone
    (``retrieval.backbone``), ``{split}@{backbone}`` for a named one of ``retrieval.extra_backbones``."""
    return split if backbone is None else f"{split}@{backbone}"


def parse_memory(memory: str) -> tuple[str, str | None]:
    """``(split, backbone)`` of a memory name; backbone None for the dataset's own."""
    split, _, backbone = memory.partition("@")
    return split, backbone or None


class SplitError(ValueError):
    """A split name or its settings do not fit the dataset."""


@dataclass
class Split:
    train_idx: np.ndarray
    train_y: np.ndarray
    val_idx: np.ndarray
    val_y: np.ndarray
    test_idx: np.ndarray
    test_y: np.ndarray
    train_group: np.ndarray
    test_group: np.ndarray
    n_classes: int
    class_names: list[str]
    lt_target: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # Cui's counts (lt splits)

    def capped_classes(self) -> list[int]:
        """Classes of an lt split that keep fewer examples than Cui's count (the hold-out took them)."""
        if len(self.lt_target) == 0:
            return []
        return np.flatnonzero(self.class_counts() < self.lt_target).tolist()

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.train_y, minlength=self.n_classes)


def pair_names(n_classes: int) -> list[str]:
    """The one-vs-one split names ``pair{a}v{b}`` of a dataset with ``n_classes`` classes."""
    return [f"pair{a}v{b}" for a, b in combinations(range(n_classes), 2)]


def split_rng(seed: int, dataset: str, split: str) -> np.random.Generator:
    """A generator that depends only on (seed, dataset, split), never on the order jobs run in."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(dataset.encode()),
                                                        zlib.crc32(split.encode())]))


def _check_classes(classes, n_classes: int, what: str) -> list[int]:
    bad = [c for c in classes if not 0 <= int(c) < n_classes]
    if bad:
        raise SplitError(f"{what} names class id(s) {bad}, but the dataset has classes 0..{n_classes - 1}; "
                         f"fix the class ids in config.yaml")
    return [int(c) for c in classes]


def _stratified_holdout(idx: np.ndarray, y: np.ndarray, size: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (kept, held out) with ``size`` held out, proportionally per class."""
    if size == 0:
        return idx, idx[:0]
    if size >= len(idx):
        raise SplitError(f"validation_size={size} leaves no training data ({len(idx)} examples); lower it")
    classes, counts = np.unique(y[idx], return_counts=True)
    quota = np.floor(size * counts / counts.sum()).astype(int)
    quota[np.argsort(-(size * counts / counts.sum() - quota))[: size - quota.sum()]] += 1
    held = [rng.permutation(idx[y[idx] == c])[:q] for c, q in zip(classes, quota)]
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(idx, held), held


def long_tail_counts(n_max: int, imbalance: float, n_classes: int) -> np.ndarray:
    """Cui et al. 2019: class c keeps floor(n_max * IF^(-c / (C-1))) examples."""
    c = np.arange(n_classes)
    return np.floor(n_max * float(imbalance) ** (-c / (n_classes - 1)) + 1e-9).astype(int)


def make_split(name: str, y_train: np.ndarray, y_test: np.ndarray, classes: list[str], *, dataset: str,
               seed: int = 0, validation_size: int = 5000, binary: dict | None = None,
               rare: dict | None = None) -> Split:
    """Build the split ``name`` from the labels of a dataset (see the module docstring)."""
    match = re.fullmatch(SPLIT_PATTERN, name)
    if not match:
        raise SplitError(f"unknown split '{name}'; use all, full, lt<IF>, rare, binary or pair<a>v<b>, "
                         f"optionally with -rand")
    family, randomize = match.group(1), bool(match.group(2))
    rng = split_rng(seed, dataset, name)
    n_classes = len(classes)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    all_train, all_test = np.arange(len(y_train)), np.arange(len(y_test))
    relabel = np.arange(n_classes)  # original class -> task label (-1: not in the task)
    names = list(classes)
    val_idx = all_train[:0]

    if family == "all":
        train_idx = all_train
    elif family == "full":
        train_idx, val_idx = _stratified_holdout(all_train, y_train, validation_size, rng)
    elif family.startswith("lt"):
        imbalance = int(family[2:])
        if imbalance < 1:
            raise SplitError(f"imbalance factor in '{name}' must be >= 1")
        pool, val_idx = _stratified_holdout(all_train, y_train, validation_size, rng)
        per_class = [rng.permutation(pool[y_train[pool] == c]) for c in range(n_classes)]
        lt_target = long_tail_counts(int(np.bincount(y_train, minlength=n_classes).min()), imbalance, n_classes)
        train_idx = np.sort(np.concatenate([p[:k] for p, k in zip(per_class, lt_target)]))
    elif family == "rare":
        rare = rare or {}
        if "groups" not in rare:
            raise SplitError(f"split 'rare' of dataset '{dataset}' needs splits.rare.groups in config.yaml")
        groups = {g: _check_classes(cs, n_classes, f"splits.rare.groups.{g}") for g, cs in rare["groups"].items()}
        relabel = np.full(n_classes, -1)
        for label, members in enumerate(groups.values()):
            relabel[members] = label
        names = list(groups)
        rare_classes = _check_classes(rare.get("rare_classes", []), n_classes, "splits.rare.rare_classes")
        keep = float(rare.get("keep_fraction", 0.02))
        pool, val_idx = _stratified_holdout(all_train[relabel[y_train] >= 0], y_train, validation_size, rng)
        drop = [rng.permutation(pool[y_train[pool] == c])[int(round(keep * np.sum(y_train[pool] == c))):]
                for c in rare_classes]
        train_idx = np.setdiff1d(pool, np.concatenate(drop)) if drop else pool
    elif family == "binary":
        binary = binary or {"negative": list(range(n_classes // 2)), "positive": list(range(n_classes // 2, n_classes))}
        neg = _check_classes(binary["negative"], n_classes, "splits.binary.negative")
        pos = _check_classes(binary["positive"], n_classes, "splits.binary.positive")
        relabel = np.full(n_classes, -1)
        relabel[neg], relabel[pos] = 0, 1
        names = ["+".join(classes[c] for c in neg), "+".join(classes[c] for c in pos)]
        train_idx = all_train[relabel[y_train] >= 0]
    else:  # pair{a}v{b}
        a, b = (int(v) for v in family[4:].split("v"))
        _check_classes([a, b], n_classes, f"split '{name}'")
        if a == b:
            raise SplitError(f"split '{name}' pairs class {a} with itself; use two different classes")
        relabel = np.full(n_classes, -1)
        relabel[a], relabel[b] = 0, 1
        names = [classes[a], classes[b]]
        train_idx = all_train[relabel[y_train] >= 0]

    test_idx = all_test[relabel[y_test] >= 0]
    train_y = relabel[y_train[train_idx]]
    if randomize:
        train_y = rng.integers(0, len(names), size=len(train_idx))
    split = Split(train_idx=train_idx, train_y=train_y.astype(np.int64), val_idx=val_idx,
                  val_y=relabel[y_train[val_idx]].astype(np.int64), test_idx=test_idx,
                  test_y=relabel[y_test[test_idx]].astype(np.int64), train_group=y_train[train_idx],
                  test_group=y_test[test_idx], n_classes=len(names), class_names=names,
                  **({"lt_target": lt_target.astype(np.int64)} if family.startswith("lt") else {}))
    empty = [names[c] for c in range(len(names)) if not np.any(split.train_y == c)]
    if empty:
        raise SplitError(f"split '{name}' of '{dataset}' has no training example of class(es) {empty}; "
                         f"check its settings in config.yaml")
    return split


def save_split(split: Split, path: str | os.PathLike) -> None:
    arrays = asdict(split)
    arrays["class_names"] = np.asarray(arrays["class_names"])
    save_npz(path, **arrays)


def load_split(path: str | os.PathLike) -> Split:
    with np.load(path) as f:
        fields = {k: f[k] for k in f.files}
    fields["n_classes"] = int(fields["n_classes"])
    fields["class_names"] = fields["class_names"].tolist()
    return Split(**fields)
