"""``run --executor ray`` (issue 12) against a real local Ray instance with this machine's CPUs:
the same checkpoints give the same rows as the in-process runner, jobs really run in Ray
workers, and a failing task leaves every other run and row intact."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from bench.cli import main
from bench.executors import EXECUTORS, Board, Job, JobContext
from bench.pipeline import benchmark, resolve_config

ray = pytest.importorskip("ray", reason="Ray is the optional extra great-bench[ray] (make test installs it)")

DEFENSES = "train.defenses=['baseline', 'great']"


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    yield
    if ray.is_initialized():
        ray.shutdown()


def _rows(path: Path) -> dict[tuple[str, str, str], dict]:
    return {(r["defense"], r["seed"], r["spec"]): r for r in csv.DictReader(open(path))}


# Ray workers are other processes: the tests' monkeypatched data folder does not reach them,
# so every call names the tiny data explicitly (--data-dir).


def test_ray_gives_the_in_process_rows_for_the_same_checkpoints(tmp_path, tiny_data_dir):
    cfg = resolve_config("smoke", [DEFENSES])
    benchmark(cfg, out=tmp_path / "runs", results=tmp_path / "local", data_dir=str(tiny_data_dir), quiet=True)
    local = _rows(tmp_path / "local" / "robustness.csv")
    # The same runs root: Ray's jobs reuse the finished checkpoints and evaluate them in workers.
    ctx = JobContext(cfg, tmp_path / "runs", tmp_path / "ray" / "robustness.csv", data_dir=str(tiny_data_dir))
    jobs = [Job("baseline", 0), Job("great", 0)]
    results = EXECUTORS.get("ray")(ctx, jobs, quiet=True)
    assert [r.error for r in results] == [None, None]
    assert all(r.train_seconds < 1.0 for r in results)  # the finished runs were reused, not retrained
    assert all(int(r.worker.rsplit(":", 1)[1]) != os.getpid() for r in results)  # ran in Ray workers
    got = _rows(tmp_path / "ray" / "robustness.csv")
    assert len(local) == len(got) == 2 * 9  # none + FGSM (2 eps x 3 modes) + iFGSM (2 eps)
    for key, row in local.items():
        assert (got[key]["checkpoint_sha256"], got[key]["accuracy"], got[key]["correct_mask"]) == \
            (row["checkpoint_sha256"], row["accuracy"], row["correct_mask"]), key


def test_a_failing_task_leaves_the_others_and_says_which(tmp_path, tiny_data_dir, capsys):
    out, res = tmp_path / "runs", tmp_path / "res"
    argv = ["run", "--preset", "smoke", "--set", "train.defenses=['baseline']", "--quiet",
            "--variant", "diverges=custom_defenses:NanAfterFirstEpoch", "--executor", "ray",
            "--out", str(out), "--results", str(res), "--data-dir", str(tiny_data_dir)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "1 of 2 jobs failed" in err and "diverges/seed0" in err and "non-finite" in err
    rows = list(csv.DictReader(open(res / "robustness.csv")))
    assert {r["defense"] for r in rows} == {"baseline"} and len(rows) == 9  # every row of the good job
    assert (out / "fashion-mnist" / "baseline" / "seed0" / "meta.json").is_file()
    assert (res / "index.html").is_file()  # the report of the jobs that finished
    # rerunning resumes: the finished job is reused, only the failed one runs (and fails) again
    assert main(argv) == 2
    assert len(list(csv.DictReader(open(res / "robustness.csv")))) == 9


def test_job_board_keeps_final_states():
    board = Board([Job("a", 0), Job("b", 0)], quiet=True)
    board.set("a/seed0", "training")
    board.set("a/seed0", "done")
    board.set("a/seed0", "evaluating")  # a late poll of the task's last report
    board.set("b/seed0", "failed")
    assert board.states == {"a/seed0": "done", "b/seed0": "failed"}
