"""The elementwise pieces of the tempered family: closed forms and their series at ``t = 1``.

``log_t(e^s)`` and ``log exp_t(z)`` with ``a = 1 - t``, their series in ``a`` (exact at
``t = 1``, accurate d/dt near it), the support mask of a finite-support exp, how a
temperature and an iteration count are read, and the power form that eager code uses
for a temperature given as a number. Used by ``_tempered_partition.py`` (the
normalization) and ``_tempered_math.py`` (the public helpers).

A temperature given as a Python number picks its closed form in Python. A
temperature given as a 0-d tensor (a grid under ``vmap``, a gradient with respect to
it) computes every form and selects with ``torch.where``; the branch that is not
selected is fed harmless inputs (the "double where"), so it cannot put a NaN into a
gradient.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import Tensor

from ._common import fail, shape

#: A temperature: a Python number, or a 0-d tensor (vmap over it, grad with respect to it).
Temperature = float | Tensor


# -- elementwise closed forms and their series at t = 1 ------------------------------------


def _series_threshold(dtype: torch.dtype) -> float:
    """Below this |(1 - t) x| the 5-term series in (1 - t) replaces the closed form.

    eps^(1/5): the truncation error of the series and the cancellation error of the
    closed form's derivative with respect to t are then both about eps^(4/5).
    """
    return torch.finfo(dtype).eps ** 0.2


def _log_t_exp(s: Tensor, a: Temperature) -> Tensor:
    """``(exp(a s) - 1) / a``, i.e. ``log_t(e^s)`` with ``a = 1 - t``; ``s`` at ``a = 0``.

    ``s`` must be finite. With a tensor ``a`` the series
    ``s (1 + v/2 + v^2/6 + v^3/24 + v^4/120)``, ``v = a s``, is used where ``|v|`` is
    small, so ``a = 0`` (``t = 1``) needs no separate branch and d/da is right there.
    """
    if not isinstance(a, Tensor):
        return s if a == 0.0 else torch.expm1(s * a) / a
    v = s * a
    small = v.abs() < _series_threshold(s.dtype)
    general = torch.expm1(torch.where(small, 0.0, v)) / torch.where(small, 1.0, a)
    s_small = torch.where(small, s, 0.0)
    v_small = s_small * a
    series = s_small * (1 + v_small * (1 / 2 + v_small * (1 / 6 + v_small * (1 / 24 + v_small / 120))))
    return torch.where(small, series, general)


def _log_exp_t(z: Tensor, a: Temperature, *, nonpositive: bool = False) -> tuple[Tensor, Tensor | None]:
    """``(log exp_t(z), inside)`` with ``a = 1 - t``: ``log1p(a z) / a``, ``z`` at ``a = 0``.

    ``inside`` marks the support ``1 + a z > 0`` (``None`` when it is everything); the
    log is 0 (not -inf) outside it, so callers select their boundary value with
    ``torch.where(inside, ...)`` and no -inf reaches a gradient. ``nonpositive``
    promises ``z <= 0``, for which ``t >= 1`` has no boundary.
    """
    if not isinstance(a, Tensor):
        if a == 0.0:
            return z, None
        u = z * a
        if a < 0.0 and nonpositive:
            return torch.log1p(u) / a, None
        inside = u > -1.0
        return torch.log1p(torch.where(inside, u, 0.0)) / a, inside
    u = z * a
    inside = u > -1.0
    small = u.abs() < _series_threshold(z.dtype)
    general = torch.log1p(torch.where(inside & ~small, u, 0.0)) / torch.where(small, 1.0, a)
    z_small = torch.where(small, z, 0.0)
    u_small = z_small * a
    series = z_small * (1 + u_small * (-1 / 2 + u_small * (1 / 3 + u_small * (-1 / 4 + u_small / 5))))
    return torch.where(small, series, general), inside


def _masked(values: Tensor, inside: Tensor | None, outside: Any) -> Tensor:
    return values if inside is None else torch.where(inside, values, outside)


def _temperature(t: Any, like: Tensor, fn: str, arg: str) -> Temperature:
    """A Python float, or a 0-d tensor in ``like``'s dtype and device."""
    if isinstance(t, Tensor):
        if t.ndim != 0:
            raise fail(fn, arg, "a number or a 0-d tensor", f"a tensor of shape {shape(t)}")
        return t.to(dtype=like.dtype, device=like.device)
    try:
        return float(t)
    except (TypeError, ValueError):
        raise fail(fn, arg, "a number or a 0-d tensor", type(t).__name__) from None


def _iterations(num_iters: Any, fn: str) -> int:
    """The loop count. A 0-d integer tensor is read once (it sets the graph's length)."""
    try:
        return operator.index(num_iters)
    except TypeError:
        raise fail(fn, "num_iters", "an integer", repr(num_iters)) from None



# -- the power form -------------------------------------------------------------------


#: |1 - t| from which a temperature given as a number uses the power form
#: ``[1 + (1 - t) z]^(e / (1 - t))`` (one ``pow``); closer to 1 the rounding of the base
#: would be amplified by ``1 / |1 - t|``, and ``exp(e log1p((1 - t) z) / (1 - t))`` is used.
_POWER_FORM = 0.05


def _power_form(a: Temperature) -> bool:
    """Use ``pow`` of the base: in eager mode (fewer passes over memory than log1p, mul,
    exp). Under ``torch.compile`` the exp/log1p form fuses and Inductor's ``pow`` is the
    slower one (about 1.7x for the whole loss on the CPU), so it is not used there."""
    return not isinstance(a, Tensor) and abs(a) >= _POWER_FORM and not torch.compiler.is_compiling()


def _base(x: Tensor, lam: Tensor, a: float) -> Tensor:
    """``1 + a (x - lambda)`` in one pass (``lambda`` is ``[..., 1]``)."""
    return torch.add(1.0 - a * lam, x, alpha=a)


def _base_power(base: Tensor, k: float) -> Tensor:
    """``[base]_+^k`` for ``k > 0``, with a finite gradient everywhere.

    For ``k >= 1`` a clamp is enough (the derivative ``k b^(k-1)`` is finite at 0);
    for ``k < 1`` it is not, and the "double where" keeps 0 out of ``pow``.
    """
    if k >= 1.0:
        return base.clamp_min(0.0).pow(k)
    inside = base > 0.0
    return torch.where(inside, torch.where(inside, base, 1.0).pow(k), 0.0)
