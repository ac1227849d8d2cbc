from memgen.proxies.stages import validation_stage
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    table = validation_stage(snakemake.params.studies, dict(zip(snakemake.params.studies, snakemake.input.scores)),
                             snakemake.params.sources, snakemake.output[0], top_fraction=snakemake.params.top_fraction,
                             seed=snakemake.params.seed)
    print(table.to_string())
