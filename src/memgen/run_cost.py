"""What a run will cost on this machine, said before it starts.

The two costs that dominate a study scale with this machine's speed, so a few seconds of measurement price
them: the ResNet-20 training loop (``memgen.train.train_classifier``: images/s, for every backbone and ``net``
learner) and the MNIST MLP estimator's matrix products (GFLOP/s of its batched shapes), each in the precision
the run resolved.  Every other job is priced by the time it took in the reference run, scaled by its data
size.  The reference is the default study of ``config.yaml`` on a 2-core AMD EPYC with AVX512-BF16
(docs/measurements.md has the run and its per-stage times); the constants below are that run's measurements.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# ResNet-20's img/s in a train_backbone job over the bare training loop's img/s on the same host (704 in the
# reference run's `full` backbone, 785-854 in the loop right after it): validation, checkpoints, the data path.
BACKBONE_EFFICIENCY = 0.86
# Seconds per training image and epoch of each architecture relative to ResNet-20: the reference run's MNIST CNN;
# the CIFAR nets' whole trainings at their recipes' batch sizes against ResNet-20's on the same idle host
# (docs/backbone-recipes.md; the short probes of tests/benchmarks/bench_backbones.py are off by up to 14%).
ARCH_COST = {"resnet20": 1.0, "mnist_cnn": 1.13, "resnet20_whitened": 1.22, "airbench94": 1.76, "airbench_small": 1.00}
# The MLP estimator's compiled step's FLOP/s over the bare products of its shapes, per precision
# (tests/benchmarks/bench_precision.py --sections mlp; docs/measurements.md, "Compiled MLP step").
MLP_LOOP_EFFICIENCY = {"bf16": 0.71, "fp32": 0.84}
# Influence learners priced per model in the reference run, at the data size ``n``: seconds and how they scale.
PER_MODEL = {"knn": (0.19, 60_000, 2), "lut": (1.56, 60_000, 1), "linear": (0.048, 45_000, 1)}
# Seconds per job of the other rules in the reference run (a stage's time over its jobs), at the datasets' full
# sizes; a rule not listed took about STARTUP_S (Python, torch and the inputs loaded, little else).
JOB_S = {"lut_pairwise": 23, "lut_table1": 7.5, "lut_sweep": 14, "lut_depth": 30, "lut_table2": 30, "embed": 33,
         "neighbor_transformer": 25, "knn": 13, "influence_estimate": 11, "influence_removal": 45,
         "render_report": 40, "neighbourhood_proxies": 10}
STARTUP_S = 2.0
FULL_SIZE = {"mnist": 60_000, "cifar10": 50_000}
# Above this many hours the start message points to the quick preset.
ADVISE_PRESET_HOURS = 3.0
QUICK_PRESET_COMMAND = "snakemake all --cores 8 --configfile workflow/presets/quick.yaml"


@dataclass(frozen=True)
class Speed:
    """This machine's measured speed in the run's precision."""

    precision: str
    device: str
    threads: int
    resnet_img_s: float  # ResNet-20 training loop, batch 128
    mlp_gflop_s: float  # bare products of the MNIST MLP's batched training shapes


def measure_speed(precision: str, device: str, threads: int) -> Speed:
    """A few seconds of the two loops that dominate a study, in ``precision`` on ``device``."""
    import numpy as np
    import torch

    from memgen.nets import build_net
    from memgen.train import train_classifier

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    batch, steps = 128, 3
    x = rng.integers(0, 256, (batch * steps, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, batch * steps)

    def resnet(n):
        torch.manual_seed(0)
        return train_classifier(build_net("resnet20"), x[:n], y[:n], epochs=1, batch_size=batch, device=device,
                                precision=precision, show_progress=False)["images_per_s"]

    resnet(batch)  # warm-up: oneDNN builds its primitives on the first step
    img_s = resnet(len(x))

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    models, shapes = max(1, threads), mlp_step_shapes([784, 512, 256, 10], batch)
    mats = [(torch.randn(models, m, k, device=device).to(dtype), torch.randn(models, k, n, device=device).to(dtype))
            for m, k, n in shapes]
    flop = sum(2 * models * m * k * n for m, k, n in shapes)
    for a, b in mats:
        torch.bmm(a, b)
    rounds, start = 0, time.perf_counter()
    while rounds < 20 or time.perf_counter() - start < 0.5:
        for a, b in mats:
            torch.bmm(a, b)
        rounds += 1
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    gflop_s = flop * rounds / (time.perf_counter() - start) / 1e9
    return Speed(precision, device, threads, round(float(img_s), 1), round(gflop_s, 1))


def host_key(precision: str, device: str, threads: int) -> str:
    """What a measured speed belongs to: this CPU (or GPU), the torch build, precision and threads."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if str(device).startswith("cuda"):
        cpu = torch.cuda.get_device_name(0)
    return re.sub(r"\W+", "_", f"{cpu}-{torch.__version__}-{precision}-{device}-{threads}")


