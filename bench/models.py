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

from core.errors import BenchError
from core.registry import Registry


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
    input_scale: str = "batch-rms"  # with normalize False: a key of AUX_INPUT_SCALES


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


class BatchRMSNorm(nn.Module):
    """Divide a batch of gradient tensors by its root-mean-square (differentiably).

    Input gradients are orders of magnitude smaller than pixels and shrink as training
    proceeds; an auxiliary network without this (or a first batch-norm layer) would
    spend its training chasing the scale. One scale per batch keeps the relative
    magnitudes of the examples, as a batch-norm layer would.
    """

    def forward(self, g):
        return g / g.pow(2).mean().add(1e-24).sqrt()


# How a network that reads gradient tensors scales its input (hp ``aux_input_scale``).
# Not in the paper (its ResNet auxiliaries have batch norm after the first convolution,
# which removes the scale anyway); needed by networks without it, such as small-cnn.
AUX_INPUT_SCALES: dict[str, Callable[[], nn.Module]] = {"batch-rms": BatchRMSNorm, "none": nn.Identity}


def _front(spec: ModelSpec) -> nn.Module:
    return Normalize(spec.mean, spec.std) if spec.normalize else AUX_INPUT_SCALES[spec.input_scale]()


def _conv_bn(cin, cout, spec, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), _act(spec)]


@MODELS.register("small-cnn")
def small_cnn(spec: ModelSpec) -> nn.Module:
    """Small CNN for 28x28 (the `quick` preset): two conv blocks with pooling, two linears.

    Batch norm only on the 64 penultimate features: double back-propagation through batch
    norm on the conv maps costs more than the convolutions at this size, while without
    any normalisation the GREACE term (linear in the logits, paper eq. 6) can grow the
    feature scale through every layer and diverges within a few epochs.
    """
    feat = spec.image_size // 4
    return nn.Sequential(
        _front(spec),
        nn.Conv2d(spec.in_channels, 16, 3, padding=1), _act(spec), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), _act(spec), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * feat * feat, 64, bias=False), nn.BatchNorm1d(64), _act(spec),
        nn.Linear(64, spec.num_classes),
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


class Residual(nn.Module):
    """act(body(x) + shortcut(x)); the shortcut is a 1x1 projection when the shape changes.
    Subclasses build ``body``: the basic block (ResNet) or the bottleneck (ResNeXt)."""

    def __init__(self, body: nn.Module, cin: int, cout: int, stride: int, spec: ModelSpec):
        super().__init__()
        self.body = body
        self.short = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = _act(spec)

    def forward(self, x):
        return self.act(self.body(x) + self.short(x))


class BasicBlock(Residual):
    def __init__(self, cin, cout, stride, spec: ModelSpec):
        super().__init__(nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), _act(spec),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
        ), cin, cout, stride, spec)


class ResNet(nn.Module):
    """CIFAR-style ResNet (3x3 stem; a 2x2 max-pool after it only with ``stem_pool``):
    ``features`` then pooling + linear."""

    def __init__(self, spec: ModelSpec, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512), stem_pool: bool = False):
        super().__init__()
        layers = [_front(spec), *_conv_bn(spec.in_channels, widths[0], spec)]
        if stem_pool:
            layers.append(nn.MaxPool2d(2))
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


@MODELS.register("small-resnet")
def small_resnet(spec: ModelSpec) -> nn.Module:
    """A residual network a 2-core CPU can afford (issue 22), for the paper's remark that
    skip connections carry GREAT's reversed gradient through the main network (section 3.1):
    3x3 stem (16 channels) + batch norm + 2x2 max-pool, then one basic block per stage at
    16/32/64 channels (strides 1, 2, 2: 14, 7 and 4 pixels at 28x28), pooling + linear.
    About 78k weights (small-cnn: 106k). Batch norm follows every convolution, as in the
    paper's ResNet-18. The stem's max-pool halves the maps the blocks work on: with the
    first block at 28x28 instead, the GREAT step (double back-propagation through batch
    norm) costs about 3x small-cnn's; with it, about 2x for a baseline step and 2.4x for a
    GREAT step at batch 128 on one thread (tests/benchmarks/test_step_cost.py)."""
    return ResNet(spec, (1, 1, 1), (16, 32, 64), stem_pool=True)


