rule make_split:
    """Index arrays (never image copies) for one task: see memgen.splits for the split names."""
    input:
        cache="results/data/{dataset}.npz",
        code=script_code("make_split"),
    output:
        "results/splits/{dataset}/{split}.npz",
    params:
        seed=config["seed"],
        settings=lambda wc: split_settings(wc.split),
    log:
        "results/logs/make_split/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/make_split/{dataset}/{split}.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=1000,
    script:
        "../../src/scripts/make_split.py"


BENCHMARKS += [f"results/benchmarks/make_split/{d}/{s}.tsv" for d in DATASETS for s in splits_of(d)]
