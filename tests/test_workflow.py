"""The workflow as users run it: lint, config validation, clear errors, the smoke DAG end to end
through the generic cluster executor, and reruns limited to the stages an edit touches."""

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import DATA_ROOT, REPO
from test_report import visible_text

from memgen.claims import VERDICTS
from memgen.scorecard import anchor as table_anchor

CHROMIUM = "/usr/bin/chromium"
PROJECT_FILES = ["Snakefile", "config.yaml", "workflow", "src", "reports", "envs", "tests/smoke"]
SMOKE = ["--configfile", "tests/smoke/config.yaml"]


def snakemake(*args, cwd=REPO, timeout=1500):
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc.returncode, proc.stdout + proc.stderr


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    table = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def copy_project(root):
    for name in PROJECT_FILES:
        src, dst = REPO / name, root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project, so runs and edits never touch the checkout."""
    return copy_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def touched(data_root, tmp_path_factory):
    """A copy of the project whose smoke DAG counts as done without running a job: every output and benchmark
    file exists (empty) and `snakemake --touch` records them as current. A dry run on it shows what a change
    would rerun, in seconds."""
    root = copy_project(tmp_path_factory.mktemp("touched"))
    code, out = snakemake("-n", "-F", "all", *SMOKE, "--config", f"data_root={data_root}", cwd=root)
    assert code == 0, out[-3000:]
    for line in re.findall(r"^\s+(?:output|benchmark): (.*)$", out, re.M):
        for name in line.split(", "):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).touch()
    code, out = snakemake("--touch", "--forceall", "--cores", "1", "all", *SMOKE, "--config",
                          f"data_root={data_root}", cwd=root)
    assert code == 0, out[-3000:]
    code, out = snakemake("-n", "all", *SMOKE, "--config", f"data_root={data_root}", cwd=root)
    assert code == 0 and "Nothing to be done" in out, out[-3000:]
    return root


@pytest.fixture(scope="module")
def mirror(data_root, tmp_path_factory):
    """A copy of the dataset mirror the smoke run reads, so a test can re-copy (re-date) it."""
    root = tmp_path_factory.mktemp("data")
    for name in ("mnist", "cifar10-jpeg.tar.gz"):  # what tests/smoke/config.yaml reads, not all of data_root
        (shutil.copytree if (data_root / name).is_dir() else shutil.copy2)(data_root / name, root / name)
    return root


# Where a run may write in the project: its outputs, downloads, Snakemake's state and Python's bytecode caches.
RUN_WRITES = ("results/", "resources/", ".snakemake/")


def project_files(root) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def smoke_run(project, mirror):
    before = project_files(project)
    code, out = snakemake("all", "--workflow-profile", "workflow/profiles/local-cluster", *SMOKE,
                          "--config", f"data_root={mirror}", cwd=project)
    assert code == 0, out[-5000:]
    (project / RUN_WRITES[2] / "files_before_the_smoke_run.json").write_text(json.dumps(before))
    (project / RUN_WRITES[2] / "smoke_run.log").write_text(out)
    return project


def test_a_cluster_run_says_its_precision_and_job_time_at_start(smoke_run):
    out = (smoke_run / RUN_WRITES[2] / "smoke_run.log").read_text()
    assert re.search(r"memgen: precision auto -> (bf16|fp32) .*; jobs on the cluster's nodes", out), out[:3000]
    assert re.search(r"memgen: \d+ jobs to run, job time summed", out), out[:3000]


def test_a_run_writes_only_results_resources_and_snakemake_state(smoke_run):
    before = json.loads((smoke_run / RUN_WRITES[2] / "files_before_the_smoke_run.json").read_text())
    after = project_files(smoke_run)
    written = sorted(f for f, mtime in after.items() if before.get(f) != mtime)
    assert written and all(f.startswith(RUN_WRITES) for f in written), \
        [f for f in written if not f.startswith(RUN_WRITES)]


def test_lint_is_clean():
    code, out = snakemake("--lint")
    assert code == 0 and "Congratulations" in out, out[-3000:]


@pytest.mark.parametrize("override, message", [
    ("device=gpu", r"device.*gpu|gpu.*device"),
    ("epochs=3", r"epochs"),
    ("seed=-1", r"seed|-1"),
    ("precision=fp16", r"precision.*fp16|fp16.*precision"),
])
def test_bad_config_value_stops_with_its_name(override, message):
    code, out = snakemake("-n", "--config", override)
    assert code != 0
    assert re.search(message, out, re.S), out[-3000:]


def test_jobs_never_ask_for_more_threads_than_the_machine_has():
    """--cores and a rule's threads above the machine's physical cores are scaled down to them."""
    from memgen.runtime import usable_cores

    cores = usable_cores()
    code, out = snakemake("results/retrieval/cifar10/full/backbone.pt", "-n", "-F", "--cores", str(4 * cores),
                          "--set-threads", f"train_backbone={4 * cores}", *SMOKE, "--config", f"data_root={DATA_ROOT}")
    assert code == 0, out[-3000:]
    assert f"--cores {4 * cores} is more than the {cores} physical cores" in out
    assert re.findall(r"^\s+threads: (\d+)$", out, re.M) == ([str(cores)] if cores > 1 else [])


def test_missing_data_file_is_named(tmp_path):
    shutil.copy2(REPO / "config.yaml", tmp_path)
    code, out = snakemake("-n", "-s", str(REPO / "Snakefile"), "--config", f"data_root={tmp_path}", cwd=tmp_path)
    assert code != 0
    assert f"{tmp_path}/mnist/train-images-idx3-ubyte[.gz]" in out and "data_root" in out, out[-3000:]
    assert not (tmp_path / "results").exists()


def rule_texts() -> dict[str, str]:
    """Rule name -> the indented body of its definition, from the Snakefile and every rules file."""
    texts = {}
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]:
        parts = re.split(r"^rule (\w+):\n", path.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2]):
            texts[name] = re.match(r"(?:[ \t]+.*\n|\n)*", body).group(0)
    return texts


def rule_scripts() -> dict[str, str]:
    """Rule name -> the stem of the script under src/scripts/ it runs, for every rule with a script."""
    scripts = {}
    for name, body in rule_texts().items():
        match = re.search(r'^\s+script:\s*\n\s+"\.\./\.\./src/scripts/(\w+)\.py"', body, re.M)
        if match:
            scripts[name] = match.group(1)
    return scripts


def test_every_script_rule_declares_the_code_of_its_own_script():
    scripts = rule_scripts()
    assert len(scripts) >= 20 and set(scripts.values()) == {p.stem for p in (REPO / "src/scripts").glob("*.py")}
    texts = rule_texts()
    for name, script in scripts.items():
        declared = re.findall(r'^\s+code=(?:script|study)_code\("(\w+)"', texts[name], re.M)
        assert declared == [script], f"rule {name} runs {script}.py but declares code={declared}"


# Imports every import statement of each file given (a script, or a notebook's code cells) in a fresh forked
# child and prints {file: [the memgen files Python really loaded]}. The parent loads the heavy third-party
# packages once; memgen itself never, so each child starts without it.
REAL_IMPORTS = r"""
import ast, json, os, sys
import numpy, pandas, torch, matplotlib
matplotlib.use("Agg")
assert not any(m == "memgen" or m.startswith("memgen.") for m in sys.modules)
result = {}
for path in sys.argv[1:]:
    text = open(path).read()
    if path.endswith(".ipynb"):
        cells = [c for c in json.loads(text)["cells"] if c["cell_type"] == "code"]
        text = "\n".join(l for c in cells for l in "".join(c["source"]).splitlines() if not l.lstrip().startswith("%"))
    imports = [ast.unparse(n) for n in ast.walk(ast.parse(text)) if isinstance(n, (ast.Import, ast.ImportFrom))]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        for statement in imports:
            exec(statement, {})
        files = sorted(m.__file__ for name, m in list(sys.modules.items())
                       if (name == "memgen" or name.startswith("memgen.")) and getattr(m, "__file__", None))
        os.write(write, json.dumps(files).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        out = fh.read()
    assert os.waitpid(pid, 0)[1] == 0, f"importing the imports of {path} failed"
    result[path] = json.loads(out)
print(json.dumps(result))
"""


def real_imports(paths: list[str]) -> dict[str, set[str]]:
    proc = subprocess.run([sys.executable, "-c", REAL_IMPORTS, *paths], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")}, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {path: set(files) for path, files in json.loads(proc.stdout).items()}


def declared_inputs() -> tuple[dict[str, set[str]], dict[tuple[str, str], set[str]]]:
    """From a dry run of every job of the smoke DAG: rule -> the union of its jobs' input files, and
    (rule, study) -> the union of the input files of that rule's jobs of an influence study."""
    code, out = snakemake("-n", "-F", "all", *sorted(OUTSIDE_ALL), *SMOKE, "--config", f"data_root={DATA_ROOT}")
    assert code == 0, out[-3000:]
    inputs, by_study = {}, {}
    for rule, body in re.findall(r"^rule (\w+):\n((?:\s+\w+: .*\n)+)", out, re.M):
        files = set(re.search(r"^\s+input: (.*)$", body, re.M).group(1).split(", "))
        inputs.setdefault(rule, set()).update(files)
        study = re.search(r"^\s+wildcards: (?:.*, )?study=(\w+)", body, re.M)
        if study:
            by_study.setdefault((rule, study.group(1)), set()).update(files)
    return inputs, by_study


def test_every_rule_declares_every_memgen_module_its_script_imports(tmp_path):
    """What Python really loads when a rule's script (and, for the report, each section's notebook) imports
    its imports is a subset of the memgen files the rule declares as inputs; an influence study's jobs also
    declare what importing its learner's module loads, and no other learner's module."""
    from memgen.influence.learners import LEARNERS

    scripts = rule_scripts()
    notebooks = sorted(str(p) for p in (REPO / "reports").glob("*.ipynb"))
    learners = {}   # an influence study's jobs import its learner module by name: memgen.influence.learners.<name>
    for name in LEARNERS:
        learners[name] = tmp_path / f"learner_{name}.py"
        learners[name].write_text(f"import memgen.influence.learners.{name}\n")
    loaded = real_imports([str(REPO / f"src/scripts/{s}.py") for s in sorted(set(scripts.values()))] + notebooks
                          + [str(p) for p in learners.values()])
    declared, by_study = declared_inputs()
    assert set(scripts) <= set(declared), "a rule with a script has no job in the dry run"
    for rule, script in scripts.items():
        real = loaded[str(REPO / f"src/scripts/{script}.py")]
        if rule == "render_report":
            real = real.union(*(loaded[nb] for nb in notebooks))
        assert str(REPO / "src/memgen/runtime.py") in real, f"{script}.py: the import check saw no memgen module"
        missing = real - declared[rule]
        assert not missing, f"rule {rule} does not declare {sorted(missing)}, which {script}.py or its notebooks import"
    studies = yaml.safe_load((REPO / "tests/smoke/config.yaml").read_text())["influence"]["studies"]
    learner_files = {str(REPO / f"src/memgen/influence/learners/{name}.py") for name in learners}
    builds_learner = {name for name, text in rule_texts().items() if "code=study_code(" in text}
    assert builds_learner == {"influence_shard", "influence_estimate", "influence_removal"}
    for (rule, study), files in by_study.items():
        if rule not in builds_learner:
            continue
        learner = studies[study]["learner"]
        real = loaded[str(REPO / f"src/scripts/{scripts[rule]}.py")] | loaded[str(learners[learner])]
        assert str(REPO / f"src/memgen/influence/learners/{learner}.py") in real
        missing = real - files
        assert not missing, f"rule {rule}, study {study}: {sorted(missing)} not declared, which its learner loads"
        other = files & learner_files - real
        assert not other, f"rule {rule}, study {study} (learner {learner}) declares other learners' code {other}"
    assert {rule for rule, _ in by_study} >= builds_learner
    lut_notebook = loaded[str(REPO / "reports/lut.ipynb")]
    assert str(REPO / "src/memgen/lut/tables.py") in lut_notebook   # the report reads the LUT tables module


RETRIEVAL_RARE = {"train_backbone": 1, "embed": 1, "knn": 1, "gate": 1, "evaluate_retrieval": 1, "retrieval_tables": 1,
                  "retrieval_figures": 1, "retrieval_claims": 1}
# A table changed: the scorecard reads them; the study's claims changed: the merged claims table reads them.
REPORT = {"scorecard": 1, "claims": 1, "runtime_table": 1, "render_report": 1, "all": 1}


@pytest.mark.parametrize("old, new, jobs", [
    ("split_epochs: {lt10: 1, lt50: 1, lt100: 1, rare: 1}", "split_epochs: {lt10: 1, lt50: 1, lt100: 1, rare: 2}",
     {**RETRIEVAL_RARE, **REPORT}),
    ("    keep_fraction: 0.1\n", "    keep_fraction: 0.2\n",
     {"make_split": 1, "summarize_data": 1, "plot_data": 1, **RETRIEVAL_RARE, **REPORT}),
    ("variants: [ce, query_drop],", "variants: [ce, query_drop, aux],",
     {"neighbor_transformer": 3, "evaluate_retrieval": 3, "retrieval_tables": 1, "retrieval_figures": 1,
      "retrieval_claims": 1, **REPORT}),
], ids=["rare epochs", "rare keep_fraction", "a third Transformer variant"])
def test_a_config_change_plans_only_the_jobs_it_determines(touched, old, new, jobs):
    """Params hold what determines a job's output and nothing else: the rare split's epochs retrain the rare
    backbone only (not every CIFAR-10 backbone), the rare task's settings rebuild the rare split only, a new
    Transformer variant trains one new job per memory with a Transformer (cifar10 full, full@airbench, mnist full)
    without retraining the others."""
    config = (touched / "tests/smoke/config.yaml").read_text()
    assert old in config
    (touched / "changed.yaml").write_text(config.replace(old, new))
    code, out = snakemake("-n", "all", "--configfile", "changed.yaml", "--config", f"data_root={DATA_ROOT}",
                          cwd=touched)
    assert code == 0, out[-3000:]
    assert planned_jobs(out) == jobs, out[-3000:]
    if "train_backbone" in jobs:
        assert re.search(r"^rule train_backbone:\n(?:\s+\w+: .*\n)*?\s+wildcards: dataset=cifar10, memory=rare$", out,
                         re.M), out[-3000:]


def test_smoke_report_has_every_section_with_numbers(smoke_run):
    html = (smoke_run / "results/report/study.html").read_text()
    for heading in ("Data", "LUT networks", "Memory-augmented classifier", "Memorization and influence",
                    "Memorization proxies", "Runtime"):
        assert re.search(rf"<h2[^>]*>{heading}", html), f"section {heading} missing"
    assert "Traceback" not in html and "output_error" not in html
    assert html.count("<img") >= 4  # sample images and split counts of both datasets
    summary = pd.read_csv(smoke_run / "results/tables/data_summary.csv")
    assert summary.set_index("dataset").loc["mnist", "n_train"] == 600
    counts = pd.read_csv(smoke_run / "results/tables/split_counts.csv")
    assert (counts.dataset == "mnist").sum() == 4 + 45 and (counts.n_train > 0).all()
    for name in ("table1", "table2", "table3", "table4"):                 # the LUT study's tables
        table = pd.read_csv(smoke_run / f"results/tables/seed001_{name}.csv")
        assert {"published", "measured"} <= set(table.columns) and table["measured"].notna().all(), name
    assert pd.read_csv(smoke_run / "results/tables/seed001_figure1.csv")["gap"].notna().all()
    retrieval = pd.read_csv(smoke_run / "results/tables/seed000_table1.csv")     # the retrieval study's Table 1
    assert retrieval["measured"].notna().all() and pd.api.types.is_numeric_dtype(retrieval["measured"])
    second = retrieval.set_index("model")["measured, airbench (small) as the network"]  # retrieval.extra_backbones
    assert second[["ResNet-20", "1-NN", "10-NN Transformer", "Oracle gate 1-NN/ResNet-20"]].notna().all()
    studies = pd.read_csv(smoke_run / "results/tables/influence_summary.csv").set_index("study")
    assert set(studies.index) == {"mnist_mlp", "mnist_knn", "mnist_knn_rerun", "mnist_lut", "cifar10_linear",
                                  "cifar10_linear_rerun", "cifar10_knn", "cifar10_knn_rerun", "cifar10_net"}
    assert studies.loc["mnist_mlp", "t"] == 8 and studies.loc["mnist_mlp", "n_train"] == 600  # smoke sizes
    assert (studies["n_train"] > 0).all() and studies["test_acc_mean"].between(0, 1).all()
    last = pd.read_csv(smoke_run / "results/tables/influence_last_layer.csv")
    assert last["measured"].notna().all() and (last["published (CIFAR-100, ResNet50)"].iloc[-1] == 18099)
    study_proxies = pd.read_csv(smoke_run / "results/influence/mnist_mlp/proxies.csv")   # 8 models, 2 epochs each
    assert len(study_proxies) == 600 and (study_proxies["passes"] == 2 * study_proxies["n_models"]).all()
    assert study_proxies["learn_prob"].dropna().between(0, 1).all() and study_proxies["n_models"].max() <= 8
    backbone = pd.read_csv(smoke_run / "results/retrieval/cifar10/all/proxies.csv")      # split 'all': every image
    assert len(backbone) == 2000 and backbone["passes"].sum() == 4 * 64                 # max_steps x batch_size
    assert backbone.loc[backbone["passes"] > 0, "learn_prob"].between(0, 1).all()
    validation = pd.read_csv(smoke_run / "results/tables/proxies_validation.csv")
    assert {"mnist_mlp models", "backbone cifar10/full", "backbone cifar10/full@airbench",
            "embeddings neighbours cifar10/full"} <= set(validation.source)
    assert validation["spearman_heldout"].notna().all() and validation["note"].notna().all()
    assert "mnist_lut" not in set(validation.study)                       # another task: not comparable
    runtimes = pd.read_csv(smoke_run / "results/tables/runtimes.csv")
    assert len(runtimes) == sum(planned_jobs_all(smoke_run).values()) - 3  # all but runtime_table, render_report, all
    assert (runtimes.seconds > 0).all()


def test_smoke_report_opens_with_preset_claims_scorecard_and_provenance(smoke_run):
    html = (smoke_run / "results/report/study.html").read_text()
    text = visible_text(html)
    assert "<title>memgen study report (smoke preset)</title>" in html
    first_section = html.index('<h2 id="Data"')
    assert (html.index("Preset: smoke") < html.index('id="claims"') < html.index('id="scorecard"')
            < html.index('id="provenance"') < first_section)
    assert "not meaningful" in text
    claims = pd.read_csv(smoke_run / "results/tables/claims.csv")
    assert set(claims.document) == {"LUT", "Memory", "F&Z"} and set(claims["verdict"]) <= set(VERDICTS)
    memory_networks = claims.loc[claims.document == "Memory", "scale"].str.split(" on ").str[0]
    assert set(memory_networks) == {"1-epoch ResNet-20", "1-epoch airbench (small)"}       # each memory's claims
    bounded = claims.dropna(subset=["lo", "hi"])
    assert (bounded["lo"] <= bounded["hi"]).all()
    assert (claims.loc[claims["lo"].isna(), "verdict"] == "inconclusive").all()     # no interval: inconclusive
    claims_html = html[html.index('id="claims"'):html.index('id="scorecard"')]
    assert claims_html.count("<tr>") == len(claims) + 1
    named = claims[claims["source"].str.fullmatch(r"(Table|Figure) \d+")]
    for document, source in zip(named["document"], named["source"]):       # a claim's table link has its table
        assert f'id="{table_anchor(f"{document} {source}")}"' in html[first_section:], (document, source)
    card = pd.read_csv(smoke_run / "results/tables/scorecard.csv")
    assert set(card.document) == {"LUT", "Memory", "F&Z"} and card["verdict"].notna().all()
    assert not card["verdict"].str.startswith("not reproduced").any()          # smoke scale: levels are not judged
    assert card["scale"].notna().all()
    scorecard_html = html[html.index('id="scorecard"'):html.index('id="provenance"')]
    assert scorecard_html.count("<tr>") == len(card) + 1
    for anchor in set(card["anchor"]):                                 # every row links to a table of the page
        assert f'href="#{anchor}"' in scorecard_html and f'id="{anchor}"' in html[first_section:], anchor
    provenance = json.loads((smoke_run / "results/report/provenance.json").read_text())
    assert {"python", "torch", "snakemake", "faiss"} <= set(provenance["versions"])
    assert provenance["config"]["preset"]["name"] == "smoke" and provenance["wall_time_s"] > 0
    for word in ("commit", provenance["config_hash"], "torch " + provenance["versions"]["torch"], "wall time"):
        assert word in text, word


def test_smoke_report_is_clean_and_offline(smoke_run):
    html = (smoke_run / "results/report/study.html").read_text()
    text = visible_text(html)
    contents = html[html.index('class="memgen-contents"'):]
    for heading in ("Data", "LUT-networks", "Memory-augmented-classifier", "Runtime"):
        assert f'href="#{heading}"' in contents, heading
    assert not re.search(r"\bnan\b", text, re.I)
    assert "dataframe" not in html                                     # no pandas repr: a table is shown once
    names = re.findall(r'<(?:div class="memgen-table"|figure class="memgen-figure") id="([^"]+)"', html)
    assert len(names) == len(set(names)) and len(names) > 30
    assert not re.search(r"<script[^>]+src=", html) and "require.js" not in html and "mathjax" not in html.lower()
    for href in re.findall(r'class="memgen-file" href="([^"]+)"', html):      # CSV / PNG links resolve
        assert (smoke_run / "results/report" / href).is_file(), href


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (.ci/run installs it)")
def test_smoke_report_renders_in_a_browser(smoke_run, tmp_path):
    from PIL import Image

    shot = tmp_path / "first_screen.png"
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,2000",
                           f"--screenshot={shot}", (smoke_run / "results/report/study.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.shape == (2000, 1400)
    assert (image < 128).mean() > 0.01                               # text and tables drawn, not a blank page
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    verdict_colours = [(0xdc, 0xf2, 0xdc), (0xf8, 0xdc, 0xdc), (0xfb, 0xef, 0xd0)]   # holds, fails, inconclusive
    coloured = sum(np.all(np.abs(rgb - colour) <= 3, axis=-1).sum() for colour in verdict_colours)
    assert coloured > 500                                           # the claims' coloured verdicts on screen 1


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (.ci/run installs it)")
def test_report_screenshots_show_each_section_and_its_first_table(smoke_run, tmp_path):
    from PIL import Image

    from memgen.screenshots import report_screenshots, section_pages

    html = (smoke_run / "results/report/study.html").read_text()
    pages = section_pages(html)
    assert list(pages)[:3] == ["Data", "LUT-networks", "Memory-augmented-classifier"]
    names = list(pages)
    for name, after in zip(names, names[1:] + [None]):
        page = pages[name]                               # its own heading and first table, nothing of the next
        assert f'id="{name}"' in page and (after is None or f'id="{after}"' not in page), name
        assert page.count('<div class="memgen-table"') == 1 and 'id="scorecard"' not in page, name
    shots = report_screenshots(smoke_run / "results/report/study.html", tmp_path / "shots", chromium=CHROMIUM)
    assert [p.name for p in shots][:3] == ["first_screen.png", "01_Data.png", "02_LUT_networks.png"]
    assert len(shots) == len(pages) + 1
    for shot in shots:
        image = np.asarray(Image.open(shot).convert("L"), dtype=float)
        assert image.shape == (1000, 1400) and (image < 128).mean() > 0.005, shot     # text drawn, not blank
    assert not list((smoke_run / "results/report").glob(".screenshot_*"))              # no page left behind


def planned_jobs_all(project):
    code, out = snakemake("all", "-n", "-F", *SMOKE, "--config", f"data_root={DATA_ROOT}", cwd=project)
    assert code == 0, out[-3000:]
    return planned_jobs(out)


def test_every_job_went_through_the_cluster_executor(smoke_run):
    ledger = pd.read_csv(smoke_run / ".snakemake/local-cluster/jobs.tsv", sep="\t", names=["rule", "inputs"])
    assert set(ledger.rule) == set(planned_jobs_all(smoke_run)) - {"all"}
    assert len(ledger) == sum(planned_jobs_all(smoke_run).values()) - 1


def edit(path):
    """A real edit: Snakemake compares checksums, so a mere touch does not count."""
    path.write_text(path.read_text() + "\n# edited by the test\n")


def test_editing_a_module_reruns_only_its_dependents(touched):
    """Each rule declares the memgen files its script imports: editing the shared plotting module reruns the
    figure jobs that use it, a module of one study only that study's jobs (and the report), a foundation
    module everything built on it; the training loop the influence study's net learner only (not the shards of
    the studies of other learners)."""
    def dry_run_output():
        code, out = snakemake("-n", *SMOKE, "--config", f"data_root={DATA_ROOT}", cwd=touched)
        assert code == 0, out[-3000:]
        return out

    def dry_run():
        return planned_jobs(dry_run_output())

    modules = {name: touched / f"src/memgen/{name}.py" for name in ("plots", "lut/figures", "retrieval/tables",
                                                                    "splits", "train")}
    originals = {name: path.read_text() for name, path in modules.items()}
    report = {"runtime_table", "render_report", "all"}
    try:
        assert dry_run() == {}
        edit(modules["plots"])
        assert set(dry_run()) == {"summarize_data", "plot_data", "lut_figures", "retrieval_figures", "influence_figures",
                                  "proxy_figures"} | report   # every figure job draws through plots
        modules["plots"].write_text(originals["plots"])
        edit(modules["lut/figures"])
        assert set(dry_run()) == {"lut_figures"} | report
        modules["lut/figures"].write_text(originals["lut/figures"])
        edit(modules["retrieval/tables"])   # also read by the report's retrieval notebook
        assert set(dry_run()) == {"retrieval_tables", "retrieval_figures", "scorecard", "retrieval_claims",
                                  "claims"} | report   # the figures and the scorecard read its tables, the claims
                                                       # its published numbers
        modules["retrieval/tables"].write_text(originals["retrieval/tables"])
        assert dry_run() == {}               # the same content again: nothing is stale
        edit(modules["splits"])
        jobs = dry_run()
        assert "make_split" in jobs and "train_backbone" in jobs and "prepare_data" not in jobs
        modules["splits"].write_text(originals["splits"])
        edit(modules["train"])   # the training loop: the backbones and the net learner's shards, no other learner's
        out = dry_run_output()
        assert "train_backbone" in planned_jobs(out), out[-3000:]
        influence_jobs = []      # (rule, study, whether the edited file itself is why the job runs)
        for rule, body in re.findall(r"^rule (influence_shard|influence_estimate|influence_removal):\n"
                                     r"((?:\s+\w+: .*\n)+)", out, re.M):
            reason = re.search(r"^\s+reason: (.*)$", body, re.M).group(1)
            study = re.search(r"^\s+wildcards: study=(\w+)", body, re.M).group(1)
            influence_jobs.append((rule, study, "src/memgen/train.py" in reason))
        assert sorted(job for job in influence_jobs if job[2]) == [("influence_shard", "cifar10_net", True)] * 2
        # the MNIST studies (mlp, knn, lut on pixels or bits) read nothing the edit reruns; the CIFAR-10 studies on
        # the backbone's embeddings rerun because the embeddings do, not because of their code
        assert not [job for job in influence_jobs if job[1].startswith("mnist_")], influence_jobs
        assert ("influence_estimate", "cifar10_net", False) in influence_jobs, influence_jobs
    finally:  # the later tests start from a finished DAG again
        for name, path in modules.items():
            path.write_text(originals[name])


def test_recopying_the_mirror_reruns_nothing(smoke_run, mirror):
    """Re-provisioning the read-only mirror gives its files new mtimes but the same content: the study stays
    current, while --forcerun prepare_data still rebuilds from it."""
    later = time.time() + 60
    for path in mirror.rglob("*"):
        os.utime(path, (later, later))
    code, out = snakemake("-n", *SMOKE, "--config", f"data_root={mirror}", cwd=smoke_run)
    assert code == 0 and "Nothing to be done" in out, out[-3000:]
    code, out = snakemake("-n", "--forcerun", "prepare_data", *SMOKE, "--config", f"data_root={mirror}", cwd=smoke_run)
    assert code == 0 and planned_jobs(out).get("prepare_data") == 2, out[-3000:]


def test_snakemake_report_archive_holds_captioned_outputs(smoke_run, mirror):
    import zipfile

    code, out = snakemake("--report", "report.zip", *SMOKE, "--config", f"data_root={mirror}", cwd=smoke_run)
    assert code == 0, out[-3000:]
    names = zipfile.ZipFile(smoke_run / "report.zip").namelist()
    for expected in ("data_summary.csv", "split_counts.csv", "runtimes.csv", "samples_mnist.png", "seed001_table1.csv",
                     "seed001_figure1.png"):
        assert any(name.endswith(expected) for name in names), expected


def test_an_interrupted_study_reruns_only_its_missing_shard(smoke_run, mirror):
    """A run interrupted after one shard of a study (shards are written atomically: whole or not at all), before
    its estimate: the rerun trains only the missing shard, and the estimates equal the uninterrupted ones."""
    shard = smoke_run / "results/influence/mnist_knn/shards/models_000008-000016.npz"
    scores = smoke_run / "results/influence/mnist_knn/scores.npz"
    before = np.load(scores)["mem"]
    shard.unlink()
    scores.unlink()
    target = str(scores.relative_to(smoke_run))
    code, out = snakemake("-n", target, *SMOKE, "--config", f"data_root={mirror}", cwd=smoke_run)
    assert code == 0, out[-3000:]
    jobs = planned_jobs(out)
    assert jobs["influence_shard"] == 1 and jobs["influence_estimate"] == 1, jobs
    assert "models_000008-000016.npz" in out and "output: results/influence/mnist_knn/shards/models_000000" not in out
    code, out = snakemake("--cores", "2", target, *SMOKE, "--config", f"data_root={mirror}", cwd=smoke_run)
    assert code == 0, out[-3000:]
    assert shard.exists() and np.array_equal(np.load(scores)["mem"], before, equal_nan=True)


def test_raising_t_trains_only_the_new_models(smoke_run, mirror):
    config = (smoke_run / "tests/smoke/config.yaml").read_text()
    raised = config.replace("mnist_knn: {dataset: mnist, split: all, learner: knn, t: 16,",
                            "mnist_knn: {dataset: mnist, split: all, learner: knn, t: 24,")
    assert raised != config
    (smoke_run / "raised.yaml").write_text(raised)
    code, out = snakemake("-n", "--configfile", "raised.yaml", "--config", f"data_root={mirror}", cwd=smoke_run)
    assert code == 0, out[-3000:]
    assert planned_jobs(out)["influence_shard"] == 1 and "models_000016-000024.npz" in out


@pytest.mark.parametrize("change, message", [
    ({"consistency": [["mnist_mlp", "nowhere"]]}, r"influence.consistency names study 'nowhere'"),
    ({"studies": {"bad": {"dataset": "mnist", "split": "all", "learner": "mlp", "t": 4, "shard_size": 2,
                          "settings": {"epoch": 3}}}}, r"epoch"),
    ({"studies": {"bad": {"dataset": "mnist", "split": "lt10", "learner": "knn", "t": 4, "shard_size": 2}}},
     r"split 'lt10' is not in datasets.mnist.splits"),
    ({"studies": {"bad": {"dataset": "mnist", "split": "all", "learner": "lut", "features": "pixels", "t": 4,
                          "shard_size": 2}}}, r"bits"),
])
def test_bad_influence_config_is_named(change, message, tmp_path):
    import yaml

    config = yaml.safe_load((REPO / "tests/smoke/config.yaml").read_text())
    for key, value in change.items():
        config["influence"][key] = {**config["influence"][key], **value} if key == "studies" else value
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    code, out = snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"))
    assert code != 0
    assert re.search(message, out, re.S), out[-3000:]


PAPER = ["--configfile", "workflow/presets/paper.yaml"]
# The only rules outside `all`: the benchmark target's, and the screenshots (they need a browser).
OUTSIDE_ALL = {"bench", "bench_lut", "bench_precision", "report_screenshots"}


@functools.cache
def workflow_rules() -> frozenset:
    """The names of the workflow's rules (`snakemake --list-rules`)."""
    code, out = snakemake("--list-rules", "--config", f"data_root={DATA_ROOT}")
    assert code == 0, out[-3000:]
    rules = frozenset(re.findall(r"^(\w+)(?: \(.*)?$", out, re.M))    # "name" or "name (docstring"
    assert {"train_backbone", "influence_shard", "lut_sweep", "render_report"} <= rules, out[-3000:]
    return rules


@pytest.mark.parametrize("preset", ["paper", "quick"])
def test_preset_plans_every_rule_of_the_study_at_its_sizes(preset):
    """A preset merged into config.yaml (key by key, as Snakemake merges --configfile) plans every rule of `all`,
    with as many shards, removal experiments and Transformers as the merged config asks for."""
    import yaml
    from snakemake.utils import update_config

    args = ["--configfile", f"workflow/presets/{preset}.yaml", "--config", f"data_root={DATA_ROOT}"]
    rules = workflow_rules()
    code, out = snakemake("all", "-n", "-F", *args)
    assert code == 0, out[-3000:]
    jobs = planned_jobs(out)
    assert set(jobs) == rules - OUTSIDE_ALL, set(jobs) ^ (rules - OUTSIDE_ALL)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / f"workflow/presets/{preset}.yaml").read_text()))
    studies = config["influence"]["studies"]
    assert jobs["influence_shard"] == sum(-(-s["t"] // s["shard_size"]) for s in studies.values())
    assert jobs["influence_estimate"] == len(studies)
    assert jobs["influence_removal"] == len(config["influence"]["removal"])
    transformer = config["retrieval"]["transformer"]
    extra = config["retrieval"].get("extra_backbones", {})
    memories = sum(len(splits) + sum(len(set(b["splits"]) & set(splits)) for b in extra.get(dataset, {}).values())
                   for dataset, splits in transformer["splits"].items())   # its splits, each under every network
    assert jobs["neighbor_transformer"] == len(transformer["variants"]) * memories
    assert jobs["train_backbone"] == (sum(map(len, config["retrieval"]["splits"].values()))
                                      + sum(len(b["splits"]) for nets in extra.values() for b in nets.values()))


def test_paper_preset_backbone_runs_through_the_cluster_executor_at_tiny_size(tmp_path):
    """The paper's 200-epoch ResNet-20 recipe, cut to 2 SGD steps on 600 images, as three cluster jobs."""
    import json

    for name in PROJECT_FILES:
        src, dst = REPO / name, tmp_path / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    (tmp_path / "tiny.yaml").write_text(json.dumps({
        "datasets": {"cifar10": {"limit": {"train": 600, "test": 100}}}, "splits": {"validation_size": 100},
        "retrieval": {"backbone": {"cifar10": {"max_steps": 2}}}}))
    target = "results/retrieval/cifar10/full/backbone.json"
    code, out = snakemake(target, "--workflow-profile", "workflow/profiles/local-cluster", *PAPER, "tiny.yaml",
                          "--config",
                          f"data_root={DATA_ROOT}", cwd=tmp_path, timeout=600)
    assert code == 0, out[-5000:]
    ledger = pd.read_csv(tmp_path / ".snakemake/local-cluster/jobs.tsv", sep="\t", names=["rule", "inputs"])
    assert sorted(ledger.rule) == ["make_split", "prepare_data", "train_backbone"]
    metrics = json.loads((tmp_path / target).read_text())
    assert (metrics["epochs"], metrics["batch_size"], metrics["lr"], metrics["steps"]) == (200, 128, 0.1, 2)
    assert not list((tmp_path / "results").glob("checkpoints/**/*.pt")), "the resume file is removed at the end"


@pytest.mark.parametrize("change, message", [
    ({"backbones": {"cifar10": ["lt50"]}}, r"proxies.backbones.cifar10 has 'lt50', which is not in datasets.cifar10"),
    ({"neighbourhood": {"sets": [{"dataset": "cifar10", "split": "binary", "features": "embeddings"}]}},
     r"embeddings need a memory of \(cifar10, binary\)"),
    ({"figures": {"dataset": "mnist", "split": "all"}}, r"proxies.figures shows the backbone of mnist/all"),
    ({"top_fraction": 0.9}, r"top_fraction"),
])
def test_bad_proxies_config_is_named(change, message, tmp_path):
    import yaml

    config = yaml.safe_load((REPO / "tests/smoke/config.yaml").read_text())
    config["proxies"].update(change)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    code, out = snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"))
    assert code != 0
    assert re.search(message, out, re.S), out[-3000:]


@pytest.mark.parametrize("old, new", [("memory", "retrieval"), ("memorization", "influence")])
def test_an_old_config_key_stops_naming_the_new_one(old, new, tmp_path):
    import yaml

    config = yaml.safe_load((REPO / "tests/smoke/config.yaml").read_text())
    config[old] = config.pop(new)
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(config))
    code, out = snakemake("-n", "--configfile", str(tmp_path / "old.yaml"))
    assert code != 0
    assert f"config key '{old}' is now '{new}'" in out, out[-3000:]


RULE_PARAMS = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

config = dict(item.split("=", 1) for item in sys.argv[2:])
with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=Path("Snakefile"), workdir=Path("."),
                      config_settings=ConfigSettings(configfiles=[Path(sys.argv[1])], config=config))
    rules = wf._workflow.rules
    params = {r.name: dict(r.params.items()) for r in rules}   # the estimate's "precision" is its statistical target
    print("PARAMS=" + json.dumps({name: p.get("training_precision", p.get("precision")) for name, p in params.items()
                                  if isinstance(p.get("training_precision", p.get("precision")), str)}))
"""
PRECISION_RULES = {"train_backbone", "embed", "influence_shard", "influence_estimate", "influence_removal"}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_override_reaches_the_training_jobs(precision):
    code, out = snakemake("-n", "all", *SMOKE, "--config", f"data_root={DATA_ROOT}", f"precision={precision}")
    assert code == 0, out[-3000:]
    proc = subprocess.run([sys.executable, "-c", RULE_PARAMS, "tests/smoke/config.yaml", f"data_root={DATA_ROOT}",
                           f"precision={precision}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    params = json.loads(proc.stdout.split("PARAMS=", 1)[1])
    assert set(params) == PRECISION_RULES
    assert {params[rule] for rule in PRECISION_RULES} == {precision}
