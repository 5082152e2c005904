"""The independent Linf cross-check (bench/crosscheck.py): on a two-class linear model the strongest
Linf perturbation has a closed form (each pixel moved by eps toward the other class's weight, when
the box does not bind), so both independent attacks must find exactly the examples it breaks; the
comparison with the sweep's worst case counts what each side breaks that the other does not; bad
input is refused before any model is loaded."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from bench.cli import main
from bench.crosscheck import FIELDS, crosscheck, foolbox_pgd, margin_loss, margin_pgd, run_crosscheck
from bench.csv_files import write_rows
from bench.eval.schema import ROW_FIELDS
from bench.eval.subjects import EvalSet, Subject
from core.errors import BenchError
from tests.test_report import masks_row

EPS = 0.1
N = 96


def _linear_case():
    """A two-class linear model on 20 pixels in [0.2, 0.8] (the box never binds at eps 0.1), each
    example labelled with its clean prediction, and the closed-form robust mask at EPS: the
    margin z_other - z_y rises by at most eps * ||w_other - w_y||_1."""
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(20, 2)
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, 20, generator=g))
        model.bias.zero_()
    x = 0.2 + 0.6 * torch.rand(N, 20, generator=g)
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    w = model.weight.detach()
    gap = (w[1 - y] - w[y]).abs().sum(1)
    robust = (z.gather(1, (1 - y)[:, None])[:, 0] - z.gather(1, y[:, None])[:, 0]) + EPS * gap < 0
    return model.eval(), x, y, robust


def test_margin_loss_is_the_largest_other_logit_minus_the_true_one():
    logits = torch.tensor([[2.0, 5.0, -1.0], [0.5, 0.1, 0.3]])
    y = torch.tensor([1, 0])
    assert torch.allclose(margin_loss(logits, y), torch.tensor([2.0 - 5.0, 0.3 - 0.5]))


def test_the_linear_case_is_discriminating():
    _, _, _, robust = _linear_case()
    assert 0.2 * N < int(robust.sum()) < 0.8 * N  # some examples on each side of the boundary


def test_margin_pgd_finds_exactly_the_closed_form_breaks():
    model, x, y, robust = _linear_case()
    got = margin_pgd(model, x, y, EPS, steps=20, restarts=1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(got, robust)


def test_foolbox_pgd_finds_exactly_the_closed_form_breaks():
    model, x, y, robust = _linear_case()
    assert torch.equal(foolbox_pgd(model, x, y, EPS, steps=100, restarts=1), robust)


def _subject(model):
    return Subject(model, "toy", 0, "toy", "toy0")


def test_crosscheck_counts_what_each_side_breaks():
    model, x, y, robust = _linear_case()
    data = EvalSet(x, y, 2, "toy")
    clean = masks_row("toy", "none", "untargeted", 0.0, np.ones(N))
    # a sweep whose worst case kept every example: the independent attacks expose its deficit
    weak = [clean, masks_row("toy", "fgsm", "untargeted", EPS, np.ones(N)),
            masks_row("toy", "pgd", "untargeted", EPS, np.ones(N))]
    [row] = crosscheck(_subject(model), data, weak, [EPS], n=N, steps=20, restarts=1)
    assert list(row) == FIELDS
    k = int(robust.sum())
    assert (row["worst_case_robust"], row["independent_robust"], row["worst_case_attacks"]) == (N, k, 2)
    assert (row["broken_beyond_worst_case"], row["worst_case_beyond_independent"]) == (N - k, 0)
    # a sweep that broke everything the closed form breaks, and 5 more: no deficit, 5 beyond
    strong_mask = robust.numpy().copy()
    strong_mask[np.flatnonzero(strong_mask)[:5]] = False
    strong = [clean, masks_row("toy", "apgd", "untargeted", EPS, strong_mask)]
    [row] = crosscheck(_subject(model), data, strong, [EPS], n=40, steps=20, restarts=1)
    first = robust[:40]
    assert row["n"] == 40 and row["independent_robust"] == int(first.sum())
    assert row["broken_beyond_worst_case"] == 0
    assert row["worst_case_beyond_independent"] == int(first.sum()) - int(strong_mask[:40].sum())
    assert row["worst_case_beyond_independent"] > 0


def test_an_epsilon_without_a_worst_case_is_refused_with_the_ones_there_are():
    model, x, y, _ = _linear_case()
    rows = [masks_row("toy", "fgsm", "untargeted", EPS, np.ones(N))]
    with pytest.raises(BenchError, match=r"no Linf worst case at epsilon 0\.3 .* at 0\.1"):
        crosscheck(_subject(model), EvalSet(x, y, 2, "toy"), rows, [0.3], n=N)
    # rows of other weights: said so, not "no epsilon"
    other = [{**r, "checkpoint_sha256": "elsewhere"} for r in rows]
    with pytest.raises(BenchError, match="no row of robustness.csv comes from this checkpoint"):
        crosscheck(_subject(model), EvalSet(x, y, 2, "toy"), other, [EPS], n=N)


def test_bad_input_is_refused_before_any_model_is_loaded(tmp_path, capsys):
    with pytest.raises(BenchError, match="robustness.csv not found"):
        run_crosscheck(tmp_path, ["runs/x"], [0.1])
    write_rows(tmp_path / "robustness.csv", [masks_row("toy", "fgsm", "untargeted", EPS, np.ones(4))], ROW_FIELDS)
    with pytest.raises(BenchError, match="give the run directories"):
        run_crosscheck(tmp_path, [], [0.1])
    with pytest.raises(BenchError, match="epsilons .* are invalid"):
        run_crosscheck(tmp_path, ["runs/x"], [0.0])
    with pytest.raises(BenchError, match="each must be at least 1"):
        run_crosscheck(tmp_path, ["runs/x"], [0.1], steps=0)
    # through the CLI: exit 2, the message, nothing written
    assert main(["crosscheck", str(tmp_path), "--runs", "runs/x", "--epsilon", "-1"]) == 2
    assert "are invalid" in capsys.readouterr().err
    assert not (tmp_path / "crosscheck.csv").exists()
