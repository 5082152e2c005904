"""Multi-task data: Canny edge targets, the noise model, colour targets and the cache."""
from __future__ import annotations

import torch

from bench.data import ImageData
from bench.multitask.data import derive_multitask


def _data(images: torch.Tensor, name="fashion-mnist", split="train") -> ImageData:
    return ImageData(name, split, images, torch.zeros(images.shape[0], dtype=torch.int64), 10)


def _square(channels: int = 1, value=(255,)) -> torch.Tensor:
    img = torch.zeros(1, channels, 28, 28, dtype=torch.uint8)
    for c in range(channels):
        img[0, c, 8:20, 8:20] = value[c % len(value)]
    return img


def _border_band() -> torch.Tensor:
    """Pixels within one pixel of the square's boundary (rows/cols 8 and 19): rows and
    columns 7..20, minus the interior more than one pixel inside (10..17)."""
    band = torch.zeros(28, 28, dtype=torch.bool)
    band[7:21, 7:21] = True
    band[10:18, 10:18] = False
    return band


def _check_square_edges(edges: torch.Tensor) -> None:
    e = edges[0, 0] > 0
    band = _border_band()
    assert e.sum() >= 30                      # a closed outline, not a few stray pixels
    assert not (e & ~band).any()              # nowhere else: not inside, not in the background
    assert e[7:10, 8:20].any(0).sum() >= 8    # top side
    assert e[18:21, 8:20].any(0).sum() >= 8   # bottom side
    assert e[8:20, 7:10].any(1).sum() >= 8    # left side
    assert e[8:20, 18:21].any(1).sum() >= 8   # right side


def test_edge_targets_of_a_square_lie_on_its_border_only(tmp_path):
    mt = derive_multitask(_data(_square()), tmp_path)
    assert set(mt.edges.unique().tolist()) <= {0, 255}
    _check_square_edges(mt.edges)


def test_colour_square_edges_colour_target_and_grayscale_input(tmp_path):
    mt = derive_multitask(_data(_square(3, (255, 0, 0)), name="cifar10"), tmp_path)
    _check_square_edges(mt.edges)
    assert mt.has_colour and torch.equal(mt.colour, _square(3, (255, 0, 0)))
    assert mt.noisy.shape == (1, 1, 28, 28) and mt.gray.shape == (1, 1, 28, 28)
    assert int(mt.gray[0, 0, 14, 14]) == 76   # ITU-R 601 luma of pure red: 0.299 * 255


def test_noise_is_4_percent_salt_and_pepper_then_speckle_std_0_1(tmp_path):
    images = torch.full((60, 1, 28, 28), 128, dtype=torch.uint8)
    mt = derive_multitask(_data(images), tmp_path)
    x = mt.noisy.float() / 255
    n = x.numel()
    pepper = (mt.noisy == 0).sum().item() / n       # pepper (2%) stays 0 under speckle
    salt = (mt.noisy == 255).sum().item() / n       # salt (2%) stays 1 only where the speckle is >= 0
    assert 0.016 < pepper < 0.024
    assert 0.007 < salt < 0.013
    clean = 128 / 255
    rest = x[(x - clean).abs() < 0.2]  # untouched pixels (4 sigma); speckled salt lies above 0.7
    assert abs(rest.mean().item() - clean) < 0.003
    assert abs(rest.std().item() - 0.1 * clean) < 0.004  # speckle: x + x * N(0, 0.1^2)
    assert torch.equal(mt.gray, images)                   # the denoising target is the clean image


def test_cache_is_safetensors_reused_and_keyed_by_noise_seed(tmp_path):
    images = torch.randint(0, 256, (20, 1, 28, 28), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    a = derive_multitask(_data(images), tmp_path)
    files = sorted(tmp_path.glob("*.safetensors"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    b = derive_multitask(_data(images), tmp_path)
    assert files[0].stat().st_mtime_ns == stamp          # read back, not derived again
    assert torch.equal(a.noisy, b.noisy) and torch.equal(a.edges, b.edges)
    c = derive_multitask(_data(images), tmp_path, noise_seed=1)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    assert not torch.equal(a.noisy, c.noisy) and torch.equal(a.edges, c.edges)
    test = derive_multitask(_data(images, split="test"), tmp_path)
    assert not torch.equal(a.noisy, test.noisy)          # train and test noise are independent
