"""Datasets held as one uint8 tensor on the device; batches sliced and augmented there.

Each dataset is read once from its real on-disk format (idx.gz for MNIST/Fashion-MNIST,
the CIFAR-10 binary version, SVHN .mat) into ``ImageData``: images (N, C, H, W) uint8 and
labels (N,) int64. Augmentation (pad-and-crop, flip) runs per batch on the device, as
fast CIFAR trainers do; no per-sample Python transforms in the hot loop.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import BenchError
from core.registry import Registry, suggest

DEFAULT_DATA_DIR = Path(os.environ.get("GREAT_BENCH_DATA", Path.home() / ".cache" / "great-bench" / "data"))
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class ImageData:
    """A whole split in memory: uint8 images (N, C, H, W) and int64 labels (N,)."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    source: str = ""
    _fingerprint: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """sha256 over the raw pixels and labels: identifies exactly what was trained on."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(self.images.cpu().numpy().tobytes())
            h.update(self.labels.cpu().numpy().astype(np.int64).tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def subset(self, n: int | None = None, *, fraction: float | None = None, seed: int = 0) -> "ImageData":
        """A fixed random subset (same ``seed`` -> same examples), by count or fraction."""
        total = len(self)
        if fraction is not None:
            if not (0.0 < fraction <= 1.0):
                raise BenchError(f"subset fraction must be in (0, 1], got {fraction}")
            n = max(1, int(round(fraction * total)))
        if n is None or n >= total:
            return self
        if n <= 0:
            raise BenchError(f"subset size must be positive, got {n}")
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(total, generator=g)[:n].sort().values.to(self.labels.device)
        return ImageData(self.name, self.split, self.images[idx], self.labels[idx], self.num_classes,
                         f"{self.source} (subset {n} of {total}, seed {seed})")

    def take(self, idx: torch.Tensor, note: str) -> "ImageData":
        """The examples at ``idx`` (a subset named by ``note`` in its source)."""
        idx = idx.to(self.labels.device)
        return ImageData(self.name, self.split, self.images[idx], self.labels[idx], self.num_classes,
                         f"{self.source} ({note})")

    def to(self, device: torch.device | str) -> "ImageData":
        return ImageData(self.name, self.split, self.images.to(device), self.labels.to(device),
                         self.num_classes, self.source, self._fingerprint)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    channels: int
    size: int
    num_classes: int
    test_size: int  # images in the official test split (RobustBench counts AutoAttack only on all of it)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str  # default training augmentation, see AUGMENTATIONS
    reader: Callable[[Path, str], tuple[np.ndarray, np.ndarray] | None]
    fetch: Callable[[Path, str], None]  # download the split's original files into a folder
    debian_dir: Path | None = None


DATASETS: Registry[DatasetSpec] = Registry("dataset")


# ---------------------------------------------------------------- on-disk formats

def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise BenchError(f"{path} is not an idx file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise BenchError(f"{path}: expected unsigned-byte idx data, got type code {dtype_code:#x}")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise BenchError(f"{path} is truncated: header says {dims}, found {data.size} bytes")
    return data.reshape(dims)


def _find_first(folder: Path, names: list[str]) -> Path | None:
    for n in names:
        for cand in (folder / n, folder / (n + ".gz")):
            if cand.is_file():
                return cand
    return None


def _idx_reader(torchvision_folder: str) -> Callable[[Path, str], tuple[np.ndarray, np.ndarray] | None]:
    def read(root: Path, split: str):
        prefix = "train" if split == "train" else "t10k"
        for folder in (root, root / "raw", root / torchvision_folder / "raw"):
            img = _find_first(folder, [f"{prefix}-images-idx3-ubyte"])
            lab = _find_first(folder, [f"{prefix}-labels-idx1-ubyte"])
            if img and lab:
                images = _read_idx(img)[:, None, :, :]
                labels = _read_idx(lab).astype(np.int64)
                if len(images) != len(labels):
                    raise BenchError(f"{img} has {len(images)} images but {lab} has {len(labels)} labels")
                return images, labels
        return None

    return read


# The CIFAR-10 *binary* version: fixed 3073-byte records (label byte, then 3 x 32 x 32 pixels,
# channel-major). The "python version" that torchvision downloads is a set of pickles, and
# great-bench never unpickles: a pickle can run code when it is loaded.
CIFAR10_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_BINARY_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # published on the dataset's page
_CIFAR10_RECORD = 1 + 3 * 32 * 32


def _read_cifar10_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _CIFAR10_RECORD:
        raise BenchError(f"{path} is not a CIFAR-10 binary batch: {raw.size} bytes is not a whole number of "
                         f"{_CIFAR10_RECORD}-byte records (label byte + 3x32x32 pixels)")
    records = raw.reshape(-1, _CIFAR10_RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


def _cifar10_reader(root: Path, split: str):
    folder = next((f for f in (root / "cifar-10-batches-bin", root) if (f / "test_batch.bin").is_file()), None)
    if folder is None:
        pickled = next((f for f in (root / "cifar-10-batches-py", root) if (f / "test_batch").is_file()), None)
        if pickled is not None:
            raise BenchError(f"{pickled} holds the CIFAR-10 python version (pickles), which great-bench does not "
                             f"load (unpickling can run code); put the binary version ({CIFAR10_BINARY_URL}, "
                             f"folder cifar-10-batches-bin) there, or run once online to download it")
        return None
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise BenchError(f"CIFAR-10 folder {folder} lacks {', '.join(missing)}")
    xs, ys = zip(*(_read_cifar10_binary(folder / n) for n in names))
    return np.concatenate(xs), np.concatenate(ys)


def _fetch_cifar10_binary(root: Path, split: str) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(CIFAR10_BINARY_URL, str(root), md5=CIFAR10_BINARY_MD5)


def _torchvision_fetch(cls_name: str, **split_kwargs: Callable[[str], Any]) -> Callable[[Path, str], None]:
    """Download through the torchvision dataset class; ``split_kwargs`` map our split to its
    constructor arguments (``train=True`` for MNIST, ``split='train'`` for SVHN)."""
    def fetch(root: Path, split: str) -> None:
        import torchvision.datasets as tvd

        getattr(tvd, cls_name)(str(root), download=True, **{k: f(split) for k, f in split_kwargs.items()})

    return fetch


def _svhn_reader(root: Path, split: str):
    path = next((p for p in (root / f"{split}_32x32.mat", root / "svhn" / f"{split}_32x32.mat") if p.is_file()), None)
    if path is None:
        return None
    import scipy.io

    mat = scipy.io.loadmat(path)
    images = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)).astype(np.uint8))
    labels = mat["y"].reshape(-1).astype(np.int64)
    labels[labels == 10] = 0  # SVHN stores digit 0 as label 10
    return images, labels


DATASETS.add("fashion-mnist", DatasetSpec(
    "fashion-mnist", 1, 28, 10, 10_000, (0.2860,), (0.3530,), "none", _idx_reader("FashionMNIST"),
    _torchvision_fetch("FashionMNIST", train=lambda s: s == "train"), DEBIAN_FASHION_MNIST))
DATASETS.add("mnist", DatasetSpec(
    "mnist", 1, 28, 10, 10_000, (0.1307,), (0.3081,), "none", _idx_reader("MNIST"),
    _torchvision_fetch("MNIST", train=lambda s: s == "train")))
DATASETS.add("cifar10", DatasetSpec(
    "cifar10", 3, 32, 10, 10_000, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "crop-flip",
    _cifar10_reader, _fetch_cifar10_binary))
DATASETS.add("svhn", DatasetSpec(
    "svhn", 3, 32, 10, 26_032, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), "crop",
    _svhn_reader, _torchvision_fetch("SVHN", split=lambda s: s)))


def _search_roots(spec: DatasetSpec, data_dir: Path) -> list[Path]:
    roots = [data_dir / spec.name, data_dir]
    if spec.debian_dir is not None:
        roots.append(spec.debian_dir)
    return roots


def _download(spec: DatasetSpec, data_dir: Path, split: str) -> Path:
    root = data_dir / spec.name
    root.mkdir(parents=True, exist_ok=True)
    spec.fetch(root, split)
    return root


_CACHE: dict[tuple, ImageData] = {}


def load_dataset(name: str, split: str = "train", *, data_dir: str | Path | None = None,
                 device: str | torch.device = "cpu", download: bool = True) -> ImageData:
    """Load a split by dataset name: ``--data-dir``, then Debian's files, then a download."""
    spec = DATASETS.get(name)
    if split not in ("train", "test"):
        raise BenchError(f"split must be 'train' or 'test', got {split!r}")
    data_dir = Path(data_dir) if data_dir else DEFAULT_DATA_DIR
    key = (name, split, str(data_dir), str(device))
    if key in _CACHE:
        return _CACHE[key]
    roots = _search_roots(spec, data_dir)
    found = None
    for root in roots:
        found = spec.reader(root, split)
        if found is not None:
            source = str(root)
            break
    if found is None and download:
        try:
            root = _download(spec, data_dir, split)
            found, source = spec.reader(root, split), str(root)
        except Exception as exc:  # offline: say where we looked and how to get the data
            debian = " or `apt-get install dataset-fashion-mnist`" if spec.debian_dir else ""
            raise BenchError(
                f"dataset {name!r} ({split}) not found. Searched: {', '.join(map(str, roots))}. "
                f"Download failed ({type(exc).__name__}: {str(exc)[:120]}). Get it by running once "
                f"online (it is downloaded to {data_dir / spec.name}){debian}, or pass "
                f"--data-dir pointing at a folder with the original files."
            ) from None
    if found is None:
        raise BenchError(f"dataset {name!r} ({split}) not found under {', '.join(map(str, roots))}")
    images, labels = found
    if images.shape[1:] != (spec.channels, spec.size, spec.size):
        raise BenchError(f"{name}: expected images of shape {(spec.channels, spec.size, spec.size)}, "
                         f"got {images.shape[1:]} from {source}")
    if labels.min() < 0 or labels.max() >= spec.num_classes:
        raise BenchError(f"{name}: labels outside 0..{spec.num_classes - 1} in {source}")
    data = ImageData(name, split, torch.from_numpy(np.array(images, copy=True)).to(device),
                     torch.from_numpy(np.array(labels, dtype=np.int64)).to(device), spec.num_classes, source)
    _CACHE[key] = data
    return data


