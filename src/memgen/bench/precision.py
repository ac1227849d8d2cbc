"""Speed of bf16 against fp32 on the machine it runs on (ratios in one process, rounds interleaved, not timed tests).

1. ``resnet``: images/s of the ResNet-20 training loop (:func:`memgen.train.train_classifier`, channels_last,
   batch 128, CIFAR-sized uint8 images) in bf16 autocast and in fp32, rounds alternating; goal bf16 >= 1.4x.
   Also the share of a bf16 step spent in the data path (batch indexing, random crop, flip, scaling to float).
2. ``mlp``: FLOP/s of the estimator's MLP training loop (:class:`memgen.influence.learners.mlp.MLPLearner`,
   784-512-256-10, batch 128) as the estimator runs it, with the learner's default number of models per call
   (one per torch thread on CPU) and its step compiled (``torch.compile``), in each precision against bare
   products of exactly its matrix shapes in that precision (``torch.bmm``; ``torch.mm`` for one model; goal
   >= 0.7 in both), and in bf16 against the eager fp32 loop (goal >= 2.0x); the eager loops (``compile=False``)
   beside them; one model per call as well, for reference; and the compiled bf16 loop recording the
   learning-speed proxy as the study's shards do (``ratio_recorded_over_bf16``). The compile itself is timed
   apart, in fresh processes: cold (empty Inductor cache) and warm (the cache a first process left). Then the
   authors' demo (10 epochs on 70% of MNIST's 60,000 training images) timed end to end, in seconds per model
   (goal <= 3 s on 2 threads). The bound: the bare bf16 products plus one pass that reads and writes every fp32
   master weight (``torch._foreach_add_`` over tensors of the weights' shapes, less traffic than the momentum
   update needs), i.e. faster than any implementation of this recipe could go on this machine.
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

from memgen.run_cost import mlp_step_shapes

GOALS = {"resnet_bf16_over_fp32": 1.4, "mlp_bf16_over_bare_bf16_mm": 0.7, "mlp_fp32_over_bare_fp32_mm": 0.7,
         "mlp_bf16_over_eager_fp32": 2.0, "mlp_demo_model_s": 3.0}


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
def bench_mlp(mnist, quick: bool = False) -> dict:
    """The MLP loop as the estimator runs it (compiled, ``parallel`` models per call: the learner's CPU default, one
    per torch thread) and eager, in both precisions, against bare products of exactly its batched shapes in each
    precision; one model per call as well. Then the seconds of the compile, cold and warm cache."""
    import torch

    from memgen.influence import estimator as est
    from memgen.influence.learners.mlp import MLPLearner
    from memgen.learning_speed import LearningSpeedRecorder

    x_train, y_train, x_test, y_test, source = mnist
    learners = {f"{p}{'' if c else '_eager'}": MLPLearner(x_train, y_train, x_test, y_test, epochs=1, device="cpu",
                                                          precision=p, compile=c)
                for p in ("bf16", "fp32") for c in (True, False)}
    recorded = MLPLearner(x_train, y_train, x_test, y_test, epochs=1, device="cpu", precision="bf16")
    bf16 = learners["bf16"]
    B, k = bf16.batch_size, bf16.parallel
    steps, rounds = (20, 2) if quick else (330, 5)   # 330 steps: an epoch of the study's subsets (42,000 images)
    m = B * steps
    res = {"sizes": bf16.sizes, "batch_size": B, "models_per_call": k, "steps_per_round": steps, "rounds": rounds}
    for models in sorted({k, 1}, reverse=True):
        subsets = np.stack([est.subset_indices(len(y_train), m, 0, q) for q in range(models)])
        seeds = list(range(models))
        shapes = mlp_step_shapes(bf16.sizes, B)
        product = torch.mm if models == 1 else torch.bmm    # the learner's own choice of kernel
        mats = {}
        for dtype in (torch.bfloat16, torch.float32):
            mats[dtype] = [(torch.randn(models, M, K).to(dtype), torch.randn(models, K, N).to(dtype),
                            torch.empty(models, M, N, dtype=dtype)) for M, K, N in shapes]
            if models == 1:
                mats[dtype] = [(a[0], b[0], c[0]) for a, b, c in mats[dtype]]
        flops = models * sum(2 * M * K * N for M, K, N in shapes) * steps   # the loop's products, exactly
        weights = [torch.zeros(models * (a * b + b)) for a, b in zip(bf16.sizes[:-1], bf16.sizes[1:])]
        updates = [torch.zeros_like(w) for w in weights]

        def bare_mm(dtype, update=False):
            def run():
                for _ in range(steps):
                    for a, b, c in mats[dtype]:
                        product(a, b, out=c)
                    if update:
                        torch._foreach_add_(weights, updates, alpha=-0.1)
            return run

        def train(learner):
            return lambda: learner.train_batched(subsets, seeds)

        recorded.record = LearningSpeedRecorder(len(y_train), models=seeds)   # the study's shards record
        loops = {"bare_bf16_mm": bare_mm(torch.bfloat16), "bare_fp32_mm": bare_mm(torch.float32),
                 "bare_bf16_mm_and_update": bare_mm(torch.bfloat16, update=True),
                 **{name: train(learner) for name, learner in learners.items()}, "bf16_recorded": train(recorded)}
        for fn in loops.values():
            fn()   # warm-up: compiles the step in this process
        rows = {name: [] for name in loops}
        for _ in range(rounds):
            for name, fn in loops.items():
                t = time.perf_counter()
                fn()
                rows[name].append(flops / (time.perf_counter() - t))

        def ratio(a, b):
            return round(_median_ratio(rows[a], rows[b]), 3)

        res[f"models_{models}"] = {
            "gflops": {name: [round(v / 1e9, 1) for v in vs] for name, vs in rows.items()},
            "steps": {name: learner.training_step for name, learner in learners.items()},
            "ms_per_step_per_model": round(1e3 * flops / steps / models / statistics.median(rows["bf16"]), 3),
            "ratio_bf16_over_bare_bf16_mm": ratio("bf16", "bare_bf16_mm"),
            "ratio_fp32_over_bare_fp32_mm": ratio("fp32", "bare_fp32_mm"),
            "ratio_bf16_over_eager_fp32": ratio("bf16", "fp32_eager"),
            "ratio_bf16_over_fp32": ratio("bf16", "fp32"),
            "ratio_compiled_over_eager_bf16": ratio("bf16", "bf16_eager"),
            "ratio_compiled_over_eager_fp32": ratio("fp32", "fp32_eager"),
            "ratio_eager_bf16_over_bare_bf16_mm": ratio("bf16_eager", "bare_bf16_mm"),
            "ratio_eager_fp32_over_bare_fp32_mm": ratio("fp32_eager", "bare_fp32_mm"),
            "ratio_recorded_over_bf16": ratio("bf16_recorded", "bf16"),
            "bound_over_bare_bf16_mm": ratio("bare_bf16_mm_and_update", "bare_bf16_mm"),
            "bound_over_eager_fp32": ratio("bare_bf16_mm_and_update", "fp32_eager"),
            "bound_gflops": statistics.median(rows["bare_bf16_mm_and_update"]) / 1e9,
            "step_gflop": flops / steps / models / 1e9}
    study = res[f"models_{k}"]
    res.update({key: study[key] for key in ("ratio_bf16_over_bare_bf16_mm", "ratio_fp32_over_bare_fp32_mm",
                                            "ratio_bf16_over_eager_fp32")})
    res["compile_s"] = {p: compile_seconds(p, bf16.sizes, k, B, torch.get_num_threads()) for p in ("bf16", "fp32")}
    n = len(y_train) if not quick else 6000
    demo = MLPLearner(x_train[:n], y_train[:n], x_test, y_test, epochs=10 if not quick else 1, device="cpu",
                      precision="bf16")
    demo_subsets = np.stack([est.subset_indices(n, est.subset_size(n, 0.7), 0, q) for q in range(k)])
    demo_seeds = [est.model_seed(0, q) for q in range(k)]
    demo.train_batched(demo_subsets[:, :B], demo_seeds)   # its data's shape compiles here, not in the timing
    t0 = time.perf_counter()
    params = demo.train_batched(demo_subsets, demo_seeds)
    t1 = time.perf_counter()
    out = demo.evaluate(params)
    demo_steps = demo.epochs * -(-demo_subsets.shape[1] // B)
    res["demo_model"] = {"data": source, "m": demo_subsets.shape[1], "epochs": demo.epochs, "models_per_call": k,
                         "step": demo.training_step, "train_s": round((t1 - t0) / k, 2),
                         "bound_s": round(demo_steps * study["step_gflop"] / study["bound_gflops"], 2),
                         "eval_s": round((time.perf_counter() - t1) / k, 2),
                         "test_acc": float(out.correct_test.mean())}
    return res


def profile_mlp(mnist, precision: str = "bf16", steps: int = 40, rows: int = 20) -> str:
    """``torch.profiler``'s table (self CPU time) of ``steps`` steps of the MLP loop as the estimator runs it
    (compiled, the learner's default models per call), recompiled with Inductor's kernel names in the profile."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from memgen.influence import estimator as est
    from memgen.influence.learners.mlp import MLPLearner

    x_train, y_train, x_test, y_test, _ = mnist
    learner = MLPLearner(x_train, y_train, x_test, y_test, epochs=1, device="cpu", precision=precision)
    subsets = np.stack([est.subset_indices(len(y_train), learner.batch_size * steps, 0, q)
                        for q in range(learner.parallel)])
    seeds = list(range(learner.parallel))
    with torch._inductor.config.patch({"cpp.enable_kernel_profile": True}):
        torch._dynamo.reset()
        learner.train_batched(subsets, seeds)   # warm-up: compiles
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            learner.train_batched(subsets, seeds)
    torch._dynamo.reset()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def first_step_s(precision: str, sizes, models: int, batch: int, threads: int) -> float:
    """Seconds the first training step of a compiled MLP learner takes in this process beyond its second: the
    compile, or its load from Inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``)."""
    import torch

    from memgen.influence.learners.mlp import MLPLearner

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (batch + 10, sizes[0]), dtype=np.uint8), rng.integers(0, sizes[-1], batch + 10)
    learner = MLPLearner(x[:batch], y[:batch], x[batch:], y[batch:], hidden=sizes[1:-1], n_classes=sizes[-1],
                         epochs=1, batch_size=batch, device="cpu", precision=precision, parallel=models)
    times = []
    for _ in range(2):
        t = time.perf_counter()
        learner.train_batched(np.tile(np.arange(batch), (models, 1)), list(range(models)))
        times.append(time.perf_counter() - t)
    if learner.training_step != {"step": "compiled"}:
        raise RuntimeError(f"the MLP step did not compile: {learner.training_step}")
    return times[0] - times[1]


