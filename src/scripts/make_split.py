from memgen.data import load_labels
from memgen.runtime import log_to
from memgen.splits import make_split, save_split

with log_to(snakemake.log[0]):
    settings = snakemake.params.settings
    y_train, y_test, classes = load_labels(snakemake.input.cache)
    split = make_split(snakemake.wildcards.split, y_train, y_test, classes, dataset=snakemake.wildcards.dataset,
                       seed=snakemake.params.seed, validation_size=settings.get("validation_size", 5000),
                       binary=settings.get("binary"), rare=settings.get("rare"))
    print(f"{snakemake.wildcards.dataset}/{snakemake.wildcards.split}: train {len(split.train_idx)}, "
          f"val {len(split.val_idx)}, test {len(split.test_idx)}, class counts {split.class_counts().tolist()}"
          + (f" (Cui et al.'s {split.lt_target.tolist()}; capped by the hold-out: classes {split.capped_classes()})"
             if len(split.lt_target) else ""))
    save_split(split, snakemake.output[0])