# ---------------------------------------------------------------- batches + augmentation

def _pad_crop(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Random crop of a zero-padded batch, one offset per example, by one ``gather`` over the
    flattened padded images (3x faster on a CPU than advanced indexing of (B, H, W), same result)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    width = w + 2 * pad
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=g).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=g).to(x.device)
    window = (torch.arange(h, device=x.device)[:, None] * width + torch.arange(w, device=x.device)).flatten()
    idx = ((oy * width + ox)[:, None] + window)[:, None, :].expand(b, c, h * w)
    return padded.flatten(2).gather(2, idx).view(b, c, h, w)


def _flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    mask = (torch.rand(x.shape[0], generator=g) < 0.5).to(x.device)[:, None, None, None]
    return torch.where(mask, x.flip(3), x)


# Training augmentations by name (``[data] augment``; the run's identity records it). Every one
# is batched on the batch's device and draws only from the run's generator, so a seed fixes it.
# "crop" / "crop-flip": the paper's CIFAR-10/SVHN recipe (4-pixel zero padding, 4/32 of the side;
# the defense supplement names no flip, its distillation supplement adds one). "crop2" /
# "crop2-flip": 2-pixel padding for 28x28 images (Fashion-MNIST, MNIST), where the objects fill
# the frame and 4 pixels would push a seventh of each side out (docs/paper-differences.md).
AUGMENTATIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "none": lambda x, g: x,
    "crop": lambda x, g: _pad_crop(x, 4, g),
    "flip": _flip,
    "crop-flip": lambda x, g: _flip(_pad_crop(x, 4, g), g),
    "crop2": lambda x, g: _pad_crop(x, 2, g),
    "crop2-flip": lambda x, g: _flip(_pad_crop(x, 2, g), g),
}


