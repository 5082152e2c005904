"""Saliency maps (GREAT paper, Figure 4 left; Simonyan et al. 2014).

For a few fixed test images, the magnitude of the input gradient of the cross-entropy
on the true label, |d CE / d x| (maximum over colour channels), for each defense side by
side with the image. GREAT is meant to make these maps uninformative; GREACE and
GRE(AT+CE) give sparse maps on the object (paper, section 3).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from core.atomic import atomic_path
from bench.defense_cards import display


def saliency(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|grad_x CE(model(x), y)| reduced over channels, (N, H, W), in eval mode and fp32."""
    was = model.training
    model.eval()
    x = x.detach().float().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")  # sum: per-example gradients
        (g,) = torch.autograd.grad(loss, x)
    model.train(was)
    return g.abs().amax(dim=1)


def _normalise(m: torch.Tensor) -> torch.Tensor:
    """Per image to [0, 1] by its 99th percentile, so one bright pixel does not hide the map."""
    flat = m.flatten(1)
    hi = torch.quantile(flat, 0.99, dim=1).clamp_min(1e-12)
    return (m / hi[:, None, None]).clamp(0, 1)


def plot_saliency(models: Sequence[tuple[str, torch.nn.Module]], x: torch.Tensor, y: torch.Tensor,
                  png: str | Path, class_names: Sequence[str] | None = None) -> None:
    """Rows: images; columns: the image, then one saliency map per (name, model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = [_normalise(saliency(m, x, y)).cpu() for _, m in models]
    n, cols = len(x), 1 + len(models)
    fig, axes = plt.subplots(n, cols, figsize=(1.7 * cols, 1.8 * n + 0.4), squeeze=False)
    img = x.detach().cpu()
    for i in range(n):
        im = img[i].permute(1, 2, 0).squeeze(-1).numpy()
        axes[i, 0].imshow(im, cmap="gray" if img.shape[1] == 1 else None, vmin=0, vmax=1)
        label = class_names[int(y[i])] if class_names else f"class {int(y[i])}"
        axes[i, 0].set_ylabel(label, fontsize=8)
        for j, m in enumerate(maps):
            axes[i, j + 1].imshow(m[i].numpy(), cmap="inferno", vmin=0, vmax=1)
    axes[0, 0].set_title("image", fontsize=9)
    for j, (name, _) in enumerate(models):
        axes[0, j + 1].set_title(display(name), fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("|d loss / d input| (per image, scaled to its 99th percentile)", fontsize=9)
    fig.tight_layout()
    path = Path(png)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
