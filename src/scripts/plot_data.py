from memgen.data import load_cache
from memgen.plots import plot_samples, plot_split_counts
from memgen.runtime import log_to
from memgen.splits import load_split

with log_to(snakemake.log[0]):
    dataset = load_cache(snakemake.input.cache)
    plot_samples(dataset, snakemake.output.samples, per_class=snakemake.params.per_class, seed=snakemake.params.seed,
                 title=snakemake.wildcards.dataset)
    splits = {path.rsplit("/", 1)[-1].removesuffix(".npz"): load_split(path) for path in snakemake.input.splits}
    plot_split_counts(splits, snakemake.output.counts, dataset.classes, title=snakemake.wildcards.dataset)
