# Memorization and influence estimation (Feldman & Zhang 2020, Algorithm 1) for every model family: each study's
# t models are trained in shards (one job per range of model ids; a cluster runs them in parallel, an interrupted
# run resumes, raising t reuses the shards done), then estimated, and the removal experiment retrains without
# the memorized examples. Logic in memgen.memorization (the estimator) and memgen.memorization_study (stages).
# Per study under results/memorization/{study}/; tables under results/tables/memorization_*.csv.


include: "memorization_common.smk"


wildcard_constraints:
    study="|".join(STUDIES) if STUDIES else "(?!)",
    start=r"\d{6}",
    stop=r"\d{6}",


rule memorization_shard:
    """Train models start..stop-1 of a study, each on its random subset; record masks, 0/1 correctness,
    true-class probability and margin on every training and test example."""
    input:
        unpack(study_inputs),
        code=package_code(*MEMORIZATION_CODE),
    output:
        "results/memorization/{study}/shards/models_{start}-{stop}.npz",
    params:
        study=lambda wc: model_settings(wc.study),
        models_per_call=lambda wc: STUDIES[wc.study]["models_per_call"],
        binarization=lambda wc: study_binarization(wc.study),
        ratio=MEMORIZATION["ratio"],
        device=config["device"],
    log:
        "results/logs/memorization_shard/{study}/{start}-{stop}.log",
    benchmark:
        "results/benchmarks/memorization_shard/{study}/{start}-{stop}.tsv"
    threads: MEMORIZATION["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=6000,
        gpu=MEMORIZATION_GPU,
    script:
        "../../src/scripts/memorization_shard.py"


rule memorization_estimate:
    """mem, its standard error and the held-out accuracy per training example; influence in blocks, keeping the
    high-influence pairs and every test example's top influencers; estimates against t."""
    input:
        unpack(study_inputs),
        shards=lambda wc: study_shards(wc.study),
        code=package_code(*MEMORIZATION_CODE),
    output:
        scores_csv="results/memorization/{study}/scores.csv",
        scores_npz="results/memorization/{study}/scores.npz",
        pairs="results/memorization/{study}/pairs.csv",
        influencers="results/memorization/{study}/top_influencers.csv",
        convergence="results/memorization/{study}/convergence.csv",
        summary="results/memorization/{study}/summary.json",
    params:
        study=lambda wc: STUDIES[wc.study],
        binarization=lambda wc: study_binarization(wc.study),
        influence=MEMORIZATION["influence"],
        device=config["device"],
    log:
        "results/logs/memorization_estimate/{study}.log",
    benchmark:
        "results/benchmarks/memorization_estimate/{study}.tsv"
    threads: MEMORIZATION["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=8000,
    script:
        "../../src/scripts/memorization_estimate.py"


rule memorization_removal:
    """Document Figure 2: retrain without the examples with mem >= theta, and without as many random ones."""
    input:
        unpack(study_inputs),
        scores="results/memorization/{study}/scores.npz",
        code=package_code(*MEMORIZATION_CODE),
    output:
        "results/memorization/{study}/removal.csv",
    params:
        study=lambda wc: STUDIES[wc.study],
        binarization=lambda wc: study_binarization(wc.study),
        removal=lambda wc: MEMORIZATION["removal"][wc.study],
        device=config["device"],
    log:
        "results/logs/memorization_removal/{study}.log",
    benchmark:
        "results/benchmarks/memorization_removal/{study}.tsv"
    threads: MEMORIZATION["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=6000,
        gpu=MEMORIZATION_GPU,
    script:
        "../../src/scripts/memorization_removal.py"


rule memorization_tables:
    """Counts and histograms of mem per study, convergence in t, consistency (D_mem, J_mem, J_infl), removal and
    the last-layer finding beside the document's numbers."""
    input:
        summaries=list(study_files("summary.json").values()),
        scores=list(study_files("scores.npz").values()),
        pairs=list(study_files("pairs.csv").values()),
        convergence=list(study_files("convergence.csv").values()),
        removal=list(study_files("removal.csv", MEMORIZATION["removal"]).values()),
        embeddings=LAST_LAYER_EMBEDDINGS,
        code=package_code("memorization", "memorization_study"),
    output:
        **{name: report(path, caption=f"../report/memorization_{name}.rst", category="Memorization and influence",
                        subcategory="Tables")
           for name, path in MEMORIZATION_TABLES.items()},
    params:
        studies=STUDIES,
        removal=list(MEMORIZATION["removal"]),
        consistency=MEMORIZATION["consistency"],
        last_layer=MEMORIZATION["last_layer"],
        thetas=MEMORIZATION["thetas"],
        infl_thetas=MEMORIZATION["infl_thetas"],
    log:
        "results/logs/memorization_tables.log",
    benchmark:
        "results/benchmarks/memorization_tables.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/memorization_tables.py"


rule memorization_figures:
    """Histograms, the most memorized images per class (Figure 1), removal (Figure 2), influence pairs
    (Figure 4), consistency (Figure 7) and convergence in t."""
    input:
        summary=MEMORIZATION_TABLES["summary"],
        histograms=MEMORIZATION_TABLES["histograms"],
        removal=MEMORIZATION_TABLES["removal"],
        consistency=MEMORIZATION_TABLES["consistency"],
        convergence=MEMORIZATION_TABLES["convergence"],
        scores=list(study_files("scores.csv").values()),
        pairs=list(study_files("pairs.csv").values()),
        splits=[f"results/splits/{s['dataset']}/{s['split']}.npz" for s in STUDIES.values()],
        caches=sorted({f"results/data/{s['dataset']}.npz" for s in STUDIES.values()}),
        code=package_code("memorization", "memorization_study", "memorization_figures", "figures"),
    output:
        **{name: report(path, caption=f"../report/memorization_{name}.rst", category="Memorization and influence",
                        subcategory="Figures")
           for name, path in MEMORIZATION_FIGURES.items()},
        most_memorized=report(GRID_FIGURES, caption="../report/memorization_fig_most_memorized.rst",
                              category="Memorization and influence", subcategory="Figures"),
    params:
        studies=STUDIES,
        figures=MEMORIZATION["figures"],
    log:
        "results/logs/memorization_figures.log",
    benchmark:
        "results/benchmarks/memorization_figures.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/memorization_figures.py"


if STUDIES:
    REPORT_SECTIONS["memorization"] = {
        **MEMORIZATION_TABLES,
        **MEMORIZATION_FIGURES,
        "fig_most_memorized": GRID_FIGURES,
        "summaries": list(study_files("summary.json").values()),
    }
    BENCHMARKS += [f"results/benchmarks/memorization_shard/{name}/{a:06d}-{b:06d}.tsv" for name, s in STUDIES.items()
                   for a, b in shard_ranges(s["t"], s["shard_size"])]
    BENCHMARKS += [f"results/benchmarks/memorization_estimate/{name}.tsv" for name in STUDIES]
    BENCHMARKS += [f"results/benchmarks/memorization_removal/{name}.tsv" for name in MEMORIZATION["removal"]]
    BENCHMARKS += ["results/benchmarks/memorization_tables.tsv", "results/benchmarks/memorization_figures.tsv"]