def check_augment(name: str, where: str = "data.augment") -> str:
    """A known augmentation name, else an error naming the valid ones (and the nearest)."""
    if not isinstance(name, str) or name not in AUGMENTATIONS:
        hint = suggest(str(name), AUGMENTATIONS) if isinstance(name, str) else ""
        raise BenchError(f"{where} = {name!r} is invalid{hint}; valid: {', '.join(AUGMENTATIONS)}")
    return name


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]: models take [0, 1] images and normalise inside."""
    return images.float().div_(255.0)


class Batches:
    """Shuffled mini-batches of one ImageData, augmented on its device.

    All randomness (order, crops, flips) comes from the ``torch.Generator`` passed to
    ``epoch``, so a run resumed from a saved generator state sees the same batches.
    """

    def __init__(self, data: ImageData, batch_size: int, augment: str = "none",
                 shuffle: bool = True, drop_last: bool = False):
        check_augment(augment, "augmentation")
        if batch_size <= 0:
            raise BenchError(f"batch size must be positive, got {batch_size}")
        self.data, self.batch_size, self.augment = data, batch_size, augment
        self.shuffle, self.drop_last = shuffle, drop_last

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, g: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.data)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        order = order.to(self.data.labels.device)
        aug = AUGMENTATIONS[self.augment]
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield aug(to_float(self.data.images[idx]), g), self.data.labels[idx]
