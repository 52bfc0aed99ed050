r"""Focal and poly losses: cross-entropies reweighted by how badly the label is predicted.

Both are written from logits, never from a probability that rounds to 1. For class
indices they are functions of one number per position, the margin logit

.. math::

    z = \log \sum_{c \ne y} e^{x_c} - x_y, \qquad
    -\log p_y = \operatorname{softplus}(z), \qquad
    1 - p_y = \sigma(z), \qquad \log(1 - p_y) = \log \sigma(z),

exact where ``1 - softmax(x)[y]`` is 0 in floating point: a confident, correct
prediction keeps its (tiny) loss and a finite gradient, for any focusing exponent.
``softplus(z)`` is computed as ``-logsigmoid(-z)``: ``F.softplus`` returns ``z`` itself
beyond its threshold of 20, an error of up to 2e-9.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, InputCheck, Reduction, register_loss

from ._common import (
    as_index,
    cast,
    check_class_indices,
    check_device,
    check_floating,
    check_integer_labels,
    check_min_rank,
    check_same_shape,
    compute_dtype,
    fail,
    focusing,
    log_add_exp,
    reduce_loss,
    safe_log,
    shape,
    unbatched,
    validate_class_range,
    validate_unit_range,
)

__all__ = ["focal", "poly"]


# -- the margin logit and the stable pieces -----------------------------------------------


def _margin(x: Tensor, labels: Tensor) -> Tensor:
    r"""``z = logsumexp_{c != y} x_c - x_y`` over dimension 1 of ``[B, C, *]``: ``[B, *]``.

    Where no other class is left (``C = 1``, or every other logit ``-inf``), ``z = -inf``
    (``p_y = 1``) with a zero gradient: the log-sum-exp of nothing would give NaN.
    """
    classes = torch.arange(x.shape[1], device=labels.device).view((-1,) + (1,) * (x.ndim - 2))
    is_label = labels.unsqueeze(1) == classes
    others = torch.where(is_label, -torch.inf, x)
    # `== -inf`, not `> -inf`: a NaN logit is not "no other class", it stays NaN
    none_left = others.amax(1) == -torch.inf
    safe = torch.where(none_left.unsqueeze(1), 0.0, others)  # where twice: no NaN in the unused branch's gradient
    label_logit = x.gather(1, labels.unsqueeze(1)).squeeze(1)
    return torch.where(none_left, -torch.inf, torch.logsumexp(safe, 1) - label_logit)


def _log_one_minus_pt(x: Tensor, y: Tensor) -> Tensor:
    r"""``log(1 - p_t)`` for binary targets, ``1 - p_t = (1 - y) σ(x) + y σ(-x)``, from logits.

    With ``a = |x|`` (taken as ``±x`` so the gradient at ``x = 0`` is right),
    ``r = e^{-a}`` and the weights ``d``, ``e`` of the larger and smaller of
    ``σ(x), σ(-x)``: ``1 - p_t = σ(a) (d + e r)``, so
    ``log(1 - p_t) = log σ(a) + log(d + e r)``. The sum of the two non-negative
    terms has no cancellation and is exact for hard labels (``d = 0, e = 1`` gives
    ``log r = -a``); where it is too small for ``log`` to differentiate safely
    (``d`` about 0 and ``|x|`` beyond ~40 in float32) it is taken in log space,
    ``logaddexp(log d, log e - a)``, finite for any finite logit.
    """
    positive = x >= 0
    a = torch.where(positive, x, -x)
    d = torch.where(positive, 1 - y, y)
    e = torch.where(positive, y, 1 - y)
    w = d + e * torch.exp(-a)
    small = w < torch.finfo(x.dtype).tiny ** 0.5
    linear = torch.log(torch.where(small, 1.0, w))
    logspace = log_add_exp(safe_log(d), safe_log(e) - a)
    return torch.where(small, logspace, linear) + F.logsigmoid(a)


def _class_inputs(name: str, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, bool]:
    """Checked ``[B, C, *]`` logits and int64 class indices ``[B, *]`` (one example: ``[C]``, ``[]``)."""
    check_min_rank(name, "logits", logits, 1, "[B, C], [B, C, d1, ...] or [C]")
    logits, labels, one = unbatched(logits, labels, rank=2, probabilities=False)
    check_integer_labels(name, labels, "integer class indices", like=logits)
    check_class_indices(name, logits, labels)
    return logits, as_index(labels), one


def _dims(size: torch.Size) -> str:
    return "[" + ", ".join(str(d) for d in size) + "]"


# -- focal --------------------------------------------------------------------------------

_FOCAL_BINARY = validate_unit_range("focal")
_FOCAL_CLASSES = validate_class_range("focal")


def _validate_focal(logits: Tensor, labels: Tensor, *inputs: Any, **params: Any) -> InputCheck | None:
    """Targets in ``[0, 1]`` for the binary form (labels of the logits' shape), class indices
    in ``[0, C)`` for the softmax form."""
    if isinstance(logits, Tensor) and isinstance(labels, Tensor) and labels.shape == logits.shape:
        return _FOCAL_BINARY(logits, labels, *inputs, **params)
    return _FOCAL_CLASSES(logits, labels, *inputs, **params)


@register_loss("focal", [Feature.BINARY, Feature.CATEGORY, Feature.IMAGE, Feature.SET], validate=_validate_focal)
def focal(
    logits: Tensor,
    labels: Tensor,
    *,
    alpha: Annotated[
        float, Meta(ge=0.0, le=1.0, description="weight of the positive class (1 - alpha: negatives), binary form")
    ] = 0.25,
    gamma: Annotated[
        float, Meta(ge=0.0, description="focusing exponent of (1 - p_t); 0 gives the cross-entropy")
    ] = 2.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Focal loss (Lin et al.): cross-entropy scaled down on well-classified examples.

    It serves binary, set (multi-label), category and image outputs, in two forms
    told apart by the labels' shape:

    - **binary** (sigmoid), when ``labels`` has the logits' shape: one independent
      sigmoid per element, targets :math:`y \in [0, 1]` (0/1 or probabilities). This
      is the form of a binary output (``[B]`` logits and labels) and of a **set**
      (multi-label) output: ``[B, C]`` logits, one per class, with ``[B, C]``
      multi-hot labels (or per-class probabilities). With
      :math:`p = \sigma(x)`, :math:`p_t = p\,y + (1 - p)(1 - y)` and
      :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`:

      .. math::

          \ell = \alpha_t\, (1 - p_t)^{\gamma}\, \mathrm{BCE}(x, y),
          \qquad \mathrm{BCE} = -y \log p - (1 - y) \log(1 - p)

      which is ``torchvision.ops.sigmoid_focal_loss`` (with ``alpha >= 0``) and
      ``optax.losses.sigmoid_focal_loss`` with ``alpha`` given (optax's default
      ``alpha=None``, no weighting, is twice lossfn's ``alpha=0.5``);
    - **softmax**, when ``labels`` are integer class indices ``[B, *]`` for logits
      ``[B, C, *]`` (``[]`` for one example's ``[C]``), as ``softmax_cross_entropy``
      takes them, with :math:`p = \operatorname{softmax}(x)` over dimension 1:

      .. math::

          \ell = -(1 - p_y)^{\gamma} \log p_y

      **alpha is not used here**, as in Ludwig: no class is singled out as the
      positive one (kornia's ``focal_loss`` weights class 0 by :math:`1 - \alpha` and
      every other class by :math:`\alpha`; with ``alpha=None`` it is this loss).

    Any other combination (float labels of another shape, integer labels of neither
    shape, class indices for a single class: ``[B, 1]`` logits with ``[B]`` labels,
    whose softmax loss would be 0) is a ``ValueError``. At :math:`\gamma = 0` the softmax form is
    ``F.cross_entropy`` and the binary form is :math:`\alpha_t` times
    ``F.binary_cross_entropy_with_logits`` (half of it at :math:`\alpha = 0.5`).

    Everything is computed from logits, in float32 for half-precision inputs:
    :math:`\log(1 - p_t)` from log-sigmoids (binary) or the margin logit of the module
    docstring (softmax), and :math:`(1 - p_t)^\gamma = \exp(\gamma \log(1 - p_t))`,
    so :math:`\gamma = 0` gives exactly the cross-entropy and a confident correct
    prediction, where :math:`1 - p_t` is 0 in float32, keeps a finite gradient for
    every :math:`\gamma \ge 0` (:math:`\gamma < 1` included).

    Args:
        logits: binary form: any shape (``[B]`` for a binary output, ``[B, C]``
            for a set output: one sigmoid per class); softmax form: ``[B, C]``,
            ``[B, C, d1, ...]`` (images: ``[B, C, H, W]``) or ``[C]``.
        labels: binary form: the logits' shape, 0/1 (bool or integer; multi-hot
            ``[B, C]`` for a set) or probabilities (float); softmax form: class
            indices ``[B]``, ``[B, d1, ...]`` or ``[]`` (a signed integer dtype).
            The module checks the values (targets in ``[0, 1]``, NaN refused;
            indices in ``[0, C)``); the pure function reads none.
        alpha: :math:`\alpha \in [0, 1]`, the positives' weight in the binary form
            (a number or a 0-d tensor).
        gamma: :math:`\gamma \ge 0` (a number or a 0-d tensor).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell` with the labels' shape: elementwise (the logits'
        shape: ``[B, C]`` for a set) for the binary form, per example or pixel (``[B]``, ``[B, d1, ...]``,
        ``[]``) for the softmax form; ``"sum"``: its sum; ``"mean"``: its mean (0 for
        an empty batch), over every element for a set (torchvision's
        ``reduction="mean"``). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([2.0, -1.0, 0.5])
        >>> LF.focal(logits, torch.tensor([1, 0, 0]))
        tensor(0.1002)
        >>> set_logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.5, -2.0]])  # a set: 3 classes
        >>> LF.focal(set_logits, torch.tensor([[1, 0, 1], [0, 1, 0]]), reduction="none")
        tensor([[0.0005, 0.0170, 0.0169],
                [0.1300, 0.0017, 0.0014]])
        >>> class_logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        >>> LF.focal(class_logits, torch.tensor([0, 2]), gamma=1.0)
        tensor(0.6246)
        >>> LF.focal(class_logits, torch.tensor([0, 2]), gamma=0.0)  # the cross-entropy
        tensor(0.8606)

    References:
        Lin, Goyal, Girshick, He and Dollár, `Focal Loss for Dense Object Detection
        <https://arxiv.org/abs/1708.02002>`_, 2017. Checked against
        ``torchvision.ops.sigmoid_focal_loss``'s formula written out (``[B]``,
        ``[B, C]`` multi-hot and probability labels), vectors of
        ``optax.losses.sigmoid_focal_loss`` (values and gradients, ``[B, C]``),
        ``kornia.losses.binary_focal_loss_with_logits`` (0/1 targets) and
        ``kornia.losses.focal_loss`` (``alpha=None``; and ``alpha`` on two classes
        against the binary form of the logit difference), Ludwig's ``FocalLoss``
        formula (binary ``[B]``, ``[B, C]`` and ``[B, C, H, W]``), and
        ``F.binary_cross_entropy_with_logits`` / ``F.cross_entropy`` at
        :math:`\gamma = 0`. Differences from Ludwig (``docs/ludwig.md``): Ludwig
        takes the binary form only for ``[B]`` logits and uses
        :math:`p_t = e^{-\mathrm{BCE}}`, which for probability targets is
        :math:`p^y (1 - p)^{1 - y}`, not torchvision's :math:`p_t` (equal for 0/1
        targets); lossfn also takes the binary form for any shape (``[B, C]``
        multi-label), so it serves set features too (Ludwig's ``focal``: binary,
        category, image), and offers ``"none"`` and ``"sum"`` (Ludwig returns the mean).
    """
    name = "focal"
    check_floating(name, "logits", logits)
    if not isinstance(labels, Tensor):
        raise fail(name, "labels", "a torch.Tensor", type(labels).__name__)
    if labels.shape == logits.shape:  # binary (sigmoid) focal loss, elementwise
        check_same_shape(name, logits, labels)  # real numbers, same device
        x = cast(logits, compute_dtype(logits))
        y = labels.to(x.dtype)
        # both terms >= 0: no cancellation, so a tiny loss keeps its digits ((1 - y) x + softplus(-x) loses them)
        bce = -(y * F.logsigmoid(x) + (1 - y) * F.logsigmoid(-x))
        alpha_t = alpha * y + (1 - alpha) * (1 - y)
        loss = alpha_t * focusing(_log_one_minus_pt(x, y), gamma) * bce
        return cast(reduce_loss(loss, reduction, name=name), logits.dtype)
    _check_focal_labels(name, logits, labels)
    x, index, one = _class_inputs(name, cast(logits, compute_dtype(logits)), labels)
    z = _margin(x, index)
    loss = focusing(F.logsigmoid(z), gamma) * -F.logsigmoid(-z)  # (1 - p_y)^γ · (-log p_y)
    if one:
        loss = loss.squeeze(0)
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)


