r"""Robust regression losses: smooth L1, log-cosh and Barron's general robust loss.

All three are elementwise in the error :math:`d = x - y` between predictions and
targets: ``reduction="none"`` returns the predictions' shape, ``"sum"`` adds every
element and ``"mean"`` divides by their number (0 for an empty batch). Half-precision
inputs are computed in float32 and the loss is returned in their dtype.

Each hyperparameter may be a Python number or a 0-d tensor (a ``vmap`` over a grid, a
gradient with respect to it). Where a closed form is singular at a hyperparameter
value (:math:`\beta = 0`; :math:`\alpha = 0` and :math:`\alpha = 2`) the function
selects the limiting form with ``torch.where``, and the branch that is not selected
is fed harmless inputs (the "double where"), so it cannot put a NaN into a gradient.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Reduction, register_loss

from ._common import fail, reduce_loss, shape
from ._regression import _REGRESSION, _pair

__all__ = ["general_robust", "log_cosh", "smooth_l1"]


def _scalar(value: Any, like: Tensor, loss: str, arg: str) -> Tensor:
    """A hyperparameter as a 0-d tensor in ``like``'s dtype and device (the compute dtype).

    A tensor is cast (the gradient flows back to it in its own dtype): float64 ``alpha``
    with float32 predictions is computed in float32, as the rest of the loss.
    """
    if isinstance(value, Tensor):
        if value.ndim != 0:  # the registry's check says so first; this guards a direct call of the unchecked form
            raise fail(loss, arg, "a number or a 0-d tensor", f"a tensor of shape {shape(value)}")
        return value.to(dtype=like.dtype, device=like.device)
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


# -- smooth L1 ----------------------------------------------------------------------------------


@register_loss("smooth_l1", _REGRESSION)
def smooth_l1(
    predictions: Tensor,
    labels: Tensor,
    *,
    beta: Annotated[
        float, Meta(ge=0.0, description="threshold β between the quadratic and the linear part (0: the L1 loss)")
    ] = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Smooth L1 loss: quadratic for errors below :math:`\beta`, the absolute error beyond.

    .. math::

        \ell_i = \begin{cases}
            \tfrac12 (x_i - y_i)^2 / \beta & |x_i - y_i| < \beta \\
            |x_i - y_i| - \tfrac12 \beta & \text{otherwise}
        \end{cases}

    for every element :math:`i`. :math:`\beta = 0` is the L1 loss (as in torch, whose
    ``smooth_l1_loss`` calls ``l1_loss`` there), with the finite gradient
    :math:`\operatorname{sign}(x - y)`. It is :func:`huber` with :math:`\delta = \beta`
    divided by :math:`\beta`. A 0-d tensor :math:`\beta` is not checked to be
    non-negative (that would read it); :math:`\beta = 0` as a tensor gives the L1 loss
    and a finite gradient with respect to :math:`\beta` (:math:`-\tfrac12`).

    Args:
        predictions: predictions of any shape.
        labels: targets of the same shape (no broadcasting; torch warns and broadcasts).
        beta: :math:`\beta \ge 0`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the predictions' shape); ``"sum"``:
        :math:`\sum_i \ell_i`; ``"mean"``: :math:`\frac1N \sum_i \ell_i` (0 for an
        empty batch, where torch gives ``nan``). Each is
        ``torch.nn.functional.smooth_l1_loss``'s number. Same dtype as ``predictions``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.smooth_l1(torch.tensor([0.5, 3.0]), torch.tensor([0.0, 0.0]))
        tensor(1.3125)
        >>> LF.smooth_l1(torch.tensor([0.5, 3.0]), torch.tensor([0.0, 0.0]), beta=0.0)
        tensor(1.7500)

    References:
        Girshick, `Fast R-CNN <https://arxiv.org/abs/1504.08083>`_, 2015. Checked
        against ``torch.nn.functional.smooth_l1_loss`` (values and gradients) for every
        reduction.
    """
    name = "smooth_l1"
    x, y = _pair(name, predictions, labels)
    error = x - y
    absolute = error.abs()
    if not isinstance(beta, Tensor):
        if beta == 0.0:
            return reduce_loss(absolute, reduction, name=name).to(predictions.dtype)
        quadratic = absolute < beta
        small = torch.where(quadratic, absolute, 0.0)  # no inf * 0 from a huge error in the unused branch
        elementwise = torch.where(quadratic, 0.5 * small * small / beta, absolute - 0.5 * beta)
        return reduce_loss(elementwise, reduction, name=name).to(predictions.dtype)
    beta = _scalar(beta, x, name, "beta")
    quadratic = absolute < beta  # never at beta = 0
    small = torch.where(quadratic, absolute, 0.0)
    safe_beta = torch.where(beta > 0, beta, 1.0)  # 0/0 at beta = 0 would be NaN in the gradient
    elementwise = torch.where(quadratic, 0.5 * small * small / safe_beta, absolute - 0.5 * beta)
    return reduce_loss(elementwise, reduction, name=name).to(predictions.dtype)


