# Helpers of workflow/rules/retrieval.smk (included by it): the validated `retrieval` config, the memories it
# builds -- (dataset, memory) pairs, a memory being a split and the backbone trained on it (memgen.splits.
# memory_name: the split itself for the dataset's backbone, {split}@{name} for an extra one) -- and their files.

from memgen.splits import memory_name, parse_memory

validate(config["retrieval"], schema="../schemas/retrieval.schema.yaml")   # fills the schema's defaults
RETRIEVAL = config["retrieval"]
TRANSFORMER = RETRIEVAL["transformer"]
# GPU rules ask for a GPU only when the study runs on CUDA (device: cuda*, or auto on a machine with one).
RETRIEVAL_GPU = 1 if str(config["device"]).startswith("cuda") else 0


def _memory_pairs():
    pairs = []
    for dataset, splits in RETRIEVAL["splits"].items():
        if dataset not in DATASETS:
            raise ValueError(f"retrieval.splits names dataset '{dataset}', which is not under datasets: in the config")
        if dataset not in RETRIEVAL["backbone"]:
            raise ValueError(f"retrieval.splits names dataset '{dataset}' but retrieval.backbone has no entry for it")
        for split in splits:
            if split not in splits_of(dataset):
                raise ValueError(f"retrieval.splits.{dataset} has '{split}', which is not in datasets.{dataset}.splits")
            pairs.append((dataset, split))
    for dataset, backbones in RETRIEVAL["extra_backbones"].items():
        for name, entry in backbones.items():
            for split in entry["splits"]:
                if split not in RETRIEVAL["splits"].get(dataset, []):
                    raise ValueError(f"retrieval.extra_backbones.{dataset}.{name} is trained on '{split}', which is "
                                     f"not under retrieval.splits.{dataset}; add it there or drop it from its splits")
                pairs.append((dataset, memory_name(split, name)))
    return pairs


# (dataset, memory) of every memory: the dataset's backbone on each split, then the extra backbones.
RETRIEVAL_PAIRS = _memory_pairs()
_tsplits = TRANSFORMER.get("splits")
TRANSFORMER_PAIRS = [p for p in RETRIEVAL_PAIRS if _tsplits is None or parse_memory(p[1])[0] in _tsplits.get(p[0], [])]
if max(TRANSFORMER["k"], *RETRIEVAL["gate_ks"]) > max(RETRIEVAL["k"]):
    raise ValueError("retrieval.transformer.k and retrieval.gate_ks must not exceed max(retrieval.k)")


def backbone_entry(dataset, memory):
    """The config entry of a memory's backbone: retrieval.backbone.<dataset>, or the extra backbone it names."""
    split, name = parse_memory(memory)
    return RETRIEVAL["backbone"][dataset] if name is None else RETRIEVAL["extra_backbones"][dataset][name]


def backbone_settings(dataset, memory):
    """The recipe of one backbone with its split's epochs resolved (``split_epochs[split]``, else ``epochs``):
    a train_backbone job's params, so that changing one split's epochs reruns that split's backbone only."""
    settings = dict(backbone_entry(dataset, memory))
    split_epochs = settings.pop("split_epochs")
    for key in ("flip_average", "translate_average", "splits"):   # not how the network is trained
        settings.pop(key, None)
    return {**settings, "epochs": split_epochs.get(parse_memory(memory)[0], settings["epochs"])}


def memory_split_file(wc):
    """The split file a memory's jobs read."""
    return f"results/splits/{wc.dataset}/{parse_memory(wc.memory)[0]}.npz"


# A memory's wildcard: a split, optionally @ a configured extra backbone.
EXTRA_BACKBONE_NAMES = sorted({name for backbones in RETRIEVAL["extra_backbones"].values() for name in backbones})
MEMORY_PATTERN = (f"(?:{SPLIT_PATTERN})(?:@(?:{'|'.join(EXTRA_BACKBONE_NAMES)}))?" if EXTRA_BACKBONE_NAMES
                  else f"(?:{SPLIT_PATTERN})")


wildcard_constraints:
    memory=MEMORY_PATTERN,


def transformer_settings():
    """What determines one Transformer job (not the variant list or the splits that get one)."""
    return {k: v for k, v in TRANSFORMER.items() if k not in ("variants", "splits")}


def transformer_files(wc, ext="npz"):
    if (wc.dataset, wc.memory) not in TRANSFORMER_PAIRS:
        return {}
    return {v: f"results/retrieval/{wc.dataset}/{wc.memory}/transformer_{v}.{ext}" for v in TRANSFORMER["variants"]}


def retrieval_files(name, pairs=None):
    return [f"results/retrieval/{d}/{s}/{name}" for d, s in (RETRIEVAL_PAIRS if pairs is None else pairs)]


RETRIEVAL_TABLES = {
    "table1": "results/tables/seed000_table1.csv",
    "longtail": "results/tables/retrieval_longtail.csv",
    "mnist": "results/tables/retrieval_mnist.csv",
    "accuracy_vs_k": "results/tables/retrieval_accuracy_vs_k.csv",
}
RETRIEVAL_FIGURES = {
    "fig_accuracy_vs_k": "results/figures/retrieval_accuracy_vs_k.png",
    "fig_per_class": "results/figures/retrieval_per_class_longtail.png",
    "fig_fixes": "results/figures/retrieval_fixes.png",
}
# The memories the document's claims are about (memgen.retrieval.claims): CIFAR-10's.
CLAIM_PAIRS = [(d, s) for d, s in RETRIEVAL_PAIRS if d == "cifar10"]
RETRIEVAL_CLAIMS = "results/tables/claims_retrieval.csv"
FIXES_PAIR = (RETRIEVAL["fixes_dataset"], "full")
if FIXES_PAIR not in RETRIEVAL_PAIRS:
    raise ValueError(f"retrieval.fixes_dataset is '{FIXES_PAIR[0]}' but retrieval.splits has no full split for it")

