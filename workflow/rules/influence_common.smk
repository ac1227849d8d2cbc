# Helpers of workflow/rules/influence.smk (included by it): the validated `influence` config, each study's
# shards and inputs, and the files the tables and figures read. Included after lut.smk and retrieval.smk: studies
# on embeddings use the retrieval study's backbones, studies on bits the LUT study's binarization.

from memgen.influence.estimator import shard_path, shard_ranges, study_seed

validate(config["influence"], schema="../schemas/influence.schema.yaml")   # fills the schema's defaults
INFLUENCE = config["influence"]
STUDIES = INFLUENCE["studies"]
INFLUENCE_GPU = 1 if str(config["device"]).startswith("cuda") else 0


def _check_studies():
    where = "influence.studies"
    for name, study in STUDIES.items():
        study.setdefault("seed", study_seed(name, config["seed"]))   # a schema cannot state it: from the name
        dataset, split = study["dataset"], study["split"]
        if dataset not in DATASETS:
            raise ValueError(f"{where}.{name}: dataset '{dataset}' is not under datasets: in the config")
        if split not in splits_of(dataset):
            raise ValueError(f"{where}.{name}: split '{split}' is not in datasets.{dataset}.splits; add it there")
        if study["features"] == "embeddings" and (dataset, split) not in RETRIEVAL_PAIRS:
            raise ValueError(f"{where}.{name}: features 'embeddings' need a backbone of ({dataset}, {split}); "
                             f"add '{split}' to retrieval.splits.{dataset}")
        if study["features"] == "bits" and dataset not in config["lut"].get("binarize", {}):
            raise ValueError(f"{where}.{name}: features 'bits' need lut.binarize.{dataset} in the config")
    sections = [("removal", list(INFLUENCE["removal"])),
                ("consistency", [s for pair in INFLUENCE["consistency"] for s in pair]),
                ("last_layer", [s for s in INFLUENCE["last_layer"].values() if s]),
                ("figures", INFLUENCE["figures"]["most_memorized"]
                 + [s for s in [INFLUENCE["figures"]["influence"]] if s])]
    for section, names in sections:
        for name in names:
            if name not in STUDIES:
                raise ValueError(f"influence.{section} names study '{name}', which is not under {where} "
                                 f"(studies: {', '.join(STUDIES) or 'none'})")
    for a, b in INFLUENCE["consistency"]:
        if (STUDIES[a]["dataset"], STUDIES[a]["split"]) != (STUDIES[b]["dataset"], STUDIES[b]["split"]):
            raise ValueError(f"influence.consistency pair [{a}, {b}]: the studies must share dataset and split")


_check_studies()


def study_code(script):
    """The code inputs of a job of one study that builds its learner (looked up by name at run time, so no import
    statement shows it): the script's memgen files and those of the study's learner module
    memgen.influence.learners.<learner>. Editing one learner's module reruns only the studies that use it."""
    def code(wc):
        learner = f"memgen.influence.learners.{STUDIES[wc.study]['learner']}"
        return sorted({*script_code(script), *module_files(learner, ROOT / "src")})
    return code


def study_shards(name):
    """The shard files of a study's t models (a shard's name is its model range)."""
    study = STUDIES[name]
    return [str(shard_path(f"results/influence/{name}/shards", a, b))
            for a, b in shard_ranges(study["t"], study["shard_size"])]


def model_settings(name):
    """What determines a study's models (not t, shard_size or models_per_call): the params of its shard and
    removal jobs, so that raising t or regrouping the work never reruns a finished shard."""
    return {k: v for k, v in STUDIES[name].items() if k not in ("t", "shard_size", "models_per_call")}


def estimate_settings(name):
    """What determines a study's estimates: its models and their number t (the shards are inputs)."""
    return {**model_settings(name), "t": STUDIES[name]["t"]}


def study_inputs(wc):
    """Data a study's jobs read: the dataset cache and split, and the backbone's embeddings when it uses them."""
    study = STUDIES[wc.study]
    inputs = {"cache": f"results/data/{study['dataset']}.npz",
              "split": f"results/splits/{study['dataset']}/{study['split']}.npz"}
    if study["features"] == "embeddings":
        inputs["embeddings"] = f"results/retrieval/{study['dataset']}/{study['split']}/embeddings.npz"
    return inputs


def study_binarization(name):
    study = STUDIES[name]
    return config["lut"]["binarize"][study["dataset"]] if study["features"] == "bits" else None


def study_files(filename, names=None):
    return {name: f"results/influence/{name}/{filename}" for name in (STUDIES if names is None else names)}


INFLUENCE_TABLES = {
    "summary": "results/tables/influence_summary.csv",
    "histograms": "results/tables/influence_histograms.csv",
    "convergence": "results/tables/influence_convergence.csv",
    "consistency": "results/tables/influence_consistency.csv",
    "removal": "results/tables/influence_removal.csv",
    "last_layer": "results/tables/influence_last_layer.csv",
}
INFLUENCE_CLAIMS = "results/tables/claims_influence.csv"
FIGURE_STUDY = [INFLUENCE["figures"]["influence"]] if INFLUENCE["figures"]["influence"] else []   # Figure 4's study
INFLUENCE_FIGURES = {
    "fig_histograms": "results/figures/influence_histograms.png",
    "fig_removal": "results/figures/influence_removal.png",
    "fig_consistency": "results/figures/influence_consistency.png",
    "fig_convergence": "results/figures/influence_convergence.png",
}
if INFLUENCE["figures"]["influence"]:
    INFLUENCE_FIGURES["fig_influence"] = "results/figures/influence_influence.png"
GRID_FIGURES = [f"results/figures/influence_most_memorized_{name}.png"
                for name in INFLUENCE["figures"]["most_memorized"]]
LAST_LAYER_EMBEDDINGS = []
if INFLUENCE["last_layer"]["linear"]:
    _linear = STUDIES[INFLUENCE["last_layer"]["linear"]]
    if _linear["features"] != "embeddings":
        raise ValueError("influence.last_layer.linear must be a study on features 'embeddings'")
    LAST_LAYER_EMBEDDINGS = [f"results/retrieval/{_linear['dataset']}/{_linear['split']}/embeddings.npz"]
