from memgen.data import load_cache
from memgen.lut.stages import Task, run_layer_stats
from memgen.bits import binarize_cache
from memgen.runtime import quick_device, write_csv
from memgen.runtime import log_to
from memgen.splits import load_split

with log_to(snakemake.log[0]):
    p = snakemake.params
    bits_train, bits_test = binarize_cache(load_cache(snakemake.input.cache), p.binarization)
    task = Task(bits_train, bits_test, load_split(snakemake.input.split))
    rows = run_layer_stats(task, p.k, p.width, p.depth, p.seeds, quick_device(p.device), snakemake.threads,
                           dataset=snakemake.wildcards.dataset)
    print(rows.to_string())
    write_csv(snakemake.output[0], rows)
