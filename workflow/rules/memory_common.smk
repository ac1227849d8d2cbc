# Helpers of workflow/rules/memory.smk (included by it): the validated `memory` config, the (dataset, split)
# pairs it runs, and the files they write.

from memgen.train import RECIPE_DEFAULTS

validate(config["memory"], schema="../schemas/memory.schema.yaml")
MEMORY = config["memory"]
MEMORY_CODE = ("data", "splits", "nets", "train", "knn", "memory", "evaluation", "memory_study")
BACKBONE_DEFAULTS = {**RECIPE_DEFAULTS, "flip": True, "split_epochs": {}}
TRANSFORMER = {"k": 10, "d_model": 128, "heads": 4, "layers": 2, "epochs": 10, "batch_size": 256, "lr": 1e-3,
               "variants": ["ce", "query_drop"], **MEMORY.get("transformer", {})}
# GPU rules ask for a GPU only when the study runs on CUDA (device: cuda*, or auto on a machine with one).
MEMORY_GPU = 1 if str(config["device"]).startswith("cuda") else 0


def _memory_pairs():
    pairs = []
    for dataset, splits in MEMORY["splits"].items():
        if dataset not in DATASETS:
            raise ValueError(f"memory.splits names dataset '{dataset}', which is not under datasets: in the config")
        if dataset not in MEMORY["backbone"]:
            raise ValueError(f"memory.splits names dataset '{dataset}' but memory.backbone has no entry for it")
        for split in splits:
            if split not in splits_of(dataset):
                raise ValueError(f"memory.splits.{dataset} has '{split}', which is not in datasets.{dataset}.splits")
            pairs.append((dataset, split))
    return pairs


MEMORY_PAIRS = _memory_pairs()
_tsplits = MEMORY.get("transformer", {}).get("splits")
TRANSFORMER_PAIRS = [p for p in MEMORY_PAIRS if _tsplits is None or p[1] in _tsplits.get(p[0], [])]
if max(TRANSFORMER["k"], MEMORY["gate_k"]) > max(MEMORY["k"]):
    raise ValueError("memory.transformer.k and memory.gate_k must not exceed max(memory.k)")


def backbone_settings(dataset):
    return {**BACKBONE_DEFAULTS, **MEMORY["backbone"][dataset]}


def mem_dir(wc):
    return f"results/memory/{wc.dataset}/{wc.split}"


def transformer_files(wc, ext="npz"):
    if (wc.dataset, wc.split) not in TRANSFORMER_PAIRS:
        return {}
    return {v: f"results/memory/{wc.dataset}/{wc.split}/transformer_{v}.{ext}" for v in TRANSFORMER["variants"]}


def memory_files(name, pairs=None):
    return [f"results/memory/{d}/{s}/{name}" for d, s in (MEMORY_PAIRS if pairs is None else pairs)]


MEMORY_TABLES = {
    "table1": "results/tables/seed000_table1.csv",
    "longtail": "results/tables/memory_longtail.csv",
    "mnist": "results/tables/memory_mnist.csv",
    "accuracy_vs_k": "results/tables/memory_accuracy_vs_k.csv",
}
MEMORY_FIGURES = {
    "fig_accuracy_vs_k": "results/figures/memory_accuracy_vs_k.png",
    "fig_per_class": "results/figures/memory_per_class_longtail.png",
    "fig_fixes": "results/figures/memory_fixes.png",
}
FIXES_PAIR = (MEMORY["fixes_dataset"], "full")
if FIXES_PAIR not in MEMORY_PAIRS:
    raise ValueError(f"memory.fixes_dataset is '{FIXES_PAIR[0]}' but memory.splits has no full split for it")

