# The memory-augmented classifier: a backbone (ResNet-20 on CIFAR-10, a small CNN on MNIST) whose training
# embeddings form an explicit memory; k-NN votes, a Transformer over the neighbours and gates between the
# network and the memory (memgen.retrieval.memory, staged by memgen.retrieval.stages). Per memory (a split and a
# backbone trained on it) under results/retrieval/{dataset}/{memory}/; the document's Table 1 and the long-tail
# tables under results/tables/.


include: "retrieval_common.smk"


rule train_backbone:
    """Train the memory's backbone on its split's training part (validation accuracy on its hold-out), recording
    the learning speed of every training example (memgen.learning_speed)."""
    input:
        cache="results/data/{dataset}.npz",
        split=memory_split_file,
        code=script_code("train_backbone"),
    output:
        checkpoint="results/retrieval/{dataset}/{memory}/backbone.pt",
        metrics="results/retrieval/{dataset}/{memory}/backbone.json",
        proxies="results/retrieval/{dataset}/{memory}/proxies.csv",
        proxy_curves="results/retrieval/{dataset}/{memory}/proxies.npz",
    params:
        settings=lambda wc: backbone_settings(wc.dataset, wc.memory),
        seed=config["seed"],
        device=config["device"],
        precision=config["precision"],
        # Not an output: Snakemake deletes a failed job's outputs, and this file must outlive the failure.
        resume="results/checkpoints/train_backbone/{dataset}/{memory}.pt",
    log:
        "results/logs/train_backbone/{dataset}/{memory}.log",
    benchmark:
        "results/benchmarks/train_backbone/{dataset}/{memory}.tsv"
    threads: RETRIEVAL["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=6000,
        gpu=RETRIEVAL_GPU,
        # How often the training state is saved: how the job runs, not what it makes, so not a param (no rerun).
        checkpoint_minutes=config["checkpoint_minutes"],
    script:
        "../../src/scripts/train_backbone.py"


rule embed:
    """Embeddings (after global average pooling) and logits of the split's train, validation and test images."""
    input:
        cache="results/data/{dataset}.npz",
        split=memory_split_file,
        checkpoint="results/retrieval/{dataset}/{memory}/backbone.pt",
        code=script_code("embed"),
    output:
        "results/retrieval/{dataset}/{memory}/embeddings.npz",
    params:
        device=config["device"],
        precision=config["precision"],
        flip_average=lambda wc: backbone_entry(wc.dataset, wc.memory)["flip_average"],
        translate_average=lambda wc: backbone_entry(wc.dataset, wc.memory)["translate_average"],
    log:
        "results/logs/embed/{dataset}/{memory}.log",
    benchmark:
        "results/benchmarks/embed/{dataset}/{memory}.tsv"
    threads: RETRIEVAL["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=6000,
        gpu=RETRIEVAL_GPU,
    script:
        "../../src/scripts/embed.py"


rule knn:
    """Exact neighbours (l2 and cosine) of train (leave-one-out), validation and test in the memory; k-NN
    accuracy (majority and distance-weighted) for every k."""
    input:
        embeddings="results/retrieval/{dataset}/{memory}/embeddings.npz",
        code=script_code("knn"),
    output:
        neighbors="results/retrieval/{dataset}/{memory}/neighbors.npz",
        table="results/retrieval/{dataset}/{memory}/knn.csv",
    params:
        ks=RETRIEVAL["k"],
        device=config["device"],
    log:
        "results/logs/knn/{dataset}/{memory}.log",
    benchmark:
        "results/benchmarks/knn/{dataset}/{memory}.tsv"
    threads: RETRIEVAL["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
        gpu=RETRIEVAL_GPU,
    script:
        "../../src/scripts/knn.py"


rule neighbor_transformer:
    """A Transformer over the query and its k neighbours (one variant), trained on the memory with
    leave-one-out neighbours."""
    input:
        embeddings="results/retrieval/{dataset}/{memory}/embeddings.npz",
        neighbors="results/retrieval/{dataset}/{memory}/neighbors.npz",
        code=script_code("neighbor_transformer"),
    output:
        logits="results/retrieval/{dataset}/{memory}/transformer_{variant}.npz",
        metrics="results/retrieval/{dataset}/{memory}/transformer_{variant}.json",
    wildcard_constraints:
        variant="ce|query_drop|aux",
    params:
        settings=transformer_settings(),
        seed=config["seed"],
        device=config["device"],
    log:
        "results/logs/neighbor_transformer/{dataset}/{memory}/{variant}.log",
    benchmark:
        "results/benchmarks/neighbor_transformer/{dataset}/{memory}/{variant}.tsv"
    threads: RETRIEVAL["threads"]
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=4000,
        gpu=RETRIEVAL_GPU,
    script:
        "../../src/scripts/neighbor_transformer.py"


rule gate:
    """Per k of retrieval.gate_ks: the oracle of (network, k-NN), a learned gate and kNN-LM interpolation between
    the same two, both fit on validation only."""
    input:
        embeddings="results/retrieval/{dataset}/{memory}/embeddings.npz",
        neighbors="results/retrieval/{dataset}/{memory}/neighbors.npz",
        split=memory_split_file,
        code=script_code("gate"),
    output:
        predictions="results/retrieval/{dataset}/{memory}/gates.npz",
        info="results/retrieval/{dataset}/{memory}/gates.json",
    params:
        gate_ks=RETRIEVAL["gate_ks"],
    log:
        "results/logs/gate/{dataset}/{memory}.log",
    benchmark:
        "results/benchmarks/gate/{dataset}/{memory}.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=2000,
    script:
        "../../src/scripts/gate.py"


rule evaluate_retrieval:
    """Every method's test predictions: overall, many/medium/few-shot, worst-class and worst-group accuracy."""
    input:
        unpack(lambda wc: {f"transformer_{v}": p for v, p in transformer_files(wc).items()}),
        embeddings="results/retrieval/{dataset}/{memory}/embeddings.npz",
        neighbors="results/retrieval/{dataset}/{memory}/neighbors.npz",
        gates="results/retrieval/{dataset}/{memory}/gates.npz",
        backbone="results/retrieval/{dataset}/{memory}/backbone.json",
        split=memory_split_file,
        code=script_code("evaluate_retrieval"),
    output:
        predictions="results/retrieval/{dataset}/{memory}/predictions.npz",
        summary="results/retrieval/{dataset}/{memory}/summary.csv",
        per_class="results/retrieval/{dataset}/{memory}/per_class.csv",
        per_group="results/retrieval/{dataset}/{memory}/per_group.csv",
    params:
        ks=RETRIEVAL["k"],
        transformer_k=TRANSFORMER["k"],
        gate_ks=RETRIEVAL["gate_ks"],
    log:
        "results/logs/evaluate_retrieval/{dataset}/{memory}.log",
    benchmark:
        "results/benchmarks/evaluate_retrieval/{dataset}/{memory}.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=2000,
    script:
        "../../src/scripts/evaluate_retrieval.py"


rule retrieval_tables:
    """Table 1 of the document (published beside measured) for CIFAR-10 and MNIST, the long-tail table and
    accuracy vs k."""
    input:
        summaries=retrieval_files("summary.csv"),
        knn=retrieval_files("knn.csv"),
        code=script_code("retrieval_tables"),
    output:
        **{name: report(path, caption=f"../report/retrieval_{name}.rst", category="Memory-augmented classifier",
                        subcategory="Tables")
           for name, path in RETRIEVAL_TABLES.items()},
    params:
        pairs=RETRIEVAL_PAIRS,
    log:
        "results/logs/retrieval_tables.log",
    benchmark:
        "results/benchmarks/retrieval_tables.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=2000,
    script:
        "../../src/scripts/retrieval_tables.py"


rule retrieval_claims:
    """The memory document's claims (Table 1's effects, the long tail, the rare subgroups), each a paired
    difference on the test examples with its 95% interval and verdict (memgen.retrieval.claims)."""
    input:
        predictions=retrieval_files("predictions.npz", CLAIM_PAIRS),
        splits=[f"results/splits/{d}/{parse_memory(m)[0]}.npz" for d, m in CLAIM_PAIRS],
        backbones=retrieval_files("backbone.json", CLAIM_PAIRS),
        code=script_code("retrieval_claims"),
    output:
        report(RETRIEVAL_CLAIMS, caption="../report/claims_retrieval.rst", category="Summary"),
    params:
        pairs=CLAIM_PAIRS,
        ks=RETRIEVAL["k"],
        gate_ks=RETRIEVAL["gate_ks"],
        transformer_k=TRANSFORMER["k"],
        rare_classes=config["splits"]["rare"]["rare_classes"],
        data={d: Path(DATASETS[d]["path"]).name for d, _ in CLAIM_PAIRS},
    log:
        "results/logs/retrieval_claims.log",
    benchmark:
        "results/benchmarks/retrieval_claims.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=2000,
    script:
        "../../src/scripts/retrieval_claims.py"


rule retrieval_figures:
    """Accuracy vs k, per-class accuracy on the long-tail splits, and test images where memory fixes the
    network (and the reverse) with their nearest stored neighbours."""
    input:
        accuracy_vs_k=RETRIEVAL_TABLES["accuracy_vs_k"],
        per_class=retrieval_files("per_class.csv"),
        fixes_cache=f"results/data/{FIXES_PAIR[0]}.npz",
        fixes_predictions=retrieval_files("predictions.npz", [FIXES_PAIR])[0],
        code=script_code("retrieval_figures"),
    output:
        **{name: report(path, caption=f"../report/retrieval_{name}.rst", category="Memory-augmented classifier",
                        subcategory="Figures")
           for name, path in RETRIEVAL_FIGURES.items()},
    params:
        methods=["network", f"{RETRIEVAL['gate_ks'][0]}-NN", f"Learned gate network/{RETRIEVAL['gate_ks'][0]}-NN"],
    log:
        "results/logs/retrieval_figures.log",
    benchmark:
        "results/benchmarks/retrieval_figures.tsv"
    threads: 1
    conda:
        "../../envs/memgen.yaml"
    resources:
        mem_mb=2000,
    script:
        "../../src/scripts/retrieval_figures.py"


REPORT_SECTIONS["retrieval"] = {
    **RETRIEVAL_TABLES,
    **RETRIEVAL_FIGURES,
    "summaries": retrieval_files("summary.csv"),
    "gates": retrieval_files("gates.json"),
    "backbones": retrieval_files("backbone.json"),
    "claims": RETRIEVAL_CLAIMS,
}
BENCHMARKS += [f"results/benchmarks/{rule}/{d}/{s}.tsv" for rule in ("train_backbone", "embed", "knn", "gate",
                                                                     "evaluate_retrieval") for d, s in RETRIEVAL_PAIRS]
BENCHMARKS += [f"results/benchmarks/neighbor_transformer/{d}/{s}/{v}.tsv" for d, s in TRANSFORMER_PAIRS
               for v in TRANSFORMER["variants"]]
BENCHMARKS += ["results/benchmarks/retrieval_tables.tsv", "results/benchmarks/retrieval_figures.tsv",
               "results/benchmarks/retrieval_claims.tsv"]
BENCHMARKS[:] = list(dict.fromkeys(BENCHMARKS))
