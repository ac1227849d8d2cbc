"""Table builders of the retrieval study (published beside measured) and the stages on a tiny synthetic memory."""

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from memgen import report
from memgen.retrieval import figures, stages, tables
from memgen.retrieval.gates import GATES, register_gate
from memgen.runtime import save_npz

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def summary(split="full", arch="resnet20", **acc):
    rows = [{"method": m, "accuracy": a, "many_accuracy": a, "medium_accuracy": np.nan, "few_accuracy": np.nan,
             "worst_class_accuracy": a / 2, "worst_group_accuracy": a / 2} for m, a in acc.items()]
    return pd.DataFrame(rows).assign(split=split, arch=arch, dataset="cifar10")


def test_table1_puts_published_beside_measured_in_the_documents_order():
    s = summary(network=0.9, **{"1-NN": 0.8, "10-NN": 0.85, "Oracle gate 1-NN/network": 0.95,
                                "Learned gate network/10-NN": 0.91})
    t = tables.table1(s)
    assert list(t.columns) == ["model", "published", "measured"]
    assert list(t.model[:7]) == list(tables.PUBLISHED_TABLE1)
    row = t.set_index("model")
    assert row.loc["ResNet-20", "published"] == 91.83 and row.loc["ResNet-20", "measured"] == 90.0
    assert row.loc["Oracle gate 1-NN/ResNet-20", "measured"] == 95.0
    assert np.isnan(row.loc["20-NN", "measured"])          # not measured: empty, not dropped
    extra = row.loc["Learned gate ResNet-20/10-NN"]
    assert np.isnan(extra["published"]) and extra["measured"] == 91.0


def test_table1_without_a_run_keeps_the_published_column():
    t = tables.table1(None)
    assert t.published.tolist() == list(tables.PUBLISHED_TABLE1.values()) and t.measured.isna().all()


def test_table1_for_another_backbone_names_it():
    t = tables.table1(summary(arch="mnist_cnn", network=0.5, **{"1-NN": 0.6}), published={})
    assert t.model.tolist() == ["MNIST CNN", "1-NN"] and t.published.isna().all()


def test_table1_puts_another_backbone_in_its_own_column_on_the_documents_rows():
    own = summary(network=0.85, **{"1-NN": 0.80, "Oracle gate 1-NN/network": 0.88})
    fast = summary(arch="airbench94", network=0.92, **{"1-NN": 0.90, "Oracle gate 1-NN/network": 0.94})
    t = tables.table1(own, others={"airbench94": fast}).set_index("model")
    column = "measured, airbench94 as the network"
    assert list(t.columns) == ["published", "measured", column]
    assert (t.loc["ResNet-20", "measured"], t.loc["ResNet-20", column]) == (85.0, 92.0)
    assert (t.loc["Oracle gate 1-NN/ResNet-20", "measured"], t.loc["Oracle gate 1-NN/ResNet-20", column]) == (88.0, 94.0)
    assert np.isnan(t.loc["10-NN", column])


def test_the_tables_keep_each_memory_apart(tmp_path):
    """An extra backbone's memory on full fills its Table 1 column and is not taken for a long-tailed split."""
    paths = {}
    for memory, frame in {"full": summary(network=0.85, **{"1-NN": 0.8}),
                          "full@fast": summary(arch="airbench94", network=0.92, **{"1-NN": 0.9}),
                          "lt10": summary("lt10", network=0.7, **{"1-NN": 0.6})}.items():
        paths[memory] = tmp_path / f"{memory}.csv"
        frame.assign(memory=memory).to_csv(paths[memory], index=False)
        pd.DataFrame({"part": ["test"], "metric": ["l2"], "weighting": ["majority"], "k": [1],
                      "accuracy": [0.8]}).to_csv(tmp_path / f"{memory}_knn.csv", index=False)
    outputs = {name: tmp_path / f"out_{name}.csv" for name in ("table1", "mnist", "longtail", "accuracy_vs_k")}
    memories = list(paths)
    tables.write_tables([("cifar10", m) for m in memories], [paths[m] for m in memories],
                        [tmp_path / f"{m}_knn.csv" for m in memories], outputs)
    t1 = pd.read_csv(outputs["table1"]).set_index("model")
    assert (t1.loc["ResNet-20", "measured"], t1.loc["ResNet-20", "measured, airbench94 as the network"]) == (85.0, 92.0)
    tail = pd.read_csv(outputs["longtail"])
    assert set(tail.method) == {"ResNet-20", "1-NN", "ResNet-32 CE (published, CIFAR-10-LT)"}
    assert set(tail.split) == {"full", "lt10"} and len(tail) == 5
    assert set(pd.read_csv(outputs["accuracy_vs_k"]).split) == set(memories)