def cached_speed(cache_dir: str | os.PathLike, precision: str, device: str, threads: int,
                 max_age_s: float = 3600.0) -> Speed:
    """The machine's speed, measured at most once an hour per host, precision and thread count (kept in
    ``cache_dir``), so that runs started one after the other do not each pay the measurement."""
    from memgen.runtime import write_json

    path = Path(cache_dir) / f"speed-{host_key(precision, device, threads)}.json"
    if path.exists() and time.time() - path.stat().st_mtime < max_age_s:
        return Speed(**json.loads(path.read_text()))
    speed = measure_speed(precision, device, threads)
    write_json(path, asdict(speed))
    return speed


# --------------------------------------------------------------------------------------------- data sizes
def dataset_size(name: str, spec: dict) -> int:
    """Training examples a dataset entry provides (its ``limit`` when sliced)."""
    limit = spec.get("limit", {}).get("train")
    full = spec.get("expect", {}).get("n_train", FULL_SIZE.get(name, 50_000))
    return min(limit, full) if limit else full


def train_size(name: str, spec: dict, split: str, splits: dict) -> int:
    """About how many training examples a split keeps (exact for full, lt<IF>, all and binary)."""
    from memgen.splits import long_tail_counts

    n = dataset_size(name, spec)
    classes = spec.get("expect", {}).get("n_classes", 10)
    held_out = splits.get("validation_size", 0)
    family = split.removesuffix("-rand")
    if family == "full":
        return n - held_out
    if family.startswith("lt"):
        counts = long_tail_counts(n // classes, float(family[2:]), classes)
        counts[0] = min(counts[0], (n - held_out) // classes)
        return int(counts.sum())
    if family == "rare":
        rare = splits.get("rare", {})
        share = len(rare.get("rare_classes", [])) / classes
        return int((n - held_out) * (1 - share * (1 - rare.get("keep_fraction", 1.0))))
    if family.startswith("pair"):
        return 2 * n // classes
    return n


def mlp_step_shapes(sizes, batch: int) -> list[tuple[int, int, int]]:
    """The matrix products ``(M, K, N)`` of one MLP training step: forward, weight gradient, and input gradient
    (not for the first layer)."""
    shapes = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        shapes += [(batch, a, b), (a, batch, b)]
    for a, b in list(zip(sizes[:-1], sizes[1:]))[1:]:
        shapes.append((batch, b, a))
    return shapes


def mlp_parameters(hidden, n_in: int = 784, n_out: int = 10) -> int:
    sizes = [n_in, *hidden, n_out]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


# ------------------------------------------------------------------------------------------------ job costs
@dataclass(frozen=True)
class Job:
    """What prices one job: its rule, wildcards, params and threads (Snakemake's job, reduced)."""

    rule: str
    wildcards: dict
    params: dict
    threads: int = 1


def stage_of(rule: str, params: dict) -> str:
    if rule == "train_backbone":
        return "backbones"
    if rule in ("influence_shard", "influence_removal") and params.get("study", {}).get("learner") == "mlp":
        return "MNIST MLPs" if rule == "influence_shard" else "MLP removal"
    if rule == "influence_shard":
        return "other influence shards"
    return "other jobs"


def job_seconds(job: Job, speed: Speed, datasets: dict, splits: dict) -> float:
    """Seconds one job takes on a machine of ``speed``, run alone with its threads."""
    params = job.params
    if job.rule == "train_backbone":
        from memgen.splits import parse_memory

        name, split = job.wildcards["dataset"], parse_memory(job.wildcards["memory"])[0]
        s = params["settings"]
        images = s["epochs"] * train_size(name, datasets[name], split, splits)
        img_s = speed.resnet_img_s * BACKBONE_EFFICIENCY / ARCH_COST.get(s.get("arch", "resnet20"), 1.0)
        return STARTUP_S + images / img_s
    if job.rule in ("influence_shard", "influence_removal"):
        study = params["study"]
        name = study["dataset"]
        n = train_size(name, datasets[name], study["split"], splits)
        if job.rule == "influence_shard":
            models, n_fit = int(job.wildcards["stop"]) - int(job.wildcards["start"]), n * params["ratio"]
        else:
            removal = params["removal"]
            models, n_fit = 2 * removal["trials"] * len(removal["thetas"]), n
        learner, settings = study["learner"], study.get("settings", {})
        if learner == "mlp":
            flop = 6 * mlp_parameters(settings.get("hidden", [512, 256])) * settings.get("epochs", 10) * n_fit
            return STARTUP_S + models * flop / (speed.mlp_gflop_s * 1e9 * MLP_LOOP_EFFICIENCY[speed.precision])
        if learner == "net":
            images = settings.get("epochs", 1) * n_fit
            return STARTUP_S + models * images / (speed.resnet_img_s * BACKBONE_EFFICIENCY)
        if job.rule == "influence_removal":
            return STARTUP_S + (JOB_S["influence_removal"] - STARTUP_S) * n / FULL_SIZE.get(name, n)
        seconds, at, power = PER_MODEL.get(learner, (1.0, n, 1))
        return STARTUP_S + models * seconds * (n_fit / 0.7 / at) ** power
    reference = JOB_S.get(job.rule)
    if reference is None:
        return STARTUP_S
    name = job.wildcards.get("dataset")
    share = dataset_size(name, datasets[name]) / FULL_SIZE.get(name, 50_000) if name in datasets else 1.0
    return STARTUP_S + (reference - STARTUP_S) * share


def estimate(jobs, speed: Speed, datasets: dict, splits: dict, cores: int | None) -> dict[str, float]:
    """Wall seconds of ``jobs`` by stage on ``cores`` cores: each job's time times the share of the cores it
    holds (jobs that use every core run one after the other; smaller ones side by side).  ``cores=None``
    (a cluster, whose jobs run side by side on their own nodes): the jobs' own times, summed."""
    stages: dict[str, float] = {}
    for job in jobs:
        stage = stage_of(job.rule, job.params)
        share = 1.0 if cores is None else min(job.threads, cores) / cores
        stages[stage] = stages.get(stage, 0.0) + job_seconds(job, speed, datasets, splits) * share
    return stages


def start_message(*, precision_setting: str, speed: Speed, cores: int, requested_cores, stages: dict[str, float],
                  n_jobs: int, cluster: bool = False, speed_source: str = "measured here") -> str:
    """The lines the workflow prints when it starts: precision, cores, the estimate and, when it is long,
    the preset for a first look."""
    from memgen.report import duration

    why = {"bf16": "native bf16" if precision_setting == "auto" else "as set",
           "fp32": "no native bf16 here" if precision_setting == "auto" else "as set"}
    cores_note = f" (--cores {requested_cores} capped to the physical cores here)" \
        if requested_cores and int(requested_cores) > cores else ""
    total = sum(stages.values())
    parts = ", ".join(f"{stage} {duration(s)}" for stage, s in sorted(stages.items(), key=lambda kv: -kv[1]))
    what = "job time summed, at this machine's speed (the cluster runs jobs side by side)" if cluster \
        else "estimated wall time here"
    lines = [f"memgen: precision {precision_setting} -> {speed.precision} ({why[speed.precision]}); "
             f"device {speed.device}; " + ("jobs on the cluster's nodes" if cluster else f"{cores} cores{cores_note}"),
             f"memgen: {n_jobs} jobs to run, {what}: {duration(total)} ({parts}); "
             f"{speed_source}: ResNet-20 {speed.resnet_img_s:.0f} img/s, MLP products {speed.mlp_gflop_s:.0f} GFLOP/s "
             f"in {speed.precision}; other jobs priced from the reference run (docs/measurements.md)"]
    if not cluster and total > ADVISE_PRESET_HOURS * 3600:
        lines.append(f"memgen: that is over {ADVISE_PRESET_HOURS:g} h; for a first look at the whole study run the "
                     f"quick preset instead: {QUICK_PRESET_COMMAND}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ pricing a plan
def jobs_of(dag) -> list[Job]:
    """The jobs a Snakemake DAG still has to run, reduced to what prices them."""
    return [Job(job.rule.name, dict(job.wildcards.items()), dict(job.params.items()), job.threads)
            for job in dag.needrun_jobs(exclude_finished=False) if job.rule.name != "all"]


def planned_jobs(root: str | os.PathLike, configfiles=(), config: dict | None = None, targets=("all",),
                 cores: int = 2) -> tuple[list[Job], dict]:
    """The jobs ``snakemake <targets> --configfile <configfiles>`` would run in ``root``, and the merged config,
    from a dry run through Snakemake's API (nothing is run or written but Snakemake's own metadata)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (ConfigSettings, DAGSettings, OutputSettings, Quietness,
                                          ResourceSettings)

    root = Path(root).resolve()
    cwd = Path.cwd()
    os.chdir(root)
    try:
        with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
            workflow_api = api.workflow(resource_settings=ResourceSettings(cores=cores),
                                        config_settings=ConfigSettings(configfiles=[Path(f).resolve() for f in configfiles],
                                                                       config=config or {}),
                                        snakefile=root / "Snakefile", workdir=root)
            dag_api = workflow_api.dag(DAGSettings(targets=set(targets)))
            dag_api.execute_workflow(executor="dryrun")
            workflow = workflow_api._workflow
            return jobs_of(workflow.dag), workflow.config
    finally:
        os.chdir(cwd)


def main(argv=None) -> None:
    import argparse

    from memgen.report import duration
    from memgen.runtime import resolve_device, resolve_precision, usable_cores

    parser = argparse.ArgumentParser(
        prog="python -m memgen.run_cost",
        description="Price a run before starting it: the jobs `snakemake <target> --configfile ...` would run, "
                    "at this machine's measured speed (or at a given one), on --cores cores.")
    parser.add_argument("--configfile", nargs="*", default=[], help="config files merged on top of config.yaml")
    parser.add_argument("--target", default="all")
    parser.add_argument("--cores", type=int, default=usable_cores())
    parser.add_argument("--speed", nargs=3, metavar=("PRECISION", "RESNET_IMG_S", "MLP_GFLOP_S"),
                        help="price at this speed instead of measuring it, e.g. bf16 820 360 (docs/measurements.md)")
    args = parser.parse_args(argv)
    jobs, config = planned_jobs(Path.cwd(), args.configfile, targets=(args.target,), cores=args.cores)
    device = resolve_device(config["device"])
    if args.speed:
        speed = Speed(args.speed[0], device, args.cores, float(args.speed[1]), float(args.speed[2]))
    else:
        speed = cached_speed(Path(".snakemake") / "memgen", resolve_precision(config["precision"], device), device,
                             args.cores)
    stages = estimate(jobs, speed, config["datasets"], config["splits"], args.cores)
    print(start_message(precision_setting=config["precision"], speed=speed, cores=args.cores,
                        requested_cores=None, stages=stages, n_jobs=len(jobs),
                        speed_source="given" if args.speed else "measured here"))
    print("\n".join(f"  {stage}: {duration(s)}" for stage, s in sorted(stages.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
