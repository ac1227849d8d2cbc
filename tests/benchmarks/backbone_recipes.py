"""Accuracy trials of backbone recipes at a fixed epoch budget: the evidence behind config.yaml's backbones.

Each trial trains a network on a split's training part (the same seed, so the same initialization and batch
order) with one recipe change against a baseline (``--base``: ResNet-20 as config.yaml trains it, or the airbench94
recipe of Jordan 2024 in this study's units), and prints validation and CIFAR-10 test accuracy, plus what changes
that cost no training time would add: test-time augmentation (flip: the mean over an image and its mirror;
flip + translate: also the image shifted by one pixel, :func:`memgen.train.embed`) and an exponential moving
average of the weights and BatchNorm statistics (``--ema``, decay per step).

Run after the data and splits exist (``snakemake results/splits/cifar10/full.npz --cores 2``):

    python tests/benchmarks/backbone_recipes.py --epochs 8 --trial base --trial pad=2 --trial weight_decay=1e-4

Trials run one after another with ``--threads`` each; pass ``--trial`` once per run, as comma-separated
``key=value`` overrides of the baseline (``base`` = no override). The measured trials, and the commands that
produced them, are in docs/backbone-recipes.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

# Recipe keys a trial may override, with each baseline's value.
BASELINES = {
    "resnet20": {"arch": "resnet20", "batch_size": 128, "lr": 0.2, "schedule": "onecycle", "momentum": 0.9,
                 "weight_decay": 5e-4, "bias_lr_scale": 1.0, "bias_decay": False, "whiten_bias_epochs": None,
                 "lookahead": False, "pad": 4, "pad_mode": "zeros", "label_smoothing": 0.0, "alternating_flip": False},
    # airbench94 (Jordan 2024) for a mean-reduced loss and coupled L2: its lr 11.5 per 1,024 examples with
    # momentum 0.85 is 11.5 / (1 + 1 / 0.15) = 1.5 per batch; its decoupled decay of 0.0153 * 1024 / 7851 per step
    # is weight_decay 0.00133 at that lr, and the biases decay as much per step; biases learn at 64x; the whitening
    # bias learns for 3 epochs; translate by 2 pixels with the border mirrored (pad 2, reflect).
    "airbench94": {"arch": "airbench94", "batch_size": 1024, "lr": 1.5, "schedule": "triangle", "momentum": 0.85,
                   "weight_decay": 0.00133, "bias_lr_scale": 64.0, "bias_decay": True, "whiten_bias_epochs": 3,
                   "lookahead": True, "pad": 2, "pad_mode": "reflect", "label_smoothing": 0.2,
                   "alternating_flip": True},
}


def with_schema_defaults(settings: dict) -> dict:
    """A backbone entry as the workflow sees it: the retrieval schema fills the recipe keys a trial leaves out."""
    from snakemake.utils import validate

    entry = {"backbone": {"cifar10": dict(settings)}}
    validate(entry, str(Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "retrieval.schema.yaml"))
    recipe = entry["backbone"]["cifar10"]
    for key in ("split_epochs", "flip_average", "translate_average"):   # a trial reports every view
        recipe.pop(key)
    return recipe


def parse_trial(text: str, baseline: dict) -> dict:
    if text == "base":
        return {}
    overrides = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key not in baseline or not value:
            raise SystemExit(f"bad trial '{text}': use key=value with keys {sorted(baseline)}")
        kind = int if baseline[key] is None else type(baseline[key])   # the optional keys are counts
        if value == "null":
            overrides[key] = None
        elif kind is bool:
            if value not in ("true", "false"):
                raise SystemExit(f"bad trial '{text}': {key} is true or false")
            overrides[key] = value == "true"
        else:
            overrides[key] = kind(float(value)) if kind in (int, float) else value
    return overrides


class WeightAverage:
    """An exponential moving average of a network's weights and BatchNorm buffers, updated after every SGD step
    (``train_classifier`` calls its ``record`` hook after the step)."""

    def __init__(self, model, decay: float):
        import torch

        self.model, self.decay = model, decay
        self.average = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)

    def __call__(self, *_):
        self.average.update_parameters(self.model)


def test_accuracies(nets: dict, x_test, y_test, precision: str) -> dict:
    """Test accuracy of each net on single views, with flip TTA and with flip + translate TTA, computed the way
    the workflow's embed job computes its logits (:func:`memgen.train.embed`)."""
    from memgen.train import embed

    views = {"": {}, "_flip_tta": {"flip_average": True},
             "_flip_translate_tta": {"flip_average": True, "translate_average": True}}
    out = {}
    for name, net in nets.items():
        for suffix, kwargs in views.items():
            _, logits = embed(net, x_test, "cpu", precision=precision, **kwargs)
            out[f"test{name}{suffix}"] = float((logits.argmax(1) == y_test).mean())
    return out


