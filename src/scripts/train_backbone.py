import torch

from memgen.retrieval.stages import train_backbone
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    metrics = train_backbone(snakemake.input.cache, snakemake.input.split, snakemake.output.checkpoint,
                             snakemake.output.metrics, snakemake.output.proxies, snakemake.output.proxy_curves,
                             settings=dict(snakemake.params.settings),
                             device=snakemake.params.device, seed=snakemake.params.seed,
                             precision=snakemake.params.precision, resume_path=snakemake.params.resume,
                             checkpoint_every_s=60 * snakemake.resources.checkpoint_minutes)
    print(f"{snakemake.wildcards.dataset}/{snakemake.wildcards.memory}: val accuracy "
          f"{metrics.get('val_accuracy')}, {metrics['images_per_s']:.0f} img/s in {metrics['precision']}")
