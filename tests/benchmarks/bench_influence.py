"""Speed and memory benchmarks of the memorization estimator and its learners (ratios, not timed tests).

    python tests/benchmarks/bench_influence.py [--quick] [--out file.json] [--threads 2]
           [--only mlp,probe,estimation] [--mnist ../shared/data/mnist]

Sections (each ratio is measured in the same process, rounds interleaved so that load from other
processes hits both sides alike; the median of the per-round ratios is reported with the best):

* ``mlp``: FLOP/s of the MLP training loop (784-512-256-10, batch 128, SGD momentum) against plain
  ``torch.mm`` calls of exactly the same shapes (goal >= 0.8), for one model, for several models
  trained at once, and for the one-model reference; and (full run) one model trained for 10
  epochs on 70% of real MNIST, with its time and test accuracy.
* ``probe``: thousands of linear models on fixed features, batched vs one at a time (same models,
  outputs compared), goal >= 5x.
* ``estimation``: estimate mem, held-out accuracy and influence from saved (synthetic) shards with
  n = 50,000, n_test = 10,000, t = 2,000 (50 planted influential pairs); wall time and peak RSS
  of the estimating process, with top influencers over all training examples and over the
  memorized ones only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))          # synthetic.py: the learner with known memorization



def train_flops(learner, m: int) -> float:
    """Floating-point operations of one MLP model's training on ``m`` examples (2 per multiply-add; forward,
    input-gradient and weight-gradient products, not the first layer's input gradient)."""
    macs = sum(a * b for a, b in zip(learner.sizes[:-1], learner.sizes[1:]))
    first = learner.sizes[0] * learner.sizes[1]
    return 2.0 * learner.epochs * m * (3 * macs - first)


def log(*a):
    print(*a, flush=True)


