"""The report's helpers: table style (no nan, integers, no index, folding, links), the scorecard across the
documents, provenance, the table of contents and the offline page."""

import os
import re
import subprocess

import nbformat
import numpy as np
import pandas as pd
import pytest

from memgen import report, scorecard
from memgen.influence.tables import scorecard_rows as influence_rows
from memgen.lut.tables import scorecard_rows as lut_rows
from memgen.retrieval.tables import scorecard_rows as retrieval_rows


def visible_text(page: str) -> str:
    """The text a reader sees: without style/script blocks, tags and embedded images."""
    page = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", page, flags=re.S)
    return re.sub(r"<[^>]+>", " ", page)


def test_cells_show_missing_values_integers_and_decimals():
    t = pd.DataFrame({"count": [784.0, 18099.0, np.nan], "pairs": [2822, 15491, 7], "k": [1024, 8, 12],
                      "acc": [0.5, 0.12345, np.nan], "note": ["a", "", None],
                      "measured": [74.0, 72.0, 50.0], "temp": [np.inf, 1.0, 2.5]})
    cells = report.format_cells(t, decimals={"measured": 1, "acc": 3})
    assert cells["count"].tolist() == ["784", "18,099", "–"]
    assert cells["pairs"].tolist() == ["2,822", "15,491", "7"]          # one style per column
    assert cells["k"].tolist() == ["1024", "8", "12"]
    assert cells["acc"].tolist() == ["0.500", "0.123", "–"]
    assert cells["note"].tolist() == ["a", "–", "–"]
    assert cells["measured"].tolist() == ["74.0", "72.0", "50.0"]       # named in decimals: stays an accuracy
    assert cells["temp"].tolist() == ["∞", "1.00", "2.50"]
    assert report.fmt(float("nan")) == "–" and report.fmt(3) == "3" and report.fmt(0.256, 1) == "0.3"
    assert report.fmt(1024) == "1024" and report.fmt(18099.0, 0) == "18,099"   # separators from 10,000 on


def test_table_block_has_no_index_no_empty_column_and_links_its_csv():
    t = pd.DataFrame({"method": ["a", "b"], "published": [np.nan, np.nan], "note": ["", ""], "measured": [1.5, 2.0]},
                     index=[7, 9])
    block = report.table_block(t, "LUT Table 1", "Accuracy.", source="results/tables/seed001_table1.csv")
    assert 'id="lut-table-1"' in block and 'href="../tables/seed001_table1.csv"' in block
    assert re.findall(r"<th>(.*?)</th>", block) == ["method", "measured"]  # empty columns dropped, no index
    assert ">7<" not in block and ">9<" not in block
    assert "nan" not in visible_text(block).lower() and "<details>" not in block


def test_long_tables_fold_and_difference_cells_are_coloured():
    t = pd.DataFrame({"k": range(30), "difference": [1.0] * 29 + [5.0]})
    block = report.table_block(t, "Long", "Thirty rows.", tolerance=3)
    assert block.count("<details>") == 1 and "Show all 30 rows" in block
    assert block.count("verdict-good") == 29 and block.count("verdict-bad") == 1
    short = report.table_block(t.head(5), "Short", "Five rows.")
    assert "<details>" not in short


def test_with_verdict_marks_only_published_rows():
    t = report.with_verdict(pd.DataFrame({"model": ["a", "b", "c"], "published": [90.0, 80.0, np.nan],
                                          "measured": [90.5, 70.0, 50.0]}), tolerance=1.0)
    assert t["verdict"].tolist() == ["reproduced", "not reproduced", ""]
    assert t["difference"].iloc[1] == pytest.approx(-10.0)


def lut_table(published, measured, **columns):
    return pd.DataFrame({"published": published, "measured": measured, **columns})


