"""A preset is parsed once (issue 19): below the parser modules the library sees typed
``Settings`` only. A dict read by key string outside them -- ``cfg[...]``, ``cfg.get(...)``,
the parsed dict kept as ``Settings.source``, or the ``config`` a run recorded in meta.json --
would make the dict's shape a second interface, with its own defaults."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "attacks", "defenses")
# bench/config/folder_settings.py parses the preset dict a results folder recorded (settings.json) with
# ``parse``, as a run's meta.json is read back: the one other place a recorded dict is read.
PARSERS = {"bench/config/presets.py", "bench/config/settings.py", "bench/config/eval_settings.py", "bench/distill/settings.py",
           "bench/multitask/settings.py", "bench/config/folder_settings.py"}
# A read of a config dict: cfg[...] / cfg.get(...), the parsed dict (``.source``) indexed,
# or the recorded config read back out of a run's meta.json (``["config"]``).
READS = re.compile(r"""\bcfg\s*\[|\bcfg\.get\(|\.source\s*\[|\.source\.get\(|\[\s*["']config["']\s*\]""")


def library_files() -> dict[str, str]:
    """Library source outside the parser modules: path relative to the root -> text."""
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    return {str(p.relative_to(ROOT)): p.read_text() for p in files if str(p.relative_to(ROOT)) not in PARSERS}


def config_reads(name: str, text: str) -> list[str]:
    return [f"{name}:{i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1)
            if READS.search(line.split("#", 1)[0])]


def cfg_parameters(name: str, text: str) -> list[str]:
    """Functions taking a raw config (a parameter named ``cfg``): the door an aliased read comes in by."""
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            if any(a.arg == "cfg" for a in args):
                out.append(f"{name}:{node.lineno}: {node.name}(cfg, ...)")
    return out


def test_parser_modules_exist():
    """The exemption list names real files (a renamed parser would silently widen it)."""
    assert all((ROOT / p).is_file() for p in PARSERS)


def test_no_config_dict_is_read_outside_the_parser_modules():
    found = [hit for name, text in library_files().items() for hit in config_reads(name, text)]
    assert not found, "config dict read outside the parser modules (use the typed Settings):\n" + "\n".join(found)


def test_no_library_function_below_the_parser_takes_a_config_dict():
    found = [hit for name, text in library_files().items() for hit in cfg_parameters(name, text)]
    assert not found, "functions taking a config dict outside the parser modules:\n" + "\n".join(found)


def test_the_checks_see_each_kind_of_read():
    """Else the tests above would prove nothing."""
    for line in ('d = cfg["data"]', "n = cfg.get('eval', {})", 'x = s.source["data"]', "m = meta['config']"):
        assert config_reads("x.py", line), line
    assert not config_reads("x.py", "data = s.data  # not cfg['data']")
    assert cfg_parameters("x.py", "def f(s, cfg):\n    return 1\n") == ["x.py:1: f(cfg, ...)"]
