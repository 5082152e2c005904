"""``great-bench tune``: a defense's hyper-parameters searched by Ray Tune on the validation split.

Every trial is a variant of one defense (``NAME=DEFENSE:key=value,...``, the form ``run
--variant`` accepts) trained on the preset's training examples and scored, after each epoch, on
``data.val_subset`` (held-out TRAINING examples, ``bench.splits``): the test split is never
loaded. The objective is robust accuracy under PGD (Linf, the preset's ``eval.epsilon``, random
start) with an optional floor on clean accuracy: a trial under the floor scores ``clean - 1``,
below every trial that meets it. Ray Tune draws the configs (random search over the space) and
its ASHA scheduler stops poor trials early; a trial whose loss turns non-finite errors and is
recorded as failed while the others go on. The configs are drawn up front from the seed, and
tuning.csv is rewritten whenever a trial ends, so re-running the same command resumes from
great-bench's own files and trains only the trials without a final row (Ray's pickled
experiment state in ``<out>/tune/<name>`` is never read back: great-bench never unpickles).

Outputs (atomic writes) in ``results/<name>/``: ``tuning.csv`` (one row per trial),
``best.toml`` (the best config as a ``[variants]`` block, and the ``--variant`` line in a
comment) and ``tune.json`` (the request, so a resume with another request is refused).
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from core.atomic import write_text
from bench.config.presets import parse_value
from bench.data import Batches, to_float
from bench.defense_track import model_spec_for
from bench.models import build_model
from bench.pipeline import resolve_config
from bench.train import ramp, resolve_device
from defenses.pgd import eval_mode, pgd_linf, step_size
from core.errors import BenchError
from bench.method import Context, hp_keys
from core.registry import suggest

SCALES = ("log", "lin", "list")
CSV_FIELDS = ("trial", "status", "config", "val_clean_acc", "val_robust_acc", "objective",
              "epochs_run", "seconds", "error")
PGD_STEPS = 10       # the validation attack: PGD-10, step 2.5 * eps / 10, one random start
PGD_STEP_SCALE = 2.5


@dataclass(frozen=True)
class Dimension:
    """One hyper-parameter's search range: ``log:LO:HI``, ``lin:LO:HI`` or ``list:A,B,...``."""

    key: str
    scale: str
    values: tuple

    def ray(self):
        """The Ray Tune sampler of this dimension."""
        from ray import tune

        if self.scale == "log":
            return tune.loguniform(*self.values)
        if self.scale == "lin":
            return tune.uniform(*self.values)
        return tune.choice(list(self.values))


def parse_dimension(text: str, valid_keys: Sequence[str]) -> Dimension:
    """``KEY=log:LO:HI`` | ``KEY=lin:LO:HI`` | ``KEY=list:A,B,...``; unknown keys get a did-you-mean."""

    key, sep, spec = text.partition("=")
    key = key.strip()
    form = "KEY=log:LO:HI, KEY=lin:LO:HI or KEY=list:A,B,..., e.g. alpha_max=log:0.01:1"
    if not sep or not key or not spec:
        raise BenchError(f"--space {text!r} must look like {form}")
    if key not in valid_keys:
        raise BenchError(f"--space {text!r}: unknown hyper-parameter {key!r}{suggest(key, valid_keys)}; "
                         f"valid for this defense: {', '.join(sorted(valid_keys))}")
    scale, _, rest = spec.partition(":")
    if scale not in SCALES:
        raise BenchError(f"--space {text!r}: unknown scale {scale!r}{suggest(scale, SCALES)}; valid: {', '.join(SCALES)}")
    if scale == "list":
        values = tuple(parse_value(v.strip()) for v in rest.split(",") if v.strip())
        if not values:
            raise BenchError(f"--space {text!r}: the list is empty; give at least one value, e.g. {key}=list:0.1,0.5")
        return Dimension(key, scale, values)
    parts = rest.split(":")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise BenchError(f"--space {text!r}: a range is {scale}:LO:HI with two numbers, e.g. {key}={scale}:0.01:1") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise BenchError(f"--space {text!r}: the range's ends must be finite numbers")
    if lo > hi:
        raise BenchError(f"--space {text!r}: the low end {lo:g} is above the high end {hi:g}; write {scale}:{hi:g}:{lo:g}")
    if scale == "log" and lo <= 0:
        raise BenchError(f"--space {text!r}: a log range needs a low end > 0 (got {lo:g}); use lin:{lo:g}:{hi:g}")
    return Dimension(key, scale, (lo, hi))


