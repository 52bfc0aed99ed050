"""Shared helpers of the functional layer: the one reduction, input checks, dtypes.

Everything here is free of host syncs: shape and dtype checks read metadata only,
so they run under ``torch.func`` transforms and ``torch.compile(fullgraph=True)``.
Checks that need tensor values (label ranges) belong to a loss's ``validate=``
hook, which modules and the CLI call, never the pure function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from lossfn.registry import REDUCTIONS

__all__ = [
    "as_param",
    "check_class_indices",
    "check_floating",
    "check_integer_labels",
    "check_min_rank",
    "check_same_shape",
    "compute_dtype",
    "fail",
    "reduce_loss",
    "mean_over_features",
    "shape",
    "validate_class_range",
    "validate_unit_range",
]

_HALF = (torch.float16, torch.bfloat16)


def shape(x: Tensor) -> str:
    return "[" + ", ".join(str(d) for d in x.shape) + "]"


def fail(loss: str, arg: str, expected: str, got: str) -> ValueError:
    """The one error message form: ``loss: argument: expected ...; got ...``."""
    return ValueError(f"{loss}: {arg} must be {expected}; got {got}")


def reduce_loss(
    loss: Tensor, reduction: str, *, name: str, weights: Tensor | None = None
) -> Tensor:
    """Reduce per-example losses: ``"none"`` keeps them, ``"sum"`` adds them,
    ``"mean"`` divides the sum by ``weights.sum()`` (the number of elements when
    no weights are given).

    ``loss`` must already be multiplied by ``weights``: the weights only set the
    denominator, the way ``torch.nn.functional.cross_entropy`` normalizes a
    class-weighted mean. A mean whose weights sum to zero (every position
    masked) is 0, with a finite (zero) gradient, instead of ``nan``.
    """
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        if weights is None:
            return loss.mean()
        total = weights.sum()
        # where() keeps 0/0 out of both the value and the gradient
        return loss.sum() / torch.where(total == 0, torch.ones_like(total), total)
    raise fail(name, "reduction", f"one of {', '.join(map(repr, REDUCTIONS))}", repr(reduction))


def mean_over_features(elementwise: Tensor) -> Tensor:
    """Per-example loss ``[B]`` from an elementwise loss ``[B, ...]`` (mean over the rest)."""
    if elementwise.ndim <= 1:
        return elementwise
    return elementwise.flatten(1).mean(1)


def compute_dtype(x: Tensor) -> torch.dtype:
    """float32 for half-precision inputs (stable log-sum-exp), else the input dtype."""
    return torch.float32 if x.dtype in _HALF else x.dtype


def check_floating(loss: str, arg: str, x: Any) -> None:
    if not isinstance(x, Tensor):
        raise fail(loss, arg, "a torch.Tensor", type(x).__name__)
    if not x.is_floating_point():
        raise fail(loss, arg, "a floating-point tensor", f"dtype {x.dtype}")


def check_min_rank(loss: str, arg: str, x: Tensor, rank: int, layout: str) -> None:
    if x.ndim < rank:
        raise fail(loss, arg, f"of shape {layout}", f"shape {shape(x)}")


def check_same_shape(loss: str, logits: Tensor, labels: Tensor) -> None:
    """Regression-style losses: no silent broadcasting between output and target."""
    if not isinstance(labels, Tensor):
        raise fail(loss, "labels", "a torch.Tensor", type(labels).__name__)
    if labels.shape != logits.shape:
        raise fail(
            loss, "labels", f"of the same shape as logits {shape(logits)}", f"shape {shape(labels)}"
        )


def check_class_indices(loss: str, logits: Tensor, labels: Tensor) -> None:
    """Integer labels ``[B, *]`` for logits ``[B, C, *]`` (class dimension 1)."""
    expected = logits.shape[:1] + logits.shape[2:]
    if labels.shape != expected:
        dims = "[" + ", ".join(str(d) for d in expected) + "]"
        raise fail(
            loss,
            "labels",
            f"class indices of shape {dims} for logits {shape(logits)}",
            f"shape {shape(labels)}",
        )


def check_integer_labels(loss: str, labels: Any, expected: str = "integer class indices") -> None:
    """Labels that index classes or tokens: an integer tensor (not bool, float or complex)."""
    if not isinstance(labels, Tensor):
        raise fail(loss, "labels", "a torch.Tensor", type(labels).__name__)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise fail(loss, "labels", expected, f"dtype {labels.dtype}")


def as_param(
    loss: str, arg: str, value: Tensor | Sequence[Any], like: Tensor, shape_: tuple[int, ...]
) -> Tensor:
    """A tensor-valued hyperparameter (list or tensor) on ``like``'s device and dtype."""
    if isinstance(value, Mapping):
        raise fail(
            loss, arg, "a list or a tensor (a mapping of class names needs a vocabulary: "
            "lossfn.build(config, vocabulary=[...]))", "a mapping",
        )
    if isinstance(value, Tensor):
        tensor = value.to(device=like.device, dtype=like.dtype)
    else:
        tensor = torch.tensor(value, dtype=like.dtype, device=like.device)
    if tensor.shape != shape_:
        dims = "[" + ", ".join(str(d) for d in shape_) + "]"
        raise fail(loss, arg, f"of shape {dims}", f"shape {shape(tensor)}")
    return tensor


def validate_class_range(loss: str) -> Callable[..., None]:
    """A ``validate=`` hook: integer labels lie in ``[0, C)`` for logits ``[B, C, *]``.

    It reads label values (a host sync), so modules and the CLI run it, never the
    pure function.
    """

    def validate(logits: Tensor, labels: Tensor, **_: Any) -> None:
        if labels.is_floating_point() or labels.numel() == 0:
            return
        num_classes = logits.shape[1]
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            raise fail(loss, "labels", f"class indices in [0, {num_classes - 1}]", f"values in [{low}, {high}]")

    return validate


def validate_unit_range(loss: str) -> Callable[..., None]:
    """A ``validate=`` hook: binary targets (0/1 or probabilities) lie in ``[0, 1]``.

    A host sync, like :func:`validate_class_range`: modules and the CLI run it.
    """

    def validate(logits: Tensor, labels: Tensor, **_: Any) -> None:
        if labels.dtype == torch.bool or labels.numel() == 0:
            return
        low, high = float(labels.min()), float(labels.max())
        if low < 0 or high > 1:
            raise fail(loss, "labels", "targets in [0, 1]", f"values in [{low:g}, {high:g}]")

    return validate
