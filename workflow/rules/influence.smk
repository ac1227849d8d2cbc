# Memorization and influence estimation (Feldman & Zhang 2020, Algorithm 1) for every model family: each study's
# t models are trained in shards (one job per range of model ids; a cluster runs them in parallel, an interrupted
# run resumes, raising t reuses the shards done), then estimated, and the removal experiment retrains without
# the memorized examples. Logic in memgen.influence.estimator (the estimator) and memgen.influence.stages (stages).
# Per study under results/influence/{study}/; tables under results/tables/influence_*.csv.


include: "influence_common.smk"


wildcard_constraints:
    study="|".join(STUDIES) if STUDIES else "(?!)",
    start=r"\d{6}",
    stop=r"\d{6}",


rule influence_shard:
    """Train models start..stop-1 of a study, each on its random subset; record masks, 0/1 correctness,
    true-class probability and margin on every training and test example."""
    input:
        unpack(study_inputs),
        code=study_code("influence_shard"),
    output:
        "results/influence/{study}/shards/models_{start}-{stop}.npz",
    params:
        study=lambda wc: model_settings(wc.study),
        models_per_call=lambda wc: STUDIES[wc.study]["models_per_call"],
        binarization=lambda wc: study_binarization(wc.study),
        ratio=INFLUENCE["ratio"],
        device=config["device"],
        precision=config["precision"],
        # Not an output: Snakemake deletes a failed job's outputs, and these files must outlive the failure.
        resume="results/checkpoints/influence_shard/{study}/{start}-{stop}",
    log:
        "results/logs/influence_shard/{study}/{start}-{stop}.log",
    benchmark:
        "results/benchmarks/influence_shard/{study}/{start}-{stop}.tsv"
    threads: INFLUENCE["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=6000,
        gpu=INFLUENCE_GPU,
        # How often the training state is saved: how the job runs, not what it makes, so not a param (no rerun).
        checkpoint_minutes=config["checkpoint_minutes"],
    script:
        "../../src/scripts/influence_shard.py"


rule influence_estimate:
    """mem, its standard error and the held-out accuracy per training example; influence in blocks, keeping the
    high-influence pairs and every test example's top influencers; estimates against t."""
    input:
        unpack(study_inputs),
        shards=lambda wc: study_shards(wc.study),
        code=study_code("influence_estimate"),
    output:
        scores_csv="results/influence/{study}/scores.csv",
        scores_npz="results/influence/{study}/scores.npz",
        pairs="results/influence/{study}/pairs.csv",
        influencers="results/influence/{study}/top_influencers.csv",
        convergence="results/influence/{study}/convergence.csv",
        summary="results/influence/{study}/summary.json",
    params:
        study=lambda wc: estimate_settings(wc.study),
        binarization=lambda wc: study_binarization(wc.study),
        influence=INFLUENCE["influence"],
        precision=INFLUENCE["precision"],
        device=config["device"],
        training_precision=config["precision"],
    log:
        "results/logs/influence_estimate/{study}.log",
    benchmark:
        "results/benchmarks/influence_estimate/{study}.tsv"
    threads: INFLUENCE["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=8000,
    script:
        "../../src/scripts/influence_estimate.py"


rule influence_removal:
    """Document Figure 2: retrain without the examples with mem >= theta, and without as many random ones."""
    input:
        unpack(study_inputs),
        scores="results/influence/{study}/scores.npz",
        code=study_code("influence_removal"),
    output:
        "results/influence/{study}/removal.csv",
    params:
        study=lambda wc: model_settings(wc.study),
        binarization=lambda wc: study_binarization(wc.study),
        removal=lambda wc: INFLUENCE["removal"][wc.study],
        device=config["device"],
        precision=config["precision"],
    log:
        "results/logs/influence_removal/{study}.log",
    benchmark:
        "results/benchmarks/influence_removal/{study}.tsv"
    threads: INFLUENCE["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=6000,
        gpu=INFLUENCE_GPU,
    script:
        "../../src/scripts/influence_removal.py"


rule influence_tables:
    """Counts and histograms of mem per study, convergence in t, consistency (D_mem, J_mem, J_infl), removal and
    the last-layer finding beside the document's numbers."""
    input:
        summaries=list(study_files("summary.json").values()),
        scores=list(study_files("scores.npz").values()),
        pairs=list(study_files("pairs.csv").values()),
        convergence=list(study_files("convergence.csv").values()),
        removal=list(study_files("removal.csv", INFLUENCE["removal"]).values()),
        embeddings=LAST_LAYER_EMBEDDINGS,
        code=script_code("influence_tables"),
    output:
        **{name: report(path, caption=f"../report/influence_{name}.rst", category="Memorization and influence",
                        subcategory="Tables")
           for name, path in INFLUENCE_TABLES.items()},
    params:
        studies={name: model_settings(name) for name in STUDIES},   # same_algorithm compares their settings
        removal=list(INFLUENCE["removal"]),
        consistency=INFLUENCE["consistency"],
        last_layer=INFLUENCE["last_layer"],
        thetas=INFLUENCE["thetas"],
        infl_thetas=INFLUENCE["infl_thetas"],
    log:
        "results/logs/influence_tables.log",
    benchmark:
        "results/benchmarks/influence_tables.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/influence_tables.py"


rule influence_claims:
    """The document's claims on this run's estimates, each with its 95% interval and verdict (memgen.influence.claims):
    removal per threshold, full networks against linear models, consistency against each side's noise floor,
    high-influence pairs beyond estimation noise."""
    input:
        scores=list(study_files("scores.npz").values()),
        removal=list(study_files("removal.csv", INFLUENCE["removal"]).values()),
        pairs=list(study_files("pairs.csv", FIGURE_STUDY).values()),
        code=script_code("influence_claims"),
    output:
        report(INFLUENCE_CLAIMS, caption="../report/claims_influence.rst", category="Summary"),
    params:
        studies={name: model_settings(name) for name in STUDIES},   # same_algorithm compares their settings
        removal=list(INFLUENCE["removal"]),
        consistency=INFLUENCE["consistency"],
        last_layer=INFLUENCE["last_layer"],
        figure_study=INFLUENCE["figures"]["influence"],
        infl_threshold=INFLUENCE["influence"]["threshold"],
        mem_threshold=INFLUENCE["influence"]["mem_threshold"],
    log:
        "results/logs/influence_claims.log",
    benchmark:
        "results/benchmarks/influence_claims.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/influence_claims.py"


rule influence_figures:
    """Histograms, the most memorized images per class (Figure 1), removal (Figure 2), influence pairs
    (Figure 4), consistency (Figure 7) and convergence in t."""
    input:
        summary=INFLUENCE_TABLES["summary"],
        histograms=INFLUENCE_TABLES["histograms"],
        removal=INFLUENCE_TABLES["removal"],
        consistency=INFLUENCE_TABLES["consistency"],
        convergence=INFLUENCE_TABLES["convergence"],
        scores=list(study_files("scores.csv").values()),
        pairs=list(study_files("pairs.csv").values()),
        splits=[f"results/splits/{s['dataset']}/{s['split']}.npz" for s in STUDIES.values()],
        caches=sorted({f"results/data/{s['dataset']}.npz" for s in STUDIES.values()}),
        code=script_code("influence_figures"),
    output:
        **{name: report(path, caption=f"../report/influence_{name}.rst", category="Memorization and influence",
                        subcategory="Figures")
           for name, path in INFLUENCE_FIGURES.items()},
        most_memorized=report(GRID_FIGURES, caption="../report/influence_fig_most_memorized.rst",
                              category="Memorization and influence", subcategory="Figures"),
    params:
        studies={name: {"dataset": s["dataset"]} for name, s in STUDIES.items()},
        figures=INFLUENCE["figures"],
    log:
        "results/logs/influence_figures.log",
    benchmark:
        "results/benchmarks/influence_figures.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/influence_figures.py"


if STUDIES:
    REPORT_SECTIONS["influence"] = {
        **INFLUENCE_TABLES,
        **INFLUENCE_FIGURES,
        "fig_most_memorized": GRID_FIGURES,
        "summaries": list(study_files("summary.json").values()),
        "claims": INFLUENCE_CLAIMS,
    }
    BENCHMARKS += [f"results/benchmarks/influence_shard/{name}/{a:06d}-{b:06d}.tsv" for name, s in STUDIES.items()
                   for a, b in shard_ranges(s["t"], s["shard_size"])]
    BENCHMARKS += [f"results/benchmarks/influence_estimate/{name}.tsv" for name in STUDIES]
    BENCHMARKS += [f"results/benchmarks/influence_removal/{name}.tsv" for name in INFLUENCE["removal"]]
    BENCHMARKS += ["results/benchmarks/influence_tables.tsv", "results/benchmarks/influence_figures.tsv",
                   "results/benchmarks/influence_claims.tsv"]
