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

from bench.eval.schema import ROW_FIELDS, pack_mask
from bench.config.eval_settings import EvalSettings
from bench.report.write import write_report

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


# Issue 22: with verdicts on the paper's claims the page opens with them, one line per claim,
# and the headline accuracy-vs-epsilon plot, before any table. Two seeds of baseline and GREAT
# let the claim "GREAT adds robustness to single-step attacks" be measured (GREAT 20%, baseline
# 30% under FGSM on 200 examples each seed: it does not hold).
def verdict_rows() -> list[dict]:
    n, out = 200, []
    for seed in (0, 1):
        for d, fgsm in (("baseline", 0.30 + 0.01 * seed), ("great", 0.20)):
            for attack, eps, acc in (("none", 0.0, 0.9), ("fgsm", 0.1, fgsm), ("ifgsm", 0.1, 0.05)):
                out.append({k: "" for k in ROW_FIELDS} | {
                    "dataset": "toy", "defense": d, "seed": seed, "attack": attack, "norm": "Linf", "epsilon": eps,
                    "mode": "untargeted", "accuracy": acc, "n": n, "restarts": 1, "params": "{}",
                    "spec": f"{attack}:eps={eps}", "seconds": 1.0, "checkpoint_sha256": f"sha-{d}-{seed}",
                    "correct_mask": pack_mask(torch.arange(n) < round(acc * n))})
    return out


@pytest.fixture(scope="module")
def verdict_page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verdicts")
    write_report(verdict_rows(), out, EvalSettings(epsilon=0.1), quiet=True)
    assert (out / "verdicts.csv").is_file()
    return out / "index.html"


class _Order(HTMLParser):
    """Start tags in document order, and the text inside <li class="claim"> elements."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.claims: list[str] = []
        self._in_claim = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "li" and dict(attrs).get("class") == "claim":
            self.claims.append("")
            self._in_claim = 1
        elif self._in_claim:
            self._in_claim += 1

    def handle_endtag(self, tag):
        if self._in_claim:
            self._in_claim -= 1

    def handle_data(self, data):
        if self._in_claim:
            self.claims[-1] += data


def test_verdicts_and_the_headline_plot_come_before_the_first_table(verdict_page):
    p = _Order()
    p.feed(verdict_page.read_text())
    names = [(t, a.get("id")) for t, a in p.tags]
    summary, first_table = names.index(("section", "summary")), names.index(("table", "robustness-toy"))
    assert summary < first_table
    assert [t for t, _ in names].index("table") > summary          # no table of any kind before it
    imgs = [i for i, (t, _) in enumerate(names) if t == "img"]
    assert imgs and summary < imgs[0] < first_table                  # the headline plot, inline, in the summary
    assert p.tags[imgs[0]][1]["src"].startswith("data:image/png;base64,")
    assert len(imgs) == 1                                            # not repeated further down
    # one line per claim: the claim, its label and the deciding number with its interval
    assert len(p.claims) == 1
    line = " ".join(p.claims[0].split())
    assert line.startswith("GREAT adds robustness to single-step attacks: does not hold — claimed GREAT > Baseline "
                           "on Non-targeted FGSM (toy), measured -10.5 [")
    assert re.search(r"-10\.5 \[-\d+\.\d, -\d+\.\d\] points, Holm p", line)


def test_no_verdicts_no_summary(page):
    assert "id='summary'" not in page.read_text() and 'id="summary"' not in page.read_text()


def test_verdict_page_renders_the_summary_above_the_tables_in_headless_chromium(verdict_page, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium on this machine (`make test` installs Debian's chromium where apt works)")
    probe = tmp_path / "probe.html"
    probe.write_text(verdict_page.read_text().replace("</body>", """<script>
const yOf = s => document.querySelector(s).getBoundingClientRect().top;
const out = document.createElement('pre'); out.id = 'probe';
out.textContent = JSON.stringify({summary: yOf('#summary'), table: yOf('table'),
  img: document.querySelector('#summary img').naturalWidth});
document.body.appendChild(out);
</script></body>"""))
    res = _run_chromium(binary, "--dump-dom", probe.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.S)
    assert m, res.stderr[-2000:]
    got = json.loads(m.group(1).replace("&quot;", '"'))
    assert got["summary"] < got["table"] and got["img"] > 100


def _verdict(first, second, p_holm, verdict, claim_verdict, diff):
    return {"claim": "C", "track": "robustness", "dataset": "toy", "first": first, "second": second,
            "column": "Non-targeted iFGSM", "sign": 1, "seeds": 3, "n": 500, "diff": diff, "ci_low": diff - 2,
            "ci_high": diff + 2, "p_value": p_holm, "p_holm": p_holm, "verdict": verdict,
            "claim_verdict": claim_verdict, "unit": "points"}


def test_a_claims_line_shows_the_comparison_that_decides_its_label():
    """Cannot tell: the weakest comparison (largest Holm p), not the strongest; does not hold:
    the comparison that does not hold."""
    from bench.report.html import verdict_lines

    strong, weak = _verdict("greace", "baseline", 0.0001, "holds", "cannot tell", 30.0), \
        _verdict("greace", "fgsm-at", 0.4, "cannot tell", "cannot tell", 1.0)
    line = verdict_lines([strong, weak])
    assert "GREACE &gt; Adversarial" in line and "+1.0 [-1.0, +3.0] points, Holm p 0.400" in line
    assert "(+1 more comparisons below)" in line and line.count("<li") == 1
    bad = _verdict("greace", "fgsm-at", 0.01, "does not hold", "does not hold", -5.0)
    line = verdict_lines([{**strong, "claim_verdict": "does not hold"}, bad, {**weak, "claim_verdict": "does not hold"}])
    assert "-5.0 [-7.0, -3.0] points, Holm p 0.010" in line and "does not hold" in line


def test_each_worst_case_column_names_the_attacks_it_covers():
    """Issue 28: at the sweep's extra epsilons the worst case may cover FGSM and iFGSM only; the
    page names each column's attack set in a visible row, not only in a tooltip."""
    from bench.report.html import worst_case_table

    def w(eps, attacks):
        return {"defense": "fgsm-at", "seed": 0, "norm": "Linf", "epsilon": eps, "accuracy": 0.5, "ci_low": 0.4,
                "ci_high": 0.6, "n": 100, "attacks": attacks}

    html = worst_case_table([w(0.1, "apgd/untargeted autoattack/untargeted fgsm/untargeted"),
                             w(0.15, "fgsm/untargeted ifgsm/untargeted")])
    foot = html.split("<tfoot>")[1]
    assert '<td class="attacks">apgd/untargeted autoattack/untargeted fgsm/untargeted</td>' in foot
    assert '<td class="attacks">fgsm/untargeted ifgsm/untargeted</td>' in foot
    assert "upper bound" in html


def test_a_partly_measured_claims_line_names_the_missing_comparison():
    from bench.report.html import verdict_lines

    nan = float("nan")
    held = _verdict("greace", "baseline", 0.0001, "holds", "partly measured", 30.0)
    missing = {**_verdict("greace", "fgsm-at", nan, "not measured", "partly measured", nan), "p_value": nan}
    line = verdict_lines([held, missing])
    assert 'data-verdict="partly measured"' in line and "+30.0 [+28.0, +32.0] points" in line
    assert "not measured: GREACE &gt; Adversarial on Non-targeted iFGSM" in line