def compile_seconds(precision: str, sizes, models: int, batch: int, threads: int) -> dict:
    """:func:`first_step_s` in two fresh processes sharing a new Inductor cache: ``cold`` (empty cache, the compile)
    and ``warm`` (what a later shard job pays)."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import memgen

    call = (f"import json; from memgen.bench.precision import first_step_s; "
            f"print(json.dumps(first_step_s({precision!r}, {list(sizes)}, {models}, {batch}, {threads})))")
    src = str(Path(memgen.__file__).resolve().parents[1])
    seconds = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache,
               "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
        for when in ("cold", "warm"):
            run = subprocess.run([sys.executable, "-c", call], env=env, capture_output=True, text=True)
            if run.returncode:
                raise RuntimeError(f"measuring the MLP step's compile failed:\n{run.stderr[-2000:]}")
            seconds[when] = round(json.loads(run.stdout.splitlines()[-1]), 2)
    return seconds


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
        for goal in ("mlp_bf16_over_bare_bf16_mm", "mlp_fp32_over_bare_fp32_mm", "mlp_bf16_over_eager_fp32"):
            found[goal] = (res["mlp"][goal.replace("mlp_", "ratio_", 1)], ">=")
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
        for models in sorted({r["models_per_call"], 1}, reverse=True):
            row = r[f"models_{models}"]
            lines.append(f"MLP, {models} model(s) per call: GFLOP/s {row['gflops']}; compiled / bare products of its "
                         f"precision: bf16 {row['ratio_bf16_over_bare_bf16_mm']}, fp32 "
                         f"{row['ratio_fp32_over_bare_fp32_mm']} (eager: {row['ratio_eager_bf16_over_bare_bf16_mm']}, "
                         f"{row['ratio_eager_fp32_over_bare_fp32_mm']}); compiled / eager: bf16 "
                         f"{row['ratio_compiled_over_eager_bf16']}, fp32 {row['ratio_compiled_over_eager_fp32']}; "
                         f"compiled bf16 / eager fp32 {row['ratio_bf16_over_eager_fp32']}, / compiled fp32 "
                         f"{row['ratio_bf16_over_fp32']}; recording the learning speed / not "
                         f"{row['ratio_recorded_over_bf16']}; bound (bare bf16 products + one pass over the fp32 "
                         f"weights) {row['bound_over_bare_bf16_mm']} of the bare products, "
                         f"{row['bound_over_eager_fp32']}x the eager fp32 loop")
        lines.append(f"MLP step compile, seconds (first step beyond the second, fresh process): {r['compile_s']}")
        lines.append(f"MLP demo model (seconds per model at {r['models_per_call']} per call): {r['demo_model']}")
    if "transformer" in res:
        r = res["transformer"]
        lines.append(f"Transformer s/epoch {r['s_per_epoch']}: bf16 speed {r['ratio_bf16_over_fp32_speed']}x fp32 "
                     "(stays fp32)")
    for name, g in res["goals"].items():
        lines.append(f"{'PASS' if g['pass'] else 'FAIL'}  {name} = {g['value']} (goal {g['goal']})")
    return "\n".join(lines)
