"""``index.html``: the results folder as one self-contained page (issue 13).

Everything is inline (styles, the sorting script, figures as base64 data URIs), so the file
opens from disk with no network access and can be mailed or attached as it is. When the
report has verdicts on the paper's claims (``bench.report.claims``), the page opens with what a
reader came for (issue 22): one line per claim with its verdict and the number that decides
it, and the accuracy-vs-epsilon plot, before any wide table. Then it shows the views ``bench.report.write.write_report`` writes as files: the Table 1 layout with
95% intervals (sortable by any column: click a header), the per-example worst case, the
paired comparison against the reference defense, the masking checks and sanity flags (a
flag is highlighted with the number behind it), the accuracy-vs-epsilon curves, the
saliency maps, the distillation and multi-task tables when their Markdown files are in the
folder, and per model its provenance (preset, resolved identity, seed, checkpoint sha256,
library versions, seconds) folded in a ``<details>`` element.

It reads the same in-memory objects as the other writers; it never recomputes a number.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from bench.report.compare import across_seeds_text, comparison_text
from bench.report.tables import Table, caption, cell_text
from bench.defense_cards import display

# Sorting: a header click orders the body rows by each cell's data-v (numbers; empty last),
# a second click reverses. Rows in <tfoot> (the n per column) never move.
_SCRIPT = """
function sortBy(th) {
  const table = th.closest('table'), body = table.tBodies[0];
  const col = Array.from(th.parentNode.children).indexOf(th);
  const dir = th.dataset.dir === 'desc' ? 'asc' : 'desc';
  table.querySelectorAll('th').forEach(h => { delete h.dataset.dir; });
  th.dataset.dir = dir;
  const key = tr => {
    const td = tr.children[col]; const v = td ? td.dataset.v : undefined;
    if (v === undefined || v === '') return null;
    const x = Number(v); return Number.isNaN(x) ? v : x;
  };
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const ka = key(a), kb = key(b);
    if (ka === null && kb === null) return 0;
    if (ka === null) return 1;
    if (kb === null) return -1;
    const c = ka < kb ? -1 : ka > kb ? 1 : 0;
    return dir === 'asc' ? c : -c;
  });
  rows.forEach(r => body.appendChild(r));
}
document.querySelectorAll('table.sortable th').forEach(th => th.addEventListener('click', () => sortBy(th)));
"""

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1500px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 12.5px; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f3f3; }
table.sortable thead th { cursor: pointer; }
table.sortable thead th[data-dir=desc]::after { content: ' \\25BC'; }
table.sortable thead th[data-dir=asc]::after { content: ' \\25B2'; }
tfoot td { color: #666; font-style: italic; }
.ci { color: #777; }
td.better { background: #e3f4e1; font-weight: 600; } td.worse { background: #fbe3e1; font-weight: 600; }
td.flag { background: #f8c9c4; font-weight: 700; } td.pass { color: #2d6a2d; }
.caption { color: #444; max-width: 1100px; }
div.wide { overflow-x: auto; }
img { max-width: 100%; border: 1px solid #eee; }
details { margin: 0.3em 0; } summary { cursor: pointer; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 12px; }
ul.verdicts li { margin: 0.25em 0; } .verdict { font-weight: 700; padding: 0 0.3em; }
.verdict.holds { background: #e3f4e1; } .verdict.does-not-hold { background: #fbe3e1; }
.verdict.cannot-tell, .verdict.partly-measured { background: #eee; }
#summary img { max-width: 900px; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(v: Any) -> str:
    """A data-v value: the number as text, '' when missing."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(f) else repr(f)


