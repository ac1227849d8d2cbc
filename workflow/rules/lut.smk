# The LUT study (Chatterjee 2018, "Learning and memorization"): networks of k-input lookup tables trained by
# memorization, beside standard methods, on binary and pairwise MNIST / CIFAR-10 tasks (memgen.lut*).
# Raw rows per job under results/lut/, the document's tables (published beside measured) under results/tables/.


include: "lut_common.smk"


rule lut_table1:
    """Table 1: one method (memorization or a standard one) on the binarized binary task of one dataset."""
    input:
        cache="results/data/{dataset}.npz",
        split="results/splits/{dataset}/binary.npz",
        code=script_code("lut_table1"),
    output:
        "results/lut/table1/{dataset}/{method}.csv",
    wildcard_constraints:
        method="|".join(TABLE1_METHODS),
    params:
        binarization=lambda wc: lut_binarization(wc.dataset),
        settings=lut_settings,
        subsample_seed=config["seed"],
        device=config["device"],
    log:
        "results/logs/lut_table1/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/lut_table1/{dataset}/{method}.tsv"
    threads: 2
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=6000,
    script:
        "../../src/scripts/lut_table1.py"


rule lut_table2:
    """Table 2: every LUT's own training accuracy, layer by layer, of the baseline network on the binary task."""
    input:
        cache="results/data/{dataset}.npz",
        split="results/splits/{dataset}/binary.npz",
        code=script_code("lut_table2"),
    output:
        "results/lut/table2/{dataset}.csv",
    params:
        binarization=lambda wc: lut_binarization(wc.dataset),
        k=LUT["table2"]["k"],
        width=LUT["width"],
        depth=LUT["depth"],
        seeds=LUT["seeds"],
        device=config["device"],
    log:
        "results/logs/lut_table2/{dataset}.log",
    benchmark:
        "results/benchmarks/lut_table2/{dataset}.tsv"
    threads: 2
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/lut_table2.py"


rule lut_sweep:
    """A k sweep of the baseline network on the binary task, real or random training labels, one binarization:
    Table 3 and the bits-per-channel extension."""
    input:
        cache="results/data/{dataset}.npz",
        split=lambda wc: f"results/splits/{wc.dataset}/{'binary' if wc.labels == 'real' else 'binary-rand'}.npz",
        code=script_code("lut_sweep"),
    output:
        "results/lut/sweep/{dataset}/{coding}/{labels}.csv",
    wildcard_constraints:
        coding=CODING_PATTERN,
        labels="real|random",
    params:
        ks=lambda wc: LUT_SWEEPS[(wc.dataset, wc.coding, wc.labels)],
        width=LUT["width"],
        depth=LUT["depth"],
        seeds=LUT["seeds"],
        base=lambda wc: lut_binarization(wc.dataset),
        device=config["device"],
    log:
        "results/logs/lut_sweep/{dataset}/{coding}/{labels}.log",
    benchmark:
        "results/benchmarks/lut_sweep/{dataset}/{coding}/{labels}.tsv"
    threads: 2
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=6000,
    script:
        "../../src/scripts/lut_sweep.py"


rule lut_pairwise:
    """One shard of the one-vs-one tasks of a dataset: a k sweep at the baseline depth (Figure 1 left, Table 4)
    or a depth sweep at figure1.depth_k (Figure 1 right)."""
    input:
        cache="results/data/{dataset}.npz",
        splits=lambda wc: [f"results/splits/{wc.dataset}/{p}.npz" for p in pair_shard(wc.dataset, wc.shard)],
        code=script_code("lut_pairwise"),
    output:
        "results/lut/pairwise/{dataset}/{sweep}/{shard}.csv",
    wildcard_constraints:
        sweep="k|depth",
        shard=r"\d+",
    params:
        pairs=lambda wc: pair_shard(wc.dataset, wc.shard),
        ks=lambda wc: LUT_PAIRWISE[(wc.dataset, wc.sweep)]["ks"],
        depths=lambda wc: LUT_PAIRWISE[(wc.dataset, wc.sweep)]["depths"],
        width=LUT["width"],
        seeds=LUT["seeds"],
        binarization=lambda wc: lut_binarization(wc.dataset),
        device=config["device"],
    log:
        "results/logs/lut_pairwise/{dataset}/{sweep}/{shard}.log",
    benchmark:
        "results/benchmarks/lut_pairwise/{dataset}/{sweep}/{shard}.tsv"
    threads: 2
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/lut_pairwise.py"


rule lut_depth:
    """Beyond the document: depth sweep (hidden layers) of the binary task at a few k, real labels."""
    input:
        cache="results/data/{dataset}.npz",
        split="results/splits/{dataset}/binary.npz",
        code=script_code("lut_depth"),
    output:
        "results/lut/depth/{dataset}.csv",
    params:
        ks=LUT["ext_depth"]["ks"],
        depths=LUT["ext_depth"]["depths"],
        width=LUT["width"],
        seeds=LUT["seeds"],
        binarization=lambda wc: lut_binarization(wc.dataset),
        device=config["device"],
    log:
        "results/logs/lut_depth/{dataset}.log",
    benchmark:
        "results/benchmarks/lut_depth/{dataset}.tsv"
    threads: 2
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
    script:
        "../../src/scripts/lut_depth.py"


