"""The library API: typed functions to train, evaluate, report and run the whole benchmark.

The command line (``bench/commands``) only parses arguments and calls these; users import
them directly (in the spirit of RobustBench's ``benchmark()``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from bench.eval.evaluate import evaluate
from bench.eval.transfer import TransferAttack, find_source, transfer_specs
from bench.eval.schema import ROW_FIELDS, row_key, transfer_label
from bench.eval.subjects import Subject, eval_set_for, recorded_data, subject_from_factory, subject_from_run
from attacks.specs import AttackSpec
from bench.config.presets import apply_overrides, load_preset
from bench.defense_track import model_spec_for, train_defense
from core.errors import BenchError
from bench.config.eval_settings import EvalSettings, sweep_specs
from bench.executors import EXECUTORS, Job, JobContext
from bench.config.folder_settings import write_folder_settings
from bench.report.write import write_report
from bench.csv_files import merge_rows, read_rows
from bench.run import run_path
from bench.config.settings import Settings, apply_options, parse
from bench.train import resolve_device


def resolve_config(preset: str | Path, overrides: Sequence[str] = (), *, epochs: int | None = None,
                   seed: int | None = None, seeds: Sequence[int] | None = None, device: str | None = None,
                   variants: Sequence[str] = (), defense: str | None = None) -> Settings:
    """A preset (name or .toml path) with ``section.key=value`` overrides, ``--variant``
    declarations (``NAME=DEFENSE[:key=value,...]``) and the common options applied, parsed
    by ``bench.config.settings.parse`` (unknown keys and badly typed values refused). ``defense``
    (``train``) makes that one defense the preset's list, so its own hyper-parameters are
    valid keys. Returns the frozen ``Settings``; their ``source`` is what runs record in meta.json."""
    if seed is not None and seeds is not None:
        raise BenchError("give --seed or --seeds, not both")
    cfg = apply_options(apply_overrides(load_preset(str(preset)), list(overrides)), variants=variants,
                        defense=defense, epochs=epochs, seeds=[seed] if seed is not None else seeds, device=device)
    return parse(cfg)


def default_runs_root(s: Settings, out: str | Path | None = None) -> Path:
    """``runs/<preset>`` unless ``out`` is given: where every track keeps its run directories."""
    return Path(out) if out else Path("runs") / s.preset


def default_results_dir(s: Settings, results: str | Path | None = None) -> Path:
    """``results/<preset>`` unless ``results`` is given: where every track writes its report."""
    return Path(results) if results else Path("results") / s.preset


def train_all(s: Settings, out: str | Path, *, data_dir: str | None = None, quiet: bool = False) -> list[Path]:
    """Every defense and variant x seed of a preset. A finished run of the same identity is
    reused, an interrupted one resumed, a stale one retrained (one line says what changed)."""
    return [train_defense(s, defense, seed, out, data_dir=data_dir, reuse=True, quiet=quiet)
            for defense, seed in s.jobs()]


def evaluate_runs(run_dirs: Sequence[str | Path], specs: Sequence[AttackSpec], csv_path: str | Path,
                  settings: EvalSettings, *,
                  data_dir: str | None = None, device: str | None = None, force: bool = False,
                  quiet: bool = False) -> tuple[list[dict[str, Any]], list[Subject]]:
    """Evaluate finished run directories (each on the test data it was trained with). The
    sweep's transfer attacks are made on the ``settings.transfer_source`` run of the same
    dataset and seed: one of ``run_dirs``, else the one beside each run in the standard
    layout (``bench.run.run_path``); a run with neither gets no transfer rows."""
    dev = resolve_device(device)
    subjects = [subject_from_run(r, dev) for r in run_dirs]  # fails early on a bad run or sha256
    rows = evaluate_subjects(subjects, specs, csv_path, settings, device=dev, data_dir=data_dir, force=force,
                             quiet=quiet, beside=True)
    return rows, subjects


def transfer_source_of(subject: Subject, among: Sequence[Subject], settings: EvalSettings, device: str, *,
                       beside: bool = False) -> Subject | None:
    """The run whose examples ``subject``'s transfer rows use (``bench.eval.transfer``): the
    ``settings.transfer_source`` run of its dataset and seed among ``among``, else (``beside``)
    in the standard run layout next to the subject's own run directory."""
    found = find_source(subject, among, settings.transfer_source)
    if found is not None or not beside or not subject.source:
        return found
    run_dir = Path(subject.source)
    if len(run_dir.parents) < 3:
        return None
    root = run_dir.parents[2]
    if run_path(root, "", subject.dataset, str(subject.defense), seed=subject.seed) != run_dir:
        return None  # not in the standard layout: no sibling to look for
    candidate = run_path(root, "", subject.dataset, settings.transfer_source, seed=subject.seed)
    return subject_from_run(candidate, device) if (candidate / "meta.json").is_file() else None


