"""Binary cross-entropies on logits: one label per example (binary outputs) or per class (sets).

Both are elementwise, as torch's ``binary_cross_entropy_with_logits``:
``reduction="none"`` returns the logits' shape, ``"sum"`` adds every element and
``"mean"`` divides by their number.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from msgspec import Meta
from torch import Tensor

from lossfn.registry import AsTensor, Feature, Reduction, register_loss

from ._common import as_param, check_floating, check_same_shape, compute_dtype, fail, reduce_loss, validate_unit_range
from ._softmax import is_zero, normalized_entropy

__all__ = ["binary_weighted_cross_entropy", "sigmoid_cross_entropy"]


def _binary_cross_entropy(x: Tensor, y: Tensor, positive_weight: Tensor | float | None) -> Tensor:
    """Elementwise ``-[w y log σ(x) + (1 - y) log(1 - σ(x))]`` as torch's BCE with logits.

    Written ``(1 - y) x + (1 + (w - 1) y) (-log σ(x))`` with ``logsigmoid``: exact
    and finite for any logit, with the right gradient at ``x = 0``.
    """
    neg_log_sigmoid = -F.logsigmoid(x)  # softplus(-x)
    if positive_weight is not None:
        neg_log_sigmoid = (1 + (positive_weight - 1) * y) * neg_log_sigmoid
    return (1 - y) * x + neg_log_sigmoid


@register_loss("sigmoid_cross_entropy", [Feature.SET], validate=validate_unit_range("sigmoid_cross_entropy"))
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
                     + (1 - y_{n,c}) \log(1 - \sigma(x_{n,c}))\bigr]

    computed as :math:`(1 - y) x + (1 + (w - 1) y)\,(-\log\sigma(x))` with
    ``logsigmoid``, exact and finite for any logit.

    Args:
        logits: ``[B, C]`` (or ``[B, C, ...]``, classes on dimension 1), or ``[C]``
            for one example.
        labels: same shape; multi-hot (bool or integer) or probabilities (float), in
            ``[0, 1]``. The module checks that range (NaN refused); the pure function
            reads no label values.
        class_weights: ``[C]`` weights of the positive term, ``pos_weight`` in torch.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_{n,c}`, elementwise (the logits' shape); ``"sum"``:
        :math:`\sum_{n,c} \ell_{n,c}`; ``"mean"``: their mean over all elements. Each
        is ``binary_cross_entropy_with_logits``'s number with ``pos_weight`` the class
        weights (laid along dimension 1: ``pos_weight.view(C, 1, ...)`` for
        ``[B, C, ...]``). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[1.0, -1.0], [0.0, 2.0]])
        >>> labels = torch.tensor([[1, 0], [0, 1]])
        >>> LF.sigmoid_cross_entropy(logits, labels)
        tensor(0.3616)

    References:
        Checked against ``torch.nn.functional.binary_cross_entropy_with_logits``
        with ``pos_weight=class_weights``, for every reduction.
    """
    name = "sigmoid_cross_entropy"
    check_floating(name, "logits", logits)
    if logits.ndim == 0:
        raise fail(name, "logits", "of shape [B, C], [B, C, ...] or [C]", "shape []")
    check_same_shape(name, logits, labels)
    x = logits.to(compute_dtype(logits))
    y = labels.to(x.dtype)
    weights = None
    if class_weights is not None:
        class_dim = 1 if logits.ndim >= 2 else 0
        num_classes = logits.shape[class_dim]
        weights = as_param(name, "class_weights", class_weights, x, (num_classes,))
        weights = weights.view((num_classes,) + (1,) * (logits.ndim - 1 - class_dim))
    elementwise = _binary_cross_entropy(x, y, weights)
    return reduce_loss(elementwise, reduction, name=name).to(logits.dtype)


