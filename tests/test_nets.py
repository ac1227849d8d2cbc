import numpy as np
import pytest
import torch

from memgen.runtime import seed_everything
from memgen.nets import LeNet, MnistCNN, build_net, count_parameters
from memgen.train import augment_batch, channel_stats, embed, load_checkpoint, lr_factor, predict_logits, recipe_kwargs, save_checkpoint, train_classifier


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


def test_lr_schedules():
    assert lr_factor("onecycle", 0.0) == pytest.approx(0.04)
    assert lr_factor("onecycle", 0.15) == pytest.approx(1.0)
    assert lr_factor("onecycle", 0.999) < 1e-3
    assert lr_factor("cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor("cosine", 0.5) == pytest.approx(0.5)
    assert [lr_factor("step", t) for t in (0.1, 0.6, 0.8)] == pytest.approx([1.0, 0.1, 0.01])
    with pytest.raises(ValueError, match="schedule"):
        lr_factor("linear", 0.5)


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
    assert embed(model, x[:5], "cpu").shape == (5, 64)


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


RECIPE = {"arch": "mnist_cnn", "epochs": 2, "batch_size": 32, "lr": 0.1, "schedule": "onecycle", "weight_decay": 5e-4,
          "label_smoothing": 0.0, "augment": True, "flip": True, "pad": 4, "max_steps": None}


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
        return sum(float(p.norm() ** 2) for p in model.parameters() if p.ndim > 1)

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
