"""Speed of the embedding pass (memgen.train.embed: channels-last, batches sized for the device) against a plain
reference in the same process (NCHW batches of 1024 images, the same network and images), rounds interleaved;
prints images/s of both and their ratio, and checks that both give the same embeddings.

    PYTHONPATH=src python tests/benchmarks/bench_inference.py --n 4096 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from memgen.nets import build_net
from memgen.runtime import resolve_device, resolve_precision
from memgen.train import embed


@torch.inference_mode()
def reference_embed(model, x_uint8: np.ndarray, device: str, batch_size: int = 1024) -> np.ndarray:
    model.to(device, memory_format=torch.contiguous_format).eval()
    x = torch.from_numpy(x_uint8).permute(0, 3, 1, 2).contiguous()
    return torch.cat([model.embed(x[s:s + batch_size].to(device).float().div_(255)).cpu()
                      for s in range(0, len(x), batch_size)]).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = build_net(args.arch, num_classes=10, in_channels=3)
    x = np.random.default_rng(0).integers(0, 256, (args.n, 32, 32, 3), dtype=np.uint8)
    runs = {"reference": lambda: reference_embed(model, x, device),
            "embed": lambda: embed(model, x, device=device, precision="fp32")[0]}
    outputs = {name: fn() for name, fn in runs.items()}   # warm-up, and the outputs to compare
    rate = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            rate[name].append(args.n / (time.perf_counter() - t))
    result = {"arch": args.arch, "n": args.n, "threads": args.threads, "device": device,
              "auto_precision": resolve_precision("auto", device),
              "images_per_s": {k: [round(v) for v in vs] for k, vs in rate.items()},
              "ratio_embed_over_reference": round(statistics.median(a / b for a, b in zip(rate["embed"],
                                                                                          rate["reference"])), 2),
              "max_abs_difference": float(np.abs(outputs["embed"] - outputs["reference"]).max())}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
