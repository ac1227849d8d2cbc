import torch

from memgen.retrieval.stages import embed_split
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    embed_split(snakemake.input.cache, snakemake.input.split, snakemake.input.checkpoint, snakemake.output[0],
                device=snakemake.params.device, precision=snakemake.params.precision,
                flip_average=snakemake.params.flip_average,
                translate_average=snakemake.params.translate_average)
