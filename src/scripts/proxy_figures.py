from memgen.proxies.figures import figures_stage
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    figures_stage(snakemake.input.validation, dict(zip(snakemake.params.studies, snakemake.input.scores)),
                  snakemake.params.sources, snakemake.input.cache, snakemake.input.split, snakemake.input.backbone,
                  dict(snakemake.output), per_class=snakemake.params.per_class, title=snakemake.params.title)
