"""Regression losses on raw predictions (number, timeseries and vector outputs).

Every loss here is elementwise: ``reduction="none"`` returns one value per element
of the predictions (their shape, as ``torch.nn.functional.mse_loss`` does),
``"sum"`` adds them all and ``"mean"`` divides by their number. The root losses
(RMSE, RMSPE) take the root of the mean, as Ludwig does.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._common import check_floating, check_same_shape, compute_dtype, reduce_loss
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
_NAMES = ("predictions", "labels")


def _pair(name: str, predictions: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Checked predictions and targets in the compute dtype (float32 for half inputs)."""
    check_floating(name, "predictions", predictions)
    check_same_shape(name, predictions, labels, names=_NAMES)
    x = predictions.to(compute_dtype(predictions))
    return x, labels.to(x.dtype)


@register_loss("mean_squared_error", _REGRESSION)
def mean_squared_error(predictions: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Mean squared error between predictions and targets.

    .. math::

        \ell_i = (x_i - y_i)^2

    for every element :math:`i` of the predictions, any shape (``[B]``, ``[B, D]``,
    a scalar), then reduced over all of them.

    Args:
        predictions: predictions of any shape.
        labels: targets of the same shape (no broadcasting).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the predictions' shape); ``"sum"``:
        :math:`\sum_i \ell_i`; ``"mean"``: :math:`\frac1N \sum_i \ell_i` over the
        :math:`N` elements (0 for an empty batch). Each is
        ``torch.nn.functional.mse_loss``'s number. Same dtype as ``predictions``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.mean_squared_error(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))
        tensor(2.5000)

    References:
        Checked against ``torch.nn.functional.mse_loss`` for every reduction.
    """
    name = "mean_squared_error"
    x, y = _pair(name, predictions, labels)
    return reduce_loss((x - y).square(), reduction, name=name).to(predictions.dtype)


_MAE_DOC = r"""Mean absolute error between predictions and targets (torch's ``l1_loss``).

    .. math::

        \ell_i = |x_i - y_i|

    for every element :math:`i` of the predictions, any shape.

    Args:
        predictions: predictions of any shape.
        labels: targets of the same shape (no broadcasting).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the predictions' shape); ``"sum"``:
        :math:`\sum_i \ell_i`; ``"mean"``: their mean over all elements. Each is
        torch's own number: the reduction is passed to ``l1_loss`` (except the mean
        of an empty batch, 0 here and ``nan`` in torch).

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.mean_absolute_error(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))
        tensor(1.5000)

    References:
        Registered in one line from ``torch.nn.functional.l1_loss`` (Ludwig's torch
        route) and checked against it for every reduction.
    """

mean_absolute_error = register_torch_loss(
    "mean_absolute_error",
    _REGRESSION,
    F.l1_loss,
    inputs=_NAMES,
    same_shape=True,
    doc=_MAE_DOC,
    elementwise_mean=True,
)


#: torchmetrics' floor on ``|target|`` in the percentage error (Ludwig calls torchmetrics).
MAPE_EPSILON = 1.17e-6
#: Ludwig's guard added to a zero target in the root mean squared percentage error.
RMSPE_EPSILON = 1e-4


def _sqrt(u: Tensor) -> Tensor:
    """``sqrt(u)`` for ``u >= 0`` with the gradient 0 (a subgradient) at ``u = 0``, not inf/nan.

    NaN stays NaN (``u * 0``, not a constant 0): a diverged model must not report a perfect fit.
    """
    positive = u > 0
    safe = torch.where(positive, u, torch.ones_like(u))  # where() twice: no 1/sqrt(0) in the gradient
    return torch.where(positive, safe.sqrt(), u * 0)


def _root_mean(values: Tensor, reduction: str, name: str) -> Tensor:
    """``"mean"``: the root of the mean of the squares of ``values``; ``"none"``/``"sum"``: ``|values|``.

    The squares are taken of ``values / s`` with ``s = max |values|`` (held constant:
    the root mean square is homogeneous, so value and gradient are unchanged), and the
    root is multiplied by ``s``: errors of 1e30 give 1e30 in float32, not
    ``sqrt(inf)``. The elementwise root of a square is ``|value|``, which never overflows.
    """
    if reduction != "mean":
        return reduce_loss(values.abs(), reduction, name=name)
    if values.numel() == 0:
        return reduce_loss(values, "mean", name=name)  # 0, as every empty mean
    scale = values.detach().abs().amax()
    # a NaN or inf error, or all errors 0: no scaling (NaN stays NaN, inf stays inf)
    scale = torch.where((scale > 0) & torch.isfinite(scale), scale, torch.ones_like(scale))
    return scale * _sqrt(reduce_loss((values / scale).square(), "mean", name=name))


@register_loss("mean_absolute_percentage_error", _REGRESSION)
def mean_absolute_percentage_error(predictions: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Mean absolute percentage error, relative to the target (as a fraction, not in %).

    .. math::

        \ell_i = \frac{|x_i - y_i|}{\max(|y_i|,\ \epsilon)}, \qquad \epsilon = 1.17 \cdot 10^{-6}

    for every element :math:`i`. :math:`\epsilon` is torchmetrics' floor, the one
    Ludwig's loss gets by calling torchmetrics: a zero target gives a large finite
    loss, not inf.

    Args:
        predictions: predictions of any shape.
        labels: targets of the same shape.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the predictions' shape); ``"sum"``:
        :math:`\sum_i \ell_i`; ``"mean"``: :math:`\frac1N \sum_i \ell_i`,
        torchmetrics' ``mean_absolute_percentage_error``. Same dtype as ``predictions``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.mean_absolute_percentage_error(torch.tensor([1.5, 2.0]), torch.tensor([1.0, 4.0]))
        tensor(0.5000)

    References:
        Checked against a closed form and Ludwig's ``MAPELoss`` (torchmetrics'
        ``mean_absolute_percentage_error``).
    """
    name = "mean_absolute_percentage_error"
    x, y = _pair(name, predictions, labels)
    relative = (x - y).abs() / y.abs().clamp_min(MAPE_EPSILON)
    return reduce_loss(relative, reduction, name=name).to(predictions.dtype)