def build_model(name: str, spec: ModelSpec) -> nn.Module:
    factory = MODELS.get(name)
    model = factory(spec)
    if not isinstance(model, nn.Module):
        raise BenchError(f"model factory {name!r} returned {type(model).__name__}, not an nn.Module")
    return model


def aux_spec(spec: ModelSpec, num_classes: int | None = None, input_scale: str = "batch-rms") -> ModelSpec:
    """The auxiliary network's spec: LeakyReLU(0.2), no image normalisation, its input
    scaled by ``input_scale`` (a key of ``AUX_INPUT_SCALES``)."""
    if input_scale not in AUX_INPUT_SCALES:
        raise BenchError(f"aux_input_scale = {input_scale!r} is invalid; valid: {', '.join(AUX_INPUT_SCALES)}")
    return ModelSpec(spec.in_channels, spec.image_size, num_classes or spec.num_classes,
                     leaky=True, normalize=False, input_scale=input_scale)


# ---------------------------------------------------------------- distillation track (issue 4)

@MODELS.register("resnet18-w16")
def resnet18_w16(spec: ModelSpec) -> nn.Module:
    """ResNet-18 at a quarter of the width (16/32/64/128): the `quick` distillation teacher,
    deep enough to beat CNN-5 on Fashion-MNIST yet trainable in a minute on a 2-core CPU."""
    return ResNet(spec, (2, 2, 2, 2), (16, 32, 64, 128))


class ResNeXtBlock(Residual):
    """ResNeXt bottleneck (Xie et al. 2017): 1x1 -> grouped 3x3 (``cardinality`` groups of
    ``width`` channels) -> 1x1, plus a projection shortcut when the shape changes."""

    def __init__(self, cin, cout, stride, cardinality, width, spec: ModelSpec):
        inner = cardinality * width
        super().__init__(nn.Sequential(
            nn.Conv2d(cin, inner, 1, bias=False), nn.BatchNorm2d(inner), _act(spec),
            nn.Conv2d(inner, inner, 3, stride, 1, groups=cardinality, bias=False), nn.BatchNorm2d(inner),
            _act(spec),
            nn.Conv2d(inner, cout, 1, bias=False), nn.BatchNorm2d(cout),
        ), cin, cout, stride, spec)


@MODELS.register("resnext29-8x64d")
def resnext29_8x64d(spec: ModelSpec) -> nn.Module:
    """CIFAR ResNeXt-29 (8x64d): 3x3 stem, 3 stages of 3 bottlenecks (cardinality 8, group
    width 64 doubling per stage, outputs 256/512/1024); the teacher of the paper's
    ResNet-18 + ResNeXt-29-8 distillation pair (Table 3)."""
    layers = [_front(spec), *_conv_bn(spec.in_channels, 64, spec)]
    cin = 64
    for stage, cout in enumerate((256, 512, 1024)):
        for j in range(3):
            layers.append(ResNeXtBlock(cin, cout, 2 if (j == 0 and stage > 0) else 1, 8, 64 * 2 ** stage, spec))
            cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, spec.num_classes))


def _torchvision_resnet(arch: str, spec: ModelSpec) -> nn.Module:
    """torchvision's ImageNet ResNet definition (7x7 stride-2 stem + max-pool), untrained,
    behind our normalisation; LeakyReLU(0.2) swapped in for auxiliary specs."""
    import torchvision.models as tvm

    net = getattr(tvm, arch)(weights=None, num_classes=spec.num_classes)
    if spec.in_channels != 3:
        net.conv1 = nn.Conv2d(spec.in_channels, 64, 7, 2, 3, bias=False)
    if spec.leaky:
        for module in net.modules():
            for name, child in module.named_children():
                if isinstance(child, nn.ReLU):
                    setattr(module, name, nn.LeakyReLU(0.2))
    return nn.Sequential(_front(spec), net)


@MODELS.register("tv-resnet18")
def tv_resnet18(spec: ModelSpec) -> nn.Module:
    """torchvision ResNet-18: the mini-ImageNet student (paper Table 3, ImageFolder data)."""
    return _torchvision_resnet("resnet18", spec)


@MODELS.register("tv-resnet152")
def tv_resnet152(spec: ModelSpec) -> nn.Module:
    """torchvision ResNet-152: the mini-ImageNet teacher (paper Table 3, ImageFolder data)."""
    return _torchvision_resnet("resnet152", spec)
