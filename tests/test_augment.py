"""Training augmentation (bench.data.AUGMENTATIONS): batched on tensors, seeded, and part of a
run's identity; the 2-pixel crop for 28x28 data (issue 30)."""
from __future__ import annotations

import pytest
import torch

from bench.config.presets import load_preset
from bench.data import AUGMENTATIONS, Batches, check_augment, load_dataset
from bench.defense_track import defense_run, model_spec_for
from core.errors import BenchError
from bench.config.settings import parse


def _batch(n=64, c=1, size=28, seed=0):
    # strictly positive pixels, so that padding (zeros) is told apart from the image
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 0.9 + 0.1


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_every_augmentation_keeps_shape_dtype_and_range(name):
    x = _batch(32, 3, 8)
    out = AUGMENTATIONS[name](x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_every_augmentation_is_fixed_by_the_seed(name):
    x = _batch()
    a = AUGMENTATIONS[name](x, torch.Generator().manual_seed(5))
    b = AUGMENTATIONS[name](x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    if name != "none":  # another seed gives other crops / flips on a 64-image batch
        assert not torch.equal(a, AUGMENTATIONS[name](x, torch.Generator().manual_seed(6)))


def test_none_is_the_identity():
    x = _batch()
    assert torch.equal(AUGMENTATIONS["none"](x, torch.Generator().manual_seed(0)), x)


@pytest.mark.parametrize("name,pad", [("crop2", 2), ("crop", 4)])
def test_crop_is_a_window_of_the_zero_padded_image_at_every_offset(name, pad):
    """Each output is the (H, W) window at some offset (dy, dx) in [0, 2 pad] of the image padded
    with zeros; over 400 images every offset occurs, and no window reaches further."""
    x = _batch(400, 1, 8)
    out = AUGMENTATIONS[name](x, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    seen = set()
    for o, p in zip(out, padded):
        hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                if torch.equal(o, p[:, dy:dy + 8, dx:dx + 8])]
        assert len(hits) == 1
        seen.add(hits[0])
    assert seen == {(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)}


def test_crop2_pads_with_zeros_and_at_most_two_pixels():
    """Pixels brought in by the crop are 0 (black background, as Fashion-MNIST's), and at most
    2 rows and 2 columns of them: the rest of the image is never zero."""
    x = _batch(200)
    out = AUGMENTATIONS["crop2"](x, torch.Generator().manual_seed(2))
    zero_rows = (out == 0).all(dim=3).sum(dim=2).flatten()
    zero_cols = (out == 0).all(dim=2).sum(dim=2).flatten()
    assert zero_rows.max() == 2 and zero_cols.max() == 2
    assert int(((out == 0).sum(dim=(1, 2, 3)) == 0).sum()) > 0  # the centred window occurs
    # every zero pixel lies in a fully zero row or column (padding, not image)
    z = out == 0
    assert torch.equal(z, z.all(dim=3, keepdim=True).expand_as(z) | z.all(dim=2, keepdim=True).expand_as(z))


def test_crop2_flip_flips_about_half_of_the_crops():
    """crop2-flip = crop2 then a left-right mirror of about half the batch, from the same generator."""
    x = _batch(400, 1, 8)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    both = AUGMENTATIONS["crop2-flip"](x, g1)
    cropped = AUGMENTATIONS["crop2"](x, g2)
    mask = torch.rand(400, generator=g2) < 0.5
    torch.testing.assert_close(both[mask], cropped[mask].flip(3))
    torch.testing.assert_close(both[~mask], cropped[~mask])
    assert 150 < int(mask.sum()) < 250
    assert not torch.equal(cropped[mask].flip(3), cropped[mask])  # a flip changes the images


def test_batches_augment_on_the_batch_and_repeat_under_a_seed(tiny_data_dir):
    d = load_dataset("fashion-mnist", "train", data_dir=tiny_data_dir)
    b = Batches(d, 64, "crop2-flip")
    first = [x for x, _ in b.epoch(torch.Generator().manual_seed(7))]
    again = [x for x, _ in b.epoch(torch.Generator().manual_seed(7))]
    plain = [x for x, _ in Batches(d, 64, "none").epoch(torch.Generator().manual_seed(7))]
    assert all(torch.equal(a, c) for a, c in zip(first, again))
    assert not all(torch.equal(a, p) for a, p in zip(first, plain))


def _settings(**data):
    cfg = load_preset("smoke")
    cfg["data"].update(data)
    return parse(cfg)


def test_unknown_augmentation_is_refused_when_the_preset_is_parsed():
    with pytest.raises(BenchError, match=r"data.augment = 'crop2flip' is invalid; did you mean crop2-flip\?.*valid"):
        _settings(augment="crop2flip")
    with pytest.raises(BenchError, match="valid: none, crop, flip, crop-flip, crop2, crop2-flip"):
        check_augment("rotate")


def test_augmentation_is_part_of_the_run_identity(tiny_data_dir, tmp_path):
    """Two presets that differ only in augment train into different run identities."""
    ids = []
    for aug in ("none", "crop2", "crop2-flip"):
        s = _settings(augment=aug)
        train, test = s.data.split("train"), s.data.split("test")
        spec = model_spec_for(s.data.dataset, train.shape, train.num_classes)
        run = defense_run(s, "baseline", 0, tmp_path, train, test, spec)
        assert run.identity["data"]["augment"] == aug
        ids.append(run.identity)
    assert ids[0] != ids[1] != ids[2] != ids[0]
