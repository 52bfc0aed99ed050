r"""The Fenchel–Young losses of sparsemax and 1.5-entmax, for class and token labels.

A Fenchel–Young loss pairs a mapping :math:`p^\star = \nabla\Omega^*(z)` with the loss
:math:`L(z, y) = \Omega^*(z) + \Omega(e_y) - z_y`, whose gradient is
:math:`p^\star - e_y`, exactly as softmax pairs with cross-entropy. The ``entmax``
package (and Ludwig's vendored copy of it) writes it in the primal form
:math:`\langle p^\star - e_y, z\rangle + H(p^\star)`; lossfn computes the same number
in its dual form: with the threshold :math:`\tau` of the mapping (``_entmax_math.py``),
:math:`\Omega^*(z) = \min_\tau D(\tau)` and :math:`D` is stationary at :math:`\tau`,
so autograd through the closed form gives :math:`p^\star - e_y` (the term through
:math:`\tau` carries the factor :math:`1 - \sum_c p^\star_c = 0`), and the value
makes no :math:`0 \cdot (-\infty)` at a masked class. The Hessian is the mapping's
Jacobian, which ``torch.func.hessian`` returns.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._common import (
    as_index,
    cast,
    check_floating,
    check_integer_labels,
    compute_dtype,
    fail,
    keep_where,
    reduce_loss,
    shape,
    validate_class_range,
)
from ._entmax_math import entmax15_threshold, shifted, sparsemax_threshold

__all__ = ["entmax15", "sparsemax"]

#: Ludwig's ``IGNORE_INDEX_TOKEN_ID``, the default of the ``entmax`` losses it wraps.
IGNORE_INDEX = -100

IgnoreIndex = Annotated[
    int, Meta(description="label left out of the loss and of the mean (default -100: no class; 2 skips Ludwig's <PAD>)")
]

_FEATURES = [Feature.CATEGORY, Feature.TEXT, Feature.SEQUENCE]
_LAYOUTS = "[B, C], [B, T, V] or [C]"


def _predict(logits: Tensor) -> Tensor:
    """The class with the largest logit (the mode of either mapping), over the last dimension."""
    return logits.argmax(-1)


def _fenchel_young(name: str, logits: Tensor, labels: Any, ignore_index: Any, reduction: str) -> Tensor:
    """Per-position losses (0 at ignored labels), reduced; the mapping is the loss's ``name``."""
    check_floating(name, "logits", logits)
    if not 1 <= logits.ndim <= 3:
        raise fail(name, "logits", f"of shape {_LAYOUTS}", f"shape {shape(logits)}")
    if logits.shape[-1] == 0:
        raise fail(name, "logits", "at least one class in the last dimension", f"shape {shape(logits)}")
    check_integer_labels(name, labels, like=logits)
    if labels.shape != logits.shape[:-1]:
        dims = "[" + ", ".join(str(d) for d in logits.shape[:-1]) + "]"
        expected = f"class indices of shape {dims} for logits {shape(logits)}"
        raise fail(name, "labels", expected, f"shape {shape(labels)}")
    labels = as_index(labels)
    keep = labels != ignore_index
    safe = torch.where(keep, labels, 0)  # an ignored label (-100) indexes class 0, masked afterwards
    # an ignored position's logits stay out of the value and the gradient, NaN included
    z = torch.where(keep.unsqueeze(-1), cast(logits, compute_dtype(logits)), 0.0)
    centered, floored = shifted(z)
    if name == "sparsemax":
        tau = sparsemax_threshold(floored)
        u = (floored - tau).clamp_min(0)  # p
        # D(tau) = (|u|^2 + 1)/2 + tau, grouped so a one-class support gives exactly 0
        dual = 0.5 * ((u * u).sum(-1) - 1) + (tau.squeeze(-1) + 1)
    else:
        x = floored / 2
        tau = entmax15_threshold(x)
        u = (x - tau).clamp_min(0)  # sqrt(p)
        # D(tau) = 2/3 sum u^3 + 2 tau + 4/3, grouped so a one-class support gives exactly 0
        dual = (2.0 / 3.0) * ((u * u * u).sum(-1) - 1) + 2 * (tau.squeeze(-1) + 1)
    loss = keep_where(keep, dual - centered.gather(-1, safe.unsqueeze(-1)).squeeze(-1))
    return cast(reduce_loss(loss, reduction, name=name, weights=keep if reduction == "mean" else None), logits.dtype)


