"""The precision setting: resolution (and its fp32 fallback), bf16 autocast in training with fp32 master weights
and optimizer state, the bf16 MLP learner, and embed's single pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memgen import runtime
from memgen.influence.learners import MLPLearner, NetLearner
from memgen.influence.stages import study_precision
from memgen.nets import build_net
from memgen.runtime import NO_NATIVE_BF16_ENV, cpu_has_native_bf16, resolve_precision
from memgen.train import embed, predict_logits, train_classifier

from conftest import recipe

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def toy_images(n=96, size=16, seed=0):
    """Class-dependent colour + bright quadrant, with noise (as in test_nets): learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.integers(0, 60, (n, size, size, 3)).astype(np.int64)
    half = size // 2
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, r * half:(r + 1) * half, q * half:(q + 1) * half, c % 3] += 180
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def toy_task(n=400, n_test=100, d=20, c=3, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, c))
    x_train, x_test = rng.random((n, d)), rng.random((n_test, d))
    return x_train, (x_train @ w).argmax(1), x_test, (x_test @ w).argmax(1)


# ---------------------------------------------------------------------------------------------- resolution
def test_explicit_precisions_pass_through_and_bad_values_are_named():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cuda") == "bf16"
    with pytest.raises(ValueError, match="fp16.*auto.*fp32.*bf16"):
        resolve_precision("fp16", "cpu")


