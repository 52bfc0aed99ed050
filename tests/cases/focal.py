"""Cases for ``focal`` and ``poly``, with their closed forms and torch twins.

The references are written here from the formulas with torch ops, never with lossfn:
the binary focal loss is ``torchvision.ops.sigmoid_focal_loss`` written out (p,
BCE-with-logits, p_t, alpha_t: torchvision is not installable here), the softmax
focal loss and Poly-1 are Ludwig's ``FocalLoss`` / ``PolyLoss`` formulas (CE from
``F.cross_entropy``, ``p_t = exp(-CE)`` or a gathered softmax). These forms go through
``1 - p_t`` in linear space, which is fine at the moderate logits of the cases; the
extremes are checked against exact closed forms in ``tests/test_focal.py``.

The generic suite runs ``focal`` on a set (multi-label) output, ``[B, 3]`` logits with
``[B, 3]`` multi-hot labels: the sigmoid form at the rank a set feature has (a binary
``[B]`` output goes through the same elementwise code; it and the softmax form are in
the twins and ``tests/test_focal.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Case, Twin, class_logits, reduce_like_torch as _reduce
from .core import binary, indices


def sigmoid_focal_reference(logits, labels, *, alpha=0.25, gamma=2.0):
    """torchvision's ``sigmoid_focal_loss(logits, labels, alpha, gamma, reduction="none")``, written out."""
    targets = labels.to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss


def ludwig_softmax_focal(logits, labels, *, gamma=2.0):
    """Ludwig's multi-class ``FocalLoss`` before its mean: ``(1 - exp(-CE))^gamma · CE`` per position."""
    ce = F.cross_entropy(logits, labels.long(), reduction="none")
    p_t = torch.exp(-ce)
    return (1 - p_t) ** gamma * ce


def focal_reference(logits, labels, *, reduction="mean", alpha=0.25, gamma=2.0):
    """Labels of the logits' shape: torchvision's binary form; class indices: Ludwig's softmax form."""
    if labels.shape == logits.shape:
        loss = sigmoid_focal_reference(logits, labels, alpha=float(alpha), gamma=float(gamma))
    else:
        loss = ludwig_softmax_focal(logits, labels, gamma=float(gamma))
    return _reduce(loss, reduction)


def ludwig_poly(logits, labels, *, epsilon=1.0):
    """Ludwig's ``PolyLoss`` before its mean: ``CE + epsilon · (1 - softmax(x)[y])``."""
    labels = labels.long()
    ce = F.cross_entropy(logits, labels, reduction="none")
    probs = F.softmax(logits, dim=1 if logits.ndim > 1 else 0)
    if logits.ndim == 1:
        p_t = probs[labels]
    else:
        p_t = probs.gather(1, labels.unsqueeze(1)).squeeze(1)
    return ce + epsilon * (1.0 - p_t)


def poly_reference(logits, labels, *, reduction="mean", epsilon=1.0):
    return _reduce(ludwig_poly(logits, labels, epsilon=float(epsilon)), reduction)


def _set_batch(batch, dtype, generator):
    """A set output: ``[B, 3]`` logits (one sigmoid per class) and ``[B, 3]`` multi-hot integer labels."""
    logits = 2 * torch.randn(batch, 3, generator=generator)
    labels = torch.randint(0, 2, (batch, 3), generator=generator)
    return logits.to(dtype), labels


def _multi_hot(*shape):
    """Twin inputs: logits and 0/1 integer labels of one shape (a set output for ``[B, C]``)."""

    def make(dtype, generator):
        logits = 3 * torch.randn(shape, generator=generator, dtype=dtype)
        return logits, torch.randint(0, 2, shape, generator=generator)

    return make


def labels_shape(logits, labels, *rest):
    """``"none"`` has the labels' shape: elementwise (binary form), per position (softmax form)."""
    return tuple(labels.shape)


def _half_bce(logits, labels, reduction):
    return 0.5 * F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction=reduction)


def _ce(logits, labels, reduction):
    return F.cross_entropy(logits, labels, reduction=reduction)


_BCE = {"alpha": 0.5, "gamma": 0.0}  # alpha_t = 1/2 everywhere, (1 - p_t)^0 = 1
_CE = {"alpha": 0.9, "gamma": 0.0}  # the softmax form does not use alpha

FOCAL_TWINS = (
    Twin("binary [7] gamma=0 alpha=0.5 is BCE/2", binary(7), _half_bce, _BCE),
    Twin("binary [5, 3] soft labels", binary(5, 3, soft=True), _half_bce, _BCE),
    Twin("set [6, 4] multi-hot integer labels", _multi_hot(6, 4), _half_bce, _BCE),
    Twin("set [0, 4] empty batch", _multi_hot(0, 4), _half_bce, _BCE),
    Twin("binary [] one element", binary(), _half_bce, _BCE),
    Twin("binary [0] empty", binary(0), _half_bce, _BCE),
    Twin("softmax [B, C] gamma=0 is CE", indices(6, 5, classes=5), _ce, _CE),
    Twin("softmax [C] one example", indices(5, classes=5), _ce, _CE),
    Twin("softmax [B, C, H, W] per pixel", indices(2, 5, 3, 4, classes=5), _ce, _CE),
    Twin("softmax empty batch", indices(0, 5, classes=5), _ce, _CE),
)

POLY_TWINS = (
    Twin("[B, C] epsilon=0 is CE", indices(6, 5, classes=5), _ce, {"epsilon": 0.0}),
    Twin("[C] one example", indices(5, classes=5), _ce, {"epsilon": 0.0}),
    Twin("[B, C, H, W] per pixel", indices(2, 5, 3, 4, classes=5), _ce, {"epsilon": 0.0}),
    Twin("empty batch", indices(0, 5, classes=5), _ce, {"epsilon": 0.0}),
)

CASES = [
    Case(
        "focal",
        _set_batch,
        params=(
            {},
            {"alpha": 0.5, "gamma": 0.0},
            {"gamma": 0.5},
            {"alpha": 0.0, "gamma": 1.0},
            {"alpha": 1.0, "gamma": 0.0},
            {"alpha": 0.75, "gamma": 3.0},
        ),
        reference=focal_reference,
        none_shape=labels_shape,
        twins=FOCAL_TWINS,
    ),
    Case(
        "poly",
        class_logits(5),
        params=({}, {"epsilon": 0.0}, {"epsilon": 2.0}, {"epsilon": 0.3}, {"epsilon": 5.0}),
        reference=poly_reference,
        none_shape=labels_shape,
        twins=POLY_TWINS,
    ),
]
