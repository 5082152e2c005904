"""Model registry. Every model takes [0, 1] images and normalises inside ``forward``.

Keeping normalisation inside the model means epsilon is always in pixel units and
torchattacks sees the input range it expects (DESIGN.md, conventions).
The auxiliary-network variant used by GREAT (paper supplement) is the same architecture
with LeakyReLU(0.2) and no input normalisation: it reads gradient tensors, not images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from bench.errors import BenchError
from bench.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """What a model factory needs to know about its input."""

    in_channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    leaky: bool = False      # LeakyReLU(0.2) instead of ReLU (auxiliary networks)
    normalize: bool = True   # False for networks whose input is a gradient tensor


MODELS: Registry[Callable[[ModelSpec], nn.Module]] = Registry("model")


class Normalize(nn.Module):
    """(x - mean) / std as the model's first layer."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def _act(spec: ModelSpec) -> nn.Module:
    return nn.LeakyReLU(0.2) if spec.leaky else nn.ReLU()


def _front(spec: ModelSpec) -> nn.Module:
    return Normalize(spec.mean, spec.std) if spec.normalize else nn.Identity()


def _conv_bn(cin, cout, spec, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), _act(spec)]


@MODELS.register("small-cnn")
def small_cnn(spec: ModelSpec) -> nn.Module:
    """Small CNN for 28x28 (the `quick` preset): two conv-BN blocks with pooling, two linears."""
    feat = spec.image_size // 4
    return nn.Sequential(
        _front(spec),
        *_conv_bn(spec.in_channels, 16, spec), nn.MaxPool2d(2),
        *_conv_bn(16, 32, spec), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * feat * feat, 64), _act(spec), nn.Linear(64, spec.num_classes),
    )


@MODELS.register("cnn5")
def cnn5(spec: ModelSpec) -> nn.Module:
    """The paper's 5-layer CNN (supplement): 3 convs 3x3 pad 1 with 32/64/128 channels, the
    second and third of stride 2, then linear 128 and the classifier; BN + ReLU after all
    but the last layer."""
    feat = -(-(-(-spec.image_size // 2)) // 2)  # two stride-2 convs (ceil)
    return nn.Sequential(
        _front(spec),
        *_conv_bn(spec.in_channels, 32, spec),
        *_conv_bn(32, 64, spec, stride=2),
        *_conv_bn(64, 128, spec, stride=2),
        nn.Flatten(), nn.Linear(128 * feat * feat, 128, bias=False), nn.BatchNorm1d(128), _act(spec),
        nn.Linear(128, spec.num_classes),
    )


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, spec: ModelSpec):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), _act(spec),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.short = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = _act(spec)

    def forward(self, x):
        return self.act(self.body(x) + self.short(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet (3x3 stem, no max-pool): ``features`` then pooling + linear."""

    def __init__(self, spec: ModelSpec, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512)):
        super().__init__()
        layers = [_front(spec), *_conv_bn(spec.in_channels, widths[0], spec)]
        cin = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1, spec))
                cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, spec.num_classes))

    def forward(self, x):
        return self.head(self.features(x))


@MODELS.register("resnet18")
def resnet18(spec: ModelSpec) -> nn.Module:
    """ResNet-18 for 32x32 (and 28x28) inputs, as in the paper's CIFAR-10/SVHN experiments."""
    return ResNet(spec, (2, 2, 2, 2))


@MODELS.register("resnet11")
def resnet11(spec: ModelSpec) -> nn.Module:
    """ResNet-11 (4 residual blocks of 2 convs + stem + linear): the paper's auxiliary
    classifier for the larger distillation and multi-task settings."""
    return ResNet(spec, (1, 1, 1, 1))


def build_model(name: str, spec: ModelSpec) -> nn.Module:
    factory = MODELS.get(name)
    model = factory(spec)
    if not isinstance(model, nn.Module):
        raise BenchError(f"model factory {name!r} returned {type(model).__name__}, not an nn.Module")
    return model


def aux_spec(spec: ModelSpec, num_classes: int | None = None) -> ModelSpec:
    """The auxiliary network's spec: LeakyReLU(0.2), no image normalisation."""
    return ModelSpec(spec.in_channels, spec.image_size, num_classes or spec.num_classes,
                     leaky=True, normalize=False)
