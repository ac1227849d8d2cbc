import torch

from memgen.influence.stages import load_task, removal_stage
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    study, removal = snakemake.params.study, snakemake.params.removal
    task = load_task(study, snakemake.input.cache, snakemake.input.split, snakemake.input.get("embeddings"),
                     snakemake.params.binarization)
    removal_stage(study, task, snakemake.input.scores, snakemake.output[0], thetas=removal["thetas"],
                  trials=removal.get("trials", 3), device=snakemake.params.device,
                  precision=snakemake.params.precision)