@register_loss("root_mean_squared_error", [Feature.NUMBER])
def root_mean_squared_error(predictions: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Root mean squared error: the square root of the mean squared error.

    .. math::

        \text{mean} = \sqrt{\frac{1}{N} \sum_i (x_i - y_i)^2}, \qquad
        \ell_i = \sqrt{(x_i - y_i)^2} = |x_i - y_i|, \qquad \text{sum} = \sum_i \ell_i

    ``"mean"`` is Ludwig's number, the root of the mean over the :math:`N` elements.
    It is not the mean of the elementwise roots :math:`\ell_i` that ``"none"``
    returns (it is larger or equal): the root couples the batch. The square root
    has gradient 0 where the error is exactly 0 (instead of nan).

    Args:
        predictions: predictions of any shape (``[B]`` for number outputs).
        labels: targets of the same shape.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: the elementwise root :math:`\ell_i = |x_i - y_i|` (the
        predictions' shape); ``"sum"``: :math:`\sum_i \ell_i`; ``"mean"``:
        :math:`\sqrt{\frac1N \sum_i (x_i - y_i)^2}`, a scalar (0 for an empty batch).
        Same dtype as ``predictions``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.root_mean_squared_error(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))
        tensor(1.5811)

    References:
        Checked against ``sqrt(torch.nn.functional.mse_loss)``, Ludwig's ``RMSELoss``.
    """
    name = "root_mean_squared_error"
    x, y = _pair(name, predictions, labels)
    return _root_mean(x - y, reduction, name).to(predictions.dtype)


@register_loss("root_mean_squared_percentage_error", [Feature.NUMBER])
def root_mean_squared_percentage_error(
    predictions: Tensor, labels: Tensor, *, reduction: Reduction = "mean"
) -> Tensor:
    r"""Root mean squared percentage error, relative to the target (as a fraction).

    .. math::

        r_i = \frac{y_i - x_i}{y_i + 10^{-4}\,[y_i = 0]}, \qquad
        \text{mean} = \sqrt{\frac{1}{N} \sum_i r_i^2}, \qquad
        \ell_i = |r_i|, \qquad \text{sum} = \sum_i \ell_i

    The guard :math:`10^{-4}` is Ludwig's: it is added only where the target is
    exactly 0, so such a target gives a large finite loss. As for
    :func:`root_mean_squared_error`, ``"mean"`` is the root of the mean, not the
    mean of the elementwise roots that ``"none"`` returns.

    Args:
        predictions: predictions of any shape (``[B]`` for number outputs).
        labels: targets of the same shape.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: the elementwise root :math:`\ell_i = |r_i|` (the predictions'
        shape); ``"sum"``: :math:`\sum_i \ell_i`; ``"mean"``:
        :math:`\sqrt{\frac1N \sum_i r_i^2}` (Ludwig's number). Same dtype as ``predictions``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.root_mean_squared_percentage_error(torch.tensor([1.5, 2.0]), torch.tensor([1.0, 4.0]))
        tensor(0.5000)

    References:
        Checked against a closed form and Ludwig's ``RMSPELoss``
        (``ludwig.utils.loss_utils.rmspe_loss``).
    """
    name = "root_mean_squared_percentage_error"
    x, y = _pair(name, predictions, labels)
    denominator = y + RMSPE_EPSILON * (y == 0).to(y.dtype)
    relative = (y - x) / denominator
    return _root_mean(relative, reduction, name).to(predictions.dtype)


@register_loss("huber", _REGRESSION)
def huber(
    predictions: Tensor,
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

        \ell_i = \begin{cases}
            \tfrac12 (x_i - y_i)^2 & |x_i - y_i| \le \delta \\
            \delta \bigl(|x_i - y_i| - \tfrac12 \delta\bigr) & \text{otherwise}
        \end{cases}

    for every element :math:`i`. Written with ``torch.where`` rather than through
    ``torch.nn.functional.huber_loss`` so that :math:`\delta` may be a 0-d tensor
    (a ``vmap`` over a grid, a gradient with respect to :math:`\delta`; a tensor
    :math:`\delta` is not checked to be positive, which would read it).
    ``smooth_l1_loss`` with ``beta = δ`` is this loss divided by :math:`\delta`.

    Args:
        predictions: predictions of any shape.
        labels: targets of the same shape.
        delta: :math:`\delta > 0`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the predictions' shape); ``"sum"``:
        :math:`\sum_i \ell_i`; ``"mean"``: :math:`\frac1N\sum_i \ell_i`. Each is
        ``torch.nn.functional.huber_loss``'s number. Same dtype as ``predictions``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.huber(torch.tensor([0.5, 3.0]), torch.tensor([0.0, 0.0]))
        tensor(1.3125)

    References:
        Huber, `Robust Estimation of a Location Parameter
        <https://doi.org/10.1214/aoms/1177703732>`_, 1964. Checked against
        ``torch.nn.functional.huber_loss`` for every reduction (Ludwig's
        ``HuberLoss`` is ``torch.nn.HuberLoss``).
    """
    name = "huber"
    x, y = _pair(name, predictions, labels)
    error = x - y
    absolute = error.abs()
    elementwise = torch.where(absolute <= delta, 0.5 * error.square(), delta * (absolute - 0.5 * delta))
    return reduce_loss(elementwise, reduction, name=name).to(predictions.dtype)
