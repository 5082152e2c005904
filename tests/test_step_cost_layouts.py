"""The step-cost benchmark's channels_last variant (``--channels-last``): it converts every
network the step runs, and its table divides by the right steps. No time is measured."""
from __future__ import annotations

import torch

from tests.benchmarks.test_step_cost import CL, build, layout_table


def test_a_channels_last_variant_converts_the_main_and_the_auxiliary_network():
    defense = build("great", channels_last=True)
    convs = [p for m in defense.modules().values() for p in m.parameters() if p.dim() == 4 and p.shape[1] > 1]
    assert len(convs) >= 2  # the second convolution of main and auxiliary (1-channel ones are ambiguous)
    assert all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in convs)
    plain = build("great")
    assert all(p.is_contiguous() for m in plain.modules().values() for p in m.parameters())


def test_the_layout_table_divides_each_layout_by_its_own_baseline():
    times = {"baseline": [0.010, 0.010, 0.010], "baseline" + CL: [0.005, 0.005, 0.005],
             "great": [0.030, 0.030, 0.030], "great" + CL: [0.024, 0.024, 0.024]}
    row = next(r for r in layout_table(times).splitlines() if r.startswith("| great |"))
    assert row == "| great | 30.0 ms | 24.0 ms | 0.80 | 3.00 | 4.80 |"
