"""The memory-augmented classifier's report tables: Table 1 beside the published numbers, the long-tail /
rare-subgroup table, accuracy against k and the gates, from the per-memory files the stages write (a memory is a
split and a backbone trained on it, :func:`memgen.splits.memory_name`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from memgen.report import format_value
from memgen.runtime import write_csv
from memgen.scorecard import anchor, single_verdict
from memgen.splits import parse_memory


# Table 1 of the source document (CIFAR-10 test accuracy, %), in its order.
PUBLISHED_TABLE1 = {"ResNet-20": 91.83, "1-NN": 91.00, "10-NN": 91.55, "20-NN": 91.73, "30-NN": 91.65,
                    "10-NN Transformer": 91.38, "Oracle gate 1-NN/ResNet-20": 93.00}
TABLE1_TOLERANCE = 1.0     # percentage points: the document gives two decimals of a test accuracy on 10,000 images
# Published CIFAR-10-LT baselines (ResNet-32, cross entropy; Cao et al. 2019, LDAM paper), test accuracy %,
# by imbalance factor -- for orientation only, the backbone and budget here differ.
PUBLISHED_LT_BASELINE = {"lt100": 70.4, "lt50": 74.8, "lt10": 86.4}


ARCH_LABELS = {"resnet20": "ResNet-20", "resnet32": "ResNet-32", "resnet56": "ResNet-56",
               "resnet20_whitened": "ResNet-20 (whitened input)", "airbench94": "airbench94",
               "airbench_small": "airbench (small)", "mnist_cnn": "MNIST CNN", "lenet": "LeNet"}


def _display(method: str, arch: str) -> str:
    label = ARCH_LABELS.get(arch, arch)
    return "ResNet-20" if method == "network" and label == "ResNet-20" else method.replace("network", label)


def _accuracies(summary: pd.DataFrame | None, arch: str | None = None) -> dict:
    """Test accuracy (%) by Table 1 row name of one memory's summary; ``arch`` names its network's rows."""
    if summary is None or not len(summary):
        return {}
    arch = arch or (str(summary["arch"].iloc[0]) if "arch" in summary else "network")
    return {_display(method, arch): round(100 * float(acc), 2) for method, acc in zip(summary["method"],
                                                                                      summary["accuracy"])}


def table1(summary: pd.DataFrame | None, published: dict | None = None, others: dict | None = None) -> pd.DataFrame:
    """Table 1: ``model, published, measured`` (test accuracy %), the document's rows first (published
    numbers beside this run's), then the variants beyond the document with an empty ``published``.

    ``summary`` is one memory's summary table (``method``, ``accuracy`` in [0, 1], ``arch``); None gives the
    published column with empty ``measured`` (the split was not configured). ``others`` (column label ->
    summary): memories of other backbones on the same split, each a column ``measured, <label> as the network``
    whose network stands in the document's network rows."""
    published = PUBLISHED_TABLE1 if published is None else published
    measured = _accuracies(summary)
    other = {f"measured, {label} as the network": _accuracies(s, arch="resnet20") for label, s in (others or {}).items()}
    models = list(published) + [m for m in dict.fromkeys([*measured, *(m for o in other.values() for m in o)])
                                if m not in published]
    rows = [{"model": m, "published": published.get(m, np.nan), "measured": measured.get(m, np.nan),
             **{column: values.get(m, np.nan) for column, values in other.items()}} for m in models]
    return pd.DataFrame(rows, columns=["model", "published", "measured", *other])


LONGTAIL_COLUMNS = ["split", "method", "accuracy", "many_accuracy", "medium_accuracy", "few_accuracy",
                    "worst_class_accuracy", "worst_group_accuracy", "published_baseline", "note"]


def longtail_table(summaries: list[pd.DataFrame], published=None) -> pd.DataFrame:
    """Long-tail / rare-subpopulation table (accuracies in %): one row per split and method, plus a row per
    LT split with the published CIFAR-10-LT ResNet-32 CE baseline for orientation."""
    published = PUBLISHED_LT_BASELINE if published is None else published
    rows = []
    for s in summaries:
        for _, r in s.iterrows():
            row = {"split": r["split"], "method": _display(r["method"], str(r.get("arch", "network"))),
                   "published_baseline": np.nan, "note": ""}
            for col in LONGTAIL_COLUMNS[2:8]:
                row[col] = round(100 * float(r[col]), 2) if col in r and pd.notna(r[col]) else np.nan
            rows.append(row)
        split = str(s["split"].iloc[0]) if len(s) else None
        if split in published:
            rows.append({"split": split, "method": "ResNet-32 CE (published, CIFAR-10-LT)",
                         "published_baseline": published[split], "note": "Cao et al. 2019; orientation only"})
    return pd.DataFrame(rows, columns=LONGTAIL_COLUMNS)


def accuracy_vs_k(knn_tables: dict, summaries: dict) -> pd.DataFrame:
    """Test accuracy (%) of every k-NN variant by k, with the network's accuracy, per (dataset, split)."""
    rows = []
    for (dataset, split), tab in knn_tables.items():
        net = summaries[(dataset, split)]
        net_acc = float(net.loc[net.method == "network", "accuracy"].iloc[0])
        for _, r in tab[tab.part == "test"].iterrows():
            rows.append({"dataset": dataset, "split": split, "metric": r["metric"], "weighting": r["weighting"],
                         "k": int(r["k"]), "accuracy": round(100 * r["accuracy"], 2),
                         "network_accuracy": round(100 * net_acc, 2)})
    return pd.DataFrame(rows)


