"""The multitask command end to end on tiny data, and its refusals of bad input."""
from __future__ import annotations

import csv
import json

import pytest

from bench.cli import main


def _run(tmp_path, *sets):
    args = ["multitask", "--preset", "smoke", "--quiet", "--device", "cpu",
            "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    for s in sets:
        args += ["--set", s]
    return main(args)


@pytest.mark.parametrize("setting, message", [
    ('multitask.tasks=["class", "color", "edge"]', "needs a colour dataset"),
    ("multitask.tasks=[]", "non-empty list of tasks"),
    ('multitask.tasks=["class", "depth"]', "unknown task 'depth'"),
    ('multitask.tasks=["edge", "edge"]', "names a task twice"),
    ('multitask.methods=["equal", "pcgrad"]', "unknown multi-task method 'pcgrad'"),
    ("multitask.gal_min=0.0", "GALs must stay positive"),
])
def test_bad_input_is_refused_before_any_work(tmp_path, capsys, setting, message):
    assert _run(tmp_path, setting) == 2
    err = capsys.readouterr().err
    assert message in err and "error:" in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()


def test_multitask_command_trains_every_method_and_writes_table_csv_and_plot(tmp_path, capsys):
    assert _run(tmp_path) == 0
    res = tmp_path / "results"
    rows = list(csv.DictReader(open(res / "multitask.csv")))
    methods = ["equal", "uncertainty", "gradnorm", "great"]
    assert {(r["method"], r["task"]) for r in rows} == {(m, t) for m in methods for t in ("class", "edge", "auto")}
    assert list(rows[0]) == ["method", "seed", "task", "metric", "value"]
    for r in rows:
        v = float(r["value"])
        if r["task"] == "class":
            assert r["metric"] == "% error" and 0.0 <= v <= 100.0
        else:
            assert r["metric"] == "RMSE" and 0.0 < v < 1.0  # sigmoid outputs vs [0, 1] targets
    md = (res / "multitask.md").read_text()
    assert "| GREAT |" in md and "| Class (% error) | Edge (RMSE) | Auto (RMSE) |" in md
    assert md.count("**") >= 6  # a best value marked in each of the three columns
    assert (res / "multitask_weights.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    great = tmp_path / "runs" / "multitask" / "fashion-mnist" / "great" / "seed0"
    meta = json.loads((great / "meta.json").read_text())
    assert meta["kind"] == "multitask" and set(meta["metrics"]) == {"class", "edge", "auto"}
    assert {"gals.safetensors", "aux.safetensors", "model.safetensors"} <= set(meta["files"])
    log = list(csv.DictReader(open(great / "train_log.csv")))
    assert {"w_class", "w_edge", "w_auto", "aux_loss", "aux_acc"} <= set(log[0])
    # A second call reuses the finished runs and reproduces the same rows.
    before = (res / "multitask.csv").read_text()
    stamp = (great / "meta.json").stat().st_mtime_ns
    assert _run(tmp_path) == 0
    assert (great / "meta.json").stat().st_mtime_ns == stamp
    assert (res / "multitask.csv").read_text() == before
