"""Checkpoints: safetensors weights plus JSON metadata. Nothing is ever unpickled.

A finished run directory holds ``model.safetensors`` (+ ``<module>.safetensors`` for
extra modules such as ``aux``), ``train_log.csv`` and ``meta.json``; ``meta.json`` is
written last, so its presence (status "finished") marks a complete run. The per-epoch
training state for ``--resume`` lives in one file, ``ckpt/last.safetensors``, whose
safetensors metadata carries the JSON part (epoch, optimizer settings, log rows).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from core.atomic import atomic_path
from core.errors import BenchError
from bench.models import ModelSpec, build_model

STATE_FILE = Path("ckpt") / "last.safetensors"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().contiguous().clone()


def save_weights(module: nn.Module, path: Path) -> str:
    """Write a module's state dict atomically; return the file's sha256."""
    with atomic_path(path) as tmp:
        save_file({k: _cpu(v) for k, v in module.state_dict().items()}, str(tmp))
    return sha256_file(path)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BenchError(f"{path} is not a readable safetensors file: {exc}") from None


def load_weights(module: nn.Module, path: Path, expected_sha256: str | None = None) -> nn.Module:
    """Load weights into ``module``, with a clear error when they do not fit it."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"weights file {path} does not exist")
    if expected_sha256 and sha256_file(path) != expected_sha256:
        raise BenchError(f"{path}: sha256 does not match the one recorded in meta.json "
                         "(file changed or corrupt); retrain or restore the original file")
    state = read_weights(path)
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = [k for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or unexpected or bad_shape:
        detail = []
        if missing:
            detail.append(f"missing {missing[:3]}")
        if unexpected:
            detail.append(f"unexpected {unexpected[:3]}")
        if bad_shape:
            k = bad_shape[0]
            detail.append(f"shape of {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}")
        raise BenchError(f"weights in {path} do not fit the {type(module).__name__} model "
                         f"(wrong architecture?): {'; '.join(detail)}")
    module.load_state_dict(state)
    return module


# ---------------------------------------------------------------- training state (resume)

def save_training_state(run_dir: Path, modules: dict[str, nn.Module],
                        optimizers: dict[str, torch.optim.Optimizer],
                        generator: torch.Generator, info: dict[str, Any]) -> None:
    """Everything needed to continue after the epoch in ``info['epoch']``, in one atomic file."""
    tensors: dict[str, torch.Tensor] = {}
    for name, m in modules.items():
        for k, v in m.state_dict().items():
            tensors[f"module/{name}/{k}"] = _cpu(v)
    opt_meta = {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, st in sd["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"optim/{name}/{idx}/{k}"] = _cpu(v)
                else:
                    scalars.setdefault(str(idx), {})[k] = v
        opt_meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/generator"] = generator.get_state()
    if torch.cuda.is_available():
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    meta = {"info": json.dumps(info), "optimizers": json.dumps(opt_meta)}
    path = run_dir / STATE_FILE
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_training_state(run_dir: Path, modules: dict[str, nn.Module],
                        optimizers: dict[str, torch.optim.Optimizer],
                        generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    path = run_dir / STATE_FILE
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise BenchError(f"cannot resume: {path} is unreadable ({exc}); restart with --force") from None
    for name, m in modules.items():
        prefix = f"module/{name}/"
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        m.load_state_dict(state)
    opt_meta = json.loads(meta["optimizers"])
    for name, opt in optimizers.items():
        om = opt_meta[name]
        state: dict[int, dict[str, Any]] = {}
        prefix = f"optim/{name}/"
        for k, v in tensors.items():
            if k.startswith(prefix):
                idx, key = k[len(prefix):].split("/", 1)
                state.setdefault(int(idx), {})[key] = v.to(device) if key != "step" else v
        for idx, sc in om["scalars"].items():
            state.setdefault(int(idx), {}).update(sc)
        opt.load_state_dict({"state": state, "param_groups": om["param_groups"]})
    torch.set_rng_state(tensors["rng/torch"])
    generator.set_state(tensors["rng/generator"])
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng/cuda"])
    return json.loads(meta["info"])


# ---------------------------------------------------------------- finished runs

def read_meta(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "meta.json"
    if not path.is_file():
        raise BenchError(f"{run_dir} has no finished checkpoint (no meta.json); train it first "
                         "or pass --resume to finish an interrupted run")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BenchError(f"{path} is corrupt JSON: {exc}") from None
    if meta.get("status") != "finished":
        raise BenchError(f"{run_dir} is not a finished run (status {meta.get('status')!r})")
    return meta


def load_run(run_dir: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode, meta) for a finished run directory; verifies the sha256."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    spec = ModelSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["model_spec"].items()})
    model = build_model(meta["model"], spec)
    load_weights(model, run_dir / "model.safetensors", meta["files"]["model.safetensors"]["sha256"])
    return model.to(device).eval(), meta
