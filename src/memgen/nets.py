"""Backbone networks: ResNet-20 for CIFAR (He et al. 2016), a fast-training CIFAR net of the airbench kind
(Jordan 2024), a small MNIST CNN, and a LeNet-style net.

Every network

* takes a float tensor ``[N, C, H, W]`` with pixel values in ``[0, 1]`` and normalizes it internally with
  per-channel ``input_mean`` / ``input_std`` buffers (identity until :meth:`set_normalization` is called;
  :func:`memgen.train.train_classifier` sets them from the training images), so checkpoints carry their
  own preprocessing;
* has ``embed(x)`` returning the representation the classifier head reads (for ResNet-20 the 64-d vector
  after global average pooling), and ``forward(x) = head(embed(x))``;
* records its constructor arguments in ``config`` so :func:`build_net` can rebuild it from a checkpoint;
* may set weights from the training images before training (:meth:`init_from_images`: a patch-whitening first
  layer); :func:`memgen.train.train_classifier` calls it once the normalization is set.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class _Normalized(nn.Module):
    """Base class: per-channel input normalization held in buffers, plus the ``config`` record."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))

    def set_normalization(self, mean, std) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.numel() != self.input_mean.numel() or std.numel() != self.input_std.numel():
            raise ValueError(f"normalization needs {self.input_mean.numel()} channel values, got "
                             f"mean {mean.numel()} / std {std.numel()}; check the image channel count")
        if (std <= 0).any():
            raise ValueError("normalization std must be positive; the training images are constant in a channel")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean.view(1, -1, 1, 1).to(x.dtype)) / self.input_std.view(1, -1, 1, 1).to(x.dtype)

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def init_from_images(self, x: torch.Tensor) -> None:
        """Initialize the layers that are fitted to the data, from float images ``[N, C, H, W]`` in ``[0, 1]``."""
        for module in self.modules():
            if isinstance(module, PatchWhitening):
                module.fit(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


# ------------------------------------------------------------------------------------------- patch whitening
class PatchWhitening(nn.Conv2d):
    """A fixed first layer that whitens ``kernel_size`` x ``kernel_size`` patches (Page 2019; Jordan 2024): its
    filters are the eigenvectors of the training patches' second-moment matrix scaled by 1/sqrt(eigenvalue + eps),
    each with its negative (2 x C x k x k output channels), so the next layer sees decorrelated, unit-variance
    patch coordinates from the first step. Only its bias learns; :meth:`fit` sets the filters."""

    def __init__(self, in_channels: int, kernel_size: int = 2, eps: float = 5e-4):
        dim = in_channels * kernel_size * kernel_size
        super().__init__(in_channels, 2 * dim, kernel_size, bias=True)
        self.eps = eps
        self.weight.requires_grad_(False)
        nn.init.zeros_(self.bias)

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Set the filters from normalized images ``[N, C, H, W]`` (a few thousand are plenty)."""
        c, k = self.in_channels, self.kernel_size[0]
        patches = F.unfold(x.float(), k).transpose(1, 2).reshape(-1, c * k * k)
        eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        filters = (eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + self.eps)[:, None]).reshape(-1, c, k, k)
        filters = filters.flip(0)   # the largest-variance directions first
        self.weight.copy_(torch.cat([filters, -filters]))


# ----------------------------------------------------------------------------------------------- ResNet-20
class BasicBlock(nn.Module):
    """3x3-3x3 residual block; option-A shortcut (strided identity, zero-padded channels) as in He et al."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad = planes - in_planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(_Normalized):
    """CIFAR ResNet (6n+2 layers): 3 stages of ``n`` basic blocks with 16/32/64 channels (x ``width``).

    ``ResNetCifar(depth=20)`` is ResNet-20 (0.27M parameters for 10 classes); ``embed`` is the
    ``64 * width``-d vector after global average pooling. ``whiten``: the first convolution reads a 2x2
    :class:`PatchWhitening` layer (24 channels for RGB, padded to keep the image size) instead of the pixels.
    """

    def __init__(self, num_classes: int = 10, depth: int = 20, in_channels: int = 3, width: int = 1,
                 whiten: bool = False):
        super().__init__(in_channels)
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.config = {"arch": "resnet", "num_classes": num_classes, "depth": depth,
                       "in_channels": in_channels, "width": width, "whiten": whiten}
        widths = [16 * width, 32 * width, 64 * width]
        self.whiten = PatchWhitening(in_channels, 2) if whiten else None
        stem_channels = self.whiten.out_channels if whiten else in_channels
        self.conv1 = nn.Conv2d(stem_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, in_planes = [], widths[0]
        for stage, planes in enumerate(widths):
            for b in range(n):
                stride = 2 if stage > 0 and b == 0 else 1
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.embed_dim = widths[-1]
        self.fc = nn.Linear(self.embed_dim, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and not isinstance(m, PatchWhitening):
                nn.init.kaiming_normal_(m.weight, mode="fan_out" if isinstance(m, nn.Conv2d) else "fan_in",
                                        nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.fc.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if self.whiten is not None:   # 2x2 patches of the image padded by one row and column: the size is kept
            x = F.gelu(self.whiten(F.pad(x, (0, 1, 0, 1), mode="replicate")))
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


# -------------------------------------------------------------------------------------------------- airbench
class ScaledLinear(nn.Linear):
    """A linear layer whose output is multiplied by a constant (the temperature of airbench's logits)."""

    def __init__(self, in_features: int, out_features: int, scale: float):
        super().__init__(in_features, out_features, bias=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.scale


def _conv_bn(channels_in: int, channels_out: int, bn_momentum: float) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A 3x3 convolution that starts as the identity on its first channels (Dirac init), and a BatchNorm whose
    scale stays 1 (only its bias learns)."""
    conv = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
    nn.init.dirac_(conv.weight.data[:min(channels_in, channels_out)])
    bn = nn.BatchNorm2d(channels_out, momentum=bn_momentum, eps=1e-12)
    bn.weight.requires_grad_(False)
    return conv, bn


class ConvGroup(nn.Module):
    """conv - 2x2 max pool - BN - GELU - conv - BN - GELU."""

    def __init__(self, channels_in: int, channels_out: int, bn_momentum: float):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(channels_in, channels_out, bn_momentum)
        self.conv2, self.bn2 = _conv_bn(channels_out, channels_out, bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.bn1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.bn2(self.conv2(x)))


class Airbench(_Normalized):
    """The fast-training CIFAR-10 net of Jordan (2024, arXiv 2404.00498; airbench94): a 2x2
    :class:`PatchWhitening` layer and GELU, three :class:`ConvGroup` s of ``widths`` channels (32 -> 31 -> 15 ->
    7 -> 3 pixels), a 3x3 max pool to the ``widths[-1]``-d embedding, and a linear head without bias whose logits
    are scaled by ``logit_scale``. ``widths`` (64, 256, 256) is airbench94 (about 2.9x ResNet-20's multiply-adds
    per image); (64, 128, 128) about 1.3x."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, widths: tuple = (64, 256, 256),
                 bn_momentum: float = 0.4, logit_scale: float = 1 / 9):
        super().__init__(in_channels)
        widths = [int(w) for w in widths]
        if len(widths) != 3:
            raise ValueError(f"airbench needs 3 group widths, got {widths}")
        self.config = {"arch": "airbench", "num_classes": num_classes, "in_channels": in_channels,
                       "widths": widths, "bn_momentum": bn_momentum, "logit_scale": logit_scale}
        self.whiten = PatchWhitening(in_channels, 2)
        channels = [self.whiten.out_channels, *widths]
        self.groups = nn.Sequential(*[ConvGroup(a, b, bn_momentum) for a, b in zip(channels, channels[1:])])
        self.embed_dim = widths[-1]
        self.fc = ScaledLinear(self.embed_dim, num_classes, logit_scale)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(F.gelu(self.whiten(self.normalize(x))))
        return torch.flatten(F.adaptive_max_pool2d(x, 1), 1)


# ------------------------------------------------------------------------------------------------- MNIST CNN
class MnistCNN(_Normalized):
    """Small CNN for 28x28 grey images: conv32-conv64-pool, conv64-pool, fc128 (embedding), fc."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, embed_dim: int = 128):
        super().__init__(in_channels)
        self.config = {"arch": "mnist_cnn", "num_classes": num_classes, "in_channels": in_channels,
                       "image_size": image_size, "embed_dim": embed_dim}
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.proj = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, embed_dim), nn.ReLU(inplace=True))
        self.embed_dim = embed_dim
        self.fc = nn.Linear(embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(self.normalize(x)))


# ----------------------------------------------------------------------------------------------------- LeNet
class LeNet(_Normalized):
    """LeNet-5-style net for (binarized) 28x28 or 32x32 inputs: conv6(5x5)-pool-conv16(5x5)-pool-fc120-fc84-fc.

    28x28 inputs get 2 pixels of padding in the first convolution (the classic MNIST LeNet-5 setup), so both
    sizes reach the 16x5x5 feature map. ``embed`` is the 84-d penultimate layer.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28):
        super().__init__(in_channels)
        if image_size not in (28, 32):
            raise ValueError(f"LeNet supports 28x28 or 32x32 inputs, got {image_size}x{image_size}")
        self.config = {"arch": "lenet", "num_classes": num_classes, "in_channels": in_channels,
                       "image_size": image_size}
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2 if image_size == 28 else 0), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.proj = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
                                  nn.Linear(120, 84), nn.ReLU(inplace=True))
        self.embed_dim = 84
        self.fc = nn.Linear(84, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(self.normalize(x)))


# --------------------------------------------------------------------------------------------------- factory
_ARCHS = {"resnet": ResNetCifar, "airbench": Airbench, "mnist_cnn": MnistCNN, "lenet": LeNet}
ALIASES = {"resnet20": ("resnet", {"depth": 20}), "resnet32": ("resnet", {"depth": 32}),
           "resnet56": ("resnet", {"depth": 56}), "resnet20_whitened": ("resnet", {"depth": 20, "whiten": True}),
           "airbench94": ("airbench", {"widths": (64, 256, 256)}),
           "airbench_small": ("airbench", {"widths": (64, 128, 128)})}


def build_net(arch: str | dict, **kwargs) -> nn.Module:
    """Build a network by name (:data:`_ARCHS` or :data:`ALIASES`: ``resnet20``, ``airbench94``, ``mnist_cnn``, ...)
    or from a ``config`` dict."""
    if isinstance(arch, dict):
        kwargs = {**{k: v for k, v in arch.items() if k != "arch"}, **kwargs}
        arch = arch["arch"]
    if arch in ALIASES:
        arch, extra = ALIASES[arch]
        kwargs = {**extra, **kwargs}
    if arch not in _ARCHS:
        raise ValueError(f"unknown architecture '{arch}'; choose one of {sorted([*_ARCHS, *ALIASES])}")
    return _ARCHS[arch](**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