# -- log-cosh -----------------------------------------------------------------------------------

_LOG2 = math.log(2.0)


@register_loss("log_cosh", _REGRESSION)
def log_cosh(predictions: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Log-cosh loss: :math:`\log\cosh` of the error, quadratic near 0 and linear far away.

    .. math::

        \ell_i = \log\cosh(d_i), \qquad d_i = x_i - y_i

    computed as :math:`\log(1 + 2\sinh^2(d/2))` for :math:`|d| < 1` (exact to
    rounding, where :math:`\ell \approx d^2/2` is tiny) and as
    :math:`|d| + \log(1 + e^{-2|d|}) - \log 2` beyond (no overflow: finite for any
    finite error, e.g. :math:`|d| = 10^4` in float32). The gradient is
    :math:`\tanh(d)`. optax's ``log_cosh``, ``logaddexp(d, -d) - log 2``, loses the
    relative precision of small errors to the cancellation against :math:`\log 2`
    (in float32 it is off by 5% at :math:`d = 10^{-3}` and returns 0 at
    :math:`d = 10^{-4}`); the values agree otherwise.

    Args:
        predictions: predictions of any shape.
        labels: targets of the same shape (required: optax's ``targets=None`` is
            ``labels=torch.zeros_like(predictions)`` here).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the predictions' shape, what optax's
        ``log_cosh`` returns); ``"sum"``: :math:`\sum_i \ell_i`; ``"mean"``:
        :math:`\frac1N \sum_i \ell_i` (0 for an empty batch). Same dtype as ``predictions``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.log_cosh(torch.tensor([0.5, 3.0]), torch.tensor([0.0, 0.0]))
        tensor(1.2147)

    References:
        Chen et al., `Log Hyperbolic Cosine Loss Improves Variational Auto-Encoder
        <https://openreview.net/pdf?id=rkglvsC9Ym>`_, 2019. Checked against
        ``optax.losses.log_cosh`` (values and gradients, stored float64 vectors:
        ``scripts/make_regression_vectors.py``) and against ``log(cosh(d))`` in float64.
    """
    name = "log_cosh"
    x, y = _pair(name, predictions, labels)
    error = x - y
    absolute = error.abs()
    near = absolute < 1.0
    half = torch.sinh(torch.where(near, error, 0.0) * 0.5)  # sinh(d/2) cannot overflow where it is used
    small = torch.log1p(2.0 * half * half)
    large = absolute + torch.log1p(torch.exp(-2.0 * absolute)) - _LOG2
    return reduce_loss(torch.where(near, small, large), reduction, name=name).to(predictions.dtype)


# -- Barron's general robust loss ----------------------------------------------------------------

#: Above this ``v = α L / 2`` the value is computed as ``exp(v + log(b/α))``: ``expm1(v)`` alone
#: would overflow float32 at v = 89 before the small factor ``b/α`` (α near 2) brings it back.
_LARGE_V = 40.0


def _series_threshold(dtype: torch.dtype) -> float:
    """Below this ``|v|`` the 5-term series of ``expm1(v) / v`` is used: eps^(1/5), so its
    truncation error and the cancellation in the closed form's derivative are both about eps^(4/5)."""
    return torch.finfo(dtype).eps ** 0.2


def _log1p_ratio(z: Tensor, b: Tensor) -> Tensor:
    """``log(1 + z²/b)`` for ``b > 0`` without forming ``z²/b`` where it could overflow.

    For ``|z| <= sqrt(b)``: ``log1p((|z|/sqrt b)²)``; beyond, with ``t = log|z| - log(b)/2 >= 0``:
    ``2t + log1p(exp(-2t))``. Each branch sees only the inputs it is selected for.
    """
    magnitude = z.abs()
    root = b.sqrt()
    inside = magnitude <= root
    ratio = torch.where(inside, magnitude, 0.0) / root
    near = torch.log1p(ratio * ratio)
    t = torch.log(torch.where(inside, root, magnitude)) - torch.log(root)
    far = 2.0 * t + torch.log1p(torch.exp(-2.0 * t))
    return torch.where(inside, near, far)


