from memgen.bench.precision import run_benchmark, summary
from memgen.runtime import log_to, write_json

with log_to(snakemake.log[0]):
    results = run_benchmark(snakemake.input.cache, threads=snakemake.threads)
    print(summary(results))
    write_json(snakemake.output[0], results)
