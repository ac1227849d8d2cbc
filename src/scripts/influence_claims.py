from memgen.influence.claims import write_influence_claims
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    i, p = snakemake.input, snakemake.params
    figure = [p.figure_study] if p.figure_study else []
    rows = write_influence_claims(
        snakemake.output[0], scores=dict(zip(p.studies, i.scores)), removal=dict(zip(p.removal, i.removal)),
        studies=p.studies, consistency=p.consistency, last_layer=p.last_layer, figure_study=p.figure_study,
        pairs=dict(zip(figure, i.pairs)), infl_threshold=p.infl_threshold, mem_threshold=p.mem_threshold)
    for row in rows:
        print(f"{row['verdict']:>14}  {row['measured']:+.3f} [{row['lo']:+.3f}, {row['hi']:+.3f}]  {row['claim']}  "
              f"({row['statistic']})")
