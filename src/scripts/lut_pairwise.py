from memgen.data import load_cache
from memgen.bits import binarize_cache
from memgen.runtime import quick_device, write_csv
from memgen.lut.stages import run_pairwise_tasks
from memgen.runtime import log_to
from memgen.splits import load_split

with log_to(snakemake.log[0]):
    p, wc = snakemake.params, snakemake.wildcards
    bits_train, bits_test = binarize_cache(load_cache(snakemake.input.cache), p.binarization)
    splits = {name: load_split(path) for name, path in zip(p.pairs, snakemake.input.splits)}
    rows = run_pairwise_tasks(bits_train, bits_test, splits, p.ks, p.depths, p.width, p.seeds, quick_device(p.device),
                              snakemake.threads, dataset=wc.dataset, sweep=wc.sweep)
    write_csv(snakemake.output[0], rows)
