import numpy as np
import pytest

from memgen.retrieval.breakdown import evaluate_methods, per_class_accuracy, per_group_accuracy, shot_groups, shot_thresholds, summarize

#                 class: 0  0  0  0  1  1  2  2
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 0, 0, 1, 1, 2, 0, 0])
GROUPS = np.array([5, 5, 6, 6, 7, 7, 8, 8])   # e.g. original classes under a relabelled task
COUNTS = np.array([500, 50, 10])              # many, medium, few (absolute thresholds 100 / 20)


def test_shot_groups_absolute_and_scaled():
    np.testing.assert_array_equal(shot_groups(COUNTS), ["many", "medium", "few"])
    np.testing.assert_array_equal(shot_groups([101, 100, 20, 19]), ["many", "medium", "medium", "few"])
    # CIFAR-10-LT, imbalance 100 (Cui et al.): scaled thresholds 5000/1280 x (100, 20) = (390.6, 78.1)
    lt = np.floor(5000 * 100.0 ** (-np.arange(10) / 9)).astype(int)
    many, few = shot_thresholds(lt, "scaled")
    assert (many, few) == pytest.approx((390.625, 78.125))
    assert list(shot_groups(lt, "scaled")).count("many") == 5
    assert list(shot_groups(lt, "scaled")).count("few") == 1
    assert list(shot_groups(lt)).count("few") == 0  # absolute thresholds: no CIFAR-10-LT class below 20
    with pytest.raises(ValueError, match="scheme"):
        shot_thresholds(lt, "quantile")


def test_per_class_and_group_tables():
    pc = per_class_accuracy(Y_TRUE, Y_PRED, 4, train_counts=[500, 50, 10, 3], class_names=list("abcd"))
    assert list(pc.columns) == ["class", "name", "n_test", "n_correct", "accuracy", "train_count", "shot"]
    np.testing.assert_array_equal(pc.n_test, [4, 2, 2, 0])
    np.testing.assert_allclose(pc.accuracy[:3], [0.75, 0.5, 0.0])
    assert np.isnan(pc.accuracy[3])  # no test examples
    pg = per_group_accuracy(Y_TRUE, Y_PRED, GROUPS)
    np.testing.assert_array_equal(pg.group, [5, 6, 7, 8])
    np.testing.assert_allclose(pg.accuracy, [1.0, 0.5, 0.5, 0.0])


def test_summarize_on_hand_made_predictions():
    s = summarize(Y_TRUE, Y_PRED, n_classes=3, train_counts=COUNTS, groups=GROUPS)
    assert s["accuracy"] == pytest.approx(4 / 8)
    assert s["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    assert s["worst_class_accuracy"] == 0.0 and s["worst_class"] == 2
    assert (s["many_accuracy"], s["medium_accuracy"], s["few_accuracy"]) == pytest.approx((0.75, 0.5, 0.0))
    assert s["worst_group_accuracy"] == 0.0 and s["worst_group"] == 8
    # a perfect predictor
    p = summarize(Y_TRUE, Y_TRUE, n_classes=3, train_counts=[500, 200, 150], groups=GROUPS)
    assert p["accuracy"] == p["worst_group_accuracy"] == p["many_accuracy"] == 1.0
    assert np.isnan(p["few_accuracy"]) and p["n_few_classes"] == 0
    with pytest.raises(ValueError, match="argmax"):
        summarize(Y_TRUE, np.eye(3)[Y_PRED], n_classes=3)


def test_evaluate_methods_long_tables():
    summary, per_class, per_group = evaluate_methods({"net": Y_PRED, "oracle": Y_TRUE}, Y_TRUE, n_classes=3,
                                                     train_counts=COUNTS, groups=GROUPS)
    assert list(summary.method) == ["net", "oracle"]
    np.testing.assert_allclose(summary.accuracy, [0.5, 1.0])
    assert len(per_class) == 6 and set(per_class.method) == {"net", "oracle"}
    assert len(per_group) == 8
    _, _, none = evaluate_methods({"net": Y_PRED}, Y_TRUE, n_classes=3)
    assert none is None
