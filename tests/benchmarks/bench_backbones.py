"""Training and embedding speed of each CIFAR backbone against ResNet-20 in the same process: the training loop
(memgen.train.train_classifier, each network at its recipe's batch size) and the embed job's pass
(memgen.train.embed with the test-time views a backbone entry can ask for), rounds interleaved; prints images/s
and the ratio to ResNet-20 of the same round. A few steps per round: memgen.run_cost's ARCH_COST holds the
ratios of whole trainings instead (docs/backbone-recipes.md), which these probes miss by up to 14%.
``--profile ARCH`` instead shows where that network's training steps spend their time, by operator and shape.

    PYTHONPATH=src python tests/benchmarks/bench_backbones.py --threads 2
    PYTHONPATH=src python tests/benchmarks/bench_backbones.py --threads 2 --profile airbench94 --batch 512
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from memgen.nets import build_net
from memgen.runtime import seed_everything, write_json
from memgen.train import embed, train_classifier

# Each network at the batch size its recipe trains with (config.yaml; the airbench94 trials' baseline).
BATCH = {"resnet20": 128, "resnet20_whitened": 128, "airbench94": 1024, "airbench_small": 1024}
VIEWS = {"single": {}, "flip": {"flip_average": True}, "flip+translate": {"flip_average": True,
                                                                          "translate_average": True}}


def warmed_up(arch: str, x: np.ndarray, y: np.ndarray, batch: int, precision: str):
    """The network, seeded, after one training step (the first step's one-time costs stay out of a measurement)."""
    seed_everything(0)
    net = build_net(arch, num_classes=10)
    train_classifier(net, x, y, epochs=1, batch_size=batch, max_steps=1, device="cpu", precision=precision,
                     show_progress=False)
    return net


def train_img_s(arch: str, x: np.ndarray, y: np.ndarray, steps: int, precision: str) -> float:
    """Images/s of ``steps`` training steps after one step of warm-up (the loop's own clock)."""
    net = warmed_up(arch, x, y, BATCH[arch], precision)
    return train_classifier(net, x, y, epochs=1, batch_size=BATCH[arch], max_steps=steps, device="cpu",
                            precision=precision, show_progress=False)["images_per_s"]


def profile_training(arch: str, x: np.ndarray, y: np.ndarray, steps: int, batch: int, precision: str) -> dict:
    """``steps`` training steps under torch's profiler (after one of warm-up): the share of their time in the
    convolutions, forward and backward, and the operators that took the most, by input shape."""
    net = warmed_up(arch, x, y, batch, precision)
    with torch.profiler.profile(record_shapes=True) as prof:
        metrics = train_classifier(net, x, y, epochs=1, batch_size=batch, max_steps=steps, device="cpu",
                                   precision=precision, show_progress=False)
    ops = prof.key_averages()
    total = sum(op.self_cpu_time_total for op in ops)
    conv = sum(op.self_cpu_time_total for op in ops if op.key in ("aten::mkldnn_convolution",
                                                                    "aten::convolution_backward"))
    print(f"{arch}, batch {batch}, {metrics['precision']}: {metrics['images_per_s']:.0f} img/s; "
          f"{100 * conv / total:.0f}% of the profiled time in convolutions (forward and backward)")
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=12,
                                                             max_name_column_width=28, max_shapes_column_width=80))
    return {"arch": arch, "batch": batch, "precision": metrics["precision"], "images_per_s": metrics["images_per_s"],
            "convolution_share": conv / total}


def embed_img_s(arch: str, x: np.ndarray, views: dict, precision: str) -> float:
    net = build_net(arch, num_classes=10).eval()
    embed(net, x[:256], "cpu", precision=precision, **views)
    start = time.perf_counter()
    embed(net, x, "cpu", precision=precision, **views)
    return len(x) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", choices=sorted(BATCH), help="networks beside resnet20 (default all)")
    ap.add_argument("--steps", type=int, default=8, help="training steps measured per network and round")
    ap.add_argument("--n-embed", type=int, default=2048, help="images embedded per network, view and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--profile", choices=sorted(BATCH), help="profile this network's training steps instead")
    ap.add_argument("--batch", type=int, help="the profiled steps' batch size (default: the recipe's, BATCH)")
    ap.add_argument("--out", help="write the measurements as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    if args.profile:
        batch = args.batch or BATCH[args.profile]
        n = batch * (args.steps + 1)
        result = profile_training(args.profile, rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                                  rng.integers(0, 10, n), args.steps, batch, args.precision)
        if args.out:
            write_json(args.out, result)
        return
    archs = ["resnet20", *[a for a in (args.arch or sorted(BATCH)) if a != "resnet20"]]
    n = max(BATCH.values()) * (args.steps + 1)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    train = {a: [] for a in archs}
    inference = {(a, v): [] for a in archs for v in VIEWS}
    for _ in range(args.rounds):
        for arch in archs:
            train[arch].append(train_img_s(arch, x, y, args.steps, args.precision))
            for view, kwargs in VIEWS.items():
                inference[arch, view].append(embed_img_s(arch, x[:args.n_embed], kwargs, args.precision))
    rows = []
    for arch in archs:
        ratio = statistics.median(r / b for r, b in zip(train["resnet20"], train[arch]))
        rows.append({"arch": arch, "batch": BATCH[arch], "train_img_s": [round(v) for v in train[arch]],
                     "train_cost_vs_resnet20": round(ratio, 2),
                     **{f"embed_img_s_{view}": round(statistics.median(inference[arch, view])) for view in VIEWS}})
        print(f"{arch:18s} batch {BATCH[arch]:5d}  train {statistics.median(train[arch]):6.0f} img/s "
              f"(seconds per image {ratio:.2f}x ResNet-20's)  embed img/s: "
              + ", ".join(f"{view} {statistics.median(inference[arch, view]):.0f}" for view in VIEWS), flush=True)
    if args.out:
        write_json(args.out, rows)


if __name__ == "__main__":
    main()
