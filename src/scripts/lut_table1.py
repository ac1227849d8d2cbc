from memgen.data import load_cache
from memgen.lut.stages import Task, run_table1_method
from memgen.bits import binarize_cache, bit_image_shape
from memgen.runtime import quick_device, write_csv
from memgen.runtime import log_to
from memgen.splits import load_split

with log_to(snakemake.log[0]):
    p, wc = snakemake.params, snakemake.wildcards
    settings = dict(p.settings)
    dataset = load_cache(snakemake.input.cache)
    bits_train, bits_test = binarize_cache(dataset, p.binarization)
    task = Task(bits_train, bits_test, load_split(snakemake.input.split), max_train=settings.pop("max_train"),
                seed=p.subsample_seed)
    rows = run_table1_method(wc.method, task, image_shape=bit_image_shape(dataset.x_train.shape[1:], p.binarization),
                             seeds=settings.pop("seeds", [None]), device=quick_device(p.device),
                             threads=snakemake.threads, dataset=wc.dataset, **settings)
    print(rows.to_string())
    write_csv(snakemake.output[0], rows)
