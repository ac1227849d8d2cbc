"""The memorization proxies (:mod:`memgen.proxies`) as workflow stages (workflow/rules/proxies.smk): the proxy
of an estimator study's own models, neighbourhood proxies, the validation table against every estimate on the
same examples (the report's figures are in :mod:`memgen.proxies.figures`).

A proxy *source* is one CSV with ``index`` (dataset index), ``label`` and proxy columns: a backbone's learning
speed (``results/retrieval/{dataset}/{split}/proxies.csv``, written by ``train_backbone``), the learning speed of
an estimator study's models (``results/influence/{study}/proxies.csv``) or a neighbourhood proxy
(``results/proxies/{dataset}/{split}/neighbourhood_{features}.csv``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from memgen.data import load_cache
from memgen.learning_speed import LEARNING_PROXIES, from_shards
from memgen.proxies.neighbourhood import NEIGHBOURHOOD_PROXIES, neighbourhood_proxies, pca_features
from memgen.proxies.validation import validate
from memgen.runtime import resolve_device, write_csv
from memgen.splits import load_split

FEATURES = ("pixels", "embeddings")
# A source is compared with a study when it covers at least this share of the study's training examples.
MIN_COVERAGE = 0.5


def study_proxies_stage(shard_paths, split_path, out_csv, out_npz) -> None:
    """The learning-speed proxy over all models of an estimator study (from the records in its shards)."""
    sp = load_split(split_path)
    ls = from_shards(shard_paths)
    if len(ls.learn_prob) != len(sp.train_y):
        raise ValueError(f"the shards record {len(ls.learn_prob)} training examples but {split_path} has "
                         f"{len(sp.train_y)}; rerun the study's shards")
    ls.write(out_csv, out_npz, index=sp.train_idx, label=sp.train_y)


def neighbourhood_stage(features: str, split_path, out_csv, *, cache_path=None, embeddings_path=None, k: int = 20,
                        pca: int | None = 64, device: str = "cpu") -> pd.DataFrame:
    """Neighbourhood proxies of a split's training examples on ``pixels`` (projected on ``pca`` principal
    components) or on the backbone's ``embeddings`` of the same split."""
    sp = load_split(split_path)
    if features == "embeddings":
        with np.load(embeddings_path) as e:
            if not np.array_equal(e["train_ids"], sp.train_idx):
                raise ValueError(f"{embeddings_path} was made from another split than {split_path}; rerun embed")
            x = e["train_emb"]
    elif features == "pixels":
        x = pca_features(load_cache(cache_path).x_train[sp.train_idx], pca)
    else:
        raise ValueError(f"unknown features '{features}'; use one of {FEATURES}")
    df = neighbourhood_proxies(x, sp.train_y, k=k, device=resolve_device(device))
    df.insert(0, "label", sp.train_y)
    df.insert(0, "index", sp.train_idx)
    write_csv(out_csv, df)
    return df


def proxy_names(frame: pd.DataFrame) -> list[str]:
    return [c for c in (*LEARNING_PROXIES, *NEIGHBOURHOOD_PROXIES) if c in frame.columns]


def validation_table(studies: dict, scores: dict, sources: dict, *, top_fraction: float = 0.01,
                     seed: int = 0) -> pd.DataFrame:
    """Every proxy of every source against every estimator study on the same dataset and task that the source
    covers (at least :data:`MIN_COVERAGE` of the study's training examples, with the same labels).

    ``studies``: name -> study config (dataset, learner, t); ``scores``: name -> scores.csv;
    ``sources``: name -> ``{"path", "dataset", "kind", "study"}`` (``study``: the estimator study whose own
    models recorded it, else None)."""
    rows = []
    for name, study in studies.items():
        sc = pd.read_csv(scores[name])
        for source, info in sources.items():
            if info["dataset"] != study["dataset"]:
                continue
            px = pd.read_csv(info["path"])
            common = sc[["index", "label"]].merge(px[["index", "label"]], on="index", suffixes=("", "_proxy"))
            coverage = len(common) / len(sc)
            if coverage < MIN_COVERAGE or not (common["label"] == common["label_proxy"]).all():
                continue   # another task on the same images (binary, random labels) or too few shared examples
            table = validate(sc, px, proxy_names(px), top_fraction=top_fraction, seed=seed)
            same_models = info.get("study") == name
            table["note"] = [("same models as the estimate; " if same_models else "") + note for note in table["note"]]
            rows.append(table.assign(study=name, learner=study["learner"], t=int(study["t"]), source=source,
                                     kind=info["kind"], coverage=round(coverage, 4), same_models=same_models,
                                     mean_mem_se=float(sc["mem_se"].mean())))   # NaN where no example has one
    cols = ["study", "learner", "t", "source", "kind", "proxy", "same_models", "n", "coverage", "spearman_heldout",
            "spearman_mem", "top_size", "top_overlap_mem", "top_overlap_heldout", "mean_mem_se", "note"]
    if not rows:
        return pd.DataFrame(columns=cols)
    return pd.concat(rows, ignore_index=True)[cols]


def validation_stage(studies: dict, scores: dict, sources: dict, out_csv, *, top_fraction: float = 0.01,
                     seed: int = 0) -> pd.DataFrame:
    table = validation_table(studies, scores, sources, top_fraction=top_fraction, seed=seed)
    write_csv(out_csv, table)
    return table