@dataclass(frozen=True)
class TuneRequest:
    """What ``great-bench tune`` was asked: the preset, its overrides and variants, the defense,
    the space, the budget and the objective's clean floor."""

    name: str
    preset: str
    defense: str
    space: tuple[str, ...]
    trials: int
    min_clean: float = 0.0
    overrides: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    epochs: int | None = None
    grace_epochs: int = 1
    seed: int = 0


def objective(clean: float, robust: float, min_clean: float) -> float:
    """Robust accuracy when clean accuracy meets the floor; else ``clean - 1`` (below every feasible trial)."""
    return robust if clean >= min_clean else clean - 1.0


def pgd_accuracy(model: torch.nn.Module, data, eps: float, *, seed: int, batch_size: int = 512) -> tuple[float, float]:
    """(clean, robust) accuracy of ``model`` on ``data`` under Linf PGD-10 at ``eps`` (random start)."""

    gen = torch.Generator().manual_seed(seed)
    clean = robust = 0
    with eval_mode(model):
        for i in range(0, len(data), batch_size):
            x = to_float(data.images[i:i + batch_size])
            y = data.labels[i:i + batch_size]
            with torch.no_grad():
                clean += int((model(x).argmax(1) == y).sum())
            start = x + (torch.rand(x.shape, generator=gen) * 2 - 1).to(x.device) * eps
            x_adv = pgd_linf(lambda z: F.cross_entropy(model(z), y, reduction="sum"), x, start, eps,
                             step_size(eps, PGD_STEPS, PGD_STEP_SCALE), PGD_STEPS) if eps > 0 else x
            with torch.no_grad():
                robust += int((model(x_adv).argmax(1) == y).sum())
    n = max(1, len(data))
    return clean / n, robust / n


def variant_line(name: str, defense: str, config: dict[str, Any]) -> str:
    """``NAME=DEFENSE:k=v,...``: what ``run --variant`` accepts."""
    params = ",".join(f"{k}={_toml(v)}" for k, v in sorted(config.items()))
    return f"{name}={defense}:{params}" if params else f"{name}={defense}"


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(float(f"{v:.6g}"))
    if isinstance(v, str):
        return json.dumps(v)
    return str(v)


def trial_settings(req: TuneRequest, config: dict[str, Any]):
    """The Settings of one trial: the request's preset with the trial's config as the variant ``trial``."""

    base = resolve_config(req.preset, list(req.overrides), epochs=req.epochs, variants=list(req.variants))
    defense, fixed = req.defense, {}
    if defense in base.variants:   # tuning a variant: its base defense, its hp under the trial's
        defense, fixed = base.variants[defense].defense, dict(base.variants[defense].hp)
    else:
        base.defense_class(defense)   # unknown name -> the registry's did-you-mean
    return resolve_config(req.preset, list(req.overrides), epochs=req.epochs,
                          variants=[*req.variants, variant_line("trial", defense, {**fixed, **config})])