def evaluate_subjects(subjects: Sequence[Subject], specs: Sequence[AttackSpec], csv_path: str | Path,
                      settings: EvalSettings, *, device: str, data_dir: str | None = None, force: bool = False,
                      quiet: bool = False, beside: bool = False) -> list[dict[str, Any]]:
    """Evaluate finished runs' subjects one by one (each on the test data it was trained
    with), with the transfer rows of those whose source (``transfer_source_of``) is found;
    each source's examples are made once for all its targets."""
    rows: list[dict] = []
    transfer_by_source: dict[str, TransferAttack] = {}  # source sha256 -> its examples, made once
    for subject in subjects:
        data = eval_set_for(recorded_data(subject), settings.n_test, data_dir=data_dir, device=device,
                            expect_fingerprint=subject.meta.get("test_fingerprint"))
        source = transfer_source_of(subject, subjects, settings, device, beside=beside) if transfer_specs(specs) \
            else None
        transfer = None if source is None else transfer_by_source.setdefault(source.sha256,
                                                                              TransferAttack(source, settings.batch_size))
        if transfer_specs(specs) and source is None and not quiet:
            print(f"no transfer source ({settings.transfer_source}, {subject.dataset} seed {subject.seed}) for "
                  f"{subject.defense}: no transfer rows")
        rows = evaluate([subject], data, specs, csv_path, n_test=settings.n_test, eval_seed=settings.seed,
                        batch_size=settings.batch_size, force=force, quiet=quiet, save_adv=settings.save_adv,
                        transfer=transfer)
        if not quiet:
            print(f"evaluated {subject.defense} seed {subject.seed} ({subject.source})")
    return rows


def evaluate_model(s: Settings, factory: str, weights: str | Path, specs: Sequence[AttackSpec],
                   csv_path: str | Path,
                   settings: EvalSettings, *, name: str | None = None, data_dir: str | None = None,
                   device: str | None = None, force: bool = False, quiet: bool = False) -> list[dict]:
    """Evaluate a user-brought model (``module:factory`` + safetensors weights) on the preset's
    data. It has no training seed, so no transfer source: the sweep's transfer entries are left out."""
    dev = resolve_device(device)
    if transfer_specs(specs) and not quiet:
        print("a user-brought model has no training seed to take a transfer source from: no transfer rows")
    data = eval_set_for(s.data, settings.n_test, data_dir=data_dir, device=dev)
    subject = subject_from_factory(factory, weights, model_spec_for(s.data.dataset, data.x.shape[1:],
                                                                    data.num_classes),
                                   s.data.dataset, name=name, device=dev)
    return evaluate([subject], data, specs, csv_path, n_test=settings.n_test, eval_seed=settings.seed,
                    batch_size=settings.batch_size, force=force, quiet=quiet, save_adv=settings.save_adv)


def report(csv_path: str | Path, results: str | Path, settings: EvalSettings, *, runs: Sequence[str | Path] = (),
           data_dir: str | None = None, device: str | None = None, against: str | None = None,
           quiet: bool = False) -> list[Path]:
    """Tables, curves, masking checks and the paired comparison with ``against`` (default
    GREAT when present) from a robustness CSV (+ saliency maps given runs)."""
    if not Path(csv_path).is_file():
        raise BenchError(f"{csv_path} does not exist; run `great-bench evaluate` first (or pass --csv)")
    rows = read_rows(csv_path)
    subjects, data = [], None
    if runs:
        dev = resolve_device(device)
        subjects = [subject_from_run(r, dev) for r in runs]
        shas = {s.sha256 for s in subjects}
        rows = [r for r in rows if r["checkpoint_sha256"] in shas]
        data = eval_set_for(recorded_data(subjects[0]), settings.n_test, data_dir=data_dir, device=dev)
    return write_report(rows, Path(results), settings, subjects=subjects, data=data, against=against, quiet=quiet)


