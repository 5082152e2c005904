"""Attack time in NCHW against channels_last (``attacks.layout``), measured interleaved.

The same APGD-CE (20 steps) and FMN (20 steps) runs on the quick model (small-cnn, random
weights, labels = its own predictions, so every example is attacked), 1 thread, the two
layouts alternating round by round in one process so that a shared machine's load hits both
alike. Reported: each variant's median and the median of the per-round ratios NCHW /
channels_last. Nothing is asserted about time; the per-example results of the two layouts are
compared (they may differ only where a logit sits within rounding of a tie).

    PYTHONPATH=. python tests/benchmarks/test_attack_layout.py --rounds 7
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import pytest
import torch
import torchattacks

from attacks.fmn import FMNL2
from attacks.layout import attack_layout
from bench.models import ModelSpec, build_model

N = 256


def setup(model_name: str = "small-cnn"):
    torch.manual_seed(0)
    model = build_model(model_name, ModelSpec(1, 28, 10, (0.286,), (0.353,))).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(N, 1, 28, 28)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


ATTACKS = {
    "apgd-ce 20 steps": lambda m: torchattacks.APGD(m, norm="Linf", eps=0.05, steps=20, n_restarts=1, seed=0,
                                                    loss="ce"),
    "fmn 20 steps": lambda m: FMNL2(m, steps=20),
}


def interleaved(rounds: int, model_name: str = "small-cnn") -> dict[str, dict[str, list]]:
    """{attack: {"nchw": seconds, "channels_last": seconds, "differ": examples}} per round."""
    model, x, y = setup(model_name)
    fast = copy.deepcopy(model)
    out = {a: {"nchw": [], "channels_last": [], "differ": []} for a in ATTACKS}
    with attack_layout(fast, x) as x_cl:
        # (one-channel images are the same memory in both layouts; the later convolutions are not)
        assert any(p.dim() == 4 and not p.is_contiguous() for p in fast.parameters()), "layout kept NCHW"
        for r in range(rounds + 1):  # round 0 warms up
            for name, make in ATTACKS.items():
                preds = {}
                order = [("nchw", model, x), ("channels_last", fast, x_cl)]
                for variant, m, xx in (order if r % 2 else order[::-1]):
                    t0 = time.perf_counter()
                    adv = make(m)(xx, y)
                    dt = time.perf_counter() - t0
                    with torch.no_grad():
                        preds[variant] = m(adv).argmax(1)
                    if r:
                        out[name][variant].append(dt)
                if r:
                    out[name]["differ"].append(int((preds["nchw"] != preds["channels_last"]).sum()))
    return out


def table(out: dict[str, dict[str, list]]) -> str:
    rows = ["| attack | NCHW median | channels_last median | median of per-round ratios | examples differing |",
            "|---|---:|---:|---:|---:|"]
    for name, t in out.items():
        ratio = statistics.median(a / b for a, b in zip(t["nchw"], t["channels_last"]))
        rows.append(f"| {name} | {1e3 * statistics.median(t['nchw']):.0f} ms | "
                    f"{1e3 * statistics.median(t['channels_last']):.0f} ms | {ratio:.2f} | "
                    f"{max(t['differ'])} of {N} |")
    return "\n".join(rows)


@pytest.mark.benchmark(group="attack layout, interleaved")
def test_attack_layout_interleaved(interleaved_session):
    holder = interleaved_session(lambda: interleaved(rounds=5), table,
                                 f"attacks on small-cnn, {N} images, 1 thread, NCHW vs channels_last, interleaved:\n",
                                 key="ratios")
    assert all(len(t["nchw"]) == 5 == len(t["channels_last"]) for t in holder.values())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="small-cnn")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(table(interleaved(args.rounds, args.model)))
