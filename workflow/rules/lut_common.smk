# Helpers of workflow/rules/lut.smk (included by it): the validated `lut` config, which jobs each table needs,
# and the files they write.
import re

from memgen.bits import CODING_PATTERN, coding_name
from memgen.lut.stages import TABLE1_METHODS

validate(config["lut"], schema="../schemas/lut.schema.yaml")   # fills the schema's defaults
LUT = config["lut"]
# A dataset that lut.binarize does not list is binarized as an empty entry: with the schema's defaults.
_unlisted = {"binarize": {"unlisted": {}}}
validate(_unlisted, schema="../schemas/lut.schema.yaml")
DEFAULT_BINARIZATION = _unlisted["binarize"]["unlisted"]


def lut_dataset(section):
    name = LUT[section]["dataset"]
    if name not in DATASETS:
        raise ValueError(f"lut.{section}.dataset is '{name}', which is not under datasets: in the config; "
                         f"add it there or pick one of {list(DATASETS)}")
    return name


def lut_binarization(dataset):
    """The dataset's memgen.bits.binarize settings, keys in one order (job params do not follow the config's)."""
    entry = LUT["binarize"].get(dataset, DEFAULT_BINARIZATION)
    return {key: entry[key] for key in ("scheme", "bits", "threshold", "grey")}


def lut_coding(dataset):
    return coding_name(lut_binarization(dataset))


def pair_splits(dataset, section):
    pairs = [s for s in splits_of(dataset) if re.fullmatch(r"pair\d+v\d+", s)]
    if not pairs:
        raise ValueError(f"lut.{section} needs the pairwise tasks of '{dataset}', but datasets.{dataset}.splits "
                         "has no pair<a>v<b> split; add 'pairs' (all one-vs-one tasks) there")
    return pairs


for _name in LUT["table1"]["k"]:
    if _name not in DATASETS:
        raise ValueError(f"lut.table1.k names dataset '{_name}', which is not under datasets: in the config; "
                         f"remove it or add the dataset")

# Binary-task k sweeps, (dataset, coding, labels) -> ks: Table 3, and the bits-per-channel extension.
LUT_SWEEPS = {}
for _labels in ("real", "random"):
    _d = lut_dataset("table3")
    LUT_SWEEPS.setdefault((_d, lut_coding(_d), _labels), set()).update(LUT["table3"]["ks"])
_d = lut_dataset("ext_bits")
EXT_CODINGS = list(dict.fromkeys(coding_name({**lut_binarization(_d), "scheme": LUT["ext_bits"]["scheme"], "bits": b})
                                 for b in LUT["ext_bits"]["bits"]))
for _c in EXT_CODINGS:
    for _labels in LUT["ext_bits"]["labels"]:
        LUT_SWEEPS.setdefault((_d, _c, _labels), set()).update(LUT["ext_bits"]["ks"])
LUT_SWEEPS = {key: sorted(ks) for key, ks in LUT_SWEEPS.items()}

# Pairwise tasks, (dataset, sweep) -> ks and depths: Figure 1 (k sweep at the baseline depth; depth sweep at
# depth_k) and Table 4 (one k). The baseline-depth network at depth_k comes from the k sweep when it has it.
LUT_PAIRWISE = {}
_f, _t4 = lut_dataset("figure1"), lut_dataset("table4")
LUT_PAIRWISE[(_f, "k")] = {"ks": set(LUT["figure1"]["ks"]), "depths": [LUT["depth"]]}
LUT_PAIRWISE.setdefault((_t4, "k"), {"ks": set(), "depths": [LUT["depth"]]})["ks"].add(LUT["table4"]["k"])
_depths = [d for d in LUT["figure1"]["depths"]
           if not (d == LUT["depth"] and LUT["figure1"]["depth_k"] in LUT["figure1"]["ks"])]
if _depths:
    LUT_PAIRWISE[(_f, "depth")] = {"ks": [LUT["figure1"]["depth_k"]], "depths": _depths}
LUT_PAIRWISE = {key: {"ks": sorted(v["ks"]), "depths": v["depths"]} for key, v in LUT_PAIRWISE.items()}


def pair_shard(dataset, shard):
    """The pair splits one pairwise job runs: every n-th of the dataset's pairs."""
    pairs = pair_splits(dataset, "figure1/table4")
    n = min(LUT["pair_shards"], len(pairs))
    return pairs[int(shard)::n]


def pairwise_files(dataset, sweep):
    n = min(LUT["pair_shards"], len(pair_splits(dataset, "figure1/table4")))
    return [f"results/lut/pairwise/{dataset}/{sweep}/{s}.csv" for s in range(n)]


def lut_settings(wildcards):
    """The Table 1 settings one method uses (only those, so that changing another method's reruns nothing here)."""
    d, m = wildcards.dataset, wildcards.method
    s = {"max_train": LUT["table1"]["max_train"].get(d, {}).get(m), "coding": lut_coding(d)}
    if TABLE1_METHODS[m].seeded:
        s["seeds"] = LUT["seeds"]
    if m == "memorization":
        s.update(memorization_k=LUT["table1"]["k"][d], width=LUT["width"], depth=LUT["depth"])
    if m == "knn":
        s.update(knn_ks=LUT["table1"]["knn_ks"], knn_train_queries=LUT["table1"]["knn_train_queries"])
    if m in ("conv_net", "logistic_regression"):
        s[m] = LUT["table1"][m]
    return s



TABLE1_FILES = [f"results/lut/table1/{d}/{m}.csv" for d in LUT["table1"]["k"] for m in LUT["table1"]["methods"]]
TABLE3_FILES = [f"results/lut/sweep/{d}/{c}/{labels}.csv" for (d, c, labels) in LUT_SWEEPS
                if d == lut_dataset("table3") and c == lut_coding(d)]
EXT_BITS_FILES = [f"results/lut/sweep/{lut_dataset('ext_bits')}/{c}/{labels}.csv" for c in EXT_CODINGS
                  for labels in LUT["ext_bits"]["labels"]]
LUT_TABLES = {name: f"results/tables/seed001_{name}.csv"
              for name in ("table1", "table2", "table3", "table4", "figure1", "ext_bits", "ext_depth")}
LUT_CLAIMS = "results/tables/claims_lut.csv"
LUT_FIGURES = {name: f"results/figures/seed001_{name}.png"
               for name in ("table1", "table3", "figure1", "table4", "ext_bits", "ext_depth")}
