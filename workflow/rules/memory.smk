# The memory-augmented classifier: a backbone (ResNet-20 on CIFAR-10, a small CNN on MNIST) whose training
# embeddings form an explicit memory; k-NN votes, a Transformer over the neighbours and gates between the
# network and the memory (memgen.memory, staged by memgen.memory_study). Per (dataset, split) under
# results/memory/{dataset}/{split}/; the document's Table 1 and the long-tail tables under results/tables/.


include: "memory_common.smk"


rule train_backbone:
    """Train the dataset's backbone on the split's training part (validation accuracy on its hold-out)."""
    input:
        cache="results/data/{dataset}.npz",
        split="results/splits/{dataset}/{split}.npz",
        code=package_code(*MEMORY_CODE),
    output:
        checkpoint="results/memory/{dataset}/{split}/backbone.pt",
        metrics="results/memory/{dataset}/{split}/backbone.json",
    params:
        settings=lambda wc: backbone_settings(wc.dataset),
        seed=config["seed"],
        device=config["device"],
    log:
        "results/logs/train_backbone/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/train_backbone/{dataset}/{split}.tsv"
    threads: MEMORY["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=6000,
        gpu=MEMORY_GPU,
    script:
        "../../src/scripts/train_backbone.py"


rule embed:
    """Embeddings (after global average pooling) and logits of the split's train, validation and test images."""
    input:
        cache="results/data/{dataset}.npz",
        split="results/splits/{dataset}/{split}.npz",
        checkpoint="results/memory/{dataset}/{split}/backbone.pt",
        code=package_code(*MEMORY_CODE),
    output:
        "results/memory/{dataset}/{split}/embeddings.npz",
    params:
        device=config["device"],
    log:
        "results/logs/embed/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/embed/{dataset}/{split}.tsv"
    threads: MEMORY["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=6000,
        gpu=MEMORY_GPU,
    script:
        "../../src/scripts/embed.py"


rule knn:
    """Exact neighbours (l2 and cosine) of train (leave-one-out), validation and test in the memory; k-NN
    accuracy (majority and distance-weighted) for every k."""
    input:
        embeddings="results/memory/{dataset}/{split}/embeddings.npz",
        code=package_code(*MEMORY_CODE),
    output:
        neighbors="results/memory/{dataset}/{split}/neighbors.npz",
        table="results/memory/{dataset}/{split}/knn.csv",
    params:
        ks=MEMORY["k"],
        device=config["device"],
    log:
        "results/logs/knn/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/knn/{dataset}/{split}.tsv"
    threads: MEMORY["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
        gpu=MEMORY_GPU,
    script:
        "../../src/scripts/knn.py"


rule neighbor_transformer:
    """A Transformer over the query and its k neighbours (one variant), trained on the memory with
    leave-one-out neighbours."""
    input:
        embeddings="results/memory/{dataset}/{split}/embeddings.npz",
        neighbors="results/memory/{dataset}/{split}/neighbors.npz",
        code=package_code(*MEMORY_CODE),
    output:
        logits="results/memory/{dataset}/{split}/transformer_{variant}.npz",
        metrics="results/memory/{dataset}/{split}/transformer_{variant}.json",
    wildcard_constraints:
        variant="ce|query_drop|aux",
    params:
        settings=TRANSFORMER,
        seed=config["seed"],
        device=config["device"],
    log:
        "results/logs/neighbor_transformer/{dataset}/{split}/{variant}.log",
    benchmark:
        "results/benchmarks/neighbor_transformer/{dataset}/{split}/{variant}.tsv"
    threads: MEMORY["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
        gpu=MEMORY_GPU,
    script:
        "../../src/scripts/neighbor_transformer.py"


rule gate:
    """Oracle gate (network vs 1-NN), a learned gate and kNN-LM interpolation, both fit on validation only."""
    input:
        embeddings="results/memory/{dataset}/{split}/embeddings.npz",
        neighbors="results/memory/{dataset}/{split}/neighbors.npz",
        split="results/splits/{dataset}/{split}.npz",
        code=package_code(*MEMORY_CODE),
    output:
        predictions="results/memory/{dataset}/{split}/gates.npz",
        info="results/memory/{dataset}/{split}/gates.json",
    params:
        gate_k=MEMORY["gate_k"],
    log:
        "results/logs/gate/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/gate/{dataset}/{split}.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=2000,
    script:
        "../../src/scripts/gate.py"


rule evaluate_memory:
    """Every method's test predictions: overall, many/medium/few-shot, worst-class and worst-group accuracy."""
    input:
        unpack(lambda wc: {f"transformer_{v}": p for v, p in transformer_files(wc).items()}),
        embeddings="results/memory/{dataset}/{split}/embeddings.npz",
        neighbors="results/memory/{dataset}/{split}/neighbors.npz",
        gates="results/memory/{dataset}/{split}/gates.npz",
        backbone="results/memory/{dataset}/{split}/backbone.json",
        split="results/splits/{dataset}/{split}.npz",
        code=package_code(*MEMORY_CODE),
    output:
        predictions="results/memory/{dataset}/{split}/predictions.npz",
        summary="results/memory/{dataset}/{split}/summary.csv",
        per_class="results/memory/{dataset}/{split}/per_class.csv",
        per_group="results/memory/{dataset}/{split}/per_group.csv",
    params:
        ks=MEMORY["k"],
        transformer_k=TRANSFORMER["k"],
        gate_k=MEMORY["gate_k"],
    log:
        "results/logs/evaluate_memory/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/evaluate_memory/{dataset}/{split}.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=2000,
    script:
        "../../src/scripts/evaluate_memory.py"


rule memory_tables:
    """Table 1 of the document (published beside measured) for CIFAR-10 and MNIST, the long-tail table and
    accuracy vs k."""
    input:
        summaries=memory_files("summary.csv"),
        knn=memory_files("knn.csv"),
        code=package_code(*MEMORY_CODE),
    output:
        **{name: report(path, caption=f"../report/memory_{name}.rst", category="Memory-augmented classifier",
                        subcategory="Tables")
           for name, path in MEMORY_TABLES.items()},
    params:
        pairs=MEMORY_PAIRS,
    log:
        "results/logs/memory_tables.log",
    benchmark:
        "results/benchmarks/memory_tables.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=2000,
    script:
        "../../src/scripts/memory_tables.py"


rule memory_figures:
    """Accuracy vs k, per-class accuracy on the long-tail splits, and test images where memory fixes the
    network (and the reverse) with their nearest stored neighbours."""
    input:
        accuracy_vs_k=MEMORY_TABLES["accuracy_vs_k"],
        per_class=memory_files("per_class.csv"),
        fixes_cache=f"results/data/{FIXES_PAIR[0]}.npz",
        fixes_predictions=memory_files("predictions.npz", [FIXES_PAIR])[0],
        code=package_code(*MEMORY_CODE),
    output:
        **{name: report(path, caption=f"../report/memory_{name}.rst", category="Memory-augmented classifier",
                        subcategory="Figures")
           for name, path in MEMORY_FIGURES.items()},
    params:
        methods=["network", f"{MEMORY['gate_k']}-NN", "Learned gate network/k-NN"],
    log:
        "results/logs/memory_figures.log",
    benchmark:
        "results/benchmarks/memory_figures.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=2000,
    script:
        "../../src/scripts/memory_figures.py"


REPORT_SECTIONS["memory"] = {
    **MEMORY_TABLES,
    **MEMORY_FIGURES,
    "summaries": memory_files("summary.csv"),
    "gates": memory_files("gates.json"),
    "backbones": memory_files("backbone.json"),
}
BENCHMARKS += [f"results/benchmarks/{rule}/{d}/{s}.tsv" for rule in ("train_backbone", "embed", "knn", "gate",
                                                                     "evaluate_memory") for d, s in MEMORY_PAIRS]
BENCHMARKS += [f"results/benchmarks/neighbor_transformer/{d}/{s}/{v}.tsv" for d, s in TRANSFORMER_PAIRS
               for v in TRANSFORMER["variants"]]
BENCHMARKS += ["results/benchmarks/memory_tables.tsv", "results/benchmarks/memory_figures.tsv"]
BENCHMARKS[:] = list(dict.fromkeys(BENCHMARKS))
