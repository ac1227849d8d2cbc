# Included last: every other rules file has registered its report section and benchmarks by now.

REPORT_SECTIONS["runtime"] = {"runtimes": "results/tables/runtimes.csv"}
REPORT_TEMPLATES = [str(ROOT / "reports" / f"{section}.ipynb") for section in REPORT_SECTIONS]


rule runtime_table:
    """Wall time and peak memory of every job of the study, from the benchmark files."""
    input:
        benchmarks=BENCHMARKS,
        code=script_code("runtime_table"),
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
    """Execute each section's notebook (reports/<section>.ipynb) with papermill; join them into one HTML page."""
    input:
        templates=REPORT_TEMPLATES,
        code=script_code("render_report", notebooks=REPORT_TEMPLATES),
        **report_inputs(),
    output:
        html="results/report/study.html",
        notebook="results/report/study.ipynb",
    params:
        sections=list(REPORT_SECTIONS),
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
