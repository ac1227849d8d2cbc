"""Tests of the memorization proxies: recorder hooks, planted mislabelled examples, validation statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from memgen.influence import estimator as mz
from memgen.influence.learners import MLPLearner, NetLearner
from memgen.nets import build_net
from memgen.proxies import (LearningSpeed, LearningSpeedRecorder, agreement, from_shards,
                            neighbourhood_proxies, pca_features, shard_arrays, validate)
from memgen.runtime import seed_everything
from memgen.train import learning_speed, train_classifier

from conftest import recipe

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def blobs(n=400, d=10, c=4, flip=20, seed=0):
    """Well-separated Gaussian classes; the labels of ``flip`` random examples changed to another class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(c, d))
    y = rng.integers(0, c, n)
    x = centres[y] + rng.normal(size=(n, d))
    planted = rng.choice(n, flip, replace=False)
    noisy = y.copy()
    noisy[planted] = (y[planted] + rng.integers(1, c, flip)) % c
    return x.astype(np.float32), noisy, planted


def images(n=240, flip=12, seed=0):
    """Tiny 8x8 grey images of two classes (bright left or right half), ``flip`` of them mislabelled."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 60, (n, 8, 8, 1))
    x[y == 0, :, :4] += 180
    x[y == 1, :, 4:] += 180
    planted = rng.choice(n, flip, replace=False)
    noisy = y.copy()
    noisy[planted] = 1 - y[planted]
    return x.astype(np.uint8), noisy, planted


def least(values, size):
    return set(np.argsort(values, kind="stable")[:size])


def test_recorder_sums_per_model_and_epoch():
    rec = LearningSpeedRecorder(4, models=[7, 9])
    rec(0, np.array([[0, 1], [1, 2]]), np.array([[0.5, 0.25], [1.0, 0.5]]), np.array([[1, 0], [1, 1]]), models=[7, 9])
    rec(1, np.array([[0, 1]]), np.array([[0.75, 0.25]]), np.array([[1, 0]]), models=[9])
    a = rec.arrays()
    assert a["count"].shape == (2, 2, 4)
    np.testing.assert_array_equal(a["count"][0].sum(0), [1, 1, 0, 0])
    np.testing.assert_array_equal(a["count"][1].sum(0), [1, 2, 1, 0])
    ls = LearningSpeed.from_recorder(rec)
    # example 1: model 7 saw 0.25 once, model 9 saw 1.0 and 0.25 (mean 0.625): mean over models 0.4375
    assert ls.learn_prob[1] == pytest.approx(0.4375)
    assert ls.n_models.tolist() == [2, 2, 1, 0]
    assert np.isnan(ls.learn_prob[3]) and np.isnan(ls.curve_prob[3]).all()
    np.testing.assert_allclose(ls.curve_prob[1], [(0.25 + 1.0) / 2, 0.25])
    with pytest.raises(ValueError, match="models="):
        rec(0, np.array([0]), np.array([0.5]), np.array([1]))
    with pytest.raises(ValueError, match="no training batch"):
        LearningSpeedRecorder(3).arrays()


def test_train_classifier_record_hook_sees_every_step():
    x, y, _ = images(n=64)
    calls = []

    def record(epoch, idx, prob, correct):
        calls.append((epoch, idx.clone(), prob.clone(), correct.clone()))

    seed_everything(0)
    train_classifier(build_net("mnist_cnn", num_classes=2, in_channels=1, image_size=8), x, y, epochs=2,
                     batch_size=16, lr=0.05, augment=False, flip=False, device="cpu", show_progress=False,
                     record=record)
    assert [c[0] for c in calls] == [0] * 4 + [1] * 4
    first_epoch = torch.cat([c[1] for c in calls[:4]])
    assert sorted(first_epoch.tolist()) == list(range(64))          # each example once per epoch
    probs = torch.cat([c[2] for c in calls])
    assert ((probs > 0) & (probs < 1)).all()
    assert all(c[3].dtype == torch.bool for c in calls)


def test_learning_speed_ranks_planted_mislabelled_images_least_regular():
    x, y, planted = images()
    seed_everything(0)
    model = build_net("mnist_cnn", num_classes=2, in_channels=1, image_size=8)
    ls, metrics = learning_speed(model, x, y, epochs=6, batch_size=16, lr=0.05, augment=False, flip=False,
                                 device="cpu", seed=0, show_progress=False)
    assert metrics["epochs_run"] == 6 and ls.curve_prob.shape == (len(y), 6)
    found = least(ls.learn_prob, len(planted)) & set(planted)
    assert len(found) >= 0.8 * len(planted)
    assert ls.learn_prob[planted].mean() < 0.5 < np.delete(ls.learn_prob, planted).mean()


def test_mlp_recorder_batched_equals_reference_and_finds_planted_labels():
    x, y, planted = blobs()
    subs = [mz.subset_indices(len(y), 280, 0, k) for k in range(3)]
    seeds = [mz.model_seed(0, k) for k in range(3)]
    kw = dict(hidden=(32,), epochs=8, batch_size=32, lr=0.05, device="cpu", dtype=torch.float64, precision="fp32",
              compile=False)
    recs = {}
    for mode in ("batched", "reference"):
        recs[mode] = LearningSpeedRecorder(len(y), models=seeds)
        MLPLearner(x, y, x[:10], y[:10], mode=mode, parallel=3, record=recs[mode], **kw).fit_predict(subs, seeds)
    a, b = recs["batched"].arrays(), recs["reference"].arrays()
    np.testing.assert_array_equal(a["count"], b["count"])
    np.testing.assert_allclose(a["prob_sum"], b["prob_sum"], atol=1e-8)
    for k, sub in enumerate(subs):                                      # a model records only its own subset
        seen = a["count"][k].sum(0) > 0
        assert set(np.flatnonzero(seen)) == set(sub) and (a["count"][k] <= 1).all()
    ls = LearningSpeed.from_recorder(recs["batched"])
    covered = np.flatnonzero(ls.n_models > 0)
    planted_in = np.intersect1d(planted, covered)
    ranked = covered[np.argsort(ls.learn_prob[covered])[:len(planted_in)]]
    assert len(set(ranked) & set(planted_in)) >= 0.8 * len(planted_in)


def test_net_learner_records_training_positions_of_its_subset():
    x, y, _ = images(n=96)
    subset = np.sort(np.random.default_rng(1).choice(96, 48, replace=False))
    rec = LearningSpeedRecorder(96, models=[5])
    learner = NetLearner(x, y, x[:8], y[:8], settings=recipe(arch="mnist_cnn", epochs=2, batch_size=16, lr=0.05,
                                                              augment=False, flip=False, weight_decay=0.0, pad=0),
                         device="cpu", record=rec)
    learner.fit_predict([subset], [5])
    count = rec.arrays()["count"][0]
    assert count.shape == (2, 96) and (count <= 1).all()
    np.testing.assert_array_equal(np.flatnonzero(count.sum(0)), subset)    # subset positions, mapped to training ones


def test_shard_arrays_round_trip(tmp_path):
    idx, prob, correct = np.array([[0, 1], [2, 3]]), np.array([[0.5, 0.25], [1.0, 0.75]]), np.array([[1, 0], [1, 1]])
    both = LearningSpeedRecorder(5, models=[1, 2])
    both(0, idx, prob, correct, models=[1, 2])
    paths = []
    for r, key in enumerate([1, 2]):                                    # one shard per model
        one = LearningSpeedRecorder(5, models=[key])
        one(0, idx[r:r + 1], prob[r:r + 1], correct[r:r + 1], models=[key])
        paths.append(tmp_path / f"shard{key}.npz")
        np.savez(paths[-1], **shard_arrays(one))
    merged, direct = from_shards(paths), LearningSpeed.from_recorder(both)
    np.testing.assert_allclose(merged.learn_prob, direct.learn_prob, equal_nan=True)
    np.testing.assert_allclose(merged.learn_prob[:4], [0.5, 0.25, 1.0, 0.75], rtol=1e-6)
    np.savez(tmp_path / "plain.npz", masks=np.zeros(1))
    with pytest.raises(ValueError, match="no learning-speed record"):
        from_shards([tmp_path / "plain.npz"])


def test_neighbourhood_proxies_rank_planted_labels_least_regular():
    x, y, planted = blobs(n=600, flip=30)
    df = neighbourhood_proxies(x, y, k=10)
    for name in ("knn_agree", "kde_posterior", "class_density"):
        found = least(df[name].to_numpy(), len(planted)) & set(planted)
        assert len(found) >= 0.7 * len(planted), name
    assert df["knn_agree"].between(0, 1).all()
    with pytest.raises(ValueError, match="lower the neighbourhood k"):
        neighbourhood_proxies(x[:5], y[:5], k=5)


def test_neighbourhood_excludes_self_even_for_duplicates():
    x = np.array([[0.0], [0.0], [10.0], [10.1]], np.float32)
    df = neighbourhood_proxies(x, np.array([0, 1, 1, 1]), k=1)
    # rows 0 and 1 are duplicates with different labels: each one's only neighbour is the other
    assert df["knn_agree"].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_pca_features_keeps_the_leading_directions():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2)) @ np.array([[5.0, 0, 0, 0], [0, 1.0, 0, 0]]) + 0.01 * rng.normal(size=(500, 4))
    z = pca_features(x, 2)
    assert z.shape == (500, 2)
    assert abs(np.corrcoef(z[:, 0], x[:, 0])[0, 1]) > 0.99
    assert pca_features(x, None).shape == (500, 4)


def test_agreement_and_validate():
    rng = np.random.default_rng(0)
    heldout = rng.random(1000)
    mem = 1 - heldout + 0.01 * rng.normal(size=1000)
    a = agreement(heldout + 0.01 * rng.normal(size=1000), heldout, mem, top_fraction=0.02)
    assert a["spearman_heldout"] > 0.99 and a["spearman_mem"] < -0.99 and a["top_size"] == 20
    assert a["top_overlap_heldout"] > 0.5
    noise = agreement(rng.random(1000), heldout, mem)
    assert abs(noise["spearman_heldout"]) < 0.1
    scores = pd.DataFrame({"index": np.arange(1000), "label": np.zeros(1000, int), "mem": mem, "heldout_acc": heldout})
    proxies = pd.DataFrame({"index": np.arange(1000)[::-1], "label": np.zeros(1000, int),
                            "good": heldout[::-1], "bad": -heldout[::-1]})
    table = validate(scores, proxies, ["good", "bad"]).set_index("proxy")
    assert table.loc["good", "spearman_heldout"] == pytest.approx(1.0)
    assert table.loc["good", "note"].startswith("tracks the estimate well")
    assert table.loc["bad", "note"].startswith("fails")
    other_task = proxies.assign(label=np.arange(1000) % 2)              # half the labels differ: another task
    assert validate(scores, other_task, ["good"])["note"][0] == "not comparable: another task (labels differ)"
