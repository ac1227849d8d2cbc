"""Tests of the learners: batched implementations equal the one-model-at-a-time references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memgen.influence import estimator as mz
from memgen.influence.learners import (LEARNERS, KNNLearner, Learner, LinearProbe, LUTLearner, MLPLearner, knn_vote,
                                      register_learner, scores_from_logits)

from conftest import REPO, recipe
from synthetic import SyntheticLearner


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def task(n=300, n_test=80, d=12, c=3, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, c))
    x_train, x_test = rng.normal(size=(n, d)), rng.normal(size=(n_test, d))
    y_train = (x_train @ w + 0.5 * rng.normal(size=(n, c))).argmax(1)
    y_test = (x_test @ w).argmax(1)
    return x_train, y_train, x_test, y_test


def subsets_and_seeds(n, sizes, seed=0):
    subs = [mz.subset_indices(n, m, seed, k) for k, m in enumerate(sizes)]
    return subs, [mz.model_seed(seed, k) for k in range(len(sizes))]


def assert_outputs_close(a, b, atol, max_flips=0):
    for f in ("prob_train", "prob_test", "margin_train", "margin_test"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=0, atol=atol, err_msg=f)
    flips = (a.correct_train != b.correct_train).sum() + (a.correct_test != b.correct_test).sum()
    assert flips <= max_flips


def test_scores_from_logits():
    logits = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, -1.0]]])
    y = torch.tensor([0, 2, 1])
    correct, prob, margin = scores_from_logits(logits, y)
    assert correct.tolist() == [[True, False, False]]           # tie (1, 1): argmax takes class 0
    np.testing.assert_allclose(prob, torch.softmax(logits, -1)[0, [0, 1, 2], [0, 2, 1]][None].numpy(), rtol=1e-6)
    np.testing.assert_allclose(margin, [[1.0, -2.0, 0.0]])


@pytest.mark.parametrize("dtype,precision,atol,flips", [(torch.float64, "fp32", 1e-9, 0),
                                                        (torch.float32, "fp32", 2e-4, 2),
                                                        (torch.float32, "bf16", 2e-2, 8)])
def test_batched_mlp_equals_sequential(dtype, precision, atol, flips):
    x_train, y_train, x_test, y_test = task()
    subs, seeds = subsets_and_seeds(300, [210, 210, 150, 210])
    kw = dict(hidden=(32, 16), epochs=2, batch_size=32, device="cpu", dtype=dtype, precision=precision, compile=False)
    batched = MLPLearner(x_train, y_train, x_test, y_test, mode="batched", parallel=3, **kw)
    ref = MLPLearner(x_train, y_train, x_test, y_test, mode="reference", **kw)
    ob, orf = batched.fit_predict(subs, seeds), ref.fit_predict(subs, seeds)
    assert_outputs_close(ob, orf, atol, flips)
    # the models really differ from each other (different subsets and seeds)
    assert np.abs(ob.prob_test[0] - ob.prob_test[1]).max() > 1e-2
    # grouping of models into batches does not change a model
    one = MLPLearner(x_train, y_train, x_test, y_test, mode="batched", parallel=1, **kw)
    single = one.fit_predict(subs[1:2], seeds[1:2])
    assert_outputs_close(single, ob.take([1]), atol, flips)


def test_mlp_learns_and_is_reproducible():
    x_train, y_train, x_test, y_test = task(n=600, n_test=200, seed=1)
    learner = MLPLearner(x_train, y_train, x_test, y_test, hidden=(64,), epochs=5, batch_size=32, lr=0.05, device="cpu",
                         compile=False)
    subs, seeds = subsets_and_seeds(600, [420])
    out = learner.fit_predict(subs, seeds)
    assert out.correct_test.mean() > 0.8
    member = np.zeros(600, bool)
    member[subs[0]] = True
    assert out.correct_train[0, member].mean() >= out.correct_train[0, ~member].mean()
    again = learner.fit_predict(subs, seeds)
    np.testing.assert_array_equal(out.prob_test, again.prob_test)
    assert np.array_equal(out.correct_train, out.margin_train > 0)
    assert isinstance(learner, Learner)


@pytest.mark.parametrize("batch_size", [64, None])
def test_batched_linear_probe_equals_one_at_a_time(batch_size):
    x_train, y_train, x_test, y_test = task(n=250, n_test=60, d=10, c=4, seed=2)
    subs, seeds = subsets_and_seeds(250, [175] * 5 + [100])
    kw = dict(epochs=3, batch_size=batch_size, lr=0.2, device="cpu", dtype=torch.float64)
    ob = LinearProbe(x_train, y_train, x_test, y_test, mode="batched", parallel=4, **kw).fit_predict(subs, seeds)
    orf = LinearProbe(x_train, y_train, x_test, y_test, mode="reference", **kw).fit_predict(subs, seeds)
    assert_outputs_close(ob, orf, 1e-9)
    assert np.abs(ob.margin_test[0] - ob.margin_test[1]).max() > 1e-3
    assert ob.correct_test.mean() > 0.7
    p32 = LinearProbe(x_train, y_train, x_test, y_test, mode="batched", **{**kw, "dtype": torch.float32})
    o32 = p32.fit_predict(subs, seeds)
    assert_outputs_close(o32, orf, 1e-4, max_flips=2)


def brute_force_knn(x_train, y_train, queries, y_queries, subset, k):
    d = ((queries[:, None, :] - x_train[subset][None]) ** 2).sum(-1)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    labels = y_train[subset][order]
    correct = []
    for lab, y in zip(labels, y_queries):
        votes = {c: (lab == c).sum() for c in lab}
        best = max(votes.values())
        pred = next(c for c in lab if votes[c] == best)        # nearest among tied classes
        correct.append(pred == y)
    true_share = (labels == y_queries[:, None]).mean(1)
    return np.array(correct), true_share


@pytest.mark.parametrize("k,candidates", [(1, 3), (3, 5), (4, 40)])
def test_knn_matches_brute_force(k, candidates):
    x_train, y_train, x_test, y_test = task(n=200, n_test=50, d=5, seed=3)
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    subs, seeds = subsets_and_seeds(200, [140, 140, 60])
    learner = KNNLearner(x_train, y_train, x_test, y_test, k=k, candidates=candidates, parallel=2)
    out = learner.fit_predict(subs, seeds)
    queries = np.concatenate([x_train, x_test])
    y_all = np.concatenate([y_train, y_test])
    for q, s in enumerate(subs):
        correct, share = brute_force_knn(x_train, y_train, queries, y_all, s, k)
        assert np.array_equal(np.concatenate([out.correct_train[q], out.correct_test[q]]), correct)
        np.testing.assert_allclose(np.concatenate([out.prob_train[q], out.prob_test[q]]), share, atol=1e-6)
    if k == 1:   # a training point in the subset is its own nearest neighbour: always correct
        for q, s in enumerate(subs):
            assert out.correct_train[q, s].all()
            assert not out.correct_train[q].all()


def test_knn_vote_tie_break_and_margin():
    labels = np.array([[2, 1, 1, 2], [0, 1, 2, 3], [1, 1, 1, 0]])
    pred, correct, share, margin = knn_vote(labels, np.array([1, 3, 0]), 4)
    assert pred.tolist() == [2, 0, 1]            # ties: the class of the nearest tied neighbour
    assert correct.tolist() == [False, False, False]
    np.testing.assert_allclose(share, [0.5, 0.25, 0.25])
    np.testing.assert_allclose(margin, [0.0, 0.0, -0.5])


def test_synthetic_learner_probabilities():
    learner = SyntheticLearner([1.0, 0.5], [0.0, 0.5], [0.2, 0.3], effects=[(0, 1, 0.5)])
    q_train, q_test = learner.probabilities(np.array([0]))
    assert q_train.tolist() == [1.0, 0.5] and q_test.tolist() == [0.2, 0.8]
    out = learner.fit_predict([np.array([0])] * 2000, list(range(2000)))
    assert out.correct_train[:, 0].all() and abs(out.prob_test[:, 1].mean() - 0.8) < 0.01
    assert abs(out.correct_test[:, 1].mean() - 0.8) < 0.03
    with pytest.raises(ValueError, match="outside"):
        learner.fit_predict([np.array([5])], [0])


def test_lut_adapter_matches_direct_network_calls():
    from memgen.lut.network import LUTNetwork

    rng = np.random.default_rng(5)
    bits_train, bits_test = rng.integers(0, 2, (120, 16)), rng.integers(0, 2, (40, 16))
    y_train = (bits_train[:, 0] ^ bits_train[:, 1]).astype(int)
    y_test = (bits_test[:, 0] ^ bits_test[:, 1]).astype(int)
    learner = LUTLearner(bits_train, y_train, bits_test, y_test, k=4, width=16, depth=2, threads=1)
    subs, seeds = subsets_and_seeds(120, [84, 84])
    out = learner.fit_predict(subs, seeds)
    for q, (s, seed) in enumerate(zip(subs, seeds)):
        net = LUTNetwork(4, (16, 16), seed=seed, threads=1).fit(bits_train[s], y_train[s])
        assert np.array_equal(out.correct_train[q], net.predict(bits_train) == y_train)
        assert np.array_equal(out.correct_test[q], net.predict(bits_test) == y_test)
    assert np.array_equal(out.margin_test > 0, out.correct_test)
    with pytest.raises(ValueError, match="binary"):
        LUTLearner(bits_train, y_train + 1, bits_test, y_test)


@pytest.mark.gpu
def test_mlp_and_probe_on_cuda_match_cpu_reference():
    x_train, y_train, x_test, y_test = task(n=400, n_test=100)
    subs, seeds = subsets_and_seeds(400, [280] * 3)
    kw = dict(hidden=(64, 32), epochs=2, batch_size=32, dtype=torch.float64, precision="fp32")
    gpu = MLPLearner(x_train, y_train, x_test, y_test, device="cuda", **kw).fit_predict(subs, seeds)
    cpu = MLPLearner(x_train, y_train, x_test, y_test, device="cpu", mode="reference", **kw).fit_predict(subs, seeds)
    assert_outputs_close(gpu, cpu, 1e-6)
    kw = dict(epochs=2, batch_size=64, dtype=torch.float64)
    gpu = LinearProbe(x_train, y_train, x_test, y_test, device="cuda", **kw).fit_predict(subs, seeds)
    cpu = LinearProbe(x_train, y_train, x_test, y_test, device="cpu", mode="reference", **kw).fit_predict(subs, seeds)
    assert_outputs_close(gpu, cpu, 1e-9)


def test_net_learner_is_a_pure_function_of_subset_and_seed():
    from memgen.influence.learners import NetLearner
    from memgen.nets import build_net
    from memgen.runtime import seed_everything
    from memgen.train import predict_logits, train_classifier

    rng = np.random.default_rng(3)
    x_train, x_test = rng.integers(0, 256, (64, 16, 16, 1), dtype=np.uint8), rng.integers(0, 256, (20, 16, 16, 1),
                                                                                          dtype=np.uint8)
    y_train, y_test = rng.integers(0, 3, 64), rng.integers(0, 3, 20)
    settings = recipe(arch="mnist_cnn", epochs=1, batch_size=16, lr=0.05, augment=False, flip=False, max_steps=2)
    learner = NetLearner(x_train, y_train, x_test, y_test, settings, device="cpu")
    subs, seeds = subsets_and_seeds(64, [44, 44])
    out = learner.fit_predict(subs, seeds)
    again = learner.fit_predict(subs[1:], seeds[1:])
    assert_outputs_close(out.take([1]), again, atol=0)
    seed_everything(seeds[0])                               # the same model, trained by hand
    model = build_net("mnist_cnn", num_classes=3, in_channels=1, image_size=16)
    train_classifier(model, x_train[subs[0]], y_train[subs[0]], epochs=1, batch_size=16, lr=0.05, augment=False,
                     flip=False, max_steps=2, device="cpu", seed=seeds[0], show_progress=False)
    logits = predict_logits(model, np.concatenate([x_train, x_test]), device="cpu")
    assert np.array_equal(out.correct_train[0], logits[:64].argmax(1) == y_train)
    assert np.array_equal(out.correct_test[0], logits[64:].argmax(1) == y_test)
    with pytest.raises(ValueError, match="arch"):
        NetLearner(x_train, y_train, x_test, y_test, {k: v for k, v in settings.items() if k != "arch"})


def test_the_schema_offers_exactly_the_registered_learners_and_features():
    import yaml

    from memgen.influence.stages import FEATURES

    study = yaml.safe_load((REPO / "workflow" / "schemas" / "influence.schema.yaml").read_text())["$defs"]["study"]
    assert study["properties"]["learner"]["enum"] == list(LEARNERS) == ["knn", "linear", "lut", "mlp", "net"]
    assert study["properties"]["features"]["enum"] == list(FEATURES)
    assert {rule["if"]["properties"]["learner"]["const"] for rule in study["allOf"]} == set(LEARNERS)  # settings


def test_looking_up_a_learner_imports_only_its_module():
    """The registry lists the learner modules without importing them and imports one on lookup, so a job that
    builds the k-NN learner loads no other learner's code (nor memgen.train): its rule declares only that code."""
    import subprocess
    import sys

    check = ("import sys; from memgen.influence.stages import build_learner, records_learning; "
             "from memgen.influence.learners import LEARNERS; names = list(LEARNERS); "
             "before = {m for m in sys.modules if m.startswith('memgen.influence.learners.')}; "
             "records_learning('knn'); "
             "after = {m for m in sys.modules if m.startswith('memgen.influence.learners.')}; "
             "print(names, sorted(before), sorted(after), 'memgen.train' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": ""}).stdout.strip()
    assert out == "['knn', 'linear', 'lut', 'mlp', 'net'] [] ['memgen.influence.learners.knn'] False"


