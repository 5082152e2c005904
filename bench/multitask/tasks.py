"""Task registry: name -> loss, test metric, decoder and target (paper section 3.3, Table 4).

Classification is trained with cross-entropy and reported as % error; the dense tasks
(colorisation, edges, denoising auto-encoder) are trained with MSE and reported as RMSE
over every pixel and channel of the test set, as in Table 4.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.data import to_float
from core.errors import BenchError
from bench.multitask.data import MultiTaskData
from bench.multitask.network import classification_decoder, dense_decoder
from core.registry import Registry


@dataclass(frozen=True)
class Task:
    name: str
    title: str                       # column heading in the Table 4 layout
    metric: str                      # "% error" or "RMSE"
    kind: str                        # "classification" or "regression" (uncertainty weighting)
    needs_colour: bool
    out_channels: Callable[[int], int]                                   # num_classes -> channels
    decoder: Callable[[tuple[int, int, int], int, int], nn.Module]      # (feature, size, out)
    target: Callable[[MultiTaskData, torch.Tensor], torch.Tensor]       # (data, index) -> target
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    error_sum: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, int]]  # (sum, count)
    finish: Callable[[float], float]                                     # mean -> reported value


TASKS: Registry[Task] = Registry("task")


def _sq_error_sum(pred, target):
    return (pred.detach().float() - target.float()).pow(2).sum(), target.numel()


def _dense(name: str, title: str, channels: Callable[[int], int], target, needs_colour: bool) -> Task:
    return Task(name, title, "RMSE", "regression", needs_colour, channels, dense_decoder, target,
                F.mse_loss, _sq_error_sum, lambda mean: mean ** 0.5)


TASKS.add("class", Task(
    "class", "Class", "% error", "classification", False, lambda k: k, classification_decoder,
    lambda d, idx: d.labels[idx], F.cross_entropy,
    lambda logits, y: ((logits.detach().argmax(1) != y).sum().float(), y.numel()),
    lambda mean: 100.0 * mean))
TASKS.add("color", _dense("color", "Color", lambda k: 3, lambda d, idx: to_float(d.colour[idx]), True))
TASKS.add("edge", _dense("edge", "Edge", lambda k: 1, lambda d, idx: to_float(d.edges[idx]), False))
TASKS.add("auto", _dense("auto", "Auto", lambda k: 1, lambda d, idx: to_float(d.gray[idx]), False))


def resolve_tasks(names, *, has_colour: bool, dataset: str) -> list[Task]:
    """Validate a task list against the registry and the dataset."""
    if not isinstance(names, (list, tuple)) or not names:
        raise BenchError(f"multitask.tasks = {names!r} is invalid: give a non-empty list of tasks from "
                         f"{', '.join(TASKS.names())}")
    if len(set(names)) != len(names):
        raise BenchError(f"multitask.tasks = {list(names)!r} names a task twice")
    tasks = [TASKS.get(str(n)) for n in names]
    for t in tasks:
        if t.needs_colour and not has_colour:
            raise BenchError(f"task {t.name!r} (colorisation) needs a colour dataset, but {dataset!r} is "
                             f"grayscale; drop it from multitask.tasks or use a colour dataset (cifar10, svhn)")
    return tasks


@torch.no_grad()
def evaluate(model: nn.Module, batches, tasks: list[Task]) -> dict[str, float]:
    """Test metric per task (eval mode, no GALs: they only act in the backward pass)."""
    was = model.training
    model.eval()
    sums = {t.name: torch.zeros((), dtype=torch.float64) for t in tasks}
    counts = {t.name: 0 for t in tasks}
    for x, y in batches.epoch(torch.Generator().manual_seed(0)):
        preds = model(x)
        for t in tasks:
            s, n = t.error_sum(preds[t.name], y[t.name])
            sums[t.name] += s.double().cpu()
            counts[t.name] += n
    model.train(was)
    return {t.name: t.finish(float(sums[t.name]) / max(1, counts[t.name])) for t in tasks}
