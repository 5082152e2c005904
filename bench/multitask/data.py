"""Multi-task data (paper supplement, "GREAT for multitask learning"), derived once and cached.

Input: the clean image converted to grayscale, salt-and-pepper noise on 4% of the pixels
(salt and pepper equally likely), then speckle noise x + x * n with n ~ N(0, 0.1^2), clipped
to [0, 1]. Targets: the class label, the clean colour image (colour datasets only), Canny
edges of the clean image (sigma 1, kornia's implementation; a 3-channel image is converted to
grayscale inside it) and the clean grayscale image.

Everything is stored as uint8 like the source images (the 1/255 quantisation of the noisy
input is far below the noise itself), in one safetensors file per (dataset split, noise
parameters, noise seed) with the parameters in its metadata. Nothing is pickled.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import kornia
import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file

from core.atomic import atomic_path
from bench.data import ImageData, to_float
from core.errors import BenchError

SALT_PEPPER_FRACTION = 0.04
SPECKLE_STD = 0.1
CANNY_SIGMA = 1.0
CANNY_THRESHOLDS = (0.1, 0.2)  # kornia's defaults, on its unnormalised Sobel magnitude
_CHUNK = 8192                 # images per Canny call: its hysteresis loop costs per call, so fewer, larger calls
FORMAT_VERSION = 1


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) float in [0, 1] -> (N, 1, H, W); 3 channels via ITU-R 601 luma (kornia)."""
    return x if x.shape[1] == 1 else kornia.color.rgb_to_grayscale(x)


def corrupt(gray: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Salt-and-pepper on 4% of the pixels, then speckle noise (std 0.1), clipped to [0, 1]."""
    shape = gray.shape
    hit = torch.rand(shape, generator=g) < SALT_PEPPER_FRACTION
    salt = (torch.rand(shape, generator=g) < 0.5).to(gray.dtype)  # salt (1) or pepper (0), p = 1/2
    noisy = torch.where(hit, salt, gray.cpu())
    noisy = noisy + noisy * torch.randn(shape, generator=g) * SPECKLE_STD
    return noisy.clamp_(0.0, 1.0).to(gray.device)


def canny_edges(clean: torch.Tensor) -> torch.Tensor:
    """Binary Canny edge map (N, 1, H, W) of float images in [0, 1], sigma 1 (kornia)."""
    out = []
    for i in range(0, clean.shape[0], _CHUNK):
        _, edges = kornia.filters.canny(clean[i : i + _CHUNK], low_threshold=CANNY_THRESHOLDS[0],
                                        high_threshold=CANNY_THRESHOLDS[1], sigma=(CANNY_SIGMA, CANNY_SIGMA))
        out.append(edges > 0.5)
    return torch.cat(out)


@dataclass
class MultiTaskData:
    """One split: noisy input and every target, uint8 (N, C, H, W) except int64 labels."""

    name: str
    split: str
    noisy: torch.Tensor
    labels: torch.Tensor
    gray: torch.Tensor
    edges: torch.Tensor          # 0 or 255, so ``to_float`` gives the 0/1 target
    colour: torch.Tensor | None  # the clean image itself; None for grayscale datasets
    num_classes: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def has_colour(self) -> bool:
        return self.colour is not None

    @property
    def image_size(self) -> int:
        return int(self.noisy.shape[-1])

    def to(self, device) -> "MultiTaskData":
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return MultiTaskData(self.name, self.split, mv(self.noisy), mv(self.labels), mv(self.gray),
                             mv(self.edges), mv(self.colour), self.num_classes)


def _params(data: ImageData, noise_seed: int) -> dict:
    return {"version": FORMAT_VERSION, "dataset": data.name, "split": data.split,
            "fingerprint": data.fingerprint(), "noise_seed": noise_seed,
            "salt_pepper_fraction": SALT_PEPPER_FRACTION, "speckle_std": SPECKLE_STD,
            "canny_sigma": CANNY_SIGMA, "canny_thresholds": list(CANNY_THRESHOLDS)}


def cache_path(cache_dir: Path, data: ImageData, noise_seed: int) -> Path:
    key = hashlib.sha256(json.dumps(_params(data, noise_seed), sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{data.name}-{data.split}-{key}.safetensors"


def _derive(data: ImageData, noise_seed: int) -> dict[str, torch.Tensor]:
    clean = to_float(data.images.cpu())
    gray = grayscale(clean)
    # One generator per split so train and test noise differ but each is reproducible.
    g = torch.Generator().manual_seed(noise_seed * 2 + (data.split == "test"))
    tensors = {"noisy": to_uint8(corrupt(gray, g)), "labels": data.labels.cpu(),
               "gray": to_uint8(gray), "edges": canny_edges(clean).to(torch.uint8) * 255}
    if clean.shape[1] == 3:
        tensors["colour"] = data.images.cpu()
    return {k: v.contiguous() for k, v in tensors.items()}


def _read(path: Path, params: dict) -> dict[str, torch.Tensor] | None:
    try:
        with safe_open(str(path), framework="pt") as f:
            if json.loads((f.metadata() or {}).get("params", "{}")) != params:
                return None  # a stale or foreign file: derive again
            return {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError):
        return None


def derive_multitask(data: ImageData, cache_dir: Path | str, *, noise_seed: int = 0) -> MultiTaskData:
    """The multi-task split of ``data``: read from the cache, or derived once and cached."""
    if data.images.shape[1] not in (1, 3):
        raise BenchError(f"{data.name}: multi-task data needs 1- or 3-channel images, got {data.images.shape[1]}")
    params = _params(data, noise_seed)
    path = cache_path(Path(cache_dir), data, noise_seed)
    tensors = _read(path, params) if path.is_file() else None
    if tensors is None:
        tensors = _derive(data, noise_seed)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"params": json.dumps(params, sort_keys=True)})
    device = data.labels.device
    return MultiTaskData(data.name, data.split, tensors["noisy"], tensors["labels"], tensors["gray"],
                         tensors["edges"], tensors.get("colour"), data.num_classes).to(device)


class MultiTaskBatches:
    """Shuffled mini-batches of (noisy input, {task: target}); the batch source ``fit`` expects.

    All order randomness comes from the generator passed to ``epoch`` (resumable runs).
    """

    def __init__(self, data: MultiTaskData, tasks, batch_size: int, shuffle: bool = True):
        if batch_size <= 0:
            raise BenchError(f"batch size must be positive, got {batch_size}")
        self.data, self.tasks, self.batch_size, self.shuffle = data, list(tasks), batch_size, shuffle

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return to_float(self.data.noisy[idx]), {t.name: t.target(self.data, idx) for t in self.tasks}

    def epoch(self, g: torch.Generator) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        n = len(self.data)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        order = order.to(self.data.labels.device)
        for i in range(len(self)):
            yield self.batch(order[i * self.batch_size : (i + 1) * self.batch_size])
