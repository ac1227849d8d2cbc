from memgen.proxies.stages import study_proxies_stage
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    study_proxies_stage(snakemake.input.shards, snakemake.input.split, snakemake.output.csv, snakemake.output.curves)
