"""Regression losses on raw predictions (number, timeseries and vector outputs)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._common import check_floating, check_min_rank, check_same_shape, mean_over_features, reduce_loss
from ._torch_route import register_torch_loss

__all__ = ["mean_absolute_error", "mean_squared_error"]

_REGRESSION = [Feature.NUMBER, Feature.TIMESERIES, Feature.VECTOR]


@register_loss("mean_squared_error", _REGRESSION)
def mean_squared_error(logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Mean squared error between predictions and targets.

    .. math::

        \ell_n = \frac{1}{D} \sum_{d} (x_{n,d} - y_{n,d})^2

    where :math:`d` runs over every dimension after the batch one (:math:`D = 1`
    for ``[B]`` inputs).

    Args:
        logits: predictions ``[B]`` or ``[B, ...]``.
        labels: targets of the same shape (no broadcasting).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, shape ``[B]``; ``"mean"``: :math:`\frac1B\sum_n \ell_n`,
        equal to ``torch.nn.functional.mse_loss``; ``"sum"``: :math:`\sum_n \ell_n`.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.mean_squared_error(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])).item()
        2.5

    References:
        Checked against ``torch.nn.functional.mse_loss``.
    """
    name = "mean_squared_error"
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 1, "[B] or [B, ...]")
    check_same_shape(name, logits, labels)
    squared = (logits - labels.to(logits.dtype)).square()
    return reduce_loss(mean_over_features(squared), reduction, name=name)


_MAE_DOC = r"""Mean absolute error between predictions and targets (torch's ``l1_loss``).

    .. math::

        \ell_n = \frac{1}{D} \sum_{d} |x_{n,d} - y_{n,d}|

    where :math:`d` runs over every dimension after the batch one.

    Args:
        logits: predictions ``[B]`` or ``[B, ...]``.
        labels: targets of the same shape.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, shape ``[B]``; ``"mean"``: equal to
        ``torch.nn.functional.l1_loss``; ``"sum"``: :math:`\sum_n \ell_n`.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.mean_absolute_error(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])).item()
        1.5

    References:
        Registered in one line from ``torch.nn.functional.l1_loss`` (Ludwig's torch
        route) and checked against it.
    """

mean_absolute_error = register_torch_loss("mean_absolute_error", _REGRESSION, F.l1_loss, doc=_MAE_DOC)
