import numpy as np
import pytest
import torch

from memgen.runtime import seed_everything
from memgen.nets import LeNet, MnistCNN, build_net, count_parameters
from memgen.train import (Lookahead, alternating_flips, augment_batch, channel_stats, embed, load_checkpoint, lr_factor,
                          predict_logits, recipe_kwargs, save_checkpoint, train_classifier)

from conftest import recipe


pytestmark = pytest.mark.usefixtures("single_torch_thread")



def resnet20(num_classes: int):
    return build_net("resnet20", num_classes=num_classes)

def _toy_images(n=256, size=16, channels=3, n_classes=4, seed=0):
    """Class-dependent colour + bright quadrant, with noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    x = rng.integers(0, 60, (n, size, size, channels)).astype(np.int64)
    half = size // 2
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, r * half:(r + 1) * half, q * half:(q + 1) * half, c % channels] += 180
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def test_resnet20_shapes_and_parameter_count():
    model = resnet20(10)
    n = count_parameters(model)
    assert 260_000 < n < 280_000  # He et al. 2016: 0.27M
    x = torch.rand(3, 3, 32, 32)
    assert model(x).shape == (3, 10)
    assert model.embed(x).shape == (3, 64)
    # the classifier is linear in the embedding
    torch.testing.assert_close(model(x), model.fc(model.embed(x)))
    assert len([m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]) == 19  # 19 conv + 1 fc = 20 layers


def test_small_nets_shapes():
    assert MnistCNN()(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert MnistCNN().embed(torch.rand(2, 1, 28, 28)).shape == (2, 128)
    assert LeNet()(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert LeNet(in_channels=3, image_size=32, num_classes=2)(torch.rand(2, 3, 32, 32)).shape == (2, 2)
    assert LeNet().embed(torch.rand(2, 1, 28, 28)).shape == (2, 84)
    assert count_parameters(LeNet()) < 100_000
    with pytest.raises(ValueError, match="28x28 or 32x32"):
        LeNet(image_size=30)
    with pytest.raises(ValueError, match="6n\\+2"):
        build_net("resnet", depth=21)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_net("vgg")


def test_build_net_from_config_roundtrip():
    for model in (resnet20(3), MnistCNN(num_classes=5), LeNet(image_size=32)):
        clone = build_net(model.config)
        assert type(clone) is type(model)
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        assert {k: v.shape for k, v in clone.state_dict().items()} == shapes


def test_normalization_is_part_of_the_model():
    model = resnet20(10).eval()
    x = torch.rand(2, 3, 32, 32)
    before = model(x)
    model.set_normalization([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    assert not torch.allclose(before, model(x))
    assert torch.equal(model.input_std, torch.full((3,), 0.25))
    with pytest.raises(ValueError, match="channel"):
        model.set_normalization([0.5], [0.2])
    x_u8 = np.random.default_rng(0).integers(0, 256, (50, 4, 4, 3)).astype(np.uint8)
    mean, std = channel_stats(x_u8, chunk=7)
    np.testing.assert_allclose(mean, x_u8.reshape(-1, 3).mean(0) / 255, rtol=1e-5)
    np.testing.assert_allclose(std, x_u8.reshape(-1, 3).std(0) / 255, rtol=1e-4)


def test_augment_batch_crops_and_flips():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.int64).reshape(2, 1, 6, 6).repeat(200, 1, 1, 1) + 1
    out = augment_batch(x, torch.Generator().manual_seed(0), pad=2, flip=True)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    n_flipped = 0
    for i in range(len(x)):
        found = None
        for flipped in (False, True):
            for oy in range(5):
                for ox in range(5):
                    crop = padded[i, :, oy:oy + 6, ox:ox + 6]
                    if torch.equal(crop.flip(2) if flipped else crop, out[i]):
                        found = flipped
        assert found is not None, f"sample {i} is not a crop of its padded input"
        n_flipped += found
    assert 100 < n_flipped < 300  # about half of 400
    # same generator seed -> same augmentation
    again = augment_batch(x, torch.Generator().manual_seed(0), pad=2, flip=True)
    assert torch.equal(out, again)
    assert torch.equal(augment_batch(x, torch.Generator(), pad=0, flip=False), x)


def test_reflect_padding_crops_show_the_mirrored_border_not_zeros():
    x = (1 + torch.arange(50 * 36) % 250).to(torch.uint8).reshape(50, 1, 6, 6)
    out = augment_batch(x, torch.Generator().manual_seed(0), pad=2, flip=False, pad_mode="reflect")
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2), mode="reflect")
    for i in range(len(x)):
        assert any(torch.equal(padded[i, :, oy:oy + 6, ox:ox + 6], out[i]) for oy in range(5) for ox in range(5))
    assert (out > 0).all()   # the pixels run from 1: a zero-padded shift would show zeros
    assert (augment_batch(x, torch.Generator().manual_seed(0), pad=2, flip=False) == 0).any()
    with pytest.raises(ValueError, match="pad_mode"):
        train_classifier(MnistCNN(num_classes=4, image_size=16), *_toy_images(32, 16, 1), epochs=1,
                         pad_mode="edge", device="cpu", show_progress=False)


def test_bias_decay_shrinks_the_biases_at_the_weights_decay_per_step():
    x, y = _toy_images(64, size=16, channels=1)
    lr, wd = 0.05, 0.01

    def one_step(bias_decay):
        seed_everything(0)
        model = MnistCNN(num_classes=4, image_size=16)
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        train_classifier(model, x, y, epochs=1, batch_size=32, lr=lr, schedule="constant", momentum=0.0,
                         weight_decay=wd, bias_lr_scale=10.0, bias_decay=bias_decay, max_steps=1, device="cpu",
                         show_progress=False)
        return before, {k: v.detach() for k, v in model.named_parameters()}

    before, plain = one_step(False)
    _, decayed = one_step(True)
    for name, value in plain.items():
        shrink = -lr * wd * before[name] if name.endswith("bias") else torch.zeros_like(value)
        torch.testing.assert_close(decayed[name] - value, shrink, rtol=1e-3, atol=1e-7)
    assert any(name.endswith("bias") and before[name].abs().max() > 0 for name in before)


def test_whiten_bias_learns_only_its_first_epochs():
    x, y = _toy_images(128)
    seed_everything(0)
    model = build_net("airbench", num_classes=4, widths=(8, 16, 16))
    seen = {}

    def record(epoch, *_):
        seen[epoch] = model.whiten.bias.detach().clone()

    train_classifier(model, x, y, epochs=3, batch_size=32, lr=0.2, schedule="triangle", bias_lr_scale=8.0,
                     whiten_bias_epochs=1, device="cpu", seed=0, record=record, show_progress=False)
    assert seen[0].abs().max() > 0                                   # learned from zero in the first epoch
    torch.testing.assert_close(seen[1], seen[0], rtol=0, atol=0)     # and not after it
    torch.testing.assert_close(seen[2], seen[0], rtol=0, atol=0)
    assert model.whiten.bias.requires_grad                          # the net leaves training as it came
    with pytest.raises(ValueError, match="no whitening layer"):
        train_classifier(MnistCNN(num_classes=4, image_size=16), *_toy_images(32, 16, 1), epochs=1,
                         whiten_bias_epochs=1, device="cpu", show_progress=False)


def test_lr_schedules():
    assert lr_factor("onecycle", 0.0) == pytest.approx(0.04)
    assert lr_factor("onecycle", 0.15) == pytest.approx(1.0)
    assert lr_factor("onecycle", 0.999) < 1e-3
    assert lr_factor("cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor("cosine", 0.5) == pytest.approx(0.5)
    assert [lr_factor("step", t) for t in (0.1, 0.6, 0.8)] == pytest.approx([1.0, 0.1, 0.01])
    with pytest.raises(ValueError, match="schedule"):
        lr_factor("linear", 0.5)


def test_triangle_schedule_rises_to_its_peak_then_falls_to_a_floor():
    assert lr_factor("triangle", 0.0) == pytest.approx(0.2)
    assert lr_factor("triangle", 0.23) == pytest.approx(1.0)
    assert lr_factor("triangle", 1.0) == pytest.approx(0.07)
    assert lr_factor("triangle", 0.1) < lr_factor("triangle", 0.2) and lr_factor("triangle", 0.5) > lr_factor("triangle", 0.9)


def test_alternating_flips_mirror_each_image_in_one_of_every_two_epochs():
    first = alternating_flips(1000, 0, torch.Generator().manual_seed(0))
    assert 400 < int(first.sum()) < 600
    assert bool((first ^ alternating_flips(1000, 1, first=first)).all())
    assert torch.equal(alternating_flips(1000, 2, first=first), first)


def test_training_with_alternating_flips_mirrors_each_image_every_other_epoch(monkeypatch):
    import memgen.train as train

    x, y = _toy_images(64, size=8, channels=1)
    masks, batches = [], []
    original = train.augment_batch

    def spy(xb, gen, flip_mask=None, **kwargs):
        masks.append(flip_mask)
        return original(xb, gen, flip_mask=flip_mask, **kwargs)

    monkeypatch.setattr(train, "augment_batch", spy)
    train_classifier(MnistCNN(num_classes=4, image_size=8), x, y, epochs=3, batch_size=16, alternating_flip=True,
                     device="cpu", show_progress=False, record=lambda epoch, idx, *_: batches.append((epoch, idx)))
    flipped = np.zeros((3, 64), dtype=int)
    for (epoch, idx), mask in zip(batches, masks):
        flipped[epoch, idx.numpy()] = mask.numpy()
    assert (flipped[0] ^ flipped[1]).all() and (flipped[0] == flipped[2]).all() and 16 < flipped[0].sum() < 48


def test_lookahead_pulls_the_network_to_its_average_every_few_steps():
    model = torch.nn.Linear(2, 1)
    start = model.weight.detach().clone()
    average = Lookahead(model, every=2, base=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    average.step(1, total_steps=4)                      # not a multiple of every: the network is left alone
    torch.testing.assert_close(model.weight.detach(), start + 1)
    average.step(2, total_steps=4)                      # forgets at 0.5 ** 2 * (2 / 4) ** 3
    decay = 0.5 ** 2 * 0.5 ** 3
    blended = decay * start + (1 - decay) * (start + 1)
    torch.testing.assert_close(model.weight.detach(), blended)
    with torch.no_grad():
        model.weight.add_(1.0)
    average.finish()                                    # the network ends as the average
    torch.testing.assert_close(model.weight.detach(), blended)


def test_bias_lr_scale_moves_only_the_biases_faster():
    x, y = _toy_images(64, size=16, channels=1)

    def one_step(scale):
        seed_everything(0)
        model = MnistCNN(num_classes=4, image_size=16)
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        train_classifier(model, x, y, epochs=1, batch_size=32, lr=0.05, max_steps=1, bias_lr_scale=scale,
                         device="cpu", show_progress=False)
        return {k: v.detach() - before[k] for k, v in model.named_parameters()}

    plain, scaled = one_step(1.0), one_step(10.0)
    for name, step in plain.items():
        expected = 10 * step if name.endswith("bias") else step
        torch.testing.assert_close(scaled[name], expected, rtol=1e-3, atol=1e-6)
    assert any(name.endswith("bias") and step.abs().max() > 0 for name, step in plain.items())


def test_patch_whitening_decorrelates_the_training_patches():
    from memgen.nets import PatchWhitening

    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.normal(size=(300, 1, 12, 12))).float()
    x = torch.cat([base, 0.5 * base + 0.1 * torch.randn(300, 1, 12, 12), -base], 1)   # strongly correlated channels
    layer = PatchWhitening(3, 2)
    layer.fit(x)
    z = layer(x)
    assert z.shape == (300, 24, 11, 11)
    half = z[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = (half.T @ half / len(half)).detach()
    # unit variance along the data's directions (a direction with no variance stays at 0), no correlation
    off = covariance - torch.diag(covariance.diag())
    assert off.abs().max() < 0.02
    assert (covariance.diag()[:8] > 0.9).all()
    torch.testing.assert_close(z[:, 12:], -z[:, :12] + 2 * layer.bias[12:].view(1, -1, 1, 1))
    assert not layer.weight.requires_grad and layer.bias.requires_grad


def test_airbench_and_whitened_resnet_fit_their_first_layer_and_learn():
    x, y = _toy_images(256)
    for arch, kwargs in (("airbench", {"widths": (16, 32, 32)}), ("resnet20_whitened", {})):
        seed_everything(0)
        model = build_net(arch, num_classes=4, **kwargs)
        metrics = train_classifier(model, x, y, epochs=4, batch_size=32, lr=0.2 if arch == "airbench" else 0.05,
                                   schedule="triangle", momentum=0.85, bias_lr_scale=8.0, lookahead=True,
                                   label_smoothing=0.2, alternating_flip=True, pad=2, device="cpu", seed=0,
                                   x_val=x[:64], y_val=y[:64], show_progress=False)
        assert model.whiten.weight.abs().sum() > 0                      # fitted to the images, not left at init
        assert metrics["val_accuracy"] > 0.6, (arch, metrics["val_accuracy"])
        assert metrics["lookahead"] and metrics["alternating_flip"] and metrics["bias_lr_scale"] == 8.0
        clone = build_net(model.config)
        clone.load_state_dict(model.state_dict())
        np.testing.assert_allclose(predict_logits(clone, x[:8], "cpu"), predict_logits(model, x[:8], "cpu"))


def test_translate_average_adds_the_shifted_views_at_a_quarter_each():
    x, _ = _toy_images(6)
    model = build_net("airbench", num_classes=4, widths=(8, 16, 16)).eval()
    model.init_from_images(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)
    emb, logits = embed(model, x, "cpu", precision="fp32", flip_average=True, translate_average=True)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")

    def both_views(images):
        e, _ = embed(model, np.ascontiguousarray(images), "cpu", precision="fp32", flip_average=True)
        return e

    expected = both_views(x) / 2 + (both_views(padded[:, :-2, :-2]) + both_views(padded[:, 2:, 2:])) / 4
    np.testing.assert_allclose(emb, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits, model.fc(torch.from_numpy(emb)).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_training_reduces_loss_and_predicts():
    x, y = _toy_images(256)
    model = resnet20(4)
    init_logits = predict_logits(model, x, "cpu")
    init_loss = torch.nn.functional.cross_entropy(torch.from_numpy(init_logits), torch.from_numpy(y)).item()
    metrics = train_classifier(model, x, y, epochs=3, batch_size=32, lr=0.05, schedule="onecycle", device="cpu",
                               seed=0, x_val=x[:64], y_val=y[:64], show_progress=False)
    logits = predict_logits(model, x, "cpu")
    loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item()
    assert loss < init_loss - 0.3
    assert metrics["loss_curve"][-1] < metrics["loss_curve"][0]
    assert (logits.argmax(1) == y).mean() > 0.6
    assert metrics["steps"] == 3 * (256 // 32)
    assert metrics["device"] == "cpu" and metrics["images_per_s"] > 0
    assert metrics["val_accuracy"] == pytest.approx(float((logits[:64].argmax(1) == y[:64]).mean()))
    np.testing.assert_allclose(model.input_mean.numpy(), channel_stats(x)[0])
    emb, emb_logits = embed(model, x[:5], "cpu")
    assert emb.shape == (5, 64)
    np.testing.assert_array_equal(emb_logits, predict_logits(model, x[:5], "cpu"))


def test_training_is_deterministic_given_seed():
    x, y = _toy_images(96, size=16, channels=1)

    def run(seed):
        seed_everything(seed)  # initialization is the caller's; train_classifier seeds shuffling + augmentation
        model = MnistCNN(num_classes=4, image_size=16)
        train_classifier(model, x, y, epochs=1, batch_size=32, lr=0.05, label_smoothing=0.1, device="cpu",
                         seed=seed, show_progress=False)
        return model.state_dict()

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


RECIPE = recipe(arch="mnist_cnn", epochs=2, batch_size=32, lr=0.1)


def test_recipe_settings_reach_the_optimizer():
    """A config entry's weight_decay and pad change training."""
    kwargs = recipe_kwargs({**RECIPE, "weight_decay": 0.05, "pad": 2, "augment": False, "flip": False})
    assert kwargs["weight_decay"] == 0.05 and kwargs["pad"] == 2 and kwargs["flip"] is False
    assert kwargs["lr"] == 0.1 and kwargs["epochs"] == 2 and "arch" not in kwargs
    x, y = _toy_images(96, size=16, channels=1)

    def weight_norm(weight_decay):
        seed_everything(0)
        model = MnistCNN(num_classes=4, image_size=16)
        metrics = train_classifier(model, x, y, **recipe_kwargs({**RECIPE, "weight_decay": weight_decay}),
                                   device="cpu", show_progress=False)
        assert metrics["weight_decay"] == weight_decay
        return sum(float(p.detach().norm() ** 2) for p in model.parameters() if p.ndim > 1)

    assert weight_norm(0.5) < 0.9 * weight_norm(0.0)


