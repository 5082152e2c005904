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
from core.errors import BenchError


@dataclass(frozen=True)
class DataSettings:
    """The ``[data]`` section of a preset: which examples of which dataset a run uses."""

    dataset: str
    batch_size: int
    train_subset: int | None = None
    test_subset: int | None = None
    subset_seed: int = 0
    augment: str | None = None   # default: the dataset's own policy
    val_subset: int | None = None  # examples of the TRAINING split held out for tuning

    @property
    def augmentation(self) -> str:
        """The augmentation policy in force: ``augment``, else the dataset's default."""
        return self.augment or DATASETS.get(self.dataset).augment

    def split(self, which: str, *, device: str | torch.device = "cpu", data_dir: str | Path | None = None) -> ImageData:
        """``which`` ("train", "val" or "test") of the dataset, then its seeded subset of this size.

        With ``val_subset``, "val" is the first ``val_subset`` examples of a seeded permutation
        of the training split and "train" draws only from the rest, so the two never overlap.
        """
        if which not in ("train", "val", "test"):
            raise BenchError(f"unknown split {which!r}; valid: train, val, test")
        if which == "test":
            return load_dataset(self.dataset, "test", data_dir=data_dir, device=device).subset(
                self.test_subset, seed=self.subset_seed)
        full = load_dataset(self.dataset, "train", data_dir=data_dir, device=device)
        if self.val_subset is None:
            if which == "val":
                raise BenchError("no validation split: set data.val_subset (examples of the training split "
                                 "held out for tuning), e.g. --set data.val_subset=1000")
            return full.subset(self.train_subset, seed=self.subset_seed)
        val_idx, train_idx = self.val_indices(len(full))
        idx = val_idx if which == "val" else train_idx
        return full.take(idx, f"{which} split: {len(idx)} of {len(full)}, val_subset {self.val_subset}, "
                              f"seed {self.subset_seed}")

    def val_indices(self, total: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(validation, training) indices into a training split of ``total`` examples; disjoint."""
        v = self.val_subset
        if v is None:
            raise BenchError("no validation split: set data.val_subset")
        if v >= total:
            raise BenchError(f"data.val_subset = {v} is invalid: the training split of {self.dataset} has "
                             f"{total} examples and at least one must remain for training (valid: 1..{total - 1})")
        n = self.train_subset if self.train_subset is not None else total - v
        if v + n > total:
            raise BenchError(f"data.val_subset = {v} overlaps the training examples: val_subset + train_subset "
                             f"= {v} + {n} > {total} examples in the training split of {self.dataset}; "
                             f"lower one so they sum to at most {total}")
        perm = torch.randperm(total, generator=torch.Generator().manual_seed(self.subset_seed))
        return perm[:v].sort().values, perm[v:v + n].sort().values

    @classmethod
    def recorded(cls, identity_data: dict[str, Any]) -> "DataSettings":
        """The data settings a finished run recorded (``identity["data"]`` of its meta.json)."""
        fields = {k: identity_data[k] for k in cls.__dataclass_fields__ if k in identity_data}
        return cls(**fields)


def load_splits(data: DataSettings, device: torch.device, data_dir: str | None) -> tuple[ImageData, ImageData]:
    """The preset's training and test subsets."""
    return data.split("train", device=device, data_dir=data_dir), data.split("test", device=device, data_dir=data_dir)
