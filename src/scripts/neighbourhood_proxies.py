import torch

from memgen.proxies.stages import neighbourhood_stage
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    df = neighbourhood_stage(snakemake.wildcards.features, snakemake.input.split, snakemake.output[0],
                             cache_path=snakemake.input.get("cache"), embeddings_path=snakemake.input.get("embeddings"),
                             k=snakemake.params.k, pca=snakemake.params.pca, device=snakemake.params.device)
    print(f"{len(df)} examples; median knn_agree {df['knn_agree'].median():.3f}")
