"""The paper's small network (2 -> 10 -> 5 -> 2), one independent copy per seed.

The copies are trained side by side as one module whose weights carry a leading
seed dimension (``[S, fan_in, fan_out]``), so a batched matmul runs all seeds in one
call: the same thing ``torch.func.stack_module_state`` + ``vmap`` would do, with
less machinery. Copy ``s`` is initialized from its own generator, so seed 0 gets
the same network whether one seed is run or ten.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["HIDDEN", "Ensemble"]

HIDDEN = (10, 5)
"""Hidden layer sizes used in the paper's synthetic experiment."""


class Ensemble(nn.Module):
    """``len(seeds)`` independent MLPs ``in_features -> *hidden -> classes`` (tanh activations).

    ``forward(x)`` takes ``[S, N, in_features]`` (or ``[N, in_features]``, shared by
    all copies) and returns logits ``[S, N, classes]``.
    """

    def __init__(
        self,
        seeds: Sequence[int],
        *,
        in_features: int = 2,
        hidden: Sequence[int] = HIDDEN,
        classes: int = 2,
    ) -> None:
        super().__init__()
        sizes = (in_features, *hidden, classes)
        self.seeds = tuple(seeds)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        generators = [torch.Generator().manual_seed(seed) for seed in self.seeds]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            # torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases
            bound = 1 / math.sqrt(fan_in)
            w = [torch.empty(fan_in, fan_out, dtype=torch.float32).uniform_(-bound, bound, generator=g) for g in generators]
            b = [torch.empty(1, fan_out, dtype=torch.float32).uniform_(-bound, bound, generator=g) for g in generators]
            self.weights.append(nn.Parameter(torch.stack(w)))
            self.biases.append(nn.Parameter(torch.stack(b)))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 2:
            x = x.expand(len(self.seeds), *x.shape)
        layers = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < layers - 1:
                x = torch.tanh(x)
        return x
