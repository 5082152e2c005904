"""AutoAttack-style sanity flags (bench.eval.sanity): each trips on a model built to trip it,
with the number behind it, and a plain model passes all of them."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.eval.sanity import SanityThresholds, sanity_checks

D, K, N = 4 * 4, 3, 16


def images(seed: int = 0) -> torch.Tensor:
    return torch.rand(N, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


def linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(D, K)


class AlwaysDropout(nn.Module):
    """Dropout that ignores eval mode (Monte-Carlo dropout): every forward pass is a sample."""

    def __init__(self):
        super().__init__()
        self.fc = linear()

    def forward(self, x):
        return self.fc(F.dropout(x.flatten(1), 0.5, training=True))


class GatedByMean(nn.Module):
    """Logits relu(mean(x) - 1/2) * w: no gradient at all where the mean brightness is below 1/2."""

    def forward(self, x):
        h = F.relu(x.flatten(1).mean(1, keepdim=True) - 0.5)
        return h * torch.tensor([[1.0, -1.0, 0.5]])


def labels(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def run(model, x=None, y=None, **kw):
    x = images() if x is None else x
    model.eval()
    y = labels(model, x) if y is None else y
    return sanity_checks(model, x, y, SanityThresholds(**kw))


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def test_plain_model_passes_every_flag():
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, K))
    flags = run(model)
    assert {k: v[0] for k, v in flags.items()} == {k: "pass" for k in flags}
    assert flags["deterministic"][1] == 0.0 and flags["zero_gradients"][1] == 0.0
    assert flags["probability_outputs"][1] == 0.0 and flags["batch_size"][1] == 0.0


def test_dropout_left_on_is_nondeterministic():
    flags = run(AlwaysDropout())
    status, value, _, _ = flags["deterministic"]
    assert status == "flag" and value > 1e-3
    assert run(nn.Sequential(nn.Flatten(), nn.Dropout(0.5), linear()))["deterministic"][0] == "pass"  # eval mode


def test_zero_gradient_fraction_is_counted():
    x = images()
    x[: N // 4] *= 0.2                         # mean < 1/2: zero gradient
    x[N // 4 :] = 0.6 + 0.4 * x[N // 4 :]      # mean > 1/2: nonzero gradient
    model = GatedByMean()
    flags = run(model, x, torch.ones(N, dtype=torch.long))
    status, value, _, _ = flags["zero_gradients"]
    assert status == "flag" and value == pytest.approx(0.25)
    # a step function (rounded input) has no gradient anywhere
    step = nn.Sequential(nn.Flatten(), linear())
    step_model = nn.Sequential(_Round(), step)
    assert run(step_model)["zero_gradients"][:2] == ("flag", 1.0)


class _Round(nn.Module):
    def forward(self, x):
        return torch.round(x * 4) / 4


def test_softmax_outputs_look_like_probabilities():
    flags = run(nn.Sequential(nn.Flatten(), linear(), nn.Softmax(dim=1)))
    assert flags["probability_outputs"][:2] == ("flag", 1.0)
    log_probs = run(nn.Sequential(nn.Flatten(), linear(), nn.LogSoftmax(dim=1)))
    assert log_probs["probability_outputs"][:2] == ("pass", 0.0)


def test_batch_statistics_make_predictions_depend_on_the_batch():
    torch.manual_seed(1)
    # track_running_stats=False: batch norm uses the batch's statistics even in eval mode
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 8), nn.BatchNorm1d(8, track_running_stats=False),
                          nn.ReLU(), nn.Linear(8, K))
    flags = run(model)
    status, value, _, detail = flags["batch_size"]
    assert status == "flag" and value > 0, detail
    assert flags["deterministic"][0] == "pass"  # same batch, same output: only the batch-size check sees it
    model_eval = nn.Sequential(nn.Flatten(), nn.Linear(D, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, K))
    assert run(model_eval)["batch_size"][:2] == ("pass", 0.0)
