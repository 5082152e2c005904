"""Arithmetic of one training step per defense, as a ratio to `baseline`: counted, not timed.

Every aten operator that torch's flop counter has a formula for (convolutions and their
backward passes, matrix products) is counted while a defense takes one step in the setting
of ``test_step_cost.py``. A count does not depend on the machine's load, so it says what a
wall-clock ratio can reach at best: a step whose arithmetic is 3.07 baseline steps cannot run
in 3.0 of them unless something else in the baseline step is slower still (issue 27: GREAT's
exact double back-propagation with an auxiliary network as large as the main one).

``torch.utils.flop_counter.FlopCounterMode`` cannot be used here: its module hooks refuse
``torch.autograd.grad`` inside the step. This mode counts at the dispatcher instead.

    PYTHONPATH=. python tests/benchmarks/step_flops.py --models small-cnn small-resnet
"""
from __future__ import annotations

import argparse

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import flop_registry

from defenses import DEFENSES
from tests.benchmarks.test_step_cost import RAMP, build


class CountFlops(TorchDispatchMode):
    """Sums the floating-point operations of every dispatched operator with a known formula."""

    def __init__(self):
        super().__init__()
        self.by_op: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            shape = lambda t: t.shape if isinstance(t, torch.Tensor) else t
            n = formula(*tree_map(shape, args), **tree_map(shape, kwargs), out_val=tree_map(shape, out))
            key = str(func._overloadpacket)
            self.by_op[key] = self.by_op.get(key, 0) + int(n)
        return out

    @property
    def total(self) -> int:
        return sum(self.by_op.values())


def step_flops(name: str, model_name: str = "small-cnn", batch: int = 128) -> CountFlops:
    """The operator counts of one step of defense ``name`` (after one uncounted step)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,), generator=g)
    defense = build(name, model_name=model_name)
    defense.step(x, y, RAMP)
    counter = CountFlops()
    with counter:
        defense.step(x, y, RAMP)
    return counter


def ratios(model_name: str, names=None) -> dict[str, float]:
    """Each defense's step arithmetic divided by baseline's, on ``model_name``."""
    names = list(names or DEFENSES.names())
    base = step_flops("baseline", model_name).total
    return {n: step_flops(n, model_name).total / base for n in names}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["small-cnn"])
    p.add_argument("--only", nargs="+", default=None, help="defenses (default: all registered)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for m in args.models:
        base = step_flops("baseline", m).total
        print(f"{m}: baseline step {base / 1e9:.3f} GFLOP (batch 128)")
        print("| defense | x baseline |\n|---|---:|")
        for n, r in ratios(m, args.only).items():
            print(f"| {n} | {r:.2f} |")


if __name__ == "__main__":
    main()