def _check_focal_labels(name: str, logits: Tensor, labels: Tensor) -> None:
    """Labels that are neither of the logits' shape nor class indices: say what either form takes."""
    indices = logits.shape[:1] + logits.shape[2:] if logits.ndim >= 2 else torch.Size([])
    binary = f"binary targets of the logits' shape {shape(logits)}"
    if logits.ndim == 0 or labels.shape != indices:
        classes = "" if logits.ndim == 0 else f" or class indices of shape {_dims(indices)}"
        raise fail(name, "labels", binary + classes, f"shape {shape(labels)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise fail(
            name, "labels", f"integer class indices (or {binary})", f"dtype {labels.dtype} of shape {shape(labels)}"
        )
    if logits.shape[1 if logits.ndim >= 2 else 0] == 1:  # a binary output [B, 1] with labels [B]: loss 0, silently
        raise fail(
            name, "labels", f"{binary} for one logit per example (a softmax over one class is 1: the loss would be 0)",
            f"class indices of shape {shape(labels)}",
        )
    check_device(name, "labels", labels, logits, "logits")


# -- poly ---------------------------------------------------------------------------------


@register_loss("poly", [Feature.CATEGORY], validate=validate_class_range("poly"))
def poly(
    logits: Tensor,
    labels: Tensor,
    *,
    epsilon: Annotated[
        float, Meta(ge=0.0, description="weight of the polynomial term epsilon·(1 - p_y); 0 gives the cross-entropy")
    ] = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Poly-1 loss (Leng et al.): the softmax cross-entropy plus :math:`\varepsilon (1 - p_y)`.

    The first term of the polynomial expansion of the cross-entropy in
    :math:`1 - p_y`, with its coefficient moved by :math:`\varepsilon`; a positive
    :math:`\varepsilon` pushes harder on examples whose label has a low probability.
    For logits :math:`x_n` and class index :math:`y_n`, :math:`p = \operatorname{softmax}(x)`
    over the classes:

    .. math::

        \ell_n = -\log p_{n,y_n} + \varepsilon\,(1 - p_{n,y_n})

    Both terms come from the margin logit of the module docstring,
    :math:`\operatorname{softplus}(z) + \varepsilon\,\sigma(z)`, in float32 for
    half-precision inputs: finite for any finite logits. At :math:`\varepsilon = 0`
    it is ``F.cross_entropy``.

    The default :math:`\varepsilon = 1` is Ludwig's (and the paper's Poly-1);
    ``optax.losses.poly_loss_cross_entropy`` defaults to :math:`\varepsilon = 2`.

    Args:
        logits: ``[B, C]``, ``[B, C, d1, ...]`` (classes on dimension 1) or ``[C]``
            for one example.
        labels: class indices ``[B]``, ``[B, d1, ...]`` or ``[]`` (a signed integer
            dtype). The module checks them (in ``[0, C)``); the pure function reads
            no values.
        epsilon: :math:`\varepsilon \ge 0` (a number or a 0-d tensor).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n` per example (``[B]``, ``[B, d1, ...]``, ``[]``);
        ``"sum"``: its sum; ``"mean"``: its mean, Ludwig's number (0 for an empty
        batch). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        >>> labels = torch.tensor([0, 2])
        >>> LF.poly(logits, labels)
        tensor(1.3328)
        >>> LF.poly(logits, labels, epsilon=0.0)  # the cross-entropy
        tensor(0.8606)

    References:
        Leng, Xu, Tan, Yu, Zheng, Liu and Cheng, `PolyLoss: A Polynomial Expansion
        Perspective of Classification Loss Functions <https://arxiv.org/abs/2204.12511>`_,
        2022. Checked against ``optax.losses.poly_loss_cross_entropy`` (stored vectors,
        one-hot labels), Ludwig's ``PolyLoss`` formula written out, and
        ``F.cross_entropy`` at :math:`\varepsilon = 0`. Differences from Ludwig: none
        in the number; lossfn also takes ``[B, C, d1, ...]`` and ``[C]`` logits and
        offers ``"none"`` and ``"sum"`` (Ludwig returns the mean).
    """
    name = "poly"
    check_floating(name, "logits", logits)
    if not isinstance(labels, Tensor):
        raise fail(name, "labels", "a torch.Tensor", type(labels).__name__)
    x, index, one = _class_inputs(name, cast(logits, compute_dtype(logits)), labels)
    z = _margin(x, index)
    loss = -F.logsigmoid(-z) + epsilon * torch.sigmoid(z)
    if one:
        loss = loss.squeeze(0)
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)