def _trainable(config: dict[str, Any], req: TuneRequest, data_dir: str | None, configs: list[dict[str, Any]]):
    """One Ray Tune trial (``config = {"trial": index}``): train ``configs[index]`` epoch by
    epoch and report its validation scores after each epoch."""
    from ray import tune

    torch.set_num_threads(1)
    s = trial_settings(req, configs[config["trial"]])
    device = resolve_device(s.train.device)
    train = s.data.split("train", device=device, data_dir=data_dir)
    val = s.data.split("val", device=device, data_dir=data_dir)
    spec = model_spec_for(s.data.dataset, train.shape, train.num_classes)
    hp = s.method_hp("trial")
    torch.manual_seed(req.seed)
    model = build_model(s.model.name, spec).to(device)
    method = s.defense_class("trial")(model, Context(s.model.name, spec, hp, device))
    batches = Batches(train, s.data.batch_size, s.data.augmentation)
    gen = torch.Generator().manual_seed(req.seed)
    optimizers = method.optimizers()
    for opt in optimizers.values():
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
    epochs, t0 = s.train.epochs, time.time()
    for epoch in range(epochs):
        r = ramp(epoch, epochs, float(hp.get("alpha_max", 0.0)), float(hp.get("beta_max", 0.0)))
        for opt in optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * r.lr_mult
        method.train(True)
        for x, y in batches.epoch(gen):
            logs = method.step(x, y, r)
            bad = [k for k, v in logs.items() if not torch.isfinite(torch.as_tensor(v)).all()]
            if bad:
                raise FloatingPointError(f"{', '.join(bad)} became non-finite in epoch {epoch + 1}")
        method.train(False)
        clean, robust = pgd_accuracy(method.model, val, s.eval.epsilon, seed=req.seed)
        tune.report({"val_clean_acc": clean, "val_robust_acc": robust,
                     "objective": objective(clean, robust, req.min_clean),
                     "epochs_run": epoch + 1, "seconds": round(time.time() - t0, 3)})


def check_request(req: TuneRequest, data_dir: str | None) -> tuple[Any, list[Dimension]]:
    """Everything checked before anything is written: preset, defense, space, budget, val split."""

    if isinstance(req.trials, bool) or not isinstance(req.trials, int) or req.trials <= 0:
        raise BenchError(f"--trials = {req.trials!r} is invalid: the trial budget is a positive integer")
    if isinstance(req.grace_epochs, bool) or not isinstance(req.grace_epochs, int) or req.grace_epochs <= 0:
        raise BenchError(f"--grace-epochs = {req.grace_epochs!r} is invalid: a positive number of epochs")
    if not 0.0 <= req.min_clean <= 1.0:
        raise BenchError(f"--min-clean = {req.min_clean!r} is invalid: a clean-accuracy floor lies in [0, 1]")
    if not req.space:
        raise BenchError("give at least one --space KEY=log:LO:HI | lin:LO:HI | list:A,B,...")
    s = trial_settings(req, {})
    keys = sorted(hp_keys(s.defense_class("trial")))
    dims = [parse_dimension(t, keys) for t in req.space]
    seen = [d.key for d in dims]
    if len(set(seen)) != len(seen):
        raise BenchError(f"--space names a hyper-parameter twice: {', '.join(sorted(k for k in set(seen) if seen.count(k) > 1))}")
    if s.data.val_subset is None:
        raise BenchError("tuning needs a validation split: set data.val_subset (e.g. --val-subset 1000), "
                         "examples of the training split held out from training")
    s.data.split("val", data_dir=data_dir)   # the overlap and size checks, before anything is written
    for corner in _corners(dims):            # every value the space can take is a valid variant
        trial_settings(req, corner)
    return s, dims


def _corners(dims: list[Dimension]) -> list[dict[str, Any]]:
    lows = {d.key: d.values[0] for d in dims}
    highs = {d.key: d.values[-1] for d in dims}
    return [lows, highs]


def draw_configs(dims: list[Dimension], trials: int, seed: int) -> list[dict[str, Any]]:
    """The study's ``trials`` configs, drawn up front by Ray Tune's own samplers from one seeded
    stream (``numpy.random.default_rng(seed)``, the stream Ray's seeded random search draws from,
    in the same order), so that a rerun draws the same list and resumes by trial index."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [{d.key: _plain(d.ray().sample(random_state=rng)) for d in dims} for _ in range(trials)]


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


FINAL = ("finished", "stopped", "failed")


def trial_index(trial: str) -> int:
    """A tuning.csv ``trial``'s index: ``00003``, or Ray's ``<experiment>_00003`` in studies written
    before great-bench drew its configs up front (Ray numbers its trials in the order it draws them)."""
    return int(str(trial).rsplit("_", 1)[-1])


def resumed_rows(path: Path, configs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The final rows (finished, stopped, failed) of an earlier run of this study, by trial index;
    each must hold the config this request draws at its index, or the file is another study's."""
    if not path.is_file():
        return {}
    rows = {}
    for row in csv.DictReader(io.StringIO(path.read_text())):
        if row.get("status") not in FINAL:
            continue
        i = trial_index(row["trial"])
        if i >= len(configs) or _hp(row) != json.loads(json.dumps(configs[i], sort_keys=True)):
            raise BenchError(f"{path}: trial {row['trial']} holds {_hp(row)}, not the config this request "
                             f"draws for it; give another --name")
        rows[i] = row
    return rows


