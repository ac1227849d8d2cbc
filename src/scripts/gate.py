from memgen.retrieval.stages import gate_stage
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    info = gate_stage(snakemake.input.embeddings, snakemake.input.neighbors, snakemake.input.split,
                      snakemake.output.predictions, snakemake.output.info, gate_ks=list(snakemake.params.gate_ks))
    print(info)
