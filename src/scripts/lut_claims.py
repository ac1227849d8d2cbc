from memgen.lut.claims import write_lut_claims
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    i, p = snakemake.input, snakemake.params
    paths = {name: i[name] for name in ("table1", "table2", "table3", "table4", "figure1")}
    rows = write_lut_claims(paths, snakemake.output[0], depth=p.depth, width=p.width, n_seeds=p.n_seeds)
    for row in rows:
        print(f"{row['verdict']:>14}  {row['measured']:+.3f} [{row['lo']:+.3f}, {row['hi']:+.3f}]  {row['claim']}")
