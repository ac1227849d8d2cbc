# Cheap per-example proxies of memorization (memgen.proxies, staged by memgen.proxies.stages): the learning speed of
# every training example, recorded during the training runs the study already does (each backbone of the memory
# study, written by train_backbone; the estimator's MLPs and networks, kept in their shards), neighbourhood
# proxies on embeddings and pixels, and their validation against the subsampling estimator wherever both cover
# the same examples. Included after retrieval.smk and influence.smk, before report.smk.


include: "proxies_common.smk"


rule study_proxies:
    """The learning speed of every training example over all models of an estimator study (recorded in its
    shards while they trained)."""
    input:
        shards=lambda wc: study_shards(wc.study),
        split=lambda wc: f"results/splits/{STUDIES[wc.study]['dataset']}/{STUDIES[wc.study]['split']}.npz",
        code=script_code("study_proxies"),
    output:
        csv="results/influence/{study}/proxies.csv",
        curves="results/influence/{study}/proxies.npz",
    wildcard_constraints:
        study="|".join(RECORDING_STUDIES) if RECORDING_STUDIES else "(?!)",
    log:
        "results/logs/study_proxies/{study}.log",
    benchmark:
        "results/benchmarks/study_proxies/{study}.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/study_proxies.py"


rule neighbourhood_proxies:
    """Share of each training example's k nearest neighbours with its label, the kernel posterior of its class
    among them and its class-conditional kernel density, on the backbone's embeddings or on (PCA) pixels."""
    input:
        unpack(neighbourhood_inputs),
        code=script_code("neighbourhood_proxies"),
    output:
        "results/proxies/{dataset}/{split}/neighbourhood_{features}.csv",
    wildcard_constraints:
        features="pixels|embeddings",
    params:
        k=NEIGHBOURHOOD["k"],
        pca=NEIGHBOURHOOD["pca"],
        device=config["device"],
    log:
        "results/logs/neighbourhood_proxies/{dataset}/{split}/{features}.log",
    benchmark:
        "results/benchmarks/neighbourhood_proxies/{dataset}/{split}/{features}.tsv"
    threads: PROXIES["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=6000,
    script:
        "../../src/scripts/neighbourhood_proxies.py"


rule proxy_validation:
    """Every proxy against every estimate on the same examples: Spearman correlation with held-out accuracy and
    with mem, overlap of the top sets, and a note saying where a proxy fails."""
    input:
        scores=list(study_files("scores.csv").values()),
        sources=[s["path"] for s in PROXY_SOURCES.values()],
        code=script_code("proxy_validation"),
    output:
        report(PROXY_TABLES["validation"], caption="../report/proxies_validation.rst", category="Memorization proxies"),
    params:
        studies={name: {k: s[k] for k in ("dataset", "split", "learner", "t")} for name, s in STUDIES.items()},
        sources=PROXY_SOURCES,
        top_fraction=PROXIES["top_fraction"],
        seed=config["seed"],
    log:
        "results/logs/proxy_validation.log",
    benchmark:
        "results/benchmarks/proxy_validation.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/proxy_validation.py"


rule proxy_figures:
    """Proxies against the estimate (scatter); the least and most regular training images per class by a backbone's
    learning speed, and its histogram per class."""
    input:
        validation=PROXY_TABLES["validation"],
        scores=list(study_files("scores.csv").values()),
        sources=[s["path"] for s in PROXY_SOURCES.values()],
        cache=f"results/data/{_figure_pair[0]}.npz",
        split=f"results/splits/{_figure_pair[0]}/{_figure_pair[1]}.npz",
        backbone=f"results/retrieval/{_figure_pair[0]}/{_figure_pair[1]}/proxies.csv",
        code=script_code("proxy_figures"),
    output:
        **{name.removeprefix("fig_"): report(path, caption=f"../report/proxies_{name}.rst",
                                             category="Memorization proxies")
           for name, path in PROXY_FIGURES.items()},
    params:
        studies=list(STUDIES),
        sources=PROXY_SOURCES,
        per_class=PROXY_FIGURES_SET["per_class"],
        title=f"{_figure_pair[0]}/{_figure_pair[1]} backbone",
    log:
        "results/logs/proxy_figures.log",
    benchmark:
        "results/benchmarks/proxy_figures.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/proxy_figures.py"


REPORT_SECTIONS["proxies"] = {
    **PROXY_TABLES,
    **PROXY_FIGURES,
    "backbone_proxies": [f"results/retrieval/{d}/{s}/proxies.csv" for d, s in PROXY_BACKBONE_PAIRS],
}
BENCHMARKS += [f"results/benchmarks/train_backbone/{d}/{s}.tsv" for d, s in PROXY_BACKBONE_PAIRS]
BENCHMARKS += [f"results/benchmarks/study_proxies/{name}.tsv" for name in RECORDING_STUDIES]
BENCHMARKS += [f"results/benchmarks/neighbourhood_proxies/{d}/{s}/{f}.tsv" for d, s, f in NEIGHBOURHOOD_SETS]
BENCHMARKS += ["results/benchmarks/proxy_validation.tsv", "results/benchmarks/proxy_figures.tsv"]
BENCHMARKS[:] = list(dict.fromkeys(BENCHMARKS))
