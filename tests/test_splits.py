import numpy as np
import pytest

from memgen.splits import SplitError, load_split, long_tail_counts, make_split, pair_names, save_split

CLASSES = [f"c{i}" for i in range(10)]


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    return np.repeat(np.arange(10), 500)[rng.permutation(5000)], np.repeat(np.arange(10), 100)


def split(name, labels, **kwargs):
    kwargs.setdefault("validation_size", 500)
    return make_split(name, *labels, CLASSES, dataset="toy", seed=kwargs.pop("seed", 0), **kwargs)


def test_long_tail_counts_match_cifar10_lt():
    # The CIFAR-10-LT training set sizes of Cui et al. 2019: 12,406 (IF 100), 13,996 (IF 50), 20,431 (IF 10).
    assert long_tail_counts(5000, 100, 10).tolist() == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert [long_tail_counts(5000, f, 10).sum() for f in (100, 50, 10)] == [12406, 13996, 20431]


def test_full_holds_out_a_stratified_disjoint_validation_set(labels):
    s = split("full", labels)
    assert len(s.train_idx) == 4500 and len(s.val_idx) == 500
    assert not set(s.train_idx) & set(s.val_idx)
    assert np.bincount(s.val_y).tolist() == [50] * 10
    np.testing.assert_array_equal(s.train_y, labels[0][s.train_idx])
    assert len(s.test_idx) == 1000 and s.n_classes == 10


def test_all_uses_every_training_example(labels):
    s = split("all", labels)
    np.testing.assert_array_equal(s.train_idx, np.arange(5000))
    assert len(s.val_idx) == 0


def test_long_tail_split(labels):
    s = split("lt10", labels)
    cui = long_tail_counts(500, 10, 10)                # Cui's counts from the 500 examples per class
    assert s.lt_target.tolist() == cui.tolist()
    # 50 per class held out: class 0 keeps the 450 left, classes 1-9 fit with Cui's counts
    assert s.class_counts().tolist() == [450] + cui[1:].tolist() and s.capped_classes() == [0]
    assert not set(s.train_idx) & set(s.val_idx)
    assert np.bincount(s.val_y, minlength=10).tolist() == [50] * 10  # balanced validation
    exact = split("lt10", labels, validation_size=0)
    assert exact.class_counts().tolist() == cui.tolist() and exact.capped_classes() == []
    assert np.bincount(s.test_y).tolist() == [100] * 10  # test stays balanced


def test_rare_subpopulation(labels):
    rare = {"groups": {"vehicles": [0, 1, 8, 9], "animals": [2, 3, 4, 5, 6, 7]}, "rare_classes": [1, 3],
            "keep_fraction": 0.1}
    s = split("rare", labels, rare=rare)
    assert s.class_names == ["vehicles", "animals"] and s.n_classes == 2
    per_original = np.bincount(s.train_group, minlength=10)
    assert per_original[1] == per_original[3] == 45 and per_original[0] == 450
    np.testing.assert_array_equal(s.train_y, np.isin(s.train_group, [2, 3, 4, 5, 6, 7]).astype(int))
    np.testing.assert_array_equal(s.test_group, labels[1][s.test_idx])
    assert np.bincount(s.test_group).tolist() == [100] * 10
    with pytest.raises(SplitError, match=r"splits.rare.rare_classes names class id\(s\) \[12\]"):
        split("rare", labels, rare={**rare, "rare_classes": [12]})


def test_binary_and_pairwise_tasks(labels):
    s = split("binary", labels)
    np.testing.assert_array_equal(s.train_y, (labels[0] >= 5).astype(int))
    assert s.class_names == ["c0+c1+c2+c3+c4", "c5+c6+c7+c8+c9"]
    p = split("pair3v8", labels)
    assert set(labels[0][p.train_idx]) == {3, 8} and set(labels[1][p.test_idx]) == {3, 8}
    np.testing.assert_array_equal(p.train_y, (labels[0][p.train_idx] == 8).astype(int))
    assert len(pair_names(10)) == 45 and pair_names(3) == ["pair0v1", "pair0v2", "pair1v2"]


@pytest.mark.parametrize("name, message", [
    ("pair3v12", r"class id\(s\) \[12\].*classes 0..9"),
    ("pair4v4", "pairs class 4 with itself"),
    ("shuffled", "unknown split 'shuffled'"),
])
def test_bad_split_names(labels, name, message):
    with pytest.raises(SplitError, match=message):
        split(name, labels)


def test_binary_with_missing_class_id(labels):
    with pytest.raises(SplitError, match=r"splits.binary.positive names class id\(s\) \[10\]"):
        split("binary", labels, binary={"negative": [0], "positive": [10]})


def test_random_labels_are_seeded_and_independent_of_the_true_ones(labels):
    s, again, other = split("binary-rand", labels), split("binary-rand", labels), split("binary-rand", labels, seed=1)
    true = split("binary", labels)
    np.testing.assert_array_equal(s.train_idx, true.train_idx)
    np.testing.assert_array_equal(s.train_y, again.train_y)
    assert not np.array_equal(s.train_y, other.train_y)
    assert abs(np.mean(s.train_y == true.train_y) - 0.5) < 0.05
    np.testing.assert_array_equal(s.test_y, true.test_y)  # test labels stay true


def test_splits_do_not_depend_on_order_of_creation(labels):
    first = split("full", labels)
    split("lt100", labels), split("rare", labels, rare={"groups": {"a": [0], "b": [1]}})
    np.testing.assert_array_equal(split("full", labels).val_idx, first.val_idx)


def test_save_load_round_trip(tmp_path, labels):
    s = split("lt50", labels)
    save_split(s, tmp_path / "s.npz")
    back = load_split(tmp_path / "s.npz")
    for field in ("train_idx", "train_y", "val_idx", "test_idx", "test_group", "train_group"):
        np.testing.assert_array_equal(getattr(back, field), getattr(s, field))
    assert back.class_names == s.class_names and back.n_classes == 10
