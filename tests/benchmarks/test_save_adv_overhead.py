"""Cost of saving the adversarial examples (``evaluate --save-adv``), measured interleaved.

The same sweep (FGSM and PGD at two epsilons) on the same small CNN and 512 random images
whose labels are the model's own predictions (every example is attacked, most are broken,
so nearly every example is stored), through ``bench.eval.evaluate.evaluate_subject`` with and
without the collector of ``bench.eval.adversarial_store`` (its file written at the end of each
round). Rounds alternate the two variants, so a shared machine's load hits both alike.
Reported: the median seconds of each and the median of the per-round ratios. Nothing is
asserted about time.

    PYTHONPATH=. python tests/benchmarks/test_save_adv_overhead.py --rounds 10   # a table
    make bench                                                                 # via pytest
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pytest
import torch

from bench.eval.adversarial_store import collector_for
from bench.eval.evaluate import evaluate_subject
from bench.eval.subjects import Subject
from attacks.registry import sweep
from test_eval_overhead import BATCH, small_cnn_on_own_labels  # the same model and images

SWEEP = ["fgsm:eps=0.05|0.1", "pgd:eps=0.05|0.1,steps=5"]


def setup():
    model, data = small_cnn_on_own_labels()
    return Subject(model, "bench", 0, "bench", "0" * 64), data


def plain(subject, data, folder: Path) -> None:
    evaluate_subject(subject, data, sweep(SWEEP), batch_size=BATCH)


def saving(subject, data, folder: Path) -> None:
    store = collector_for(folder, subject, data, sweep(SWEEP), 0)
    evaluate_subject(subject, data, sweep(SWEEP), batch_size=BATCH, on_adversarials=store.on_run)
    store.save()
    store.path.unlink()  # every round writes a new file


def interleaved(rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    subject, data = setup()
    variants = {"plain": plain, "save-adv": saving}
    times: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(warmup + rounds):
            names = list(variants)[r % 2:] + list(variants)[:r % 2]
            for name in names:
                t0 = time.perf_counter()
                variants[name](subject, data, Path(tmp))
                if r >= warmup:
                    times[name].append(time.perf_counter() - t0)
    return times


def table(times: dict[str, list[float]]) -> str:
    ratio = statistics.median(s / p for s, p in zip(times["save-adv"], times["plain"]))
    return (f"plain {statistics.median(times['plain']):.3f} s, save-adv {statistics.median(times['save-adv']):.3f} s "
            f"(median of {len(times['plain'])} rounds); median per-round ratio {ratio:.3f}")


@pytest.mark.benchmark(group="save-adv overhead, interleaved")
def test_save_adv_overhead_interleaved(interleaved_session):
    holder = interleaved_session(lambda: interleaved(rounds=5), table,
                                 "save-adv overhead (small-cnn, 512 images, 1 thread), interleaved: ")
    assert all(len(v) == 5 for v in holder.values())


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    torch.set_num_threads(1)
    print(table(interleaved(ap.parse_args().rounds)))
