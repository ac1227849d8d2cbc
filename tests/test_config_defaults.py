"""The JSON schemas are the one source of every config-driven default: Snakemake's ``validate`` (which fills them)
gives a config that lacks a key the value the jobs used before, and the package reads the filled entry."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from snakemake.utils import validate

from memgen.train import RECIPE_KEYS, recipe_kwargs

from conftest import REPO

SCHEMAS = REPO / "workflow" / "schemas"
# The backbone recipe and Transformer the rules and the package used when a config left a key out.
RECIPE = {"batch_size": 128, "lr": 0.1, "schedule": "onecycle", "weight_decay": 5e-4, "label_smoothing": 0.0,
          "augment": True, "pad": 4, "pad_mode": "zeros", "momentum": 0.9, "bias_lr_scale": 1.0,
          "bias_decay": False, "whiten_bias_epochs": None, "lookahead": False, "alternating_flip": False,
          "max_steps": None, "flip": True}
TRANSFORMER = {"k": 10, "d_model": 128, "heads": 4, "layers": 2, "epochs": 10, "batch_size": 256, "lr": 1e-3,
               "variants": ["ce", "query_drop"]}


def filled(section: str, entry: dict) -> dict:
    entry = copy.deepcopy(entry)
    validate(entry, str(SCHEMAS / f"{section}.schema.yaml"))
    return entry


def smoke(section: str) -> dict:
    return yaml.safe_load((REPO / "tests/smoke/config.yaml").read_text())[section]


def test_a_backbone_without_recipe_keys_gets_the_schema_defaults():
    r = filled("retrieval", {**smoke("retrieval"), "backbone": {"cifar10": {"arch": "resnet20", "epochs": 3}},
                             "transformer": {}})
    assert r["backbone"]["cifar10"] == {"arch": "resnet20", "epochs": 3, "split_epochs": {}, "flip_average": False,
                                        "translate_average": False,
                                        **RECIPE}
    assert r["transformer"] == TRANSFORMER
    kwargs = recipe_kwargs(r["backbone"]["cifar10"])           # what train_backbone trains with
    assert kwargs == {"epochs": 3, **{k: v for k, v in RECIPE.items()}}
    given = filled("retrieval", {**smoke("retrieval"), "transformer": {"heads": 1}})
    assert given["transformer"]["heads"] == 1 and given["transformer"]["d_model"] == 128   # a given key wins


def test_the_influence_net_learner_gets_the_same_recipe_defaults():
    study = {"dataset": "cifar10", "split": "full", "learner": "net", "t": 2, "shard_size": 1,
             "settings": {"arch": "resnet20", "epochs": 1, "lr": 0.05}}
    i = filled("influence", {**smoke("influence"), "studies": {"net": study, "knn": {**study, "learner": "knn",
                                                                                     "settings": {"k": 1}}}})
    net = i["studies"]["net"]
    assert net["settings"] == {"arch": "resnet20", "epochs": 1, **RECIPE, "lr": 0.05}
    assert net["features"] == "pixels" and net["models_per_call"] is None
    assert i["studies"]["knn"]["settings"] == {"k": 1}                      # other learners get no recipe keys
    with pytest.raises(Exception, match="split_epochs"):                     # a backbone key, not a learner's
        filled("influence", {**smoke("influence"), "studies": {"net": {**study, "settings": {
            **study["settings"], "split_epochs": {}}}}})


def test_every_recipe_key_but_epochs_has_a_schema_default():
    recipe = yaml.safe_load((SCHEMAS / "retrieval.schema.yaml").read_text())["$defs"]["recipe"]
    assert set(recipe["properties"]) == {"arch", *RECIPE_KEYS}
    assert {k for k, v in recipe["properties"].items() if "default" in v} == set(RECIPE_KEYS) - {"epochs"}
    with pytest.raises(ValueError, match=r"lacks \['lr'"):
        recipe_kwargs({k: v for k, v in {"epochs": 1, **RECIPE}.items() if k != "lr"})


def test_net_learner_trains_with_the_filled_recipe():
    from memgen.influence.learners import NetLearner

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (20, 8, 8, 1), dtype=np.uint8), np.arange(20) % 2
    settings = {"arch": "mnist_cnn", "epochs": 1, **RECIPE}
    learner = NetLearner(x, y, x, y, settings, device="cpu", precision="fp32")
    assert learner.recipe == recipe_kwargs(settings)
    assert learner.name == "net_mnist_cnn_e1_lr0.1_b128_onecycle"
    with pytest.raises(ValueError, match="lacks"):
        NetLearner(x, y, x, y, {"arch": "mnist_cnn", "epochs": 1}, device="cpu")


def test_a_binarize_entry_gets_the_defaults_an_unlisted_dataset_used():
    lut = filled("lut", {"binarize": {"mnist": {"scheme": "thermometer", "bits": 2}, "unlisted": {}}})
    assert lut["binarize"]["unlisted"] == {"scheme": "threshold", "bits": 1, "threshold": 128, "grey": False}
    assert lut["binarize"]["mnist"] == {"scheme": "thermometer", "bits": 2, "threshold": 128, "grey": False}
