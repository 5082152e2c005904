"""A full disk (ENOSPC) during a row merge or any atomic write: a clear message naming the
file, exit 2 and no traceback; the rows already in the file stay as they were and no
temporary file is left behind (issue 28 item 7)."""
from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from core.errors import BenchError
from bench.csv_files import merge_rows, read_rows

ROOT = Path(__file__).resolve().parent.parent


def _full_disk(monkeypatch, match: str = "") -> None:
    """Every Path.write_text of a temporary file (core.atomic's) whose target name contains
    ``match`` runs out of space after writing half of its text."""
    real = Path.write_text

    def write_text(self, data, *args, **kwargs):
        if self.name.endswith(".tmp") and match in self.name:
            real(self, data[: len(data) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data, *args, **kwargs)
    monkeypatch.setattr(Path, "write_text", write_text)


def test_a_row_merge_on_a_full_disk_keeps_the_rows_and_names_the_file(tmp_path, monkeypatch):
    """Mutation: atomic_path without its ENOSPC branch raises the bare OSError."""
    path = tmp_path / "rows.csv"
    merge_rows(path, [{"k": i, "v": i * i} for i in range(5)], key=lambda r: str(r["k"]))
    before = path.read_bytes()
    _full_disk(monkeypatch)
    with pytest.raises(BenchError, match=f"no space left on the device while writing {path}") as err:
        merge_rows(path, [{"k": 9, "v": 81}], key=lambda r: str(r["k"]))
    assert "intact" in str(err.value)
    assert path.read_bytes() == before and len(read_rows(path)) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv", "rows.csv.lock"]  # no .tmp left


def test_the_command_line_exits_2_without_a_traceback(tmp_path, monkeypatch, capsys):
    results = tmp_path / "quick"
    results.mkdir()
    shutil.copy(ROOT / "results" / "quick" / "robustness.csv", results / "robustness.csv")
    _full_disk(monkeypatch, "fgsm-at_seed0.json")
    rc = main(["export", "--format", "robustbench", str(results), str(tmp_path / "out"), "--preset", "quick",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert f"no space left on the device while writing {tmp_path / 'out' / 'fashion-mnist' / 'Linf'}" in err
    assert "fgsm-at_seed0.json" in err
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_a_full_disk_outside_the_atomic_writes_is_a_clear_error_too(tmp_path, monkeypatch, capsys):
    """Mutation: the command line without its ENOSPC branch lets the OSError through."""
    import bench.publish.robustbench as rb

    def fail(infos, out_dir):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(out_dir) / "x.json"))
    monkeypatch.setattr(rb, "write_model_infos", fail)
    results = tmp_path / "quick"
    results.mkdir()
    shutil.copy(ROOT / "results" / "quick" / "robustness.csv", results / "robustness.csv")
    rc = main(["export", "--format", "robustbench", str(results), str(tmp_path / "out"), "--preset", "quick"])
    err = capsys.readouterr().err
    assert rc == 2 and f"while writing {tmp_path / 'out' / 'x.json'}" in err and "Traceback" not in err
