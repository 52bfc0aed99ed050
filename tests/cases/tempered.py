"""Cases for the tempered family: the bi-tempered logistic losses (multiclass and binary).

The reference is a line-by-line transcription of the authors' algorithm
(google/bi-tempered-loss, ``jax/loss.py``: power forms, one-hot labels, the same
fixed-point and bisection steps), written in plain torch and independent of
lossfn's implementation (series, implicit gradients, index labels). It is itself
checked against the stored JAX vectors in ``tests/test_tempered.py``. At
``t1 = t2 = 1`` with index labels it is ``torch.nn.functional.cross_entropy``.

The parameter grids cover ``t2 > 1`` (fixed point), ``t2 < 1`` (bisection),
``t2 = 1``, ``t1 = 1`` and label smoothing; the last setting (used by the compile
and half-precision checks) has ``t2 > 1``, whose fixed point is smooth in the
inputs, so float32/float16 rounding cannot flip a bisection step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import Case, Twin, class_logits, elementwise, reduce_like_torch as _reduce
from .core import binary, indices


def _exp_t(u: Tensor, t: float) -> Tensor:
    if t == 1.0:
        return torch.exp(u)
    return torch.clamp_min(1.0 + (1.0 - t) * u, 0.0) ** (1.0 / (1.0 - t))


def _log_t(u: Tensor, t: float) -> Tensor:
    if t == 1.0:
        return torch.log(u)
    return (u ** (1.0 - t) - 1.0) / (1.0 - t)


def _normalization(x: Tensor, t: float, num_iters: int) -> Tensor:
    mu = x.max(-1, keepdim=True).values
    shifted = x - mu
    if t == 1.0:
        return torch.logsumexp(x, -1, keepdim=True)
    if t > 1.0:
        current = shifted
        for _ in range(num_iters):
            partition = _exp_t(current, t).sum(-1, keepdim=True)
            current = shifted * partition ** (1.0 - t)
        partition = _exp_t(current, t).sum(-1, keepdim=True)
        return -_log_t(1.0 / partition, t) + mu
    effective = (shifted > -1.0 / (1.0 - t)).sum(-1, keepdim=True).to(x.dtype)
    lower = torch.zeros_like(effective)
    upper = -_log_t(1.0 / effective, t)
    for _ in range(num_iters):
        middle = (upper + lower) / 2.0
        below = (_exp_t(shifted - middle, t).sum(-1, keepdim=True) < 1.0).to(x.dtype)
        lower = lower * below + (1.0 - below) * middle
        upper = upper * (1.0 - below) + below * middle
    return (upper + lower) / 2.0 + mu


def _bitempered_rows(x: Tensor, y: Tensor, t1: float, t2: float, smoothing: float, num_iters: int) -> Tensor:
    """Per-row loss of logits ``[N, K]`` and probability labels ``[N, K]`` (float64)."""
    num_classes = x.shape[-1]
    if smoothing > 0.0:
        y = (1 - num_classes / (num_classes - 1) * smoothing) * y + smoothing / (num_classes - 1)
    p = _exp_t(x - _normalization(x, t2, num_iters), t2)
    if t1 == 1.0 and t2 == 1.0:
        return (torch.xlogy(y, y) - y * torch.log_softmax(x, -1)).sum(-1)
    # 0 log_t(0) = 0 on both sides: the reference writes y * log_t(y + 1e-10) and
    # y * log_t(p), which is nan for t1 = 1 at a class outside a t2 < 1 support
    y_log_y = torch.where(y > 0, y * _log_t(torch.where(y > 0, y, 1.0), t1), 0.0)
    y_log_p = torch.where(y > 0, y * _log_t(p, t1), 0.0)
    terms = y_log_y - y_log_p - (y ** (2.0 - t1) - p ** (2.0 - t1)) / (2.0 - t1)
    return terms.sum(-1)


def bitempered_reference(
    logits, labels, *, reduction="mean", t1=1.0, t2=1.0, label_smoothing=0.0, num_iters=5
) -> Tensor:
    if t1 == 1.0 and t2 == 1.0 and label_smoothing == 0.0 and not labels.is_floating_point():
        return F.cross_entropy(logits, labels, reduction=reduction)
    x = logits.double()
    num_classes = x.shape[1]
    y = labels.double() if labels.is_floating_point() else F.one_hot(labels, num_classes).double()
    per = _bitempered_rows(x, y, t1, t2, label_smoothing, num_iters)
    return _reduce(per, reduction).to(logits.dtype)


def binary_bitempered_reference(
    logits, labels, *, reduction="mean", t1=1.0, t2=1.0, label_smoothing=0.0, num_iters=5
) -> Tensor:
    x = logits.double().reshape(-1, 1)
    y = labels.double().reshape(-1, 1)
    per = _bitempered_rows(
        torch.cat([torch.zeros_like(x), x], 1), torch.cat([1 - y, y], 1), t1, t2, label_smoothing, num_iters
    )
    return _reduce(per.reshape(logits.shape), reduction).to(logits.dtype)


def _binary(batch: int, dtype: torch.dtype, generator: torch.Generator):
    logits = (2 * torch.randn(batch, generator=generator)).to(dtype)
    labels = torch.randint(0, 2, (batch,), generator=generator)
    return logits, labels


def _ce(logits, labels, reduction):
    return F.cross_entropy(logits, labels, reduction=reduction)


def _bce(logits, labels, reduction):
    return F.binary_cross_entropy_with_logits(logits, labels, reduction=reduction)


#: at t1 = t2 = 1 with class indices the bi-tempered loss is the cross-entropy
TEMPERED_TWINS = (
    Twin("t=1 [B, C]", indices(6, 5, classes=5), _ce),
    Twin("t=1 [C] one example", indices(5, classes=5), _ce),
    Twin("t=1 per-pixel", indices(2, 4, 3, classes=4), _ce),
    Twin("tensor t=1", indices(6, 5, classes=5), _ce, {"t1": torch.tensor(1.0), "t2": torch.tensor(1.0)}),
)
#: and with hard binary labels the binary one is torch's binary cross-entropy
BINARY_TEMPERED_TWINS = (
    Twin("t=1 [B]", binary(7), _bce),
    Twin("t=1 [B, D]", binary(4, 3), _bce),
    Twin("t=1 []", binary(), _bce),
)


CASES = [
    Case(
        "bi_tempered_logistic_loss",
        class_logits(5),
        params=(
            {},
            {"t1": 0.8, "t2": 1.2},
            {"t1": 0.7, "t2": 0.8, "num_iters": 10},
            {"t1": 1.0, "t2": 0.7},
            {"t1": 0.9, "t2": 1.0, "label_smoothing": 0.2},
            {"t1": 0.5, "t2": 2.0, "label_smoothing": 0.1},
        ),
        reference=bitempered_reference,
        twins=TEMPERED_TWINS,
    ),
    Case(
        "bi_tempered_binary_logistic_loss",
        _binary,
        params=(
            {},
            {"t1": 0.8, "t2": 0.6},
            {"t1": 1.0, "t2": 1.3, "label_smoothing": 0.1},
            {"t1": 0.6, "t2": 1.5, "label_smoothing": 0.05},
        ),
        reference=binary_bitempered_reference,
        none_shape=elementwise,
        twins=BINARY_TEMPERED_TWINS,
    ),
]
