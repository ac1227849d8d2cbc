# memgen: generalization through memorization, as one reproducible Snakemake workflow.
# Run the whole study:   snakemake all --cores 8
# With a preset, the target first (--configfile takes several values):
#   snakemake all --cores 8 --configfile workflow/presets/quick.yaml
# See README.md for which preset fits your machine, the smoke configuration and cluster profiles.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/lut.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/retrieval.smk"
include: "workflow/rules/influence.smk"
include: "workflow/rules/proxies.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/report/study.html",
    default_target: True
