"""Where the (defense or variant, seed) jobs of ``run`` execute: in this process, or as Ray tasks.

A job trains one run (``bench.defense_track.train_defense``: a finished run of the same
identity is reused, an interrupted one resumed) and then evaluates it on the preset's sweep
(``bench.eval.evaluate.evaluate``: rows merged into the shared CSV under its file lock, rows
already computed skipped). Jobs are therefore independent and idempotent: any number can run
at once, on any machine that sees the same ``runs/`` and ``results/`` folders, and rerunning
a sweep resumes it. The report is written once, by the caller, after every job.

- ``local`` (default): one job after another in this process; no Ray needed.
- ``ray``: every job is a Ray task (``ray.init(address)``; a local instance when no address
  is given) asking for one GPU when the cluster has GPUs, else ``cpus_per_task`` CPUs, with
  torch's thread count set to what it asked for. A task that fails is reported with its
  error; the others go on and keep their rows and checkpoints.

Both report each job's state (queued, training, evaluating, done, failed) to one progress
bar over jobs.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from bench.eval.evaluate import evaluate
from bench.eval.subjects import eval_set_for, recorded_data, subject_from_run
from bench.defense_track import train_defense
from core.errors import BenchError
from bench.config.eval_settings import sweep_specs
from core.registry import Registry
from bench.config.settings import Settings
from bench.train import resolve_device

STATES = ("queued", "training", "evaluating", "done", "failed")


@dataclass(frozen=True)
class Job:
    defense: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.defense}/seed{self.seed}"


@dataclass
class JobResult:
    job: Job
    run_dir: Path | None = None
    error: str | None = None
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    worker: str = ""  # host:pid that ran it


@dataclass(frozen=True)
class JobContext:
    """Everything a job needs, picklable for Ray (``Settings`` are plain frozen dataclasses)."""

    settings: Settings
    runs_root: Path
    csv_path: Path
    data_dir: str | None = None


def run_job(ctx: JobContext, job: Job, report: Callable[[str], None] = lambda state: None, *,
            quiet: bool = True) -> JobResult:
    """Train, then evaluate, one (defense, seed); exceptions propagate to the executor.
    ``quiet=False`` shows the training and attack progress bars (in-process only)."""
    t0 = time.time()
    report("training")
    run_dir = train_defense(ctx.settings, job.defense, job.seed, ctx.runs_root, data_dir=ctx.data_dir,
                            reuse=True, quiet=quiet)
    t1 = time.time()
    report("evaluating")
    dev = resolve_device(ctx.settings.train.device)
    ev = ctx.settings.eval
    subject = subject_from_run(run_dir, dev)
    data = eval_set_for(recorded_data(subject), ev.n_test, data_dir=ctx.data_dir, device=dev,
                        expect_fingerprint=subject.meta.get("test_fingerprint"))
    evaluate([subject], data, sweep_specs(ev.sweep, ev.epsilon_units), ctx.csv_path, n_test=ev.n_test,
             eval_seed=ev.seed, batch_size=ev.batch_size, quiet=quiet, save_adv=ev.save_adv)
    return JobResult(job, Path(run_dir), None, t1 - t0, time.time() - t1, f"{socket.gethostname()}:{os.getpid()}")


class Board:
    """Job states, shown as counts on one progress bar over jobs."""

    def __init__(self, jobs: Sequence[Job], quiet: bool):
        self.states = {j.label: "queued" for j in jobs}
        self.bar = None if quiet or not sys.stderr.isatty() else tqdm(total=len(jobs), unit="job",
                                                                         dynamic_ncols=True)

    def set(self, label: str, state: str) -> None:
        if self.states.get(label) in (state, "done", "failed"):
            return  # final states stay: a task's last "evaluating" may be polled after its result
        self.states[label] = state
        if self.bar is not None:
            self.bar.update(1 if state in ("done", "failed") else 0)
            counts = {s: sum(v == s for v in self.states.values()) for s in STATES}
            self.bar.set_postfix_str(" ".join(f"{s} {n}" for s, n in counts.items() if n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


EXECUTORS: Registry[Callable[..., list[JobResult]]] = Registry("executor")


@EXECUTORS.register("local")
def execute_local(ctx: JobContext, jobs: Sequence[Job], *, quiet: bool = False, **_: Any) -> list[JobResult]:
    """One job after another in this process, with the training and attack progress bars
    (the per-job bar would only repeat them); a line per finished job."""
    out = []
    for job in jobs:
        try:
            res = run_job(ctx, job, quiet=quiet)
        except Exception as exc:  # noqa: BLE001 -- one job's failure must not stop the others
            res = JobResult(job, error=_error_text(exc))
        if not quiet:
            print(f"{job.label}: " + (f"FAILED: {res.error}" if res.error else
                                      f"train {res.train_seconds:.1f} s, evaluate {res.eval_seconds:.1f} s ({res.run_dir})"))
        out.append(res)
    return out


class _RemoteBoard:
    """The Ray actor behind the progress bar: tasks set their state, the driver polls."""

    def __init__(self):
        self.states: dict[str, str] = {}

    def set(self, label: str, state: str) -> None:
        self.states[label] = state

    def get(self) -> dict[str, str]:
        return dict(self.states)


def _ray_task(ctx: JobContext, job: Job, board, threads: int) -> JobResult:
    torch.set_num_threads(max(1, threads))
    return run_job(ctx, job, lambda state: board.set.remote(job.label, state))


def _error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc  # RayTaskError wraps the task's own exception
    return f"{type(cause).__name__}: {cause}"


@EXECUTORS.register("ray")
def execute_ray(ctx: JobContext, jobs: Sequence[Job], *, quiet: bool = False, address: str | None = None,
                cpus_per_task: int = 1, **_: Any) -> list[JobResult]:
    try:
        import ray  # optional: pip install 'great-bench[ray]'
    except ImportError as exc:
        raise BenchError("--executor ray needs Ray: pip install 'great-bench[ray]' (make test installs it)") from exc
    if cpus_per_task < 1:
        raise BenchError(f"--ray-cpus-per-task must be a positive integer, got {cpus_per_task}")
    if not ray.is_initialized():
        # Workers import the project and a user's own `module:Class` defenses from the same
        # paths as this process (on other nodes: the same paths on a shared filesystem).
        path = os.pathsep.join(p for p in [os.getcwd(), *sys.path] if p)
        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    gpus = ray.cluster_resources().get("GPU", 0) > 0
    task = ray.remote(num_gpus=1, num_cpus=cpus_per_task)(_ray_task) if gpus else \
        ray.remote(num_cpus=cpus_per_task)(_ray_task)
    remote_board = ray.remote(num_cpus=0)(_RemoteBoard).remote()
    board = Board(jobs, quiet)
    pending = {task.remote(ctx, job, remote_board, cpus_per_task): job for job in jobs}
    results: dict[Job, JobResult] = {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for label, state in ray.get(remote_board.get.remote()).items():
                board.set(label, state)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    results[job] = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 -- reported below; the other tasks go on
                    results[job] = JobResult(job, error=_error_text(exc))
                board.set(job.label, "failed" if results[job].error else "done")
    finally:
        board.close()
    return [results[j] for j in jobs]
