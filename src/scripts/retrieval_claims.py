from memgen.retrieval.claims import write_retrieval_claims
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    i, p = snakemake.input, snakemake.params
    rows = write_retrieval_claims([tuple(x) for x in p.pairs], list(i.predictions), list(i.splits),
                                  list(i.backbones), snakemake.output[0], ks=p.ks, gate_ks=p.gate_ks,
                                  transformer_k=p.transformer_k, rare_classes=p.rare_classes, data=dict(p.data))
    for row in rows:
        print(f"{row['verdict']:>14}  {row['measured']:+.2f} [{row['lo']:+.2f}, {row['hi']:+.2f}]  {row['claim']}")
