rule prepare_data:
    """Read a dataset from its source, verify it and cache it as one npz."""
    input:
        files=dataset_files,
        code=script_code("prepare_data"),
    output:
        "results/data/{dataset}.npz",
    params:
        spec=lambda wc: dataset_spec(wc.dataset),
        resources_dir="resources",
    log:
        "results/logs/prepare_data/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_data/{dataset}.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/prepare_data.py"


rule summarize_data:
    """One row per dataset: sizes, image shape, classes, pixel statistics."""
    input:
        caches=expand("results/data/{dataset}.npz", dataset=DATASETS),
        splits=[f for d in DATASETS for f in split_files(d)],
        code=script_code("summarize_data"),
    output:
        summary=report("results/tables/data_summary.csv", caption="../report/data_summary.rst", category="Data"),
        counts=report("results/tables/split_counts.csv", caption="../report/split_counts.rst", category="Data"),
    params:
        datasets=list(DATASETS),
    log:
        "results/logs/summarize_data.log",
    benchmark:
        "results/benchmarks/summarize_data.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/summarize_data.py"


rule plot_data:
    """Sample images per class and the class counts of every split of a dataset."""
    input:
        cache="results/data/{dataset}.npz",
        splits=lambda wc: split_files(wc.dataset),
        code=script_code("plot_data"),
    output:
        samples=report("results/figures/samples_{dataset}.png", caption="../report/samples.rst", category="Data",
                       subcategory="{dataset}"),
        counts=report("results/figures/split_counts_{dataset}.png", caption="../report/split_counts_figure.rst",
                      category="Data", subcategory="{dataset}"),
    params:
        per_class=config["report"]["sample_images"],
        seed=config["seed"],
    log:
        "results/logs/plot_data/{dataset}.log",
    benchmark:
        "results/benchmarks/plot_data/{dataset}.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/plot_data.py"


REPORT_SECTIONS["data"] = {
    "data_summary": "results/tables/data_summary.csv",
    "split_counts": "results/tables/split_counts.csv",
    "samples": expand("results/figures/samples_{dataset}.png", dataset=DATASETS),
    "split_figures": expand("results/figures/split_counts_{dataset}.png", dataset=DATASETS),
}
BENCHMARKS += [f"results/benchmarks/prepare_data/{d}.tsv" for d in DATASETS]
BENCHMARKS += [f"results/benchmarks/plot_data/{d}.tsv" for d in DATASETS]
BENCHMARKS += ["results/benchmarks/summarize_data.tsv"]
