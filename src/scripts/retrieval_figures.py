from memgen.retrieval.figures import write_figures
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    write_figures(snakemake.input.accuracy_vs_k, list(snakemake.input.per_class), snakemake.input.fixes_cache,
                  snakemake.input.fixes_predictions, dict(snakemake.output), methods=list(snakemake.params.methods))
