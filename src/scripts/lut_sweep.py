from memgen.data import load_cache
from memgen.lut_study import Task, binarize_cache, lut_device, parse_coding, run_sweep_task, write_csv
from memgen.runtime import log_to
from memgen.splits import load_split

with log_to(snakemake.log[0]):
    p, wc = snakemake.params, snakemake.wildcards
    binarization = {**p.base, **parse_coding(wc.coding)}
    bits_train, bits_test = binarize_cache(load_cache(snakemake.input.cache), binarization)
    task = Task(bits_train, bits_test, load_split(snakemake.input.split))
    rows = run_sweep_task(task, p.ks, [p.depth], p.width, p.seeds, lut_device(p.device), snakemake.threads,
                          dataset=wc.dataset, coding=wc.coding, labels=wc.labels)
    write_csv(rows, snakemake.output[0])
