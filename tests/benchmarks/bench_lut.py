"""Speed and memory benchmark of memgen.lut (ratios and goals, not timed tests).

The measurements live in :mod:`memgen.bench.lut` (see its docstring: fit / predict time of the baseline network
at k=10, the plain reference and the speed ratio, peak memory at k=16, accuracy at k=8/10/12); the workflow runs
the same code with ``snakemake bench`` (rule ``bench_lut`` -> ``results/benchmarks/bench_lut.json``).

Run:  python tests/benchmarks/bench_lut.py [--quick] [--out bench.json] [--threads 2] [--mnist DIR_OR_CACHE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from memgen.bench.lut import BASELINE, run_benchmark, summary, write_json  # noqa: E402

DEFAULT_MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of the benchmark")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST,
                        help="folder with the four MNIST IDX files, or a dataset cache (results/data/mnist.npz)")
    parser.add_argument("--widths", type=lambda s: tuple(int(w) for w in s.split(",")), default=BASELINE)
    args = parser.parse_args()
    results = run_benchmark(args.mnist, quick=args.quick, threads=args.threads, widths=args.widths)
    print("\n" + summary(results, args.threads))
    if args.out:
        write_json(results, args.out)


if __name__ == "__main__":
    main()