def test_checkpoint_roundtrip(tmp_path):
    x, y = _toy_images(64, size=28, channels=1)
    model = LeNet(num_classes=4)
    metrics = train_classifier(model, x, y, epochs=1, batch_size=32, augment=False, device="cpu",
                               show_progress=False)
    assert metrics["flip"] is False
    save_checkpoint(tmp_path / "m.pt", model, metrics)
    loaded, loaded_metrics = load_checkpoint(tmp_path / "m.pt")
    np.testing.assert_array_equal(predict_logits(loaded, x, "cpu"), predict_logits(model, x, "cpu"))
    assert loaded_metrics["steps"] == metrics["steps"]


def test_train_rejects_bad_input():
    x, y = _toy_images(32)
    with pytest.raises(TypeError, match="uint8"):
        train_classifier(resnet20(4), x.astype(np.float32), y, epochs=1, device="cpu", show_progress=False)
    with pytest.raises(ValueError, match="num_classes"):
        train_classifier(resnet20(2), x, y, epochs=1, device="cpu", show_progress=False)
    with pytest.raises(ValueError, match="labels"):
        train_classifier(resnet20(4), x, y[:10], epochs=1, device="cpu", show_progress=False)


@pytest.mark.gpu
def test_gpu_training_bf16_channels_last():
    x, y = _toy_images(512)
    model = resnet20(4)
    metrics = train_classifier(model, x, y, epochs=4, batch_size=64, lr=0.05, device="cuda", seed=0,
                               show_progress=False)
    assert metrics["precision"] == "bf16-autocast" and metrics["device"] == "cuda"
    assert metrics["loss_curve"][-1] < metrics["loss_curve"][0]
    # the GPU-side augmentation draws the same crops/flips as on CPU
    xt = torch.from_numpy(x[:64]).permute(0, 3, 1, 2).contiguous()
    cpu = augment_batch(xt, torch.Generator().manual_seed(3))
    gpu = augment_batch(xt.cuda(), torch.Generator().manual_seed(3))
    assert torch.equal(cpu, gpu.cpu())
    assert (predict_logits(model, x, "cuda").argmax(1) == y).mean() > 0.6
