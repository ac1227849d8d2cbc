import torch

from memgen.retrieval.stages import transformer_stage
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    metrics = transformer_stage(snakemake.input.embeddings, snakemake.input.neighbors, snakemake.output.logits,
                                snakemake.output.metrics, variant=snakemake.wildcards.variant,
                                settings=dict(snakemake.params.settings), device=snakemake.params.device,
                                seed=snakemake.params.seed)
    print(f"val {metrics['val_accuracy']:.4f} test {metrics['test_accuracy']:.4f}")
