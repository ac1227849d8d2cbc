from memgen.data import load_cache
from memgen.lut.stages import Task, run_sweep_task
from memgen.bits import binarize_cache, parse_coding
from memgen.runtime import quick_device, write_csv
from memgen.runtime import log_to
from memgen.splits import load_split

with log_to(snakemake.log[0]):
    p, wc = snakemake.params, snakemake.wildcards
    binarization = {**p.base, **parse_coding(wc.coding)}
    bits_train, bits_test = binarize_cache(load_cache(snakemake.input.cache), binarization)
    task = Task(bits_train, bits_test, load_split(snakemake.input.split))
    rows = run_sweep_task(task, p.ks, [p.depth], p.width, p.seeds, quick_device(p.device), snakemake.threads,
                          dataset=wc.dataset, coding=wc.coding, labels=wc.labels)
    write_csv(snakemake.output[0], rows)
