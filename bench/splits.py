"""Which examples of a dataset a run uses: the ``[data]`` section of a preset, typed.

``DataSettings.split`` is the one place a run's train or test examples are drawn: training,
the attack harness (from the settings a run recorded in its identity) and the tracks all go
through it, so they see the same subsets.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.data import DATASETS, ImageData, load_dataset


@dataclass(frozen=True)
class DataSettings:
    """The ``[data]`` section of a preset: which examples of which dataset a run uses."""

    dataset: str
    batch_size: int
    train_subset: int | None = None
    test_subset: int | None = None
    subset_seed: int = 0
    augment: str | None = None   # default: the dataset's own policy

    @property
    def augmentation(self) -> str:
        """The augmentation policy in force: ``augment``, else the dataset's default."""
        return self.augment or DATASETS.get(self.dataset).augment

    def split(self, which: str, *, device: str | torch.device = "cpu", data_dir: str | Path | None = None) -> ImageData:
        """``which`` ("train" or "test") of the dataset, then its seeded subset of this size."""
        n = self.train_subset if which == "train" else self.test_subset
        return load_dataset(self.dataset, which, data_dir=data_dir, device=device).subset(n, seed=self.subset_seed)

    @classmethod
    def recorded(cls, identity_data: dict[str, Any]) -> "DataSettings":
        """The data settings a finished run recorded (``identity["data"]`` of its meta.json)."""
        fields = {k: identity_data[k] for k in cls.__dataclass_fields__ if k in identity_data}
        return cls(**fields)


def load_splits(data: DataSettings, device: torch.device, data_dir: str | None) -> tuple[ImageData, ImageData]:
    """The preset's training and test subsets."""
    return data.split("train", device=device, data_dir=data_dir), data.split("test", device=device, data_dir=data_dir)
