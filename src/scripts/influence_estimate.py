import torch

from memgen.influence.stages import estimate_stage, load_task
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    study = snakemake.params.study
    task = load_task(study, snakemake.input.cache, snakemake.input.split, snakemake.input.get("embeddings"),
                     snakemake.params.binarization)
    summary = estimate_stage(snakemake.wildcards.study, study, task, list(snakemake.input.shards),
                             dict(snakemake.output), influence=snakemake.params.influence,
                             precision=snakemake.params.precision,
                             device=snakemake.params.device)
    print(summary)
