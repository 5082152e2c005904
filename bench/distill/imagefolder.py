"""ImageFolder-style data (``<root>/<split>/<class>/<image>``) as one uint8 ``ImageData``.

The mini-ImageNet setting of Table 3 (200 classes, 500 train and 50 test images each)
arrives in this layout. Every image is converted to RGB, its shorter side resized to
``size`` and centre-cropped to ``size x size`` once at load time, so training slices and
augments a uint8 tensor on the device like every other dataset. The test split is the
first of ``val``, ``test`` that exists; both splits must hold the same class folders.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.data import ImageData
from core.errors import BenchError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp"}
TEST_SPLITS = ("val", "test")
# ImageNet channel statistics: the models normalise with these inside forward.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _classes(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def is_image_folder(root: str | Path | None) -> bool:
    """True when ``root/train`` has class sub-folders (the ImageFolder layout)."""
    if root is None:
        return False
    train = Path(root) / "train"
    return train.is_dir() and bool(_classes(train))


def split_folder(root: Path, split: str) -> Path:
    if split == "train":
        return root / "train"
    for name in TEST_SPLITS:
        if (root / name).is_dir():
            return root / name
    raise BenchError(f"image folder {root} has no test split: expected {root}/val or {root}/test with class folders")


def _load_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError) as exc:
        raise BenchError(f"{path} is not a readable image: {exc}") from None


def load_image_folder(root: str | Path, split: str, *, size: int, device: torch.device | str = "cpu",
                      name: str = "imagefolder") -> ImageData:
    """One split of an ImageFolder tree, resized to ``size`` x ``size`` RGB."""
    if split not in ("train", "test"):
        raise BenchError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise BenchError(f"image size {size!r} is invalid: expected a positive integer")
    root = Path(root)
    if not is_image_folder(root):
        raise BenchError(f"{root} is not an ImageFolder tree: expected {root}/train/<class>/<image files>")
    classes = _classes(root / "train")
    folder = split_folder(root, split)
    if _classes(folder) != classes:
        raise BenchError(f"{folder} and {root / 'train'} hold different class folders; both splits need the same classes")
    images, labels = [], []
    for k, cls in enumerate(classes):
        files = sorted(p for p in (folder / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        images.extend(_load_image(p, size) for p in files)
        labels.extend([k] * len(files))
    if not images:
        raise BenchError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return ImageData(name, split, torch.from_numpy(np.stack(images)).to(device),
                     torch.tensor(labels, dtype=torch.int64, device=device), len(classes), str(folder))
