"""`snakemake --cores 8` is no slower than `--cores <the machine's cores>` on a machine with fewer than 8 cores.

The README's main line asks for 8 cores whatever the machine has. This times one small, real piece of the DAG
that starts several training jobs at once -- ResNet-20 shards of the smoke configuration's ``cifar10_net``
influence study, one model per job, made longer with ``--steps`` -- at each ``--cores`` value in turn
(alternating, since other users load a shared machine), on a copy of a finished smoke run. The reference is
the same jobs at ``--cores`` = the machine's cores in the same process; the ratio of wall times is the result.

    python tests/benchmarks/bench_cores.py --smoke-run /tmp/smoke1 --cores 2 8 --repeats 2
    python tests/benchmarks/bench_cores.py --smoke-run /tmp/smoke1 --tree /path/to/other/checkout   # compare

``--smoke-run`` is a project folder in which ``snakemake --configfile tests/smoke/config.yaml`` has built at
least the data caches and splits; only its ``results/data`` and ``results/splits`` are copied.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TREE = Path(__file__).resolve().parents[2]
PROJECT_FILES = ("Snakefile", "config.yaml", "envs", "workflow", "src", "reports", "tests/smoke/config.yaml")
STUDY = "cifar10_net"


def prepare(workdir: Path, tree: Path, smoke_run: Path, jobs: int, steps: int) -> Path:
    """A project copy with the smoke run's caches and splits (re-dated so no upstream job reruns) and an extra
    config that gives the study ``jobs`` one-model shards of ``steps`` SGD steps."""
    for name in PROJECT_FILES:
        src, dst = tree / name, workdir / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    (workdir / "profiles").symlink_to("workflow/profiles")
    for part in ("data", "splits"):
        shutil.copytree(smoke_run / "results" / part, workdir / "results" / part)
    now = time.time()
    for path in (workdir / "results").rglob("*"):
        os.utime(path, (now, now))
    extra = workdir / "bench_cores.yaml"
    extra.write_text(json.dumps({"influence": {"studies": {STUDY: {"t": jobs, "shard_size": 1,
                                                                    "settings": {"max_steps": steps}}}}}))
    return extra


def snakemake_command(cores: int, targets: list[str], extra: Path, data_root: Path, *flags: str) -> list[str]:
    return [str(Path(sys.executable).with_name("snakemake")), *targets, "--cores", str(cores), *flags,
            "--configfile", "tests/smoke/config.yaml", str(extra), "--config", f"data_root={data_root}"]


def planned_rules(workdir: Path, command: list[str]) -> dict[str, int]:
    """Rule -> job count of a dry run (the jobs that a run with this command would start)."""
    out = subprocess.run(command, cwd=workdir, capture_output=True, text=True, check=True).stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            counts[parts[0]] = int(parts[1])
    return counts


def run_once(workdir: Path, cores: int, targets: list[str], extra: Path, data_root: Path) -> dict:
    shutil.rmtree(workdir / "results" / "influence", ignore_errors=True)
    shutil.rmtree(workdir / "results" / "benchmarks", ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run(snakemake_command(cores, targets, extra, data_root), cwd=workdir, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"snakemake --cores {cores} failed:\n{done.stdout[-3000:]}")
    wall = time.perf_counter() - start
    job_s = []
    for tsv in sorted((workdir / "results" / "benchmarks" / "influence_shard" / STUDY).glob("*.tsv")):
        with open(tsv) as fh:
            job_s.append(float(next(csv.DictReader(fh, delimiter="\t"))["s"]))
    if len(job_s) != len(targets):
        raise RuntimeError(f"{len(job_s)} benchmark files for {len(targets)} jobs in {workdir}")
    return {"cores": cores, "wall_s": wall, "job_s": job_s}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke-run", type=Path, required=True, help="a finished (or partial) smoke run folder")
    parser.add_argument("--tree", type=Path, default=TREE, help="the checkout whose workflow and code are timed")
    parser.add_argument("--data-root", type=Path, default=TREE.parent / "shared" / "data")
    parser.add_argument("--cores", type=int, nargs="+", default=[os.cpu_count() or 1, 8])
    parser.add_argument("--jobs", type=int, default=4, help="training jobs (shards) started at once")
    parser.add_argument("--steps", type=int, default=8, help="SGD steps of each job's ResNet-20")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    targets = [f"results/influence/{STUDY}/shards/models_{i:06d}-{i + 1:06d}.npz" for i in range(args.jobs)]
    with tempfile.TemporaryDirectory(prefix="bench_cores.") as tmp:
        workdir = Path(tmp)
        extra = prepare(workdir, args.tree.resolve(), args.smoke_run.resolve(), args.jobs, args.steps)
        plan = planned_rules(workdir, snakemake_command(max(args.cores), targets, extra, args.data_root.resolve(),
                                                        "-n", "--quiet", "rules"))
        if plan != {"influence_shard": args.jobs}:
            raise RuntimeError(f"expected {args.jobs} influence_shard jobs and nothing else, the dry run plans {plan}: "
                               f"does --smoke-run hold results/data and results/splits of the smoke config?")
        runs = []
        for repeat in range(args.repeats):
            order = args.cores if repeat % 2 == 0 else args.cores[::-1]
            for cores in order:
                runs.append(run_once(workdir, cores, targets, extra, args.data_root.resolve()))
                print(f"--cores {cores}: {runs[-1]['wall_s']:.1f} s wall, jobs "
                      f"{', '.join(f'{s:.1f}' for s in runs[-1]['job_s'])} s", flush=True)
    median = {c: statistics.median(r["wall_s"] for r in runs if r["cores"] == c) for c in args.cores}
    reference = min(args.cores)
    result = {"tree": str(args.tree.resolve()), "machine_cpus": os.cpu_count(), "jobs": args.jobs,
              "steps": args.steps, "runs": runs, "median_wall_s": median,
              "ratio_to_reference": {c: median[c] / median[reference] for c in args.cores}}
    for c in args.cores:
        print(f"--cores {c}: median {median[c]:.1f} s, {result['ratio_to_reference'][c]:.2f}x --cores {reference}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