def _row(i: int, config: dict[str, Any], status: str, metrics: dict[str, Any] | None = None,
         error: str = "") -> dict[str, Any]:
    m = metrics or {}
    return {"trial": f"{i:05d}", "status": status, "config": json.dumps(config, sort_keys=True),
            "val_clean_acc": m.get("val_clean_acc", ""), "val_robust_acc": m.get("val_robust_acc", ""),
            "objective": m.get("objective", ""), "epochs_run": m.get("epochs_run", 0),
            "seconds": m.get("seconds", ""), "error": error}


class Recorder:
    """Keeps tuning.csv and best.toml current while Ray runs: a row per trial, rewritten
    atomically whenever a trial ends (finished after all epochs, stopped early by ASHA, or
    failed with the last line of its error), so an interrupted study loses only running trials."""

    def __init__(self, req: TuneRequest, folder: Path, configs: list[dict[str, Any]], epochs: int,
                 done: dict[int, dict[str, Any]]):
        self.req, self.folder, self.configs, self.epochs = req, folder, configs, epochs
        self.rows = dict(done)
        self.last: dict[int, dict[str, Any]] = {}

    def result(self, i: int, metrics: dict[str, Any]) -> None:
        self.last[i] = metrics

    def ended(self, i: int, error: str | None = None) -> None:
        m = self.last.get(i)
        run = (m or {}).get("epochs_run", 0)
        status = "failed" if error is not None else "finished" if run >= self.epochs else "stopped"
        self.rows[i] = _row(i, self.configs[i], status, m, error or "")
        self.write()

    def table(self) -> list[dict[str, Any]]:
        return [self.rows.get(i) or _row(i, c, "unfinished", self.last.get(i))
                for i, c in enumerate(self.configs)]

    def write(self) -> None:
        rows = self.table()
        write_text(self.folder / "tuning.csv", csv_text(rows))
        best = best_row(rows)
        if best is not None:
            write_text(self.folder / "best.toml", best_toml(self.req, best))


