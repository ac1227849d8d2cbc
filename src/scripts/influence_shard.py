import torch

from memgen.influence.stages import load_task, shard_stage
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    study = snakemake.params.study
    task = load_task(study, snakemake.input.cache, snakemake.input.split, snakemake.input.get("embeddings"),
                     snakemake.params.binarization)
    shard_stage(study, task, int(snakemake.wildcards.start), int(snakemake.wildcards.stop), snakemake.output[0],
                ratio=snakemake.params.ratio, device=snakemake.params.device,
                models_per_call=snakemake.params.models_per_call, precision=snakemake.params.precision,
                checkpoint_dir=snakemake.params.resume,
                checkpoint_every_s=60 * snakemake.resources.checkpoint_minutes)
