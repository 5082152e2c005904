"""Memory layout for attacking image models on the CPU (issue 27).

Every attack step is a forward and a backward pass of the model on a batch of images. In
PyTorch's default NCHW layout the CPU max-pool kernel dominated those passes: on the quick
small CNN (2-core AMD EPYC, torch 2.14.1, 1 thread) ``max_pool2d`` took 12 ms of a 42 ms
forward+backward on 100 images, against 0.75 ms in channels_last (NHWC), where oneDNN's
vectorised kernels also run the convolutions. An APGD-CE run on the quick FGSM-AT model took
3.7 s in channels_last against 7.3 s in NCHW, with the same per-example result on its 500
examples (docs/performance.md).

The layout changes no value a model computes except through the summation order inside a
convolution (logits agree to about 1e-6), so it is used only where the model, converted,
gives the same predictions on the examples as before; otherwise (a model that reshapes its
input with ``view``, one without 4-D inputs) the harness keeps NCHW.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn

CHECK_EXAMPLES = 64   # examples on which the converted model must predict as before


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).float()


@contextmanager
def attack_layout(model: nn.Module, x: torch.Tensor) -> Iterator[torch.Tensor]:
    """Within the block the model (parameters and buffers) is in channels_last and the yielded
    images are ``x`` in channels_last, when that is safe for this model (see the module
    docstring); else the model is unchanged and ``x`` comes back as it is. On exit the model's
    tensors are contiguous again (safetensors and user code expect that)."""
    if x.dim() != 4 or x.device.type != "cpu":
        yield x
        return
    sample = x[:CHECK_EXAMPLES]
    before = _predict(model, sample)
    model.to(memory_format=torch.channels_last)
    try:
        x_cl = x.contiguous(memory_format=torch.channels_last)
        after = _predict(model, x_cl[:CHECK_EXAMPLES])
        same = after.shape == before.shape and torch.equal(after.argmax(1), before.argmax(1)) \
            and torch.allclose(after, before, rtol=1e-4, atol=1e-4)
    except RuntimeError:  # e.g. a model that calls .view() on its input
        same = False
    if not same:
        model.to(memory_format=torch.contiguous_format)
        yield x
        return
    try:
        yield x_cl
    finally:
        model.to(memory_format=torch.contiguous_format)
