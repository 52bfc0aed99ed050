r"""Multiclass margin losses: Crammer–Singer hinge, perceptron, torch's multi-margin and multi-label margin.

Logits follow lossfn's conventions: classes on dimension 1 of ``[B, C]`` (or
``[B, C, d1, ...]`` for the class-index losses), ``[C]`` for one example; optax
takes its classes on the last axis. Every loss is a function of the gaps
:math:`x_c - x_y` and a maximum or a sum over classes, so a masked class (logit
``-inf``, never the label) drops out: its gap is ``-inf``, its hinge 0, with a zero
gradient. No softmax is involved, so no log-sum-exp is needed; half-precision
logits are computed in float32.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._common import (
    as_index,
    as_param,
    cast,
    check_class_indices,
    check_floating,
    check_integer_labels,
    check_min_rank,
    check_same_shape,
    compute_dtype,
    fail,
    reduce_loss,
    shape,
    unbatched,
    validate_class_range,
    validate_unit_range,
)
from ._margin import with_hint
from ._softmax import ClassWeights

__all__ = ["multi_margin", "multiclass_hinge", "multiclass_perceptron", "multilabel_margin"]

Power = Annotated[int, Meta(ge=1, le=2, description="exponent p of each hinge: 1 (hinge) or 2 (squared hinge)")]
# at most 1e6: its square (p = 2) times a class weight (up to lossfn's 1e15) stays finite in float32
Margin = Annotated[
    float, Meta(ge=0.0, le=1e6, description="margin by which the label's logit should beat every other")
]


def _class_inputs(name: str, logits: Tensor, labels: Any) -> tuple[Tensor, Tensor, bool]:
    """Checked logits ``[B, C, *]`` in the compute dtype, int64 labels ``[B, *]``, and whether
    one example ``[C]`` got a batch dimension (squeeze it off the ``"none"`` output)."""
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 1, "[B, C], [B, C, d1, ...] or [C]")
    logits, labels, one = unbatched(logits, labels, rank=2, probabilities=False)
    check_integer_labels(name, labels, "integer class indices", like=logits)
    check_class_indices(name, logits, labels)
    return cast(logits, compute_dtype(logits)), as_index(labels), one


def _label_mask_and_logit(x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``[c == y]`` of the logits' shape, and the label's logit :math:`x_y` ``[B, *]`` (by ``gather``:
    an index out of range is an error, not an all-False mask)."""
    classes = torch.arange(x.shape[1], device=labels.device).view((-1,) + (1,) * (x.ndim - 2))
    return labels.unsqueeze(1) == classes, x.gather(1, labels.unsqueeze(1)).squeeze(1)


def _finish(name: str, loss: Tensor, one: bool, reduction: str, dtype: torch.dtype) -> Tensor:
    return cast(reduce_loss(loss.squeeze(0) if one else loss, reduction, name=name), dtype)