def _expm1_over(v: Tensor) -> Tensor:
    """``expm1(v) / v`` (1 at v = 0), with its series near 0 so that d/dv is accurate there."""
    small = v.abs() < _series_threshold(v.dtype)
    safe = torch.where(small, 1.0, v)
    closed = torch.expm1(safe) / safe
    s = torch.where(small, v, 0.0)
    series = 1.0 + s * (1 / 2 + s * (1 / 6 + s * (1 / 24 + s / 120)))
    return torch.where(small, series, closed)


def barron_rho(z: Tensor, alpha: Tensor) -> Tensor:
    r"""Barron's :math:`\rho(z, \alpha)` of a scaled error ``z`` for a 0-d tensor ``alpha``.

    With :math:`b = |\alpha - 2|`, :math:`L = \log(1 + z^2/b)` and :math:`v = \alpha L / 2`,
    :math:`\rho = \frac{b}{\alpha}\bigl(e^{v} - 1\bigr) = \frac b2\, L\, \frac{e^v - 1}{v}`:
    the last form has no :math:`1/\alpha`, so :math:`\alpha = 0` needs only the series of
    :math:`(e^v - 1)/v` at :math:`v = 0` (value :math:`\log(1 + z^2/2)` exactly, and the
    exact derivative in :math:`\alpha`). :math:`\alpha = 2` (:math:`b = 0`) is selected
    as :math:`z^2/2`, its limit; there ``b`` is replaced by 1 in the unused branch.
    """
    at_two = alpha == 2
    b = torch.where(at_two, 1.0, (alpha - 2).abs())
    log_ratio = _log1p_ratio(z, b)
    v = alpha * log_ratio * 0.5
    # v > 40 only for α > 0: (b/α)·expm1(v) = exp(v + log b - log α)·(1 - e^{-v}), no overflow of exp(v) alone
    large = v > _LARGE_V
    general = 0.5 * b * log_ratio * _expm1_over(torch.where(large, 0.0, v))  # inf there would NaN the gradient
    v_large = torch.where(large, v, 1.0)
    alpha_large = torch.where(large, alpha, 1.0)
    huge = torch.exp(v_large + torch.log(b) - torch.log(alpha_large)) * -torch.expm1(-v_large)
    return torch.where(at_two, 0.5 * z * z, torch.where(large, huge, general))


