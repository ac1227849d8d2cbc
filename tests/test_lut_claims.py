"""The LUT document's claims on synthetic long tables with known effects."""

import numpy as np
import pandas as pd
import pytest

from memgen.claims import FAILS, HOLDS, INCONCLUSIVE
from memgen.lut import claims as lc


def table1(n_test=10000, mem=0.9, knn1=0.97, conv=0.99):
    rows = []
    for key, name, acc in (("conv_net", "conv net", conv), ("knn1", "1-nearest neighbor", knn1),
                           ("knn5", "5-nearest neighbors", 0.97), ("memorization", "memorization (k=12)", mem),
                           ("naive_bayes", "naive Bayes", 0.77), ("random_guess", "random guess", 0.5)):
        rows.append({"dataset": "mnist", "method": name, "method_key": key, "split": "test",
                     "published": lc.PUBLISHED_TABLE1["mnist"].get(key, (np.nan, np.nan))[1],
                     "measured": acc, "measured_sd": np.nan, "n_seeds": 1, "n": n_test})
    return pd.DataFrame(rows)


def _by_claim(rows):
    return {r["claim"]: r for r in rows}


def test_table1_claims_follow_their_known_effects_and_sample_sizes():
    rows = _by_claim(lc.claims_table1(table1(), "s"))
    mem = rows["mnist: memorization is well above chance"]
    half = 1.96 * np.sqrt(0.9 * 0.1 / 10000)
    assert mem["verdict"] == HOLDS and mem["lo"] == pytest.approx(0.9 - half, abs=1e-4)
    conv = rows["mnist: the conv net is the most accurate (against this run's next best, 1-nearest neighbor)"]
    assert conv["measured"] == pytest.approx(0.02) and conv["verdict"] == HOLDS
    assert conv["published"] == pytest.approx(0.01)                 # 0.98 against the 5-NN's 0.97
    rank = rows["mnist: the methods rank as in the document"]
    assert rank["measured"] > 0.8
    # the same effect on 50 test examples is too small to tell
    small = _by_claim(lc.claims_table1(table1(n_test=50, conv=0.975), "s"))
    conv = small["mnist: the conv net is the most accurate (against this run's next best, 1-nearest neighbor)"]
    assert conv["lo"] < 0 < conv["hi"] and conv["verdict"] == INCONCLUSIVE


def test_memorization_level_with_nearest_neighbour_is_an_equivalence_test():
    t = table1().assign(dataset="cifar10")
    t["published"] = np.nan
    rows = _by_claim(lc.claims_table1(t.assign(measured=np.where(t.method_key == "memorization", 0.963,
                                                                 t.measured)), "s"))
    assert rows["cifar10: memorization is level with 1-nearest neighbour"]["verdict"] == HOLDS
    rows = _by_claim(lc.claims_table1(t, "s"))                   # memorization 0.90 against 0.97
    assert rows["cifar10: memorization is level with 1-nearest neighbour"]["verdict"] == FAILS


def table3(real_test=(0.66, 0.9, 0.66), random_train=(0.51, 0.6, 0.98), random_test=(0.5, 0.52, 0.51), n=10000):
    rows = []
    for i, k in enumerate((2, 10, 16)):
        for labels, split, v in (("real", "train", (0.66, 0.94, 1.0)[i]), ("real", "test", real_test[i]),
                                 ("random", "train", random_train[i]), ("random", "test", random_test[i])):
            rows.append({"k": k, "labels": labels, "split": split, "published": np.nan, "measured": v,
                         "measured_sd": np.nan, "n_seeds": 1, "n": n})
    return pd.DataFrame(rows)


