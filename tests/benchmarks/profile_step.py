"""Where a defense's training step spends its time: torch.profiler, per operator and input shape.

The same setting as ``test_step_cost.py`` (small-cnn, batch 128 of 1x28x28, the ramps past
zero). Prints each operator's self CPU time per step, grouped by input shapes, so the
double back-propagation's parts can be told apart (e.g. the first convolution's input
gradient against its weight gradient). A diagnostic, not a benchmark: ratios between
defenses come from ``test_step_cost.py``, interleaved.

    PYTHONPATH=. python tests/benchmarks/profile_step.py great --steps 10 --threads 1
"""
from __future__ import annotations

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from core.errors import BenchError
from defenses import DEFENSES
from tests.benchmarks.test_step_cost import RAMP, build


def profile_step(name: str, steps: int, warmup: int = 3, top: int = 20) -> list[tuple[str, float, int, str]]:
    """(operator, self ms per step, calls per step, input shapes), most expensive first."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(128, 1, 28, 28, generator=g), torch.randint(0, 10, (128,), generator=g)
    defense = build(name)
    for _ in range(warmup):
        defense.step(x, y, RAMP)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            defense.step(x, y, RAMP)
    events = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    return [(e.key, e.self_cpu_time_total / 1e3 / steps, e.count // steps, str(e.input_shapes))
            for e in events[:top]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("defense", help="a registered defense, e.g. great")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args(argv)
    if args.steps < 1 or args.threads < 1:
        print(f"error: --steps and --threads must be at least 1 (got {args.steps}, {args.threads})", file=sys.stderr)
        return 2
    try:
        DEFENSES.get(args.defense)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rows = profile_step(args.defense, args.steps, top=args.top)
    print(f"{args.defense}: torch {torch.__version__}, {args.threads} thread(s), self CPU time per step")
    print("| operator | ms/step | calls/step | input shapes |\n|---|---:|---:|---|")
    for key, ms, n, shapes in rows:
        print(f"| {key} | {ms:.2f} | {n} | {shapes[:120]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
