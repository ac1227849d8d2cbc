"""F&Z's claims decided by intervals that can fail: removal per threshold, the last-layer counts, consistency
against the worse of each side's noise floors, and influence pairs beyond estimation noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memgen.claims import CLAIM_COLUMNS, FAILS, HOLDS, INCONCLUSIVE
from memgen.influence import claims

STUDY = {"dataset": "toy", "split": "all", "features": "pixels"}


def _scores(tmp_path, name, mem, seed, t=64, k_in=None, n_in=None, n_correct=None):
    """A scores.npz as the estimate stage writes it (the columns the claims read)."""
    n = len(mem)
    n_in = np.full(n, int(0.7 * t)) if n_in is None else n_in
    k_in = n_in if k_in is None else k_in
    n_correct = k_in + (t - n_in) if n_correct is None else n_correct
    path = tmp_path / f"{name}.npz"
    np.savez(path, mem=np.asarray(mem, float), seed=np.int64(seed), ratio=np.float64(0.7), t=np.int64(t),
             in_acc=k_in / n_in, n_in=n_in, n_correct=n_correct)
    return path


def _removal(tmp_path, name, mem_acc, rand_acc, n_removed=50, retrained=True):
    rows = [{"theta": 0.5, "kind": kind, "trial": r, "n_removed": n_removed, "frac_remaining": 0.9, "test_acc": a,
             "representation_retrained": retrained, "seeded_trials": True}
            for kind, accs in (("memorized", mem_acc), ("random", rand_acc)) for r, a in enumerate(accs)]
    pd.DataFrame(rows).to_csv(tmp_path / f"{name}.csv", index=False)
    return tmp_path / f"{name}.csv"


def test_removal_claim_holds_fails_or_is_inconclusive_from_its_trials(tmp_path):
    scores = {s: _scores(tmp_path, s, np.zeros(10), 0) for s in ("clear", "noisy", "reverse", "none")}
    removal = {"clear": _removal(tmp_path, "clear", [0.80, 0.81, 0.79], [0.90, 0.91, 0.89]),
               "noisy": _removal(tmp_path, "noisy", [0.80, 0.95, 0.70], [0.85, 0.80, 0.90]),
               "reverse": _removal(tmp_path, "reverse", [0.95, 0.96, 0.94], [0.90, 0.91, 0.89]),
               "none": _removal(tmp_path, "none", [0.9, 0.9], [0.9, 0.9], n_removed=0)}
    rows = {r["statistic"].split(",")[0]: r for r in claims.removal_claims(removal, scores)}
    assert rows["clear"]["verdict"] == HOLDS and rows["clear"]["measured"] == pytest.approx(-10.0)
    assert rows["clear"]["hi"] < 0 and "Welch t over 3 trials" in rows["clear"]["statistic"]
    assert rows["noisy"]["verdict"] == INCONCLUSIVE and rows["noisy"]["lo"] < 0 < rows["noisy"]["hi"]
    assert rows["reverse"]["verdict"] == FAILS
    assert rows["none"]["verdict"] == INCONCLUSIVE and "nothing removed" in rows["none"]["statistic"]
    assert "3 removal trials (document: 100)" in rows["clear"]["scale"]


def test_consistency_is_judged_against_the_worse_floor_of_the_two_sides(tmp_path):
    """The MLP's own runs agree less than the k-NN's: the cross pair is judged against the MLP's floor and holds;
    judged against the k-NN's it would not.  Where the cross estimates are unrelated the claim does not hold;
    where a side has no same-algorithm pair at its t the claim is inconclusive and says so."""
    rng = np.random.default_rng(0)
    n = 4000
    base = rng.uniform(-0.2, 1.0, n)
    noisy = {name: np.clip(base + 0.25 * rng.normal(size=n), -1, 1) for name in ("mlp", "mlp_rerun")}
    exact = {name: np.clip(base + 0.01 * rng.normal(size=n), -1, 1) for name in ("knn", "knn_rerun")}
    mems = {**noisy, **exact, "other": rng.uniform(-0.2, 1.0, n)}
    scores = {name: _scores(tmp_path, name, m, seed) for seed, (name, m) in enumerate(mems.items())}
    mlp, knn = {**STUDY, "learner": "mlp", "settings": {}}, {**STUDY, "learner": "knn", "settings": {"k": 1}}
    studies = {"mlp": mlp, "mlp_rerun": mlp, "knn": knn, "knn_rerun": knn,
               "other": {**STUDY, "learner": "linear", "settings": {}}}
    config = [("mlp", "mlp_rerun"), ("knn", "knn_rerun"), ("mlp", "knn"), ("knn", "other")]
    rows = {r["statistic"].split(":")[0]: r for r in claims.consistency_claims(config, scores, studies, n_boot=200)}
    assert set(rows) == {"mlp vs knn", "knn vs other"}                      # same-algorithm pairs are floors
    cross = rows["mlp vs knn"]
    floor_mlp = claims._jaccard(mems["mlp"], mems["mlp_rerun"], 0.25)
    floor_knn = claims._jaccard(mems["knn"], mems["knn_rerun"], 0.25)
    assert floor_mlp < floor_knn - 0.2
    assert cross["measured"] == pytest.approx(claims._jaccard(mems["mlp"], mems["knn"], 0.25) - floor_mlp)
    assert cross["verdict"] == HOLDS and cross["lo"] < cross["measured"] < cross["hi"]
    assert claims._jaccard(mems["mlp"], mems["knn"], 0.25) - floor_knn < -claims.CONSISTENCY_TOLERANCE
    other = rows["knn vs other"]
    assert other["verdict"] == INCONCLUSIVE and "no independent same-algorithm pair of other" in other["statistic"]
    elsewhere = rng.uniform(-0.2, 1.0, n)                       # k-NN runs that agree with each other only
    apart = {name: _scores(tmp_path, f"{name}_apart", np.clip(elsewhere + 0.01 * rng.normal(size=n), -1, 1), seed)
             for seed, name in ((10, "knn"), (11, "knn_rerun"))}
    unrelated = claims.consistency_claims([("mlp", "mlp_rerun"), ("knn", "knn_rerun"), ("mlp", "knn")],
                                          {**scores, **apart}, studies, n_boot=200)
    assert [r["verdict"] for r in unrelated] == [FAILS]


def test_last_layer_claim_compares_posterior_counts_and_says_when_no_network_is_run(tmp_path):
    n, t = 3000, 64
    n_in = np.full(n, 45)
    # the network: 600 examples always right in their subset, always wrong out of it; the linear models: none
    k_out_net = np.where(np.arange(n) < 600, 0, t - 45)
    net = _scores(tmp_path, "net", np.where(np.arange(n) < 600, 1.0, 0.0), 1, t, n_in=n_in,
                  n_correct=45 + k_out_net)
    lin = _scores(tmp_path, "lin", np.zeros(n), 2, t, n_in=n_in)
    row, = claims.last_layer_claim({"linear": "lin", "network": "net"}, {"net": net, "lin": lin})
    assert row["verdict"] == HOLDS and row["measured"] == pytest.approx(600, abs=5)
    assert row["published"] == 18099 - 38
    row, = claims.last_layer_claim({"linear": "lin", "network": None}, {"lin": lin})
    assert row["verdict"] == INCONCLUSIVE and np.isnan(row["measured"]) and "no full-network study" in row["statistic"]


def test_pairs_claim_subtracts_the_pairs_noise_alone_gives(tmp_path):
    """Twenty pairs, two for each of 10 memorized rows, over 100 test examples.  With t = 2000 models and test
    examples right in half the models, permuting a row's in/out flags almost never reaches 0.15: the pairs are real
    (holds).  With t = 8 noise alone gives far more (~2 in 5 candidates reach 0.15): the claim does not hold."""
    pd.DataFrame({"train_pos": np.repeat(np.arange(10), 2), "test_pos": range(20), "mem": 0.9, "infl": 0.5}).to_csv(
        tmp_path / "pairs.csv", index=False)
    rows = {}
    for t in (2000, 8):
        n_in = np.full(50, int(0.7 * t))
        mem = np.where(np.arange(50) < 10, 0.9, 0.0)
        path = _scores(tmp_path, f"t{t}", mem, 0, t, n_in=n_in)
        with np.load(path) as z:
            arrays = dict(z)
        np.savez(path, **arrays, test_n_correct=np.full(100, t // 2))
        rows[t], = claims.pairs_claim("s", path, tmp_path / "pairs.csv", 0.15, 0.25)
    assert rows[2000]["verdict"] == HOLDS and rows[2000]["measured"] == pytest.approx(20, abs=0.5)
    assert "over 10 memorized x 100 test examples" in rows[2000]["statistic"]
    assert rows[8]["verdict"] == FAILS and rows[8]["measured"] < -200


def test_the_claims_table_has_the_claim_columns(tmp_path):
    scores = {"a": _scores(tmp_path, "a", np.zeros(10), 0)}
    removal = {"a": _removal(tmp_path, "a", [0.80, 0.81], [0.90, 0.91])}
    out = tmp_path / "claims_influence.csv"
    rows = claims.write_influence_claims(out, scores=scores, removal=removal, studies={"a": STUDY}, consistency=[],
                                         last_layer={"linear": None, "network": None}, figure_study=None,
                                         pairs={}, infl_threshold=0.15, mem_threshold=0.25)
    table = pd.read_csv(out)
    assert list(table.columns) == CLAIM_COLUMNS and len(table) == len(rows) == 1
    assert table["document"].iloc[0] == "F&Z" and table["source"].iloc[0] == "Figure 2"
