r"""Likelihood and quantile regression losses: pinball, Poisson and Gaussian negative log-likelihoods.

Each is elementwise, as torch's ``poisson_nll_loss`` and ``gaussian_nll_loss``:
``reduction="none"`` returns one value per element of the predictions (per element
and quantile, ``[..., Q]``, for the quantile loss), ``"sum"`` adds them and ``"mean"``
divides by their number (0 for an empty batch, where torch gives ``nan``).
Half-precision inputs are computed in float32 and the loss is returned in their dtype.
"""

from __future__ import annotations

import math
import numbers
from typing import Annotated, Any

import torch
from msgspec import Meta
from torch import Tensor

from lossfn.registry import AsTensor, Feature, InputCheck, Reduction, register_loss

from ._common import as_param, check_device, check_floating, compute_dtype, fail, reduce_loss, shape
from ._regression import _pair

__all__ = ["gaussian_nll", "poisson_nll", "quantile"]


# -- quantile (pinball) -------------------------------------------------------------------------


def _quantile_levels(quantiles: Any, like: Tensor) -> Tensor:
    """The quantile levels as a ``[Q]`` tensor (``None``: the median, ``[0.5]``)."""
    name = "quantile"
    if quantiles is None:
        return torch.full((1,), 0.5, dtype=like.dtype, device=like.device)
    if isinstance(quantiles, Tensor):
        if quantiles.ndim != 1 or quantiles.shape[0] == 0:
            raise fail(
                name, "quantiles", "a non-empty list or a tensor of shape [Q]", f"a tensor of shape {shape(quantiles)}"
            )
        return quantiles.to(dtype=like.dtype, device=like.device)
    try:
        count = len(quantiles)
    except TypeError:
        raise fail(name, "quantiles", "a non-empty list of levels in (0, 1)", type(quantiles).__name__) from None
    return as_param(name, "quantiles", quantiles, like, (count,))


