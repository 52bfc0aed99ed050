r"""The asymmetric loss (ASL) of Ridnik et al. for multi-label (set) outputs, from logits.

timm's ``AsymmetricLossMultiLabel`` computes it from ``sigmoid(x)`` in linear space:
``1 - sigmoid(x)`` rounds to 0 for a confident prediction, and its logs are saved only
by the ``eps`` clamp. Here every piece comes from log-sigmoids and sums of non-negative
terms. With :math:`m = \max(\sigma(x) - c, 0)`, the negatives' shifted probability:

.. math::

    \log \min(1 - \sigma(x) + c, 1) = \min(\log(\sigma(-x) + c), 0), \qquad
    1 - p_t = y\, \sigma(-x) + (1 - y)\, m,

where :math:`\sigma(-x) + c` adds two non-negative numbers (no cancellation) and
:math:`\log(1 - p_t)` is a log-sum-exp of :math:`\log y + \log\sigma(-x)` and
:math:`\log(1 - y) + \log m` (exact for hard labels: :math:`\log\sigma(-x)`, or
:math:`\log m`, itself :math:`\log\sigma(x)` at :math:`c = 0`). The focusing factor is
:math:`\exp(\gamma \log(1 - p_t))`, as the focal loss makes it: finite with a finite
gradient where :math:`1 - p_t = 0`, for every :math:`\gamma \ge 0`.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._common import (
    cast,
    check_floating,
    check_same_shape,
    compute_dtype,
    fail,
    focusing,
    log_add_exp,
    reduce_loss,
    safe_log,
    validate_unit_range,
)

__all__ = ["asymmetric"]


@register_loss("asymmetric", [Feature.SET], validate=validate_unit_range("asymmetric"))
def asymmetric(
    logits: Tensor,
    labels: Tensor,
    *,
    gamma_neg: Annotated[float, Meta(ge=0.0, description="focusing exponent γ- of the negatives' (1 - p_t)")] = 4.0,
    gamma_pos: Annotated[float, Meta(ge=0.0, description="focusing exponent γ+ of the positives' (1 - p_t)")] = 1.0,
    clip: Annotated[
        float, Meta(ge=0.0, le=1.0, description="probability margin c added to 1 - σ(x) of the negatives (0: none)")
    ] = 0.05,
    eps: Annotated[float, Meta(ge=0.0, lt=1.0, description="floor of each probability inside its log")] = 1e-8,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Asymmetric loss (Ridnik et al.): a focal loss with separate exponents and a margin for negatives.

    For logit :math:`x`, target :math:`y \in [0, 1]`, :math:`\sigma` the sigmoid,
    margin :math:`c` = ``clip`` and floor :math:`\epsilon` = ``eps``: the negatives'
    probability is shifted, :math:`q = \min(1 - \sigma(x) + c, 1)` (:math:`q = 1 -
    \sigma(x)` at :math:`c = 0`), so easy negatives (:math:`\sigma(x) \le c`) give
    nothing; and each term is focused with its own exponent:

    .. math::

        L_+ = \log \max(\sigma(x), \epsilon), \qquad L_- = \log \max(q, \epsilon)

        p_t = y\,\sigma(x) + (1 - y)\, q, \qquad \gamma_t = \gamma_+ y + \gamma_- (1 - y)

        \ell = -\bigl(y L_+ + (1 - y) L_-\bigr)\, (1 - p_t)^{\gamma_t}

    elementwise, timm's ``AsymmetricLossMultiLabel`` formula with its default
    ``disable_torch_grad_focal_loss=False`` (the gradient flows through the focusing
    factor). With :math:`\gamma_\pm = 0` and :math:`c = \epsilon = 0` it is
    ``sigmoid_cross_entropy``. Computed from logits in float32 for half-precision
    inputs, as the module docstring shows: finite for any finite logit.

    Args:
        logits: ``[B, C]`` (or ``[B, C, ...]``; any shape: the loss is elementwise), or
            ``[C]`` for one example.
        labels: same shape; multi-hot (bool or integer) or probabilities (float), in
            ``[0, 1]``. The module checks that range (NaN refused); the pure function
            reads no label values.
        gamma_neg: :math:`\gamma_- \ge 0` (a number or a 0-d tensor).
        gamma_pos: :math:`\gamma_+ \ge 0`.
        clip: :math:`c \in [0, 1]`.
        eps: :math:`\epsilon \in [0, 1)`; 0 takes the logs unclamped (exact from logits).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the logits' shape); ``"sum"``: its sum;
        ``"mean"``: the mean over all elements (0 for an empty input). Same dtype as
        ``logits``. Each is timm's number for the same ``reduction`` (timm 1.0.31);
        timm's default, ``reduction="batchmean"`` (``"sum"`` divided by the batch size
        ``B``), has no counterpart here, and timm before ``reduction`` existed returned
        ``"sum"``'s number (``-loss.sum()``).

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.0, 0.0]])
        >>> labels = torch.tensor([[1, 0, 0], [0, 1, 1]])
        >>> LF.asymmetric(logits, labels, reduction="sum")
        tensor(0.5378)
        >>> LF.asymmetric(logits, labels, gamma_neg=0.0, gamma_pos=0.0, clip=0.0, reduction="sum")
        tensor(2.4693)

    References:
        Ridnik, Ben-Baruch, Zamir, Noy, Friedman, Protter and Zelnik-Manor,
        `Asymmetric Loss For Multi-Label Classification <https://arxiv.org/abs/2009.14119>`_,
        2021. Checked against timm's ``AsymmetricLossMultiLabel`` formula written out
        (timm is not a dependency), on several shapes, soft targets and non-default
        values of every hyperparameter, and against float64 closed forms at extreme
        logits. timm 1.0.31's ``smoothing``, ``weight`` and ``pos_weight`` (all off by
        default) are not offered.
    """
    name = "asymmetric"
    check_floating(name, "logits", logits)
    if logits.ndim == 0:
        raise fail(name, "logits", "of shape [B, C], [B, C, ...] or [C]", "shape []")
    check_same_shape(name, logits, labels)
    x = cast(logits, compute_dtype(logits))
    y = labels.to(x.dtype)
    clip = torch.as_tensor(clip, dtype=x.dtype, device=x.device)
    clipped = clip > 0
    log_eps = safe_log(torch.as_tensor(eps, dtype=x.dtype, device=x.device))
    # the positives: log max(σ(x), ε)
    positive = torch.maximum(F.logsigmoid(x), log_eps)
    # the negatives: log max(min(σ(-x) + c, 1), ε); σ(-x) + c has no cancellation, and at
    # c = 0 the log-sigmoid is exact (where twice: c = 0 never reaches the first branch)
    shifted = torch.log(torch.sigmoid(-x) + torch.where(clipped, clip, 1.0))
    negative = torch.where(clipped, shifted.clamp_max(0.0), F.logsigmoid(-x))
    negative = torch.maximum(negative, log_eps)
    # log(1 - p_t) = log(y σ(-x) + (1 - y) m), m = max(σ(x) - c, 0) (log σ(x) at c = 0)
    log_m = torch.where(clipped, safe_log(torch.sigmoid(x) - clip), F.logsigmoid(x))
    log_one_minus_pt = log_add_exp(safe_log(y) + F.logsigmoid(-x), safe_log(1 - y) + log_m)
    gamma = gamma_pos * y + gamma_neg * (1 - y)
    loss = -(y * positive + (1 - y) * negative) * focusing(log_one_minus_pt, gamma)
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)
