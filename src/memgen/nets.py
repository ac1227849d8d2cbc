"""Backbone networks: ResNet-20 for CIFAR (He et al. 2016), a small MNIST CNN, and a LeNet-style net.

Every network

* takes a float tensor ``[N, C, H, W]`` with pixel values in ``[0, 1]`` and normalizes it internally with
  per-channel ``input_mean`` / ``input_std`` buffers (identity until :meth:`set_normalization` is called;
  :func:`memgen.train.train_classifier` sets them from the training images), so checkpoints carry their
  own preprocessing;
* has ``embed(x)`` returning the representation the classifier head reads (for ResNet-20 the 64-d vector
  after global average pooling), and ``forward(x) = head(embed(x))``;
* records its constructor arguments in ``config`` so :func:`build_net` can rebuild it from a checkpoint.
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


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
    ``64 * width``-d vector after global average pooling.
    """

    def __init__(self, num_classes: int = 10, depth: int = 20, in_channels: int = 3, width: int = 1):
        super().__init__(in_channels)
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.config = {"arch": "resnet", "num_classes": num_classes, "depth": depth,
                       "in_channels": in_channels, "width": width}
        widths = [16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
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
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out" if isinstance(m, nn.Conv2d) else "fan_in",
                                        nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.fc.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(self.normalize(x))))
        x = self.layers(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


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
_ARCHS = {"resnet": ResNetCifar, "mnist_cnn": MnistCNN, "lenet": LeNet}
ALIASES = {"resnet20": ("resnet", {"depth": 20}), "resnet32": ("resnet", {"depth": 32}),
           "resnet56": ("resnet", {"depth": 56})}


def build_net(arch: str | dict, **kwargs) -> nn.Module:
    """Build a network by name (``resnet20``, ``resnet``, ``mnist_cnn``, ``lenet``) or from a ``config`` dict."""
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
