"""Cost of one training step per defense, as a ratio to `baseline`, measured interleaved.

The `quick` model (small-cnn) on a 1x28x28 batch of 128, with the alpha/beta ramps past
zero so GREAT really builds its second-order graph (the paper's gradient, p_y - 1
differentiated), and PGD-AT and TRADES at their default inner steps (k = 7 and 10, eps 0.1).
Every registered defense is built once; then, round after round, each takes one
step in a rotated order, so slow drifts of a shared machine's load hit all of them alike.
Reported: the median step time of each defense, the ratio of its median to baseline's,
and the median of the per-round ratios. Nothing is asserted about time.

The second benchmark compares architectures the same way: every (model, defense) pair in
``MODEL_PAIRS`` steps in rotated order each round, and each model's step is reported as a
ratio to small-cnn's step of the same defense (issue 22: small-resnet within 3x small-cnn).

``--channels-last`` runs every defense twice in the same rotation, once as now (NCHW) and once
with its networks and the batch in channels_last (key ``name@cl``), and reports each against
the baseline of its own layout and against its NCHW self (issue 27: the CPU's NCHW max-pool).

    PYTHONPATH=. python tests/benchmarks/test_step_cost.py --rounds 60      # a table
    PYTHONPATH=. python tests/benchmarks/test_step_cost.py --models small-cnn small-resnet --threads 1
    PYTHONPATH=. python tests/benchmarks/test_step_cost.py --channels-last --only great --threads 1
    make bench                                                               # via pytest
"""
from __future__ import annotations

import argparse
import statistics
import time

import pytest
import torch

from bench.models import ModelSpec, build_model
from bench.method import Context, Ramp
from defenses import DEFENSES

HP = {"lr": 1e-3, "alpha_max": 1.0, "beta_max": 2.0, "fgsm_eps": 0.1, "fgsm_mix": 0.5, "datagrad_lambda": 0.1,
      "pgd_eps": 0.1}
SPEC = ModelSpec(1, 28, 10, (0.286,), (0.353,))
RAMP = Ramp(5, 0.5, 0.5, 1.0)


def build(name: str, hp: dict | None = None, model_name: str = "small-cnn", channels_last: bool = False):
    torch.manual_seed(0)
    model = build_model(model_name, SPEC)
    defense = DEFENSES.get(name)(model, Context(model_name, SPEC, {**HP, **(hp or {})}))
    if channels_last:  # every network the step runs (main and auxiliary), before any step
        for m in defense.modules().values():
            m.to(memory_format=torch.channels_last)
    return defense


CL = "@cl"  # key suffix of a channels_last variant


# Architectures against small-cnn, for the plain step and the double-backward GREAT step.
MODEL_PAIRS = [(m, d) for m in ("small-cnn", "small-resnet") for d in ("baseline", "great")]


def interleaved(defenses: dict[str, object], rounds: int, warmup: int = 3) -> dict[str, list[float]]:
    """Seconds per step of every defense, ``rounds`` rounds, rotated order each round."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(128, 1, 28, 28, generator=g), torch.randint(0, 10, (128,), generator=g)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    names = list(defenses)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            t0 = time.perf_counter()
            defenses[n].step(x_cl if n.endswith(CL) else x, y, RAMP)
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[n].append(dt)
    return times


def model_table(times: dict[str, list[float]], reference: str = "small-cnn") -> str:
    """Rows keyed 'model/defense': each against ``reference``'s step of the same defense."""
    rows = ["| model | defense | median | ratio of medians | median of per-round ratios |",
            "|---|---|---:|---:|---:|"]
    for key, ts in times.items():
        model, defense = key.split("/")
        ref = times[f"{reference}/{defense}"]
        per_round = statistics.median(t / b for t, b in zip(ts, ref))
        rows.append(f"| {model} | {defense} | {1e3 * statistics.median(ts):.1f} ms | "
                    f"{statistics.median(ts) / statistics.median(ref):.2f} | {per_round:.2f} |")
    return "\n".join(rows)


