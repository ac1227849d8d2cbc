"""Speed benchmarks for the memory stage (ratios and throughputs, not timed tests).

1. Exact k-NN search: ``memgen.knn.search`` (faiss) vs ``memgen.knn.search_torch`` (cdist + topk) on the same
   embeddings -- queries/s of each and their ratio, plus a check that both return the same neighbours.
2. Backbone training throughput: ResNet-20 training steps (tensor-side augmentation, SGD) in images/s per batch
   size on CPU (``--threads``, default 2) and, when CUDA is present, on the GPU (channels_last + bf16 autocast).
   Also extrapolates seconds per epoch of 45,000 images.

Run:  python tests/benchmarks/bench_memory.py [--quick] [--out bench.json] [--embeddings emb.npz]
(``--embeddings``: an npz with ``keys`` [N, D] and optionally ``queries``; default: synthetic clustered 64-d
embeddings the size of CIFAR-10: 45,000 keys, 10,000 queries.)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))


def synthetic_embeddings(n_keys: int, n_queries: int, dim: int = 64, n_classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim)) * 3
    keys = (centers[rng.integers(n_classes, size=n_keys)] + rng.normal(size=(n_keys, dim))).astype(np.float32)
    queries = (centers[rng.integers(n_classes, size=n_queries)] + rng.normal(size=(n_queries, dim))).astype(np.float32)
    return np.maximum(keys, 0), np.maximum(queries, 0)  # post-ReLU-like, as GAP features are


def _best_time(fn, repeats: int):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), out


def bench_search(keys, queries, k: int = 30, repeats: int = 3, device: str = "cpu") -> dict:
    from memgen.knn import search, search_torch

    t_faiss, med_faiss, (d_f, i_f) = _best_time(lambda: search(queries, keys, k, metric="l2", device=device), repeats)
    t_torch, med_torch, (d_t, i_t) = _best_time(lambda: search_torch(queries, keys, k, device), repeats)
    same_first = float((i_f[:, 0] == i_t[:, 0]).mean())
    overlap = float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(i_f[:200], i_t[:200])]))
    try:
        import faiss  # noqa: F401
        backend = "faiss"
    except ImportError:
        backend = "torch (faiss not installed)"
    return {"device": device, "n_keys": len(keys), "n_queries": len(queries), "dim": keys.shape[1], "k": k,
            "search_backend": backend,
            "faiss_s": t_faiss, "torch_s": t_torch, "faiss_median_s": med_faiss, "torch_median_s": med_torch,
            "faiss_queries_per_s": len(queries) / t_faiss, "torch_queries_per_s": len(queries) / t_torch,
            "speedup_faiss_over_torch": t_torch / t_faiss,
            "same_nearest_fraction": same_first, "topk_overlap_first200": overlap,
            "max_abs_dist_diff": float(np.abs(d_f - d_t).max())}


def bench_backbone(batch_sizes, steps: int, warmup: int, device: str = "cpu") -> list[dict]:
    import torch
    import torch.nn.functional as F

    from memgen.nets import build_net
    from memgen.train import augment_batch

    rows = []
    is_cuda = device.startswith("cuda")
    for bs in batch_sizes:
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        model = build_net("resnet20").to(device).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
        x = torch.randint(0, 256, (bs * 4, 3, 32, 32), dtype=torch.uint8, device=device)
        y = torch.randint(0, 10, (bs * 4,), device=device)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if is_cuda else torch.autocast("cpu", enabled=False)
        times, cpu_times = [], []
        for step in range(warmup + steps):
            if is_cuda:
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            sl = slice((step % 4) * bs, (step % 4 + 1) * bs)
            xb = augment_batch(x[sl], gen).float().div_(255).contiguous(memory_format=torch.channels_last)
            with autocast:
                loss = F.cross_entropy(model(xb).float(), y[sl])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if is_cuda:
                torch.cuda.synchronize()
            if step >= warmup:
                times.append(time.perf_counter() - t0)
                cpu_times.append(time.process_time() - c0)
        med, best = statistics.median(times), min(times)
        threads = torch.get_num_threads()
        rows.append({"device": device, "batch_size": bs, "steps": steps, "threads": threads,
                     "precision": "bf16-autocast" if is_cuda else "fp32",
                     "images_per_s_median": bs / med, "images_per_s_best": bs / best,
                     "epoch_45k_s_median": 45000 / (bs / med), "epoch_45k_s_best": 45000 / (bs / best),
                     # CPU seconds the process used per step (all threads): wall >> cpu / threads means the cores
                     # were shared with other work while measuring
                     "cpu_s_per_step_median": statistics.median(cpu_times),
                     "wall_s_per_step_median": med})
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, few steps (about a minute on 2 cores)")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--embeddings", help="npz with 'keys' (and optionally 'queries') to search instead of synthetic")
    ap.add_argument("--batch-sizes", default="128,256,512")
    ap.add_argument("--skip-backbone", action="store_true")
    ap.add_argument("--skip-search", action="store_true")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    try:
        import faiss
        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    n_keys, n_queries = (10000, 2000) if args.quick else (45000, 10000)
    if args.embeddings:
        data = np.load(args.embeddings)
        keys = data["keys"].astype(np.float32)
        queries = data["queries"].astype(np.float32) if "queries" in data else keys[:n_queries]
    else:
        keys, queries = synthetic_embeddings(n_keys, n_queries)
    results = {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
               "threads": args.threads, "quick": args.quick, "search": [], "backbone": []}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices if not args.skip_search else []:
        results["search"].append(bench_search(keys, queries, repeats=2 if args.quick else 3, device=dev))
        print(json.dumps(results["search"][-1]), flush=True)
    if not args.skip_backbone:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
        for dev in devices:
            steps, warmup = (4, 1) if args.quick and dev == "cpu" else (10, 3) if dev == "cpu" else (50, 10)
            for row in bench_backbone(batch_sizes, steps, warmup, dev):
                results["backbone"].append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
