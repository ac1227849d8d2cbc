"""Feldman & Zhang's memorization and influence estimator as workflow stages
(workflow/rules/memorization.smk), and the tables and figures of its report section.

A *study* is one learning algorithm on one task, named in the config under ``memorization.studies``::

    mnist_mlp: {dataset: mnist, split: all, learner: mlp, features: pixels, t: 16, shard_size: 4, seed: 0,
                settings: {epochs: 10}}

``learner`` is one of :data:`LEARNERS` and ``features`` one of ``pixels`` (the dataset's images),
``embeddings`` (the memory study's backbone embeddings of the same split: the last-layer experiment)
or ``bits`` (the LUT study's binarization).  Stages: :func:`shard_stage` trains models
``start..stop-1`` (one job per shard) -> :func:`estimate_stage` (scores, high-influence pairs,
convergence) -> :func:`removal_stage`; then :func:`write_tables` and :func:`write_figures` across
studies.  Positions in the shards are the split's training/test order; exports carry the dataset's
original indices (``index``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from memgen import learners as L
from memgen.data import load_cache
from memgen.memorization import (ShardSpec, consistency_infl, consistency_mem, count_above, estimate,
                                 mem_histogram, removal_experiment, run_shard, summarize_removal)
from memgen.runtime import atomic_path, resolve_device
from memgen.splits import load_split

LEARNERS = ("mlp", "linear", "knn", "lut", "net")
FEATURES = ("pixels", "embeddings", "bits")
MEM_THETA = 0.25

# The document's last-layer experiment (CIFAR-100, ResNet50 representations; t = 4,000 models at m = 0.7 n).
PUBLISHED_LAST_LAYER = {
    "test accuracy, linear models on 70% (%)": 75.8,
    "test accuracy, backbone trained on 100% (%)": 75.9,
    "test accuracy, full networks on 70% (%)": 72.3,
    "examples with mem >= 0.25, linear models": 38,
    "examples with mem >= 0.25, full networks": 18099,
}


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


def load_task(study: dict, cache_path, split_path, embeddings_path=None, binarization: dict | None = None) -> Task:
    """The study's inputs: images, the backbone's embeddings of the same split, or binarized bits."""
    sp = load_split(split_path)
    features = study["features"]
    if features == "embeddings":
        if embeddings_path is None:
            raise ValueError("features 'embeddings' needs the memory study's embeddings of the same split")
        with np.load(embeddings_path) as e:
            if not (np.array_equal(e["train_ids"], sp.train_idx) and np.array_equal(e["test_ids"], sp.test_idx)):
                raise ValueError(f"{embeddings_path} was made from another split than {split_path}; rerun embed")
            x_train, x_test = e["train_emb"], e["test_emb"]
    else:
        ds = load_cache(cache_path)
        x_train, x_test = ds.x_train[sp.train_idx], ds.x_test[sp.test_idx]
        if features == "bits":
            from memgen.lut import binarize
            from memgen.lut_study import binarize_args

            if not binarization:
                raise ValueError("features 'bits' needs the dataset's entry under lut.binarize in the config")
            args = binarize_args(binarization)
            x_train, x_test = binarize(x_train, **args), binarize(x_test, **args)
    return Task(x_train, sp.train_y, x_test, sp.test_y, sp.train_idx, sp.test_idx, list(sp.class_names))


def build_learner(study: dict, task: Task, device: str = "auto", show_progress: bool = True):
    """The study's learner (see :mod:`memgen.learners`) on its task, with the study's ``settings``."""
    kind, s = study["learner"], dict(study.get("settings") or {})
    args = (task.x_train, task.y_train, task.x_test, task.y_test)
    n_classes = len(task.class_names)
    if kind == "mlp":
        s["hidden"] = tuple(s.get("hidden", (512, 256)))
        return L.MLPLearner(*args, n_classes=n_classes, device=device, show_progress=show_progress, **s)
    if kind == "linear":
        return L.LinearProbe(*args, n_classes=n_classes, device=device, show_progress=show_progress, **s)
    if kind == "knn":
        return L.KNNLearner(*args, device=resolve_device(device), **s)
    if kind == "lut":
        k, width, depth = int(s.get("k", 8)), int(s.get("width", 1024)), int(s.get("depth", 5))
        from memgen.lut_study import lut_device

        return L.LUTLearner(*args, k=k, widths=(width,) * depth, device=lut_device(device))
    if kind == "net":
        return L.NetLearner(*args, settings=s, n_classes=n_classes, device=device, show_progress=show_progress)
    raise ValueError(f"unknown learner '{kind}'; use one of {LEARNERS}")


# -------------------------------------------------------------------------------------------------- stages
def shard_stage(study: dict, task: Task, start: int, stop: int, out_path, *, ratio: float, device: str = "auto",
                models_per_call: int | None = None) -> None:
    """Train models ``start..stop-1`` of the study and write their shard (masks, correctness, scores)."""
    learner = build_learner(study, task, device=device)
    spec = ShardSpec.for_learner(learner, ratio=ratio, seed=int(study["seed"]))
    run_shard(learner, spec, start, stop, out_path, models_per_call=models_per_call)


def _write_csv(path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def _write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, default=float))


def estimate_stage(name: str, study: dict, task: Task, shard_paths: list, outputs: dict, *,
                   influence: dict, device: str = "auto") -> dict:
    """Memorization, held-out accuracy and influence from the study's shards; writes ``outputs``
    (scores_csv, scores_npz, pairs, influencers, convergence, summary) and returns the summary."""
    est = estimate(list(shard_paths), t=int(study["t"]), infl_threshold=influence["threshold"],
                   mem_threshold=influence["mem_threshold"], top_k=influence["top_k"],
                   influence_rows=influence["rows"], device=resolve_device(device),
                   train_index=task.train_index, test_index=task.test_index, y_train=task.y_train,
                   y_test=task.y_test)
    est.write_scores(outputs["scores_csv"], outputs["scores_npz"])
    est.write_pairs(outputs["pairs"])
    _write_csv(outputs["influencers"], est.top_influencers_frame())
    _write_csv(outputs["convergence"], est.convergence.assign(study=name))
    prob = est.stats["prob"]["mem"] if "prob" in est.stats else np.full(est.spec.n_train, np.nan)
    summary = {
        "study": name, "dataset": study["dataset"], "split": study["split"], "learner": study["learner"],
        "features": study["features"], "learner_name": est.spec.learner, "t": est.t, "ratio": est.spec.ratio,
        "seed": est.spec.seed, "n_train": est.spec.n_train, "n_test": est.spec.n_test,
        "test_acc_mean": float(np.mean(est.model_test_acc)), "test_acc_std": float(np.std(est.model_test_acc)),
        "n_mem_ge_0.25": int(np.sum(est.mem >= MEM_THETA)), "n_mem_prob_ge_0.25": int(np.sum(prob >= MEM_THETA)),
        "mean_mem": float(np.nanmean(est.mem)), "median_mem_se": float(np.nanmedian(est.mem_se)),
        "n_pairs": int(len(est.pairs)) if est.pairs is not None else 0,
        "timings_s": est.timings,
    }
    _write_json(outputs["summary"], summary)
    return summary


def removal_stage(study: dict, task: Task, scores_npz, out_csv, *, thetas, trials: int, device: str = "auto") -> None:
    """Figure 2: retrain without the examples with ``mem >= theta`` and without as many random ones."""
    with np.load(scores_npz) as z:
        mem = z["mem"]
    learner = build_learner(study, task, device=device)
    df = removal_experiment(learner, mem, thetas, trials=trials, seed=int(study["seed"]))
    _write_csv(out_csv, df)


# -------------------------------------------------------------------------------------------------- tables
def read_summaries(paths: dict) -> pd.DataFrame:
    rows = []
    for name, path in paths.items():
        s = json.loads(Path(path).read_text())
        s.pop("timings_s", None)
        rows.append(s)
    return pd.DataFrame(rows)


def load_mem(scores_npz) -> np.ndarray:
    with np.load(scores_npz) as z:
        return z["mem"]


def consistency_table(pairs_of_studies, scores: dict, pair_csvs: dict, thetas, infl_thetas) -> pd.DataFrame:
    """Figure 7: D_mem / J_mem (and J_infl / D_infl on the pairs both kept) between two studies of the
    same training set, for every configured pair."""
    frames = []
    for a, b in pairs_of_studies:
        ma, mb = load_mem(scores[a]), load_mem(scores[b])
        if ma.shape != mb.shape:
            raise ValueError(f"consistency pair ({a}, {b}): the studies have different training sets "
                             f"({len(ma)} vs {len(mb)} examples); compare studies of the same dataset and split")
        m = consistency_mem(ma, mb, thetas).assign(kind="mem")
        pa, pb = pd.read_csv(pair_csvs[a]), pd.read_csv(pair_csvs[b])
        i = consistency_infl(pa, pb, infl_thetas).assign(kind="infl")
        frames.append(pd.concat([m, i], ignore_index=True).assign(a=a, b=b))
    cols = ["a", "b", "kind", "theta", "n_a", "n_b", "n_union", "D_mem", "J_mem", "J_infl", "D_infl_common"]
    if not frames:
        return pd.DataFrame(columns=cols)
    df = pd.concat(frames, ignore_index=True)
    return df.reindex(columns=cols)


def last_layer_table(summaries: pd.DataFrame, linear: str | None, network: str | None,
                     backbone_metrics: dict | None) -> pd.DataFrame:
    """The document's last-layer finding beside this run: linear models on frozen features against
    full networks (published: CIFAR-100 / ResNet50; measured: the configured studies)."""
    by = summaries.set_index("study") if len(summaries) else pd.DataFrame()

    def get(study, col, scale=1.0):
        return float(by.loc[study, col]) * scale if study and study in by.index else np.nan


    backbone = (backbone_metrics or {}).get("test_accuracy")
    measured = {
        "test accuracy, linear models on 70% (%)": get(linear, "test_acc_mean", 100),
        "test accuracy, backbone trained on 100% (%)": np.nan if backbone is None else 100 * backbone,
        "test accuracy, full networks on 70% (%)": get(network, "test_acc_mean", 100),
        "examples with mem >= 0.25, linear models": get(linear, "n_mem_ge_0.25"),
        "examples with mem >= 0.25, full networks": get(network, "n_mem_ge_0.25"),
    }
    notes = {
        "test accuracy, backbone trained on 100% (%)": "the memory study's backbone of the same split",
        "test accuracy, full networks on 70% (%)": f"study {network}" if network else "not configured at this preset",
        "examples with mem >= 0.25, full networks": f"study {network}" if network else "not configured at this preset",
        "test accuracy, linear models on 70% (%)": f"study {linear}",
        "examples with mem >= 0.25, linear models": f"study {linear}",
    }
    rows = [{"quantity": q, "published (CIFAR-100, ResNet50)": p, "measured": measured[q], "note": notes[q]}
            for q, p in PUBLISHED_LAST_LAYER.items()]
    return pd.DataFrame(rows)


def backbone_test_accuracy(embeddings_path) -> dict:
    """Test accuracy of the backbone whose embeddings a study uses (from its stored logits)."""
    with np.load(embeddings_path) as e:
        return {"test_accuracy": float(np.mean(e["test_logits"].argmax(1) == e["test_y"]))}


def write_tables(studies: dict, inputs: dict, outputs: dict, *, consistency, last_layer: dict,
                 thetas, infl_thetas, backbone_embeddings=None) -> None:
    """Every table of the report section (see workflow/rules/memorization.smk for the files)."""
    summaries = read_summaries(inputs["summaries"])
    counts = []
    hist = []
    for name in studies:
        mem = load_mem(inputs["scores"][name])
        counts.append(count_above(mem, thetas).query("`class` == 'all'").drop(columns="class").assign(study=name))
        hist.append(mem_histogram(mem).assign(study=name))
    summary = summaries.merge(pd.concat(counts).pivot(index="study", columns="theta", values="count")
                              .rename(columns=lambda th: f"count_mem_ge_{th:g}").reset_index(), on="study")
    _write_csv(outputs["summary"], summary)
    _write_csv(outputs["histograms"], pd.concat(hist, ignore_index=True))
    conv = pd.concat([pd.read_csv(p) for p in inputs["convergence"].values()], ignore_index=True)
    _write_csv(outputs["convergence"], conv)
    _write_csv(outputs["consistency"], consistency_table(consistency, inputs["scores"], inputs["pairs"], thetas,
                                                         infl_thetas))
    removal = [summarize_removal(pd.read_csv(p)).assign(study=s) for s, p in inputs["removal"].items()]
    _write_csv(outputs["removal"], pd.concat(removal, ignore_index=True) if removal else
               pd.DataFrame(columns=["theta", "kind", "test_acc_mean", "test_acc_std", "trials", "n_removed",
                                     "frac_remaining", "study"]))
    metrics = backbone_test_accuracy(backbone_embeddings) if backbone_embeddings else None
    _write_csv(outputs["last_layer"], last_layer_table(summaries, last_layer.get("linear"), last_layer.get("network"),
                                                       metrics))
