"""The chunked arithmetic of ``linear_cross_entropy`` and its autograd Functions.

Tokens are taken ``rows`` at a time; a chunk's logits ``[rows, V]`` are the only
vocabulary-sized tensors that ever exist. Three routes, picked by the caller:

- `fused`: an in-place eager kernel. One pass computes the per-token losses and,
  when asked, the gradients of their sum with respect to the hidden states, the
  weight and the bias (three matrix products per chunk, as the naive form's
  forward and backward together). `_FusedSum` holds those gradients and its
  backward scales them by the upstream scalar in place: what a plain
  ``loss.backward()`` with ``reduction="mean"`` or ``"sum"`` runs.
- `_TokenLosses`: the per-token losses as a ``setup_context`` Function with a vmap
  rule (``generate_vmap_rule``), a backward that recomputes each chunk's logits
  from the saved inputs with differentiable operations (so it can be
  differentiated again: Hessians) and a ``jvp`` (forward mode). It serves every
  ``torch.func`` transform, ``reduction="none"`` and tensor hyperparameters that
  need a gradient. `_TokenLossesVJP` is the same without ``jvp``, for
  ``torch.compile`` (Dynamo cannot trace a Function that defines one).
- `token_losses`: the plain forward (no Function), when no gradient is wanted
  under ``torch.compile``.

For logits ``x = h W^T + b``, capped logits ``z = c tanh(x / c)`` (``z = x``
without a cap), ``lse = log sum_v exp(z_v)`` and ``p = exp(z - lse)``, the
per-token loss and its logit gradient are::

    loss = lse - z_y + eps (z_y - mean_v z_v) + lam lse^2
    d loss / d z = p (1 + 2 lam lse) - (1 - eps) onehot(y) - eps / V
    d loss / d x = d loss / d z * (1 - t^2),   t = tanh(x / c)

and a chunk adds ``g @ W`` (hidden), ``g^T @ h`` (weight) and ``sum(g)`` (bias)
for ``g = d loss / d x`` times the upstream gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._common import cast, compute_dtype
from ._softmax import is_zero

Hyper = Tensor | float | None

#: The logits of one chunk: 64 MiB (512 tokens of a 32k vocabulary in float32). Fewer tokens
#: per chunk cost time: each chunk streams the weight twice and its gradient once.
CHUNK_BYTES = 64 * 2**20


def default_rows(num_classes: int, dtype: torch.dtype) -> int:
    """Tokens per chunk: as many as fit `CHUNK_BYTES` of logits in ``dtype`` (the compute dtype)."""
    return max(1, CHUNK_BYTES // (max(num_classes, 1) * (torch.finfo(dtype).bits // 8)))


def _spans(n: int, rows: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each chunk; one empty chunk for no tokens (so shapes still flow)."""
    return [(s, min(s + rows, n)) for s in range(0, n, rows)] or [(0, 0)]


def _join(parts: list[Tensor]) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _add(total: Tensor | None, term: Tensor) -> Tensor:
    return term if total is None else total + term


# -- differentiable chunk arithmetic (every route but the fused kernel) ------------------------


