"""Regression losses on raw predictions (number, timeseries and vector outputs)."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._common import (
    check_floating,
    check_min_rank,
    check_same_shape,
    compute_dtype,
    mean_over_features,
    reduce_loss,
)
from ._torch_route import register_torch_loss

__all__ = [
    "huber",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_error",
    "root_mean_squared_error",
    "root_mean_squared_percentage_error",
]

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
        >>> LF.mean_squared_error(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))
        tensor(2.5000)

    References:
        Checked against ``torch.nn.functional.mse_loss``.
    """
    name = "mean_squared_error"
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 1, "[B] or [B, ...]")
    check_same_shape(name, logits, labels)
    x = logits.to(compute_dtype(logits))  # float32 for half inputs, like the other losses
    squared = (x - labels.to(x.dtype)).square()
    return reduce_loss(mean_over_features(squared), reduction, name=name).to(logits.dtype)


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
        >>> LF.mean_absolute_error(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))
        tensor(1.5000)

    References:
        Registered in one line from ``torch.nn.functional.l1_loss`` (Ludwig's torch
        route) and checked against it.
    """

mean_absolute_error = register_torch_loss("mean_absolute_error", _REGRESSION, F.l1_loss, doc=_MAE_DOC)


#: torchmetrics' floor on ``|target|`` in the percentage error (Ludwig calls torchmetrics).
MAPE_EPSILON = 1.17e-6
#: Ludwig's guard added to a zero target in the root mean squared percentage error.
RMSPE_EPSILON = 1e-4


def _pair(name: str, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Checked predictions and targets in the compute dtype (float32 for half inputs)."""
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 1, "[B] or [B, ...]")
    check_same_shape(name, logits, labels)
    x = logits.to(compute_dtype(logits))
    return x, labels.to(x.dtype)


def _sqrt(u: Tensor) -> Tensor:
    """``sqrt(u)`` for ``u >= 0`` with the gradient 0 (a subgradient) at ``u = 0``, not inf/nan."""
    positive = u > 0
    safe = torch.where(positive, u, torch.ones_like(u))  # where() twice: no 1/sqrt(0) in the gradient
    return torch.where(positive, safe.sqrt(), torch.zeros_like(u))


def _root_mean(per_example: Tensor, reduction: str, name: str) -> Tensor:
    """``"mean"``: the root of the batch mean; ``"none"``/``"sum"``: per-example roots."""
    if reduction == "mean":
        return _sqrt(per_example.mean())
    return reduce_loss(_sqrt(per_example), reduction, name=name)


@register_loss("mean_absolute_percentage_error", _REGRESSION)
def mean_absolute_percentage_error(logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Mean absolute percentage error, relative to the target (as a fraction, not in %).

    .. math::

        \ell_n = \frac{1}{D} \sum_{d} \frac{|x_{n,d} - y_{n,d}|}{\max(|y_{n,d}|,\ \epsilon)},
        \qquad \epsilon = 1.17 \cdot 10^{-6}

    where :math:`d` runs over every dimension after the batch one. :math:`\epsilon`
    is torchmetrics' floor, the one Ludwig's loss gets by calling torchmetrics: a
    zero target gives a large finite loss, not inf.

    Args:
        logits: predictions ``[B]`` or ``[B, ...]``.
        labels: targets of the same shape.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, shape ``[B]``; ``"mean"``: :math:`\frac1B\sum_n \ell_n`,
        torchmetrics' ``mean_absolute_percentage_error``; ``"sum"``: :math:`\sum_n \ell_n`.
        Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.mean_absolute_percentage_error(torch.tensor([1.5, 2.0]), torch.tensor([1.0, 4.0]))
        tensor(0.5000)

    References:
        Checked against a closed form and Ludwig's ``MAPELoss`` (torchmetrics'
        ``mean_absolute_percentage_error``).
    """
    name = "mean_absolute_percentage_error"
    x, y = _pair(name, logits, labels)
    relative = (x - y).abs() / y.abs().clamp_min(MAPE_EPSILON)
    return reduce_loss(mean_over_features(relative), reduction, name=name).to(logits.dtype)


@register_loss("root_mean_squared_error", [Feature.NUMBER])
def root_mean_squared_error(logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Root mean squared error: the square root of the batch's mean squared error.

    .. math::

        m_n = \frac{1}{D} \sum_{d} (x_{n,d} - y_{n,d})^2, \qquad \ell_n = \sqrt{m_n}

        \text{mean} = \sqrt{\frac{1}{B} \sum_n m_n}, \qquad \text{sum} = \sum_n \ell_n

    ``"mean"`` is Ludwig's number, the root of the batch mean, which is not the
    mean of the per-example roots :math:`\ell_n` (it is larger or equal). The
    square root has gradient 0 where the error is exactly 0 (instead of nan).

    Args:
        logits: predictions ``[B]`` or ``[B, ...]``.
        labels: targets of the same shape.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: the per-example root :math:`\ell_n = \sqrt{m_n}`, shape ``[B]``
        (:math:`|x_n - y_n|` for ``[B]`` inputs); ``"mean"``:
        :math:`\sqrt{\frac1B \sum_n m_n}`, a scalar; ``"sum"``: :math:`\sum_n \ell_n`.
        Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.root_mean_squared_error(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))
        tensor(1.5811)

    References:
        Checked against ``sqrt(torch.nn.functional.mse_loss)``, Ludwig's ``RMSELoss``.
    """
    name = "root_mean_squared_error"
    x, y = _pair(name, logits, labels)
    return _root_mean(mean_over_features((x - y).square()), reduction, name).to(logits.dtype)


