from memgen.retrieval.stages import evaluate_stage
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    transformers = {key.removeprefix("transformer_"): path for key, path in snakemake.input.items()
                    if key.startswith("transformer_")}
    summary = evaluate_stage(snakemake.input.embeddings, snakemake.input.neighbors, snakemake.input.gates,
                             transformers, snakemake.input.split, snakemake.output.predictions,
                             snakemake.output.summary, snakemake.output.per_class, snakemake.output.per_group,
                             ks=list(snakemake.params.ks), transformer_k=snakemake.params.transformer_k,
                             gate_ks=list(snakemake.params.gate_ks), dataset=snakemake.wildcards.dataset,
                             memory=snakemake.wildcards.memory)
    print(summary.to_string())
