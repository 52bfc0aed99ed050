"""The report of ``lossfn demo``: what it prints and writes once the networks are trained.

The accuracy table, each loss compared with the baseline seed by seed (with a
verdict), the content of ``results.json`` and the PNG of the decision boundaries.
The experiment itself (options, loss columns, data, training) is in ``__init__.py``.
"""

from __future__ import annotations

import math
import pathlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

import lossfn

from . import data

if TYPE_CHECKING:
    from . import Column, Run
    from .model import Ensemble

__all__ = ["HINT", "comparison", "draw", "results_json", "table"]

HINT = "pip install 'lossfn[demo]'"
"""How to install the optional extras (tqdm, matplotlib), for the lines that say one is missing."""


def _mean_std(values: torch.Tensor) -> str:
    values = values * 100
    std = values.std().item() if values.numel() > 1 else 0.0
    return f"{values.mean().item():6.2f} ± {std:4.2f}"


def table(run: Run, columns: list[Column]) -> str:
    """The clean-test accuracy per condition (rows) and loss (columns), mean ± std over the seeds."""
    robust = next((col for col in columns if col.per_condition), None)
    header = ["condition", *(["(t1, t2)"] if robust else []), *(col.label for col in columns)]
    rows = []
    for condition in data.CONDITIONS:
        config = robust.configs[condition] if robust else None
        temps = [f"({float(config.t1)}, {float(config.t2)})"] if config is not None else []
        rows.append([condition, *temps, *(_mean_std(run.accuracy[col.label, condition]) for col in columns)])
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def comparison(run: Run, columns: list[Column]) -> list[str]:
    """Each loss against the baseline, paired by seed (same data, same initial weights).

    A condition counts as a clear win (or loss) when the mean paired difference
    exceeds twice its standard error; anything smaller is reported as no clear
    difference. One seed has no spread, so it gets no verdict.
    """
    lines = []
    base = columns[0]
    seeds = len(run.seeds)
    for col in columns[1:]:
        lines.append(f"{col.label} minus {base.label}, paired by seed (same data and initial weights), "
                     "in accuracy points:")
        verdict: dict[str, list[str]] = {"better": [], "worse": [], "no clear difference": []}
        for condition in data.CONDITIONS:
            diff = (run.accuracy[col.label, condition] - run.accuracy[base.label, condition]) * 100
            better, worse = int((diff > 0).sum()), int((diff < 0).sum())
            mean = diff.mean().item()
            std = diff.std().item() if seeds > 1 else 0.0
            lines.append(f"  {condition:<13} {mean:+6.2f} ± {std:4.2f}   "
                         f"better on {better}/{seeds} seeds, worse on {worse}/{seeds}")
            clear = seeds > 1 and abs(mean) > 2 * std / math.sqrt(seeds)
            verdict["better" if clear and mean > 0 else "worse" if clear else "no clear difference"].append(condition)
        if seeds > 1:
            summary = "; ".join(f"{k}: {', '.join(v) or 'none'}" for k, v in verdict.items())
            lines.append(f"  verdict (mean difference beyond 2 standard errors): {summary}")
        else:
            lines.append("  verdict: one seed has no spread to judge by; run --seeds 3 or more")
    return lines


def results_json(run: Run, columns: list[Column], settings: dict[str, Any]) -> dict[str, Any]:
    """The content of results.json: the run's ``settings``, then each loss's configs and accuracies."""
    return {
        "settings": settings,
        "losses": [
            {
                "label": col.label,
                "conditions": {
                    c: {
                        "config": lossfn.encode_config(col.configs[c], format="dict"),
                        "clean_test_accuracy": run.accuracy[col.label, c].tolist(),
                    }
                    for c in data.CONDITIONS
                },
            }
            for col in columns
        ],
    }


def draw(run: Run, columns: list[Column], path: pathlib.Path) -> pathlib.Path | None:
    """The decision boundaries of the first seed as a PNG at ``path`` (``None`` without matplotlib)."""
    try:
        from .plot import Panel, plot_boundaries

        import matplotlib  # noqa: F401  (only to report a missing extra before any work)
    except ImportError:
        print(f"lossfn demo: matplotlib is not installed, so no PNG ({HINT})", file=sys.stderr)
        return None

    def decision(model: Ensemble, copy: int, config: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        spec = lossfn.schemas.spec_of(config)

        def logit_gap(points: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                logits = model(points)[copy]
            if spec.predict is not None:  # the loss decodes its own way (corn): its classes, +-1/2
                return spec.predict(logits).to(logits.dtype) - 0.5
            return logits[:, 1] - logits[:, 0]  # > 0: class 1

        return logit_gap

    panels = []
    for col in columns:
        row = []
        for g, condition in enumerate(data.CONDITIONS):
            title = f"test acc. {run.accuracy[col.label, condition][0].item() * 100:.1f}%"
            if col.per_condition:
                config = col.configs[condition]
                title = f"t1={float(config.t1)}, t2={float(config.t2)}: {title}"
            first_seed = g * len(run.seeds)
            row.append(Panel(title, decision(run.models[col.label], first_seed, col.configs[condition]), run.x[0],
                             run.noisy[condition][0], run.flipped[condition][0]))
        panels.append(row)
    return plot_boundaries(panels, [col.label for col in columns], list(data.CONDITIONS), path)
