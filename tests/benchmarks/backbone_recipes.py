"""Accuracy trials of ResNet-20 recipes at a fixed epoch budget: the evidence behind config.yaml's backbone.

Each trial trains ResNet-20 on a split's training part (the same seed, so the same initialization and batch
order) with one recipe change against the baseline, and prints validation and CIFAR-10 test accuracy (plus the
flip test-time-augmentation accuracy, for reference only: the study reports single-view accuracy).

Run after the data and splits exist (``snakemake --cores 2 results/splits/cifar10/full.npz``):

    python tests/benchmarks/backbone_recipes.py --epochs 8 --trial base --trial pad=2 --trial weight_decay=1e-4

Trials run one after another with ``--threads`` each; pass ``--trial`` once per run, as comma-separated
``key=value`` overrides of the baseline (``base`` = no override). The measured trials, and the commands that
produced them, are in README.md, "Backbone recipe trials".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

BASELINE = {"arch": "resnet20", "batch_size": 128, "lr": 0.2, "schedule": "onecycle", "weight_decay": 5e-4,
            "pad": 4, "label_smoothing": 0.0}


def with_schema_defaults(settings: dict) -> dict:
    """A backbone entry as the workflow sees it: the retrieval schema fills the recipe keys a trial leaves out."""
    from snakemake.utils import validate

    entry = {"backbone": {"cifar10": dict(settings)}}
    validate(entry, str(Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "retrieval.schema.yaml"))
    recipe = entry["backbone"]["cifar10"]
    recipe.pop("split_epochs")
    return recipe


def parse_trial(text: str) -> dict:
    if text == "base":
        return {}
    overrides = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key not in BASELINE or not value:
            raise SystemExit(f"bad trial '{text}': use key=value with keys {sorted(BASELINE)}")
        overrides[key] = type(BASELINE[key])(float(value)) if isinstance(BASELINE[key], (int, float)) else value
    return overrides


def run_trial(overrides: dict, epochs: int, cache: str, split: str, seed: int, max_steps: int | None = None) -> dict:
    """Train as the workflow's ``train_backbone`` does (checkpoint in a temporary folder), then score the test set."""
    from memgen.retrieval.stages import train_backbone
    from memgen.train import load_checkpoint, predict_logits

    settings = with_schema_defaults({**BASELINE, **overrides, "epochs": epochs, "max_steps": max_steps})
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train_backbone(cache, split, f"{tmp}/backbone.pt", f"{tmp}/backbone.json", settings=settings,
                                 split="trial", device="cpu", seed=seed)
        net, _ = load_checkpoint(f"{tmp}/backbone.pt")
    with np.load(cache) as d:
        x_test, y_test = d["x_test"], d["y_test"]
    logits = predict_logits(net, x_test, "cpu")
    flipped = predict_logits(net, np.ascontiguousarray(x_test[:, :, ::-1]), "cpu")
    return {"overrides": overrides, "epochs": epochs, "val": metrics["val_accuracy"],
            "test": float((logits.argmax(1) == y_test).mean()),
            "test_flip_tta": float(((logits + flipped).argmax(1) == y_test).mean()),
            "final_train_acc": metrics["train_accuracy"], "images_per_s": metrics["images_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trial", action="append", required=True, help="'base' or key=value[,key=value]")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--cache", default="results/data/cifar10.npz")
    ap.add_argument("--split", default="results/splits/cifar10/full.npz")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, help="stop each trial after this many SGD steps (a quick check)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    trials = [parse_trial(t) for t in args.trial]
    results = []
    for overrides in trials:
        results.append(run_trial(overrides, args.epochs, args.cache, args.split, args.seed,
                                 args.max_steps))
        r = results[-1]
        print(f"{json.dumps(overrides) if overrides else 'base':40s} val {r['val']:.4f}  test {r['test']:.4f}  "
              f"(flip TTA {r['test_flip_tta']:.4f})  {r['images_per_s']:.0f} img/s", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
