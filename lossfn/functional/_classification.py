"""Classification losses on logits: softmax (one label per example) and sigmoid (multi-label)."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from msgspec import Meta
from torch import Tensor

from lossfn.registry import AsTensor, Feature, Reduction, register_loss

from ._common import (
    as_param,
    check_class_indices,
    check_floating,
    check_min_rank,
    check_same_shape,
    compute_dtype,
    fail,
    mean_over_features,
    reduce_loss,
    shape,
    validate_class_range,
)

__all__ = ["sigmoid_cross_entropy", "softmax_cross_entropy"]

ClassWeights = Annotated[
    Annotated[list[Annotated[float, Meta(ge=0)]], Meta(min_length=1)] | None,
    Meta(description="one non-negative weight per class (None: all 1)"),
    AsTensor(),
]


@register_loss(
    "softmax_cross_entropy",
    [Feature.CATEGORY, Feature.VECTOR, Feature.IMAGE],
    validate=validate_class_range("softmax_cross_entropy"),
)
def softmax_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    class_weights: ClassWeights = None,
    label_smoothing: Annotated[
        float, Meta(ge=0.0, lt=1.0, description="mass moved from the labels to the uniform distribution")
    ] = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Cross-entropy between ``softmax(logits)`` and class labels or class probabilities.

    With class-index labels :math:`y_n`, class weights :math:`w` (all 1 by default),
    :math:`C` classes and label smoothing :math:`\varepsilon`:

    .. math::

        \ell_n = (1 - \varepsilon)\, w_{y_n} \bigl(-\log p_{n, y_n}\bigr)
                 + \frac{\varepsilon}{C} \sum_{c} w_c \bigl(-\log p_{n, c}\bigr),
        \qquad p_n = \operatorname{softmax}(x_n)

    and the mean divides by :math:`\sum_n w_{y_n}`. With probability labels
    :math:`q_n` (float, same shape as the logits),
    :math:`\ell_n = -\sum_c w_c\, \tilde q_{n,c} \log p_{n,c}` with
    :math:`\tilde q = (1 - \varepsilon) q + \varepsilon / C`, and the mean divides by
    the number of examples. :math:`\log p` comes from ``log_softmax`` (never the log
    of a softmax), in float32 for half-precision inputs.

    Args:
        logits: ``[B, C]``, or ``[B, C, d1, ...]`` for per-pixel classification.
        labels: class indices ``[B]`` / ``[B, d1, ...]`` (integer), or class
            probabilities of the logits' shape (float).
        class_weights: ``[C]`` non-negative weights, a list or a tensor.
        label_smoothing: :math:`\varepsilon \in [0, 1)`.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell` of shape ``[B]`` (``[B, d1, ...]``); ``"sum"``:
        :math:`\sum_n \ell_n`; ``"mean"``: the weighted mean above (0 if every
        weight is 0, where torch returns nan). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        >>> labels = torch.tensor([0, 2])
        >>> round(LF.softmax_cross_entropy(logits, labels).item(), 4)
        0.7752

    References:
        Checked against ``torch.nn.functional.cross_entropy`` (same ``weight`` and
        ``label_smoothing``) for every reduction. Label smoothing: Szegedy et al.,
        `Rethinking the Inception Architecture <https://arxiv.org/abs/1512.00567>`_, 2016.
    """
    name = "softmax_cross_entropy"
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 2, "[B, C] or [B, C, d1, ...]")
    if not isinstance(labels, Tensor):
        raise fail(name, "labels", "a torch.Tensor", type(labels).__name__)
    num_classes = logits.shape[1]
    log_p = torch.log_softmax(logits.to(compute_dtype(logits)), dim=1)
    weights = None
    if class_weights is not None:
        weights = as_param(name, "class_weights", class_weights, log_p, (num_classes,))
        # broadcast over the class dimension of [B, C, d1, ...]
        weights_c = weights.view((num_classes,) + (1,) * (logits.ndim - 2))

    if labels.is_floating_point():  # class probabilities
        if labels.shape != logits.shape:
            raise fail(name, "labels", f"probabilities of the logits' shape {shape(logits)}", f"shape {shape(labels)}")
        target = labels.to(log_p.dtype) * (1 - label_smoothing) + label_smoothing / num_classes
        if weights is not None:
            target = target * weights_c
        loss = -(target * log_p).sum(1)
        denominator = None
    else:
        if labels.dtype == torch.bool or labels.is_complex():
            raise fail(name, "labels", "integer class indices or float probabilities", f"dtype {labels.dtype}")
        check_class_indices(name, logits, labels)
        nll = -log_p.gather(1, labels.unsqueeze(1)).squeeze(1)
        if weights is None:
            smooth = -log_p.sum(1)
            denominator = None
        else:
            smooth = -(log_p * weights_c).sum(1)
            denominator = weights[labels]
            nll = denominator * nll
        loss = (1 - label_smoothing) * nll + (label_smoothing / num_classes) * smooth
    return reduce_loss(loss, reduction, name=name, weights=denominator).to(logits.dtype)


@register_loss("sigmoid_cross_entropy", [Feature.SET])
def sigmoid_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    class_weights: Annotated[
        Annotated[list[Annotated[float, Meta(ge=0)]], Meta(min_length=1)] | None,
        Meta(description="per-class weight of the positive term (torch's pos_weight)"),
        AsTensor(),
    ] = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Multi-label binary cross-entropy on logits, one independent sigmoid per class.

    For logit :math:`x_{n,c}`, target :math:`y_{n,c} \in [0, 1]` and positive-class
    weight :math:`w_c` (all 1 by default):

    .. math::

        \ell_{n,c} = -\bigl[w_c\, y_{n,c} \log \sigma(x_{n,c})
                     + (1 - y_{n,c}) \log(1 - \sigma(x_{n,c}))\bigr],
        \qquad \ell_n = \frac{1}{C} \sum_c \ell_{n,c}

    computed as :math:`(1 - y) x + (1 + (w - 1) y)\,(-\log\sigma(x))` with
    ``logsigmoid``, exact and finite for any logit.

    Args:
        logits: ``[B, C]`` (or ``[B, C, ...]``).
        labels: same shape; multi-hot (bool or integer) or probabilities (float).
        class_weights: ``[C]`` weights of the positive term, ``pos_weight`` in torch.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n`, shape ``[B]`` (mean over the classes);
        ``"mean"``: mean over examples, equal to torch's mean over all elements;
        ``"sum"``: :math:`\sum_n \ell_n` (torch's ``"sum"`` divided by ``C``).

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[1.0, -1.0], [0.0, 2.0]])
        >>> labels = torch.tensor([[1, 0], [0, 1]])
        >>> round(LF.sigmoid_cross_entropy(logits, labels).item(), 4)
        0.3669

    References:
        Checked against ``torch.nn.functional.binary_cross_entropy_with_logits``
        with ``pos_weight=class_weights``.
    """
    name = "sigmoid_cross_entropy"
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 2, "[B, C]")
    check_same_shape(name, logits, labels)
    x = logits.to(compute_dtype(logits))
    y = labels.to(x.dtype)
    neg_log_sigmoid = -F.logsigmoid(x)  # softplus(-x), stable for any logit
    if class_weights is not None:
        weights = as_param(name, "class_weights", class_weights, x, (logits.shape[1],))
        weights = weights.view((logits.shape[1],) + (1,) * (logits.ndim - 2))
        neg_log_sigmoid = (1 + (weights - 1) * y) * neg_log_sigmoid
    elementwise = (1 - y) * x + neg_log_sigmoid
    return reduce_loss(mean_over_features(elementwise), reduction, name=name).to(logits.dtype)