@register_loss("multiclass_hinge", [Feature.CATEGORY], validate=validate_class_range("multiclass_hinge"))
def multiclass_hinge(logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Crammer–Singer multiclass hinge loss: the label's logit should beat every other by 1.

    For logits :math:`x \in \mathbb{R}^C` and label :math:`y`:

    .. math::

        \ell = \max_c \bigl(x_c + [c \ne y]\bigr) - x_y
             = \max\Bigl(0,\; \max_{c \ne y} (1 + x_c - x_y)\Bigr)

    The maximum's gradient is shared equally among tied classes (``amax``, as
    ``jax.numpy.max``). A masked class (``-inf``) never attains the maximum.

    Args:
        logits: ``[B, C]``, ``[B, C, d1, ...]`` (classes on dimension 1) or ``[C]``.
        labels: class indices ``[B]`` / ``[B, d1, ...]`` / ``[]``, a signed integer
            dtype. The module checks that they lie in ``[0, C)``; in the pure function
            an index out of range is a ``ValueError`` from ``gather``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell` per example (per position): ``[B]`` (``[B, d1, ...]``,
        ``[]`` for one example); ``"sum"``: the sum; ``"mean"``: the mean over examples
        (0 for none). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[3.0, 1.0, 0.0], [0.5, 1.0, 0.0]])
        >>> labels = torch.tensor([0, 0])
        >>> LF.multiclass_hinge(logits, labels, reduction="none")
        tensor([0.0000, 1.5000])

    References:
        Crammer and Singer, `On the Algorithmic Implementation of Multiclass
        Kernel-based Vector Machines <https://www.jmlr.org/papers/v2/crammer01a.html>`_,
        JMLR 2001. Checked against ``optax.losses.multiclass_hinge_loss`` (values and
        ``jax.grad``; classes on optax's last axis), through stored vectors. Not in
        Ludwig. ``multi_margin`` is torch's sum (not maximum) over the other classes.
    """
    name = "multiclass_hinge"
    x, labels, one = _class_inputs(name, logits, labels)
    is_label, label_logit = _label_mask_and_logit(x, labels)
    loss = torch.where(is_label, x, x + 1).amax(1) - label_logit
    return _finish(name, loss, one, reduction, logits.dtype)


@register_loss("multiclass_perceptron", [Feature.CATEGORY], validate=validate_class_range("multiclass_perceptron"))
def multiclass_perceptron(logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Multiclass perceptron loss: how far the largest logit is above the label's.

    For logits :math:`x \in \mathbb{R}^C` and label :math:`y`:

    .. math::

        \ell = \max_c x_c - x_y \;\ge 0

    0 when the label's logit is the largest. The maximum's gradient is shared equally
    among tied classes (``amax``, as ``jax.numpy.max``).

    Args:
        logits: ``[B, C]``, ``[B, C, d1, ...]`` (classes on dimension 1) or ``[C]``.
        labels: class indices ``[B]`` / ``[B, d1, ...]`` / ``[]``, a signed integer
            dtype. The module checks that they lie in ``[0, C)``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell` per example (per position): ``[B]`` (``[B, d1, ...]``,
        ``[]`` for one example); ``"sum"``: the sum; ``"mean"``: the mean over examples
        (0 for none). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[3.0, 1.0, 0.0], [0.5, 1.0, 0.0]])
        >>> LF.multiclass_perceptron(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0., 1.])

    References:
        Collins, `Discriminative Training Methods for Hidden Markov Models
        <https://aclanthology.org/W02-1001/>`_, EMNLP 2002. Checked against
        ``optax.losses.multiclass_perceptron_loss`` (values and ``jax.grad``), through
        stored vectors. Not in Ludwig.
    """
    name = "multiclass_perceptron"
    x, labels, one = _class_inputs(name, logits, labels)
    _, label_logit = _label_mask_and_logit(x, labels)
    return _finish(name, x.amax(1) - label_logit, one, reduction, logits.dtype)


def _power(h: Tensor, p: Any) -> Tensor:
    """``h ** p`` for ``p`` in {1, 2} (a tensor ``p`` picks with ``where``: no ``0 · log 0`` in any gradient)."""
    if isinstance(p, Tensor):
        return torch.where(p == 2, h * h, h)
    return h * h if p == 2 else h


@register_loss("multi_margin", [Feature.CATEGORY], validate=validate_class_range("multi_margin"))
def multi_margin(
    logits: Tensor,
    labels: Tensor,
    *,
    p: Power = 1,
    margin: Margin = 1.0,
    class_weights: ClassWeights = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""torch's multi-class margin loss: a hinge for each class against the label, averaged over classes.

    For logits :math:`x \in \mathbb{R}^C`, label :math:`y`, margin :math:`m`, exponent
    :math:`p \in \{1, 2\}` and class weights :math:`w` (all 1 by default):

    .. math::

        \ell = \frac{w_y}{C} \sum_{c \ne y} \max(0,\; m - x_y + x_c)^p

        \text{mean} = \frac1N \sum_n \ell_n, \qquad \text{sum} = \sum_n \ell_n

    The weight of the label's class multiplies the sum after the power, as torch's
    kernel computes it (torch's documentation writes :math:`w_y` inside the maximum,
    which is the same number only for :math:`p = 1`), and the mean divides by the
    number of examples, not by :math:`\sum_n w_{y_n}` (torch's number, unlike
    ``softmax_cross_entropy``'s weighted mean). A masked class (``-inf``) adds 0.

    Args:
        logits: ``[B, C]`` or ``[C]`` (as torch), or ``[B, C, d1, ...]`` (classes on
            dimension 1; one loss per position).
        labels: class indices ``[B]`` / ``[]`` / ``[B, d1, ...]``, a signed integer
            dtype. The module checks that they lie in ``[0, C)``.
        p: 1 or 2, a Python int (or a 0-d tensor holding 1 or 2).
        margin: :math:`0 \le m \le 10^6`, a number or a 0-d tensor (the bound keeps
            :math:`w_y m^2` finite in float32 for any allowed class weight).
        class_weights: ``[C]`` non-negative weights :math:`w`, a list or a tensor
            (torch's ``weight``).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell` per example: ``[B]`` (``[]`` for one example,
        ``[B, d1, ...]`` per position); ``"sum"``: the sum; ``"mean"``: the mean over
        examples (0 for an empty batch, where torch returns an uninitialized number).
        Each is ``torch.nn.functional.multi_margin_loss``'s number. Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[0.1, 0.2, 0.4, 0.8]])
        >>> labels = torch.tensor([3])
        >>> LF.multi_margin(logits, labels)
        tensor(0.3250)
        >>> LF.multi_margin(logits, labels, p=2, margin=1.5, class_weights=[1.0, 1.0, 1.0, 2.0])
        tensor(1.3300)

    References:
        Checked against ``torch.nn.functional.multi_margin_loss`` (``p``, ``margin``,
        ``weight``; values for every reduction, and autograd gradients). Weston and
        Watkins, `Support Vector Machines for Multi-Class Pattern Recognition
        <https://www.esann.org/sites/default/files/proceedings/legacy/es1999-461.pdf>`_,
        ESANN 1999. Not in Ludwig.
    """
    name = "multi_margin"
    x, labels, one = _class_inputs(name, logits, labels)
    is_label, label_logit = _label_mask_and_logit(x, labels)
    num_classes = x.shape[1]
    hinge = _power(torch.relu(margin - label_logit.unsqueeze(1) + x), p)
    loss = torch.where(is_label, 0.0, hinge).sum(1) / num_classes
    if class_weights is not None:
        weights = as_param(name, "class_weights", class_weights, x, (num_classes,))
        loss = weights[labels] * loss
    return _finish(name, loss, one, reduction, logits.dtype)


_MULTI_HOT = with_hint(
    validate_unit_range("multilabel_margin"),
    lambda bounds: bounds[0] == -1,  # the labels' [min, max]: torch's -1 padding
    "multilabel_margin takes multi-hot labels of the logits' shape (a 1 for each target class), not torch's "
    "class indices padded with -1 (the targets are the indices before each row's first -1)",
)


@register_loss("multilabel_margin", [Feature.SET], validate=_MULTI_HOT)
def multilabel_margin(logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""torch's multi-label margin loss: every target class should beat every other class by 1.

    For logits :math:`x \in \mathbb{R}^C` and multi-hot labels :math:`y \in [0, 1]^C`
    (1: a target class):

    .. math::

        \ell = \frac1C \sum_{j} \sum_{i \ne j} y_j (1 - y_i) \max(0,\; 1 - (x_j - x_i))

    For 0/1 labels: the sum over pairs (target :math:`j`, non-target :math:`i`), torch's
    number; a row with no target, or with every class a target, has loss 0.
    Probabilities give the expected loss when each class is a target independently
    with probability :math:`y_c`. A pair with weight 0 is left out with a ``where``, so
    a masked class (``-inf``, not a target) adds 0 and no NaN. It costs a
    ``[B, C, C]`` tensor of pairs.

    **Labels convention.** lossfn's set labels are multi-hot ``[B, C]``; torch takes
    the class indices of the targets, padded with -1. The module refuses labels
    with -1 and says how to convert them.

    Args:
        logits: ``[B, C]`` or ``[C]`` for one example.
        labels: same shape; multi-hot (bool, integer or float 0/1) or probabilities.
            The module checks that they lie in ``[0, 1]``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell` per example: ``[B]`` (``[]`` for one example); ``"sum"``:
        the sum; ``"mean"``: the mean over examples (0 for an empty batch, where torch
        returns an uninitialized number). Each is
        ``torch.nn.functional.multilabel_margin_loss``'s number for 0/1 labels. Same
        dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[0.1, 0.2, 0.4, 0.8]])
        >>> labels = torch.tensor([[1, 0, 0, 1]])  # torch: targets [[3, 0, -1, 1]]
        >>> LF.multilabel_margin(logits, labels)
        tensor(0.8500)

    References:
        Checked against ``torch.nn.functional.multilabel_margin_loss`` (labels turned
        into its -1-padded indices; values for every reduction, and autograd
        gradients). Not in Ludwig.
    """
    name = "multilabel_margin"
    check_floating(name, "logits", logits)
    if logits.ndim not in (1, 2):
        raise fail(name, "logits", "of shape [B, C] or [C]", f"shape {shape(logits)}")
    check_same_shape(name, logits, labels)
    x = cast(logits, compute_dtype(logits))
    y = cast(labels, x.dtype)
    one = x.ndim == 1
    if one:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    num_classes = x.shape[1]
    # [B, j, i]: target j against class i
    gaps = 1 - x.unsqueeze(2) + x.unsqueeze(1)
    pair_weights = y.unsqueeze(2) * (1 - y.unsqueeze(1))
    other = ~torch.eye(num_classes, dtype=torch.bool, device=x.device)
    # where, not a product: a pair of two masked classes has gap -inf - (-inf) = nan and weight 0
    pairs = torch.where(other & (pair_weights != 0), pair_weights * torch.relu(gaps), 0.0)
    loss = pairs.sum((1, 2)) / num_classes
    return _finish(name, loss, one, reduction, logits.dtype)