@register_loss("root_mean_squared_percentage_error", [Feature.NUMBER])
def root_mean_squared_percentage_error(
    logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean"
) -> Tensor:
    r"""Root mean squared percentage error, relative to the target (as a fraction).

    .. math::

        m_n = \frac{1}{D} \sum_{d} \Bigl(\frac{y_{n,d} - x_{n,d}}
              {y_{n,d} + 10^{-4}\,[y_{n,d} = 0]}\Bigr)^2, \qquad \ell_n = \sqrt{m_n}

        \text{mean} = \sqrt{\frac{1}{B} \sum_n m_n}, \qquad \text{sum} = \sum_n \ell_n

    The guard :math:`10^{-4}` is Ludwig's: it is added only where the target is
    exactly 0, so such a target gives a large finite loss. As for
    :func:`root_mean_squared_error`, ``"mean"`` is the root of the batch mean.

    Args:
        logits: predictions ``[B]`` or ``[B, ...]``.
        labels: targets of the same shape.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: the per-example root :math:`\ell_n`, shape ``[B]``; ``"mean"``:
        :math:`\sqrt{\frac1B \sum_n m_n}` (Ludwig's number); ``"sum"``:
        :math:`\sum_n \ell_n`. Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.root_mean_squared_percentage_error(torch.tensor([1.5, 2.0]), torch.tensor([1.0, 4.0]))
        tensor(0.5000)

    References:
        Checked against a closed form and Ludwig's ``RMSPELoss``
        (``ludwig.utils.loss_utils.rmspe_loss``).
    """
    name = "root_mean_squared_percentage_error"
    x, y = _pair(name, logits, labels)
    denominator = y + RMSPE_EPSILON * (y == 0).to(y.dtype)
    relative = (y - x) / denominator
    return _root_mean(mean_over_features(relative.square()), reduction, name).to(logits.dtype)


@register_loss("huber", _REGRESSION)
def huber(
    logits: Tensor,
    labels: Tensor,
    *,
    delta: Annotated[
        float, Meta(gt=0.0, description="threshold δ between the quadratic and the linear (δ-scaled L1) part")
    ] = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Huber loss: quadratic for errors up to :math:`\delta`, linear beyond.

    Less sensitive to outliers than the squared error, smooth at 0 unlike the
    absolute error. Ludwig's default loss for timeseries outputs.

    .. math::

        \ell_{n,d} = \begin{cases}
            \tfrac12 (x_{n,d} - y_{n,d})^2 & |x_{n,d} - y_{n,d}| \le \delta \\
            \delta \bigl(|x_{n,d} - y_{n,d}| - \tfrac12 \delta\bigr) & \text{otherwise}
        \end{cases},
        \qquad \ell_n = \frac{1}{D} \sum_d \ell_{n,d}

    Written with ``torch.where`` rather than through ``torch.nn.functional.huber_loss``
    so that :math:`\delta` may be a 0-d tensor (a ``vmap`` over a grid, a gradient
    with respect to :math:`\delta`). ``smooth_l1_loss`` with ``beta = δ`` is this
    loss divided by :math:`\delta`.

    Args:
        logits: predictions ``[B]`` or ``[B, ...]``.
        labels: targets of the same shape.
        delta: :math:`\delta > 0`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, shape ``[B]``; ``"mean"``: :math:`\frac1B\sum_n \ell_n`,
        equal to ``torch.nn.functional.huber_loss``; ``"sum"``: :math:`\sum_n \ell_n`.
        Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.huber(torch.tensor([0.5, 3.0]), torch.tensor([0.0, 0.0]))
        tensor(1.3125)

    References:
        Huber, `Robust Estimation of a Location Parameter
        <https://doi.org/10.1214/aoms/1177703732>`_, 1964. Checked against
        ``torch.nn.functional.huber_loss`` (Ludwig's ``HuberLoss`` is
        ``torch.nn.HuberLoss``).
    """
    name = "huber"
    x, y = _pair(name, logits, labels)
    error = x - y
    absolute = error.abs()
    elementwise = torch.where(absolute <= delta, 0.5 * error.square(), delta * (absolute - 0.5 * delta))
    return reduce_loss(mean_over_features(elementwise), reduction, name=name).to(logits.dtype)
