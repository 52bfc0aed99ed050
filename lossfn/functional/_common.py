"""Shared helpers of the functional layer: the one reduction, input checks, dtypes.

Everything here is free of host syncs: shape, dtype and device checks read
metadata only, so they run under ``torch.func`` transforms and
``torch.compile(fullgraph=True)``. Checks that need tensor values (label ranges)
belong to a loss's ``validate=`` hook, which computes its facts with tensor ops and
hands them back as an ``InputCheck``: the module reads them (the one host sync), never
the pure function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from lossfn.registry import InputCheck, check_reduction, fail

__all__ = [
    "INDEX_DTYPES",
    "as_index",
    "as_param",
    "cast",
    "check_class_indices",
    "check_device",
    "check_floating",
    "check_integer_labels",
    "check_min_rank",
    "check_same_shape",
    "compute_dtype",
    "fail",
    "keep_where",
    "kept_weights",
    "reduce_loss",
    "shape",
    "unbatched",
    "probability_tolerance",
    "validate_class_range",
    "validate_unit_range",
]

_HALF = (torch.float16, torch.bfloat16)

#: Integer dtypes that index like integers (``uint8`` indexes as a boolean mask).
INDEX_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8)


def shape(x: Tensor) -> str:
    return "[" + ", ".join(str(d) for d in x.shape) + "]"


# -- reduction ----------------------------------------------------------------------


#: Where :func:`lossfn.distributed.mean` collects each mean's (value, weighted sum, Σw):
#: empty (no one listening) except inside its call.
MEANS: list[list[tuple[Tensor, Tensor, Tensor]]] = []


def reduce_loss(loss: Tensor, reduction: str, *, name: str, weights: Tensor | None = None) -> Tensor:
    """Reduce unreduced losses: ``"none"`` keeps them, ``"sum"`` adds them, ``"mean"``
    divides the sum by ``weights.sum()`` (the number of elements when no weights
    are given; the number of kept positions for a boolean keep mask).

    ``loss`` must already be multiplied by ``weights`` and be 0 where a position is
    left out (use :func:`keep_where`, not a product, so that a NaN there stays out):
    the weights only set the denominator, the way
    ``torch.nn.functional.cross_entropy`` normalizes a class-weighted mean. A mean
    with nothing to average (an empty batch, every position left out, weights that
    sum to 0) is 0 with a zero gradient, where torch returns ``nan``.
    """
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        if weights is None:
            # numel() is static (per example under vmap): no host sync
            result = loss.mean() if loss.numel() > 0 else loss.sum()
            if MEANS:  # lossfn.distributed.mean is listening (never under compile: see there)
                MEANS[-1].append((result, loss.sum(), torch.tensor(float(loss.numel()), device=loss.device)))
            return result
        total = weights.sum()
        if weights.dtype == torch.bool:  # a keep mask: the mean over the kept positions
            result = loss.sum() / total.clamp_min(1)
        else:  # where() keeps 0/0 out of both the value and the gradient
            result = loss.sum() / torch.where(total == 0, torch.ones_like(total), total)
        if MEANS:
            MEANS[-1].append((result, loss.sum(), total))
        return result
    check_reduction(name, reduction)  # raises: the one message for an unknown reduction
    raise AssertionError(reduction)


def keep_where(keep: Tensor, loss: Tensor) -> Tensor:
    """``loss`` where ``keep``, else 0: a ``where``, never a product with a mask, so that a
    NaN or an infinity at a left-out position (a padded token's logits) stays out."""
    return torch.where(keep, loss, 0.0)


def kept_weights(keep: Tensor | None, chosen: Tensor | None) -> Tensor | None:
    """The mean's weights: the class weight of each kept label (``chosen``), or the keep mask
    itself (a count), or None (a plain mean)."""
    if chosen is None:
        return keep
    return chosen if keep is None else keep_where(keep, chosen)


def unbatched(logits: Tensor, labels: Any, *, rank: int, probabilities: bool = True) -> tuple[Tensor, Any, bool]:
    """Give one example a batch dimension, as torch does for ``cross_entropy(x[C], y[])``.

    ``rank`` is the rank of batched logits (2 for ``[B, C]``, 3 for ``[B, T, V]``);
    logits of rank ``rank - 1`` are one example, and the labels (class indices of one
    rank less, or, with ``probabilities``, float probabilities of the logits' shape)
    get the batch dimension with them; anything else is left for the checks. Returns
    ``(logits, labels, added)``; when ``added``, squeeze dimension 0 of the
    ``"none"`` output. This is what lets ``vmap(grad(loss))`` run over single examples.
    """
    if not isinstance(logits, Tensor) or logits.ndim != rank - 1 or not isinstance(labels, Tensor):
        return logits, labels, False  # (not a tensor: the loss's own check says so)
    as_probabilities = probabilities and labels.is_floating_point() and labels.shape == logits.shape
    if labels.ndim != logits.ndim - 1 and not as_probabilities:
        return logits, labels, False  # neither indices nor probabilities of one example: the checks say so
    return logits.unsqueeze(0), labels.unsqueeze(0), True


def cast(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x.to(dtype)``, without the dispatch when it already has it (a microsecond per call)."""
    return x if x.dtype == dtype else x.to(dtype)


def compute_dtype(x: Tensor) -> torch.dtype:
    """float32 for half-precision inputs (stable log-sum-exp), else the input dtype."""
    return torch.float32 if x.dtype in _HALF else x.dtype


# -- input checks (metadata only) ---------------------------------------------------


def check_floating(loss: str, arg: str, x: Any) -> None:
    if not isinstance(x, Tensor):
        raise fail(loss, arg, "a torch.Tensor", type(x).__name__)
    if not x.is_floating_point():
        raise fail(loss, arg, "a floating-point tensor", f"dtype {x.dtype}")


def check_min_rank(loss: str, arg: str, x: Tensor, rank: int, layout: str) -> None:
    if x.ndim < rank:
        raise fail(loss, arg, f"of shape {layout}", f"shape {shape(x)}")


def check_device(loss: str, arg: str, x: Tensor, like: Tensor, like_arg: str) -> None:
    """``x`` on ``like``'s device (torch's own error would come from deep inside a kernel)."""
    if x.device != like.device:
        raise fail(loss, arg, f"on the device of {like_arg} ({like.device})", f"a tensor on {x.device}")


def check_same_shape(loss: str, logits: Tensor, labels: Any, *, names: tuple[str, str] = ("logits", "labels")) -> None:
    """Elementwise losses: real targets of the output's shape (no silent broadcasting), on its device."""
    first, second = names
    if not isinstance(labels, Tensor):
        raise fail(loss, second, "a torch.Tensor", type(labels).__name__)
    if labels.is_complex():
        raise fail(loss, second, "real numbers", f"dtype {labels.dtype}")
    if labels.shape != logits.shape:
        raise fail(loss, second, f"of the same shape as {first} {shape(logits)}", f"shape {shape(labels)}")
    check_device(loss, second, labels, logits, first)


def check_class_indices(loss: str, logits: Tensor, labels: Tensor) -> None:
    """Integer labels ``[B, *]`` for logits ``[B, C, *]`` (class dimension 1), ``[]`` for ``[C]``."""
    expected = logits.shape[:1] + logits.shape[2:] if logits.ndim >= 2 else torch.Size([])
    if labels.shape != expected:
        dims = "[" + ", ".join(str(d) for d in expected) + "]"
        raise fail(
            loss,
            "labels",
            f"class indices of shape {dims} for logits {shape(logits)}",
            f"shape {shape(labels)}",
        )


def check_integer_labels(
    loss: str, labels: Any, expected: str = "integer class indices", *, like: Tensor | None = None
) -> None:
    """Labels that index classes or tokens: a signed integer tensor (not bool, unsigned,
    float or complex), on the device of ``like`` (the logits) when it is given."""
    if not isinstance(labels, Tensor):
        raise fail(loss, "labels", "a torch.Tensor", type(labels).__name__)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise fail(loss, "labels", expected, f"dtype {labels.dtype}")
    if labels.dtype not in INDEX_DTYPES:
        raise fail(
            loss,
            "labels",
            f"{expected} of a signed integer dtype (int64, int32, int16 or int8; {labels.dtype} indexes as a mask)",
            f"dtype {labels.dtype}",
        )
    if like is not None:
        check_device(loss, "labels", labels, like, "logits")


def as_index(labels: Tensor) -> Tensor:
    """Checked integer labels as int64, the dtype ``gather`` and ``cross_entropy`` index with."""
    return labels if labels.dtype == torch.int64 else labels.long()


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


# -- validate= hooks: facts computed here, read by the module -------------------------


def _probability_check(loss: str, labels: Tensor, dim: int) -> InputCheck:
    """Class probabilities are >= 0 and sum to 1 over ``dim``, within :func:`probability_tolerance`."""
    num_classes = labels.shape[dim]
    tolerance = probability_tolerance(labels.dtype, num_classes)
    facts = torch.stack([labels.amin(), (labels.sum(dim) - 1).abs().amax()])  # the hook skips an empty batch

    def judge(values: list[float]) -> ValueError | None:
        low, off = values
        if 0 <= low and off <= tolerance:  # a NaN fails both
            return None
        return fail(
            loss, "labels", f"class probabilities (>= 0, summing to 1 within {tolerance:g} over dimension {dim})",
            f"a minimum of {low:g} and a sum off 1 by up to {off:g}",
        )

    return InputCheck(facts, judge)


def probability_tolerance(dtype: torch.dtype, num_classes: int) -> float:
    """How far from 1 a sum of ``num_classes`` probabilities of ``dtype`` may be: ``max(1e-3, C·eps)``."""
    return max(1e-3, num_classes * torch.finfo(dtype).eps)


def validate_class_range(
    loss: str,
    *,
    ignored: str | None = None,
    class_dim: int = 1,
    what: str = "class indices",
    probabilities: bool = False,
) -> Callable[..., InputCheck | None]:
    """A ``validate=`` hook: integer labels lie in ``[0, C)``, ``C = logits.shape[class_dim]``.

    ``ignored`` names the hyperparameter whose value marks left-out labels
    (``ignore_index``, ``padding_index``): those may be anything. One example's
    logits ``[C]`` have their classes on dimension 0. With ``probabilities=True``
    float labels of the logits' shape are class probabilities: they must be
    non-negative and sum to 1 over the class dimension (within
    :func:`probability_tolerance`); a NaN fails.

    The hook reads no values: it returns the labels' ``aminmax`` (one op, its pair of
    0-d tensors as they come) as the facts of an ``InputCheck``, and the module reads
    them. Labels in ``[0, C)`` pass on that alone. Only when some label lies outside,
    which the ignored label may explain, does the judge look again, with the ignored
    label counted as class 0 (a second read, on that path only, in the judge, which
    the module calls outside every transform). Inputs of the wrong kind or shape give
    no check: the pure function then raises its own clear error.
    """

    def validate(logits: Tensor, labels: Tensor, *_: Any, **params: Any) -> InputCheck | None:
        if not isinstance(logits, Tensor) or not isinstance(labels, Tensor) or logits.ndim == 0:
            return None
        dtype = labels.dtype
        if dtype.is_complex or dtype == torch.bool or labels.numel() == 0:
            return None
        dim = class_dim if class_dim < 0 or logits.ndim >= 2 else 0
        if dtype.is_floating_point:
            if not probabilities or labels.shape != logits.shape:
                return None  # the pure function says what is wrong
            return _probability_check(loss, labels, dim)
        num_classes = logits.shape[dim]
        left_out = params.get(ignored) if ignored is not None else None
        if isinstance(left_out, Tensor) and left_out.ndim == 0 and left_out.dtype in INDEX_DTYPES:
            pass  # a 0-d integer tensor (the checker lets one through): read in the judge, not here
        elif type(left_out) is not int:  # None, or anything else: nothing is let through
            left_out = None

        def judge(bounds: list[int]) -> ValueError | None:
            low, high = bounds
            if 0 <= low and high < num_classes:
                return None
            allowed = f"{what} in [0, {num_classes - 1}]" + (f" or the {ignored}" if ignored else "")
            if left_out is not None and low <= int(left_out) <= high:
                # class 0 is in range: the ignored label, counted as 0, hides nothing
                low, high = (int(v) for v in torch.aminmax(torch.where(labels != left_out, labels, 0)))
                if 0 <= low and high < num_classes:
                    return None
            return fail(loss, "labels", allowed, f"values in [{low}, {high}]")

        return InputCheck(tuple(torch.aminmax(labels)), judge)

    return validate


def validate_unit_range(loss: str) -> Callable[..., InputCheck | None]:
    """A ``validate=`` hook: binary targets (0/1 or probabilities) lie in ``[0, 1]``, NaN refused.

    As :func:`validate_class_range`, it hands the module the targets' ``aminmax``;
    the judge compares with ``0 <= low and high <= 1``, which a NaN fails.
    """

    def validate(logits: Tensor, labels: Tensor, *_: Any, **__: Any) -> InputCheck | None:
        if not isinstance(labels, Tensor) or labels.dtype == torch.bool or labels.is_complex() or labels.numel() == 0:
            return None

        def judge(bounds: list[float]) -> ValueError | None:
            low, high = bounds
            return None if 0 <= low and high <= 1 else fail(
                loss, "labels", "targets in [0, 1]", f"values in [{low:g}, {high:g}]"
            )

        return InputCheck(tuple(torch.aminmax(labels)), judge)

    return validate


# -- log-space numerics shared by the focal-type losses --------------------------------


def safe_log(v: Tensor) -> Tensor:
    """``log v``, with ``-inf`` at ``v <= 0`` and a zero (not NaN) gradient there."""
    positive = v > 0
    return torch.where(positive, torch.log(torch.where(positive, v, 1.0)), -torch.inf)


def log_add_exp(u: Tensor, v: Tensor) -> Tensor:
    """``log(e^u + e^v)`` as ``max + log1p(exp(min - max))``, ``-inf`` where both are ``-inf``.

    Every derivative of every order is bounded (``torch.logaddexp``'s second derivative
    is NaN once the two differ by about 700), and the unused branch holds no NaN.
    """
    high, low = torch.maximum(u, v), torch.minimum(u, v)
    empty = high == -torch.inf
    gap = torch.where(empty, 0.0, low - high)  # -inf - (-inf) would be NaN
    return torch.where(empty, -torch.inf, torch.where(empty, 0.0, high) + torch.log1p(torch.exp(gap)))


def focusing(log_q: Tensor, gamma: Any) -> Tensor:
    """``q ** gamma = exp(gamma · log q)``: exactly 1 at ``gamma = 0`` (``0 ** 0 = 1`` too: the
    clamp keeps ``0 · -inf`` out), with a finite gradient at ``q = 0`` for every ``gamma >= 0``.

    Where ``log q`` rounds to 0 (a confidently wrong prediction) its own gradient has
    underflowed to 0; ``where`` cuts it off there, so the factor ``gamma · CE`` flowing
    back, which may exceed the float range (``gamma = 1e15``, ``CE = 1e30``), never meets
    it as ``inf · 0``. A NaN stays NaN.
    """
    log_q = torch.where(log_q >= 0, 0.0, log_q).clamp_min(torch.finfo(log_q.dtype).min)
    return torch.exp(gamma * log_q)
