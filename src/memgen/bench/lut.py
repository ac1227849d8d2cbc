"""Speed and memory benchmark of memgen.lut (ratios and goals, not timed tests).

On Binary-MNIST (1-bit pixels, 0-4 vs 5-9; 60,000 training and 10,000 test images):

1. fit / predict wall time of the baseline network (5 hidden layers of 1024 LUTs + an output LUT, k=10) with
   the fast CPU path (goals: fit <= 5 s, predict <= 1 s on 2 cores), and with the torch path on CUDA when a
   GPU is present;
2. the plain implementation (:func:`memgen.lut.network.fit_plain`: one LUT at a time, its k input columns gathered
   one at a time with numpy) on the same network in the same run, the speed ratio (goal >= 7x) and a check
   that both produce identical tables;
3. peak memory of fit + predict at k=16 (goal: well under 4 GiB), measured in a fresh child process: peak RSS
   (VmHWM) of the whole process, data included, and the peak of numpy allocations traced by tracemalloc;
4. (full runs) train/test accuracy at k=8, 10, 12 (paper: test 0.87 / 0.89 / 0.90, train 0.89 / 0.94 / 0.99).

Also records CPU time next to wall time and the load average, since other jobs on a shared machine inflate wall
times. ``quick`` shrinks everything (the plain reference then runs on 2 x 256 LUTs and 20,000 images).

The data come from a dataset cache (``results/data/mnist.npz``) or a folder with the four MNIST IDX files.
Used by the workflow (``snakemake bench``: rule ``bench_lut``) and by ``tests/benchmarks/bench_lut.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GOALS = {"fit_s": 5.0, "predict_s": 1.0, "ratio": 7.0, "peak_rss_gib_k16": 4.0}
BASELINE = (1024,) * 5


def binary_mnist(source: str | os.PathLike):
    """Binarized MNIST (threshold 128) with labels 0-4 -> 0, 5-9 -> 1, from a cache npz or an IDX folder."""
    from memgen.bits import binarize

    source = Path(source)
    if source.suffix == ".npz":
        from memgen.data import load_cache

        ds = load_cache(source)
    else:
        from memgen.data import read_idx_dataset

        ds = read_idx_dataset(source)
    return (binarize(ds.x_train), (ds.y_train >= 5).astype(np.uint8),
            binarize(ds.x_test), (ds.y_test >= 5).astype(np.uint8))


def timed(fn, repeats: int = 1):
    """(best wall s, CPU s of that run, result) over ``repeats`` runs."""
    best = None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        w, c = time.perf_counter() - w, time.process_time() - c
        if best is None or w < best[0]:
            best = (w, c, out)
    return best


def same_tables(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.tables, b.tables)) and \
        all(np.array_equal(x, y) for x, y in zip(a.lut_train_accuracy, b.lut_train_accuracy))


def bench_speed(data, k: int, widths, n_train: int | None, threads: int, repeats: int):
    """Fit / predict times and accuracies of the fast path; returns (row, fitted network)."""
    from memgen.lut.network import LUTNetwork

    x_train, y_train, x_test, y_test = data
    if n_train:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    LUTNetwork(k, (64,), threads=threads).fit(x_train[:2000], y_train[:2000])      # warm-up (imports)
    fit_s, fit_cpu, net = timed(lambda: LUTNetwork(k, widths, seed=0, threads=threads).fit(x_train, y_train), repeats)
    pred_s, pred_cpu, pred = timed(lambda: net.predict(x_test), repeats + 2)
    return {"k": k, "widths": list(widths), "n_train": len(x_train), "n_test": len(x_test), "threads": threads,
            "fit_s": fit_s, "fit_cpu_s": fit_cpu, "predict_s": pred_s, "predict_cpu_s": pred_cpu,
            "train_acc": net.train_accuracy, "test_acc": float(np.mean(pred == y_test))}, net


def bench_plain(data, k: int, widths, n_train: int | None, threads: int) -> dict:
    from memgen.lut.network import LUTNetwork, fit_plain

    x_train, y_train = data[0][:n_train] if n_train else data[0], data[1][:n_train] if n_train else data[1]
    fast_s, fast_cpu, fast = timed(lambda: LUTNetwork(k, widths, seed=0, threads=threads).fit(x_train, y_train), 2)
    plain_s, plain_cpu, plain = timed(lambda: fit_plain(LUTNetwork(k, widths, seed=0), x_train, y_train))
    return {"k": k, "widths": list(widths), "n_train": len(x_train), "fast_fit_s": fast_s, "fast_fit_cpu_s": fast_cpu,
            "plain_fit_s": plain_s, "plain_fit_cpu_s": plain_cpu, "ratio": plain_s / fast_s,
            "cpu_ratio": plain_cpu / fast_cpu, "identical_tables": same_tables(fast, plain)}


def bench_cuda(data, k: int, widths, cpu_net) -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    from memgen.lut.network import LUTNetwork

    x_train, y_train, x_test, _ = data

    def fit():
        net = LUTNetwork(k, widths, seed=0, device="cuda").fit(x_train, y_train)
        torch.cuda.synchronize()
        return net

    fit()                                                                        # warm-up
    fit_s, _, net = timed(fit, 3)
    pred_s, _, _ = timed(lambda: net.predict(x_test), 5)
    return {"device": torch.cuda.get_device_name(), "fit_s": fit_s, "predict_s": pred_s,
            "identical_to_cpu": same_tables(net, cpu_net)}


def peak_memory_child(source, k: int, widths, threads: int) -> dict:
    """Run fit + predict at ``k`` in a fresh interpreter (``python -m memgen.bench.lut --_peak``) and return
    its memory numbers."""
    cmd = [sys.executable, "-m", "memgen.bench.lut", "--_peak", str(k), "--widths", ",".join(map(str, widths)),
           "--threads", str(threads), "--data", str(source)]
    src = str(Path(__file__).resolve().parents[2])                 # memgen importable also when not installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _proc_status_gib(field: str) -> float:
    """VmHWM / VmRSS of this process in GiB. (Not ru_maxrss: Linux carries that over from the parent across exec.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20      # KiB on Linux


def peak_memory(source, k: int, widths, threads: int) -> dict:
    """Fit + predict at ``k`` in this process; its memory numbers (run it in a fresh process)."""
    import tracemalloc

    from memgen.lut.network import LUTNetwork

    data = binary_mnist(source)
    rss_data = _proc_status_gib("VmRSS")
    tracemalloc.start()
    wall = time.perf_counter()
    net = LUTNetwork(k, widths, seed=0, threads=threads).fit(data[0], data[1])
    acc = net.score(data[2], data[3])
    wall = time.perf_counter() - wall
    traced = tracemalloc.get_traced_memory()[1] / 2**30
    tracemalloc.stop()
    return {"k": k, "widths": list(widths), "peak_rss_gib": _proc_status_gib("VmHWM"),
            "rss_after_loading_data_gib": rss_data, "peak_traced_gib": traced, "fit_predict_s": wall,
            "train_acc": net.train_accuracy, "test_acc": acc}


def run_benchmark(source, quick: bool = False, threads: int = 2, widths=BASELINE, accuracy_ks=(8, 10, 12)) -> dict:
    """The whole benchmark on the MNIST at ``source`` (cache npz or IDX folder); a JSON-serialisable dict."""
    widths = tuple(widths)
    data = binary_mnist(source)
    results = {"machine": {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
                           "platform": platform.platform(), "loadavg_start": os.getloadavg()}}
    speed, net = bench_speed(data, 10, widths if not quick else (256,) * 2, 20000 if quick else None, threads,
                             1 if quick else 3)
    results["speed_k10"] = speed
    results["plain_vs_fast"] = bench_plain(data, 10, (256,) * 2 if quick else widths, 20000 if quick else None,
                                           threads)
    results["cuda_k10"] = bench_cuda(data, 10, widths, net) if not quick else None
    results["memory_k16"] = peak_memory_child(source, 16, (256,) * 2 if quick else widths, threads)
    if not quick:
        results["accuracy"] = [bench_speed(data, k, widths, None, threads, 1)[0] for k in accuracy_ks]
    results["machine"]["loadavg_end"] = os.getloadavg()
    full = not quick and widths == BASELINE and len(data[0]) == 60000
    results["goals"] = {
        "fit_s<=5": speed["fit_s"] <= GOALS["fit_s"] if full else None,
        "predict_s<=1": speed["predict_s"] <= GOALS["predict_s"] if full else None,
        "ratio>=7": results["plain_vs_fast"]["ratio"] >= GOALS["ratio"] if full else None,
        "peak_rss_k16<4GiB": results["memory_k16"]["peak_rss_gib"] < GOALS["peak_rss_gib_k16"] if full else None,
    }
    return results


def summary(results: dict, threads: int) -> str:
    """The benchmark as a few readable lines."""
    s, p, m = results["speed_k10"], results["plain_vs_fast"], results["memory_k16"]
    lines = [f"Binary-MNIST, {s['n_train']} train / {s['n_test']} test, widths {s['widths']} + 1 output LUT, "
             f"{threads} threads, load average {results['machine']['loadavg_start'][0]:.1f}",
             f"{'measure':44s} {'wall s':>9s} {'cpu s':>9s}",
             f"{'fast fit (k=10)':44s} {s['fit_s']:9.2f} {s['fit_cpu_s']:9.2f}",
             f"{'fast predict (k=10)':44s} {s['predict_s']:9.3f} {s['predict_cpu_s']:9.3f}",
             f"{'fast fit, same run as plain':44s} {p['fast_fit_s']:9.2f} {p['fast_fit_cpu_s']:9.2f}",
             f"{'plain fit (one LUT input at a time)':44s} {p['plain_fit_s']:9.2f} {p['plain_fit_cpu_s']:9.2f}",
             f"{'ratio plain / fast':44s} {p['ratio']:9.1f} {p['cpu_ratio']:9.1f}   identical tables: "
             f"{p['identical_tables']}"]
    if results.get("cuda_k10"):
        c = results["cuda_k10"]
        lines.append(f"{'cuda fit / predict (' + c['device'] + ')':44s} {c['fit_s']:9.2f} {c['predict_s']:9.3f}   "
                     f"identical to CPU: {c['identical_to_cpu']}")
    lines.append(f"k=16 fit+predict: peak RSS {m['peak_rss_gib']:.2f} GiB (after loading data "
                 f"{m['rss_after_loading_data_gib']:.2f}), peak traced allocations {m['peak_traced_gib']:.2f} GiB, "
                 f"{m['fit_predict_s']:.1f} s; train {m['train_acc']:.3f} test {m['test_acc']:.3f}")
    for row in results.get("accuracy", []):
        lines.append(f"k={row['k']:2d}: train {row['train_acc']:.4f}  test {row['test_acc']:.4f}  "
                     f"(fit {row['fit_s']:.2f} s)")
    lines.append(f"goals: {results['goals']}")
    return "\n".join(lines)


def write_json(results: dict, path) -> None:
    from memgen.runtime import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(results, indent=2))


def _main() -> None:        # the child process of peak_memory_child
    parser = argparse.ArgumentParser()
    parser.add_argument("--_peak", type=int, required=True)
    parser.add_argument("--widths", type=lambda s: tuple(int(w) for w in s.split(",")), default=BASELINE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", required=True)
    args = parser.parse_args()
    print(json.dumps(peak_memory(args.data, args._peak, args.widths, args.threads)))


if __name__ == "__main__":
    _main()
