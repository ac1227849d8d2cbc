from memgen.influence.tables import write_tables
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    studies = snakemake.params.studies
    inputs = {key: dict(zip(studies, snakemake.input[key])) for key in ("summaries", "scores", "pairs", "convergence")}
    inputs["removal"] = dict(zip(snakemake.params.removal, snakemake.input.removal))
    write_tables(studies, inputs, dict(snakemake.output), consistency=snakemake.params.consistency,
                 last_layer=snakemake.params.last_layer, thetas=snakemake.params.thetas,
                 infl_thetas=snakemake.params.infl_thetas,
                 backbone_embeddings=snakemake.input.embeddings[0] if snakemake.input.embeddings else None)
