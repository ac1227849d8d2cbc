"""The claims foundation: decisions, verdicts and the intervals that feed them."""

import numpy as np
import pandas as pd
import pytest

from memgen.claims import (CLAIM_COLUMNS, FAILS, HOLDS, INCONCLUSIVE, Claim, above, below, bootstrap_interval,
                           judge, paired_accuracy_difference, trials_difference, within, write_claims)


def test_an_interval_that_spans_the_line_is_inconclusive():
    assert above(0).verdict(-0.5, 0.5) == INCONCLUSIVE
    assert below(1).verdict(0.5, 1.5) == INCONCLUSIVE
    assert above(0).verdict(0.1, 0.5) == HOLDS
    assert above(0).verdict(-0.5, -0.1) == FAILS
    assert below(1).verdict(0.2, 0.9) == HOLDS
    assert below(1).verdict(1.1, 2.0) == FAILS
    assert above(0).verdict(np.nan, 1.0) == INCONCLUSIVE


def test_within_is_an_equivalence_test_both_ways():
    d = within(0.5)
    assert d.verdict(-0.4, 0.4) == HOLDS
    assert d.verdict(-0.6, 0.4) == INCONCLUSIVE          # leaves the band on the left
    assert d.verdict(-0.4, 0.6) == INCONCLUSIVE          # leaves it on the right
    assert d.verdict(-0.7, 0.7) == INCONCLUSIVE          # wider than the band: cannot show equivalence
    assert d.verdict(0.6, 0.9) == FAILS                   # wholly above
    assert d.verdict(-0.9, -0.6) == FAILS                 # wholly below
    centred = within(1.0, centre=2.0)
    assert centred.verdict(1.5, 2.5) == HOLDS and centred.verdict(-0.5, 0.5) == FAILS
    assert str(centred) == "within 2 ±1" and str(d) == "within ±0.5"
    with pytest.raises(ValueError, match="tolerance"):
        within(0)


def _unpaired_interval(a, b, n_boot=2000, seed=0):
    """The same difference with a and b resampled on their own (what ignoring the pairing gives)."""
    rng = np.random.default_rng(seed)
    n = len(a)
    boot = 100.0 * (a[rng.integers(0, n, (n_boot, n))].mean(1) - b[rng.integers(0, n, (n_boot, n))].mean(1))
    return np.quantile(boot, [0.025, 0.975])


def test_paired_bootstrap_covers_a_known_difference_and_is_narrower_than_unpaired_when_correlated():
    rng = np.random.default_rng(1)
    n = 4000
    b = rng.random(n) < 0.80                               # B right on 80%
    a = b.copy()
    flip_up = rng.choice(np.flatnonzero(~b), size=200, replace=False)      # A also right on 200 of B's misses
    a[flip_up] = True                                       # a true difference of 200 / 4000 = 5 points
    effect, lo, hi = paired_accuracy_difference(a, b, seed=0)
    assert effect == pytest.approx(5.0)
    assert lo < 5.0 < hi and lo > 0
    ulo, uhi = _unpaired_interval(a, b)
    assert (hi - lo) < 0.5 * (uhi - ulo)                   # the pairing removes the shared correct examples
    # the interval matches the normal approximation of the discordant-pair variance
    p = 200 / n
    se = 100 * np.sqrt((p - p**2) / n)
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_paired_bootstrap_is_seeded_and_checks_its_input():
    a, b = np.array([1, 0, 1, 1, 0]), np.array([1, 1, 0, 1, 0])
    assert paired_accuracy_difference(a, b, seed=3) == paired_accuracy_difference(a, b, seed=3)
    with pytest.raises(ValueError, match="equal-length"):
        paired_accuracy_difference(a, b[:4])


def test_trials_difference_covers_the_true_difference_with_its_nominal_rate():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(400):
        x, y = rng.normal(1.0, 1.0, 8), rng.normal(0.0, 2.0, 12)
        _, lo, hi = trials_difference(x, y)
        covered += lo < 1.0 < hi
    assert 0.92 <= covered / 400 <= 0.98
    with pytest.raises(ValueError, match="at least 2"):
        trials_difference([1.0], [1.0, 2.0])


def test_judge_writes_a_row_a_claims_table_can_hold(tmp_path):
    claim = Claim("Memory", "Table 1", "the oracle gate is above the network", "accuracy difference (points)",
                  above(0), published=1.17)
    row = judge(claim, 1.0, 0.6, 1.4, statistic="paired bootstrap", scale="12 epochs")
    assert row["verdict"] == HOLDS and row["decision"] == "> 0" and row["published"] == 1.17
    write_claims([row, judge(claim, 0.1, -0.3, 0.5, statistic="s", scale="s")], tmp_path / "c.csv")
    table = pd.read_csv(tmp_path / "c.csv")
    assert list(table.columns) == CLAIM_COLUMNS
    assert list(table["verdict"]) == [HOLDS, INCONCLUSIVE]
    with pytest.raises(ValueError, match="unknown verdicts"):
        write_claims([{**row, "verdict": "reproduced"}], tmp_path / "bad.csv")


def test_bootstrap_interval_keeps_rows_paired_and_covers_the_truth():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 3, 500)
    x, y = base + rng.normal(0.5, 0.3, 500), base      # x - y has mean 0.5, small spread; x and y spread widely
    effect, lo, hi = bootstrap_interval(lambda a, b: (a - b).mean(), x, y, seed=1)
    assert effect == pytest.approx((x - y).mean())
    assert lo < 0.5 < hi and hi - lo < 0.1                # paired: the shared base cancels
    with pytest.raises(ValueError, match="aligned"):
        bootstrap_interval(np.mean, x, y[:10])