def test_scorecard_rows_across_the_documents():
    lut = {"table1": lut_table([0.9, 0.5, np.nan], [0.89, 0.40, 0.7], dataset=["mnist"] * 3,
                               method=["memorization", "random guess", "rf300"], split=["test"] * 3),
           "table3": lut_table([0.66, 0.51], [0.65, 0.52], k=[2, 2], labels=["real", "random"], split=["train"] * 2)}
    retrieval = pd.DataFrame({"model": ["ResNet-20", "1-NN", "extra"], "published": [91.83, 91.0, np.nan],
                              "measured": [91.5, 80.0, 50.0]})
    last = pd.DataFrame({"quantity": ["test accuracy, linear models on 70% (%)",
                                      "examples with mem >= 0.25, linear models",
                                      "examples with mem >= 0.25, full networks"],
                         "published (CIFAR-100, ResNet50)": [75.8, 38, 18099], "measured": [40.0, 10, 300]})
    card = scorecard.build_scorecard(lut_rows(lut), retrieval_rows(retrieval), influence_rows(last), scales=SCALES,
                                     preset_scale="full")
    assert card.columns.tolist() == scorecard.COLUMNS
    by_table = card[card.document == "LUT"].set_index("anchor")
    t1 = card[card.item.str.startswith("Table 1, MNIST")].iloc[0]
    assert t1["verdict"] == "partly reproduced (1 of 2 within)" and t1["anchor"] == "lut-table-1"
    assert t1["published"] == pytest.approx(70.0) and t1["difference"] == pytest.approx(-5.5)
    assert len(by_table.loc["lut-table-3"]) == 2                                  # real and random labels
    memory = card[card.document == "Memory"]
    assert memory["verdict"].tolist() == ["reproduced", "not reproduced"]       # extra has no published number
    assert set(memory["anchor"]) == {"memory-table-1"}
    fz = card[card.document == "F&Z"]
    assert fz["verdict"].iloc[0].startswith("orientation only") and fz["difference"].isna().iloc[0]
    claim = fz.iloc[-1]
    assert claim["verdict"] == "holds" and claim["measured"] == pytest.approx(30.0)
    assert claim["published"] == pytest.approx(18099 / 38)
    assert set(card.loc[card.document == "Memory", "scale"]) == {SCALES["Memory"]}
    # below the documents' scale a missed level is marked with its scale, not called a failed reproduction
    reduced = scorecard.build_scorecard(lut_rows(lut), retrieval_rows(retrieval), influence_rows(last),
                                        scales=SCALES, preset_scale="reduced")
    memory = reduced[reduced.document == "Memory"]
    assert memory["verdict"].tolist() == ["reproduced", "level at reduced scale (12 of 200 epochs)"]
    t1 = reduced[reduced.item.str.startswith("Table 1, MNIST")].iloc[0]
    assert t1["verdict"] == "level at reduced scale (5 x 1024 LUTs; 1 of 2 within)"
    assert reduced[reduced.document == "F&Z"]["verdict"].tolist() == card[card.document == "F&Z"]["verdict"].tolist()


SCALES = {"LUT": "5 x 1024 LUTs", "Memory": "12 of 200 epochs", "F&Z": "t = 8-16"}


def test_document_scales_name_what_each_level_was_measured_at():
    config = {"lut": {"depth": 5, "width": 1024, "seeds": [0]},
              "retrieval": {"backbone": {"cifar10": {"arch": "resnet20", "epochs": 12}}},
              "influence": {"studies": {"a": {"t": 512}, "b": {"t": 2000}}}}
    scales = scorecard.document_scales(config)
    assert scales == {"LUT": "5 x 1024 LUTs, 1 seed(s)", "Memory": "12 of 200 epochs",
                      "F&Z": "t = 512-2000 models per study"}


def claims_table(verdicts):
    from memgen.claims import CLAIM_COLUMNS

    return pd.DataFrame([{"document": d, "source": s, "claim": f"claim {i}", "quantity": "q", "published": np.nan,
                          "measured": 0.5, "lo": 0.1, "hi": 0.9, "statistic": "st", "decision": "> 0", "verdict": v,
                          "scale": "sc"} for i, (d, s, v) in enumerate(verdicts)], columns=CLAIM_COLUMNS)


