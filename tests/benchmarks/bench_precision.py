"""bf16 against fp32 on this CPU: speed goals (ratios in one process, rounds interleaved) and accuracy parity.

The speed measurements live in :mod:`memgen.bench.precision` (see its docstring: ResNet-20 training loop img/s
and the data path's share, MNIST MLP training loop FLOP/s against bare bf16 products and against fp32, one model
of the authors' demo, the neighbour Transformer); the workflow runs the same code with ``snakemake bench`` (rule
``bench_precision`` -> ``results/benchmarks/bench_precision.json``). Each goal prints PASS or FAIL.

Parity (same seeds, both precisions; mean test accuracy within 0.3 points is the goal):

* ``--parity``: the MNIST MLP of the authors' demo (784-512-256-10, 10 epochs, lr 0.1, momentum 0.9, batch 128),
  ``--mlp-models`` (10) models on the estimator's 70% subsets of the 60,000 training images, tested on the
  10,000 test images, each trained with the compiled step and eager (compiled - eager within 0.1 point; in fp32
  each model right and wrong on the same test images, >= 99.5% of them); and a short ResNet-20 run on CIFAR-10
  (``--resnet-train`` images, default 5,000, for ``--resnet-epochs`` epochs, default 3, tested on
  ``--resnet-test`` images).

``--sections mlp`` runs the MLP speed section alone; ``--profile`` prints the compiled bf16 MLP step's top
operations (``torch.profiler``).
* The 8-epoch ResNet-20 parity on the whole CIFAR-10 ``full`` split, with the recipe of ``config.yaml``, is
  ``tests/benchmarks/backbone_recipes.py --epochs 8 --trial pad=2 --precision {bf16,fp32}``.

Run:  python tests/benchmarks/bench_precision.py [--quick] [--parity [mlp resnet]] [--out bench.json]
      [--threads 2] [--sections mlp ...] [--profile] [--mnist DIR_OR_CACHE] [--cifar TAR_OR_CACHE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from memgen.bench.precision import load_mnist, profile_mlp, run_benchmark, summary  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PARITY_POINTS = 0.3
COMPILED_POINTS, COMPILED_AGREEMENT = 0.1, 0.995


def log(*a):
    print(*a, flush=True)


def mlp_parity(mnist, n_models: int) -> dict:
    """The demo's models in both precisions, each with the compiled step (as the estimator trains them) and eager:
    test accuracies, and how often a compiled model is right where its eager twin is (same subset and seed)."""
    from memgen.influence import estimator as est
    from memgen.influence.learners import MLPLearner

    x_train, y_train, x_test, y_test, source = mnist
    m = est.subset_size(len(y_train), 0.7)
    subsets = [est.subset_indices(len(y_train), m, 0, k) for k in range(n_models)]
    seeds = [est.model_seed(0, k) for k in range(n_models)]
    res = {"data": source, "models": n_models, "m": m}
    for precision in ("fp32", "bf16"):
        correct = {}
        for compiled in (True, False):
            learner = MLPLearner(x_train, y_train, x_test, y_test, epochs=10, device="cpu", precision=precision,
                                 compile=compiled)
            t = time.perf_counter()
            correct[compiled] = learner.fit_predict(subsets, seeds).correct_test
            acc = correct[compiled].mean(1)
            key = precision if compiled else f"{precision}_eager"
            res[key] = {"step": learner.training_step, "test_acc": [round(float(a), 4) for a in acc],
                        "mean_test_acc": float(acc.mean()), "s_per_model": round((time.perf_counter() - t) / n_models, 2)}
            log(f"  MLP {key}: mean test accuracy {acc.mean():.4f}, {res[key]['s_per_model']} s/model")
        res[precision]["agreement_with_eager"] = [round(float(a), 4) for a in (correct[True] == correct[False]).mean(1)]
    return res


def mlp_parity_lines(res: dict) -> list:
    """bf16 - fp32 as the estimator trains (compiled), and per precision compiled - eager (goal within 0.1 point;
    in fp32 every model's correctness the same on >= 99.5% of the test images)."""
    lines = [parity_line("MNIST MLP mean test accuracy", res, "mean_test_acc")]
    for precision in ("fp32", "bf16"):
        c, e = res[precision], res[f"{precision}_eager"]
        diff = 100 * (c["mean_test_acc"] - e["mean_test_acc"])
        agree = min(c["agreement_with_eager"])
        ok = abs(diff) <= COMPILED_POINTS and (precision != "fp32" or agree >= COMPILED_AGREEMENT)
        lines.append(f"{'PASS' if ok else 'FAIL'}  MNIST MLP {precision}, compiled - eager = {diff:+.2f} points (goal "
                     f"within {COMPILED_POINTS}), fewest examples with the same correctness {agree:.2%}"
                     + (f" (goal >= {COMPILED_AGREEMENT:.1%})" if precision == "fp32" else ""))
    return lines


def load_cifar(source):
    from memgen.data import load_cache, read_image_folder

    return load_cache(source) if str(source).endswith(".npz") else read_image_folder(source)


def resnet_parity(ds, n_train: int | None, n_test: int | None, epochs: int) -> dict:
    from memgen.nets import build_net
    from memgen.runtime import seed_everything
    from memgen.train import predict_logits, train_classifier

    rng = np.random.default_rng(0)
    tr = np.sort(rng.permutation(len(ds.y_train))[:n_train or 45000])   # the full split trains on 45,000
    te = np.arange(len(ds.y_test))[:n_test or len(ds.y_test)]
    res = {"n_train": len(tr), "n_test": len(te), "epochs": epochs}
    for precision in ("fp32", "bf16"):
        seed_everything(0)
        model = build_net("resnet20")
        metrics = train_classifier(model, ds.x_train[tr], ds.y_train[tr], epochs=epochs, device="cpu", seed=0,
                                   precision=precision, show_progress=False)
        acc = float((predict_logits(model, ds.x_test[te], "cpu", precision=precision).argmax(1)
                     == ds.y_test[te]).mean())
        res[precision] = {"test_acc": acc, "train_s": round(metrics["train_time_s"], 1),
                          "images_per_s": round(metrics["images_per_s"], 1)}
        log(f"  ResNet-20 {precision}: test accuracy {acc:.4f}, {metrics['images_per_s']:.0f} img/s")
    return res


def parity_line(name: str, res: dict, key: str) -> str:
    diff = 100 * (res["bf16"][key] - res["fp32"][key])
    res["bf16_minus_fp32_points"] = round(diff, 2)
    ok = abs(diff) <= PARITY_POINTS
    return f"{'PASS' if ok else 'FAIL'}  {name}: bf16 - fp32 = {diff:+.2f} points (goal within {PARITY_POINTS})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of the benchmark")
    parser.add_argument("--parity", nargs="*", choices=["mlp", "resnet"],
                        help="accuracy parity: MNIST MLP and short ResNet-20 (both when none is named)")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed sections (parity only)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sections", nargs="+", choices=["resnet", "mlp", "transformer"],
                        default=["resnet", "mlp", "transformer"], help="the speed sections to run")
    parser.add_argument("--profile", action="store_true",
                        help="torch.profiler's table of the compiled bf16 MLP step's top operations")
    parser.add_argument("--mnist", type=Path, default=DATA / "mnist", help="MNIST IDX folder or dataset cache")
    parser.add_argument("--cifar", type=Path, default=DATA / "cifar10-jpeg.tar.gz",
                        help="CIFAR-10 image folder / .tar.gz or dataset cache (results/data/cifar10.npz)")
    parser.add_argument("--mlp-models", type=int, default=10)
    parser.add_argument("--resnet-train", type=int, default=5000)
    parser.add_argument("--resnet-test", type=int, default=2000)
    parser.add_argument("--resnet-epochs", type=int, default=3)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    results, lines = {}, []
    if not args.no_speed:
        results = run_benchmark(args.mnist, quick=args.quick, threads=args.threads, sections=args.sections)
        lines.append(summary(results))
        log(lines[-1])
    if args.profile:
        log(profile_mlp(load_mnist(args.mnist)))
    parity = set(args.parity or ["mlp", "resnet"]) if args.parity is not None else set()
    if "mlp" in parity:
        results["mlp_parity"] = mlp_parity(load_mnist(args.mnist), args.mlp_models)
        lines += mlp_parity_lines(results["mlp_parity"])
        log("\n".join(lines[-3:]))
    if "resnet" in parity:
        results["resnet_parity_short"] = resnet_parity(load_cifar(args.cifar), args.resnet_train, args.resnet_test,
                                                       args.resnet_epochs)
        lines.append(parity_line(f"ResNet-20 {args.resnet_epochs} epochs on {args.resnet_train} images",
                                 results["resnet_parity_short"], "test_acc"))
        log(lines[-1])
    if len(lines) > 1:
        log("\n" + "\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
