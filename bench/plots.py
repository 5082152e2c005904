"""Accuracy-versus-epsilon curves (GREAT paper, Figure 4 right).

One panel per (attack, mode, norm) that the sweep ran at two or more epsilons; one line
per defense (mean over seeds, a band of +- one std when several seeds exist). For Linf
panels the no-attack accuracy is drawn at epsilon 0. Written as PNG and PDF.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import numpy as np

from bench.atomic import atomic_path
from bench.report import display


def _curves(rows: list[dict]) -> dict[tuple[str, str, str], dict[str, dict[float, list[float]]]]:
    panels: dict[tuple[str, str, str], dict[str, dict[float, list[float]]]] = {}
    for r in rows:
        if r["attack"] == "none":
            continue
        p = panels.setdefault((r["attack"], r["mode"], r["norm"]), {})
        p.setdefault(str(r["defense"]), {}).setdefault(float(r["epsilon"]), []).append(float(r["accuracy"]))
    panels = {k: v for k, v in panels.items()
              if len({e for d in v.values() for e in d}) >= 2}
    clean: dict[str, list[float]] = {}
    for r in rows:
        if r["attack"] == "none":
            clean.setdefault(str(r["defense"]), []).append(float(r["accuracy"]))
    for (attack, mode, norm), p in panels.items():
        if norm == "Linf":
            for d, pts in p.items():
                if 0.0 not in pts and d in clean:
                    pts[0.0] = clean[d]
    return panels


def plot_acc_vs_eps(rows: Iterable[dict], png: str | Path, pdf: str | Path | None = None) -> list[tuple]:
    """Write the figure; return the panels drawn as (attack, mode, norm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(rows)
    panels = _curves(rows)
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
            eps = sorted(pts)
            mean = np.array([np.mean(pts[e]) for e in eps]) * 100
            std = np.array([np.std(pts[e], ddof=1) if len(pts[e]) > 1 else 0.0 for e in eps]) * 100
            ax.plot(eps, mean, marker="o", ms=3, lw=1.6, color=colors(i % 10), label=display(d))
            if std.any():
                ax.fill_between(eps, mean - std, mean + std, color=colors(i % 10), alpha=0.15)
        title = {"untargeted": "non-targeted", "random": "targeted, random", "worst": "targeted, worst"}.get(mode, mode)
        ax.set_title(f"{attack.upper() if attack != 'ifgsm' else 'iFGSM'} ({title})", fontsize=11)
        ax.set_xlabel(f"epsilon ({norm}{', pixel units' if norm == 'Linf' else ' radius'})", fontsize=10)
        ax.set_ylabel("test accuracy (%)", fontsize=10)
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
