"""index.html (issue 13): one self-contained page, checked as HTML and rendered in a real
headless Chromium (Debian's `chromium`, installed by `make test` where apt works)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from attacks.row_schema import ROW_FIELDS, pack_mask
from bench.eval_settings import EvalSettings
from bench.reporting import write_report

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "build" / "test-artifacts"
N = 40
# fgsm-at's untargeted iFGSM (0.90) beats its FGSM (0.60): iterative_vs_single must flag it.
ACC = {
    "baseline": {("none", 0.0): 0.90, ("fgsm", 0.1): 0.30, ("ifgsm", 0.1): 0.05, ("fgsm", 0.3): 0.10},
    "fgsm-at": {("none", 0.0): 0.85, ("fgsm", 0.1): 0.60, ("ifgsm", 0.1): 0.90, ("fgsm", 0.3): 0.40},
    "great": {("none", 0.0): 0.88, ("fgsm", 0.1): 0.20, ("ifgsm", 0.1): 0.00, ("fgsm", 0.3): 0.05},
}


def rows() -> list[dict]:
    out = []
    for d, accs in ACC.items():
        for (attack, eps), acc in accs.items():
            out.append({k: "" for k in ROW_FIELDS} | {
                "dataset": "toy", "defense": d, "seed": 0, "attack": attack, "norm": "Linf", "epsilon": eps,
                "mode": "untargeted", "accuracy": acc, "ci_low": 0.0, "ci_high": 1.0, "n": N, "train_accuracy": 0.95,
                "restarts": 1, "params": "{}", "spec": f"{attack}:eps={eps}", "seconds": 1.5, "torch": "2.x",
                "checkpoint_sha256": f"sha-{d}", "correct_mask": pack_mask(torch.arange(N) < round(acc * N))})
    return out


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html")
    (out / "distillation.md").write_text("**Distillation**\n\n| Method | Clean |\n|---|---|\n| kd | 71.50 |\n")
    written = write_report(rows(), out, EvalSettings(epsilon=0.1), quiet=True)
    assert out / "index.html" in written
    return out / "index.html"


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_page_is_self_contained_and_has_every_section(page):
    text = page.read_text()
    p = _Collect()
    p.feed(text)
    # nothing fetched from anywhere: no src/href pointing at a URL or a file beside the page
    for tag, attrs in p.tags:
        for key in ("src", "href"):
            if key in attrs:
                assert attrs[key].startswith("data:") or attrs[key].startswith("#"), (tag, attrs)
    assert not [a for t, a in p.tags if t == "link"]
    assert not [a for t, a in p.tags if t == "script" and "src" in a]
    ids = {a.get("id") for _, a in p.tags}
    assert {"robustness-toy", "comparison-toy", "worst-case", "masking"} <= ids
    assert [a["src"][:22] for t, a in p.tags if t == "img"] == ["data:image/png;base64,"]  # the curves
    assert "<td>kd</td>" in text                                     # the distillation table
    assert text.count('<details class="provenance"') == 3            # one per model
    assert "sha-great" in text and "great-bench results" in text


def _chromium() -> str | None:
    return next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


# Appended to a copy of the page: clicks a header with a real click event (the page's own
# listener sorts), then writes what the rendered DOM holds into <pre id="probe">, which
# --dump-dom prints after the scripts ran.
PROBE = """<script>
const order = () => Array.from(document.querySelectorAll('#robustness-toy tbody tr'))
  .map(tr => tr.children[0].textContent);
const th = Array.from(document.querySelectorAll('#robustness-toy thead th'))
  .find(h => h.textContent === 'Non-targeted FGSM');
const before = order(); th.click(); const desc = order(); th.click(); const asc = order();
const img = document.querySelector('img');
const flags = Array.from(document.querySelectorAll('#masking td.flag')).map(td => td.textContent);
const probe = document.createElement('pre'); probe.id = 'probe';
probe.textContent = JSON.stringify({before, desc, asc, flags,
  figure: img ? img.naturalWidth : 0, rows: before.length});
document.body.appendChild(probe);
</script></body>"""


def _run_chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--hide-scrollbars", *args], capture_output=True, text=True, timeout=120)


def test_page_renders_sorts_and_flags_in_headless_chromium(page, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium on this machine (`make test` installs Debian's chromium where apt works)")
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(page.read_text().replace("</body>", PROBE))
    res = _run_chromium(binary, "--dump-dom", probe_page.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.S)
    assert m, res.stderr[-2000:]
    got = json.loads(m.group(1).replace("&quot;", '"'))
    assert got["rows"] == 3 and got["before"] == ["Baseline", "Adversarial", "GREAT"]
    assert got["desc"] == ["Adversarial", "Baseline", "GREAT"]   # FGSM 60 > 30 > 20
    assert got["asc"] == ["GREAT", "Baseline", "Adversarial"]    # a second click reverses
    assert got["flags"] and all(f.startswith("FLAG (") for f in got["flags"])
    assert got["figure"] > 100                                    # the inline PNG decoded
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "index.png"
    res = _run_chromium(binary, "--window-size=1400,1800", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file() and shot.read_bytes()[:4] == b"\x89PNG", res.stderr[-2000:]
