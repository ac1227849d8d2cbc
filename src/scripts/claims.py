from memgen.runtime import log_to
from memgen.scorecard import merge_claims

with log_to(snakemake.log[0]):
    claims = merge_claims(list(snakemake.input.tables), snakemake.output[0])
    print(claims.to_string())
