"""One `quick` epoch of batches: on-device slicing + augmentation against a torchvision
DataLoader with per-sample transforms (same data, same batch size, same pad-crop)."""
from __future__ import annotations

import pytest
import torch

from bench.data import Batches, ImageData

N, BATCH = 12000, 128


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N, 1, 28, 28), dtype=torch.uint8, generator=g)
    return ImageData("synthetic", "train", images, torch.randint(0, 10, (N,), generator=g), 10)


def _on_device(data):
    n = 0
    for x, y in Batches(data, BATCH, "crop").epoch(torch.Generator().manual_seed(0)):
        n += x.shape[0]
    return n


def _dataloader(data):
    from torchvision import transforms
    from torch.utils.data import DataLoader, Dataset

    tf = transforms.Compose([transforms.ToPILImage(), transforms.RandomCrop(28, padding=4), transforms.ToTensor()])

    class PerSample(Dataset):
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            return tf(data.images[i]), data.labels[i]

    n = 0
    for x, y in DataLoader(PerSample(), batch_size=BATCH, shuffle=True, num_workers=0):
        n += x.shape[0]
    return n


@pytest.mark.parametrize("pipeline", ["on-device", "dataloader"])
def test_epoch_pipeline(benchmark, data, pipeline):
    fn = _on_device if pipeline == "on-device" else _dataloader
    benchmark.group = "quick epoch of batches (12000 x 1x28x28, pad-crop)"
    benchmark.extra_info["reference"] = pipeline == "on-device"
    n = benchmark.pedantic(fn, args=(data,), rounds=3, warmup_rounds=1, iterations=1)
    assert n == N
