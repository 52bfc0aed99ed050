"""The normalization of the tempered softmax and its implicit derivative.

The log-partition ``lambda`` with ``sum exp_t(x - lambda) = 1`` is found iteratively
(fixed point for ``t > 1``, bisection for ``t < 1``, as the authors' reference does,
with a fixed number of steps). Autograd through those steps would be wrong (a
bisection is made of comparisons), so an autograd Function (`_LogPartition`) gives it
its implicit derivative: the escort distribution ``p^t / sum(p^t)`` with respect to
the logits, and the implicit derivative with respect to ``t``, in reverse and forward
mode. Everything after it is plain autograd, which reproduces the reference's
hand-written gradient (and, through `_TemperedSoftmax.beyond_support`, its value
outside the support at ``t1 = t2``).

Speed: with a temperature given as a number, the eager path raises the base
``1 + (1 - t) z`` with one ``pow`` and runs the normalizer's loops in place; under
``torch.compile`` the log1p/exp forms are used instead (they fuse better).

Amid, Warmuth, Anil and Koren, `Robust Bi-Tempered Logistic Loss Based on Bregman
Divergences <https://arxiv.org/abs/1906.03361>`_, NeurIPS 2019.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._tempered_forms import (
    Temperature,
    _base,
    _base_power,
    _log_exp_t,
    _log_t_exp,
    _masked,
    _power_form,
    _series_threshold,
)


def _exp_t_sum(z: Tensor, scale: Tensor | float, a: Temperature) -> Tensor:
    """``sum_c [1 + a scale z_c]_+^(1/a)`` for ``a != 0``: the normalizers' inner loop.

    Computed as ``exp(log1p(a scale z) / a)`` in place on one fresh tensor: it runs in
    the Function's forward (no autograd), is accurate for ``a`` near 0, and is faster
    than ``pow`` on the CPU. ``scale`` is per row (``[..., 1]``) or a number.
    """
    u = torch.mul(z, scale * a)
    if isinstance(a, Tensor) or a > 0.0:
        u = u.clamp_min_(-1.0)  # outside the support: log1p(-1) = -inf, so exp_t = 0
    return u.log1p_().mul_(1.0 / a).exp_().sum(-1, keepdim=True)


def _fixed_point(x: Tensor, a: Temperature, num_iters: int) -> Tensor:
    """Log-partition for ``t > 1`` (``a < 0``): the reference's fixed-point iteration.

    ``z_{k+1} = z_0 Z_k^(1 - t)`` with ``Z_k = sum exp_t(z_k)``, ``z_0 = x - max x``;
    then ``lambda = max x - log_t(1 / Z)``.
    """
    mu = x.amax(-1, keepdim=True)
    start = x - mu
    scale: Tensor | float = 1.0
    for _ in range(num_iters):
        scale = _exp_t_sum(start, scale, a).pow(a)
    partition = _exp_t_sum(start, scale, a)
    return mu - _log_t_exp(-torch.log(partition), a)  # mu - log_t(1 / Z)


def _bisection(x: Tensor, a: Temperature, num_iters: int) -> Tensor:
    """Log-partition for ``t < 1`` (``a > 0``): the reference's bisection.

    The root lies in ``[0, -log_t(1 / d)]`` after the max shift, ``d`` the number of
    classes inside the support of the largest one (the effective dimension); each
    step keeps the half whose midpoint gives a mass on the right side of 1.
    """
    mu = x.amax(-1, keepdim=True)
    shifted = x - mu
    effective_dim = (shifted > -1.0 / a).sum(-1, keepdim=True).to(x.dtype)
    lower = torch.zeros_like(effective_dim)
    upper = -_log_t_exp(-torch.log(effective_dim), a)
    scaled = shifted * a
    for _ in range(num_iters):
        middle = (upper + lower) / 2.0
        # sum exp_t(shifted - middle) = sum exp(log1p(a shifted - a middle) / a), in place
        u = torch.sub(scaled, a * middle).clamp_min_(-1.0)
        below = u.log1p_().mul_(1.0 / a).exp_().sum(-1, keepdim=True) < 1.0
        lower = torch.where(below, lower, middle)
        upper = torch.where(below, middle, upper)
    return (upper + lower) / 2.0 + mu


def _normalize(x: Tensor, t: Temperature, num_iters: int) -> Tensor:
    """``lambda`` ``[..., 1]`` with ``sum exp_t(x - lambda) = 1`` (to the method's precision)."""
    if not isinstance(t, Tensor):
        if t == 1.0:
            return torch.logsumexp(x, -1, keepdim=True)
        if t > 1.0:
            return _fixed_point(x, 1.0 - t, num_iters)
        return _bisection(x, 1.0 - t, num_iters)
    # a tensor temperature: every method, each fed a valid temperature, then select
    low = t < 1.0
    exact = torch.logsumexp(x, -1, keepdim=True)
    fixed = _fixed_point(x, torch.where(t > 1.0, 1.0 - t, -1.0), num_iters)
    bisected = _bisection(x, torch.where(low, 1.0 - t, 0.5), num_iters)
    return torch.where(t == 1.0, exact, torch.where(low, bisected, fixed))


def _sensitivities(
    x: Tensor, lam: Tensor, t: Temperature, want_t: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(p^t, sum p^t, d lambda / d t)`` at ``lambda``; ``d lambda / d x = p^t / sum p^t``.

    Both derivatives follow from differentiating ``sum_c exp_t(x_c - lambda, t) = 1``
    (implicit function theorem), using ``d exp_t(z) / dz = exp_t(z)^t``:
    ``d lambda / d x`` is the escort distribution ``p^t / sum p^t`` and
    ``d lambda / d t = sum d_t p / sum p^t`` with
    ``d_t p = p d_t log p = (p log p - z p^t) / (1 - t)`` (series near ``(1 - t) z = 0``).
    Written with differentiable operations, so the Hessian is their derivative.
    """
    a = 1.0 - t
    if not want_t and _power_form(a):
        base = _base(x, lam, a)  # p^t = base^(t / a)
        p_t = _base_power(base, t / a) if a > 0.0 else base.pow(t / a)
        return p_t, p_t.sum(-1, keepdim=True), None
    z = x - lam
    log_p, inside = _log_exp_t(z, a, nonpositive=True)
    p_t = _masked(torch.exp(log_p * t), inside, 0.0)
    total = p_t.sum(-1, keepdim=True)
    if not want_t:
        return p_t, total, None
    p = _masked(torch.exp(log_p), inside, 0.0)
    u = z * a
    small = u.abs() < _series_threshold(z.dtype)
    general = (p * log_p - z * p_t) / torch.where(small, 1.0, a)
    z_small = torch.where(small, z, 0.0)
    u_small = z_small * a
    # (p z) z, not p z^2: far below the top z^2 overflows where p is 0 (0 * inf)
    series = p * z_small * z_small * (1 / 2 + u_small * (-2 / 3 + u_small * (3 / 4 + u_small * (-4 / 5))))
    dp_dt = torch.where(small, series, general)
    return p_t, total, dp_dt.sum(-1, keepdim=True) / total


class _LogPartitionVJP(torch.autograd.Function):
    """``lambda(x, t)`` with its implicit derivative (see `_sensitivities`): reverse mode.

    The forward runs the iterative method; backward never looks at its steps, and is
    itself differentiable (double backward, Hessians). This class has no ``jvp``
    because Dynamo cannot trace a Function that defines one ("Unsupported custom
    jvp", torch 2.13): it is what ``torch.compile`` sees. `_LogPartition` adds it.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, t: Temperature, num_iters: int) -> Tensor:
        return _normalize(x, t, num_iters)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, t, _ = inputs
        ctx.t_is_tensor = isinstance(t, Tensor)
        if ctx.t_is_tensor:
            ctx.save_for_backward(x, t, output)
            ctx.save_for_forward(x, t, output)
        else:
            ctx.t = t
            ctx.save_for_backward(x, output)
            ctx.save_for_forward(x, output)

    @staticmethod
    def backward(ctx: Any, grad_lam: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x, t, lam = _saved(ctx)
        want_t = ctx.t_is_tensor and ctx.needs_input_grad[1]
        p_t, total, dlam_dt = _sensitivities(x, lam, t, want_t)
        grad_x = p_t * (grad_lam / total) if ctx.needs_input_grad[0] else None
        grad_t = (grad_lam * dlam_dt).sum() if want_t else None
        return grad_x, grad_t, None


class _LogPartition(_LogPartitionVJP):
    """`_LogPartitionVJP` with forward mode too (``torch.func.jvp``, ``jacfwd``, ``hessian``)."""

    @staticmethod
    def jvp(ctx: Any, x_dot: Tensor | None, t_dot: Tensor | None, _: Any) -> Tensor:
        x, t, lam = _saved(ctx)
        want_t = ctx.t_is_tensor and t_dot is not None
        p_t, total, dlam_dt = _sensitivities(x, lam, t, want_t)
        lam_dot = torch.zeros_like(lam) if x_dot is None else (p_t * x_dot).sum(-1, keepdim=True) / total
        if want_t:
            lam_dot = lam_dot + dlam_dt * t_dot
        return lam_dot


def _saved(ctx: Any) -> tuple[Tensor, Temperature, Tensor]:
    if ctx.t_is_tensor:
        x, t, lam = ctx.saved_tensors
    else:
        (x, lam), t = ctx.saved_tensors, ctx.t
    return x, t, lam


def _log_partition(x: Tensor, t: Temperature, num_iters: int) -> Tensor:
    """``lambda`` through the Function that the context can use.

    Eager (and every ``torch.func`` transform): `_LogPartition`. Under
    ``torch.compile``: `_LogPartitionVJP` when a gradient is needed, else the plain
    forward (Dynamo would build a Function context object for nothing).
    """
    if torch.compiler.is_compiling():
        wanted = torch.is_grad_enabled() and (x.requires_grad or (isinstance(t, Tensor) and t.requires_grad))
        if not wanted:
            return _normalize(x, t, num_iters)
        return _LogPartitionVJP.apply(x, t, num_iters)
    return _LogPartition.apply(x, t, num_iters)


class _TemperedSoftmax:
    """``p = exp_t(x - lambda)`` over the last dimension, held so its powers are cheap.

    For a temperature given as a number with ``|1 - t| >= 0.05``: the base
    ``b = 1 + (1 - t)(x - lambda)``, ``p = b^(1 / (1 - t))``, so ``p^e`` is one ``pow``.
    Otherwise (``t = 1``, ``t`` near 1, a tensor ``t``): ``log p``, so ``p^e = exp(e log p)``.
    ``p = 0`` outside the support (``t < 1``): the base is ``<= 0`` there, and the log
    form keeps an ``inside`` mask with a harmless placeholder (0) for the log, so no
    ``inf`` reaches a gradient.
    """

    def __init__(self, x: Tensor, t: Temperature, num_iters: int) -> None:
        self.base: Tensor | None = None
        self.log_p: Tensor | None = None
        self.inside: Tensor | None = None
        self.a = 1.0 - t
        self.x = self.lam = None
        if not isinstance(t, Tensor) and t == 1.0:
            self.log_p = torch.log_softmax(x, -1)
            return
        # Shift by the row's max first (detached: p is shift-invariant, so the gradient
        # and every higher derivative are unchanged). Otherwise lambda would be absolute:
        # for |x| ~ 1/eps it holds its O(1) offset from the max in no bits, and the base
        # 1 + (1 - t)(x - lambda) of the top class rounds to 0 or below (inf, NaN).
        x = x - x.amax(-1, keepdim=True).detach()
        lam = _log_partition(x, t, num_iters)
        self.x, self.lam = x, lam
        if _power_form(self.a):
            self.base = _base(x, lam, self.a)  # <= 0 outside the support (t < 1)
        else:
            self.log_p, self.inside = _log_exp_t(x - lam, self.a, nonpositive=True)

    def beyond_support(self, index: Tensor | None = None) -> Tensor | None:
        """0 in value; outside the support (``t < 1``) the derivative of ``x - lambda``.

        ``log_t(p) = x - lambda`` inside the support and ``-1 / (1 - t)`` (constant)
        outside it. Added to ``log_t1(p)`` at ``t1 = t``, this term continues that log
        past the edge in its derivatives only, which gives the reference's gradient
        ``p - y`` there (its forget factor ``p^(t2 - t1)`` is 1): a class with positive
        target outside the support is pulled back in, not left with a zero gradient.
        ``None`` when there is no edge (``t >= 1``), at ``index`` if given.
        """
        if self.base is not None:
            if self.a < 0.0:
                return None
            outside = self.base <= 0.0
        elif self.inside is None:
            return None
        else:
            outside = ~self.inside
        z = self.x - self.lam
        if index is not None:
            outside = outside.gather(-1, index).squeeze(-1)
            z = z.gather(-1, index).squeeze(-1)
        return torch.where(outside, z - z.detach(), 0.0)

    def power(self, e: Temperature) -> Tensor:
        """``p^e`` for ``e > 0`` (0 outside the support)."""
        if self.base is not None:
            k = e / self.a
            return _base_power(self.base, k) if self.a > 0.0 else self.base.pow(k)
        return _masked(torch.exp(self.log_p * e), self.inside, 0.0)

    def log(self, index: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``(log p, inside)``, at ``index`` along the last dimension if given (0 outside)."""
        if self.base is not None:
            base = self.base if index is None else self.base.gather(-1, index).squeeze(-1)
            if self.a < 0.0:
                return torch.log(base) / self.a, None
            inside = base > 0.0
            return torch.log(torch.where(inside, base, 1.0)) / self.a, inside
        inside = self.inside
        if index is not None and inside is not None:
            inside = inside.gather(-1, index).squeeze(-1)
        log_p = self.log_p if index is None else self.log_p.gather(-1, index).squeeze(-1)
        return log_p, inside