def _data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".svg": "image/svg+xml"}[path.suffix.lower()]
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def robustness_table(t: Table) -> str:
    """Table 1 layout, one sortable table per dataset; cells sort by their mean accuracy."""
    names = [c.name for c in t.columns]
    head = "".join(f"<th>{_e(n)}</th>" for n in ["Method", *names])
    body = []
    for d in t.defenses:
        cells = [f'<td data-v="{_e(display(d))}">{_e(display(d))}</td>']
        for c in t.columns:
            s = t.summary[(t.summary["defense"] == d) & (t.summary["column"] == c.name)]
            if s.empty:
                cells.append('<td data-v="">–</td>')
                continue
            r = s.iloc[0]
            text = cell_text(r)
            main, _, ci = text.partition(" [")
            ci_html = f' <span class="ci">[{_e(ci)}</span>' if ci else ""
            cells.append(f'<td data-v="{_num(r["mean"])}">{_e(main)}{ci_html}</td>')
        body.append(f'<tr data-defense="{_e(d)}">{"".join(cells)}</tr>')
    n = t.summary.groupby("column")["n"].max()
    foot = "".join(f"<td>{'' if c.attack == 'train' else _e(int(n.get(c.name, 0)))}</td>" for c in t.columns)
    return (f'<p class="caption">{_e(caption(t))}</p>'
            f'<div class="wide"><table class="sortable" id="robustness-{_e(t.dataset)}"><thead><tr>{head}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody><tfoot><tr><td>n (examples)</td>{foot}</tr></tfoot></table></div>')


def comparison_table(comp: pd.DataFrame, t: Table) -> str:
    """Each defense minus the reference per column; better / worse cells coloured."""
    c = comp[comp["dataset"] == t.dataset]
    if c.empty:
        return ""
    against = display(c["against"].iloc[0])
    names = [col.name for col in t.columns if col.name in set(c["column"])]
    head = "".join(f"<th>{_e(n)}</th>" for n in ["Method", "Seeds", *names])
    body = []
    order = {d: i for i, d in enumerate(t.defenses)}
    for (d, seed, aseed), g in sorted(c.groupby(["defense", "seed", "against_seed"], sort=False),
                                      key=lambda kv: order.get(kv[0][0], len(order))):
        by = {r["column"]: r for _, r in g.iterrows()}
        cells = [f'<td data-v="{_e(display(d))}">{_e(display(d))}</td>', f"<td>{_e(seed)} vs {_e(aseed)}</td>"]
        for name in names:
            r = by.get(name)
            if r is None:
                cells.append('<td data-v="">–</td>')
                continue
            cls = {"better": "better", "worse": "worse"}.get(r["verdict"], "")
            cells.append(f'<td class="{cls}" data-v="{_num(r["diff_pct"])}" title="{_e(r["verdict"])}: '
                         f'b={_e(r["only_defense"])}, c={_e(r["only_against"])}, n={_e(r["n"])}">'
                         f'{_e(comparison_text(r).strip("*"))}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<p class="caption">{_e(t.dataset)}: each defense minus {_e(against)} (accuracy points on the same '
            "examples), [95% Newcombe paired interval] and exact McNemar p. Green: better (p &lt; 0.05 and the "
            "interval above 0); red: worse; plain: the data cannot say.</p>"
            f'<div class="wide"><table class="sortable" id="comparison-{_e(t.dataset)}"><thead><tr>{head}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table></div>')


