"""Cost of the training augmentation per epoch, measured interleaved (issue 30).

One epoch of batches (10,000 Fashion-MNIST-sized uint8 images, the study's training set size,
batch 128) through ``bench.data.Batches`` with ``none``, ``crop2`` and ``crop2-flip``. Rounds
rotate the order of the variants, so a shared machine's load hits all alike. Reported: the median
seconds of each and the median per-round difference from ``none`` (what augmentation adds to an
epoch). Nothing is asserted about time.

    PYTHONPATH=. python tests/benchmarks/test_augment_cost.py --rounds 10   # a table
    make bench                                                             # via pytest
"""
from __future__ import annotations

import argparse
import statistics
import time

import pytest
import torch

from bench.data import Batches, ImageData

N, BATCH = 10000, 128
VARIANTS = ("none", "crop2", "crop2-flip")


def data() -> ImageData:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N, 1, 28, 28), dtype=torch.uint8, generator=g)
    return ImageData("synthetic", "train", images, torch.randint(0, 10, (N,), generator=g), 10)


def epoch(d: ImageData, augment: str) -> int:
    n = 0
    for x, _ in Batches(d, BATCH, augment).epoch(torch.Generator().manual_seed(0)):
        n += x.shape[0]
    return n


def interleaved(rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    d = data()
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for r in range(warmup + rounds):
        k = r % len(VARIANTS)
        for name in VARIANTS[k:] + VARIANTS[:k]:
            t0 = time.perf_counter()
            assert epoch(d, name) == N
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def table(times: dict[str, list[float]]) -> str:
    out = []
    for name in VARIANTS:
        extra = statistics.median(t - b for t, b in zip(times[name], times["none"]))
        out.append(f"{name} {statistics.median(times[name]) * 1000:.0f} ms (+{extra * 1000:.0f} ms)")
    return ", ".join(out) + f" per epoch of {N} images (median of {len(times['none'])} rounds)"


@pytest.mark.benchmark(group="augmentation per epoch, interleaved")
def test_augment_cost_interleaved(interleaved_session):
    holder = interleaved_session(lambda: interleaved(rounds=5), table, "augmentation (1 thread), interleaved: ")
    assert all(len(v) == 5 for v in holder.values())


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    torch.set_num_threads(1)
    print(table(interleaved(ap.parse_args().rounds)))