def load_mnist(path):
    from memgen.data import read_idx_dataset

    if path and Path(path).exists():
        ds = read_idx_dataset(path)
        return ds.x_train, ds.y_train, ds.x_test, ds.y_test, "mnist"
    rng = np.random.default_rng(0)
    log(f"  (no MNIST at {path}: using random 28x28 images; speed numbers only)")
    return (rng.integers(0, 256, (60000, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 60000),
            rng.integers(0, 256, (10000, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 10000), "random")


# --- MLP ------------------------------------------------------------------------------------------

def bench_mlp(args, out):
    import torch

    from memgen.influence import estimator as mz
    from memgen.influence.learners import MLPLearner
    from memgen.run_cost import mlp_step_shapes

    x_train, y_train, x_test, y_test, source = load_mnist(args.mnist)
    learner = MLPLearner(x_train, y_train, x_test, y_test, epochs=1, device="cpu")
    ref = MLPLearner(x_train, y_train, x_test, y_test, epochs=1, device="cpu", mode="reference")
    B = learner.batch_size
    steps = 50 if args.quick else 100   # steady state: per-call set-up (init, orders) is ~1 step
    rounds = 3 if args.quick else 5
    m = B * steps
    sub = mz.subset_indices(len(y_train), m, 0, 0)
    shapes = mlp_step_shapes(learner.sizes, B)
    mats = [(torch.randn(M, K), torch.randn(K, N), torch.empty(M, N)) for M, K, N in shapes]
    flops_mm = sum(2 * M * K * N for M, K, N in shapes) * steps
    flops_train = train_flops(learner, m)
    assert abs(flops_mm - flops_train) < 1e-6 * flops_train, (flops_mm, flops_train)

    def run_mm():
        t = time.perf_counter()
        for _ in range(steps):
            for a, b, c in mats:
                torch.mm(a, b, out=c)
        return time.perf_counter() - t

    def timed(f):
        t = time.perf_counter()
        f()
        return time.perf_counter() - t

    run_mm()
    learner.train_batched(sub[None], [1])
    ks = sorted({2, torch.get_num_threads(), 4} - {1})
    rows = {"mm": [], "batched": [], "reference": [], **{f"batched_k{k}": [] for k in ks}}
    for _ in range(rounds):
        rows["mm"].append(flops_mm / run_mm())
        rows["batched"].append(flops_train / timed(lambda: learner.train_batched(sub[None], [1])))
        rows["reference"].append(flops_train / timed(lambda: ref.train_reference(sub, 1)))
        for k in ks:
            rows[f"batched_k{k}"].append(k * flops_train / timed(lambda: learner.train_batched(
                np.stack([sub] * k), list(range(1, k + 1)))))
    res = {"threads": torch.get_num_threads(), "rounds": rounds, "steps_per_round": steps,
           "gflops": {k: [round(v / 1e9, 2) for v in vs] for k, vs in rows.items()}}
    for k in rows:
        if k == "mm":
            continue
        ratios = [a / b for a, b in zip(rows[k], rows["mm"])]
        res[f"ratio_{k}_median"] = round(statistics.median(ratios), 3)
        res[f"ratio_{k}_best"] = round(max(rows[k]) / max(rows["mm"]), 3)
    res["flops_per_model_10_epochs_70pct"] = train_flops(learner, 42000) * 10
    log(f"  mlp: training loop / plain mm FLOP/s = {res['ratio_batched_median']} (median), "
        f"{res['ratio_batched_best']} (best vs best); reference {res['ratio_reference_median']}; "
        + "; ".join(f"{k[9:]} models at once {res[f'ratio_{k}_median']}" for k in rows if k.startswith("batched_k"))
        + f"; GFLOP/s {res['gflops']}")
    if not args.quick:
        full = MLPLearner(x_train, y_train, x_test, y_test, epochs=10, device="cpu")
        spec_sub = mz.subset_indices(len(y_train), mz.subset_size(len(y_train), 0.7), 0, 0)
        t0 = time.perf_counter()
        params = full.train_batched(spec_sub[None], [mz.model_seed(0, 0)])   # one model (k = 1)
        t1 = time.perf_counter()
        o = full.evaluate(params)
        t2 = time.perf_counter()
        gflops = train_flops(full, len(spec_sub)) / (t1 - t0) / 1e9
        res["model_10_epochs"] = {"data": source, "m": len(spec_sub), "train_s": round(t1 - t0, 1),
                                  "eval_s": round(t2 - t1, 1), "train_gflops": round(gflops, 2),
                                  "test_acc": float(o.correct_test.mean()), "train_acc": float(o.correct_train.mean())}
        log(f"  mlp: one model, 10 epochs on {len(spec_sub)} examples: {res['model_10_epochs']}")
    out["mlp"] = res


# --- linear probe ---------------------------------------------------------------------------------

def bench_probe(args, out):
    import torch

    from memgen.influence import estimator as mz
    from memgen.influence.learners import LinearProbe

    configs = [(64, 1024, 8)] if args.quick else [(64, 2048, 8), (512, 1024, 4)]
    n, n_test, C = (5000, 1000, 10) if args.quick else (10000, 2000, 10)
    res = []
    for D, k, r in configs:
        rng = np.random.default_rng(D)
        centers = rng.normal(size=(C, D))
        y_train, y_test = rng.integers(0, C, n), rng.integers(0, C, n_test)
        x_train = centers[y_train] + 2.0 * rng.normal(size=(n, D))
        x_test = centers[y_test] + 2.0 * rng.normal(size=(n_test, D))
        kw = dict(epochs=3, batch_size=256, device="cpu", parallel=k)
        batched = LinearProbe(x_train, y_train, x_test, y_test, mode="batched", **kw)
        ref = LinearProbe(x_train, y_train, x_test, y_test, mode="reference", **kw)
        spec = mz.ShardSpec.for_learner(batched, 0.7, 0)
        subsets = [spec.subset(q) for q in range(k)]
        seeds = [spec.model_seed(q) for q in range(k)]
        ref.fit_predict(subsets[:1], seeds[:1])  # warm-up
        t_ref, t_b = [], []
        rounds = 2 if args.quick else 3
        # one-at-a-time tiny models can be slower with 2 threads than with 1 (thread sync per tiny
        # op, worse when other processes load the cores): the reference gets the faster of the two
        ref_threads = sorted({1, args.threads})
        t_ref_by = {th: [] for th in ref_threads}
        for _ in range(rounds):   # interleave: reference on r models, batched on all k models
            per = []
            for th in ref_threads:
                torch.set_num_threads(th)
                t = time.perf_counter()
                o_ref = ref.fit_predict(subsets[:r], seeds[:r])
                per.append((time.perf_counter() - t) / r)
                t_ref_by[th].append(per[-1])
            torch.set_num_threads(args.threads)
            t_ref.append(min(per))
            t = time.perf_counter()
            o_b = batched.fit_predict(subsets, seeds)
            t_b.append((time.perf_counter() - t) / k)
        diff = float(np.abs(o_b.prob_test[:r] - o_ref.prob_test).max())
        flips = int((o_b.correct_test[:r] != o_ref.correct_test).sum())
        speedups = [a / b for a, b in zip(t_ref, t_b)]
        row = {"features": D, "classes": C, "n_train": n, "n_test": n_test, "models_batched": k,
               "models_reference": r, "epochs": 3, "threads": torch.get_num_threads(),
               "ms_per_model_reference": [round(1e3 * v, 2) for v in t_ref],
               "ms_per_model_reference_by_threads": {th: [round(1e3 * v, 2) for v in vs]
                                                     for th, vs in t_ref_by.items()},
               "ms_per_model_batched": [round(1e3 * v, 3) for v in t_b],
               "speedup_median": round(statistics.median(speedups), 2), "speedup_best": round(min(t_ref) / min(t_b), 2),
               "max_abs_prob_diff": diff, "prediction_flips": flips,
               "test_acc_mean": float(o_b.correct_test.mean())}
        log(f"  probe D={D}: {k} models batched vs {r} one at a time: speed-up {row['speedup_median']}x "
            f"(best {row['speedup_best']}x); max |prob diff| {diff:.2e}, flips {flips}; "
            f"ms/model ref {row['ms_per_model_reference']} batched {row['ms_per_model_batched']}")
        res.append(row)
    out["probe"] = res


# --- estimation from shards -----------------------------------------------------------------------

def make_shards(directory, n, n_test, t, shard_size, seed=0):
    from memgen.influence import estimator as mz
    from synthetic import SyntheticLearner

    rng = np.random.default_rng(seed)
    p_in = rng.uniform(0.9, 1.0, n)
    p_out = np.where(rng.random(n) < 0.05, rng.uniform(0.0, 0.5, n), p_in - rng.uniform(0, 0.1, n))
    planted = [(i, i % n_test, 0.4) for i in np.flatnonzero(p_out < 0.5)[:50]]
    learner = SyntheticLearner(p_in, p_out, rng.uniform(0.3, 0.6, n_test), planted,
                               y_train=rng.integers(0, 10, n), y_test=rng.integers(0, 10, n_test))
    spec = mz.ShardSpec.for_learner(learner, 0.7, seed)
    Path(directory).mkdir(parents=True, exist_ok=True)
    for a, b in mz.shard_ranges(t, shard_size):
        mz.run_shard(learner, spec, a, b, mz.shard_path(directory, a, b))
    Path(directory, "planted.json").write_text(json.dumps([[int(i), int(j)] for i, j, _ in planted]))
    return planted


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it is not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def estimation_child(directory, out_json, block_size, rows):
    """Runs in a fresh process so that its peak RSS is the estimator's alone."""
    import torch

    from memgen.influence import estimator as mz

    torch.ones(8) @ torch.ones(8)
    rss_import = peak_rss_mb()
    t0 = time.perf_counter()
    est = mz.estimate(sorted(Path(directory).glob("models_*.npz")), block_size=block_size, influence_rows=rows, show_progress=False)
    dt = time.perf_counter() - t0
    planted = {tuple(p) for p in json.loads(Path(directory, "planted.json").read_text())}
    found = set(zip(est.pairs["train_pos"].tolist(), est.pairs["test_pos"].tolist()))
    res = {"seconds": round(dt, 1), "t": est.t, "n_train": est.spec.n_train, "n_test": est.spec.n_test,
           "influence_rows": rows, "timings_s": {k: round(v, 1) for k, v in est.timings.items()},
           "n_pairs": len(est.pairs), "planted_pairs_found": len(planted & found),
           "n_mem_ge_0.25": int(np.sum(est.mem >= 0.25)),
           "mean_se_correct": float(np.nanmean(est.mem_se)), "mean_se_prob": float(np.nanmean(est.stats["prob"]["se"])),
           "threads": torch.get_num_threads(),
           "peak_rss_mb": round(peak_rss_mb(), 1),
           "rss_after_imports_mb": round(rss_import, 1)}
    Path(out_json).write_text(json.dumps(res))


def bench_estimation(args, out):
    n, n_test, t, shard = (10000, 2000, 200, 50) if args.quick else (50000, 10000, 2000, 100)
    tmp = Path(tempfile.mkdtemp(prefix="memgen_bench_"))
    try:
        t0 = time.perf_counter()
        planted = make_shards(tmp / "shards", n, n_test, t, shard)
        gen_s = time.perf_counter() - t0
        disk = sum(p.stat().st_size for p in (tmp / "shards").glob("*.npz"))
        log(f"  estimation: wrote {t} synthetic models ({n} train / {n_test} test) in {gen_s:.0f}s, "
            f"{disk / 2**20:.0f} MiB of shards")
        child = tmp / "child.json"
        res = {}
        for rows in ("all", "memorized"):
            cmd = [sys.executable, __file__, "--child", str(tmp / "shards"), str(child), "--threads", str(args.threads),
                   "--rows", rows, "--block-size", str(args.block_size)]
            subprocess.run(cmd, check=True)
            res[f"rows_{rows}"] = json.loads(child.read_text())
        res.update(shard_generation_s=round(gen_s, 1), shard_mib=round(disk / 2**20, 1), planted_pairs=len(planted))
        log(f"  estimation: {res}")
        out["estimation"] = res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    p.add_argument("--out", help="write the numbers as JSON here")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--only", default="mlp,probe,estimation")
    p.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    p.add_argument("--block-size", type=int, default=1024)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--rows", default="all", help=argparse.SUPPRESS)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        estimation_child(*args.child, block_size=args.block_size, rows=args.rows)
        return
    out = {"quick": args.quick, "threads": args.threads, "cpu_count": os.cpu_count(), "torch": torch.__version__,
           "load_average_start": os.getloadavg()}
    for name in args.only.split(","):
        log(f"[{name}]")
        t = time.perf_counter()
        {"mlp": bench_mlp, "probe": bench_probe, "estimation": bench_estimation}[name](args, out)
        out.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t, 1)
    out["load_average_end"] = os.getloadavg()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2, default=float))
    log(json.dumps({k: v for k, v in out.items() if k not in ("mlp", "probe", "estimation")}, default=float))


if __name__ == "__main__":
    main()
