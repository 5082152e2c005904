"""The README's Python API example runs as printed (on the tiny generated data of conftest)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_api_example_runs_as_printed(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- example-api -->\s*```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md:example-api", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    # 3 runs (baseline, great and the variant) x 3 attacks
    assert "9 rows for ['baseline', 'great', 'great-a01']" in out
    table = (tmp_path / "results" / "api" / "table.md").read_text()
    assert "great-a01" in table  # the variant is its own row
    assert (tmp_path / "results" / "api-all" / "acc_vs_eps.png").is_file()
    assert len(list((tmp_path / "runs" / "api").rglob("meta.json"))) == 3


def test_readme_reads_in_ten_minutes():
    """At most 400 lines: protocol, statistics, performance and the studies live in docs/."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 400, f"README.md has {len(lines)} lines; move detail to docs/ (at most 400)"


def test_readme_links_resolve():
    """Every relative link of the README points at a file of the repository."""
    import re as _re
    readme = (ROOT / "README.md").read_text()
    missing = [t for t in _re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
               if not t.startswith("http") and not (ROOT / t).exists()]
    assert not missing, missing
