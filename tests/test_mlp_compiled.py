"""The MLP learner's training step compiled by torch.compile: the eager step's models on real MNIST, the same models
on every run, eager where compiling fails, recorded in the shard; the removal experiment's MLPs trained batched."""

import json

import numpy as np
import pytest
import torch

from memgen.data import read_idx_dataset
from memgen.influence import estimator as est
from memgen.influence.learners import mlp
from memgen.influence.learners.mlp import MLPLearner

N_TRAIN, N_TEST, MODELS = 3000, 5000, 4
SETTINGS = dict(hidden=(32, 16), epochs=3, device="cpu", parallel=2)   # one compiled shape per precision: k = 2


@pytest.fixture(scope="module")
def mnist(data_root):
    ds = read_idx_dataset(data_root / "mnist")
    return ds.x_train[:N_TRAIN], ds.y_train[:N_TRAIN], ds.x_test[:N_TEST], ds.y_test[:N_TEST]


@pytest.fixture(scope="module")
def trained(mnist):
    """Per precision: the compiled and the eager learner and their outputs, same subsets (70%) and seeds."""
    subsets = [est.subset_indices(N_TRAIN, est.subset_size(N_TRAIN, 0.7), 0, q) for q in range(MODELS)]
    seeds = [est.model_seed(0, q) for q in range(MODELS)]
    runs = {}
    for precision in ("fp32", "bf16"):
        for compiled in (True, False):
            learner = MLPLearner(*mnist, precision=precision, compile=compiled, **SETTINGS)
            runs[precision, compiled] = learner, learner.fit_predict(subsets, seeds)
    return subsets, seeds, runs


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_compiled_step_trains_the_eager_models(trained, precision):
    _, _, runs = trained
    (compiled, c), (eager, e) = runs[precision, True], runs[precision, False]
    assert compiled.training_step == {"step": "compiled"} and eager.training_step["step"] == "eager"
    assert c.correct_test.mean() > 0.7                                        # the models learned (chance: 0.1)
    if precision == "fp32":   # rounding apart, the same models: each one right and wrong on the same examples
        assert abs(c.correct_test.mean() - e.correct_test.mean()) <= 0.001    # within 0.1 point
        assert (c.correct_test == e.correct_test).mean(1).min() >= 0.995
        assert (c.correct_train == e.correct_train).mean(1).min() >= 0.995
        np.testing.assert_allclose(c.prob_test, e.prob_test, atol=0.02)
    else:   # one step agrees to fp32 rounding, but a rounding flips a bf16 weight copy and trajectories part a little
        assert abs(c.correct_test.mean() - e.correct_test.mean()) <= 0.005
        assert (c.correct_test == e.correct_test).mean(1).min() >= 0.98


def test_compiled_training_gives_the_same_models_again(trained, mnist):
    subsets, seeds, runs = trained
    learner, first = runs["fp32", True]
    again = learner.fit_predict(subsets, seeds)
    np.testing.assert_array_equal(first.prob_test, again.prob_test)
    np.testing.assert_array_equal(first.prob_train, again.prob_train)


def test_subsets_of_another_size_reuse_the_compiled_step(trained, mnist, monkeypatch):
    """The step's inputs keep their shapes and strides whatever the subset size: the removal experiment's
    thresholds, each its own size, run the graph the shards compiled."""
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)   # a compile now fails, and the learner goes eager
    learner = MLPLearner(*mnist, precision="fp32", **SETTINGS)
    learner.fit_predict([np.arange(0, 1500), np.arange(1000, 2500)], [5, 6])
    assert learner.training_step == {"step": "compiled"}


def test_the_shard_records_which_step_ran(trained):
    _, _, runs = trained
    learner = runs["bf16", True][0]
    spec = est.ShardSpec.for_learner(learner, ratio=0.7, seed=0)
    assert json.loads(str(est.run_shard(learner, spec, 0, 2)["training_step"])) == {"step": "compiled"}
    eager = runs["bf16", False][0]
    assert json.loads(str(est.run_shard(eager, spec, 0, 2)["training_step"])) == {"step": "eager",
                                                                                   "reason": "compile: false"}


def toy(n=400, n_test=100, seed=0):
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, (3, 6, 6, 1))
    y = rng.integers(0, 3, n + n_test)
    x = np.clip(protos[y] + rng.normal(0, 40, (n + n_test, 6, 6, 1)), 0, 255).astype(np.uint8)
    return x[:n], y[:n], x[n:], y[n:]


def test_a_failed_compile_trains_eager_and_says_why(monkeypatch, capsys):
    def no_compiler():
        def fail(*args):
            raise RuntimeError("no C++ compiler found\nmore detail")
        return fail

    monkeypatch.setattr(mlp, "compiled_sgd_step", no_compiler)
    subsets, seeds = [np.arange(0, 400, 2), np.arange(1, 400, 2)], [3, 4]
    kw = dict(hidden=(16,), epochs=2, batch_size=32, device="cpu", precision="fp32", parallel=2)
    failed = MLPLearner(*toy(), **kw)
    out = failed.fit_predict(subsets, seeds)
    reason = "torch.compile failed: RuntimeError: no C++ compiler found"
    assert failed.training_step == {"step": "eager", "reason": reason}
    assert f"MLP learner: {reason}; training with the eager step" in capsys.readouterr().err
    eager = MLPLearner(*toy(), compile=False, **kw).fit_predict(subsets, seeds)
    np.testing.assert_array_equal(out.prob_test, eager.prob_test)
    reference = MLPLearner(*toy(), mode="reference", **kw)
    assert reference.training_step == {"step": "eager", "reason": "reference mode: torch.nn with autograd"}


def test_the_removal_experiment_trains_its_mlp_trials_batched(monkeypatch):
    learner = MLPLearner(*toy(), hidden=(16,), epochs=1, batch_size=32, device="cpu", parallel=4, compile=False)
    calls, train = [], learner.train_batched

    def spy(subsets, seeds):
        calls.append(subsets.shape)
        return train(subsets, seeds)

    monkeypatch.setattr(learner, "train_batched", spy)
    mem = np.linspace(0, 1, 400)
    df = est.removal_experiment(learner, mem, thetas=[0.5, 0.8], trials=2, show_progress=False)
    # per threshold, its 2 trials x (memorized, random) subsets of one size in one call of 4 models
    assert calls == [(4, int((mem < 0.5).sum())), (4, int((mem < 0.8).sum()))] and len(df) == 8
