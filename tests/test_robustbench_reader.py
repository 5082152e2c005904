"""RobustBench's own reader on our export (issue 28 item 2): robustbench 1.1.1's
``list_available_models`` and ``get_key`` (``robustbench/utils.py``, its code, not a copy)
read the exported Linf and L2 folders.

``make install`` puts robustbench 1.1.1 and what ``robustbench/utils.py`` imports (timm,
gdown and their imports) into ``<venv>/robustbench-1.1.1`` with ``--no-deps``. Two parts are
not loaded: the package's ``__init__`` (it imports ``robustbench.eval``, which needs the
``autoattack`` package that exists only on GitHub) and the model zoo (its architectures need
geotorch, torchdiffeq and more). The zoo's one role in the reader is the list of model names
per dataset and threat model (``model_dicts``); the test gives it our exported names.
"""
from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.eval.schema import ROW_FIELDS, pack_mask, with_interval
from bench.publish.robustbench import model_infos, write_model_infos

RB_DIR = Path(sys.prefix) / "robustbench-1.1.1"


@pytest.fixture
def robustbench_utils(monkeypatch):
    """robustbench/utils.py of robustbench 1.1.1, imported from RB_DIR, with an empty zoo."""
    if not (RB_DIR / "robustbench" / "utils.py").is_file():
        pytest.skip(f"robustbench 1.1.1 is not installed in {RB_DIR} (make install puts it there)")
    monkeypatch.syspath_prepend(str(RB_DIR))
    for name in [m for m in sys.modules if m == "robustbench" or m.startswith("robustbench.")]:
        monkeypatch.delitem(sys.modules, name)
    pkg = types.ModuleType("robustbench")
    pkg.__path__ = [str(RB_DIR / "robustbench")]
    zoo = types.ModuleType("robustbench.model_zoo")
    zoo.__path__ = [str(RB_DIR / "robustbench" / "model_zoo")]
    zoo.model_dicts = {}
    monkeypatch.setitem(sys.modules, "robustbench", pkg)
    monkeypatch.setitem(sys.modules, "robustbench.model_zoo", zoo)
    import robustbench.utils as utils

    assert Path(utils.__file__).is_relative_to(RB_DIR)
    yield utils
    for name in [m for m in sys.modules if m == "robustbench" or m.startswith("robustbench.")]:
        sys.modules.pop(name, None)


def _rows(defense: str, n: int, aa_n: int, seed: int) -> list[dict]:
    """A model's rows: clean, FGSM and AutoAttack at Linf 8/255 and APGD and AutoAttack at L2 0.5."""
    rng = np.random.default_rng(seed)
    clean = rng.random(n) < 0.8
    rows = []

    def row(attack, norm, eps, mask, steps="", params="{}"):
        r = {k: "" for k in ROW_FIELDS}
        r.update(dataset="cifar10", defense=defense, seed=0, attack=attack, norm=norm, epsilon=eps,
                 mode="untargeted", accuracy=int(mask.sum()) / len(mask), n=len(mask), steps=steps, restarts=1,
                 params=params, spec=f"{attack}:eps={eps:g},norm={norm}", eval_seed=0,
                 checkpoint_sha256=f"{seed:02d}" * 32, source=f"runs/x/{defense}/seed0",
                 correct_mask=pack_mask(torch.from_numpy(mask)), kind="attack")
        rows.append(with_interval(r))
    row("none", "Linf", 0.0, clean)
    for norm, eps, first in (("Linf", 8 / 255, "fgsm"), ("L2", 0.5, "apgd")):
        weak = clean & (rng.random(n) < 0.7)
        row(first, norm, eps, weak)
        row("autoattack", norm, eps, (weak & (rng.random(n) < 0.8))[:aa_n], 100, json.dumps({"queries": 5000}))
    return rows


def _export(root: Path) -> Path:
    results = root / "results"
    results.mkdir()
    rows = _rows("full", 10_000, 10_000, 1) + _rows("part", 10_000, 1_000, 2)
    with open(results / "robustness.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        w.writeheader()
        w.writerows(rows)
    out = root / "model_info"
    for norm, eps in (("Linf", 8 / 255), ("L2", 0.5)):
        write_model_infos(model_infos(results, epsilon=eps, norm=norm), out)
    return out


def test_robustbench_reads_the_exported_linf_and_l2_folders(robustbench_utils, tmp_path, monkeypatch, capsys):
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    out = _export(tmp_path)
    names = sorted(p.stem for p in (out / "cifar10" / "Linf").glob("*.json"))
    assert names == ["full_seed0", "part_seed0"]
    assert sorted(p.stem for p in (out / "cifar10" / "L2").glob("*.json")) == names
    robustbench_utils.all_models[BenchmarkDataset.cifar_10] = {
        ThreatModel.Linf: dict.fromkeys(names), ThreatModel.L2: dict.fromkeys(names)}
    monkeypatch.chdir(tmp_path)  # list_available_models reads ./model_info/<dataset>/<threat model>
    for threat in ("Linf", "L2"):
        robustbench_utils.list_available_models("cifar10", threat)
        table = capsys.readouterr().out.splitlines()
        listed = [line for line in table if "_seed0" in line]
        assert len(listed) == 2, table
        for name in names:
            info = json.loads((out / "cifar10" / threat / f"{name}.json").read_text())
            # RobustBench ranks by external first, then autoattack_acc
            key = robustbench_utils.get_key(info, robustbench_utils.ACC_FIELDS[ThreatModel(threat)])
            assert key == float(info["external"])
            line = next(line for line in listed if f"**{name}**" in line)
            assert f"<sub>{float(info['clean_acc']):.2f}%</sub>" in line
            assert f"<sub>{key:.2f}%</sub>" in line
        # AutoAttack's number only where it ran on the whole test set; left out (not "") otherwise
        full = json.loads((out / "cifar10" / threat / "full_seed0.json").read_text())
        part = json.loads((out / "cifar10" / threat / "part_seed0.json").read_text())
        assert float(full["autoattack_acc"]) == pytest.approx(full["great_bench"]["autoattack"]["accuracy_pct"],
                                                              abs=0.005)
        assert "autoattack_acc" not in part and "1,000 of the 10,000 cifar10" in part["footnote"]