def table(times: dict[str, list[float]], reference: str = "baseline") -> str:
    ref = times[reference]
    ref_med = statistics.median(ref)
    rows = ["| defense | median | ratio of medians | median of per-round ratios |", "|---|---:|---:|---:|"]
    for n, ts in sorted(times.items(), key=lambda kv: statistics.median(kv[1])):
        per_round = statistics.median(t / b for t, b in zip(ts, ref))
        rows.append(f"| {n} | {1e3 * statistics.median(ts):.1f} ms | {statistics.median(ts) / ref_med:.2f} | "
                    f"{per_round:.2f} |")
    return "\n".join(rows)


def layout_table(times: dict[str, list[float]]) -> str:
    """Each defense in NCHW and channels_last: median, ratio to the baseline of the same layout,
    and the channels_last step as a ratio to the NCHW step (per-round medians)."""
    rows = ["| defense | NCHW | channels_last | cl / NCHW (per round) | ratio to baseline NCHW | "
            "ratio to baseline channels_last |", "|---|---:|---:|---:|---:|---:|"]
    ref, ref_cl = statistics.median(times["baseline"]), statistics.median(times["baseline" + CL])
    for n in [k for k in times if not k.endswith(CL)]:
        a, b = times[n], times[n + CL]
        rows.append(f"| {n} | {1e3 * statistics.median(a):.1f} ms | {1e3 * statistics.median(b):.1f} ms | "
                    f"{statistics.median(t / s for t, s in zip(b, a)):.2f} | {statistics.median(a) / ref:.2f} | "
                    f"{statistics.median(b) / ref_cl:.2f} |")
    return "\n".join(rows)


@pytest.mark.benchmark(group="defense step, interleaved")
def test_step_cost_interleaved(benchmark, capsys):
    """One pytest-benchmark entry (the whole interleaved session); the ratio table is printed."""
    # One thread: on a shared 2-core machine two threads per process mostly wait on each
    # other and the ratios become noise (docs/performance.md).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        defenses = {n: build(n) for n in DEFENSES.names()}
        holder = {}
        benchmark.pedantic(lambda: holder.update(interleaved(defenses, rounds=20)), rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)
    benchmark.extra_info["ratios"] = table(holder)
    with capsys.disabled():  # shown by `make bench` without -s
        print("\ndefense step (small-cnn, batch 128, 1 thread), interleaved:\n" + table(holder))
    assert all(len(v) == 20 for v in holder.values())


@pytest.mark.benchmark(group="model step, interleaved")
def test_model_step_cost_interleaved(benchmark, capsys):
    """small-resnet's baseline and GREAT steps against small-cnn's, interleaved, 1 thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        steps = {f"{m}/{d}": build(d, model_name=m) for m, d in MODEL_PAIRS}
        holder = {}
        benchmark.pedantic(lambda: holder.update(interleaved(steps, rounds=20)), rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)
    benchmark.extra_info["ratios"] = model_table(holder)
    with capsys.disabled():
        print("\nstep per model (batch 128, 1x28x28, 1 thread), interleaved:\n" + model_table(holder))
    assert all(len(v) == 20 for v in holder.values())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--only", nargs="*", help="defenses to include (baseline always)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--models", nargs="*", help="compare these models' baseline and GREAT steps with small-cnn's")
    ap.add_argument("--channels-last", action="store_true",
                    help="also run every defense in channels_last, interleaved with its NCHW self")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.models:
        pairs = [(m, d) for m in dict.fromkeys(["small-cnn", *args.models]) for d in ("baseline", "great")]
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds")
        print(model_table(interleaved({f"{m}/{d}": build(d, model_name=m) for m, d in pairs}, args.rounds)))
        raise SystemExit
    names = ["baseline"] + [n for n in DEFENSES.names() if n != "baseline" and (not args.only or n in args.only)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds")
    if args.channels_last:
        steps = {n + suffix: build(n, channels_last=bool(suffix)) for n in names for suffix in ("", CL)}
        print(layout_table(interleaved(steps, args.rounds)))
        raise SystemExit
    print(table(interleaved({n: build(n) for n in names}, args.rounds)))