def test_claims_merge_in_document_order_and_refuse_a_foreign_table(tmp_path):
    claims_table([("Memory", "Table 1", "holds")]).to_csv(tmp_path / "memory.csv", index=False)
    claims_table([("LUT", "Table 3", "inconclusive")]).to_csv(tmp_path / "lut.csv", index=False)
    merged = scorecard.merge_claims([tmp_path / "memory.csv", tmp_path / "lut.csv"], tmp_path / "claims.csv")
    assert merged["document"].tolist() == ["LUT", "Memory"]
    assert pd.read_csv(tmp_path / "claims.csv")["verdict"].tolist() == ["inconclusive", "holds"]
    pd.DataFrame({"claim": ["x"], "holds": ["yes"]}).to_csv(tmp_path / "old.csv", index=False)
    with pytest.raises(ValueError, match="write_claims"):
        scorecard.merge_claims([tmp_path / "lut.csv", tmp_path / "old.csv"], tmp_path / "claims.csv")
    with pytest.raises(FileNotFoundError):
        scorecard.merge_claims([tmp_path / "lut.csv", tmp_path / "influence.csv"], tmp_path / "claims.csv")


def test_claims_block_colours_verdicts_and_links_named_tables():
    block = report.claims_block(claims_table([("Memory", "Table 1", "holds"), ("LUT", "Section 2", "does not hold"),
                                              ("F&Z", "Figure 2", "inconclusive")]))
    assert 'id="claims"' in block and "1 holds, 1 does not hold, 1 inconclusive" in block
    assert ('class="verdict-good">holds<' in block and 'class="verdict-bad">does not hold<' in block
            and 'class="verdict-mixed">inconclusive<' in block)
    assert 'href="#memory-table-1"' in block and 'href="#fz-figure-2"' in block and "Section 2</a>" not in block
    assert "nan" not in visible_text(block).lower()


def test_scorecard_without_comparable_numbers_says_so():
    lut = {"table4": lut_table([np.nan] * 2, [0.7, 0.8], split=["test", "train"])}
    card = scorecard.build_scorecard(lut_rows(lut), scales=SCALES, preset_scale="reduced")
    assert card["verdict"].str.startswith("not comparable").all() and card["published"].isna().all()
    block = report.scorecard_block(card)
    assert "nan" not in visible_text(block).lower() and 'href="#lut-table-4"' in block


def test_verdict_colours():
    assert report.verdict_class("reproduced") == "verdict-good"
    assert report.verdict_class("partly reproduced (3 of 6 within)") == "verdict-mixed"
    assert report.verdict_class("not reproduced (1 of 4 within)") == "verdict-bad"
    assert report.verdict_class("not measured") == "verdict-none"
    assert report.verdict_class("inconclusive") == "verdict-mixed" and report.verdict_class("holds") == "verdict-good"
    assert report.verdict_class("does not hold") == "verdict-bad" and report.verdict_class("no") == "verdict-bad"


def test_provenance_pieces(tmp_path):
    a = {"lut": {"k": 4, "precision": "bf16"}, "seed": 0}
    b = {"seed": 0, "lut": {"precision": "bf16", "k": 4}}
    assert report.config_hash(a) == report.config_hash(b) != report.config_hash({**a, "seed": 1})
    assert report.git_state(tmp_path) == {"commit": "not a git checkout", "dirty": None, "changed": []}
    runtimes = pd.DataFrame({"seconds": [10.0, 5.0], "started": ["2026-01-01 10:00:00", "2026-01-01 10:00:20"],
                             "finished": ["2026-01-01 10:00:10", "2026-01-01 10:01:00"]})
    assert report.end_to_end_seconds(runtimes) == 60.0
    assert report.duration(60.0) == "1 min 00 s" and report.duration(7322) == "2 h 02 min"
    assert report.duration(float("nan")) == "–"


