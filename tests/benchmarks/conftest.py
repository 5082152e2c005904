"""Print speed ratios measured side by side in one pytest-benchmark session.

A benchmark joins a ratio table by setting ``benchmark.group``; the one that sets
``benchmark.extra_info["reference"] = True`` is the denominator of its group.
"""
from __future__ import annotations


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups: dict[str, list] = {}
    for b in session.benchmarks:
        if b and b.group:
            groups.setdefault(b.group, []).append(b)
    for group, items in groups.items():
        ref = next((b for b in items if b.extra_info.get("reference")), None)
        if ref is None:
            continue
        terminalreporter.write_sep("-", f"ratios to {ref.name} (median, same run): {group}")
        for b in sorted(items, key=lambda b: b.stats.median):
            terminalreporter.write_line(
                f"{b.name:<55} median {b.stats.median * 1e3:9.2f} ms   x{b.stats.median / ref.stats.median:5.2f}")
