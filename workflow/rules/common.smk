import os
import re
import sys
from pathlib import Path

from snakemake.utils import validate

# Jobs import memgen from this checkout, also where it is not pip-installed (e.g. on cluster nodes).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(Path(workflow.basedir) / "src"),
                                                           os.environ.get("PYTHONPATH")])))
# Inductor's compiled kernels (the MLP learner's training step), kept in the project for later jobs and runs.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(workflow.basedir, ".snakemake", "memgen", "torchinductor")))
from memgen.code_inputs import module_files, script_modules
from memgen.data import DataError, source_files
from memgen.runtime import usable_cores
from memgen.splits import SPLIT_PATTERN, pair_names

# Jobs never ask for more threads than the machine has, whatever --cores says: more concurrent threads than
# physical cores make OpenMP threads spin against each other and stall training. A local run schedules at most the
# machine's physical cores, which also caps each rule's threads; a cluster job's own snakemake process caps at its
# node's allocation; a cluster submission (--jobs) is left alone. This sets Snakemake's global `_cores` resource
# (what --cores fills in) before its scheduler starts.
MACHINE_CORES = usable_cores()
REQUESTED_CORES = workflow.global_resources["_cores"].value
if workflow.nodes is None and (workflow.global_resources["_cores"].value or 0) > MACHINE_CORES:
    if workflow.is_main_process:
        print(f"memgen: --cores {workflow.global_resources['_cores'].value} is more than the {MACHINE_CORES} "
              f"physical cores available here; scheduling jobs on {MACHINE_CORES}", file=sys.stderr)
    workflow.global_resources["_cores"] = MACHINE_CORES

# Config keys renamed since earlier releases: an old config stops with the new name instead of a schema error.
RENAMED_KEYS = {"memory": "retrieval", "memorization": "influence"}
for _old, _new in RENAMED_KEYS.items():
    if _old in config:
        raise ValueError(f"config key '{_old}' is now '{_new}': rename it in your config file (same content)")

validate(config, schema="../schemas/config.schema.yaml")

ROOT = Path(workflow.basedir)


def project_path(path):
    """Relative paths in the config are relative to the project root, wherever snakemake runs."""
    path = Path(path)
    return str(path if path.is_absolute() else ROOT / path)


DATA_ROOT = project_path(config["data_root"])
DATASETS = {
    name: {**spec, **({"path": project_path(spec["path"].format(data_root=DATA_ROOT))} if "path" in spec else {})}
    for name, spec in config["datasets"].items()
}


wildcard_constraints:
    dataset="|".join(DATASETS),
    split=SPLIT_PATTERN,


def script_code(script, notebooks=()):
    """The memgen files src/scripts/<script>.py and the notebooks it executes run (their transitive imports),
    declared as inputs so that editing a module reruns exactly the jobs whose scripts reach it."""
    files = [f for path in [ROOT / "src" / "scripts" / f"{script}.py", *notebooks]
             for f in script_modules(path, ROOT / "src")]
    return sorted(set(files))


def dataset_files(wildcards):
    """The dataset's source files, by content rather than age: re-copying an unchanged mirror (a new mtime) must
    not rerun the study; the config's md5 / expect checks guard the content. After replacing a dataset by other
    data at the same path, rerun with --forcerun prepare_data."""
    try:
        return [ancient(f) for f in source_files(DATASETS[wildcards.dataset])]
    except DataError as err:
        raise ValueError(f"dataset '{wildcards.dataset}': {err}") from None


def dataset_spec(dataset):
    """What prepare_data reads of a dataset's config entry: all but its split list, so that adding a split does
    not rebuild the cache (and with it the dataset's whole study). The md5 / expect checks stay: changing one
    verifies the data again."""
    return {key: value for key, value in DATASETS[dataset].items() if key != "splits"}


# What each kind of split reads from config `splits` (memgen.splits.make_split); lt<IF> reads what full does.
SPLIT_SETTINGS = {"all": [], "full": ["validation_size"], "rare": ["validation_size", "rare"], "binary": ["binary"],
                  "pair": []}


def split_settings(split):
    """The `splits` settings one split reads: a make_split job's params, so that changing the rare task's
    settings reruns the rare splits only, not every split of every dataset."""
    family = re.fullmatch(SPLIT_PATTERN, split).group(1)
    kind = "full" if family.startswith("lt") else "pair" if family.startswith("pair") else family
    return {key: config["splits"][key] for key in SPLIT_SETTINGS[kind] if key in config["splits"]}


def splits_of(dataset):
    """The split names configured for a dataset, with ``pairs`` expanded to every one-vs-one task."""
    names = []
    for name in DATASETS[dataset].get("splits", ["full"]):
        names += pair_names(n_classes(dataset)) if name == "pairs" else [name]
    return list(dict.fromkeys(names))


def n_classes(dataset):
    spec = DATASETS[dataset]
    if "expect" in spec and "n_classes" in spec["expect"]:
        return spec["expect"]["n_classes"]
    if "classes" in spec:
        return len(spec["classes"])
    raise ValueError(f"dataset '{dataset}' uses 'pairs' splits: give expect.n_classes in config.yaml")


def split_files(dataset):
    return [f"results/splits/{dataset}/{split}.npz" for split in splits_of(dataset)]


# Each rules file registers what the report shows and which benchmark files the runtime table reads:
# REPORT_SECTIONS[section] = {parameter name of reports/<section>.ipynb: path or list of paths}.
REPORT_SECTIONS = {"intro": {}}
BENCHMARKS = []


def report_inputs():
    """render_report's named inputs: ``<section>__<parameter>``."""
    return {f"{section}__{name}": paths for section, params in REPORT_SECTIONS.items() for name, paths in params.items()}


# SIGINT or SIGTERM to Snakemake stops the running jobs too, not only the scheduling (memgen.interrupt). Installed at
# the start of the run, after Snakemake's scheduler has set its own SIGTERM handler, which this one replaces.
# Snakemake keeps one onstart per workflow: another start-of-run action belongs in this block.
from memgen.interrupt import stop_jobs_on_signal


def say_run_cost():
    """Print the precision the run resolved, the cores it uses and an estimate of its wall time here
    (memgen.run_cost): a few seconds of measurement, at most once an hour, before the first job."""
    from memgen.run_cost import cached_speed, estimate, jobs_of, start_message
    from memgen.runtime import resolve_device, resolve_precision

    device = resolve_device(config["device"])
    precision = resolve_precision(config["precision"], device)
    cores = int(workflow.global_resources["_cores"].value or MACHINE_CORES)
    cluster = workflow.nodes is not None
    jobs = jobs_of(workflow.dag)
    speed = cached_speed(ROOT / ".snakemake" / "memgen", precision, device, min(cores, MACHINE_CORES))
    stages = estimate(jobs, speed, config["datasets"], config["splits"], None if cluster else cores)
    print(start_message(precision_setting=config["precision"], speed=speed, cores=cores,
                        requested_cores=REQUESTED_CORES, stages=stages, n_jobs=len(jobs), cluster=cluster),
          file=sys.stderr, flush=True)


onstart:
    stop_jobs_on_signal(workflow.scheduler.exit_gracefully, local=workflow.local_exec)
    if not workflow.touch:
        say_run_cost()
