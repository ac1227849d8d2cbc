"""Learning algorithms for the memorization estimator, behind one small protocol; one module per learner.

A learner is built once on a task (training and test examples with their labels) and then
``fit_predict(subsets, seeds)`` trains one model per subset of training *positions* (``0..n-1``)
with the given training seeds and reports, for every model, on every training and test example:
0/1 correctness, the probability of the true class and the margin (true-class score minus the best
other score).  The estimator (:mod:`memgen.influence.estimator`) needs nothing else, so every learner
plugs into the same shards.

The learner ``<name>`` of the config is the class that module ``memgen.influence.learners.<name>`` registers
with ``@register_learner("<name>")`` (:mod:`.mlp`, :mod:`.linear`, :mod:`.knn`, :mod:`.lut`, :mod:`.net`).
:data:`LEARNERS` imports a learner's module when the learner is first looked up, so a job that builds one learner
loads only that learner's code, and its rule declares only that code as input
(:func:`memgen.code_inputs.module_files`).  This package holds what they share: :class:`Outputs`, the
:class:`Learner` protocol, the registry and the checks and score helpers.  The public names of the learner
modules (their ``__all__``) are also importable from here (``from memgen.influence.learners import MLPLearner``).

Several models train at once where that pays (batched matrix products over models); the MLP and
the linear probe keep a one-model-at-a-time ``mode="reference"`` implementation of the same
algorithm, which tests compare against (k-NN is compared with brute force).  A model's result
depends only on its subset and seed, never on which other models share the batch.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass
class Outputs:
    """Per-model results: ``[k, n_train]`` and ``[k, n_test]`` arrays."""

    correct_train: np.ndarray  # bool
    correct_test: np.ndarray   # bool
    prob_train: np.ndarray     # float32, probability of the true class
    prob_test: np.ndarray
    margin_train: np.ndarray   # float32, true-class score minus best other score (> 0 iff correct)
    margin_test: np.ndarray

    @property
    def k(self) -> int:
        return len(self.correct_train)

    @classmethod
    def empty(cls, k: int, n_train: int, n_test: int) -> "Outputs":
        z = np.zeros
        return cls(z((k, n_train), bool), z((k, n_test), bool), z((k, n_train), np.float32),
                   z((k, n_test), np.float32), z((k, n_train), np.float32), z((k, n_test), np.float32))

    @classmethod
    def concat(cls, parts: Sequence["Outputs"]) -> "Outputs":
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))

    def take(self, rows) -> "Outputs":
        return Outputs(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))

    def put(self, rows, other: "Outputs") -> None:
        for f in self.__dataclass_fields__:
            getattr(self, f)[rows] = getattr(other, f)

    def check(self, k: int, n_train: int, n_test: int) -> None:
        for f in self.__dataclass_fields__:
            want = (k, n_train if f.endswith("train") else n_test)
            if getattr(self, f).shape != want:
                raise ValueError(f"learner output '{f}' has shape {getattr(self, f).shape}, expected {want}")


@runtime_checkable
class Learner(Protocol):
    """What the estimator needs from a learning algorithm. Optional, for the shard stage
    (:mod:`memgen.influence.stages`): a class attribute ``mixed_precision = True`` (``from_settings`` then also gets
    the ``precision`` setting), a ``record`` constructor parameter and attribute (called as in
    :class:`memgen.influence.learners.mlp.MLPLearner` for every training pass: the shards keep each example's
    learning speed) and ``checkpoint_to(folder, every_s)`` (resume files, as
    :class:`memgen.influence.learners.net.NetLearner`)."""

    name: str
    n_train: int
    n_test: int
    y_train: np.ndarray
    y_test: np.ndarray

    def fit_predict(self, subsets: Sequence[np.ndarray], seeds: Sequence[int]) -> Outputs:
        """Train one model per subset (training positions) and seed; evaluate on all train/test examples."""
        ...


class LearnerRegistry(Mapping):
    """The learners a study can name (config ``influence.studies.<name>.learner``), name -> class: every module
    of this package (the learner of its name) and every class given to :func:`register_learner`. Looking a
    learner up imports its module; listing the names imports none."""

    def __init__(self):
        self._classes: dict[str, type] = {}

    @staticmethod
    def modules() -> list[str]:
        """The learner modules of this package, by name."""
        return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))

    def register(self, name: str, cls: type) -> None:
        if name in self._classes:
            raise ValueError(f"learner '{name}' is registered twice ({self._classes[name].__name__}, {cls.__name__})")
        self._classes[name] = cls

    def __getitem__(self, name: str) -> type:
        if name not in self._classes and name in self.modules():
            importlib.import_module(f"{__name__}.{name}")
            if name not in self._classes:
                raise LookupError(f"module {__name__}.{name} registers no learner '{name}'; decorate its class "
                                  f"with @register_learner(\"{name}\")")
        return self._classes[name]

    def __contains__(self, name) -> bool:
        return name in self._classes or name in self.modules()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self.modules(), *self._classes}))

    def __len__(self) -> int:
        return len({*self.modules(), *self._classes})


LEARNERS = LearnerRegistry()


def register_learner(name: str):
    """Class decorator: the learner ``name`` of the config (a learner module's class registers under the module's
    name). The class builds itself from a study's task and ``settings`` (the config entry, validated by
    workflow/schemas/influence.schema.yaml) with
    ``from_settings(x_train, y_train, x_test, y_test, settings, *, n_classes, device, show_progress)``."""
    def register(cls):
        LEARNERS.register(name, cls)
        return cls
    return register


def __getattr__(name: str):
    """A learner module (``learners.mlp``) or a public name of one (``learners.MLPLearner``), imported on first use."""
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in LEARNERS.modules():
        return importlib.import_module(f"{__name__}.{name}")
    for learner in LEARNERS.modules():
        module = importlib.import_module(f"{__name__}.{learner}")
        if name in module.__all__:
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def scores_from_logits(logits, y):
    """``logits [k, c, C]`` (torch), ``y [c]`` -> (correct bool, true-class prob, margin) numpy ``[k, c]``."""
    y = y.to(logits.device)
    correct, prob, margin = _class_scores(logits, y.view(1, -1, 1), dim=2)
    return correct.cpu().numpy(), prob.float().cpu().numpy(), margin.float().cpu().numpy()


def _class_scores(logits, yv, dim: int):
    """Correctness (``argmax == y``, first maximum on ties), true-class probability and margin (true
    logit minus the best other logit) along class dimension ``dim``; ``yv`` broadcasts with size 1
    there.  Uses max-reductions only (``argmax`` over a short non-contiguous dimension is slow on CPU)."""
    import torch

    C = logits.shape[dim]
    shape = [1] * logits.ndim
    shape[dim] = C
    cls = torch.arange(C, device=logits.device).view(shape)
    idx = yv.expand(*[1 if d == dim else s for d, s in enumerate(logits.shape)])
    true = logits.gather(dim, idx).squeeze(dim)
    prob = torch.exp(true - torch.logsumexp(logits, dim))
    lo = logits.masked_fill(cls >= yv, -math.inf).amax(dim)   # best class before y
    hi = logits.masked_fill(cls <= yv, -math.inf).amax(dim)   # best class after y
    correct = (true > lo) & (true >= hi)
    return correct, prob, true - torch.maximum(lo, hi)


def _flat_float(x, dtype, scale_uint8: bool = True):
    import torch

    x = np.asarray(x)
    flat = x.reshape(len(x), -1)
    if flat.dtype == np.uint8 and scale_uint8:
        t = torch.from_numpy(np.array(flat, copy=True)).to(dtype).div_(255.0)
    else:
        t = torch.from_numpy(np.array(flat, dtype=np.float64, copy=True)).to(dtype)
    return t.contiguous()


def _check_task(x_train, y_train, x_test, y_test):
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"examples and labels differ in number (train {len(x_train)} vs {len(y_train)}, "
                         f"test {len(x_test)} vs {len(y_test)})")
    y_train, y_test = np.asarray(y_train, np.int64), np.asarray(y_test, np.int64)
    if len(y_train) and y_train.min() < 0:
        raise ValueError("labels must be non-negative class indices")
    return y_train, y_test


def _check_subsets(subsets, seeds, n):
    subsets = [np.asarray(s, dtype=np.int64) for s in subsets]
    if len(subsets) != len(seeds):
        raise ValueError(f"{len(subsets)} subsets but {len(seeds)} seeds")
    for s in subsets:
        if len(s) == 0 or s.min() < 0 or s.max() >= n:
            raise ValueError(f"a subset is empty or holds positions outside 0..{n - 1}")
    return subsets, [int(s) for s in seeds]


def _groups_by_size(subsets, chunk: int):
    """Indices of models grouped by subset size, in chunks of at most ``chunk`` (input order kept)."""
    by = {}
    for q, s in enumerate(subsets):
        by.setdefault(len(s), []).append(q)
    for qs in by.values():
        for a in range(0, len(qs), chunk):
            yield qs[a:a + chunk]
