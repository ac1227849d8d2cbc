"""A study's subsets, seeds and shard files (Feldman & Zhang 2020, Algorithm 1, step 1-2).

:class:`ShardSpec` fixes the study: ``n_train``, ``n_test``, the subset ratio ``m/n`` and a base seed.  The subset
of model ``k`` and its training seed are pure functions of ``(seed, k)`` (``numpy.random.SeedSequence([seed,
k])``), so results never depend on how the ``t`` trainings are cut into shards, in which order shards run, or
how many models a learner trains at once.  :func:`run_shard` trains models ``start..stop-1`` with a learner (see
:mod:`memgen.influence.learners`) and writes one npz: subset masks, 0/1 correctness and the true-class
probability and margin on every training and test example (``models_{start:06d}-{stop:06d}.npz``: ``meta``
json, ``model_ids``, ``model_seeds``, ``masks``/``correct_*`` as packed bits, ``prob_*``/``margin_*`` as
float16).  The workflow runs one :func:`run_shard` job per range of :func:`shard_ranges`; :func:`collect_shards`
checks and orders the files an estimate reads (Snakemake resumes an interrupted study and, when ``t`` grows,
trains only the new shards).
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from memgen.influence.learners import Outputs
from memgen.runtime import atomic_path

FORMAT_VERSION = 1


class ShardError(RuntimeError):
    """Shards are missing, corrupt or belong to another study."""


# --- seeds and subsets ----------------------------------------------------------------------------

def subset_size(n: int, ratio: float) -> int:
    """``m = round(ratio * n)``; at least one example in and one out of every subset."""
    if not 0.0 < float(ratio) < 1.0:
        raise ValueError(f"subset ratio {ratio} must lie strictly between 0 and 1 (the paper uses 0.7)")
    m = int(round(float(ratio) * n))
    if not 1 <= m <= n - 1:
        raise ValueError(f"subset ratio {ratio} gives m={m} of n={n}: every subset must leave at least one "
                         f"example in and one out; use a ratio further from 0 and 1 or more examples")
    return m


def _seq(seed: int, k: int, stream: int) -> np.random.SeedSequence:
    if int(seed) < 0 or int(k) < 0:
        raise ValueError(f"seed ({seed}) and model id ({k}) must be non-negative integers")
    return np.random.SeedSequence([int(seed), int(k)], spawn_key=(stream,))


def subset_indices(n: int, m: int, seed: int, k: int) -> np.ndarray:
    """Sorted indices of the ``m`` training examples of model ``k``: a pure function of ``(seed, k)``."""
    rng = np.random.default_rng(_seq(seed, k, 0))
    return np.sort(rng.permutation(n)[:m]).astype(np.int64)


def model_seed(seed: int, k: int) -> int:
    """Training seed (63-bit) of model ``k``: a pure function of ``(seed, k)``, independent of the subset."""
    return int(_seq(seed, k, 1).generate_state(1, np.uint64)[0] >> np.uint64(1))


def study_seed(name: str, base_seed: int = 0) -> int:
    """Default seed of a study: derived from its name (and the top-level seed), so that two studies draw
    independent subsets unless the config gives them the same ``seed`` on purpose."""
    return (zlib.crc32(name.encode()) + int(base_seed)) % 2 ** 31


def labels_digest(y_train: np.ndarray, y_test: np.ndarray) -> str:
    """Short digest of the task labels, stored in shards so that shards of another task are rejected."""
    h = hashlib.sha1()
    for y in (y_train, y_test):
        h.update(np.ascontiguousarray(np.asarray(y, dtype=np.int64)).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class ShardSpec:
    """Everything that determines the models of a study, except the learner's own code.

    ``learner`` is a free tag (e.g. ``"mlp-e10"``) and ``labels`` a :func:`labels_digest`; a shard
    whose spec differs in any field is not used.
    """

    n_train: int
    n_test: int
    ratio: float = 0.7
    seed: int = 0
    learner: str = ""
    labels: str = ""

    @classmethod
    def for_learner(cls, learner, ratio: float = 0.7, seed: int = 0, tag: str | None = None) -> "ShardSpec":
        return cls(n_train=int(learner.n_train), n_test=int(learner.n_test), ratio=float(ratio), seed=int(seed),
                   learner=tag if tag is not None else getattr(learner, "name", ""),
                   labels=labels_digest(learner.y_train, learner.y_test))

    def __post_init__(self):
        subset_size(self.n_train, self.ratio)  # validates
        if self.n_test < 0:
            raise ValueError(f"n_test={self.n_test} must be >= 0")

    @property
    def m(self) -> int:
        return subset_size(self.n_train, self.ratio)

    def subset(self, k: int) -> np.ndarray:
        return subset_indices(self.n_train, self.m, self.seed, k)

    def mask(self, k: int) -> np.ndarray:
        mask = np.zeros(self.n_train, dtype=bool)
        mask[self.subset(k)] = True
        return mask

    def masks(self, ids: Iterable[int]) -> np.ndarray:
        ids = [int(k) for k in ids]
        out = np.zeros((len(ids), self.n_train), dtype=bool)
        for r, k in enumerate(ids):
            out[r, self.subset(k)] = True
        return out

    def model_seed(self, k: int) -> int:
        return model_seed(self.seed, k)

    def to_meta(self) -> dict:
        return {"n_train": self.n_train, "n_test": self.n_test, "ratio": self.ratio, "seed": self.seed,
                "learner": self.learner, "labels": self.labels}

    @classmethod
    def from_meta(cls, meta: dict) -> "ShardSpec":
        return cls(**{k: meta[k] for k in ("n_train", "n_test", "ratio", "seed", "learner", "labels")})


# --- shards ---------------------------------------------------------------------------------------

def shard_ranges(t: int, shard_size: int) -> list[tuple[int, int]]:
    """``[(0, s), (s, 2s), ..., (.., t)]``: the model ranges of ``t`` models in shards of ``shard_size``."""
    if t < 1 or shard_size < 1:
        raise ValueError(f"t={t} and shard_size={shard_size} must be positive")
    return [(a, min(a + shard_size, t)) for a in range(0, t, shard_size)]


def shard_path(directory: str | os.PathLike, start: int, stop: int) -> Path:
    return Path(directory) / f"models_{start:06d}-{stop:06d}.npz"


def run_shard(learner, spec: ShardSpec, start: int, stop: int, path: str | os.PathLike | None = None,
              models_per_call: int | None = None) -> dict:
    """Train models ``start..stop-1`` and return (and write to ``path``, atomically) the shard arrays.

    ``models_per_call`` bounds how many models the learner gets at once (memory); it does not
    change any result.
    """
    if not 0 <= start < stop:
        raise ValueError(f"bad model range {start}..{stop}")
    if (learner.n_train, learner.n_test) != (spec.n_train, spec.n_test):
        raise ValueError(f"learner has {learner.n_train} train / {learner.n_test} test examples but the spec "
                         f"says {spec.n_train} / {spec.n_test}; build both from the same data")
    if spec.labels and spec.labels != labels_digest(learner.y_train, learner.y_test):
        raise ValueError("the learner's labels differ from the spec's (labels digest); build both from the same task")
    ids = np.arange(start, stop, dtype=np.int64)
    step = models_per_call or len(ids)
    parts = []
    for a in range(0, len(ids), step):
        chunk = ids[a:a + step]
        subsets = [spec.subset(int(k)) for k in chunk]
        seeds = [spec.model_seed(int(k)) for k in chunk]
        out = learner.fit_predict(subsets, seeds)
        out.check(len(chunk), spec.n_train, spec.n_test)
        parts.append(out)
    out = Outputs.concat(parts)
    masks = spec.masks(ids)
    arrays = {
        "meta": np.array(json.dumps({**spec.to_meta(), "start": int(start), "stop": int(stop),
                                     "format": FORMAT_VERSION})),
        "model_ids": ids,
        "model_seeds": np.array([spec.model_seed(int(k)) for k in ids], dtype=np.int64),
        "masks": np.packbits(masks, axis=1),
        "correct_train": np.packbits(out.correct_train, axis=1),
        "correct_test": np.packbits(out.correct_test, axis=1),
        "prob_train": out.prob_train.astype(np.float16),
        "prob_test": out.prob_test.astype(np.float16),
        "margin_train": _to_f16(out.margin_train),
        "margin_test": _to_f16(out.margin_test),
    }
    if hasattr(learner, "training_step"):   # how its training step ran (the MLP: compiled or eager, and why)
        arrays["training_step"] = np.array(json.dumps(learner.training_step))
    if path is not None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
    return arrays


def _to_f16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.float32), -6e4, 6e4).astype(np.float16)


def check_shard(path: str | os.PathLike, spec: ShardSpec | None = None, deep: bool = True) -> dict:
    """Return the shard's meta if it is readable, complete and (when given) belongs to ``spec``; else raise.

    ``deep`` also checks that the stored subset of the shard's first model is the one the spec
    prescribes (catches a changed ratio or seed even in hand-made shards).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            k = int(meta["stop"]) - int(meta["start"])
            n, n_test = int(meta["n_train"]), int(meta["n_test"])
            shapes = {"model_ids": (k,), "masks": (k, (n + 7) // 8), "correct_train": (k, (n + 7) // 8),
                      "correct_test": (k, (n_test + 7) // 8), "prob_train": (k, n), "prob_test": (k, n_test),
                      "margin_train": (k, n), "margin_test": (k, n_test)}
            for key, shape in shapes.items():
                if z[key].shape != shape:
                    raise ShardError(f"shard {path}: '{key}' has shape {z[key].shape}, expected {shape}")
            if not np.array_equal(z["model_ids"], np.arange(meta["start"], meta["stop"])):
                raise ShardError(f"shard {path}: model ids do not match its range {meta['start']}..{meta['stop']}")
            first_mask = np.unpackbits(z["masks"][0], count=n).astype(bool) if deep else None
    except ShardError:
        raise
    except Exception as err:  # truncated file, bad zip, missing key, bad json
        raise ShardError(f"shard {path} is unreadable or incomplete ({type(err).__name__}: {err}); delete it "
                         f"and run the shard again") from err
    if meta.get("format") != FORMAT_VERSION:
        raise ShardError(f"shard {path} has format {meta.get('format')}, expected {FORMAT_VERSION}; rerun it")
    if spec is not None:
        other = ShardSpec.from_meta(meta)
        if other != spec:
            diff = {k: (v, getattr(spec, k)) for k, v in other.to_meta().items() if v != getattr(spec, k)}
            raise ShardError(f"shard {path} belongs to another study (stored vs expected: {diff}); "
                             f"use another shard directory or delete it")
        if deep and not np.array_equal(first_mask, spec.mask(int(meta["start"]))):
            raise ShardError(f"shard {path}: stored subset of model {meta['start']} differs from the one the "
                             f"seed prescribes; it was made by other code; delete it and rerun")
    return meta


def _cover(found: list[tuple[int, int, Path]], t: int):
    """Greedy cover of models ``0..t-1``: segments (path, row_lo, row_hi, first_model) and missing ranges."""
    segments, missing = [], []
    pos = 0
    while pos < t:
        best = None
        for a, b, p in found:
            if a <= pos < b and (best is None or b > best[1]):
                best = (a, b, p)
        if best is None:
            nxt = min([a for a, _, _ in found if a > pos] + [t])
            missing.append((pos, nxt))
            pos = nxt
            continue
        a, b, p = best
        hi = min(b, t)
        segments.append((p, pos - a, hi - a, pos))
        pos = hi
    return segments, missing


def collect_shards(paths: Sequence, spec: ShardSpec | None = None, t: int | None = None):
    """Segments ``(path, row_lo, row_hi, first_model)`` covering models ``0..t-1`` and the spec.

    ``paths`` are shard files (each checked with :func:`check_shard`; all must share one spec, ``spec``
    when given).  ``t=None`` takes the largest ``t`` covered without a gap.  A gap raises
    :class:`ShardError` naming the missing models.
    """
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError(f"pass the list of shard files, not {paths}")
    found = []
    for p in paths:
        meta = check_shard(p, spec, deep=spec is not None)
        s = ShardSpec.from_meta(meta)
        if spec is None:
            spec = s
        elif s != spec:
            raise ShardError(f"shard {p} belongs to another study than the other shards ({s} vs {spec})")
        found.append((int(meta["start"]), int(meta["stop"]), Path(p)))
    if not found:
        raise ShardError("no shard given; run the study's shards first (the workflow's influence_shard rule)")
    if t is None:
        _, missing = _cover(found, max(b for _, b, _ in found))
        t = missing[0][0] if missing else max(b for _, b, _ in found)
        if t == 0:
            raise ShardError("no shard starts at model 0; run the shard with models 0..")
    segments, missing = _cover(found, t)
    if missing:
        raise ShardError(f"models {', '.join(f'{a}..{b - 1}' for a, b in missing)} of t={t} have no shard; "
                         f"run them (the influence_shard rule) or lower t")
    return segments, spec, t


def read_rows(path: Path, lo: int, hi: int, spec: ShardSpec, keys: Sequence[str]) -> dict:
    """Rows ``lo..hi-1`` of a shard's arrays ``keys``, packed bits unpacked to bool."""
    out = {}
    with np.load(path, allow_pickle=False) as z:
        for key in keys:
            a = z[key][lo:hi]
            if key in ("masks", "correct_train"):
                a = np.unpackbits(a, axis=1, count=spec.n_train).astype(bool)
            elif key == "correct_test":
                a = np.unpackbits(a, axis=1, count=spec.n_test).astype(bool)
            out[key] = a
    return out
