rule runtime_table:
    """Wall time and peak memory of every job of the study, from the benchmark files."""
    input:
        benchmarks=benchmark_files(),
        code=package_code("report"),
    output:
        report("results/tables/runtimes.csv", caption="../report/runtimes.rst", category="Runtime"),
    log:
        "results/logs/runtime_table.log",
    benchmark:
        "results/benchmarks/runtime_table.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=1000,
    script:
        "../../src/scripts/runtime_table.py"


rule render_report:
    """Execute the report notebook with papermill and render it to one self-contained HTML page."""
    input:
        notebook=str(ROOT / "reports" / "study.ipynb"),
        data_summary="results/tables/data_summary.csv",
        split_counts="results/tables/split_counts.csv",
        samples=expand("results/figures/samples_{dataset}.png", dataset=DATASETS),
        split_figures=expand("results/figures/split_counts_{dataset}.png", dataset=DATASETS),
        runtimes="results/tables/runtimes.csv",
        code=package_code("report"),
    output:
        html="results/report/study.html",
        notebook="results/report/study.ipynb",
    log:
        "results/logs/render_report.log",
    benchmark:
        "results/benchmarks/render_report.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/render_report.py"