def benchmark(s: Settings, *, out: str | Path | None = None, results: str | Path | None = None,
              data_dir: str | None = None, quiet: bool = False, executor: str = "local",
              ray_address: str | None = None, cpus_per_task: int = 1) -> Path:
    """``great-bench run``: every (defense or variant, seed) job trains its run and evaluates the
    preset's sweep on the chosen executor (``bench.executors``: ``local`` or ``ray``); then, in
    this process, the transfer attacks (``bench.eval.transfer``: their source is another job's
    run), and the report is written once. Returns the results folder. Failed jobs are reported
    after the report of the others (``BenchError``); rerunning resumes: finished runs and
    computed rows are skipped."""
    run_executor = EXECUTORS.get(executor)
    runs_root = default_runs_root(s, out)
    results_dir = default_results_dir(s, results)
    settings = s.eval
    specs = sweep_specs(settings.sweep, settings.epsilon_units)
    csv_path = results_dir / "robustness.csv"
    write_folder_settings(results_dir, s)  # report, verify and export read it: no --preset needed
    jobs = [Job(defense, seed) for defense, seed in s.jobs()]
    t0 = time.time()
    done = run_executor(JobContext(s, runs_root, csv_path, data_dir), jobs, quiet=quiet,
                        address=ray_address, cpus_per_task=cpus_per_task)
    t1 = time.time()
    ok = [r for r in done if r.error is None]
    failed = [r for r in done if r.error is not None]
    transfer_seconds = 0.0
    if ok:
        dev = resolve_device(s.train.device)
        subjects = [subject_from_run(r.run_dir, dev) for r in ok]
        if transfer_specs(specs):
            # After every job: a transfer attack needs its source run, which another job trains.
            t = time.time()
            evaluate_subjects(subjects, transfer_specs(specs), csv_path, settings, device=dev, data_dir=data_dir,
                              quiet=True)
            transfer_seconds = time.time() - t
            if not any(str(sub.defense) == settings.transfer_source for sub in subjects):
                print(f"no transfer source ({settings.transfer_source}) among this preset's runs: "
                      "no transfer rows (the masking check says so)")
        # The results folder of `run` shows exactly this sweep on these checkpoints: rows cached
        # from older checkpoints or sweeps are dropped from its CSV (``evaluate`` keeps them).
        # (transfer rows: only those made on one of these checkpoints)
        shas, keys = {sub.sha256 for sub in subjects}, {spec.key() for spec in specs}
        sources = {transfer_label(str(sub.defense), sub.seed, sub.sha256) for sub in subjects}
        rows = merge_rows(csv_path, [], row_key, ROW_FIELDS,
                          keep=lambda r: r["checkpoint_sha256"] in shas and r["spec"] in keys
                          and (not r.get("transfer_from") or r["transfer_from"] in sources))
        data = eval_set_for(recorded_data(subjects[0]), settings.n_test, data_dir=data_dir, device=dev)
        write_report(rows, results_dir, settings, subjects=subjects, data=data, quiet=quiet)
    t2 = time.time()
    print(f"time: {len(jobs)} jobs on the {executor} executor {t1 - t0:.1f} s (summed over jobs: train "
          f"{sum(r.train_seconds for r in ok):.1f} s, attack {sum(r.eval_seconds for r in ok):.1f} s), transfer "
          f"{transfer_seconds:.1f} s, report "
          f"{t2 - t1:.1f} s (total {t2 - t0:.1f} s); results in {results_dir}")
    if failed:
        lines = "\n".join(f"  {r.job.label}: {r.error}" for r in failed)
        raise BenchError(f"{len(failed)} of {len(jobs)} jobs failed (the others' runs and rows are kept; "
                         f"rerun to retry only these):\n{lines}")
    return results_dir
