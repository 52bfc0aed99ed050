"""Decision boundaries, one panel per (loss, condition), drawn with matplotlib's Agg backend.

matplotlib is an optional extra (``pip install 'lossfn[demo]'``): it is imported
inside :func:`plot_boundaries`, which raises ``ImportError`` when it is missing.
The figure is built with ``matplotlib.figure.Figure`` and an Agg canvas, so the
demo never touches pyplot's global state (nor the backend a notebook chose).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .data import RINGS, Rings

__all__ = ["Panel", "plot_boundaries"]


@dataclass(frozen=True)
class Panel:
    """One panel: the first seed's network, its training data, and a title."""

    title: str
    decision: Callable[[Tensor], Tensor]  # points [M, 2] -> [M], > 0 where the network predicts class 1
    x: Tensor  # [N, 2] training points
    labels: Tensor  # [N] training labels as given (noisy)
    flipped: Tensor  # [N] bool: which labels were flipped


def plot_boundaries(
    panels: Sequence[Sequence[Panel]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: pathlib.Path,
    *,
    rings: Rings = RINGS,
    resolution: int = 160,
) -> pathlib.Path:
    """Write a grid of panels (``panels[row][col]``) to ``path`` as a PNG; return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle

    rows, cols = len(panels), len(panels[0])
    extent = rings.outer[1] * 1.1
    axis = torch.linspace(-extent, extent, resolution)
    grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)

    fig = Figure(figsize=(3.1 * cols, 3.2 * rows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, row in enumerate(panels):
        for c, panel in enumerate(row):
            ax = axes[r][c]
            decision = panel.decision(grid).reshape(resolution, resolution)
            bound = decision.abs().max().item() + 1.0
            coords, values = axis.numpy(), decision.numpy()
            ax.contourf(coords, coords, values, levels=[-bound, 0.0, bound], colors=["#c6dbef", "#fdd0a2"])
            if decision.min() < 0 < decision.max():  # (a network that predicts one class has no boundary)
                ax.contour(coords, coords, values, levels=[0.0], colors="k", linewidths=1.2)
            ax.add_patch(Circle((0, 0), rings.boundary, fill=False, ls="--", lw=1.0, color="0.35"))
            x, labels, flipped = panel.x.numpy(), panel.labels.numpy(), panel.flipped.numpy()
            colors = ["#2171b5" if label == 0 else "#d94801" for label in labels]
            ax.scatter(x[~flipped, 0], x[~flipped, 1], s=5, c=[c_ for c_, f in zip(colors, flipped) if not f], lw=0)
            ax.scatter(
                x[flipped, 0], x[flipped, 1], s=22, marker="x", lw=1.0,
                c=[c_ for c_, f in zip(colors, flipped) if f],
            )
            ax.set_xlim(-extent, extent)
            ax.set_ylim(-extent, extent)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:  # the condition's name above its column, the panel's own title below it
                ax.set_title(col_labels[c], fontsize=11, weight="bold", pad=16)
                ax.text(0.5, 1.02, panel.title, transform=ax.transAxes, ha="center", va="bottom", fontsize=8)
            else:
                ax.set_title(panel.title, fontsize=8)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=9)
    legend = [
        Line2D([], [], ls="", marker="o", color="#2171b5", label="label 0 (inner)"),
        Line2D([], [], ls="", marker="o", color="#d94801", label="label 1 (outer)"),
        Line2D([], [], ls="", marker="x", color="0.2", label="flipped label"),
        Line2D([], [], ls="-", color="k", label="learned boundary (first seed)"),
        Line2D([], [], ls="--", color="0.35", label="true boundary"),
    ]
    fig.legend(handles=legend, loc="outside lower center", ncols=5, fontsize=8, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
