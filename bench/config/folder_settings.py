"""A results folder that describes itself: ``<results>/settings.json``.

``run`` and ``evaluate`` write the preset's name and the full settings that made the folder's
rows (the preset after ``--set`` overrides and the evaluation options of the command line),
atomically. ``report``, ``verify`` and ``export`` read it, so they need no ``--preset``; a
folder without it (written before the file existed) falls back to the preset named like the
folder (``results/<preset>``), else a clear error asks for ``--preset``.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from core.atomic import write_json
from bench.config.presets import load_preset
from core.errors import BenchError
from bench.config.settings import Settings, parse

FILE = "settings.json"
FORMAT = "great-bench-settings/1"


def write_folder_settings(results: str | Path, s: Settings, eval_options: dict[str, Any] | None = None) -> Path:
    """Record ``s`` (and the evaluation options given on the command line) in ``<results>/settings.json``."""
    cfg = copy.deepcopy(s.source)
    if eval_options:
        cfg.setdefault("eval", {}).update({k: v for k, v in eval_options.items() if v is not None})
    path = Path(results) / FILE
    write_json(path, {"format": FORMAT, "preset": s.preset, "config": cfg})
    return path


def read_folder_settings(results: str | Path) -> Settings | None:
    """The settings recorded in ``<results>/settings.json``, or None when the folder has none."""
    path = Path(results) / FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchError(f"{path} is not readable JSON ({exc}); remove it and pass --preset NAME") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("config"), dict):
        raise BenchError(f"{path} is not a great-bench settings file (expected format {FORMAT!r}); remove it and "
                         "pass --preset NAME")
    try:
        return parse(record["config"])
    except BenchError as exc:
        raise BenchError(f"{path}: {exc}") from None


def settings_for(results: str | Path, preset: str | None = None) -> Settings:
    """What made a results folder: ``preset`` when given, else its settings.json, else the preset
    named like the folder; a BenchError saying to pass ``--preset`` when none of them is known."""
    if preset is not None:
        return parse(load_preset(preset))
    recorded = read_folder_settings(results)
    if recorded is not None:
        return recorded
    name = Path(results).resolve().name
    try:
        return parse(load_preset(name))
    except BenchError as exc:
        raise BenchError(f"cannot tell which preset wrote {results}: it has no {FILE} (run and evaluate write one) "
                         f"and its name is no preset ({exc}); pass --preset NAME") from None
