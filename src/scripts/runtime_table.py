from memgen.report import runtime_table
from memgen.runtime import atomic_path, log_to

with log_to(snakemake.log[0]):
    table = runtime_table(snakemake.input.benchmarks)
    with atomic_path(snakemake.output[0]) as tmp:
        table.to_csv(tmp, index=False)
    print(table.to_string())
