from memgen.plots import data_summary, split_counts
from memgen.runtime import atomic_path, log_to

with log_to(snakemake.log[0]):
    datasets = snakemake.params.datasets
    summary = data_summary(dict(zip(datasets, snakemake.input.caches)))
    counts = split_counts(snakemake.input.splits)
    for table, path in ((summary, snakemake.output.summary), (counts, snakemake.output.counts)):
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
