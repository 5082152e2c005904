"""Views of the multi-task rows: the Table 4 layout (Markdown) and weight trajectories (PNG)."""
from __future__ import annotations

from pathlib import Path

from core.atomic import atomic_path, write_text
from bench.csv_files import csv_text, read_rows
from bench.stats import paired_seed_difference, seed_interval

# Paper Table 4, CIFAR-10 columns (quoted for comparison; our runs regenerate the layout).
PAPER_CIFAR10 = {
    "equal": {"class": 24.0, "color": 0.131, "edge": 0.349, "auto": 0.113},
    "uncertainty": {"class": 26.6, "color": 0.111, "edge": 0.270, "auto": 0.090},
    "gradnorm": {"class": 23.5, "color": 0.116, "edge": 0.270, "auto": 0.091},
    "great": {"class": 24.2, "color": 0.114, "edge": 0.252, "auto": 0.087},
}
METHOD_TITLES = {"equal": "Equal", "equal-normalized": "Equal, normalised losses", "uncertainty": "Uncertainty",
                 "gradnorm": "GradNorm", "great": "GREAT"}
ROW_FIELDS = ("method", "seed", "task", "metric", "value")


def _value(x: float, d: int) -> str:
    return f"{x:.{d}f}"


def error_cell(vals: list[float], d: int) -> str:
    """'0.321 ± 0.001 [0.319, 0.323]': mean ± std [95% t-interval over seeds]."""
    s = seed_interval(vals)
    if s.seeds < 2:
        return _value(s.mean, d)
    # errors are non-negative: the t-interval is cut at 0
    return f"{s.mean:.{d}f} ± {s.std:.{d}f} [{max(0.0, s.ci_low):.{d}f}, {s.ci_high:.{d}f}]"


def difference_cell(first: dict[int, float], second: dict[int, float], d: int) -> str:
    """GREAT minus another method, paired by seed: '-0.010 [-0.014, -0.006] (GREAT lower)'."""
    s = paired_seed_difference(first, second)
    if s.seeds < 2:
        return f"{s.mean:+.{d}f} (one seed: no interval)"
    word = {"below 0": "GREAT lower", "above 0": "GREAT higher", "cannot tell": "cannot tell"}[s.verdict]
    return f"{s.mean:+.{d}f} [{s.ci_low:+.{d}f}, {s.ci_high:+.{d}f}] ({word})"


def table_markdown(rows: list[dict], tasks, methods, caption: str) -> str:
    """Rows -> Table 4 layout: one row per method, one column per task (lower is better),
    mean ± std [95% t-interval] over seeds, the best mean per column in bold; then the
    paper's claim (GREAT best on edges and denoising) as GREAT minus each method, paired by
    seed (every method starts from the same seed's weights and batches)."""
    digits = {"% error": 1, "RMSE": 3}
    values = {(m, t.name): {int(r["seed"]): float(r["value"]) for r in rows if r["method"] == m and r["task"] == t.name}
              for m in methods for t in tasks}
    best = {t.name: min((sum(v.values()) / len(v) for m in methods if (v := values[m, t.name])), default=None)
            for t in tasks}
    lines = ["| Method | " + " | ".join(f"{t.title} ({t.metric})" for t in tasks) + " |",
             "|---|" + "---:|" * len(tasks)]
    for m in methods:
        cells = []
        for t in tasks:
            v, d = values[m, t.name], digits[t.metric]
            if not v:
                cells.append("-")
                continue
            text = error_cell(list(v.values()), d)
            mean = sum(v.values()) / len(v)
            cells.append(f"**{text}**" if round(mean, d) == round(best[t.name], d) else text)
        lines.append(f"| {METHOD_TITLES.get(m, m)} | " + " | ".join(cells) + " |")
    if "great" in methods and len(methods) > 1:
        lines += ["", "## The paper's claim: GREAT has the lowest edge and denoising (auto) errors (Table 4)", "",
                  "GREAT minus each method (negative: GREAT better), paired by seed: mean [95% t-interval of the "
                  "per-seed differences]; a verdict only when the interval excludes 0.", "",
                  "| GREAT minus | " + " | ".join(f"{t.title} ({t.metric})" for t in tasks) + " |",
                  "|---|" + "---:|" * len(tasks)]
        for m in methods:
            if m != "great":
                cells = [difference_cell(values["great", t.name], values[m, t.name], digits[t.metric])
                         if values["great", t.name] and values[m, t.name] else "-" for t in tasks]
                lines.append(f"| {METHOD_TITLES.get(m, m)} | " + " | ".join(cells) + " |")
    paper = ["", "Paper, Table 4 (CIFAR-10, ResNet-53 backbone, for reference):", "",
             "| Method | Class (% error) | Color (RMSE) | Edge (RMSE) | Auto (RMSE) |", "|---|---:|---:|---:|---:|"]
    for m, v in PAPER_CIFAR10.items():
        paper.append(f"| {METHOD_TITLES[m]} | {v['class']:.1f} | {v['color']:.3f} | {v['edge']:.3f} | {v['auto']:.3f} |")
    return "\n".join([caption, "", *lines, *paper]) + "\n"


def plot_trajectories(logs: dict[str, list[dict]], tasks, path: Path, title: str) -> None:
    """One panel per method: per-epoch mean of each task's weight (GREAT: its GAL mean),
    averaged over seeds. ``logs`` maps method -> train_log rows of every seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(logs)
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.0), squeeze=False)
    for ax, m in zip(axes[0], methods):
        for t in tasks:
            by_epoch: dict[int, list[float]] = {}
            for r in logs[m]:
                by_epoch.setdefault(int(r["epoch"]), []).append(float(r[f"w_{t.name}"]))
            epochs = sorted(by_epoch)
            ax.plot(epochs, [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs], marker="o", label=t.title)
        ax.set_title(METHOD_TITLES.get(m, m))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.set_ylabel("GAL mean" if m == "great" else ("weight (sum 1)" if m == "uncertainty" else "task weight"))
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def read_log(path: Path) -> list[dict]:
    return read_rows(path)


def write_outputs(results: Path, rows, tasks, methods, logs, caption: str) -> dict[str, Path]:
    paths = {"csv": results / "multitask.csv", "md": results / "multitask.md",
             "png": results / "multitask_weights.png"}
    write_text(paths["csv"], csv_text(rows, ROW_FIELDS))
    write_text(paths["md"], table_markdown(rows, tasks, methods, caption))
    plot_trajectories(logs, tasks, paths["png"], caption.lstrip("# ").split("\n")[0])
    return paths
