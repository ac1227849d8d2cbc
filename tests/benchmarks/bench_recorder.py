"""Cost of recording the learning-speed proxy during training: train_classifier with and without a
LearningSpeedRecorder, same model, data and seed, in the same process; prints the ratio of training times.

    PYTHONPATH=src python tests/benchmarks/bench_recorder.py --arch resnet20 --n 1024 --epochs 2 --device cpu
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from memgen.nets import build_net
from memgen.learning_speed import LearningSpeedRecorder
from memgen.runtime import seed_everything
from memgen.train import train_classifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, args.n)
    times = {"plain": [], "recorded": []}
    for _ in range(args.repeats):
        for kind in times:
            seed_everything(0)
            model = build_net(args.arch, num_classes=10, in_channels=3)
            record = LearningSpeedRecorder(args.n) if kind == "recorded" else None
            metrics = train_classifier(model, x, y, epochs=args.epochs, device=args.device, seed=0,
                                       show_progress=False, record=record)
            times[kind].append(metrics["train_time_s"])
    plain, recorded = min(times["plain"]), min(times["recorded"])
    print(f"{args.arch} on {args.n} images x {args.epochs} epochs ({metrics['device']}): plain {plain:.2f} s, "
          f"recorded {recorded:.2f} s, ratio {recorded / plain:.3f} (best of {args.repeats})")


if __name__ == "__main__":
    main()
