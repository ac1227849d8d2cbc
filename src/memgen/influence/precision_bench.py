"""Speed of bf16 against fp32 on the machine it runs on (ratios in one process, rounds interleaved, not timed tests).

1. ``resnet``: images/s of the ResNet-20 training loop (:func:`memgen.train.train_classifier`, channels_last,
   batch 128, CIFAR-sized uint8 images) in bf16 autocast and in fp32, rounds alternating; goal bf16 >= 1.4x.
   Also the share of a bf16 step spent in the data path (batch indexing, random crop, flip, scaling to float).
2. ``mlp``: FLOP/s of the estimator's MLP training loop (:class:`memgen.influence.learners.mlp.MLPLearner`,
   784-512-256-10, batch 128, one model) in bf16 against bare bf16 ``torch.mm`` calls of exactly its matrix
   shapes (goal >= 0.7) and against the fp32 loop (goal >= 2.5x); then one model of the authors' demo
   (10 epochs on 70% of MNIST's 60,000 training images) timed end to end (goal <= 3 s on 2 threads).
   The bound on both: the bare products plus the least memory traffic the fp32 master weights and momentum
   buffers need each step (one pass that reads and writes every fp32 weight: ``torch._foreach_add_`` over
   tensors of the weights' shapes), i.e. the fastest any implementation of this recipe could go here.
3. ``transformer``: seconds per epoch of the neighbour Transformer in both precisions (no goal: it stays
   fp32 because bf16 does not pay there).

Per-round values are kept; ratios are medians of the per-round ratios. Other processes on a shared machine
slow both sides of a round alike, so the ratios hold where absolute times do not: the load average is
recorded. ``quick`` shrinks every section (a smoke run of the benchmark, not a measurement).
Used by ``snakemake bench`` (rule ``bench_precision``) and ``tests/benchmarks/bench_precision.py``.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np

GOALS = {"resnet_bf16_over_fp32": 1.4, "mlp_bf16_over_bare_bf16_mm": 0.7, "mlp_bf16_over_fp32": 2.5,
         "mlp_demo_model_s": 3.0}


def _median_ratio(a, b) -> float:
    return float(statistics.median(x / y for x, y in zip(a, b)))


def load_mnist(source):
    """MNIST ``(x_train, y_train, x_test, y_test, name)`` from a dataset cache (``.npz``) or an IDX folder;
    random images of the same shape when ``source`` does not exist (speed numbers only)."""
    from pathlib import Path

    if source and Path(source).exists():
        from memgen.data import load_cache, read_idx_dataset

        ds = load_cache(source) if str(source).endswith(".npz") else read_idx_dataset(source)
        return ds.x_train, ds.y_train, ds.x_test, ds.y_test, "mnist"
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (60000, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 60000),
            rng.integers(0, 256, (10000, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 10000), "random")


# ---------------------------------------------------------------------------------------------- ResNet-20
def bench_resnet(quick: bool = False) -> dict:
    import torch

    from memgen.nets import build_net
    from memgen.runtime import seed_everything
    from memgen.train import as_nchw, augment_batch, train_classifier

    steps, rounds, bs = (4, 2, 128) if quick else (24, 4, 128)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (bs * steps, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, bs * steps)

    def loop(precision):
        seed_everything(0)
        m = train_classifier(build_net("resnet20"), x, y, epochs=1, batch_size=bs, device="cpu", precision=precision,
                             show_progress=False)
        return m["images_per_s"]

    def data_path():
        gen = torch.Generator().manual_seed(0)
        x_all = as_nchw(x)
        t = time.perf_counter()
        perm = torch.randperm(len(x_all), generator=gen)
        for b in range(steps):
            xb = augment_batch(x_all[perm[b * bs:(b + 1) * bs]], gen, pad=4, flip=True)
            xb.float().div_(255).contiguous(memory_format=torch.channels_last)
        return (time.perf_counter() - t) / steps

    loop("bf16")   # warm-up: oneDNN primitive creation for both precisions
    loop("fp32")
    rows = {"fp32": [], "bf16": [], "data_s_per_step": []}
    for r in range(rounds):
        for p in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
            rows[p].append(loop(p))
        rows["data_s_per_step"].append(data_path())
    bf16_step_s = bs / statistics.median(rows["bf16"])
    return {"batch_size": bs, "steps_per_round": steps, "rounds": rounds,
            "images_per_s": {p: [round(v, 1) for v in rows[p]] for p in ("fp32", "bf16")},
            "ratio_bf16_over_fp32": round(_median_ratio(rows["bf16"], rows["fp32"]), 3),
            "data_path_ms_per_step": round(1e3 * statistics.median(rows["data_s_per_step"]), 2),
            "data_path_share_of_bf16_step": round(statistics.median(rows["data_s_per_step"]) / bf16_step_s, 3)}


# -------------------------------------------------------------------------------------------------- MLP
def mm_shapes(sizes, batch):
    """The matrix products ``(M, K, N)`` of one MLP training step: forward, weight gradient, and input gradient
    (not for the first layer)."""
    shapes = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        shapes += [(batch, a, b), (a, batch, b)]
    for a, b in list(zip(sizes[:-1], sizes[1:]))[1:]:
        shapes.append((batch, b, a))
    return shapes


def bench_mlp(mnist, quick: bool = False) -> dict:
    import torch

    from memgen.influence import estimator as est
    from memgen.influence.learners.mlp import MLPLearner

    x_train, y_train, x_test, y_test, source = mnist
    bf16 = MLPLearner(x_train, y_train, x_test, y_test, epochs=1, device="cpu", precision="bf16")
    fp32 = MLPLearner(x_train, y_train, x_test, y_test, epochs=1, device="cpu", precision="fp32")
    B = bf16.batch_size
    steps, rounds = (20, 2) if quick else (120, 5)
    m = B * steps
    sub = est.subset_indices(len(y_train), m, 0, 0)[None]
    shapes = mm_shapes(bf16.sizes, B)
    mats = [(torch.randn(M, K).bfloat16(), torch.randn(K, N).bfloat16(), torch.empty(M, N, dtype=torch.bfloat16))
            for M, K, N in shapes]
    flops = sum(2 * M * K * N for M, K, N in shapes) * steps   # the training loop's products, exactly

    def bare_mm():
        for _ in range(steps):
            for a, b, c in mats:
                torch.mm(a, b, out=c)

    weights = [torch.zeros(a * b + b) for a, b in zip(bf16.sizes[:-1], bf16.sizes[1:])]
    updates = [torch.zeros_like(w) for w in weights]

    def bare_mm_and_update():
        for _ in range(steps):
            for a, b, c in mats:
                torch.mm(a, b, out=c)
            torch._foreach_add_(weights, updates, alpha=-0.1)

    def timed(fn):
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    for fn in (bare_mm, bare_mm_and_update, lambda: bf16.train_batched(sub, [1]),
               lambda: fp32.train_batched(sub, [1])):
        fn()   # warm-up
    rows = {"bare_bf16_mm": [], "bare_bf16_mm_and_update": [], "bf16": [], "fp32": []}
    for _ in range(rounds):
        rows["bare_bf16_mm"].append(flops / timed(bare_mm))
        rows["bare_bf16_mm_and_update"].append(flops / timed(bare_mm_and_update))
        rows["bf16"].append(flops / timed(lambda: bf16.train_batched(sub, [1])))
        rows["fp32"].append(flops / timed(lambda: fp32.train_batched(sub, [1])))
    res = {"sizes": bf16.sizes, "batch_size": B, "steps_per_round": steps, "rounds": rounds,
           "gflops": {k: [round(v / 1e9, 1) for v in vs] for k, vs in rows.items()},
           "ratio_bf16_over_bare_bf16_mm": round(_median_ratio(rows["bf16"], rows["bare_bf16_mm"]), 3),
           "ratio_bf16_over_fp32": round(_median_ratio(rows["bf16"], rows["fp32"]), 3),
           "bound_over_bare_bf16_mm": round(_median_ratio(rows["bare_bf16_mm_and_update"], rows["bare_bf16_mm"]), 3),
           "bound_over_fp32": round(_median_ratio(rows["bare_bf16_mm_and_update"], rows["fp32"]), 3)}
    n = len(y_train) if not quick else 6000
    demo = MLPLearner(x_train[:n], y_train[:n], x_test, y_test, epochs=10 if not quick else 1, device="cpu",
                      precision="bf16")
    demo_sub = est.subset_indices(n, est.subset_size(n, 0.7), 0, 0)
    t0 = time.perf_counter()
    params = demo.train_batched(demo_sub[None], [est.model_seed(0, 0)])
    t1 = time.perf_counter()
    out = demo.evaluate(params)
    demo_steps = demo.epochs * -(-len(demo_sub) // B)
    res["demo_model"] = {"data": source, "m": len(demo_sub), "epochs": demo.epochs, "train_s": round(t1 - t0, 2),
                         "bound_s": round(demo_steps * flops / steps / statistics.median(rows["bare_bf16_mm_and_update"]), 2),
                         "eval_s": round(time.perf_counter() - t1, 2), "test_acc": float(out.correct_test.mean())}
    return res


# ------------------------------------------------------------------------------------------- Transformer
def bench_transformer(quick: bool = False) -> dict:
    from memgen.retrieval.memory import leave_one_out_neighbors
    from memgen.retrieval.transformer import train_neighbor_transformer
    from memgen.runtime import autocast

    n, rounds = (1000, 1) if quick else (4000, 2)
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(n, 64)).astype(np.float32)
    labels = rng.integers(0, 10, n)
    nb = leave_one_out_neighbors(keys, 10, device="cpu")
    rows = {"fp32": [], "bf16": []}
    for _ in range(rounds):
        for p in rows:
            t = time.perf_counter()
            with autocast(p, "cpu"):   # the whole training call, as bf16 in the package would run it
                train_neighbor_transformer(keys, labels, nb, n_classes=10, epochs=1, device="cpu",
                                           show_progress=False)
            rows[p].append(time.perf_counter() - t)
    return {"n": n, "s_per_epoch": {p: [round(v, 2) for v in vs] for p, vs in rows.items()},
            "ratio_bf16_over_fp32_speed": round(_median_ratio(rows["fp32"], rows["bf16"]), 3)}


# -------------------------------------------------------------------------------------------------- driver
def run_benchmark(mnist_source=None, *, quick: bool = False, threads: int = 2,
                  sections=("resnet", "mlp", "transformer")) -> dict:
    """Run the sections on the CPU with ``threads`` torch threads; a JSON-ready dict with the goals judged."""
    import torch

    from memgen.runtime import cpu_has_native_bf16

    torch.set_num_threads(threads)
    res = {"threads": threads, "quick": quick, "torch": torch.__version__, "machine": platform.processor()
           or platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "native_bf16": cpu_has_native_bf16(), "load_average_before": list(os.getloadavg())}
    t0 = time.perf_counter()
    if "resnet" in sections:
        res["resnet"] = bench_resnet(quick)
    if "mlp" in sections:
        res["mlp"] = bench_mlp(load_mnist(mnist_source), quick)
    if "transformer" in sections:
        res["transformer"] = bench_transformer(quick)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    res["load_average_after"] = list(os.getloadavg())
    res["goals"] = judge(res)
    return res


def judge(res: dict) -> dict:
    """``{goal: {"value", "goal", "pass"}}`` for the goals whose section ran."""
    found = {}
    if "resnet" in res:
        found["resnet_bf16_over_fp32"] = (res["resnet"]["ratio_bf16_over_fp32"], ">=")
    if "mlp" in res:
        found["mlp_bf16_over_bare_bf16_mm"] = (res["mlp"]["ratio_bf16_over_bare_bf16_mm"], ">=")
        found["mlp_bf16_over_fp32"] = (res["mlp"]["ratio_bf16_over_fp32"], ">=")
        if res["mlp"]["demo_model"]["epochs"] == 10:
            found["mlp_demo_model_s"] = (res["mlp"]["demo_model"]["train_s"], "<=")
    return {k: {"value": v, "goal": f"{op} {GOALS[k]}",
                "pass": bool(v >= GOALS[k] if op == ">=" else v <= GOALS[k])} for k, (v, op) in found.items()}


def summary(res: dict) -> str:
    lines = [f"precision benchmark: {res['threads']} threads, native bf16 {res['native_bf16']}, "
             f"load average {res['load_average_before'][0]:.1f} -> {res['load_average_after'][0]:.1f}, "
             f"{res['wall_s']} s"]
    if "resnet" in res:
        r = res["resnet"]
        lines.append(f"ResNet-20 training img/s fp32 {r['images_per_s']['fp32']} bf16 {r['images_per_s']['bf16']}; "
                     f"data path {r['data_path_ms_per_step']} ms/step = {r['data_path_share_of_bf16_step']:.1%} "
                     "of a bf16 step")
    if "mlp" in res:
        r = res["mlp"]
        lines.append(f"MLP training GFLOP/s {r['gflops']}; demo model {r['demo_model']}")
        lines.append(f"MLP bound (bare products + one pass over the fp32 weights): {r['bound_over_bare_bf16_mm']} of "
                     f"the bare products, {r['bound_over_fp32']}x the fp32 loop, a demo model in "
                     f"{r['demo_model']['bound_s']} s")
    if "transformer" in res:
        r = res["transformer"]
        lines.append(f"Transformer s/epoch {r['s_per_epoch']}: bf16 speed {r['ratio_bf16_over_fp32_speed']}x fp32 "
                     "(stays fp32)")
    for name, g in res["goals"].items():
        lines.append(f"{'PASS' if g['pass'] else 'FAIL'}  {name} = {g['value']} (goal {g['goal']})")
    return "\n".join(lines)