def test_dirty_means_a_changed_source_not_a_log_in_the_checkout(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "study.py").write_text("x = 1\n")
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    (tmp_path / "run.log").write_text("snakemake's output, kept by the user\n")
    assert report.git_state(tmp_path)["dirty"] is False
    (tmp_path / "src" / "new_learner.py").write_text("y = 2\n")
    assert report.git_state(tmp_path) == {**report.git_state(tmp_path), "dirty": True,
                                          "changed": ["src/new_learner.py"]}
    (tmp_path / "src" / "new_learner.py").unlink()
    (tmp_path / "config.yaml").write_text("seed: 1\n")
    assert report.git_state(tmp_path)["changed"] == ["config.yaml"]


@pytest.mark.parametrize("setting, native, used", [("auto", "1", "fp32"), ("fp32", "", "fp32"), ("bf16", "1", "bf16")])
def test_provenance_records_the_precision_the_run_resolved(setting, native, used, monkeypatch, tmp_path):
    monkeypatch.setenv("MEMGEN_NO_NATIVE_BF16", native)
    runtimes = pd.DataFrame({"seconds": [1.0], "started": ["2026-01-01 10:00:00"], "finished": ["2026-01-01 10:00:01"]})
    prov = report.provenance({"precision": setting}, runtimes, tmp_path, "cpu")
    assert prov["precision"] == {"config": setting, "used": used}
    assert f"{used} (config: {setting})" in report.provenance_block(prov)


def test_runtime_table_dates_jobs_from_their_benchmark_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "results/benchmarks/knn/mnist/full.tsv"
    path.parent.mkdir(parents=True)
    path.write_text("s\th:m:s\tmax_rss\n30.0\t0:00:30\t100.5\n")
    os.utime(path, (1_767_225_630, 1_767_225_630))               # 2026-01-01 00:00:30 UTC
    table = report.runtime_table(["results/benchmarks/knn/mnist/full.tsv"])
    row = table.iloc[0]
    assert (row["rule"], row["job"], row["seconds"]) == ("knn", "mnist/full", 30.0)
    assert (row["started"], row["finished"]) == ("2026-01-01 00:00:00", "2026-01-01 00:00:30")


def test_contents_lists_sections_and_subsections():
    page = ('<h2 id="LUT-networks">LUT networks<a class="anchor-link" href="#LUT-networks">¶</a></h2>'
            '<h3 id="LUT-Table-1">LUT Table 1: memorization</h3><h2 id="Runtime">Runtime</h2>')
    nav = report.contents(page)
    assert re.findall(r'href="#([^"]+)"', nav) == ["LUT-networks", "LUT-Table-1", "Runtime"]
    assert "¶" not in nav


def test_rendered_page_is_offline_titled_with_contents_and_each_table_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"a": [1, 2], "b": [0.5, np.nan]}).to_csv("t.csv", index=False)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("path = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_markdown_cell("## Section\n\n### Sub"),
        nbformat.v4.new_code_cell("from memgen.report import CONTENTS_PLACEHOLDER, show_table\n"
                                  "from IPython.display import HTML, display\n"
                                  "display(HTML(CONTENTS_PLACEHOLDER))\n"
                                  "show_table(path, 'Tiny', 'A table as the last value of its cell.')"),
        nbformat.v4.new_markdown_cell("Some $x^2$ math stays text."),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, "section.ipynb")
    report.render_notebooks([("section.ipynb", {"path": "t.csv"})], "out.ipynb", "out.html", title="Test report")
    page = (tmp_path / "out.html").read_text()
    assert "<title>Test report</title>" in page
    assert not re.search(r"<script[^>]+src=", page) and "cdn" not in page.lower()
    assert page.count('id="tiny"') == 1 and page.count("<table") == 1        # shown once, no repr of a return value
    assert 'class="memgen-contents"' in page and 'href="#Sub"' in page and report.CONTENTS_PLACEHOLDER not in page
    assert "nan" not in visible_text(page).lower()


@pytest.mark.parametrize("dpi", [72, 160, 300])
def test_figures_keep_their_drawn_size_on_the_page(dpi):
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    assert report.display_width(buffer.getvalue()) == 192      # a 2-inch figure is 192 CSS px at any dpi