def across_seeds_table(seeds: pd.DataFrame, t: Table) -> str:
    """``bench.report.compare.across_seeds`` rows as a table: per defense and column the mean difference,
    interval over seeds (seed spread and test sampling) and per-seed verdict counts; green / red when
    the interval excludes 0."""
    s = seeds[seeds["dataset"] == t.dataset]
    if s.empty:
        return ""
    names = [col.name for col in t.columns if col.name in set(s["column"])]
    head = "".join(f"<th>{_e(n)}</th>" for n in ["Method", *names])
    order = {d: i for i, d in enumerate(t.defenses)}
    body = []
    for d, g in sorted(s.groupby("defense", sort=False), key=lambda kv: order.get(kv[0], len(order))):
        by = {r["column"]: r for _, r in g.iterrows()}
        cells = [f'<td data-v="{_e(display(d))}">{_e(display(d))}</td>']
        for name in names:
            r = by.get(name)
            if r is None:
                cells.append('<td data-v="">–</td>')
                continue
            cls = "better" if r["ci_low_pct"] > 0 else "worse" if r["ci_high_pct"] < 0 else ""
            cells.append(f'<td class="{cls}" data-v="{_num(r["mean_diff_pct"])}" title="{_e(r["seeds"])} seeds; '
                         f'McNemar per seed better/worse/cannot say">{_e(across_seeds_text(r).strip("*"))}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    k = int(s["seeds"].max())
    return (f'<p class="caption">{_e(t.dataset)}, across {k} training seeds: mean of the per-seed differences '
            "(points) [95% interval: the seeds' paired t-interval and the test-sampling error, in quadrature] "
            "and the per-seed McNemar verdicts better/worse/cannot say. "
            "Green or red: the interval excludes 0 (the difference survives retraining).</p>"
            f'<div class="wide"><table class="sortable" id="across-seeds-{_e(t.dataset)}"><thead><tr>{head}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table></div>')


def worst_case_table(worst: Sequence[dict]) -> str:
    """Models x (norm, epsilon): the worst-case accuracy with its interval; the attacks it
    combines and n in each cell's tooltip."""
    if not worst:
        return ""
    keys = sorted({(r["norm"], float(r["epsilon"])) for r in worst}, key=lambda k: (k[0] != "Linf", k[1]))
    models = list(dict.fromkeys((r["defense"], str(r["seed"])) for r in worst))
    by = {(r["defense"], str(r["seed"]), r["norm"], float(r["epsilon"])): r for r in worst}
    head = "".join(f"<th>{_e(h)}</th>" for h in ["Method", "Seed", *(f"{n} {e:g}" for n, e in keys)])
    body = []
    for d, seed in models:
        cells = [f'<td data-v="{_e(display(d))}">{_e(display(d))}</td>', f'<td data-v="{_num(seed)}">{_e(seed)}</td>']
        for norm, eps in keys:
            r = by.get((d, seed, norm, eps))
            if r is None:
                cells.append('<td data-v="">–</td>')
                continue
            acc = float(r["accuracy"])
            cells.append(f'<td data-v="{acc!r}" title="n = {_e(r["n"])}; {_e(r["attacks"])}">{100 * acc:.1f} '
                         f'<span class="ci">[{100 * float(r["ci_low"]):.1f}, {100 * float(r["ci_high"]):.1f}]'
                         "</span></td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    n = {(r["norm"], float(r["epsilon"])): r["n"] for r in worst}
    foot = "".join(f"<td>{_e(n[k])}</td>" for k in keys)
    # Issue 28: the attack sets differ between epsilons (at the sweep's extra epsilons often
    # only FGSM and iFGSM), so each column says what its worst case covers.
    covers = {k: " / ".join(dict.fromkeys(str(r["attacks"]) for r in worst
                                          if (r["norm"], float(r["epsilon"])) == k)) for k in keys}
    sets = "".join(f'<td class="attacks">{_e(covers[k])}</td>' for k in keys)
    return ("<p>Each column is the worst case over the attacks named in its last row only; where those "
            "are FGSM and iFGSM alone it is an upper bound that the stronger attacks of other columns "
            "would likely lower, so compare columns with the same attack set.</p>"
            f'<div class="wide"><table class="sortable" id="worst-case"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody><tfoot><tr><td>n (examples)</td><td></td>{foot}</tr>'
            f'<tr><td>attacks</td><td></td>{sets}</tr></tfoot></table></div>')


def masking_table(checks: Sequence[dict]) -> str:
    """Defense x check; a flagged check is highlighted, every cell carries its number and detail."""
    if not checks:
        return ""
    names = list(dict.fromkeys(r["check"] for r in checks))
    models = list(dict.fromkeys((r["defense"], str(r["seed"])) for r in checks))
    by = {(r["defense"], str(r["seed"]), r["check"]): r for r in checks}
    head = "".join(f"<th>{_e(n)}</th>" for n in ["Method", "Seed", *names])
    body = []
    for d, seed in models:
        cells = [f'<td data-v="{_e(display(d))}">{_e(display(d))}</td>', f'<td data-v="{_num(seed)}">{_e(seed)}</td>']
        for n in names:
            r = by.get((d, seed, n))
            if r is None:
                cells.append('<td data-v="">–</td>')
                continue
            status = str(r["status"])
            label = "FLAG" if status == "flag" else status
            value = _num(r["value"])
            shown = f"{float(value):.3f}" if value else ""
            cells.append(f'<td class="{_e(status)}" data-v="{value}" title="{_e(r.get("detail", ""))} '
                         f'(threshold {_e(r.get("threshold", ""))})">{_e(label)}{f" ({shown})" if shown else ""}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div class="wide"><table class="sortable" id="masking"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def provenance(rows: Sequence[dict], subjects=()) -> str:
    """Per model, folded: checkpoint, seed, evaluation seconds and library versions from the
    rows, and (given the runs) the preset, identity and training time from meta.json."""
    metas = {(str(s.defense), str(s.seed)): getattr(s, "meta", {}) or {} for s in subjects}
    models: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        m = models.setdefault((str(r["defense"]), str(r["seed"])), {
            "checkpoint_sha256": r.get("checkpoint_sha256", ""), "eval_seconds": 0.0, "rows": 0,
            "versions": {k: r.get(k, "") for k in ("torch", "torchattacks", "foolbox", "great_bench")},
            "source": r.get("source", ""), "data_fingerprint": r.get("data_fingerprint", "")})
        m["rows"] += 1
        m["eval_seconds"] += float(r.get("seconds") or 0.0)
    out = []
    for (d, seed), m in models.items():
        meta = metas.get((d, seed), {})
        info: dict[str, Any] = {"defense": d, "seed": seed, **m, "eval_seconds": round(m["eval_seconds"], 1)}
        for k in ("preset", "train_seconds", "fingerprint", "git_revision", "identity", "versions"):
            if k in meta:
                info["run_" + k if k == "versions" else k] = meta[k]
        out.append(f'<details class="provenance" data-defense="{_e(d)}"><summary>{_e(display(d))}, seed {_e(seed)}'
                   f' — checkpoint {_e(str(m["checkpoint_sha256"])[:12])}…, {m["rows"]} rows</summary>'
                   f"<pre>{_e(json.dumps(info, indent=2, sort_keys=True, default=str))}</pre></details>")
    return "".join(out)


def markdown_tables(text: str) -> str:
    """The pipe tables and bold captions of a track's Markdown file (distillation.md,
    multitask.md) as HTML: '|' blocks become tables, other paragraphs text."""
    out, block = [], []

    def inline(s: str) -> str:
        return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", _e(s))

    def flush() -> None:
        if not block:
            return
        cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block]
        rows = [r for r in cells if not all(re.fullmatch(r":?-{2,}:?", c) for c in r)]
        head, body = rows[0], rows[1:]
        out.append("<table><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                   + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body)
                   + "</tbody></table>")
        block.clear()

    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        flush()
        if line.strip() and not line.startswith("#"):
            out.append(f"<p>{inline(line)}</p>")
        elif line.startswith("#"):
            out.append(f"<h3>{inline(line.lstrip('#').strip())}</h3>")
    flush()
    return "".join(out)


def key_comparison(mine: Sequence[dict]) -> dict:
    """The comparison that decides a claim's label (``bench.report.claims``): for "does not hold" the
    one that does not hold with the smallest Holm p; otherwise its weakest (largest Holm p)."""
    against = [r for r in mine if r["verdict"] == "does not hold"]
    measured = [r for r in mine if r["verdict"] != "not measured"]  # a partly measured claim's unmeasured rows
    return min(against, key=lambda r: r["p_holm"]) if against else max(measured, key=lambda r: r["p_holm"])


def verdict_lines(verdicts: Sequence[dict]) -> str:
    """One line per claim: the claim, its verdict and the number behind it with its interval."""
    out = []
    for claim in dict.fromkeys(r["claim"] for r in verdicts):
        mine = [r for r in verdicts if r["claim"] == claim]
        r = key_comparison(mine)
        label = mine[0]["claim_verdict"]
        d = 1 if r["unit"] == "points" else 3
        sign = ">" if r["sign"] > 0 else "<"
        more = f" (+{len(mine) - 1} more comparisons below)" if len(mine) > 1 else ""
        missing = [m for m in mine if m["verdict"] == "not measured"]
        if missing:
            more += "; not measured: " + ", ".join(f"{display(m['first'])} {'>' if m['sign'] > 0 else '<'} "
                                                   f"{display(m['second'])} on {m['column']}" for m in missing)
        p = "&lt;0.001" if r["p_holm"] < 0.001 else f"{r['p_holm']:.3f}"
        out.append(f'<li class="claim" data-verdict="{_e(label)}"><b>{_e(claim)}</b>: '
                   f'<span class="verdict {_e(label.replace(" ", "-"))}">{_e(label)}</span> — '
                   f"claimed {_e(display(r['first']))} {_e(sign)} {_e(display(r['second']))} on {_e(r['column'])} "
                   f"({_e(r['dataset'])}), measured {r['diff']:+.{d}f} [{r['ci_low']:+.{d}f}, {r['ci_high']:+.{d}f}] "
                   f"{_e(r['unit'])}, Holm p {p}{_e(more)}</li>")
    return "<ul class='verdicts'>" + "".join(out) + "</ul>"


def summary_section(verdicts: Sequence[dict], headline: Path | None, rule: str | None = None) -> str:
    """What a reader came for, before any wide table: each claim's verdict on one line and the
    headline accuracy-vs-epsilon plot (issue 22)."""
    if not verdicts:
        return ""
    plot = (f"<img alt='Accuracy vs epsilon' src='{_data_uri(headline)}'>" if headline is not None
            and headline.is_file() else "")
    return ("<section id='summary'><h2>The paper's claims: verdicts</h2>"
            f"<p>One line per claim: its verdict by one rule ({_e(rule or 'Holm over every comparison')}; see the "
            "verdicts section below) and the comparison that decides it, as a difference with its 95% interval "
            "across seeds.</p>"
            + verdict_lines(verdicts) + plot + "</section>")


def render(title: str, tables: Sequence[Table], *, comparison: pd.DataFrame | None, seeds: pd.DataFrame | None,
           checks: Sequence[dict], worst: Sequence[dict], rows: Sequence[dict], subjects=(),
           figures: Sequence[tuple[str, Path]] = (), tracks: Sequence[tuple[str, Path]] = (),
           verdicts: Sequence[dict] = (), headline: Path | None = None, rule: str | None = None) -> str:
    """The whole page as one string: given the claims' ``verdicts`` (``bench.report.claims``, or a
    pre-registered family's, whose Holm ``rule`` the summary then names), it opens with them and
    the ``headline`` figure."""
    parts = [f"<h1>{_e(title)}</h1>", summary_section(verdicts, headline, rule),
             "<p>Test accuracy (%) with 95% intervals; click a column header to sort. Hover a cell of the "
             "comparison or masking tables for the counts and details behind it.</p>",
             "<h2 id='robustness'>Robustness (paper Table 1 layout)</h2>"]
    parts += [robustness_table(t) for t in tables]
    if comparison is not None and not comparison.empty:
        parts.append("<h2 id='comparison'>Paired comparison</h2>")
        parts += [comparison_table(comparison, t) + (across_seeds_table(seeds, t) if seeds is not None else "")
                  for t in tables]
    if worst:
        parts += ["<h2 id='worst'>Worst case per example</h2>",
                  "<p>An example counts as robust only if it survives every attack and mode run at that norm "
                  "and epsilon, on the examples all of them ran on (hover a cell for the attacks and n).</p>",
                  worst_case_table(worst)]
    parts += ["<h2 id='masking'>Gradient-masking checks and sanity flags</h2>", masking_table(checks)]
    for name, path in figures:
        if path.is_file() and not (verdicts and path == headline):  # the summary shows it already
            parts.append(f"<h2>{_e(name)}</h2><img alt='{_e(name)}' src='{_data_uri(path)}'>")
    for name, path in tracks:  # a track's Markdown tables, or its figure
        if path.is_file():
            body = (markdown_tables(path.read_text()) if path.suffix == ".md"
                    else f"<img alt='{_e(name)}' src='{_data_uri(path)}'>")
            parts.append(f"<h2>{_e(name)}</h2>{body}")
    parts += ["<h2 id='provenance'>Provenance</h2>", provenance(rows, subjects)]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
            + "\n".join(parts) + f"<script>{_SCRIPT}</script></body></html>\n")