GATE_COLUMNS = ["dataset", "split", "pair", "gate", "accuracy (%)", "oracle (%)", "fit on validation"]


def gates_table(info_paths) -> pd.DataFrame:
    """The gates of every (dataset, split), from the gate stage's ``results/retrieval/{dataset}/{split}/gates.json``
    (:func:`memgen.retrieval.stages.gate_stage`): per pair (network, k-NN), one row per gate the stage fit, under
    its label, beside the oracle of its own pair, with the settings the validation hold-out chose. The gates are
    those the file names, so a registered gate is reported with no list to extend here."""
    rows = []
    for path in map(Path, info_paths):
        info = json.loads(path.read_text())
        dataset, split = path.parts[-3:-1]
        for k in info["gate_ks"]:
            pair = info[f"k{k}"]
            for key, gate in info["gates"].items():
                settings = ", ".join(f"{name} = {format_value(pair[f'{key}_{name}'])}"
                                     for name in gate["settings"])
                rows.append({"dataset": dataset, "split": split, "pair": f"network / {k}-NN",
                             "gate": gate["label"].format(k=k), "accuracy (%)": 100 * pair[f"{key}_accuracy"],
                             "oracle (%)": 100 * pair["oracle_accuracy"], "fit on validation": settings})
    return pd.DataFrame(rows, columns=GATE_COLUMNS)


def reproduction_notes(table: pd.DataFrame, tolerance: float = TABLE1_TOLERANCE) -> list[str]:
    """Sentences comparing measured with published rows of a Table 1 (``model, published, measured``)."""
    notes = []
    rows = table.dropna(subset=["published"])
    if rows["measured"].isna().all():
        return ["This run did not measure the document's Table 1 (its split is not configured)."]
    for _, r in rows.iterrows():
        if pd.isna(r["measured"]):
            notes.append(f"{r['model']}: not measured in this run.")
            continue
        gap = r["measured"] - r["published"]
        verdict = "reproduced" if abs(gap) <= tolerance else ("above" if gap > 0 else "not reproduced")
        notes.append(f"{r['model']}: {r['measured']:.2f}% vs {r['published']:.2f}% published "
                     f"({gap:+.2f} points, {verdict} within {tolerance:g} point).")
    pub, mea = rows.set_index("model")["published"], rows.set_index("model")["measured"]
    for a, b in (("ResNet-20", "1-NN"), ("Oracle gate 1-NN/ResNet-20", "ResNet-20")):
        if a in mea and b in mea and pd.notna(mea[a]) and pd.notna(mea[b]):
            same = (pub[a] > pub[b]) == (mea[a] > mea[b])
            notes.append(f"Ordering {a} {'>' if pub[a] > pub[b] else '<'} {b} of the document "
                         f"{'holds' if same else 'does not hold'} in this run.")
    return notes


# ------------------------------------------------------------------------------------------- table/figure jobs
def write_tables(pairs, summary_paths, knn_paths, outputs: dict) -> None:
    """The tables of the report section from every (dataset, memory)'s summary and k-NN table."""
    summaries = {pair: pd.read_csv(p) for pair, p in zip(pairs, summary_paths)}
    knns = {pair: pd.read_csv(p) for pair, p in zip(pairs, knn_paths)}

    def others(dataset):   # the extra backbones' memories on the dataset's full split, by their network's label
        return {ARCH_LABELS.get(str(s["arch"].iloc[0]), str(s["arch"].iloc[0])): s for (d, m), s in summaries.items()
                if d == dataset and parse_memory(m)[0] == "full" and parse_memory(m)[1] is not None}

    write_csv(outputs["table1"], table1(summaries.get(("cifar10", "full")), others=others("cifar10")))
    write_csv(outputs["mnist"], table1(summaries.get(("mnist", "full")), published={}, others=others("mnist")))
    tail = [s for (d, m), s in summaries.items() if d == "cifar10" and parse_memory(m)[0] != "full"]
    if ("cifar10", "full") in summaries:
        tail = [summaries[("cifar10", "full")]] + tail
    write_csv(outputs["longtail"], longtail_table(tail))
    write_csv(outputs["accuracy_vs_k"], accuracy_vs_k(knns, summaries))


def scorecard_rows(table1: pd.DataFrame) -> list[dict]:
    """One row per published model of the memory document's Table 1 (CIFAR-10 test accuracy, %)."""
    rows = []
    for r in table1.dropna(subset=["published"]).itertuples():
        diff = r.measured - r.published
        rows.append({"document": "Memory", "item": f"Table 1: {r.model}, CIFAR-10 test accuracy (%)",
                     "published": r.published, "measured": r.measured, "difference": diff,
                     "tolerance": TABLE1_TOLERANCE, "verdict": single_verdict(diff, TABLE1_TOLERANCE),
                     "decimals": 2, "anchor": anchor("Memory Table 1")})
    return rows
