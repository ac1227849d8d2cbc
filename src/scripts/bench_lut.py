from memgen.bench.lut import run_benchmark, summary, write_json
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    results = run_benchmark(snakemake.input.cache, quick=snakemake.params.quick, threads=snakemake.threads)
    print(summary(results, snakemake.threads))
    write_json(results, snakemake.output[0])
