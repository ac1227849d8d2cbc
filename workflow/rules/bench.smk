# Speed benchmarks that span the studies (not part of all; collected by rule bench in lut.smk).


rule bench_precision:
    """bf16 against fp32 on this CPU (memgen.bench.precision): the ResNet-20 training loop, the MNIST MLP training
    loop against bare bf16 products, one model of the authors' MNIST demo, the neighbour Transformer."""
    input:
        cache="results/data/mnist.npz",
        code=script_code("bench_precision"),
    output:
        "results/benchmarks/bench_precision.json",
    log:
        "results/logs/bench_precision.log",
    benchmark:
        "results/benchmarks/bench_precision.tsv"
    threads: 2  # the goals are stated for 2 threads
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/bench_precision.py"
