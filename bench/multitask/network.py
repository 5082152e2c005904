"""Shared encoder + per-task decoders (paper supplement, CIFAR-10 multi-task architecture).

- Encoders (registry ``ENCODERS``): ``resnet18`` is the standard CIFAR ResNet-18 minus its
  pooling and linear layer (the paper's setting, 512 x 4 x 4 features on 32 x 32 inputs);
  ``small-conv`` is a three-conv encoder for the offline 28 x 28 preset (32 x 7 x 7 features).
- Classification decoder: the removed pooling + linear layer.
- Dense decoders: one stage per factor of 2 between feature and image size (3 for ResNet-18
  on CIFAR-10, 2 for ``small-conv`` on 28 x 28); a stage is x2 upsampling, a conv-BN-ReLU
  and a residual block, then a 1x1 conv and a sigmoid (targets lie in [0, 1]).
- The task classifier (GREAT's auxiliary network): ResNet-11 style, 4 residual blocks with
  LeakyReLU(0.2) halving the channels of the gradient tensor, then pooling + linear.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn

from core.errors import BenchError
from bench.models import BasicBlock, ModelSpec, Normalize, ResNet, aux_spec
from core.registry import Registry

ENCODERS: Registry[Callable[[ModelSpec], nn.Module]] = Registry("multi-task encoder")


@ENCODERS.register("resnet18")
def resnet18_encoder(spec: ModelSpec) -> nn.Module:
    """ResNet-18 without pooling and linear (paper supplement)."""
    return ResNet(spec, (2, 2, 2, 2)).features


@ENCODERS.register("small-conv")
def small_conv_encoder(spec: ModelSpec) -> nn.Module:
    """Three 3x3 conv-BN-ReLU layers (16, 32, 32 channels; the last two of stride 2): small
    enough that four methods train in minutes on a 2-core CPU."""
    def block(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(Normalize(spec.mean, spec.std), *block(spec.in_channels, 16, 1),
                         *block(16, 32, 2), *block(32, 32, 2))


def classification_decoder(feature_shape: tuple[int, int, int], image_size: int, out: int) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(feature_shape[0], out))


def dense_decoder(feature_shape: tuple[int, int, int], image_size: int, out: int) -> nn.Module:
    c, h, _ = feature_shape
    ratio = image_size / h
    stages = round(math.log2(ratio)) if ratio >= 1 else -1
    if stages < 0 or h * 2 ** stages != image_size:
        raise BenchError(f"dense decoders upsample by powers of 2: feature size {h} cannot reach image "
                         f"size {image_size}; choose an encoder whose downsampling divides the image size")
    spec = ModelSpec(c, image_size, out)
    layers: list[nn.Module] = []
    for _ in range(stages):
        nxt = max(8, c // 2)
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, nxt, 3, 1, 1, bias=False),
                   nn.BatchNorm2d(nxt), nn.ReLU(), BasicBlock(nxt, nxt, 1, spec)]
        c = nxt
    layers += [nn.Conv2d(c, out, 1), nn.Sigmoid()]
    return nn.Sequential(*layers)


class MultiTaskNet(nn.Module):
    """encoder -> shared feature f -> {task: decoder(f)}. The GALs are not part of it: they act
    only in GREAT's backward pass and are dropped at inference."""

    def __init__(self, encoder: nn.Module, decoders: dict[str, nn.Module]):
        super().__init__()
        self.encoder = encoder
        self.decoders = nn.ModuleDict(decoders)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.encoder(x)
        return {name: dec(f) for name, dec in self.decoders.items()}

    def last_shared_weight(self) -> nn.Parameter:
        """Weight of the encoder's last convolution: GradNorm's "last shared layer"."""
        convs = [m for m in self.encoder.modules() if isinstance(m, nn.Conv2d)]
        return convs[-1].weight


def feature_shape(encoder: nn.Module, spec: ModelSpec) -> tuple[int, int, int]:
    """Shape of the shared feature (without batch) for one input of ``spec``'s size."""
    was = encoder.training
    encoder.eval()
    p = next(encoder.parameters())
    with torch.no_grad():
        shape = encoder(torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size,
                                    device=p.device)).shape[1:]
    encoder.train(was)
    if len(shape) != 3:
        raise BenchError(f"a multi-task encoder must output (C, H, W) feature maps, got shape {tuple(shape)}")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def build_multitask_net(encoder_name: str, spec: ModelSpec, tasks) -> MultiTaskNet:
    encoder = ENCODERS.get(encoder_name)(spec)
    shape = feature_shape(encoder, spec)
    decoders = {t.name: t.decoder(shape, spec.image_size, t.out_channels(spec.num_classes)) for t in tasks}
    return MultiTaskNet(encoder, decoders)


class TaskClassifier(nn.Module):
    """Predicts which task a (scaled) gradient tensor came from (paper supplement: ResNet-11,
    input channels halved over 4 residual blocks, LeakyReLU(0.2), pooling + linear)."""

    def __init__(self, in_channels: int, num_tasks: int, blocks: int = 4, min_width: int = 8):
        super().__init__()
        spec = aux_spec(ModelSpec(in_channels, 1, num_tasks))
        layers, c = [], in_channels
        for _ in range(blocks):
            nxt = max(min_width, c // 2)
            layers.append(BasicBlock(c, nxt, 1, spec))
            c = nxt
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_tasks))

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(g))
