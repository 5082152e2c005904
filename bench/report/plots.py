"""Accuracy-versus-epsilon curves (GREAT paper, Figure 4 right).

One panel per (attack, mode, norm) that the sweep ran at two or more epsilons; one line
per defense (mean over seeds) with its 95% interval as a band: the Wilson interval over the
point's n examples with one seed, the interval adding seed spread and test sampling with
several (``bench.stats.aggregate``). For Linf panels the no-attack accuracy is drawn at
epsilon 0. Written as PNG and PDF.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import numpy as np

from core.atomic import atomic_path
from bench.defense_cards import display
from bench.stats import aggregate

Points = dict[float, list[tuple[float, int]]]  # epsilon -> (accuracy, n) per seed


def _curves(rows: list[dict]) -> dict[tuple[str, str, str], dict[str, Points]]:
    panels: dict[tuple[str, str, str], dict[str, Points]] = {}
    for r in rows:
        if r["attack"] == "none":
            continue
        p = panels.setdefault((r["attack"], r["mode"], r["norm"]), {})
        p.setdefault(str(r["defense"]), {}).setdefault(float(r["epsilon"]), []).append(
            (float(r["accuracy"]), int(r["n"])))
    panels = {k: v for k, v in panels.items()
              if len({e for d in v.values() for e in d}) >= 2}
    clean: dict[str, list[tuple[float, int]]] = {}
    for r in rows:
        if r["attack"] == "none":
            clean.setdefault(str(r["defense"]), []).append((float(r["accuracy"]), int(r["n"])))
    for (attack, mode, norm), p in panels.items():
        if norm == "Linf":
            for d, pts in p.items():
                if 0.0 not in pts and d in clean:
                    pts[0.0] = clean[d]
    return panels


def curves(rows: list[dict]) -> dict[tuple[str, str, str], dict[str, list[tuple[float, object]]]]:
    """Per panel and defense, the drawn points: (epsilon, bench.stats.Summary) sorted by epsilon."""
    return {key: {d: [(e, aggregate([a for a, _ in pts[e]], [n for _, n in pts[e]])) for e in sorted(pts)]
                  for d, pts in panel.items()}
            for key, panel in _curves(rows).items()}


def plot_acc_vs_eps(rows: Iterable[dict], png: str | Path, pdf: str | Path | None = None) -> list[tuple]:
    """Write the figure; return the panels drawn as (attack, mode, norm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(rows)
    panels = curves(rows)
    keys = sorted(panels, key=lambda k: (k[2], k[0], ("untargeted", "random", "worst").index(k[1])
                                         if k[1] in ("untargeted", "random", "worst") else 9))
    defenses = list(dict.fromkeys(str(r["defense"]) for r in rows))
    ncols = min(3, max(1, len(keys)))
    nrows = max(1, math.ceil(len(keys) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, key in zip(axes.flat, keys):
        attack, mode, norm = key
        for i, d in enumerate(defenses):
            pts = panels[key].get(d)
            if not pts:
                continue
            eps = [e for e, _ in pts]
            stats = [s for _, s in pts]
            mean = np.array([s.mean for s in stats]) * 100
            ax.plot(eps, mean, marker="o", ms=3, lw=1.6, color=colors(i % 10), label=display(d))
            ax.fill_between(eps, [100 * s.ci_low for s in stats], [100 * s.ci_high for s in stats],
                            color=colors(i % 10), alpha=0.15, lw=0)
        title = {"untargeted": "non-targeted", "random": "targeted, random", "worst": "targeted, worst"}.get(mode, mode)
        ax.set_title(f"{attack.upper() if attack != 'ifgsm' else 'iFGSM'} ({title})", fontsize=11)
        ax.set_xlabel(f"epsilon ({norm}{', pixel units' if norm == 'Linf' else ' radius'})", fontsize=10)
        ax.set_ylabel("test accuracy (%), 95% band", fontsize=10)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if not keys:
        axes.flat[0].text(0.5, 0.5, "no attack was run at two or more epsilons", ha="center", va="center")
        axes.flat[0].axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=10, frameon=False)
    fig.tight_layout(rect=(0, 0.07 if nrows == 1 else 0.04, 1, 1))
    for path in filter(None, (png, pdf)):
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=130)
    plt.close(fig)
    return keys
