from memgen.data import load_cache
from memgen.lut_study import Task, binarize_cache, lut_device, run_sweep_task, write_csv
from memgen.runtime import log_to
from memgen.splits import load_split

with log_to(snakemake.log[0]):
    p = snakemake.params
    bits_train, bits_test = binarize_cache(load_cache(snakemake.input.cache), p.binarization)
    task = Task(bits_train, bits_test, load_split(snakemake.input.split))
    rows = run_sweep_task(task, p.ks, p.depths, p.width, p.seeds, lut_device(p.device), snakemake.threads,
                          dataset=snakemake.wildcards.dataset, labels="real")
    write_csv(rows, snakemake.output[0])
