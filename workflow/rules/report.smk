# Included last: every other rules file has registered its report section and benchmarks by now.

from memgen.scorecard import document_scales

REPORT_SECTIONS["runtime"] = {"runtimes": "results/tables/runtimes.csv"}
REPORT_SECTIONS["intro"].update(claims="results/tables/claims.csv", scorecard="results/tables/scorecard.csv")
BENCHMARKS += ["results/benchmarks/claims.tsv", "results/benchmarks/scorecard.tsv"]
REPORT_TEMPLATES = [str(ROOT / "reports" / f"{section}.ipynb") for section in REPORT_SECTIONS]

# The studies' tables that hold published numbers, by scorecard input name (a study not configured adds none).
SCORECARD_INPUTS = {
    **{f"lut_{name}": REPORT_SECTIONS["lut"][name] for name in ("table1", "table2", "table3", "table4")
       if name in REPORT_SECTIONS.get("lut", {})},
    **({"retrieval_table1": REPORT_SECTIONS["retrieval"]["table1"]} if "retrieval" in REPORT_SECTIONS else {}),
    **({"influence_last_layer": REPORT_SECTIONS["influence"]["last_layer"]} if "influence" in REPORT_SECTIONS else {}),
}


# Every configured study's claims table (memgen.claims), each named by its own rules file: all are required.
CLAIM_TABLES = {
    "lut": LUT_CLAIMS,
    "retrieval": RETRIEVAL_CLAIMS,
    **({"influence": INFLUENCE_CLAIMS} if "influence" in REPORT_SECTIONS else {}),
}


rule claims:
    """The documents' claims, every study's in one table: measured effect, 95% interval and verdict of each."""
    input:
        tables=list(CLAIM_TABLES.values()),
        code=script_code("claims"),
    output:
        report("results/tables/claims.csv", caption="../report/claims.rst", category="Summary"),
    log:
        "results/logs/claims.log",
    benchmark:
        "results/benchmarks/claims.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=1000,
    script:
        "../../src/scripts/claims.py"


rule scorecard:
    """One scorecard of levels across the three documents: published, measured, difference, tolerance and verdict
    of every published number this run can be compared with, and the scale each was measured at."""
    input:
        **SCORECARD_INPUTS,
        code=script_code("scorecard"),
    output:
        report("results/tables/scorecard.csv", caption="../report/scorecard.rst", category="Summary"),
    params:
        scales=document_scales(config),
        preset_scale=config["preset"]["scale"],
    log:
        "results/logs/scorecard.log",
    benchmark:
        "results/benchmarks/scorecard.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=1000,
    script:
        "../../src/scripts/scorecard.py"


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
    """Execute each section's notebook (reports/<section>.ipynb) with papermill; join them into one HTML page
    that opens with the preset, the claims, the scorecard and the run's provenance (commit, config, versions, device)."""
    input:
        templates=REPORT_TEMPLATES,
        code=script_code("render_report", notebooks=REPORT_TEMPLATES),
        runtimes="results/tables/runtimes.csv",
        **report_inputs(),
    output:
        html="results/report/study.html",
        notebook="results/report/study.ipynb",
        provenance="results/report/provenance.json",
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


rule report_screenshots:
    """What a reader sees: the report's first screen and each section from its heading through its first table,
    rendered by headless Chromium (not part of all: it needs the browser; `snakemake --cores 1 report_screenshots`)."""
    input:
        html="results/report/study.html",
        code=script_code("report_screenshots"),
    output:
        directory("results/report/screenshots"),
    params:
        chromium="chromium",
    log:
        "results/logs/report_screenshots.log",
    benchmark:
        "results/benchmarks/report_screenshots.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=2000,
    script:
        "../../src/scripts/report_screenshots.py"
