import torch

from memgen.retrieval.stages import knn_stage
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    table = knn_stage(snakemake.input.embeddings, snakemake.output.neighbors, snakemake.output.table,
                      ks=list(snakemake.params.ks), device=snakemake.params.device)
    print(table.to_string())
