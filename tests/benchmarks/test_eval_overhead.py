"""Overhead of the harness over a bare torchattacks loop (target <= 5 %).

The same PGD sweep (two epsilons, 10 steps) on the same small CNN and data, once through
``bench.eval.evaluate.evaluate_subject`` (clean pass, targets, bounds checks, tidy rows) and
once as the minimal loop a user would write. Labels are the model's own clean
predictions, so both attack every example. Run with
``.venv/bin/python -m pytest tests/benchmarks/test_eval_overhead.py --benchmark-only``.
"""
import pytest
import torch
import torchattacks

from bench.eval.evaluate import evaluate_subject
from bench.eval.subjects import EvalSet, Subject
from attacks.registry import sweep
from bench.models import ModelSpec, build_model

N, BATCH = 512, 256
SWEEP = ["pgd:eps=0.05|0.1,steps=10"]


def small_cnn_on_own_labels():
    """small-cnn and N random images labelled by its own predictions (every example attacked)."""
    torch.manual_seed(0)
    model = build_model("small-cnn", ModelSpec(1, 28, 10, (0.286,), (0.353,))).eval()
    x = torch.rand(N, 1, 28, 28)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, EvalSet(x, y, 10, "bench")


@pytest.fixture(scope="module")
def setup():
    return small_cnn_on_own_labels()


def harness(model, data):
    rows = evaluate_subject(Subject(model, "bench", 0, "bench", "0" * 64), data, sweep(SWEEP), batch_size=BATCH)
    return [r["accuracy"] for r in rows]


def raw(model, data):
    accs = []
    for spec in sweep(SWEEP):
        atk = torchattacks.PGD(model, eps=spec.eps, alpha=spec.step_size, steps=spec.steps, random_start=True)
        correct = 0
        for i in range(0, N, BATCH):
            torch.manual_seed(i)
            adv = atk(data.x[i : i + BATCH], data.y[i : i + BATCH])
            with torch.no_grad():
                correct += int((model(adv).argmax(1) == data.y[i : i + BATCH]).sum())
        accs.append(correct / N)
    return accs


@pytest.mark.parametrize("impl", [harness, raw], ids=["harness", "raw"])
def test_attack_eval(benchmark, setup, impl):
    model, data = setup
    accs = benchmark.pedantic(impl, args=(model, data), rounds=3, iterations=1, warmup_rounds=1)
    assert len(accs) == 2 and accs[1] <= accs[0] <= 1.0