@register_loss(
    "binary_weighted_cross_entropy",
    [Feature.BINARY],
    validate=validate_unit_range("binary_weighted_cross_entropy"),
)
def binary_weighted_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    positive_class_weight: Annotated[
        Annotated[float, Meta(gt=0.0)] | None,
        Meta(description="weight of the positive term, torch's pos_weight (None: 1)"),
    ] = None,
    robust_lambda: Annotated[
        float, Meta(ge=0.0, le=1.0, description="mixing weight λ of the robust loss (1 - λ)·loss + λ/2")
    ] = 0.0,
    confidence_penalty: Annotated[
        float, Meta(ge=0.0, description="weight β of the penalty β·(1 - H(σ(x))/log 2) on confident predictions")
    ] = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Binary cross-entropy on logits with a weight on the positive class (Ludwig's BWCE).

    Ludwig's default loss for binary outputs: ``BCEWithLogitsLoss(pos_weight=...)``
    with a robust mixture and a confidence penalty. The penalty is the one of
    Pereyra et al. applied per example (Ludwig takes the largest
    :math:`-p \log p` over the batch instead; see ``docs/ludwig.md``).

    For logit :math:`x_n`, target :math:`y_n \in [0, 1]`, positive-class weight
    :math:`w` (1 by default), :math:`\lambda` = ``robust_lambda`` and
    :math:`\beta` = ``confidence_penalty``:

    .. math::

        b_n = -\bigl[w\, y_n \log \sigma(x_n) + (1 - y_n) \log(1 - \sigma(x_n))\bigr]

        \ell_n = (1 - \lambda)\, b_n + \frac{\lambda}{2}
                 + \beta \Bigl(1 - \frac{H(\sigma(x_n))}{\log 2}\Bigr),
        \qquad H(p) = -p \log p - (1 - p) \log(1 - p)

    :math:`b_n` is computed as :math:`(1 - y) x + (1 + (w - 1) y)\,(-\log\sigma(x))`
    and the entropy from ``logsigmoid``, both finite for any logit. The loss is
    elementwise: logits ``[B, ...]`` have one term per element.

    Args:
        logits: ``[B]`` (or ``[B, ...]``, or a scalar: any shape).
        labels: same shape; 0/1 (bool, integer) or probabilities (float).
        positive_class_weight: :math:`w > 0`, a number or a 0-d tensor.
        robust_lambda: :math:`\lambda \in [0, 1]`.
        confidence_penalty: :math:`\beta \ge 0`.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the logits' shape); ``"sum"``:
        :math:`\sum_n \ell_n`; ``"mean"``: :math:`\frac1N \sum_n \ell_n` over the
        :math:`N` elements. At :math:`\lambda = \beta = 0` each is torch's
        ``binary_cross_entropy_with_logits`` with ``pos_weight``. Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([1.5, -0.5, 0.0])
        >>> labels = torch.tensor([1, 0, 1])
        >>> LF.binary_weighted_cross_entropy(logits, labels, positive_class_weight=2.0)
        tensor(0.7544)
        >>> LF.binary_weighted_cross_entropy(logits, labels, robust_lambda=0.2)
        tensor(0.4650)

    References:
        Checked against ``torch.nn.functional.binary_cross_entropy_with_logits``
        (``pos_weight``) and Ludwig's ``BWCEWLoss`` module. Confidence penalty:
        Pereyra et al., `Regularizing Neural Networks by Penalizing Confident
        Output Distributions <https://arxiv.org/abs/1701.06548>`_, 2017.
    """
    name = "binary_weighted_cross_entropy"
    check_floating(name, "logits", logits)
    check_same_shape(name, logits, labels)
    x = logits.to(compute_dtype(logits))
    y = labels.to(x.dtype)
    elementwise = _binary_cross_entropy(x, y, positive_class_weight)
    if not is_zero(robust_lambda):
        elementwise = (1 - robust_lambda) * elementwise + robust_lambda / 2
    if not is_zero(confidence_penalty):
        log_p = torch.stack([F.logsigmoid(x), F.logsigmoid(-x)])  # log σ(x), log(1 - σ(x))
        elementwise = elementwise + confidence_penalty * (1 - normalized_entropy(log_p, 0))
    return reduce_loss(elementwise, reduction, name=name).to(logits.dtype)
