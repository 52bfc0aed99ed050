"""The public helpers of the tempered family: :func:`log_t`, :func:`exp_t`,
:func:`tempered_softmax` and :func:`tempered_sigmoid`.

The closed forms live in ``_tempered_forms.py``, the normalization of the tempered
softmax and its implicit derivative in ``_tempered_partition.py``, the losses built on
them in ``_tempered.py``.

Amid, Warmuth, Anil and Koren, `Robust Bi-Tempered Logistic Loss Based on Bregman
Divergences <https://arxiv.org/abs/1906.03361>`_, NeurIPS 2019; checked against the
authors' reference implementation (google/bi-tempered-loss, JAX version) through the
vectors in ``tests/data/bitempered_reference.json``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ._common import check_floating, check_min_rank, compute_dtype
from ._tempered_forms import Temperature, _iterations, _log_exp_t, _log_t_exp, _temperature
from ._tempered_partition import _TemperedSoftmax

__all__ = ["exp_t", "log_t", "tempered_sigmoid", "tempered_softmax"]


# -- public helpers -----------------------------------------------------------------


def _helper_inputs(fn: str, u: Any, t: Any) -> tuple[Tensor, Temperature]:
    check_floating(fn, "input", u)
    x = u.to(compute_dtype(u))
    return x, _temperature(t, x, fn, "t")


def log_t(u: Tensor, t: Temperature) -> Tensor:
    r"""Tempered logarithm :math:`\log_t u = \frac{u^{1-t} - 1}{1 - t}` (``log`` at ``t = 1``).

    Elementwise, for :math:`u \ge 0`: concave and increasing, with
    :math:`\log_t 1 = 0`; bounded below by :math:`-1/(1-t)` (its value at 0) for
    :math:`t < 1`. Computed as ``expm1((1 - t) log u) / (1 - t)``, accurate for ``t``
    near 1; a tensor ``t`` switches to the series in :math:`1 - t` there, so
    ``t = 1`` is exact and the derivative with respect to ``t`` is finite and right.

    .. math::

        \log_t u = \frac{u^{1-t} - 1}{1 - t} \quad (t \ne 1), \qquad \log_1 u = \log u

    Args:
        u: a tensor of any shape, :math:`u \ge 0` (NaN below 0, like ``log``).
        t: the temperature, a number or a 0-d tensor.

    Returns:
        A tensor of ``u``'s shape and dtype (computed in float32 for half precision).

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.log_t(torch.tensor([0.0, 0.5, 1.0, 4.0]), 0.5)
        tensor([-2.0000, -0.5858,  0.0000,  2.0000])

    References:
        Naudts, `Deformed exponentials and logarithms in generalized thermostatistics
        <https://arxiv.org/abs/cond-mat/0203489>`_, 2002; as used by Amid et al.,
        `Robust Bi-Tempered Logistic Loss <https://arxiv.org/abs/1906.03361>`_, 2019.
        Checked against ``log_t`` of google/bi-tempered-loss.
    """
    x, t = _helper_inputs("log_t", u, t)
    a = 1.0 - t
    positive = x > 0
    value = _log_t_exp(torch.log(torch.where(positive, x, 1.0)), a)
    if isinstance(a, Tensor):
        at_zero = torch.where(a > 0, -1.0 / torch.where(a > 0, a, 1.0), -math.inf)
    else:
        at_zero = -1.0 / a if a > 0 else -math.inf
    # where(tensor, tensor, number) keeps the tensor's dtype (two numbers would make float32)
    out = torch.where(x < 0, math.nan, torch.where(positive, value, at_zero))
    return out.to(u.dtype)


def exp_t(u: Tensor, t: Temperature) -> Tensor:
    r"""Tempered exponential :math:`\exp_t u = [1 + (1 - t) u]_+^{1/(1-t)}` (``exp`` at ``t = 1``).

    Elementwise, the inverse of :func:`log_t` on its range. For :math:`t < 1` it is 0
    below :math:`u = -1/(1-t)` (finite support); for :math:`t > 1` it has a pole at
    :math:`u = 1/(t-1)` and is ``inf`` from there on, as in the reference. Computed as
    ``exp(log1p((1 - t) u) / (1 - t))``; a tensor ``t`` switches to the series in
    :math:`1 - t` near 1, so ``t = 1`` is exact and d/dt is right there.

    .. math::

        \exp_t u = [1 + (1 - t) u]_+^{1/(1-t)} \quad (t \ne 1), \qquad \exp_1 u = e^u

    Args:
        u: a tensor of any shape.
        t: the temperature, a number or a 0-d tensor.

    Returns:
        A tensor of ``u``'s shape and dtype (computed in float32 for half precision).

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.exp_t(torch.tensor([-3.0, -1.0, 0.0, 1.0]), 0.5)
        tensor([0.0000, 0.2500, 1.0000, 2.2500])

    References:
        Naudts, `Deformed exponentials and logarithms in generalized thermostatistics
        <https://arxiv.org/abs/cond-mat/0203489>`_, 2002; as used by Amid et al.,
        `Robust Bi-Tempered Logistic Loss <https://arxiv.org/abs/1906.03361>`_, 2019.
        Checked against ``exp_t`` of google/bi-tempered-loss.
    """
    x, t = _helper_inputs("exp_t", u, t)
    a = 1.0 - t
    log_value, inside = _log_exp_t(x, a)
    if inside is None:
        return torch.exp(log_value).to(u.dtype)
    beyond = torch.where(a > 0, 0.0, math.inf) if isinstance(a, Tensor) else (0.0 if a > 0 else math.inf)
    return torch.where(inside, torch.exp(log_value), beyond).to(u.dtype)


def tempered_softmax(logits: Tensor, t: Temperature, *, num_iters: int = 5) -> Tensor:
    r"""Tempered softmax over the last dimension: :math:`\exp_t(x - \lambda(x))`, normalized.

    :math:`\lambda` is chosen so the probabilities sum to 1: exactly (``softmax``) at
    ``t = 1``, by ``num_iters`` fixed-point steps for ``t > 1`` (heavy tail: every class
    keeps some probability), by ``num_iters`` bisection steps for ``t < 1`` (finite
    support: classes far below the top get exactly 0), the reference's methods. The
    sum is 1 up to the method's precision (20 steps: within 1e-5 in float32 for
    50000 classes). Gradients never go through the steps: they use the implicit
    derivative of :math:`\lambda` (that of the exact normalization, taken where the
    steps end), so a bisection still has a gradient; ``t`` may be a 0-d tensor (all
    three methods run and the right one is selected) and has one too.

    .. math::

        p_{c} = \exp_t(x_{c} - \lambda), \qquad \textstyle\sum_c \exp_t(x_c - \lambda) = 1

    Args:
        logits: ``[..., C]``.
        t: the temperature :math:`t > 0`, a number or a 0-d tensor.
        num_iters: steps of the normalization (``t != 1``).

    Returns:
        Probabilities ``[..., C]``, same dtype as ``logits`` (computed in float32 for
        half precision).

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.tempered_softmax(torch.tensor([[-0.5, 0.1, 2.0]]), 4.0)
        tensor([[0.3205, 0.3271, 0.3523]])

    References:
        Amid, Warmuth, Anil and Koren, `Robust Bi-Tempered Logistic Loss Based on
        Bregman Divergences <https://arxiv.org/abs/1906.03361>`_, NeurIPS 2019;
        checked against ``tempered_softmax`` of google/bi-tempered-loss.
    """
    name = "tempered_softmax"
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 1, "[..., C]")
    x = logits.to(compute_dtype(logits))
    t = _temperature(t, x, name, "t")
    if not isinstance(t, Tensor) and t == 1.0:
        return torch.softmax(x, -1).to(logits.dtype)
    return _TemperedSoftmax(x, t, _iterations(num_iters, name)).power(1.0).to(logits.dtype)


def tempered_sigmoid(logits: Tensor, t: Temperature, *, num_iters: int = 5) -> Tensor:
    r"""Tempered sigmoid: the positive-class probability of ``tempered_softmax([0, x])``.

    Elementwise; ``sigmoid`` at ``t = 1``. As in the reference, the logit :math:`x`
    is the activation of the positive class against 0 for the negative one.

    .. math::

        \sigma_t(x) = \exp_t(x - \lambda), \qquad \exp_t(-\lambda) + \exp_t(x - \lambda) = 1

    Args:
        logits: a tensor of any shape.
        t: the temperature :math:`t > 0`, a number or a 0-d tensor.
        num_iters: steps of the normalization (``t != 1``).

    Returns:
        Probabilities of ``logits``' shape and dtype.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.tempered_sigmoid(torch.tensor([0.0, 3.0, 6.0]), 4.0)
        tensor([0.5000, 0.5852, 0.6421])

    References:
        Amid, Warmuth, Anil and Koren, `Robust Bi-Tempered Logistic Loss Based on
        Bregman Divergences <https://arxiv.org/abs/1906.03361>`_, NeurIPS 2019;
        checked against ``tempered_sigmoid`` of google/bi-tempered-loss.
    """
    name = "tempered_sigmoid"
    check_floating(name, "logits", logits)
    x = logits.to(compute_dtype(logits))
    t = _temperature(t, x, name, "t")
    if not isinstance(t, Tensor) and t == 1.0:
        return torch.sigmoid(x).to(logits.dtype)
    pair = torch.stack([torch.zeros_like(x), x], -1)
    return _TemperedSoftmax(pair, t, _iterations(num_iters, name)).power(1.0)[..., 1].to(logits.dtype)