class _Chunk:
    """One chunk's logits and what its loss and gradients are made of (out of place, vmap-safe)."""

    def __init__(self, h: Tensor, weight: Tensor, bias: Tensor | None, y: Tensor, keep: Tensor, hyper: Sequence[Hyper]):
        eps, lam, cap = hyper
        h = torch.where(keep.unsqueeze(-1), h, 0.0)  # a left-out token's hidden state (NaN, inf) reaches nothing
        self.h, self.y, self.keep, self.eps, self.lam, self.cap = h, y, keep, eps, lam, cap
        x = torch.matmul(h, weight.mT)
        self.x = x if bias is None else x + bias
        self.t = None if cap is None else torch.tanh(self.x / cap)
        self.z = self.x if cap is None else cap * self.t
        self.lse = torch.logsumexp(self.z, -1)
        self.zy = self.z.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        self.zmean = None if is_zero(eps) else self.z.mean(-1)

    def loss(self) -> Tensor:
        loss = self.lse - self.zy
        if self.zmean is not None:
            loss = loss + self.eps * (self.zy - self.zmean)
        if not is_zero(self.lam):
            loss = loss + self.lam * self.lse.square()
        return torch.where(self.keep, loss, 0.0)

    def grads(self) -> tuple[Tensor, Tensor]:
        """``(d loss / d z, d loss / d x)`` ``[rows, V]``, both 0 at left-out tokens."""
        p = torch.exp(self.z - self.lse.unsqueeze(-1))
        if not is_zero(self.lam):
            p = p * (1 + 2 * self.lam * self.lse).unsqueeze(-1)
        classes = torch.arange(self.z.shape[-1], device=self.z.device)
        hot = (classes == self.y.unsqueeze(-1)).to(p.dtype)
        dz = p - hot * (1 - self.eps)
        if not is_zero(self.eps):
            dz = dz - self.eps / self.z.shape[-1]
        dz = torch.where(self.keep.unsqueeze(-1), dz, 0.0)
        return dz, dz if self.t is None else dz * (1 - self.t * self.t)

    def by_hyper(self, dz: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Per-token derivatives with respect to ``(eps, lam, cap)`` (cap: None without one)."""
        zmean = self.z.mean(-1) if self.zmean is None else self.zmean
        by_eps = torch.where(self.keep, self.zy - zmean, 0.0)
        by_lam = torch.where(self.keep, self.lse.square(), 0.0)
        by_cap = None
        if self.t is not None:  # d z / d c = t - (x / c)(1 - t^2)
            by_cap = (dz * (self.t - (self.x / self.cap) * (1 - self.t * self.t))).sum(-1)
        return by_eps, by_lam, by_cap


def _chunks(hidden, weight, bias, labels, keep, hyper, rows):
    dtype = compute_dtype(hidden)
    w = cast(weight, dtype)
    b = None if bias is None else cast(bias, dtype)
    for s, e in _spans(hidden.shape[0], rows):
        yield s, e, _Chunk(cast(hidden[s:e], dtype), w, b, labels[s:e], keep[s:e], hyper), w


def token_losses(hidden, weight, bias, labels, keep, hyper: Sequence[Hyper], rows: int) -> Tensor:
    """Per-token losses ``[N]`` (0 at left-out tokens) in the compute dtype, chunk by chunk."""
    return _join([chunk.loss() for _, _, chunk, _ in _chunks(hidden, weight, bias, labels, keep, hyper, rows)])


def token_vjp(go, hidden, weight, bias, labels, keep, hyper, rows, needs) -> list[Tensor | None]:
    """Gradients of ``sum(go * losses)`` for ``needs`` = (hidden, weight, bias, eps, lam, cap).

    Each chunk's logits are recomputed; every operation is differentiable, so the
    result can be differentiated again (create_graph, Hessians).
    """
    gh: list[Tensor] = []
    gw = gb = ge = gl = gc = None
    for s, e, chunk, w in _chunks(hidden, weight, bias, labels, keep, hyper, rows):
        goc = cast(go[s:e], chunk.x.dtype)
        dz, dx = chunk.grads()
        g = dx * goc.unsqueeze(-1)
        if needs[0]:
            gh.append(torch.matmul(g, w))
        if needs[1]:
            gw = _add(gw, torch.matmul(g.mT, chunk.h))
        if needs[2]:
            gb = _add(gb, g.sum(-2))
        if any(needs[3:]):
            by_eps, by_lam, by_cap = chunk.by_hyper(dz * goc.unsqueeze(-1))
            ge = _add(ge, (goc * by_eps).sum()) if needs[3] else None
            gl = _add(gl, (goc * by_lam).sum()) if needs[4] else None
            gc = _add(gc, by_cap.sum()) if needs[5] else None
    out = [_join(gh) if needs[0] else None, gw, gb, ge, gl, gc]
    likes = (hidden, weight, bias, *hyper)
    return [None if g is None else cast(g, like.dtype) for g, like in zip(out, likes)]


def token_jvp(tangents, hidden, weight, bias, labels, keep, hyper, rows) -> Tensor:
    """The forward-mode derivative of the per-token losses, given tangents of (hidden, weight, bias, eps, lam, cap)."""
    hd, wd, bd, ed, ld, cd = tangents
    parts = []
    for s, e, chunk, w in _chunks(hidden, weight, bias, labels, keep, hyper, rows):
        dz, dx = chunk.grads()
        xd = None
        if hd is not None:
            xd = torch.matmul(cast(hd[s:e], w.dtype), w.mT)
        if wd is not None:
            xd = _add(xd, torch.matmul(chunk.h, cast(wd, w.dtype).mT))
        if bd is not None:
            xd = _add(xd, cast(bd, w.dtype).expand_as(chunk.x))
        out = torch.zeros_like(chunk.lse) if xd is None else (dx * xd).sum(-1)
        if ed is not None or ld is not None or cd is not None:
            by_eps, by_lam, by_cap = chunk.by_hyper(dz)
            for tangent, term in ((ed, by_eps), (ld, by_lam), (cd, by_cap)):
                if tangent is not None:
                    out = out + tangent * term
        parts.append(out)
    return _join(parts)


def _hyper_tensors(hyper: Sequence[Hyper]) -> list[Tensor | None]:
    return [v if isinstance(v, Tensor) else None for v in hyper]


class _TokenLossesVJP(torch.autograd.Function):
    """Per-token losses with a recomputing, differentiable backward; vmap by its generated rule."""

    generate_vmap_rule = True

    @staticmethod
    def forward(hidden, weight, bias, labels, keep, eps, lam, cap, rows):
        return token_losses(hidden, weight, bias, labels, keep, (eps, lam, cap), rows)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        hidden, weight, bias, labels, keep, eps, lam, cap, rows = inputs
        ctx.rows = rows
        ctx.numbers = [None if isinstance(v, Tensor) else v for v in (eps, lam, cap)]
        saved = (hidden, weight, bias, labels, keep, *_hyper_tensors((eps, lam, cap)))
        ctx.save_for_backward(*saved)
        ctx.save_for_forward(*saved)

    @staticmethod
    def backward(ctx: Any, go: Tensor):
        hidden, weight, bias, labels, keep, hyper = _saved(ctx)
        n = ctx.needs_input_grad
        by_hyper = (isinstance(v, Tensor) and n[5 + i] for i, v in enumerate(hyper))
        needs = (n[0], n[1], bias is not None and n[2], *by_hyper)
        gh, gw, gb, ge, gl, gc = token_vjp(go, hidden, weight, bias, labels, keep, hyper, ctx.rows, needs)
        return gh, gw, gb, None, None, ge, gl, gc, None


class _TokenLosses(_TokenLossesVJP):
    """`_TokenLossesVJP` with forward mode (``torch.func.jvp``, ``jacfwd``, ``hessian``)."""

    @staticmethod
    def jvp(ctx: Any, hd, wd, bd, _labels, _keep, ed, ld, cd, _rows) -> Tensor:
        hidden, weight, bias, labels, keep, hyper = _saved(ctx)
        tangents = (hd, wd, bd, *(t if isinstance(v, Tensor) else None for t, v in zip((ed, ld, cd), hyper)))
        return token_jvp(tangents, hidden, weight, bias, labels, keep, hyper, ctx.rows)


def _saved(ctx: Any):
    hidden, weight, bias, labels, keep, *tensors = ctx.saved_tensors
    hyper = tuple(t if n is None else n for t, n in zip(tensors, ctx.numbers))
    return hidden, weight, bias, labels, keep, hyper


# -- the fused eager kernel -------------------------------------------------------------------


def fused(hidden, weight, bias, labels, keep, hyper, rows, needs=(False, False, False)):
    """Per-token losses ``[N]`` (compute dtype) and the gradients of their sum for ``needs``
    = (hidden, weight, bias), in one in-place pass over reused ``[rows, V]`` buffers.

    Eager only: it writes into its own buffers (``out=``, ``addmm_``), which neither
    vmap nor Dynamo wants. Labels must be in range where ``keep`` (0 elsewhere).
    """
    eps, lam, cap = hyper
    n, width = hidden.shape
    vocabulary = weight.shape[0]
    dtype = compute_dtype(hidden)
    w = cast(weight, dtype)
    b = None if bias is None else cast(bias, dtype)
    grad = any(needs)
    rows = max(1, min(rows, n))
    buffer = torch.empty(rows, vocabulary, dtype=dtype, device=hidden.device)
    tanh_buffer = torch.empty_like(buffer) if cap is not None and grad else None
    losses = torch.empty(n, dtype=dtype, device=hidden.device)
    gh = torch.empty(n, width, dtype=hidden.dtype, device=hidden.device) if needs[0] else None
    gw = torch.zeros(vocabulary, width, dtype=dtype, device=hidden.device) if needs[1] else None
    gb = torch.zeros(vocabulary, dtype=dtype, device=hidden.device) if needs[2] else None
    weights = keep.to(dtype).unsqueeze(1)
    for s, e in _spans(n, rows):
        if e == s:
            break
        y = labels[s:e].unsqueeze(1)
        kept, weight_n = keep[s:e].unsqueeze(1), weights[s:e]
        # a where, not the 0 weight: a left-out token's NaN hidden state would reach g^T h and sum(g)
        h = torch.where(kept, cast(hidden[s:e], dtype), 0.0)
        x = buffer[: e - s]
        torch.mm(h, w.T, out=x)
        if b is not None:
            x.add_(b)
        t = None
        if cap is not None:
            x.div_(cap).tanh_()
            if tanh_buffer is not None:
                t = tanh_buffer[: e - s].copy_(x)
            x.mul_(cap)
        top = x.amax(1, keepdim=True)
        zy = x.gather(1, y)
        loss = -zy
        if not is_zero(eps):
            loss = loss + eps * (zy - x.mean(1, keepdim=True))
        total = x.sub_(top).exp_().sum(1, keepdim=True)  # x is exp(z - max) from here
        lse = total.log().add_(top)
        loss = loss + lse
        if not is_zero(lam):
            loss = loss + lam * lse.square()
        losses[s:e] = torch.where(kept, loss, 0.0).squeeze(1)
        if not grad:
            continue
        scale = weight_n / total
        if not is_zero(lam):
            scale = scale * (1 + 2 * lam * lse)
        x.mul_(scale)  # p (1 + 2 lam lse), 0 at left-out tokens
        x.scatter_add_(1, y, weight_n * (eps - 1))
        if not is_zero(eps):
            x.sub_(weight_n * (eps / vocabulary))
        if t is not None:
            x.mul_(t.mul_(t).neg_().add_(1))  # chain rule of the cap: 1 - tanh^2
        if gb is not None:
            gb.add_(x.sum(0))
        if gh is not None:
            if gh.dtype == dtype:
                torch.mm(x, w, out=gh[s:e])
            else:
                gh[s:e] = torch.mm(x, w)
        if gw is not None:
            gw.addmm_(x.T, h)
    grads = [gh, None if gw is None else cast(gw, weight.dtype), None if gb is None else cast(gb, bias.dtype)]
    return losses, grads


class _FusedSum(torch.autograd.Function):
    """``sum`` of the per-token losses, its gradients computed in the forward (plain autograd).

    The backward hands the stored gradients over, scaled in place by the upstream
    scalar (no second gradient-sized buffer). A backward that cannot use them
    recomputes instead, through `token_vjp`: a second one (``retain_graph=True``),
    or one that is to be differentiated again (``create_graph=True``).
    """

    @staticmethod
    def forward(ctx: Any, hidden, weight, bias, labels, keep, eps, lam, cap, rows):
        hyper = (eps, lam, cap)
        needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], bias is not None and ctx.needs_input_grad[2])
        losses, grads = fused(hidden, weight, bias, labels, keep, hyper, rows, needs)
        ctx.save_for_backward(hidden, weight, bias, labels, keep)
        ctx.hyper, ctx.rows, ctx.needs, ctx.grads = hyper, rows, needs, grads
        return losses.sum()  # in the compute dtype: a float16 sum may overflow where its mean does not

    @staticmethod
    def backward(ctx: Any, go: Tensor):
        grads, ctx.grads = ctx.grads, None
        if grads is None or torch.is_grad_enabled():
            hidden, weight, bias, labels, keep = ctx.saved_tensors
            go = go.expand(hidden.shape[0])
            needs = (*ctx.needs, False, False, False)
            grads = token_vjp(go, hidden, weight, bias, labels, keep, ctx.hyper, ctx.rows, needs)[:3]
        else:
            grads = [None if g is None else g.mul_(go) for g in grads]
        return (*grads, None, None, None, None, None, None)


def fused_sum(hidden, weight, bias, labels, keep, hyper, rows) -> Tensor:
    return _FusedSum.apply(hidden, weight, bias, labels, keep, *hyper, rows)


def recomputing(hidden, weight, bias, labels, keep, hyper, rows, *, compiling: bool) -> Tensor:
    """Per-token losses through `_TokenLosses` (`_TokenLossesVJP` under ``torch.compile``)."""
    if compiling:
        return _TokenLossesVJP.apply(hidden, weight, bias, labels, keep, *hyper, rows)
    return _TokenLosses.apply(hidden, weight, bias, labels, keep, *hyper, rows)