def _ray_callback(recorder: Recorder):
    """A Ray Tune callback that feeds ``recorder`` from the driver process."""
    from ray.tune import Callback

    class _Feed(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            recorder.result(trial.config["trial"], result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            recorder.ended(trial.config["trial"])

        def on_trial_error(self, iteration, trials, trial, **info):
            recorder.ended(trial.config["trial"], error=_error_line(trial))

    return _Feed()


def _error_line(trial) -> str:
    """The last line of a failed trial's error, from the text file Ray writes (never its pickle)."""
    path = getattr(trial, "error_file", None)
    text = Path(path).read_text() if path and Path(path).is_file() else "error (no message)"
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "error")[:300]


def tune(req: TuneRequest, *, results: str | Path = "results", out: str | Path = "runs",
         data_dir: str | None = None, quiet: bool = False, address: str | None = None) -> Path:
    """Run (or resume) the study of ``req``; return the folder holding tuning.csv and best.toml.

    Resuming reads only great-bench's own files: ``tune.json`` (the request must be the same) and
    the final rows of ``tuning.csv``; the configs are drawn again from the seed and the trials
    without a final row train from the start. Ray's own experiment state (a pickle) is never
    read back. A resumed study's ASHA rungs start empty, so a trial that was running when the
    study stopped may now train further than it would have."""
    _, dims = check_request(req, data_dir)
    folder = Path(results) / req.name
    spec_json = json.dumps(asdict(req), indent=1, sort_keys=True)
    old = folder / "tune.json"
    if old.is_file() and old.read_text() != spec_json:
        raise BenchError(f"{folder} holds another tuning request (tune.json); give another --name "
                         "or repeat the same command to resume")
    configs = draw_configs(dims, req.trials, req.seed)
    epochs = trial_settings(req, {}).train.epochs
    recorder = Recorder(req, folder, configs, epochs, resumed_rows(folder / "tuning.csv", configs))
    todo = [i for i in range(len(configs)) if i not in recorder.rows]
    if not old.is_file():
        write_text(old, spec_json)
    if todo:
        _fit(req, todo, configs, epochs, recorder, Path(out), data_dir, quiet, address)
    recorder.write()
    if not quiet:
        rows = recorder.table()
        best = best_row(rows)
        print(f"{req.name}: {sum(r['status'] == 'finished' for r in rows)} of {len(rows)} trials finished, "
              f"{sum(r['status'] == 'stopped' for r in rows)} stopped early, "
              f"{sum(r['status'] == 'failed' for r in rows)} failed -> {folder / 'tuning.csv'}")
        if best is not None:
            print(f"best: {variant_line(f'{req.defense}-tuned', req.defense, _hp(best))} "
                  f"(val robust {float(best['val_robust_acc']):.4f}, clean {float(best['val_clean_acc']):.4f})")
    return folder


def _fit(req: TuneRequest, todo: list[int], configs: list[dict[str, Any]], epochs: int, recorder: Recorder,
         out: Path, data_dir: str | None, quiet: bool, address: str | None) -> None:
    """Train the trials ``todo`` on Ray Tune with ASHA early stopping."""
    import os

    import ray
    from ray import tune as rtune
    from ray.tune.schedulers import ASHAScheduler

    if not ray.is_initialized():
        path = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))
        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    scheduler = ASHAScheduler(max_t=epochs, grace_period=min(req.grace_epochs, epochs),
                              reduction_factor=3, time_attr="training_iteration")
    tuner = rtune.Tuner(
        rtune.with_parameters(_trainable, req=req, data_dir=data_dir, configs=configs),
        param_space={"trial": rtune.grid_search(todo)},
        tune_config=rtune.TuneConfig(metric="objective", mode="max", scheduler=scheduler),
        run_config=_run_config(req.name, (out / "tune").resolve(), quiet, recorder))
    tuner.fit()


def _run_config(name: str, storage: Path, quiet: bool, recorder: Recorder):
    try:
        from ray.tune import RunConfig, FailureConfig
    except ImportError:  # pragma: no cover - older Ray
        from ray.train import RunConfig, FailureConfig
    return RunConfig(name=name, storage_path=str(storage), verbose=0 if quiet else 1,
                     callbacks=[_ray_callback(recorder)],
                     failure_config=FailureConfig(max_failures=0, fail_fast=False))


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The trial with all its epochs and the highest objective (ASHA's stopped trials trained less)."""
    ok = [r for r in rows if r["status"] == "finished" and r["objective"] != ""]
    return max(ok, key=lambda r: float(r["objective"])) if ok else None


def _hp(row: dict[str, Any]) -> dict[str, Any]:
    """A tuning.csv row's trial hyper-parameters (its JSON column)."""
    return json.loads(row[CSV_FIELDS[2]])


def best_toml(req: TuneRequest, row: dict[str, Any]) -> str:
    """The best config as a ``[variants]`` block for a preset, with its ``--variant`` line."""
    config = _hp(row)
    name = f"{req.defense}-tuned"
    hp = ", ".join(f"{k} = {_toml(v)}" for k, v in sorted(config.items()))
    return (f"# great-bench tune --name {req.name}: trial {row['trial']}, validation clean "
            f"{float(row['val_clean_acc']):.4f}, robust {float(row['val_robust_acc']):.4f} "
            f"(PGD-{PGD_STEPS}, {row['epochs_run']} epochs)\n"
            f"# great-bench run --preset {req.preset} --variant {variant_line(name, req.defense, config)}\n"
            f"[variants.{name}]\ndefense = \"{req.defense}\"\nhp = {{ {hp} }}\n")


def csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
