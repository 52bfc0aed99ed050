"""The paper's synthetic data: two concentric rings, and three ways to corrupt their labels.

Class 0 fills the inner ring, class 1 the outer one; the true decision boundary is
the circle of radius ``Rings.boundary`` half-way across the gap between them, and
an example's *margin* is its distance to that circle. All randomness comes from
the ``torch.Generator`` passed in, so a seed gives the same data on every machine.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

__all__ = ["CONDITIONS", "POOL", "RINGS", "Rings", "corrupt", "margin", "sample"]

CONDITIONS = ("clean", "small-margin", "large-margin", "random")
"""The four label conditions of the paper's synthetic experiment."""

POOL = 3
"""Margin noise flips ``k`` labels picked at random among the ``POOL * k`` examples
closest to (small-margin) or farthest from (large-margin) the boundary: at most a
third of the labels in that region are wrong, so the true boundary is still the
best one, and a robust loss has something to recover."""


@dataclasses.dataclass(frozen=True)
class Rings:
    """Radii of the two classes' rings (``inner`` and ``outer``: ``(r_min, r_max)``)."""

    inner: tuple[float, float] = (0.0, 1.0)
    outer: tuple[float, float] = (1.2, 2.0)

    @property
    def boundary(self) -> float:
        """Radius of the true decision boundary: the middle of the gap."""
        return (self.inner[1] + self.outer[0]) / 2


RINGS = Rings()


def _radii(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    # uniform over the ring's area, not over the radius: r = sqrt(U(low², high²))
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return (low**2 + u * (high**2 - low**2)).sqrt()


def sample(n: int, generator: torch.Generator, rings: Rings = RINGS) -> tuple[Tensor, Tensor]:
    """``n`` points ``[n, 2]`` (float32) and their true labels ``[n]`` (int64), half per class, shuffled."""
    n0 = n // 2
    radius = torch.cat([_radii(n0, *rings.inner, generator), _radii(n - n0, *rings.outer, generator)])
    angle = torch.rand(n, generator=generator, dtype=torch.float64) * (2 * math.pi)
    x = torch.stack([radius * angle.cos(), radius * angle.sin()], dim=-1).float()
    y = torch.cat([torch.zeros(n0, dtype=torch.long), torch.ones(n - n0, dtype=torch.long)])
    order = torch.randperm(n, generator=generator)
    return x[order], y[order]


def margin(x: Tensor, rings: Rings = RINGS) -> Tensor:
    """Distance of each point ``[..., 2]`` to the true boundary circle."""
    return (x.norm(dim=-1) - rings.boundary).abs()


def corrupt(
    x: Tensor,
    labels: Tensor,
    condition: str,
    rate: float,
    generator: torch.Generator,
    rings: Rings = RINGS,
) -> tuple[Tensor, Tensor]:
    """Flip ``round(rate * n)`` of the binary ``labels`` the way ``condition`` says.

    - ``clean``: nothing is flipped.
    - ``small-margin``: flips among the ``POOL * k`` examples nearest the boundary.
    - ``large-margin``: flips among the ``POOL * k`` examples farthest from it.
    - ``random``: flips among all examples.

    Returns the noisy labels ``[n]`` and the mask ``[n]`` of flipped examples.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"unknown label condition {condition!r}; expected one of {', '.join(CONDITIONS)}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"noise rate must be in [0, 1]; got {rate}")
    n = labels.shape[0]
    k = 0 if condition == "clean" else round(rate * n)
    if condition in ("small-margin", "large-margin"):
        order = torch.argsort(margin(x, rings), descending=condition == "large-margin")
        pool = order[: min(n, POOL * k)]
    else:
        pool = torch.arange(n)
    chosen = pool[torch.randperm(pool.shape[0], generator=generator)[:k]]
    flipped = torch.zeros(n, dtype=torch.bool)
    flipped[chosen] = True
    return torch.where(flipped, 1 - labels, labels), flipped
