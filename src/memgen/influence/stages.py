"""Feldman & Zhang's memorization and influence estimator as workflow stages (workflow/rules/influence.smk):
what the rule scripts call.

A *study* is one learning algorithm on one task, named in the config under ``influence.studies``::

    mnist_mlp: {dataset: mnist, split: all, learner: mlp, features: pixels, t: 16, shard_size: 4, seed: 0,
                settings: {epochs: 10}}

``learner`` is a name of :data:`memgen.influence.learners.LEARNERS` and ``features`` one of :data:`FEATURES`:
``pixels`` (the dataset's images), ``embeddings`` (the retrieval study's backbone embeddings of the same split:
the last-layer experiment) or ``bits`` (the LUT study's binarization).  Stages: :func:`shard_stage` trains models
``start..stop-1`` (one job per shard) -> :func:`estimate_stage` (scores, high-influence pairs, convergence) ->
:func:`removal_stage`; the tables and figures across studies are :mod:`memgen.influence.tables` and
:mod:`memgen.influence.figures`.  Positions in the shards are the split's training/test order; exports carry the
dataset's original indices (``index``).
"""

from __future__ import annotations

import inspect
import shutil
from dataclasses import dataclass

import numpy as np

from memgen.data import load_cache
from memgen.influence.estimator import ShardSpec, estimate, model_seed, removal_experiment, run_shard
from memgen.influence.learners import LEARNERS
from memgen.learning_speed import LearningSpeedRecorder, shard_arrays
from memgen.runtime import resolve_device, resolve_precision, save_npz, write_csv, write_json
from memgen.splits import load_split


def records_learning(learner: str) -> bool:
    """Whether the learner takes a ``record`` callback (trains by minibatches): its shards keep each example's
    learning speed (memgen.learning_speed). Looks up (imports) that learner only."""
    return "record" in inspect.signature(LEARNERS[learner]).parameters


MEM_THETA = 0.25