def run_trial(overrides: dict, epochs: int, cache: str, split: str, seed: int, max_steps: int | None = None,
              precision: str = "auto", ema: float = 0.999, base: str = "resnet20") -> dict:
    """Train as the workflow's ``train_backbone`` does (its split, recipe, seed and initialization), keeping a
    weight average beside it, then score the test set."""
    from memgen.nets import build_net
    from memgen.retrieval.stages import load_split_images
    from memgen.runtime import seed_everything
    from memgen.train import recipe_kwargs, train_classifier

    settings = with_schema_defaults({**BASELINES[base], **overrides, "epochs": epochs, "max_steps": max_steps})
    parts, sp = load_split_images(cache, split)
    (x, y, _), (x_val, y_val, _), (x_test, y_test, _) = parts["train"], parts["val"], parts["test"]
    seed_everything(seed)
    net = build_net(settings["arch"], num_classes=sp.n_classes, in_channels=x.shape[-1])
    average = WeightAverage(net, ema) if ema > 0 else None
    metrics = train_classifier(net, x, y, **recipe_kwargs(settings), device="cpu", seed=seed, x_val=x_val,
                               y_val=y_val, record=average, precision=precision, show_progress=False)
    nets = {"": net}
    if average is not None:
        nets["_ema"] = average.average.module.eval()
    return {"base": base, "overrides": overrides, "epochs": epochs, "precision": metrics["precision"], "ema_decay": ema,
            "val": metrics["val_accuracy"], **test_accuracies(nets, x_test, y_test, metrics["precision"]),
            "final_train_acc": metrics["train_accuracy"], "images_per_s": metrics["images_per_s"],
            "train_time_s": metrics["train_time_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trial", action="append", required=True, help="'base' or key=value[,key=value]")
    ap.add_argument("--base", default="resnet20", choices=sorted(BASELINES), help="the recipe trials change")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--cache", default="results/data/cifar10.npz")
    ap.add_argument("--split", default="results/splits/cifar10/full.npz")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, help="stop each trial after this many SGD steps (a quick check)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--ema", type=float, default=0.999, help="decay per step of the weight average (0: none)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    trials = [parse_trial(t, BASELINES[args.base]) for t in args.trial]
    results = []
    for overrides in trials:
        results.append(run_trial(overrides, args.epochs, args.cache, args.split, args.seed,
                                 args.max_steps, args.precision, args.ema, args.base))
        r = results[-1]
        print(f"{json.dumps(overrides) if overrides else 'base':32s} {r['precision']} val {r['val']:.4f}  "
              f"test {r['test']:.4f}  flip TTA {r['test_flip_tta']:.4f}  flip + translate TTA "
              f"{r['test_flip_translate_tta']:.4f}  "
              + (f"EMA {r['test_ema']:.4f}  EMA + TTA {r['test_ema_flip_tta']:.4f}  " if "test_ema" in r else "")
              + f"{r['images_per_s']:.0f} img/s  {r['train_time_s']:.0f} s", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
