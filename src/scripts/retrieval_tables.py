from memgen.retrieval.tables import write_tables
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    write_tables([tuple(p) for p in snakemake.params.pairs], list(snakemake.input.summaries),
                 list(snakemake.input.knn), dict(snakemake.output))
