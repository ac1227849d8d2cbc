from memgen.data import read_dataset, save_cache
from memgen.runtime import log_to

with log_to(snakemake.log[0]):
    dataset = read_dataset(snakemake.params.spec, resources_dir=snakemake.params.resources_dir)
    print(f"{snakemake.wildcards.dataset}: {dataset.summary()}")
    save_cache(dataset, snakemake.output[0])