# ------------------------------------------------------------------------------------------------ the task
@dataclass
class Task:
    """Training and test inputs of a study, labels, and the dataset indices of both (for exports and images)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray
    class_names: list


def _pixels(sp, cache_path, split_path, embeddings_path, binarization):
    ds = load_cache(cache_path)
    return ds.x_train[sp.train_idx], ds.x_test[sp.test_idx]


def _embeddings(sp, cache_path, split_path, embeddings_path, binarization):
    if embeddings_path is None:
        raise ValueError("features 'embeddings' needs the retrieval study's embeddings of the same split")
    with np.load(embeddings_path) as e:
        if not (np.array_equal(e["train_ids"], sp.train_idx) and np.array_equal(e["test_ids"], sp.test_idx)):
            raise ValueError(f"{embeddings_path} was made from another split than {split_path}; rerun embed")
        return e["train_emb"], e["test_emb"]


def _bits(sp, cache_path, split_path, embeddings_path, binarization):
    from memgen.bits import binarize, binarize_args

    if not binarization:
        raise ValueError("features 'bits' needs the dataset's entry under lut.binarize in the config")
    args = binarize_args(binarization)
    x_train, x_test = _pixels(sp, cache_path, split_path, embeddings_path, binarization)
    return binarize(x_train, **args), binarize(x_test, **args)


# The inputs a study can learn from (config ``features``): ``(split, cache, split path, embeddings, binarization)
# -> (x_train, x_test)`` in the split's order.
FEATURES = {"pixels": _pixels, "embeddings": _embeddings, "bits": _bits}


def load_task(study: dict, cache_path, split_path, embeddings_path=None, binarization: dict | None = None) -> Task:
    """The study's inputs (its :data:`FEATURES` kind) with the split's labels and dataset indices."""
    features = study["features"]
    if features not in FEATURES:
        raise ValueError(f"unknown features '{features}'; use one of {list(FEATURES)}")
    sp = load_split(split_path)
    x_train, x_test = FEATURES[features](sp, cache_path, split_path, embeddings_path, binarization)
    return Task(x_train, sp.train_y, x_test, sp.test_y, sp.train_idx, sp.test_idx, list(sp.class_names))


def study_precision(study: dict, device: str = "auto", precision: str = "auto") -> str:
    """The arithmetic the study's learner uses: :func:`memgen.runtime.resolve_precision` for the learners that
    train with bf16 products (``mixed_precision``: mlp, net), fp32 for the others (k-NN, LUT, linear probe)."""
    resolved = resolve_precision(precision, resolve_device(device))
    return resolved if getattr(LEARNERS[study["learner"]], "mixed_precision", False) else "fp32"


def build_learner(study: dict, task: Task, device: str = "auto", show_progress: bool = True,
                  precision: str = "auto"):
    """The study's learner (a :data:`memgen.influence.learners.LEARNERS` class) on its task, with its ``settings``
    and, for learners with ``mixed_precision``, the ``precision`` setting."""
    kind = study["learner"]
    if kind not in LEARNERS:
        raise ValueError(f"unknown learner '{kind}'; use one of {list(LEARNERS)}")
    cls = LEARNERS[kind]
    extra = {"precision": precision} if getattr(cls, "mixed_precision", False) else {}
    return cls.from_settings(task.x_train, task.y_train, task.x_test, task.y_test,
                             dict(study.get("settings") or {}), n_classes=len(task.class_names),
                             device=device, show_progress=show_progress, **extra)


# -------------------------------------------------------------------------------------------------- stages
def shard_stage(study: dict, task: Task, start: int, stop: int, out_path, *, ratio: float, device: str = "auto",
                models_per_call: int | None = None, precision: str = "auto",
                checkpoint_dir=None, checkpoint_every_s: float = 300.0) -> None:
    """Train models ``start..stop-1`` of the study and write their shard (masks, correctness, scores); for
    learners that :func:`records_learning` also each model's learning-speed sums (``learn_*``,
    :func:`memgen.learning_speed.shard_arrays`).
    Learners that train networks keep resume files in ``checkpoint_dir`` (see
    :meth:`memgen.influence.learners.net.NetLearner.checkpoint_to`), removed once the shard is written."""
    seed = int(study["seed"])
    learner = build_learner(study, task, device=device, precision=precision)
    if checkpoint_dir and hasattr(learner, "checkpoint_to"):
        learner.checkpoint_to(checkpoint_dir, checkpoint_every_s)
    recorder = None
    if records_learning(study["learner"]):
        recorder = LearningSpeedRecorder(len(task.y_train), models=[model_seed(seed, k) for k in range(start, stop)])
        learner.record = recorder
    spec = ShardSpec.for_learner(learner, ratio=ratio, seed=seed)
    arrays = run_shard(learner, spec, start, stop, models_per_call=models_per_call)
    if recorder is not None:
        arrays.update(shard_arrays(recorder))
    save_npz(out_path, **arrays)
    if checkpoint_dir:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


def estimate_stage(name: str, study: dict, task: Task, shard_paths: list, outputs: dict, *,
                   influence: dict, precision: dict, device: str = "auto", training_precision: str = "auto") -> dict:
    """Memorization, held-out accuracy and influence from the study's shards; writes ``outputs``
    (scores_csv, scores_npz, pairs, influencers, convergence, summary) and returns the summary.

    The summary gives the count of ``mem >= 0.25`` two ways (point, lower end of the interval), each with the
    expected number of false discoveries among it and the count expected if nothing were memorized, the t needed
    for ``precision`` (``half_width`` of the 95% interval at 0.25 for a ``fraction`` of the examples), and the
    arithmetic the shards' models trained in (``training_precision``: the same ``device`` and config
    ``precision`` settings)."""
    target = (float(precision["half_width"]), float(precision["fraction"]))
    est = estimate(list(shard_paths), t=int(study["t"]), infl_threshold=influence["threshold"],
                   mem_threshold=influence["mem_threshold"], top_k=influence["top_k"],
                   influence_rows=influence["rows"], precision=target, device=resolve_device(device),
                   train_index=task.train_index, test_index=task.test_index, y_train=task.y_train,
                   y_test=task.y_test)
    est.write_scores(outputs["scores_csv"], outputs["scores_npz"])
    est.write_pairs(outputs["pairs"])
    write_csv(outputs["influencers"], est.top_influencers_frame())
    write_csv(outputs["convergence"], est.convergence.assign(study=name))
    counts = est.threshold_counts([MEM_THETA]).iloc[0]
    prob = est.stats["prob"]["mem"] if "prob" in est.stats else np.full(est.spec.n_train, np.nan)
    summary = {
        "study": name, "dataset": study["dataset"], "split": study["split"], "learner": study["learner"],
        "features": study["features"], "learner_name": est.spec.learner,
        "training_precision": study_precision(study, device, training_precision), "t": est.t,
        "ratio": est.spec.ratio,
        "seed": est.spec.seed, "n_train": est.spec.n_train, "n_test": est.spec.n_test,
        "test_acc_mean": float(np.mean(est.model_test_acc)), "test_acc_std": float(np.std(est.model_test_acc)),
        "n_mem_ge_0.25": int(counts["count"]), "n_mem_lower_ge_0.25": int(counts["count_lower"]),
        "false_n_mem_ge_0.25": float(counts["false_count"]),
        "false_n_mem_lower_ge_0.25": float(counts["false_count_lower"]),
        "chance_n_mem_ge_0.25": float(counts["chance_count"]),
        "chance_n_mem_lower_ge_0.25": float(counts["chance_count_lower"]),
        "n_mem_prob_ge_0.25": int(np.sum(prob >= MEM_THETA)),
        "mean_mem": float(np.nanmean(est.mem)), "median_mem_se": float(np.nanmedian(est.mem_se)),
        "median_mem_interval_width": float(np.nanmedian(est.mem_hi - est.mem_lo)),
        "precision_half_width": target[0], "precision_fraction": target[1],
        "t_for_precision": est.t_for_precision(MEM_THETA, *target),
        "n_pairs": int(len(est.pairs)) if est.pairs is not None else 0,
        "timings_s": est.timings,
    }
    write_json(outputs["summary"], summary)
    return summary


def removal_stage(study: dict, task: Task, scores_npz, out_csv, *, thetas, trials: int, device: str = "auto",
                  precision: str = "auto") -> None:
    """Figure 2: retrain without the examples with ``mem >= theta`` and without as many random ones.

    Trials of the linear probe use batch order ``order_seed + r`` (trial r); the table marks whether the
    representation was retrained (``features: embeddings``: no) and whether the trials can differ."""
    with np.load(scores_npz) as z:
        mem = z["mem"]
    learner = build_learner(study, task, device=device, precision=precision)
    trial_learner = None
    if study["learner"] == "linear":
        settings = dict(study.get("settings") or {})
        base = int(settings.get("order_seed", 0))

        def trial_learner(r):
            return learner if r == 0 else build_learner(
                {**study, "settings": {**settings, "order_seed": base + r}}, task, device=device,
                precision=precision)
    df = removal_experiment(learner, mem, thetas, trials=trials, seed=int(study["seed"]), trial_learner=trial_learner)
    df["representation_retrained"] = study["features"] != "embeddings"
    df["seeded_trials"] = study["learner"] != "knn"      # a k-NN is a function of its training set
    write_csv(out_csv, df)
