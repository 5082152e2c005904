"""Read CIFAR-10 "python version" batches without executing arbitrary pickled code.

The official CIFAR-10 files are pickles. A plain unpickler can run any code an attacker
puts in such a file; this one resolves only the few numpy globals a data batch needs
and refuses everything else. Checkpoints never use pickle (safetensors + JSON).
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

from bench.errors import BenchError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how protocol-2 pickles store bytes; encodes text, runs nothing else
}


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise BenchError(f"refusing to load {module}.{name} from a data batch: not plain data")


def load_data_batch(path: Path) -> dict:
    try:
        obj = _DataOnlyUnpickler(io.BytesIO(Path(path).read_bytes()), encoding="latin1").load()
    except BenchError:
        raise
    except Exception as exc:
        raise BenchError(f"{path} is not a readable CIFAR-10 batch: {exc}") from None
    if not isinstance(obj, dict):
        raise BenchError(f"{path}: expected a dict batch, got {type(obj).__name__}")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if "data" not in obj or "labels" not in obj:
        raise BenchError(f"{path}: batch lacks 'data' or 'labels'")
    return obj