def test_auto_follows_the_cpu_capability(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"   # asked for explicitly: emulated, but honoured


def test_detection_reads_torch_and_the_environment_forces_the_fallback(monkeypatch):
    monkeypatch.delenv(NO_NATIVE_BF16_ENV, raising=False)
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert cpu_has_native_bf16() == native
    monkeypatch.setenv(NO_NATIVE_BF16_ENV, "0")
    assert cpu_has_native_bf16() == native
    monkeypatch.setenv(NO_NATIVE_BF16_ENV, "1")
    assert cpu_has_native_bf16() is False
    assert resolve_precision("auto", "cpu") == "fp32"


def test_forced_fallback_trains_everything_in_fp32(monkeypatch):
    monkeypatch.setenv(NO_NATIVE_BF16_ENV, "1")
    x_train, y_train, x_test, y_test = toy_task()
    mlp = MLPLearner(x_train, y_train, x_test, y_test, hidden=(16,), epochs=1, device="cpu")
    assert mlp.precision == "fp32" and mlp.X.dtype == torch.float32 and not mlp.name.endswith("_bf16")
    x, y = toy_images(64)
    metrics = train_classifier(build_net("resnet20", num_classes=4), x, y, epochs=1, batch_size=32, device="cpu", show_progress=False)
    assert metrics["precision"] == "fp32"
    assert study_precision({"learner": "mlp"}, "cpu") == "fp32"


def test_study_precision_applies_bf16_to_the_learners_that_train_with_it():
    assert study_precision({"learner": "mlp"}, "cpu", "bf16") == "bf16"
    assert study_precision({"learner": "net"}, "cpu", "bf16") == "bf16"
    assert study_precision({"learner": "linear"}, "cpu", "bf16") == "fp32"
    assert study_precision({"learner": "knn"}, "cpu", "fp32") == "fp32"


# --------------------------------------------------------------------------------------- network training
def test_bf16_training_runs_under_autocast_with_fp32_weights_and_optimizer_state(monkeypatch):
    x, y = toy_images()
    out_dtypes, state_dtypes = set(), set()
    step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        result = step(self, *args, **kwargs)
        state_dtypes.update(s["momentum_buffer"].dtype for s in self.state.values())
        return result

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    torch.manual_seed(0)
    model = build_net("resnet20", num_classes=4)
    before = model.conv1.weight.detach().clone()
    model.fc.register_forward_hook(lambda m, i, o: out_dtypes.add(o.dtype) if m.training else None)
    metrics = train_classifier(model, x, y, epochs=2, batch_size=32, device="cpu", precision="bf16",
                               show_progress=False)
    assert metrics["precision"] == "bf16"
    assert out_dtypes == {torch.bfloat16}
    assert state_dtypes == {torch.float32}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not torch.equal(model.conv1.weight, before)


def test_bf16_and_fp32_backbones_learn_alike_from_the_same_seed():
    x, y = toy_images(256)
    acc = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = build_net("resnet20", num_classes=4)
        train_classifier(model, x, y, epochs=3, batch_size=32, lr=0.05, device="cpu", precision=precision,
                         show_progress=False)
        acc[precision] = float((predict_logits(model, x, "cpu", precision=precision).argmax(1) == y).mean())
    assert acc["fp32"] > 0.6 and abs(acc["bf16"] - acc["fp32"]) < 0.15, acc


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_embed_runs_the_network_once_and_gives_predict_logits(precision):
    x, _ = toy_images(40)
    torch.manual_seed(0)
    model = build_net("resnet20", num_classes=4).eval()
    calls = []
    model.layers.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    emb, logits = embed(model, x, "cpu", batch_size=16, precision=precision)
    assert calls == [16, 16, 8]
    assert emb.shape == (40, 64) and emb.dtype == np.float32
    np.testing.assert_array_equal(logits, predict_logits(model, x, "cpu", batch_size=16, precision=precision))
    if precision == "bf16":   # really another arithmetic, close to fp32
        ref = predict_logits(model, x, "cpu", batch_size=16, precision="fp32")
        assert 0 < np.abs(logits - ref).max() < 0.1 * np.abs(ref).max()


def test_flip_average_embeds_both_views_and_their_mean_logits():
    x, _ = toy_images(24)
    torch.manual_seed(0)
    model = build_net("resnet20", num_classes=4).eval()
    emb, logits = embed(model, x, "cpu", precision="fp32", flip_average=True)
    plain, plain_logits = embed(model, x, "cpu", precision="fp32")
    mirrored, mirrored_logits = embed(model, np.ascontiguousarray(x[:, :, ::-1]), "cpu", precision="fp32")
    np.testing.assert_allclose(emb, (plain + mirrored) / 2, atol=1e-5)
    np.testing.assert_allclose(logits, (plain_logits + mirrored_logits) / 2, atol=1e-5)
    assert np.abs(emb - plain).max() > 1e-3                # the mirror image really is another view


# ------------------------------------------------------------------------------------------------ the MLP
def test_bf16_mlp_step_updates_fp32_master_weights():
    x_train, y_train, x_test, y_test = toy_task()
    learner = MLPLearner(x_train, y_train, x_test, y_test, hidden=(32, 16), epochs=1, batch_size=400,
                         device="cpu", precision="bf16", compile=False)
    assert learner.X.dtype == torch.bfloat16 and learner.name.endswith("_bf16")
    from memgen.influence.learners import mlp_init

    init = mlp_init(learner.sizes, 3)
    params = learner.train_batched(np.arange(400)[None], [3])   # one full batch: one step
    for (w, b), (w0, b0) in zip(params, init):
        assert w.dtype == torch.float32 and b.dtype == torch.float32
        step = (w[0] - w0).abs()
        assert step.max() > 0
        # the update is below bf16 resolution for many weights: fp32 masters keep it, bf16 weights would not
        assert ((step > 0) & (step < w0.abs() * 2.0 ** -9)).any()


def test_bf16_mlp_learns_like_fp32_and_rejects_float64_masters():
    x_train, y_train, x_test, y_test = toy_task(n=800, n_test=300, seed=2)
    subs, seeds = [np.arange(0, 800, 1), np.arange(0, 700, 1)], [1, 2]
    acc = {}
    for precision in ("fp32", "bf16"):
        learner = MLPLearner(x_train, y_train, x_test, y_test, hidden=(64, 32), epochs=6, batch_size=32, lr=0.05,
                             device="cpu", precision=precision, compile=False)
        acc[precision] = learner.fit_predict(subs, seeds).correct_test.mean()
    assert acc["fp32"] > 0.8 and abs(acc["bf16"] - acc["fp32"]) < 0.05, acc
    with pytest.raises(ValueError, match="float64.*fp32"):
        MLPLearner(x_train, y_train, x_test, y_test, dtype=torch.float64, device="cpu", precision="bf16")


def test_net_learner_passes_its_precision_to_training(monkeypatch):
    import memgen.train as train

    x, y = toy_images(48)
    learner = NetLearner(x[:32], y[:32], x[32:], y[32:], recipe(arch="resnet20", epochs=1, batch_size=16, lr=0.05,
                                                                augment=False, flip=False, max_steps=2), n_classes=4, device="cpu",
                         precision="bf16")
    assert learner.precision == "bf16" and learner.name.endswith("_bf16")
    seen, original = [], train.train_classifier

    def spy(*args, **kwargs):
        metrics = original(*args, **kwargs)
        seen.append(metrics["precision"])
        return metrics

    monkeypatch.setattr(train, "train_classifier", spy)
    learner.fit_predict([np.arange(20)], [0])
    assert seen == ["bf16"]