@pytest.fixture
def learner_registry(monkeypatch):
    """The registry, restored after the test registered its own learner."""
    monkeypatch.setattr(LEARNERS, "_classes", dict(LEARNERS._classes))
    return LEARNERS


def test_a_registered_learner_is_built_from_its_study(learner_registry):
    from memgen.influence import stages

    @register_learner("constant")
    class Constant(SyntheticLearner):
        @classmethod
        def from_settings(cls, x_train, y_train, x_test, y_test, settings, *, n_classes, device, show_progress):
            p = np.full(len(y_train), settings["p"])
            return cls(p, p, np.full(len(y_test), settings["p"]), y_train=y_train, y_test=y_test)

    x_train, y_train, x_test, y_test = task(n=30, n_test=10)
    t = stages.Task(x_train, y_train, x_test, y_test, np.arange(30), np.arange(10), ["a", "b", "c"])
    learner = stages.build_learner({"learner": "constant", "settings": {"p": 0.25}}, t)
    assert isinstance(learner, Constant) and isinstance(learner, Learner) and learner.p_test.tolist() == [0.25] * 10
    with pytest.raises(ValueError, match="registered twice"):
        register_learner("constant")(Constant)
    knn = stages.build_learner({"learner": "knn", "settings": {"k": 3}}, t, device="cpu")
    assert isinstance(knn, KNNLearner) and knn.k == 3
    mlp = stages.build_learner({"learner": "mlp", "settings": {"hidden": [8], "epochs": 1}}, t, device="cpu")
    assert mlp.sizes == [12, 8, 3] and mlp.epochs == 1
