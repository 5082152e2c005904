"""Datasets in each real on-disk format, through the same code path users hit."""
from __future__ import annotations


import numpy as np
import pytest
import scipy.io
import torch

import bench.data as data
from bench.data import AUGMENTATIONS, Batches, load_dataset
from core.errors import BenchError
from conftest import make_images, write_mnist_like


def test_idx_gz_fashion_mnist(tiny_data_dir):
    train = load_dataset("fashion-mnist", "train", data_dir=tiny_data_dir)
    test = load_dataset("fashion-mnist", "test", data_dir=tiny_data_dir)
    assert train.images.shape == (256, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.labels.shape == (128,) and test.labels.dtype == torch.int64
    images, labels = make_images(256, 1, 28, seed=0)
    assert np.array_equal(train.images.numpy(), images) and np.array_equal(train.labels.numpy(), labels)


def test_torchvision_raw_layout_is_found(tmp_path):
    write_mnist_like(tmp_path / "mnist" / "MNIST" / "raw")
    assert len(load_dataset("mnist", "test", data_dir=tmp_path)) == 128


def _cifar_batch(path, n, seed):
    images, labels = make_images(n, 3, 32, seed=seed)
    # the official CIFAR-10 binary version: per image one label byte, then 3072 pixel bytes (CHW)
    records = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(n, -1)], axis=1)
    path.write_bytes(records.tobytes())
    return images, labels


def test_cifar10_binary_batches(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    want = [_cifar_batch(folder / f"data_batch_{i}.bin", 4, i) for i in range(1, 6)]
    test_imgs, test_labels = _cifar_batch(folder / "test_batch.bin", 6, 9)
    train = load_dataset("cifar10", "train", data_dir=tmp_path)
    assert train.images.shape == (20, 3, 32, 32)
    assert np.array_equal(train.images.numpy(), np.concatenate([w[0] for w in want]))
    assert np.array_equal(train.labels.numpy(), np.concatenate([w[1] for w in want]))
    test = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert np.array_equal(test.images.numpy(), test_imgs) and np.array_equal(test.labels.numpy(), test_labels)


def test_cifar10_truncated_or_python_version_is_a_clear_error(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    _cifar_batch(folder / "test_batch.bin", 2, 0)
    with open(folder / "test_batch.bin", "ab") as f:
        f.write(b"\x00" * 10)  # a partial record
    with pytest.raises(BenchError, match="not a whole number of 3073-byte records"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
    # the pickled "python version" is never loaded: the message says what to get instead
    py = tmp_path / "py" / "cifar10" / "cifar-10-batches-py"
    py.mkdir(parents=True)
    (py / "test_batch").write_bytes(b"not read")
    with pytest.raises(BenchError, match="python version .*cifar-10-binary.tar.gz"):
        load_dataset("cifar10", "test", data_dir=tmp_path / "py")


def test_svhn_mat_maps_label_10_to_digit_0(tmp_path):
    images, labels = make_images(12, 3, 32, seed=3)
    labels_mat = np.where(labels == 0, 10, labels)  # SVHN stores 0 as 10
    (tmp_path / "svhn").mkdir()
    scipy.io.savemat(tmp_path / "svhn" / "test_32x32.mat",
                     {"X": np.transpose(images, (2, 3, 1, 0)), "y": labels_mat[:, None]})
    test = load_dataset("svhn", "test", data_dir=tmp_path)
    assert np.array_equal(test.images.numpy(), images) and np.array_equal(test.labels.numpy(), labels)


def test_missing_dataset_offline_says_where_and_how(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(BenchError) as err:
        load_dataset("cifar10", "train", data_dir=tmp_path)
    msg = str(err.value)
    assert "'cifar10'" in msg and str(tmp_path) in msg and "online" in msg and "--data-dir" in msg


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(BenchError, match="valid: cifar10, fashion-mnist, mnist, svhn"):
        load_dataset("imagenet")


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    folder = write_mnist_like(tmp_path / "mnist")
    path = folder / "t10k-images-idx3-ubyte.gz"
    import gzip
    raw = gzip.open(path).read()
    with gzip.open(path, "wb") as f:
        f.write(raw[:1000])
    with pytest.raises(BenchError, match="truncated"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def test_subset_is_fixed_by_seed_and_fraction(tiny_data_dir):
    d = load_dataset("fashion-mnist", "train", data_dir=tiny_data_dir)
    a, b, c = d.subset(50, seed=1), d.subset(50, seed=1), d.subset(50, seed=2)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    assert len(d.subset(fraction=0.05, seed=0)) == round(0.05 * 256)
    with pytest.raises(BenchError, match=r"\(0, 1\]"):
        d.subset(fraction=1.5)


def test_pad_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.rand(5, 3, 8, 8)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    out = AUGMENTATIONS["crop"](x, g1)
    oy, ox = torch.randint(0, 9, (5,), generator=g2), torch.randint(0, 9, (5,), generator=g2)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(5):
        torch.testing.assert_close(out[i], padded[i, :, oy[i] : oy[i] + 8, ox[i] : ox[i] + 8])


def test_flip_mirrors_about_half_the_batch():
    x = torch.rand(400, 1, 4, 4)
    out = AUGMENTATIONS["flip"](x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x)])
    same = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert torch.all(flipped | same) and 150 < int(flipped.sum()) < 250


def test_batches_cover_every_example_once_and_are_reproducible(tiny_data_dir):
    d = load_dataset("fashion-mnist", "train", data_dir=tiny_data_dir)
    b = Batches(d, 100, "crop")
    assert len(b) == 3
    ys1 = torch.cat([y for _, y in b.epoch(torch.Generator().manual_seed(3))])
    ys2 = torch.cat([y for _, y in b.epoch(torch.Generator().manual_seed(3))])
    assert torch.equal(ys1, ys2) and torch.equal(ys1.sort().values, d.labels.sort().values)
    x, _ = next(iter(b.epoch(torch.Generator())))
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
