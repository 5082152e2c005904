"""Run directories and their identity: one abstraction for the defense, distillation and
multi-task tracks.

A run directory records, in ``identity.json`` (written when training starts) and in
``meta.json`` (written last, when it finishes), the identity of the run: everything that
determines its weights -- the method's name, class, code version and hyper-parameters, the
data and its subset (fingerprints), the model, the seed and the loop settings. A finished
run is reused only when the identity recorded there equals the one asked for, never because
the folder exists (DESIGN.md). On a mismatch the caller either retrains, printing one line
that says what changed (``run`` and the tracks), or refuses with that line (``train``
without ``--force``).
"""
from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import torch

from core.atomic import write_json
from bench.checkpoint import STATE_FILE
from core.errors import BenchError
from bench.method import code_version, hp_keys

IDENTITY_FILE = "identity.json"
Action = Literal["reuse", "resume", "fresh"]


def run_path(root: str | Path, track: str, dataset: str, *names: str, seed: int | None = None) -> Path:
    """The run-directory layout of every track: ``<root>/<track>/<dataset>/<name>.../seed<S>``
    (the defense track's ``track`` is ""). A name may be a ``module:Class`` or hold a '/',
    which would nest folders: both become '_', the one escaping rule for folder names."""
    parts = [track, dataset, *names] + ([f"seed{seed}"] if seed is not None else [])
    return Path(root).joinpath(*(p.replace(":", "_").replace("/", "_") for p in parts if p))


def fingerprint(identity: dict[str, Any]) -> str:
    """A short hash of an identity (canonical JSON)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def describe_change(old: dict[str, Any], new: dict[str, Any], most: int = 4) -> str:
    """``hp.alpha_max 1.0 -> 0.1, epochs 2 -> 3``: the leaves that differ, in dotted form."""
    a, b = _flatten(json.loads(json.dumps(old, default=str))), _flatten(json.loads(json.dumps(new, default=str)))
    missing = object()
    changes = [f"{k} {a.get(k, '(unset)')!s} -> {b.get(k, '(unset)')!s}"
               for k in sorted(a.keys() | b.keys()) if a.get(k, missing) != b.get(k, missing)]
    if len(changes) > most:
        changes = changes[:most] + [f"(+{len(changes) - most} more)"]
    return ", ".join(changes) or "identity changed"


def versions() -> dict[str, str]:
    """Library versions recorded in every run's meta.json (and every result row)."""
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("torchvision", "torchattacks", "foolbox", "numpy", "safetensors"):
        try:
            out[mod] = version(mod)
        except PackageNotFoundError:  # not installed: record its absence, do not fail training
            out[mod] = "missing"
    try:
        out["great-bench"] = version("great-bench")
    except PackageNotFoundError:
        out["great-bench"] = "source"
    return out


def git_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if rev.returncode == 0:
            return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


@dataclass
class Run:
    """One run directory and the identity asked of it.

    ``label`` names the run in messages (``great/seed0``); ``identity`` is a JSON-able dict.
    """

    path: Path
    label: str
    identity: dict[str, Any]

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.identity = json.loads(json.dumps(self.identity, sort_keys=True, default=str))

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.identity)

    @property
    def finished(self) -> bool:
        return (self.path / "meta.json").is_file()

    @property
    def partial(self) -> bool:
        return (self.path / STATE_FILE).is_file() and not self.finished

    def stored_identity(self) -> dict[str, Any] | None:
        """The identity recorded in the folder (None: none recorded, an older version's run)."""
        for name in ("meta.json", IDENTITY_FILE):
            path = self.path / name
            if path.is_file():
                try:
                    data = json.loads(path.read_text())
                except json.JSONDecodeError:
                    return None
                return data.get("identity") if name == "meta.json" else data
        return None

    def matches(self) -> bool:
        return self.stored_identity() == self.identity

    def change(self) -> str:
        """One line: what differs between the recorded identity and the one asked for."""
        old = self.stored_identity()
        what = "no identity recorded (run from an older version)" if old is None else describe_change(old, self.identity)
        return f"{self.label}: {what}"

    def prepare(self, *, reuse: bool, resume: bool = False, force: bool = False,
                log: Callable[[str], None] = print) -> Action:
        """Decide what to do with the folder and get it ready; return the action.

        ``reuse=True`` (``run`` and the tracks): a matching finished run is reused, a matching
        interrupted one resumed, a stale one retrained after one line saying what changed.
        ``reuse=False`` (``train``): a finished or stale run is refused unless ``force``; an
        interrupted one continues only with ``resume``, and ``resume`` with no saved state
        is an error rather than a silent fresh start.
        """
        exists = self.finished or self.partial
        if force or (reuse and exists and not self.matches()):
            if reuse and exists and not force:
                log(f"{self.change()}; retraining")
            return self._fresh()
        if reuse:
            return "reuse" if self.finished else ("resume" if self.partial else self._fresh())
        if exists and not self.matches():
            raise BenchError(f"{self.change()}; {self.path} holds a run with other settings: "
                             "pass --force to retrain it")
        if self.finished:
            raise BenchError(f"{self.path} already holds a finished run of these settings; "
                             "pass --force to retrain it")
        if self.partial:
            if not resume:
                raise BenchError(f"{self.path} holds an interrupted run; pass --resume to continue it "
                                 "or --force to start over")
            return "resume"
        if resume:
            raise BenchError(f"cannot resume {self.path}: no saved training state ({STATE_FILE}); "
                             "run without --resume to start it")
        return self._fresh()

    def _fresh(self) -> Action:
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        write_json(self.path / IDENTITY_FILE, self.identity)
        return "fresh"

    def meta(self, kind: str, **fields: Any) -> dict[str, Any]:
        """The metadata every track writes into meta.json (``fit`` adds files, metrics,
        versions and timings): kind, identity, fingerprint, the command line, plus ``fields``."""
        return {"kind": kind, "label": self.label, "identity": self.identity, "fingerprint": self.fingerprint,
                "command": " ".join(sys.argv), **fields}


def method_identity(name: str, cls: type, hp: dict[str, Any], keys: Iterable[str] | None = None) -> dict[str, Any]:
    """The method part of an identity: registered name, class, code version and the
    hyper-parameters it reads (``keys``; default: its declared ones plus ``COMMON_HP``)."""
    read = set(hp_keys(cls) if keys is None else keys)
    return {"name": name, "class": f"{cls.__module__}:{cls.__qualname__}", "code": code_version(cls),
            "hp": {k: hp[k] for k in sorted(hp) if k in read}}
