"""The validation split (issue 30): ``data.val_subset`` holds out examples of the training split,
disjoint from the ones a run trains on, recorded in the run's identity; bad sizes refused."""
from __future__ import annotations

import pytest
import torch
from dataclasses import replace

from core.errors import BenchError
from bench.pipeline import resolve_config


def _data(**over):
    return resolve_config("smoke", [f"data.{k}={v}" for k, v in over.items()]).data


def _keys(d):
    return {(tuple(x.flatten().tolist()), int(y)) for x, y in zip(d.images, d.labels)}


def test_val_and_train_are_disjoint_and_sized(tiny_data_dir):
    s = _data(val_subset=50, train_subset=100)
    val, train = s.split("val", data_dir=tiny_data_dir), s.split("train", data_dir=tiny_data_dir)
    assert len(val) == 50 and len(train) == 100
    v_idx, t_idx = s.val_indices(256)
    assert not set(v_idx.tolist()) & set(t_idx.tolist())
    assert not _keys(val) & _keys(train)   # tiny data has no duplicate images


def test_val_is_seeded_and_train_default_is_the_rest(tiny_data_dir):
    s = replace(_data(val_subset=56), train_subset=None)
    a, b = s.val_indices(256), s.val_indices(256)
    assert torch.equal(a[0], b[0])
    assert len(s.split("train", data_dir=tiny_data_dir)) == 200
    other = replace(s, subset_seed=1)
    assert not torch.equal(other.val_indices(256)[0], a[0])


def test_without_val_subset_training_is_unchanged_and_val_refused(tiny_data_dir):
    s = _data(train_subset=100)
    assert s.split("train", data_dir=tiny_data_dir).fingerprint() == \
        _data(train_subset=100).split("train", data_dir=tiny_data_dir).fingerprint()
    with pytest.raises(BenchError, match="val_subset"):
        s.split("val", data_dir=tiny_data_dir)


@pytest.mark.parametrize("over, match", [
    ({"val_subset": 256}, "at least one must remain"),
    ({"val_subset": 300}, "at least one must remain"),
    ({"val_subset": 100, "train_subset": 200}, "overlaps the training examples"),
])
def test_bad_val_split_is_refused(tiny_data_dir, over, match):
    with pytest.raises(BenchError, match=match):
        _data(**over).split("val", data_dir=tiny_data_dir)


def test_val_subset_must_be_positive():
    with pytest.raises(BenchError, match="data.val_subset"):
        _data(val_subset=0)


def test_val_subset_is_in_the_run_identity(tiny_data_dir):
    from bench.defense_track import defense_run, model_spec_for
    s = resolve_config("smoke", ["data.val_subset=50", "data.train_subset=200"])
    train = s.data.split("train", data_dir=tiny_data_dir)
    test = s.data.split("test", data_dir=tiny_data_dir)
    spec = model_spec_for(s.data.dataset, train.shape, train.num_classes)
    run = defense_run(s, "baseline", 0, "/tmp/x", train, test, spec)
    assert run.identity["data"]["train"] != resolve_config("smoke", ["data.train_subset=200"]).data.split(
        "train", data_dir=tiny_data_dir).fingerprint()
    assert run.identity["data"]["val_subset"] == 50


def test_the_overlap_boundary_is_exact(tiny_data_dir):
    """val + train = the split's size is allowed (every example used once); one more overlaps."""
    s = _data(val_subset=56, train_subset=200)
    v, t = s.val_indices(256)
    assert len(v) + len(t) == 256 and not set(v.tolist()) & set(t.tolist())
    with pytest.raises(BenchError, match="overlaps"):
        _data(val_subset=57, train_subset=200).val_indices(256)
