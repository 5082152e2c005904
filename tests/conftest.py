"""Shared fixtures: tiny datasets written in each real on-disk format.

Tests never need the network or Debian's files: ``tiny_data_dir`` writes Fashion-MNIST
style idx.gz files with a learnable signal (class-dependent bright blocks plus noise),
so a few training steps measurably learn.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def make_images(n: int, channels: int, size: int, num_classes: int = 10, seed: int = 0):
    """uint8 images whose class is readable: class k lights up block k of a 4x4-ish grid."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n).astype(np.int64)
    images = rng.integers(0, 60, (n, channels, size, size)).astype(np.uint8)
    cell = size // 4
    for i, k in enumerate(labels):
        r, c = divmod(int(k) % 16, 4)
        images[i, :, r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = 200 + rng.integers(0, 50)
    return images, labels


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_mnist_like(folder: Path, n_train: int = 256, n_test: int = 128) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = make_images(n, 1, 28, seed=seed)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images[:, 0])
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """A --data-dir holding tiny Fashion-MNIST and MNIST idx.gz files."""
    root = tmp_path_factory.mktemp("data")
    write_mnist_like(root / "fashion-mnist")
    write_mnist_like(root / "mnist")
    return root


@pytest.fixture(autouse=True)
def _isolate_data_cache(monkeypatch, tiny_data_dir):
    """Point the default data dir at the tiny files and keep Debian's real files out."""
    import bench.data as data

    monkeypatch.setattr(data, "DEFAULT_DATA_DIR", tiny_data_dir)
    monkeypatch.setattr(data, "_CACHE", {})
    spec = data.DATASETS.get("fashion-mnist")
    if spec.debian_dir is not None:
        monkeypatch.setitem(data.DATASETS._items, "fashion-mnist",
                            data.DatasetSpec(**{**spec.__dict__, "debian_dir": None}))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: threads only add synchronisation (and suffer most on a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def interleaved_session(benchmark, capsys):
    """``run(measure, table, title, key)``: one pytest-benchmark entry for a whole interleaved
    session ``measure()`` on 1 thread (on a shared 2-core machine more threads mostly wait on each
    other); records and prints ``table(result)``, returns the result. Nothing about time is asserted."""
    def run(measure, table, title: str, key: str = "result"):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            holder = {}
            benchmark.pedantic(lambda: holder.update(measure()), rounds=1, iterations=1)
        finally:
            torch.set_num_threads(threads)
        benchmark.extra_info[key] = table(holder)
        with capsys.disabled():  # shown by `make bench` without -s
            print(f"\n{title}" + table(holder))
        return holder

    return run


@pytest.fixture
def smoke_cfg():
    from bench.config.presets import load_preset
    from bench.config.settings import parse

    return parse(load_preset("smoke"))


# ---------------------------------------------------------------- benchmark ratios
# One conftest for the whole suite (test modules import helpers from it by name).
# A benchmark joins a ratio table by setting ``benchmark.group``; the one that sets
# ``benchmark.extra_info["reference"] = True`` is the denominator of its group, so the
# ratios printed at the end are measured side by side in one session.

def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups: dict[str, list] = {}
    for b in session.benchmarks:
        if b and b.group:
            groups.setdefault(b.group, []).append(b)
    for group, items in groups.items():
        ref = next((b for b in items if b.extra_info.get("reference")), None)
        if ref is None:
            continue
        terminalreporter.write_sep("-", f"ratios to {ref.name} (median, same run): {group}")
        for b in sorted(items, key=lambda b: b.stats.median):
            terminalreporter.write_line(
                f"{b.name:<55} median {b.stats.median * 1e3:9.2f} ms   x{b.stats.median / ref.stats.median:5.2f}")