def test_table3_claims():
    rows = _by_claim(lc.claims_table3(table3(), "s"))
    assert rows["training accuracy rises with k (real labels, k=2 to 16)"]["verdict"] == HOLDS
    peak = rows["test accuracy peaks at an intermediate k (k=10 against k=2)"]
    assert peak["measured"] == pytest.approx(0.24) and peak["verdict"] == HOLDS
    assert peak["published"] == pytest.approx(0.24)               # 0.90 at k=12 against 0.66 at k=2 and k=16
    assert rows["random labels can be memorized (k=16)"]["verdict"] == HOLDS
    assert rows["no generalization on random labels (k=10, the farthest from chance)"]["verdict"] == HOLDS
    assert rows["random labels are harder to memorize (k=16, the closest of the k both ran)"]["verdict"] == HOLDS
    flat = _by_claim(lc.claims_table3(table3(real_test=(0.7, 0.7, 0.7), random_test=(0.5, 0.6, 0.5)), "s"))
    assert flat["test accuracy peaks at an intermediate k (k=10 against k=2)"]["verdict"] == INCONCLUSIVE
    assert flat["no generalization on random labels (k=10, the farthest from chance)"]["verdict"] == FAILS
    falling = _by_claim(lc.claims_table3(table3(real_test=(0.8, 0.7, 0.6)), "s"))
    assert falling["test accuracy peaks at an intermediate k (k=10 against k=2)"]["verdict"] == FAILS


def test_figure1_claims_resample_the_tasks():
    rng = np.random.default_rng(0)
    rows = [{"panel": "k", "task": t, "k": k, "depth": 5, "gap": k / 100 + rng.normal(0, 0.002)} for t in range(20)
            for k in (2, 8)]
    rows += [{"panel": "depth", "task": t, "k": 2, "depth": d, "gap": rng.normal(0.05, 0.04 / d)} for t in range(20)
             for d in (1, 8)]
    c = _by_claim(lc.claims_figure1(pd.DataFrame(rows), "s"))
    grows = c["the generalization gap grows with k (k=2 to 8)"]
    assert grows["verdict"] == HOLDS and grows["measured"] == pytest.approx(0.06, abs=0.002)
    assert grows["statistic"] == "bootstrap over 20 tasks"
    assert c["the spread of the gap over tasks shrinks with depth (k=2, 1 to 8 hidden layers)"]["verdict"] == HOLDS


def test_table2_and_table4_claims():
    t2 = []
    for layer, (count, mean, std) in enumerate([(784, 0.51, 0.034), (1024, 0.61, 0.04), (1024, 0.74, 0.02),
                                                (1024, 0.74, 0.002), (1, 0.75, 0.0)]):
        t2 += [{"layer": str(layer), "statistic": s, "published": np.nan, "measured": v, "measured_sd": np.nan,
                "n_seeds": 1, "n": 60000} for s, v in (("count", count), ("mean", mean), ("std", std))]
    t2.append({"layer": "network", "statistic": "test accuracy", "published": np.nan, "measured": 0.86,
               "measured_sd": np.nan, "n_seeds": 1, "n": 10000})
    c = _by_claim(lc.claims_table2(pd.DataFrame(t2), "s"))
    rises = c["the LUTs' training accuracy rises layer by layer (its smallest rise, layer 2 to 3)"]
    assert rises["measured"] == pytest.approx(0.0) and rises["verdict"] == INCONCLUSIVE     # flat: spans 0
    assert c["the spread of the LUTs' training accuracy shrinks with depth (layer 1 to 3)"]["verdict"] == HOLDS
    assert not any("test accuracy" in k for k in c)                # no published k: no level claim
    t4 = pd.DataFrame([{"a": a, "b": b, "name_a": f"c{a}", "name_b": f"c{b}", "split": "test",
                        "published": lc.PUBLISHED_TABLE4[a, b], "measured": lc.PUBLISHED_TABLE4[a, b] - 0.02,
                        "measured_sd": np.nan, "n_seeds": 1, "n": 2000} for a in range(10) for b in range(a + 1, 10)])
    c = _by_claim(lc.claims_table4(t4, "s"))
    follows = c["test accuracy per pairwise task follows the document"]
    assert follows["measured"] == pytest.approx(1.0) and follows["verdict"] == HOLDS
    lowest = c["every pairwise task is well above chance (the lowest, c3-c5)"]
    assert lowest["measured"] == pytest.approx(0.59) and lowest["verdict"] == HOLDS
    assert lowest["published"] == pytest.approx(0.61)
