"""Speed benchmarks that measure the studies' code (``snakemake bench``, not part of ``all``; also run by
``tests/benchmarks/``). They sit beside the studies' stages: a benchmark imports the algorithms of any study and
the foundations, and nothing in the package imports a benchmark.

* :mod:`memgen.bench.lut` -- the LUT networks on Binary-MNIST: fit / predict time of the fast path against the
  plain reference, peak memory, accuracy by k (rule ``bench_lut``);
* :mod:`memgen.bench.precision` -- bf16 against fp32 on this CPU: the ResNet-20 training loop, the estimator's MLP
  learner against bare bf16 products, the neighbour Transformer (rule ``bench_precision``).
"""