@register_loss("quantile", [Feature.NUMBER, Feature.TIMESERIES])
def quantile(
    predictions: Tensor,
    labels: Tensor,
    *,
    quantiles: Annotated[
        Annotated[list[Annotated[float, Meta(gt=0.0, lt=1.0)]], Meta(min_length=1)] | None,
        Meta(description="the quantile levels τ, each in (0, 1), one prediction per level (None: [0.5])"),
        AsTensor(),
    ] = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Quantile (pinball) loss: one prediction per quantile level :math:`\tau_q`.

    For target :math:`y_i`, prediction :math:`x_{i,q}` of its :math:`\tau_q`-quantile and
    the error :math:`e_{i,q} = y_i - x_{i,q}`:

    .. math::

        \ell_{i,q} = \max\bigl(\tau_q\, e_{i,q},\ (\tau_q - 1)\, e_{i,q}\bigr)
                   = e_{i,q} \bigl(\tau_q - [e_{i,q} < 0]\bigr)

    whose minimizer over :math:`x_{i,q}` is the :math:`\tau_q`-quantile of the target's
    distribution; :math:`\tau = 0.5` is half the absolute error. The gradient at
    :math:`e = 0` is the subgradient :math:`-\tau_q` (the :math:`e \ge 0` side).

    ``quantiles=None`` (the default) is the median, ``[0.5]``: a config cannot hold a
    non-empty list as its default, so ``None`` stands for it. ``quantiles`` is a list,
    or a ``[Q]`` tensor (a module keeps it as a buffer); a tensor's values are not
    checked to lie in (0, 1) (that would read them).

    Args:
        predictions: ``[..., Q]``, one prediction per quantile level on the last
            dimension (``[B, Q]`` for number outputs, ``[B, T, Q]`` for timeseries);
            with one level, also the labels' shape.
        labels: targets ``[...]``, the predictions' shape without the quantile
            dimension; they are broadcast over it.
        quantiles: the :math:`Q` levels :math:`\tau_q \in (0, 1)`.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, the predictions' shape ``[..., Q]``; ``"sum"``:
        :math:`\sum_{i,q} \ell_{i,q}`; ``"mean"``: the mean over every element and
        every quantile, :math:`\frac{1}{NQ}\sum_{i,q} \ell_{i,q}` (0 for an empty
        batch). Same dtype as ``predictions``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> predictions = torch.tensor([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]])
        >>> LF.quantile(predictions, torch.tensor([1.5, 0.0]), quantiles=[0.1, 0.5, 0.9])
        tensor(0.4417)

    References:
        Koenker and Bassett, `Regression Quantiles <https://doi.org/10.2307/1913643>`_,
        1978. Checked against the closed form written out in the tests.
    """
    name = "quantile"
    check_floating(name, "predictions", predictions)
    if not isinstance(labels, Tensor):
        raise fail(name, "labels", "a torch.Tensor", type(labels).__name__)
    if labels.is_complex():
        raise fail(name, "labels", "real numbers", f"dtype {labels.dtype}")
    x = predictions.to(compute_dtype(predictions))
    levels = _quantile_levels(quantiles, x)
    count = levels.shape[0]
    if count == 1 and labels.shape == predictions.shape:
        levels = levels.reshape(())  # one level: predictions of the labels' shape
    elif predictions.ndim == 0 or predictions.shape[-1] != count:
        raise fail(
            name, "predictions", f"of shape [..., Q] with Q = {count}, the number of quantiles",
            f"shape {shape(predictions)}",
        )
    elif labels.shape != predictions.shape[:-1]:
        expected = "[" + ", ".join(str(d) for d in predictions.shape[:-1]) + "]"
        raise fail(
            name, "labels", f"of shape {expected}, the predictions' shape {shape(predictions)} without the quantile "
            "dimension", f"shape {shape(labels)}",
        )
    else:
        labels = labels.unsqueeze(-1)
    check_device(name, "labels", labels, predictions, "predictions")
    error = labels.to(x.dtype) - x
    elementwise = error * (levels - (error < 0).to(x.dtype))
    return reduce_loss(elementwise, reduction, name=name).to(predictions.dtype)


# -- Poisson negative log-likelihood ------------------------------------------------------------


@register_loss("poisson_nll", [Feature.NUMBER])
def poisson_nll(
    predictions: Tensor,
    labels: Tensor,
    *,
    log_input: Annotated[bool, Meta(description="the predictions are log-rates (else rates)")] = True,
    full: Annotated[bool, Meta(description="add the Stirling term of log(y!) for targets above 1")] = False,
    eps: Annotated[float, Meta(ge=0.0, description="added to the rate inside the log when log_input is false")] = 1e-8,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Poisson negative log-likelihood of counts given predicted rates (torch's ``poisson_nll_loss``).

    For prediction :math:`x_i` and target :math:`y_i \ge 0`:

    .. math::

        \ell_i = \begin{cases}
            e^{x_i} - y_i x_i & \text{log\_input (} x \text{ is the log-rate)} \\
            x_i - y_i \log(x_i + \epsilon) & \text{otherwise (} x > 0 \text{ is the rate)}
        \end{cases}
        \; + \; [\text{full}]\,[y_i > 1]\,\bigl(y_i \log y_i - y_i + \tfrac12 \log(2\pi y_i)\bigr)

    the last term being Stirling's approximation of :math:`\log(y_i!)`, left out for
    :math:`y_i \le 1` as torch does. It is selected with a "double where", so the
    gradient with respect to the targets is finite at :math:`y = 0` too (torch's is NaN
    there with ``full=True``). With ``log_input`` the loss grows as :math:`e^{x}`: it is
    ``inf`` beyond :math:`x \approx 88` in float32, as the true value is. A 0-d tensor
    :math:`\epsilon` is not checked to be non-negative.

    Args:
        predictions: log-rates (``log_input=True``) or rates, any shape.
        labels: targets (counts, or any non-negative numbers) of the same shape.
        log_input: the predictions are log-rates.
        full: add the Stirling term.
        eps: :math:`\epsilon \ge 0`, a number or a 0-d tensor; used only when
            ``log_input`` is false.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the predictions' shape); ``"sum"``:
        :math:`\sum_i \ell_i`; ``"mean"``: :math:`\frac1N \sum_i \ell_i` (0 for an
        empty batch). Each is ``torch.nn.functional.poisson_nll_loss``'s number.
        Same dtype as ``predictions``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.poisson_nll(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 3.0]))
        tensor(0.3591)

    References:
        Checked against ``torch.nn.functional.poisson_nll_loss`` (values and gradients)
        for every reduction and every setting.
    """
    name = "poisson_nll"
    x, y = _pair(name, predictions, labels)
    if log_input:
        elementwise = torch.exp(x) - y * x
        if isinstance(eps, Tensor):  # unused, but kept in the graph: its gradient is 0, not missing
            elementwise = elementwise + torch.where(torch.zeros((), dtype=torch.bool, device=x.device), eps, 0.0)
    else:
        elementwise = x - y * torch.log(x + eps)
    if full:
        above = y > 1
        safe = torch.where(above, y, 2.0)  # y log y is NaN at 0: the unused branch sees 2
        stirling = safe * torch.log(safe) - safe + 0.5 * torch.log(2 * math.pi * safe)
        elementwise = elementwise + torch.where(above, stirling, 0.0)
    return reduce_loss(elementwise, reduction, name=name).to(predictions.dtype)


# -- Gaussian negative log-likelihood -----------------------------------------------------------


def _variance(name: str, predictions: Tensor, variance: Any) -> Tensor:
    """The variance laid out against the predictions, by torch's rules (metadata only).

    The predictions' shape (heteroscedastic); that shape without its last dimension
    (one variance per row: unsqueezed); or the predictions' rank with exactly one
    dimension of size 1 where they differ (broadcast). A Python number is one variance
    for every element (refused if negative: reading it costs nothing).
    """
    if isinstance(variance, numbers.Real) and not isinstance(variance, bool):
        if not variance >= 0:  # NaN too
            raise fail(name, "variance", "non-negative", repr(variance))
        return torch.full_like(predictions, float(variance))
    check_floating(name, "variance", variance)
    check_device(name, "variance", variance, predictions, "predictions")
    if variance.shape == predictions.shape:
        return variance
    if predictions.ndim >= 1 and variance.shape == predictions.shape[:-1]:
        return variance.unsqueeze(-1)
    differing = [(p, v) for p, v in zip(predictions.shape, variance.shape) if p != v]
    if variance.ndim == predictions.ndim and len(differing) == 1 and differing[0][1] == 1:
        return variance
    raise fail(
        name, "variance", f"of the predictions' shape {shape(predictions)}, that shape without its last dimension, "
        "or with one dimension of size 1", f"shape {shape(variance)}",
    )