@register_loss("general_robust", _REGRESSION)
def general_robust(
    predictions: Tensor,
    labels: Tensor,
    *,
    alpha: Annotated[
        float,
        Meta(le=2.0, description="shape α ≤ 2 of the loss (2: L2, 1: pseudo-Huber, 0: Cauchy, -2: Geman-McClure)"),
    ] = 1.0,
    scale: Annotated[float, Meta(gt=0.0, description="scale c of the error: the width of the quadratic bowl")] = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Barron's general and adaptive robust loss, one shape parameter :math:`\alpha` for a family.

    For the error :math:`d_i = x_i - y_i` and :math:`z_i = d_i / c`:

    .. math::

        \ell_i = \rho(z_i, \alpha) = \frac{|\alpha - 2|}{\alpha}
            \left[\left(\frac{z_i^2}{|\alpha - 2|} + 1\right)^{\alpha/2} - 1\right]

    with its limits at the removable singularities, which lossfn computes exactly
    (not by shifting :math:`\alpha` by an epsilon as the reference implementation does):

    ========================  ===============================================  ==========================
    :math:`\alpha`            :math:`\rho(z, \alpha)`                          name (kornia, same scale)
    ========================  ===============================================  ==========================
    2                         :math:`\tfrac12 z^2`                             L2
    1                         :math:`\sqrt{z^2 + 1} - 1`                       pseudo-Huber (``charbonnier_loss``)
    0                         :math:`\log(\tfrac12 z^2 + 1)`                   Cauchy (``cauchy_loss``)
    -2                        :math:`2 z^2 / (z^2 + 4)`                        Geman-McClure (``geman_mcclure_loss``)
    :math:`\to -\infty`       :math:`1 - e^{-z^2/2}`                           Welsch (``welsch_loss``)
    ========================  ===============================================  ==========================

    kornia's four losses take no scale: they are :math:`c = 1`, with no constant factor.

    **The range of** :math:`\alpha`. A number (and a config) takes :math:`\alpha \le 2`,
    Barron's robust family: above 2 the loss grows faster than the squared error, as
    :math:`|z|^\alpha`, and a small scale overflows float32 on ordinary inputs
    (:math:`\alpha = 3`, :math:`c = 10^{-6}`, :math:`|d| = 10`: :math:`10^{21}` cubed).
    The formula holds above 2 and a 0-d tensor :math:`\alpha` is not checked (that would
    read it), so :math:`\alpha > 2` can be given, or reached while learning, as a
    tensor; value and gradients are right there too. Welsch is the limit
    :math:`\alpha \to -\infty`, which a config cannot hold (every number is finite and
    at most :math:`10^{15}` in magnitude): a very negative
    :math:`\alpha` approaches it, within about :math:`z^4 / |\alpha|`
    (:math:`\alpha = -10^{15}` gives it to float64 rounding). :math:`\rho` is
    computed in a log form with no overflow of :math:`z^2` or of the power (see
    :func:`barron_rho`), so it is finite wherever its value is representable.

    **Learning** :math:`\alpha`. :math:`\alpha` (and :math:`c`) may be 0-d tensors, so
    a ``vmap`` over a grid or a gradient with respect to them works. The gradient with
    respect to :math:`\alpha` is finite and exact everywhere except at
    :math:`\alpha = 2`: near it, with :math:`\varepsilon = \alpha - 2`,

    .. math::

        \rho \approx \tfrac12 z^2 + \varepsilon \bigl[\tfrac12 z^2 (\log|z| - \tfrac12)
              - \tfrac14 z^2 \log|\varepsilon|\bigr], \qquad
        \frac{\partial\rho}{\partial\alpha} \approx \tfrac14 z^2
              \bigl(2 \log|z| - 2 - \log|\varepsilon|\bigr)

    on both sides, which is :math:`+\infty` at 2 itself (for :math:`z \ne 0`). At
    exactly :math:`\alpha = 2` lossfn returns 0 for it (the :math:`\tfrac12 z^2`
    branch does not depend on :math:`\alpha`), a finite number that cannot poison an
    optimizer; just beside 2 it is large and finite, as above (3.0 to 3.3 at
    :math:`z = 1` for the float32 neighbours of 2). Gradients with respect to the inputs
    and :math:`c` are finite and exact at every :math:`\alpha`, 0 and 2 included. The
    value alone is :math:`\rho`, not the negative log-likelihood of the paper's
    adaptive loss: minimizing :math:`\rho` over :math:`\alpha` drives :math:`\alpha`
    down (:math:`\rho` increases with :math:`\alpha`); learning :math:`\alpha` needs the
    paper's :math:`\log Z(\alpha)` term added.

    Args:
        predictions: predictions of any shape.
        labels: targets of the same shape.
        alpha: shape :math:`\alpha \le 2` (down to :math:`-10^{15}`, lossfn's limit), or a
            0-d tensor (any real).
        scale: :math:`c > 0`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the predictions' shape); ``"sum"``:
        :math:`\sum_i \ell_i`; ``"mean"``: :math:`\frac1N \sum_i \ell_i` (0 for an
        empty batch). Same dtype as ``predictions``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> x, y = torch.tensor([0.5, 3.0]), torch.tensor([0.0, 0.0])
        >>> torch.stack([LF.general_robust(x, y, alpha=a) for a in (2.0, 1.0, 0.0, -2.0)]).round(decimals=4)
        tensor([2.3125, 1.1402, 0.9113, 0.7511])

    References:
        Barron, `A General and Adaptive Robust Loss Function
        <https://arxiv.org/abs/1701.03077>`_, CVPR 2019. Checked against the
        formula written out in float64 and, at :math:`\alpha \in \{1, 0, -2\}` and the
        Welsch limit, against kornia's ``charbonnier_loss``, ``cauchy_loss``,
        ``geman_mcclure_loss`` and ``welsch_loss``.
    """
    name = "general_robust"
    x, y = _pair(name, predictions, labels)
    z = (x - y) / (scale if not isinstance(scale, Tensor) else _scalar(scale, x, name, "scale"))
    elementwise = barron_rho(z, _scalar(alpha, z, name, "alpha"))
    return reduce_loss(elementwise, reduction, name=name).to(predictions.dtype)