def test_longtail_table_adds_the_published_baseline_only_to_lt_splits():
    t = tables.longtail_table([summary("full", network=0.8), summary("lt100", network=0.5), summary("rare", network=0.7)])
    base = t[t.published_baseline.notna()]
    assert base.split.tolist() == ["lt100"] and base.published_baseline.iloc[0] == 70.4
    assert t.loc[(t.split == "lt100") & (t.method == "ResNet-20"), "accuracy"].iloc[0] == 50.0
    assert list(t.columns) == tables.LONGTAIL_COLUMNS


def test_reproduction_notes_are_computed_from_the_numbers():
    t = tables.table1(summary(network=0.9183, **{"1-NN": 0.80}))
    notes = " ".join(tables.reproduction_notes(t))
    assert "ResNet-20: 91.83% vs 91.83% published (+0.00 points, reproduced" in notes
    assert "1-NN: 80.00% vs 91.00% published (-11.00 points, not reproduced" in notes
    assert "10-NN: not measured" in notes
    assert "Ordering ResNet-20 > 1-NN of the document holds" in notes


@pytest.fixture
def memory(tmp_path):
    """Embeddings of a separable 3-class memory (90 stored, 30 validation, 30 test examples), its neighbours and
    split, with a network that is wrong 30% of the time."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 5

    def part(n, offset):
        y = np.arange(n) % 3
        return (centers[y] + rng.normal(size=(n, 8))).astype(np.float32), y, np.arange(n) + offset

    arrays = {"n_classes": np.int64(3), "class_names": np.array(["a", "b", "c"])}
    for name, (n, off) in {"train": (90, 0), "val": (30, 1000), "test": (30, 0)}.items():
        emb, y, ids = part(n, off)
        logits = np.eye(3)[(y + (rng.random(n) < 0.3)) % 3] * 3     # a network that is wrong 30% of the time
        arrays.update({f"{name}_emb": emb, f"{name}_logits": logits.astype(np.float32), f"{name}_y": y,
                       f"{name}_ids": ids})
    arrays["test_group"] = arrays["test_y"]
    save_npz(tmp_path / "emb.npz", **arrays)
    (tmp_path / "backbone.json").write_text(json.dumps({"arch": "resnet20"}))
    table = stages.knn_stage(tmp_path / "emb.npz", tmp_path / "nb.npz", tmp_path / "knn.csv", ks=[1, 5], device="cpu")
    split = tmp_path / "split.npz"
    save_npz(split, train_idx=arrays["train_ids"], train_y=arrays["train_y"], val_idx=arrays["val_ids"],
             val_y=arrays["val_y"], test_idx=arrays["test_ids"], test_y=arrays["test_y"],
             train_group=arrays["train_y"], test_group=arrays["test_y"], n_classes=np.int64(3),
             class_names=np.array(["a", "b", "c"]))
    return {"dir": tmp_path, "arrays": arrays, "knn_table": table, "split": split}


def evaluate(memory, gate_ks=(5,)):
    d = memory["dir"]
    info = stages.gate_stage(d / "emb.npz", d / "nb.npz", memory["split"], d / "g.npz", d / "g.json",
                             gate_ks=list(gate_ks))
    summary = stages.evaluate_stage(d / "emb.npz", d / "nb.npz", d / "g.npz", {}, memory["split"], d / "p.npz",
                                    d / "s.csv", d / "pc.csv", d / "pg.csv", ks=[1, 5], transformer_k=5,
                                    gate_ks=list(gate_ks), dataset="toy", memory="full")
    return info, summary


def test_knn_gate_and_evaluate_stages_on_a_separable_memory(memory):
    tmp_path, arrays, table = memory["dir"], memory["arrays"], memory["knn_table"]
    assert (table[table.part == "test"].accuracy > 0.9).all()
    nb = stages.load_npz(tmp_path / "nb.npz")
    assert not (nb["l2_train_ids"] == np.arange(90)[:, None]).any()           # leave-one-out
    info, s = evaluate(memory, gate_ks=(5, 1))
    for k in (5, 1):
        pair = info[f"k{k}"]
        assert pair["oracle_accuracy"] >= pair["knn_lm_accuracy"] - 1e-9 and pair["oracle_accuracy"] > 0.9
        assert {"learned_gate_constant", "learned_gate_n_fit", "knn_lm_lambda", "knn_lm_temperature"} <= set(pair)
    assert set(stages.load_npz(tmp_path / "g.npz")) == {f"{key}_k{k}" for k in (5, 1) for key in
                                                        ("knn", "oracle", "learned_gate", "knn_lm",
                                                         "learned_gate_use_knn")}
    acc = s.set_index("method").accuracy
    assert acc["1-NN"] > acc["network"]
    for k in (5, 1):
        assert {f"Learned gate network/{k}-NN", f"kNN-LM interpolation network/{k}-NN"} <= set(acc.index)
        assert acc[f"Oracle gate {k}-NN/network"] == pytest.approx(info[f"k{k}"]["oracle_accuracy"])
    assert tables.table1(s).set_index("model").loc["ResNet-20", "measured"] == pytest.approx(100 * acc["network"],
                                                                                          abs=0.01)


@pytest.fixture
def gate_registry():
    """The gate registry, restored after the test registered its own gate."""
    saved = dict(GATES)
    yield GATES
    GATES.clear()
    GATES.update(saved)


def test_a_registered_gate_is_fit_saved_evaluated_and_reported(memory, gate_registry, tmp_path, monkeypatch):
    """The gate recipe of CONTRIBUTING.md: a gate registered here, and nothing else, reaches the stage's files, the
    summary, the report's tables and the report section's gate table as the notebook renders it."""
    @register_gate("vote", "Always the {k}-NN vote")
    class Vote:
        def fit(self, inputs, y, *, example_ids, backbone_train_ids):
            self.n = len(y)
            return self

        def predict(self, inputs):
            return inputs.knn_pred

        def summary(self):
            return {"n_fit": self.n}

        def arrays(self, inputs):
            return {}

    info, s = evaluate(memory)
    assert info["k5"]["vote_n_fit"] == 30 and info["gates"]["vote"] == {"label": "Always the {k}-NN vote",
                                                                         "settings": ["n_fit"]}
    acc = s.set_index("method").accuracy
    assert acc["Always the 5-NN vote"] == pytest.approx(acc["5-NN"]) == pytest.approx(info["k5"]["vote_accuracy"])

    d = memory["dir"]
    outputs = {name: d / f"{name}.csv" for name in ("table1", "mnist", "longtail", "accuracy_vs_k")}
    tables.write_tables([("mnist", "full")], [d / "s.csv"], [d / "knn.csv"], outputs)
    mnist = pd.read_csv(outputs["mnist"]).set_index("model").measured
    assert mnist["Always the 5-NN vote"] == pytest.approx(100 * acc["5-NN"], abs=0.01)

    gates_json = tmp_path / "results/retrieval/toy/full/gates.json"
    gates_json.parent.mkdir(parents=True)
    gates_json.write_text((d / "g.json").read_text())
    rows = tables.gates_table([gates_json]).set_index("gate")
    assert set(rows.index) == {"Always the 5-NN vote", "Learned gate network/5-NN", "kNN-LM interpolation network/5-NN"}
    vote = rows.loc["Always the 5-NN vote"]
    assert (vote.dataset, vote.split, vote.pair) == ("toy", "full", "network / 5-NN")
    assert vote["fit on validation"] == "n_fit = 30"
    assert vote["accuracy (%)"] == pytest.approx(100 * acc["5-NN"])
    assert vote["oracle (%)"] == pytest.approx(100 * info["k5"]["oracle_accuracy"])

    section = nbformat.read(REPORTS / "retrieval.ipynb", as_version=4)
    imports = "\n".join(line for line in section.cells[1].source.splitlines() if line.startswith(("import", "from")))
    gate_cell = [c for c in section.cells if "gates_table(" in c.source]
    assert len(gate_cell) == 1
    section.cells = [section.cells[0], nbformat.v4.new_code_cell(imports), *gate_cell]
    nbformat.write(section, tmp_path / "gates.ipynb")
    monkeypatch.chdir(tmp_path)
    report.render_notebooks([("gates.ipynb", {"gates": [gates_json]})], "out.ipynb", "out.html", title="Gates")
    page = (tmp_path / "out.html").read_text()
    assert 'id="memory-gates"' in page and "<td>Always the 5-NN vote</td>" in page and "<td>n_fit = 30</td>" in page


def test_each_oracle_bounds_its_own_gates_pair(tmp_path):
    """Gates k = 1 and 5 on a memory with label noise (so 1-NN and 5-NN answers differ): the oracle of pair k
    is computed from the network and the very k-NN answer gate k chooses from."""
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(3, 8)) * 2
    arrays = {"n_classes": np.int64(3), "class_names": np.array(["a", "b", "c"])}
    for name, (n, off) in {"train": (300, 0), "val": (120, 1000), "test": (120, 0)}.items():
        y = np.arange(n) % 3
        emb = (centers[y] + rng.normal(size=(n, 8))).astype(np.float32)
        if name == "train":
            y = np.where(rng.random(n) < 0.25, rng.integers(0, 3, n), y)          # label noise in the memory
        logits = np.eye(3)[(y + (rng.random(n) < 0.3)) % 3] * 3
        arrays.update({f"{name}_emb": emb, f"{name}_logits": logits.astype(np.float32), f"{name}_y": y,
                       f"{name}_ids": np.arange(n) + off})
    arrays["test_group"] = arrays["test_y"]
    save_npz(tmp_path / "emb.npz", **arrays)
    stages.knn_stage(tmp_path / "emb.npz", tmp_path / "nb.npz", tmp_path / "knn.csv", ks=[1, 5], device="cpu")
    save_npz(tmp_path / "split.npz", train_idx=arrays["train_ids"], train_y=arrays["train_y"],
             val_idx=arrays["val_ids"], val_y=arrays["val_y"], test_idx=arrays["test_ids"], test_y=arrays["test_y"],
             train_group=arrays["train_y"], test_group=arrays["test_y"], n_classes=np.int64(3),
             class_names=arrays["class_names"])
    info = stages.gate_stage(tmp_path / "emb.npz", tmp_path / "nb.npz", tmp_path / "split.npz", tmp_path / "g.npz",
                             tmp_path / "g.json", gate_ks=[5, 1])
    g, nb = stages.load_npz(tmp_path / "g.npz"), stages.load_npz(tmp_path / "nb.npz")
    net, y = arrays["test_logits"].argmax(1), arrays["test_y"]
    knn = {k: stages.knn_classify(arrays["train_y"][nb["l2_test_ids"]], 3, k=k)[0] for k in (5, 1)}
    oracle = {k: stages.oracle_gate(net, knn[k], y) for k in (5, 1)}
    assert (oracle[5] == y).mean() != (oracle[1] == y).mean()        # the pairs differ: a swapped oracle fails
    for k in (5, 1):
        np.testing.assert_array_equal(g[f"knn_k{k}"], knn[k])
        np.testing.assert_array_equal(g[f"oracle_k{k}"], oracle[k])
        assert info[f"k{k}"]["oracle_accuracy"] == pytest.approx((oracle[k] == y).mean())
        assert np.all((g[f"learned_gate_k{k}"] == net) | (g[f"learned_gate_k{k}"] == knn[k]))
        assert info[f"k{k}"]["learned_gate_accuracy"] <= info[f"k{k}"]["oracle_accuracy"]