def _validate_gaussian(predictions: Any, labels: Any, variance: Any = None, *_: Any, **__: Any) -> InputCheck | None:
    """The module's check that torch makes inside ``gaussian_nll_loss``: variances >= 0 (NaN refused).

    The smallest variance is the fact; inputs the pure function refuses give no check.
    """
    if not isinstance(predictions, Tensor) or not isinstance(variance, Tensor):
        return None
    try:
        _variance("gaussian_nll", predictions, variance)
    except ValueError:
        return None
    if variance.numel() == 0:
        return None

    def judge(facts: list[float]) -> ValueError | None:
        (low,) = facts
        if low >= 0:  # a NaN fails
            return None
        return fail("gaussian_nll", "variance", "non-negative (NaN refused)", f"a minimum of {low:g}")

    return InputCheck(variance.detach().amin().reshape(1), judge)


@register_loss("gaussian_nll", [Feature.NUMBER, Feature.VECTOR], validate=_validate_gaussian)
def gaussian_nll(
    predictions: Tensor,
    labels: Tensor,
    variance: Tensor,
    *,
    full: Annotated[bool, Meta(description="add the constant ½ log 2π")] = False,
    eps: Annotated[float, Meta(gt=0.0, description="floor of the variance, for stability")] = 1e-6,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Gaussian negative log-likelihood of targets given a predicted mean and variance.

    For mean :math:`\mu_i` (the predictions), target :math:`y_i` and variance
    :math:`\sigma^2_i`:

    .. math::

        \ell_i = \tfrac12 \Bigl(\log \max(\sigma^2_i, \epsilon)
                 + \frac{(\mu_i - y_i)^2}{\max(\sigma^2_i, \epsilon)}\Bigr)
                 + [\text{full}]\,\tfrac12 \log 2\pi

    The floor :math:`\epsilon` is torch's clamp, and as in torch no gradient is cut
    by it: the gradient with respect to the variance is the one at the clamped value,
    passed through unchanged (a straight-through clamp). A 0-d tensor :math:`\epsilon`
    gets the gradient of the elements it clamps.

    torch checks inside ``gaussian_nll_loss`` that no variance is negative, which
    reads the tensor (a host sync: it fails under ``vmap`` and breaks
    ``torch.compile`` graphs). Here that check is the module's (``validate=``; it also
    refuses NaN), and the pure function runs under every transform: given a negative
    variance it computes with the floor :math:`\epsilon` in its place.

    Args:
        predictions: the means :math:`\mu`, any shape (``[B]`` for number outputs,
            ``[B, D]`` for vectors).
        labels: targets of the same shape (no broadcasting).
        variance: :math:`\sigma^2 \ge 0`, by torch's shape rules: the predictions'
            shape; that shape without its last dimension (one variance per row:
            ``[B]`` for ``[B, D]``); the predictions' rank with one dimension of size 1
            (``[B, 1]``, ``[B, 1, H, W]`` for ``[B, C, H, W]``), broadcast; or a Python
            number, one variance for all.
        full: add the constant :math:`\tfrac12 \log 2\pi`.
        eps: :math:`\epsilon > 0`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the predictions' shape); ``"sum"``:
        :math:`\sum_i \ell_i`; ``"mean"``: :math:`\frac1N \sum_i \ell_i` over the
        predictions' elements (0 for an empty batch). Each is
        ``torch.nn.functional.gaussian_nll_loss``'s number. Same dtype as ``predictions``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.gaussian_nll(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 3.0]), torch.tensor([1.0, 2.0]))
        tensor(0.9233)

    References:
        Nix and Weigend, `Estimating the mean and variance of the target probability
        distribution <https://doi.org/10.1109/ICNN.1994.374138>`_, 1994. Checked
        against ``torch.nn.functional.gaussian_nll_loss`` (values and gradients) for
        every reduction and the variance shapes it takes.
    """
    name = "gaussian_nll"
    x, y = _pair(name, predictions, labels)
    var = _variance(name, predictions, variance).to(x.dtype)
    floor = var.detach()
    floor = floor.clamp_min(eps) if not isinstance(eps, Tensor) else torch.maximum(floor, eps.to(x.dtype))
    clamped = var - var.detach() + floor  # the clamped value, the identity's gradient (torch's no_grad clamp)
    elementwise = 0.5 * (torch.log(clamped) + (x - y) ** 2 / clamped)
    if full:
        elementwise = elementwise + 0.5 * math.log(2 * math.pi)
    return reduce_loss(elementwise, reduction, name=name).to(predictions.dtype)