rule lut_tables:
    """The document's tables and Figure 1's data, published beside measured, plus the extension tables."""
    input:
        table1=TABLE1_FILES,
        table2=f"results/lut/table2/{lut_dataset('table2')}.csv",
        table3=TABLE3_FILES,
        table4=pairwise_files(lut_dataset("table4"), "k"),
        figure1_k=pairwise_files(lut_dataset("figure1"), "k"),
        figure1_depth=pairwise_files(lut_dataset("figure1"), "depth") if (lut_dataset("figure1"), "depth") in LUT_PAIRWISE else [],
        ext_bits=EXT_BITS_FILES,
        ext_depth=f"results/lut/depth/{lut_dataset('ext_depth')}.csv",
        code=script_code("lut_tables"),
    output:
        **{name: report(path, caption=f"../report/lut_{name}.rst", category="LUT networks", subcategory="Tables")
           for name, path in LUT_TABLES.items()},
    params:
        depth=LUT["depth"],
        table4_k=LUT["table4"]["k"],
        figure1_ks=LUT["figure1"]["ks"],
        figure1_depth_k=LUT["figure1"]["depth_k"],
        figure1_depths=LUT["figure1"]["depths"],
        table3_ks=LUT["table3"]["ks"],
        ext_bits_ks=LUT["ext_bits"]["ks"],
        ext_codings=EXT_CODINGS,
    log:
        "results/logs/lut_tables.log",
    benchmark:
        "results/benchmarks/lut_tables.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=2000,
    script:
        "../../src/scripts/lut_tables.py"


rule lut_claims:
    """The document's claims on the LUT tables, each with its 95% interval and verdict (memgen.lut.claims)."""
    input:
        **{name: LUT_TABLES[name] for name in ("table1", "table2", "table3", "table4", "figure1")},
        code=script_code("lut_claims"),
    output:
        report(LUT_CLAIMS, caption="../report/claims_lut.rst", category="Summary"),
    params:
        depth=LUT["depth"],
        width=LUT["width"],
        n_seeds=len(LUT["seeds"]),
    log:
        "results/logs/lut_claims.log",
    benchmark:
        "results/benchmarks/lut_claims.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=2000,
    script:
        "../../src/scripts/lut_claims.py"


rule lut_figures:
    """Figures of the LUT study: Table 1 and 3 against the document, Figure 1, Table 4 heatmaps, extensions."""
    input:
        **LUT_TABLES,
        code=script_code("lut_figures"),
    output:
        **{name: report(path, caption=f"../report/lut_{name}_figure.rst", category="LUT networks",
                        subcategory="Figures")
           for name, path in LUT_FIGURES.items()},
    log:
        "results/logs/lut_figures.log",
    benchmark:
        "results/benchmarks/lut_figures.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=2000,
    script:
        "../../src/scripts/lut_figures.py"


rule bench:
    """Speed benchmarks (not part of all): snakemake bench."""
    input:
        "results/benchmarks/bench_lut.json",
        "results/benchmarks/bench_precision.json",


rule bench_lut:
    """Speed and memory benchmark of the LUT networks on Binary-MNIST (memgen.bench.lut); not part of all."""
    input:
        cache="results/data/mnist.npz",
        code=script_code("bench_lut"),
    output:
        "results/benchmarks/bench_lut.json",
    params:
        quick=LUT["bench"]["quick"],
    log:
        "results/logs/bench_lut.log",
    benchmark:
        "results/benchmarks/bench_lut.tsv"
    threads: LUT["bench"]["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=6000,
    script:
        "../../src/scripts/bench_lut.py"


REPORT_SECTIONS["lut"] = {
    **LUT_TABLES,
    **{f"fig_{name}": path for name, path in LUT_FIGURES.items()},
    "runtimes": "results/tables/runtimes.csv",
    "claims": LUT_CLAIMS,
}
BENCHMARKS += [f.replace("results/lut/", "results/benchmarks/lut_").replace(".csv", ".tsv")
               for f in [*TABLE1_FILES, f"results/lut/table2/{lut_dataset('table2')}.csv", *TABLE3_FILES,
                         *EXT_BITS_FILES, f"results/lut/depth/{lut_dataset('ext_depth')}.csv",
                         *[p for key in LUT_PAIRWISE for p in pairwise_files(*key)]]]
BENCHMARKS += ["results/benchmarks/lut_tables.tsv", "results/benchmarks/lut_figures.tsv",
               "results/benchmarks/lut_claims.tsv"]
BENCHMARKS[:] = list(dict.fromkeys(BENCHMARKS))
