# Helpers of workflow/rules/proxies.smk (included by it): the validated `proxies` config, the backbones and
# estimator studies that record a learning-speed proxy, the neighbourhood sets and every proxy source.

import re

from memgen.influence.stages import records_learning

validate(config["proxies"], schema="../schemas/proxies.schema.yaml")   # fills the schema's defaults
PROXIES = config["proxies"]
NEIGHBOURHOOD = PROXIES["neighbourhood"]
PROXY_FIGURES_SET = PROXIES["figures"]


def _proxy_backbone_pairs():
    pairs = list(RETRIEVAL_PAIRS)
    for dataset, splits in PROXIES["backbones"].items():
        if dataset not in RETRIEVAL["backbone"]:
            raise ValueError(f"proxies.backbones names dataset '{dataset}' but retrieval.backbone has no entry for it")
        for split in splits:
            if split not in splits_of(dataset):
                raise ValueError(f"proxies.backbones.{dataset} has '{split}', which is not in "
                                 f"datasets.{dataset}.splits; add it there")
            pairs += [] if (dataset, split) in pairs else [(dataset, split)]
    return pairs


PROXY_BACKBONE_PAIRS = _proxy_backbone_pairs()
RECORDING_STUDIES = [name for name, study in STUDIES.items() if records_learning(study["learner"])]


def _neighbourhood_sets():
    sets = []
    for entry in NEIGHBOURHOOD["sets"]:
        dataset, split, features = entry["dataset"], entry["split"], entry["features"]
        where = f"proxies.neighbourhood.sets entry {dataset}/{split}/{features}"
        if dataset not in DATASETS or split not in splits_of(dataset):
            raise ValueError(f"{where}: the split is not under datasets.{dataset}.splits in the config")
        if features == "embeddings" and (dataset, split) not in RETRIEVAL_PAIRS:
            raise ValueError(f"{where}: embeddings need a memory of ({dataset}, {split}); add '{split}' to "
                             f"retrieval.splits.{dataset} or use features: pixels")
        sets.append((dataset, split, features))
    return sets


NEIGHBOURHOOD_SETS = _neighbourhood_sets()
# Backbones of the dataset's own classification task (not the rare split's two groups): the ones an estimate can
# share examples and labels with.
SAME_TASK_SPLITS = r"(all|full|lt\d+)(@\w+)?"
PROXY_SOURCES = {
    **{f"backbone {d}/{s}": {"path": f"results/retrieval/{d}/{s}/proxies.csv", "dataset": d,
                             "kind": "learning speed, backbone", "study": None}
       for d, s in PROXY_BACKBONE_PAIRS if re.fullmatch(SAME_TASK_SPLITS, s)},
    **{f"{name} models": {"path": f"results/influence/{name}/proxies.csv", "dataset": STUDIES[name]["dataset"],
                          "kind": "learning speed, the estimate's own models", "study": name}
       for name in RECORDING_STUDIES},
    **{f"{f} neighbours {d}/{s}": {"path": f"results/proxies/{d}/{s}/neighbourhood_{f}.csv", "dataset": d,
                                   "kind": f"neighbourhood, {f}", "study": None} for d, s, f in NEIGHBOURHOOD_SETS},
}
_figure_pair = (PROXY_FIGURES_SET["dataset"], PROXY_FIGURES_SET["split"])
if _figure_pair not in PROXY_BACKBONE_PAIRS:
    raise ValueError(f"proxies.figures shows the backbone of {_figure_pair[0]}/{_figure_pair[1]}, which is neither "
                     "under retrieval.splits nor proxies.backbones; name one of those")
PROXY_TABLES = {"validation": "results/tables/proxies_validation.csv"}
PROXY_FIGURES = {
    "fig_scatter": "results/figures/proxies_scatter.png",
    "fig_least": "results/figures/proxies_least_regular.png",
    "fig_most": "results/figures/proxies_most_regular.png",
    "fig_histograms": "results/figures/proxies_histograms.png",
}


def neighbourhood_inputs(wc):
    inputs = {"split": f"results/splits/{wc.dataset}/{wc.split}.npz"}
    if wc.features == "embeddings":
        inputs["embeddings"] = f"results/retrieval/{wc.dataset}/{wc.split}/embeddings.npz"
    else:
        inputs["cache"] = f"results/data/{wc.dataset}.npz"
    return inputs
