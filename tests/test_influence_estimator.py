"""Tests of the memorization/influence estimator, its shards and the experiment helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memgen.influence import estimator as mz
from memgen.influence.learners import Outputs

from synthetic import SyntheticLearner, influence_dense


pytestmark = pytest.mark.usefixtures("single_torch_thread")


class CountingLearner:
    """Wraps a learner and records which model seeds it trained (to see what a resume recomputes)."""

    def __init__(self, inner):
        self.inner = inner
        self.seen: list[int] = []
        for attr in ("name", "n_train", "n_test", "y_train", "y_test"):
            setattr(self, attr, getattr(inner, attr))

    def fit_predict(self, subsets, seeds):
        self.seen += list(seeds)
        return self.inner.fit_predict(subsets, seeds)


def memorizer(n=200, n_test=40, n_mem=25, p_out_rest=1.0, effects=None):
    """Correct on every in-subset example; out of the subset, wrong on the first ``n_mem`` examples
    (true mem 1) and correct with probability ``p_out_rest`` on the others."""
    p_in = np.ones(n)
    p_out = np.where(np.arange(n) < n_mem, 0.0, p_out_rest)
    return SyntheticLearner(p_in, p_out, np.full(n_test, 0.5), effects,
                            y_train=np.arange(n) % 3, y_test=np.arange(n_test) % 3)


def write_shards(learner, spec, directory, t, shard_size, models_per_call=None):
    """The shards of models 0..t-1, as the workflow's shard jobs write them (one file per range)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for a, b in mz.shard_ranges(t, shard_size):
        paths.append(mz.shard_path(directory, a, b))
        mz.run_shard(learner, spec, a, b, paths[-1], models_per_call=models_per_call)
    return paths


def run(learner, tmp_path, t, shard_size, seed=3, ratio=0.7, name="s", models_per_call=None, **kw):
    spec = mz.ShardSpec.for_learner(learner, ratio, seed)
    paths = write_shards(learner, spec, tmp_path / name, t, shard_size, models_per_call)
    return spec, paths, mz.estimate(paths, spec, show_progress=False, **kw)


# --- seeds and subsets ----------------------------------------------------------------------------

def test_subset_and_seed_are_pure_functions_of_seed_and_model():
    n, m = 100, mz.subset_size(100, 0.7)
    assert m == 70
    a = mz.subset_indices(n, m, 5, 7)
    assert np.array_equal(a, mz.subset_indices(n, m, 5, 7))
    assert len(np.unique(a)) == m and np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < n
    assert not np.array_equal(a, mz.subset_indices(n, m, 5, 8))
    assert not np.array_equal(a, mz.subset_indices(n, m, 6, 7))
    assert mz.model_seed(5, 7) == mz.model_seed(5, 7) != mz.model_seed(5, 8)
    # membership frequency over many models is the ratio
    spec = mz.ShardSpec(n_train=n, n_test=0, ratio=0.7, seed=1)
    freq = spec.masks(range(400)).mean(0)
    assert abs(freq.mean() - 0.7) < 1e-12 and freq.min() > 0.55 and freq.max() < 0.85


def test_bad_ratio_is_rejected():
    with pytest.raises(ValueError, match="ratio"):
        mz.subset_size(10, 1.0)
    with pytest.raises(ValueError, match="m=0"):
        mz.subset_size(3, 0.1)


# --- estimator ------------------------------------------------------------------------------------

def test_estimator_recovers_known_memorization(tmp_path):
    learner = memorizer(n=200, n_mem=25, p_out_rest=1.0)
    _, _, est = run(learner, tmp_path, t=40, shard_size=16)
    ok = (est.n_in > 0) & (est.n_in < est.t)
    assert ok.mean() > 0.95
    # deterministic outcomes: the estimate is exact wherever it is defined
    assert np.array_equal(est.mem[ok], np.where(np.arange(200) < 25, 1.0, 0.0)[ok])
    assert np.array_equal(est.heldout[ok], np.where(np.arange(200) < 25, 0.0, 1.0)[ok])
    assert np.all(np.isnan(est.mem[~ok]))
    assert set(np.flatnonzero(est.mem >= 0.25)) <= set(range(25))