@register_loss(
    "sparsemax",
    _FEATURES,
    validate=validate_class_range("sparsemax", ignored="ignore_index", class_dim=-1),
    predict=_predict,
)
def sparsemax(
    logits: Tensor,
    labels: Tensor,
    *,
    ignore_index: IgnoreIndex = IGNORE_INDEX,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Sparsemax loss: the Fenchel–Young loss of sparsemax, a sparse alternative to cross-entropy.

    Classes outside the support of :math:`p = \operatorname{sparsemax}(z)` (see
    :func:`sparsemax_probabilities`) get exactly zero gradient. For one position with
    logits :math:`z \in \mathbb{R}^C`, label :math:`y` and threshold :math:`\tau`
    (:math:`\sum_c [z_c - \tau]_+ = 1`):

    .. math::

        \ell = \tfrac12 \bigl(1 - \lVert p \rVert^2\bigr) + \langle p - e_y, z \rangle
             = \tfrac12 \sum_c [z_c - \tau]_+^2 + \tau + \tfrac12 - z_y,
        \qquad \nabla_z \ell = p - e_y

    A position whose label is ``ignore_index`` (:math:`m = 0`, else 1) contributes
    nothing, whatever its logits hold (NaN included), and leaves the denominator:
    :math:`\text{mean} = \sum m \ell / \sum m`, :math:`\text{sum} = \sum m \ell`.
    The loss is 0 when :math:`z_y` leads every other logit by at least 1, and it is
    finite with a finite gradient for a masked class (logit ``-inf``, not the label),
    where the ``entmax`` package and Ludwig return NaN; it is computed in float32 for
    half-precision logits.

    Args:
        logits: ``[B, C]``, or ``[B, T, V]`` for text and sequence outputs (the
            vocabulary last, one loss per token), or ``[C]`` for one example.
        labels: class (token) indices ``[B]`` / ``[B, T]`` / ``[]``, a signed integer
            dtype. The module checks they are in ``[0, C)`` or ``ignore_index``.
        ignore_index: the label left out; the default ``-100`` (Ludwig's, and
            torch's) is no class, so every position counts, as in Ludwig; set it
            to 2 to skip Ludwig's ``<PAD>`` tokens.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`m \ell` per example ``[B]`` (per token ``[B, T]``; ``[]`` for
        one example), 0 at ignored labels; ``"sum"``: their sum; ``"mean"``: their mean
        over the positions not ignored (0 if none is left). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[1.0, 0.5, -1.0], [3.0, 0.0, 0.0]])
        >>> labels = torch.tensor([1, 0])
        >>> LF.sparsemax(logits, labels, reduction="none")
        tensor([0.5625, 0.0000])
        >>> LF.sparsemax(logits, labels)
        tensor(0.2812)

    References:
        Martins & Astudillo, `From Softmax to Sparsemax: A Sparse Model of Attention and
        Multi-Label Classification <https://arxiv.org/abs/1602.02068>`_, ICML 2016.
        Checked against the ``entmax`` package's ``sparsemax_loss`` (values and
        gradients; class and flattened token inputs) and against Ludwig's
        ``SparsemaxLoss``, which is that loss with ``ignore_index=-100`` (nothing left
        out) averaged over the batch; Ludwig fails on ``[B, T, V]`` logits (its loss
        takes 2-D inputs only). Differences from Ludwig: ``docs/ludwig.md``.
    """
    return _fenchel_young("sparsemax", logits, labels, ignore_index, reduction)


@register_loss(
    "entmax15",
    _FEATURES,
    validate=validate_class_range("entmax15", ignored="ignore_index", class_dim=-1),
    predict=_predict,
)
def entmax15(
    logits: Tensor,
    labels: Tensor,
    *,
    ignore_index: IgnoreIndex = IGNORE_INDEX,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""1.5-entmax loss: the Fenchel–Young loss of 1.5-entmax (Tsallis :math:`\alpha = 1.5`).

    Semi-sparse, between softmax cross-entropy and :func:`sparsemax`: with
    :math:`p = \operatorname{entmax}_{1.5}(z) = u^2`, :math:`u = [z/2 - \tau]_+`
    (:math:`\sum_c u_c^2 = 1`; see :func:`entmax15_probabilities`), for one position
    with logits :math:`z` and label :math:`y`:

    .. math::

        \ell = \tfrac43 \Bigl(1 - \sum_c p_c^{3/2}\Bigr) + \langle p - e_y, z \rangle
             = \tfrac23 \sum_c u_c^3 + 2\tau + \tfrac43 - z_y,
        \qquad \nabla_z \ell = p - e_y

    A position whose label is ``ignore_index`` (:math:`m = 0`, else 1) contributes
    nothing, whatever its logits hold (NaN included), and leaves the denominator:
    :math:`\text{mean} = \sum m \ell / \sum m`, :math:`\text{sum} = \sum m \ell`.
    The loss is 0 when :math:`z_y` leads every other logit by at least 2; it is
    finite with a finite gradient for a masked class (logit ``-inf``, not the label),
    where the ``entmax`` package and Ludwig return NaN; it is computed in float32 for
    half-precision logits.

    Args:
        logits: ``[B, C]``, or ``[B, T, V]`` for text and sequence outputs (the
            vocabulary last, one loss per token), or ``[C]`` for one example.
        labels: class (token) indices ``[B]`` / ``[B, T]`` / ``[]``, a signed integer
            dtype. The module checks they are in ``[0, C)`` or ``ignore_index``.
        ignore_index: the label left out; the default ``-100`` (Ludwig's, and
            torch's) is no class, so every position counts, as in Ludwig; set it
            to 2 to skip Ludwig's ``<PAD>`` tokens.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`m \ell` per example ``[B]`` (per token ``[B, T]``; ``[]`` for
        one example), 0 at ignored labels; ``"sum"``: their sum; ``"mean"``: their mean
        over the positions not ignored (0 if none is left). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[1.0, 0.5, -1.0], [3.0, 0.0, 0.0]])
        >>> labels = torch.tensor([1, 0])
        >>> LF.entmax15(logits, labels, reduction="none")
        tensor([0.6844, 0.0000])
        >>> LF.entmax15(logits, labels)
        tensor(0.3422)

    References:
        Peters, Niculae & Martins, `Sparse Sequence-to-Sequence Models
        <https://arxiv.org/abs/1905.05702>`_, ACL 2019. Checked against the ``entmax``
        package's ``entmax15_loss`` (values and gradients; class and flattened token
        inputs) and against Ludwig's ``Entmax15Loss``, which is that loss with
        ``ignore_index=-100`` (nothing left out) averaged over the batch; Ludwig fails
        on ``[B, T, V]`` logits (its loss takes 2-D inputs only). Differences from
        Ludwig: ``docs/ludwig.md``.
    """
    return _fenchel_young("entmax15", logits, labels, ignore_index, reduction)
