"""The full-batch mean under data parallelism and gradient accumulation.

A weighted mean divides by the weights' sum ``Σw``: the class weights of the
labels, or the number of tokens that are not padding. Under DDP each rank divides
by its own ``Σw``, and DDP then averages the gradients over the ranks, so the
result is the mean of per-rank means. That is not the full batch's mean once the
ranks' ``Σw`` differ. ``torch.nn.functional.cross_entropy`` behaves the same way,
and Hugging Face's ``num_items_in_batch`` fixes the same problem for gradient
accumulation.

:func:`mean` gives the full-batch mean. It takes the local weighted sum and the
local ``Σw`` from the loss's own mean (the shared ``reduce_loss``), all-reduces
``Σw`` over the group, and returns

.. math::

    \\text{local sum} \\cdot \\frac{\\text{world size}}{\\Sigma w_{\\text{global}}}

so that DDP's average over the ranks is the full batch's weighted mean, exactly::

    loss = lossfn.distributed.mean("softmax_cross_entropy", logits, labels, class_weights=w)
    loss.backward()   # DDP averages: the gradient of the full-batch weighted mean

For gradient accumulation over micro-batches, compute the global ``Σw`` once
(the sum over the micro-batches, and over the ranks) and pass it as
``weight_sum=``: then each micro-batch's loss is its share of the full mean, and
their gradients add up to the full mean's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from lossfn.functional._common import MEANS
from lossfn.registry import LossSpec, get_loss

__all__ = ["mean", "weight_sum"]


def _spec(loss: str | Any) -> LossSpec:
    if isinstance(loss, str):
        return get_loss(loss)
    name = getattr(loss, "__name__", None)
    if isinstance(name, str):
        spec = get_loss(name)
        if spec.fn is loss:
            return spec
    raise TypeError(f"lossfn.distributed.mean: expected a registered loss (its name or its function); got {loss!r}")


def _local(spec: LossSpec, inputs: tuple[Any, ...], params: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """``(local weighted sum, local Σw)`` of the loss's mean on these inputs."""
    if "reduction" in params:
        raise ValueError(f"{spec.name}: distributed.mean takes no reduction (it is a mean)")
    if torch.compiler.is_compiling():
        raise RuntimeError("lossfn.distributed.mean runs outside torch.compile (call the compiled model inside it)")
    MEANS.append([])
    try:
        value = spec.fn(*inputs, reduction="mean", **params)
    finally:
        found = MEANS.pop()
    match = [(total, count) for result, total, count in found if _is_returned(result, value)]
    if len(match) != 1:
        raise ValueError(
            f"{spec.name}: distributed.mean needs a loss whose mean is a weighted mean of its terms; "
            "this one's is not (the root of a mean, or a mean that torch computes itself: "
            "register it with register_torch_loss(..., elementwise_mean=True) if torch's mean is the mean of 'none')"
        )
    return match[0]


def _is_returned(result: Tensor, value: Tensor) -> bool:
    """Whether the loss returned this mean: itself, or cast back to a half-precision input's dtype."""
    if result is value:
        return True
    return (
        isinstance(value, Tensor)
        and value.dtype != result.dtype
        and value.shape == result.shape
        and bool(torch.equal(result.detach().to(value.dtype), value.detach()))
    )


def _world(group: Any) -> int:
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


def weight_sum(loss: str | Any, *inputs: Any, group: Any = None, **params: Any) -> Tensor:
    """The global ``Σw`` of the loss's mean on these inputs: the local one all-reduced over ``group``.

    Add it over micro-batches for :func:`mean`'s ``weight_sum=`` (it is detached, in the
    dtype the loss computes in).
    """
    total, count = _local(_spec(loss), inputs, params)
    count = count.detach().to(total.dtype, copy=True)  # a count of kept positions is an integer sum
    if _world(group) > 1:
        dist.all_reduce(count, op=dist.ReduceOp.SUM, group=group)
    return count


def mean(loss: str | Any, *inputs: Any, group: Any = None, weight_sum: Any = None, **params: Any) -> Tensor:
    """This rank's share of the full-batch weighted mean, for DDP's gradient averaging.

    Args:
        loss: a registered loss, by name or as its function (``lossfn.functional.X``).
        *inputs: its inputs on this rank (model output first).
        group: the process group (``None``: the default one); without an
            initialized process group the world is this process alone.
        weight_sum: the global ``Σw`` to divide by, computed beforehand (gradient
            accumulation: the sum of :func:`weight_sum` over the micro-batches);
            ``None``: this batch's, all-reduced over ``group`` (one collective).
        **params: the loss's hyperparameters (``class_weights=...``).

    Returns:
        ``local weighted sum · world size / global Σw``, a scalar with the loss's
        gradient (in the dtype the loss computes in: float32 for half-precision inputs). DDP divides the gradients by the world size, so the gradient is the
        full batch's mean's. A ``Σw`` of 0 (every position left out) gives 0, as
        lossfn's own empty mean.

    Raises:
        ValueError: the loss's mean is not a weighted mean of its terms (RMSE's root).
    """
    spec = _spec(loss)
    total, count = _local(spec, inputs, params)
    world = _world(group)
    if weight_sum is None:
        global_count = count.detach().clone().to(total.dtype)
        if world > 1:
            dist.all_reduce(global_count, op=dist.ReduceOp.SUM, group=group)
    else:
        global_count = torch.as_tensor(weight_sum, dtype=total.dtype, device=total.device).detach()
    denominator = torch.where(global_count == 0, torch.ones_like(global_count), global_count)
    return total * world / denominator
