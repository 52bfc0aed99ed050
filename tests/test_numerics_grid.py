"""The numerics grid: finite value and gradient wherever the float64 value is finite and in range.

Over every registered loss (a loss added later is covered through its case):
dtypes float32, float64, bfloat16, float16 × model-output scales 1e-8, 1, 1e4, 1e30
× a masked class (logit -inf, never the label) where the loss takes class logits
× batches of 0, 1 and 8 × every reduction. The expectation for each cell is the
same loss evaluated in float64 on the same numbers: where that is finite and
representable in the cell's dtype, the cell's value and its gradient must be
finite. Cells whose inputs the dtype cannot hold (1e30 in float16) are left out.
The whole grid is run, nothing sampled: about 2,300 cells are asked (the rest
have no finite float64 value to compare with), in a few seconds. A second test
puts each scalar hyperparameter at both ends of its range over the same scales
and the masked class, in float32 and float64.
"""

from __future__ import annotations

import math

import pytest
import torch

import lossfn

from cases import all_cases
from strategies import hyperparameter_edges as _edges

CASES = all_cases()
NAMES = [name for name in lossfn.registered() if name in CASES]
DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
SCALES = (1e-8, 1.0, 1e4, 1e30)
TRIED: dict[str, int] = {}  # cells asked per loss (printed by scripts or -s runs)


def _masked(inputs):
    """The last class masked: logit -inf, and no label names it. None if the loss takes no class logits."""
    logits, labels, *rest = inputs
    if logits.ndim != 2 or labels is None or labels.is_floating_point() or labels.shape != logits.shape[:1]:
        return None
    classes = logits.shape[1]
    if classes < 3:
        return None
    logits = logits.clone()
    logits[:, -1] = -math.inf
    return (logits, torch.where(labels == classes - 1, 0, labels), *rest)


def _cells(name, batches):
    for batch in batches:
        base = CASES[name].make(batch, torch.float64, torch.Generator().manual_seed(batch))
        variants = [("plain", base)]
        masked = _masked(base)
        if masked is not None:
            variants.append(("masked", masked))
        for label, inputs in variants:
            yield batch, label, inputs


@pytest.mark.parametrize("name", NAMES)
def test_finite_wherever_float64_is(name):
    _grid(name, {}, DTYPES, (0, 1, 8))


EDGES = [pytest.param(n, {f: v}, id=f"{n}-{f}={v:g}") for n in NAMES for f, v in _edges(n)]


@pytest.mark.parametrize("name,params", EDGES)
def test_finite_wherever_float64_is_at_every_bound(name, params):
    _grid(name, params, (torch.float32, torch.float64), (8,))


def _grid(name, params, dtypes, batches):
    spec = lossfn.get_loss(name)
    tried, broken = 0, []
    for batch, label, inputs in _cells(name, batches):
        for scale in SCALES:
            scaled = inputs[0] * scale
            for dtype in dtypes:
                x = scaled.to(dtype)
                if not torch.isfinite(x[torch.isfinite(scaled)]).all():
                    continue  # the dtype cannot hold these numbers
                rest = tuple(r.to(dtype) if r is not None and r.is_floating_point() else r for r in inputs[1:])
                for reduction in ("mean", "sum", "none"):
                    reference = spec.fn(scaled, *inputs[1:], **params, reduction=reduction)
                    if reference.numel() and not (
                        torch.isfinite(reference).all() and reference.abs().max() <= torch.finfo(dtype).max
                    ):
                        continue  # the true value is not finite in this dtype: nothing to ask
                    tried += 1
                    leaf = x.clone().requires_grad_()
                    value = spec.fn(leaf, *rest, **params, reduction=reduction)
                    (gradient,) = torch.autograd.grad(value.sum(), leaf, allow_unused=True)
                    gradient = torch.zeros_like(leaf) if gradient is None else gradient
                    finite_gradient = torch.isfinite(gradient[torch.isfinite(x)]).all()
                    if not (torch.isfinite(value).all() and finite_gradient):
                        broken.append((params, batch, label, scale, dtype, reduction, value.flatten()[:3].tolist()))
    assert tried > 0
    TRIED[name] = TRIED.get(name, 0) + tried
    assert not broken, f"{len(broken)} of {tried} cells not finite, e.g. {broken[:3]}"