def test_estimator_unbiased_with_noisy_outcomes(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    p_in = rng.uniform(0.6, 1.0, n)
    p_out = p_in - rng.uniform(0.0, 0.6, n)
    learner = SyntheticLearner(p_in, p_out, np.full(10, 0.5))
    _, _, est = run(learner, tmp_path, t=300, shard_size=100, kinds=("correct", "prob"))
    true = p_in - p_out
    z = (est.mem - true) / est.mem_se
    assert abs(np.mean(z)) < 0.2                       # no bias (mean of 300 z-scores: sd ~ 0.06)
    assert 0.8 < np.std(z) < 1.2                       # the standard errors are calibrated
    zp = (est.stats["prob"]["mem"] - true) / est.stats["prob"]["se"]
    assert abs(np.mean(zp)) < 0.2 and 0.8 < np.std(zp) < 1.2
    # the true-class probability gives the same estimand with a smaller standard error
    assert np.mean(est.stats["prob"]["se"]) < 0.6 * np.mean(est.mem_se)
    assert np.abs(est.heldout - p_out).max() < 5 * np.nanmax(est.stats["correct"]["out_se"])


def test_standard_error_shrinks_with_t(tmp_path):
    rng = np.random.default_rng(1)
    learner = SyntheticLearner(rng.uniform(0.5, 1, 150), rng.uniform(0.2, 0.8, 150), np.full(5, 0.5))
    _, _, est = run(learner, tmp_path, t=256, shard_size=50, checkpoints=[16, 64, 256], kinds=("correct", "prob"))
    conv = est.convergence[est.convergence.score == "correct"].set_index("t")
    assert list(conv.index) == [16, 64, 256]
    se = conv["mean_se"]
    assert se[16] > se[64] > se[256]
    assert 1.6 < se[64] / se[256] < 2.5          # ~ 1/sqrt(t)
    assert conv.loc[256, "rms_diff_to_final"] == 0
    assert conv.loc[16, "rms_diff_to_final"] > conv.loc[64, "rms_diff_to_final"]
    # split-half (even vs odd models) SE agrees with the plug-in SE; probabilities are more reliable
    rms_se = np.sqrt(np.nanmean(est.mem_se ** 2))
    assert 0.75 < conv.loc[256, "split_half_se"] / rms_se < 1.33
    prob = est.convergence[est.convergence.score == "prob"].set_index("t")
    assert prob.loc[256, "split_half_se"] < 0.6 * conv.loc[256, "split_half_se"]
    assert prob.loc[256, "split_half_reliability"] > conv.loc[256, "split_half_reliability"] > 0.3
    ts, mem_t, se_t = est.mem_by_t["correct"]
    assert mem_t.shape == (3, 150) and np.allclose(mem_t[-1], est.mem, equal_nan=True)


def test_results_do_not_depend_on_shard_count_or_models_per_call(tmp_path):
    learner = memorizer(n=120, n_mem=10, p_out_rest=0.7, effects=[(0, 1, 0.4), (3, 2, 0.3)])
    _, _, e1 = run(learner, tmp_path, t=30, shard_size=30, name="one")
    _, shards, e2 = run(learner, tmp_path, t=30, shard_size=7, name="many", models_per_call=3)
    for kind in mz.SCORE_KINDS:
        for key in ("mem", "se", "out_mean"):
            np.testing.assert_array_equal(e1.stats[kind][key], e2.stats[kind][key])
    pd.testing.assert_frame_equal(e1.pairs, e2.pairs)
    np.testing.assert_array_equal(e1.top_pos, e2.top_pos)
    assert len(shards) == 5


def test_missing_corrupt_or_foreign_shards_are_named(tmp_path):
    learner = CountingLearner(memorizer(n=80, n_mem=8, p_out_rest=0.6))
    spec = mz.ShardSpec.for_learner(learner, 0.7, 11)
    paths = write_shards(learner, spec, tmp_path / "shards", 20, 5)
    assert len(learner.seen) == 20 and sorted(learner.seen) == sorted(spec.model_seed(k) for k in range(20))
    with pytest.raises(mz.ShardError, match=r"models 5\.\.9 of t=20 have no shard"):
        mz.estimate(paths[:1] + paths[2:], spec, t=20, show_progress=False)
    assert mz.estimate(paths[:1] + paths[2:], spec, influence=False, show_progress=False).t == 5  # gap-free prefix
    paths[2].write_bytes(b"not a zip")                       # an interrupted or corrupt file
    with pytest.raises(mz.ShardError, match="unreadable or incomplete"):
        mz.estimate(paths, spec, show_progress=False)
    other = mz.ShardSpec.for_learner(learner, 0.7, 2)
    with pytest.raises(mz.ShardError, match="another study"):
        mz.estimate(paths[:2], other, show_progress=False)
    with pytest.raises(mz.ShardError, match="no shard given"):
        mz.estimate([], spec, show_progress=False)
    with pytest.raises(ValueError, match="labels"):
        mz.run_shard(SyntheticLearner(np.ones(80), np.ones(80), np.ones(40), y_train=np.ones(80, int)), spec, 0, 2)


def test_more_models_extend_the_same_sequence(tmp_path):
    """Raising t adds models t.. and keeps 0..t-1: the first shards of a longer study are the shorter study's."""
    learner = memorizer(n=60, n_mem=6)
    spec = mz.ShardSpec.for_learner(learner, 0.7, 2)
    short = write_shards(learner, spec, tmp_path / "short", 10, 5)
    longer = write_shards(learner, spec, tmp_path / "long", 20, 5)
    for a, b in zip(short, longer):
        with np.load(a) as za, np.load(b) as zb:
            for key in ("model_seeds", "masks", "correct_train", "prob_test"):
                np.testing.assert_array_equal(za[key], zb[key])
    grown = mz.estimate(short + longer[2:], spec, t=20, influence=False, show_progress=False)
    np.testing.assert_array_equal(grown.mem, mz.estimate(longer, spec, influence=False, show_progress=False).mem)


def test_blocked_influence_equals_dense():
    rng = np.random.default_rng(4)
    t, n, n_test = 60, 37, 23
    masks = rng.random((t, n)) < 0.7
    # 0/1 scores: exact counts in float32; continuous scores: float32 sums vs float64 reference
    for scores, atol in ((rng.random((t, n_test)) < 0.5, 1e-12), (rng.random((t, n_test)).astype(np.float32), 1e-5)):
        dense, dense_se = influence_dense(masks, scores)
        mem = rng.uniform(-0.2, 1, n)
        pairs, top_pos, top_val, top_se = mz.influence_blocks(masks, scores, mem, infl_threshold=0.05,
                                                              mem_threshold=0.25, top_k=3, block_size=5)
        got = pairs[["train_pos", "test_pos"]].to_numpy()
        got_set = set(map(tuple, got))
        # pairs at exactly the threshold (e.g. 1/20 = 0.05 with 0/1 scores) may go either way in floating point
        sure = set(map(tuple, np.argwhere((dense >= 0.05 + 1e-9) & (mem[:, None] >= 0.25))))
        maybe = set(map(tuple, np.argwhere((dense >= 0.05 - 1e-9) & (mem[:, None] >= 0.25))))
        assert sure <= got_set <= maybe and len(got) > 10 and len(got) == len(got_set)
        np.testing.assert_allclose(pairs["infl"], dense[got[:, 0], got[:, 1]], rtol=0, atol=atol)
        np.testing.assert_allclose(pairs["infl_se"], dense_se[got[:, 0], got[:, 1]], rtol=0, atol=atol)
        np.testing.assert_allclose(top_val, -np.sort(-dense, axis=0)[:3].T, atol=atol)
        np.testing.assert_allclose(dense[top_pos, np.arange(n_test)[:, None]], top_val, atol=atol)
        np.testing.assert_allclose(dense_se[top_pos, np.arange(n_test)[:, None]], top_se, atol=atol)
        # only the memorized rows: same pairs, top influencers among memorized examples
        p2, top2, val2, _ = mz.influence_blocks(masks, scores, mem, infl_threshold=0.05, mem_threshold=0.25,
                                                top_k=3, block_size=4, rows="memorized")
        pd.testing.assert_frame_equal(p2, pairs)
        sub = np.where(mem[:, None] >= 0.25, dense, -np.inf)
        np.testing.assert_allclose(val2, -np.sort(-sub, axis=0)[:3].T, atol=atol)
        assert (mem[top2] >= 0.25).all()


def test_influence_of_planted_pairs_is_recovered(tmp_path):
    effects = [(0, 0, 0.45), (1, 1, 0.45), (2, 2, -0.4)]
    learner = memorizer(n=100, n_test=30, n_mem=10, p_out_rest=1.0, effects=effects)
    _, _, est = run(learner, tmp_path, t=200, shard_size=100, top_k=2)
    pairs = est.pairs.set_index(["train_pos", "test_pos"])
    for i, j, delta in effects[:2]:
        assert abs(pairs.loc[(i, j), "infl"] - delta) < 4 * pairs.loc[(i, j), "infl_se"]
        assert est.top_pos[j, 0] == i
    assert (2, 2) not in pairs.index
    assert len(pairs) < 15   # few false positives among 100 x 30 pairs at SE ~ 0.07


def test_exports_round_trip(tmp_path):
    learner = memorizer(n=90, n_test=20, n_mem=9, effects=[(0, 3, 0.5)])
    spec = mz.ShardSpec.for_learner(learner, 0.7, 0)
    shards = write_shards(learner, spec, tmp_path / "shards", 60, 20)
    train_index, test_index = np.arange(90) * 3 + 1000, np.arange(20) + 500
    est = mz.estimate(shards, spec, train_index=train_index, test_index=test_index, y_train=learner.y_train,
                      y_test=learner.y_test, show_progress=False)
    est.write_scores(tmp_path / "scores.csv", tmp_path / "scores.npz")
    est.write_pairs(tmp_path / "pairs.csv")
    csv = pd.read_csv(tmp_path / "scores.csv")
    assert list(csv.columns[:8]) == ["index", "position", "label", "mem", "mem_se", "heldout_acc",
                                     "heldout_acc_se", "in_acc"]
    assert np.array_equal(csv["index"], train_index) and np.array_equal(csv["label"], learner.y_train)
    np.testing.assert_allclose(csv["mem"], est.mem, atol=1e-5)
    with np.load(tmp_path / "scores.npz") as z:
        np.testing.assert_array_equal(z["mem"], est.mem)
        assert int(z["t"]) == 60 and z["top_train_index"].shape == (20, 4)
    pairs = pd.read_csv(tmp_path / "pairs.csv")
    row = pairs[(pairs.train_index == 1000) & (pairs.test_index == 503)]
    assert len(row) == 1 and row.train_label.iloc[0] == 0 and row.test_label.iloc[0] == 0
    with pytest.raises(ValueError, match="labels"):
        mz.estimate(shards, spec, y_train=learner.y_train[::-1], y_test=learner.y_test, show_progress=False)


# --- experiment helpers ---------------------------------------------------------------------------

def test_histogram_counts_and_most_memorized():
    mem = np.array([0.9, 0.1, 0.3, np.nan, 0.5, -0.2, 0.26])
    labels = np.array([0, 0, 1, 1, 1, 0, 0])
    h = mz.mem_histogram(mem, bins=4, value_range=(-1, 1))
    assert h["count"].tolist() == [0, 1, 3, 2]
    top = mz.most_memorized(mem, labels, per_class=2, index=np.arange(7) + 100)
    assert top[top["class"] == 0]["index"].tolist() == [100, 106]
    assert top[top["class"] == 1]["index"].tolist() == [104, 102]


def test_consistency_formulas():
    a = np.array([0.9, 0.5, 0.3, 0.0, 0.26])
    b = np.array([0.8, 0.1, 0.35, 0.4, 0.0])
    c = mz.consistency_mem(a, b, [0.25, 0.6]).set_index("theta")
    # theta .25: I_a = {0,1,2,4}, I_b = {0,2,3} -> union 5, intersection 2
    assert c.loc[0.25, "J_mem"] == pytest.approx(2 / 5)
    assert c.loc[0.25, "D_mem"] == pytest.approx(np.mean([0.1, 0.4, 0.05, 0.4, 0.26]))
    assert c.loc[0.6, "J_mem"] == 1.0 and c.loc[0.6, "D_mem"] == pytest.approx(0.1)
    pa = pd.DataFrame({"train_pos": [0, 0, 1], "test_pos": [1, 2, 1], "mem": [0.9, 0.9, 0.2], "infl": [0.3, 0.2, 0.5]})
    pb = pd.DataFrame({"train_pos": [0, 3], "test_pos": [1, 4], "mem": [0.8, 0.4], "infl": [0.25, 0.16]})
    ci = mz.consistency_infl(pa, pb, [0.15, 0.28]).set_index("theta")
    # 0.15: A = {(0,1),(0,2)} ((1,1) has mem < .25), B = {(0,1),(3,4)} -> J = 1/3, common pair (0,1)
    assert ci.loc[0.15, "J_infl"] == pytest.approx(1 / 3)
    assert ci.loc[0.15, "D_infl_common"] == pytest.approx(0.05)
    assert ci.loc[0.28, "J_infl"] == 0.0 and ci.loc[0.28, "n_a"] == 1 and ci.loc[0.28, "n_b"] == 0


def test_intervals_never_read_zero_and_counts_show_their_chance_level(tmp_path):
    """A learner with true mem 0 everywhere: at t = 16 the point count of mem >= 0.25 is far above 0 (an
    example is out of ~5 models, so mem is coarse), the plug-in SE reads 0 for some examples, but the
    interval never has width 0, the lower-bound count stays ~0 and the chance level matches the point count."""
    n = 2000
    p = np.random.default_rng(1).uniform(0.5, 1.0, n)
    learner = SyntheticLearner(p, p, np.full(5, 0.5))
    _, _, est = run(learner, tmp_path, t=16, shard_size=16, influence=False)
    ok = np.isfinite(est.mem)                                 # defined: in and out of some subsets
    assert ok.mean() > 0.98 and (est.mem_se[ok] == 0).any()
    assert np.all((est.mem_hi - est.mem_lo)[ok] > 0.1)
    assert np.all((est.mem_lo[ok] <= est.mem[ok]) & (est.mem[ok] <= est.mem_hi[ok]))
    c = est.threshold_counts([0.25, 0.5]).set_index("theta")
    point, chance = c.loc[0.25, "count"], c.loc[0.25, "chance_count"]
    assert point > 0.05 * n                                   # the false positives of a point count
    assert abs(point - chance) < 4 * np.sqrt(chance)          # ... all explained by chance
    assert c.loc[0.25, "count_lower"] <= 0.005 * n and c.loc[0.25, "chance_count_lower"] < 0.005 * n
    assert c.loc[0.5, "count"] < point


def test_chance_probability_is_the_permutation_null():
    """The hypergeometric chance level equals a brute-force permutation of one example's in/out flags."""
    rng = np.random.default_rng(0)
    t, n_in, correct = 12, 8, np.array([1] * 9 + [0] * 3, bool)
    mems, los = [], []
    for _ in range(20000):
        m = np.zeros(t, bool)
        m[rng.choice(t, n_in, replace=False)] = True
        k_in, k_out = correct[m].sum(), correct[~m].sum()
        mems.append(k_in / n_in - k_out / (t - n_in))
        los.append(mz.mem_interval(k_in, n_in, k_out, t - n_in)[0])
    for theta in (0.1, 0.25, 0.5):
        p = mz.chance_probability([9], [n_in], t, theta)[0]
        assert p == pytest.approx(np.mean(np.array(mems) >= theta - 1e-9), abs=0.01)
    lower = []
    for theta in (-0.5, -0.2, 0.0):                # lower ends of this tiny study reach these thresholds
        p_lo = mz.chance_probability([9], [n_in], t, theta, level=0.95)[0]
        assert p_lo == pytest.approx(np.mean(np.array(los) >= theta - 1e-9), abs=0.01)
        lower.append(p_lo)
    assert len(set(np.round(lower, 4))) == len(lower) and lower[0] > 0.5   # each threshold its own probability


def test_t_for_precision_is_measured_from_the_estimate(tmp_path):
    """The t predicted from 16 models for a 95% interval of half-width <= 0.15 at the threshold 0.25 on 90% of the
    examples gives that precision when that many models are run on examples whose mem sits at the threshold."""
    n = 1500
    p_out = np.random.default_rng(2).uniform(0.3, 0.7, n)
    learner = SyntheticLearner(p_out + 0.25, p_out, np.full(5, 0.5))
    _, _, small = run(learner, tmp_path, t=16, shard_size=16, name="small", influence=False, precision=(0.15, 0.9))
    need = small.t_for_precision(0.25, 0.15, 0.9)
    conv = small.convergence.query("score == 'correct'")
    assert conv["t_for_precision"].iloc[-1] == need and conv["t_for_precision"].notna().all()
    _, _, big = run(learner, tmp_path, t=int(need), shard_size=int(need), name="big", influence=False)
    assert np.quantile((big.mem_hi - big.mem_lo) / 2, 0.9) == pytest.approx(0.15, rel=0.05)
    _, _, short = run(learner, tmp_path, t=int(need) // 2, shard_size=int(need) // 2, name="short", influence=False)
    assert np.quantile((short.mem_hi - short.mem_lo) / 2, 0.9) > 0.19   # half the models: ~sqrt(2) wider


def test_t_for_precision_grows_with_the_precision_asked_and_is_not_capped():
    """Halving the half-width asks about four times the models, past the 477 at which an SE target of 0.05 stopped
    for a 0.7 ratio whatever the data; a wider share of examples asks more too."""
    k_out, n_out = np.full(200, 15), np.full(200, 30)          # held-out accuracy 1/2: the widest intervals
    need = {w: mz.t_for_precision(k_out, n_out, 0.7, 0.25, w, 0.95) for w in (0.2, 0.1, 0.05, 0.025)}
    assert need[0.2] < need[0.1] < need[0.05] < need[0.025]
    assert need[0.05] > 477 and 3.5 < need[0.05] / need[0.1] < 4.5 and need[0.025] > 5000
    mixed = np.r_[np.full(100, 29), np.full(100, 15)]          # half the examples nearly always right out of subset
    assert mz.t_for_precision(mixed, n_out, 0.7, 0.25, 0.1, 0.4) < mz.t_for_precision(mixed, n_out, 0.7, 0.25, 0.1, 0.9)


def test_false_discoveries_of_a_count_are_estimated_where_the_chance_null_sees_none(tmp_path):
    """A learner with known mem: 1,000 examples spread between 0 and the threshold 0.25, 300 well above it, 700 at
    0.  At t = 64 the point count of mem >= 0.25 holds ~200 examples whose true mem is below 0.25; the count
    expected if nothing were memorized misses most of them (a null that cannot fail), the false-discovery estimate
    finds them within its own error, and so for the few of the lower-bound count."""
    rng = np.random.default_rng(4)
    mem = np.r_[rng.uniform(0.0, 0.25, 1000), rng.uniform(0.4, 0.9, 300), np.zeros(700)]
    p_in = rng.uniform(np.maximum(mem, 0.6), 1.0)
    learner = SyntheticLearner(p_in, p_in - mem, np.full(5, 0.5))
    _, _, est = run(learner, tmp_path, t=64, shard_size=64, influence=False)
    c = est.threshold_counts([0.25]).iloc[0]
    counted, counted_lower = est.mem >= 0.25 - 1e-9, est.mem_lo >= 0.25 - 1e-9
    true_false = int(np.sum(counted & (mem < 0.25)))
    assert c["count"] == counted.sum() and true_false > 100
    assert c["chance_count"] < 0.25 * true_false                             # the old null: blind to most
    assert abs(c["false_count"] - true_false) < 3 * c["false_count_sd"]
    true_false_lower = int(np.sum(counted_lower & (mem < 0.25)))
    assert true_false_lower <= 0.05 * counted_lower.sum()
    assert abs(c["false_count_lower"] - true_false_lower) < 3 * c["false_count_lower_sd"]


def test_top_influencers_never_name_a_missing_example(tmp_path):
    """With rows="memorized" and nothing memorized there are no candidate rows: no influencer is named
    (position -1 must not index the last training example)."""
    learner = SyntheticLearner(np.full(60, 0.8), np.full(60, 0.8), np.full(10, 0.5))
    spec = mz.ShardSpec.for_learner(learner, 0.7, 0)
    paths = write_shards(learner, spec, tmp_path / "s", 8, 8)
    est = mz.estimate(paths, spec, influence_rows="memorized", mem_threshold=2.0,
                      train_index=np.arange(60) + 100, show_progress=False)
    assert (est.top_pos == -1).all()
    assert len(est.top_influencers_frame()) == 0
    assert (est.top_train_index() == -1).all()


def test_removal_experiment_drops_memorized_examples():
    n, n_test = 100, 50
    # test example j is helped (+0.5) by training example j when that one is in the training set
    effects = [(j, j, 0.5) for j in range(n_test)]
    mem = np.where(np.arange(n) < n_test, 0.8, 0.0)
    learner = SyntheticLearner(np.ones(n), np.ones(n), np.full(n_test, 0.4), effects)
    df = mz.removal_experiment(learner, mem, thetas=[0.5, 0.9], trials=4, seed=0, show_progress=False)
    assert len(df) == 2 * 2 * 4
    s = mz.summarize_removal(df, representation_retrained=True, seeded_trials=True).set_index(["theta", "kind"])
    assert (s["spread"] == "measured").all() and s["representation_retrained"].all()
    assert s.loc[(0.5, "memorized"), "test_acc_std"] > 0                 # the same set removed, other model seeds
    assert s.loc[(0.5, "memorized"), "n_removed"] == 50 and s.loc[(0.5, "memorized"), "frac_remaining"] == 0.5
    assert s.loc[(0.9, "memorized"), "n_removed"] == 0
    # removing the helpful examples costs all their +0.5; random removal costs about half of it
    assert s.loc[(0.5, "memorized"), "test_acc_mean"] < 0.5
    assert s.loc[(0.5, "random"), "test_acc_mean"] > 0.55
    assert s.loc[(0.5, "random"), "test_acc_std"] > 0
    assert s.loc[(0.9, "memorized"), "test_acc_mean"] > 0.8
    # per threshold, memorized minus random in points with a Welch interval from the 4 trials of each kind
    d = mz.removal_difference(df).set_index("theta")
    at = df[df.theta == 0.5]
    mem_acc, rand_acc = (100 * at.loc[at.kind == k, "test_acc"].to_numpy() for k in ("memorized", "random"))
    assert d.loc[0.5, "difference"] == pytest.approx(mem_acc.mean() - rand_acc.mean())
    assert d.loc[0.5, "hi"] < 0 and d.loc[0.5, "lo"] < d.loc[0.5, "difference"] < d.loc[0.5, "hi"]
    assert d.loc[0.9, "n_removed"] == 0 and d.loc[0.9, "lo"] <= 0 <= d.loc[0.9, "hi"]   # same data: no effect
    one = mz.removal_difference(df[df.trial == 0]).set_index("theta")
    assert np.isnan(one.loc[0.5, "lo"]) and one.loc[0.5, "trials"] == 1    # one trial: no interval


def test_influence_examples_for_figure_4():
    pairs = pd.DataFrame({"train_pos": [5, 5, 5, 7, 7, 5, 5], "test_pos": [1, 2, 3, 4, 5, 6, 7],
                          "mem": [.9] * 7, "infl": [0.2, 0.5, 0.3, 0.9, 0.2, 0.16, 0.17]})
    ex = mz.influence_examples(pairs, n_examples=2, per_example=4)
    assert ex["train_pos"].tolist() == [7, 7, 5, 5, 5, 5]
    assert ex["test_pos"].tolist() == [4, 5, 2, 3, 1, 7]
    assert ex["rank"].tolist() == [0, 1, 0, 1, 2, 3]


def test_outputs_shape_check():
    out = Outputs.empty(2, 5, 3)
    out.check(2, 5, 3)
    with pytest.raises(ValueError, match="shape"):
        out.check(2, 6, 3)


@pytest.mark.gpu
def test_blocked_influence_on_cuda_equals_cpu():
    rng = np.random.default_rng(8)
    masks, scores = rng.random((80, 300)) < 0.7, rng.random((80, 50)) < 0.6
    mem = rng.uniform(0, 1, 300)
    cpu = mz.influence_blocks(masks, scores, mem, infl_threshold=0.1, block_size=64)
    gpu = mz.influence_blocks(masks, scores, mem, infl_threshold=0.1, block_size=64, device="cuda")
    pd.testing.assert_frame_equal(cpu[0], gpu[0])
    np.testing.assert_allclose(cpu[2], gpu[2], atol=1e-12)
