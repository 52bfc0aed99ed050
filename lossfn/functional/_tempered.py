"""The bi-tempered losses: a tempered log of a tempered softmax.

The two registered losses, :func:`bi_tempered_logistic_loss` and
:func:`bi_tempered_binary_logistic_loss`, with their label side (``y log_t y`` and
``y^(2 - t1)``, finite at ``y = 0``) and their input checks. The tempered log/exp,
the tempered softmax and its normalization live in ``_tempered_forms.py``,
``_tempered_partition.py`` and ``_tempered_math.py``.

Amid, Warmuth, Anil and Koren, `Robust Bi-Tempered Logistic Loss Based on Bregman
Divergences <https://arxiv.org/abs/1906.03361>`_, NeurIPS 2019; checked against the
authors' reference implementation (google/bi-tempered-loss, JAX version) through the
vectors in ``tests/data/bitempered_reference.json``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._common import (
    as_index,
    check_class_indices,
    check_device,
    check_floating,
    check_integer_labels,
    check_min_rank,
    check_same_shape,
    compute_dtype,
    fail,
    reduce_loss,
    shape,
    unbatched,
    validate_class_range,
    validate_unit_range,
)
from ._tempered_forms import Temperature, _iterations, _log_t_exp, _masked, _power_form, _temperature
from ._tempered_partition import _TemperedSoftmax

__all__ = ["bi_tempered_binary_logistic_loss", "bi_tempered_logistic_loss"]

T1 = Annotated[
    float, Meta(gt=0.0, le=1.0, description="temperature of the tempered log (t1 < 1: bounded loss)")
]
T2 = Annotated[
    float,
    # float32 overflows in the tempered exp from t2 of about 100 on; 10 keeps a wide margin
    Meta(gt=0.0, le=10.0, description="temperature of the tempered exp (t2 > 1: heavy tail, t2 < 1: finite support)"),
]
LabelSmoothing = Annotated[
    float, Meta(ge=0.0, lt=1.0, description="mass a moved off the true class: 1 - a on it, a / (C - 1) on each other")
]
NumIters = Annotated[
    int,
    Meta(ge=1, le=1000, description="steps of the iterative normalization (fixed point for t2 > 1, bisection for t2 < 1)"),
]


# -- the label side -----------------------------------------------------------------


def _y_log_t(y: Any, a: Temperature) -> Any:
    """``y log_t(y)`` with ``0 log_t(0) = 0``; ``a = 1 - t``. Numbers in, number out."""
    if not isinstance(y, Tensor) and not isinstance(a, Tensor):
        if y <= 0.0:
            return 0.0
        return y * (math.log(y) if a == 0.0 else math.expm1(a * math.log(y)) / a)
    y = torch.as_tensor(y, dtype=a.dtype, device=a.device) if isinstance(a, Tensor) else y
    positive = y > 0
    log_y = torch.log(torch.where(positive, y, 1.0))
    return torch.where(positive, y * _log_t_exp(log_y, a), 0.0)


def _y_pow(y: Any, c: Temperature) -> Any:
    """``y^c`` for ``y >= 0``, ``c >= 1``, with a gradient in ``c`` that is finite at ``y = 0``."""
    if not isinstance(y, Tensor) and not isinstance(c, Tensor):
        return y**c if y > 0.0 else 0.0
    y = torch.as_tensor(y, dtype=c.dtype, device=c.device) if isinstance(c, Tensor) else y
    positive = y > 0
    return torch.where(positive, torch.exp(c * torch.log(torch.where(positive, y, 1.0))), 0.0)


# -- the loss -----------------------------------------------------------------------


def _bi_tempered(
    x: Tensor,
    target: Tensor,
    *,
    t1: Temperature,
    t2: Temperature,
    smoothing: Temperature,
    num_iters: int,
    indices: bool,
) -> Tensor:
    """Per-example bi-tempered loss over the last dimension of ``x`` (compute dtype).

    ``target``: class indices ``[...]`` (``indices=True``) or probabilities ``[..., K]``.
    """
    num_classes = x.shape[-1]
    p = _TemperedSoftmax(x, t2, num_iters)
    a1 = 1.0 - t1
    c = 2.0 - t1
    # With t1 = 1 and a finite-support softmax (t2 < 1), -log p of a class outside the
    # support is +inf: it is capped at -log(tiny) of the dtype, and -log p inside the
    # support too, so the cap is the largest value (its gradient is 0).
    log_tiny = math.log(torch.finfo(x.dtype).tiny)
    if isinstance(t1, Tensor) or isinstance(t2, Tensor):
        capped: Any = (t1 == 1.0) & (t2 < 1.0)
        if isinstance(t1, Tensor):
            at_zero: Any = torch.where(t1 < 1.0, -1.0 / torch.where(t1 < 1.0, a1, 1.0), log_tiny)
        else:
            at_zero = log_tiny if t1 == 1.0 else -1.0 / a1  # log_t1(0)
    else:
        capped = t1 == 1.0 and t2 < 1.0
        at_zero = log_tiny if t1 == 1.0 else -1.0 / a1
    # At t1 = t2 < 1 the reference's gradient outside the support is p - y (see
    # `_TemperedSoftmax.beyond_support`); elsewhere its forget factor makes it 0 there.
    if isinstance(t1, Tensor) or isinstance(t2, Tensor):
        continued: Any = (t2 < 1.0) & (t1 == t2)
    else:
        continued = t2 < 1.0 and t1 == t2

    def log_t1_p(index: Tensor | None = None) -> Tensor:
        """``log_t1(p)``, at ``index`` if given."""
        if index is None and _power_form(a1) and p.base is not None:
            value = (p.power(a1) - 1.0) / a1  # one pow; p = 0 gives log_t1(0) = -1/a1
        else:
            log_p, inside = p.log(index)
            if isinstance(capped, Tensor):
                log_p = torch.where(capped, log_p.clamp_min(log_tiny), log_p)
            elif capped:
                log_p = log_p.clamp_min(log_tiny)
            value = _masked(_log_t_exp(log_p, a1), inside, at_zero)
        if not isinstance(continued, Tensor) and not continued:
            return value
        beyond = p.beyond_support(index)
        if beyond is None:
            return value
        return value + (torch.where(continued, beyond, 0.0) if isinstance(continued, Tensor) else beyond)

    if isinstance(smoothing, Tensor) or smoothing != 0.0:
        off = smoothing / (num_classes - 1)  # the reference: a / (K - 1) off the true class
        smoothed = True
    else:
        off, smoothed = 0.0, False

    if indices:
        on = 1.0 - smoothing
        cross = (on - off) * log_t1_p(target.unsqueeze(-1))
        if smoothed:
            cross = cross + off * log_t1_p().sum(-1)
        label_entropy = _y_log_t(on, a1) + (num_classes - 1) * _y_log_t(off, a1)
        label_mass = _y_pow(on, c) + (num_classes - 1) * _y_pow(off, c)
    else:
        y = target
        if smoothed:
            y = (1.0 - num_classes * off) * y + off
        cross = (y * log_t1_p()).sum(-1)
        label_entropy = _y_log_t(y, a1).sum(-1)
        label_mass = _y_pow(y, c).sum(-1)
    loss = label_entropy - cross
    tensors = isinstance(t1, Tensor) or isinstance(t2, Tensor)
    if not tensors and t1 == 1.0 and t2 == 1.0:
        return loss  # the reference's KL branch: the mass terms are left out
    mass = p.power(c).sum(-1)
    loss = loss + (mass - label_mass) / c
    if tensors and not indices:
        # At t1 = t2 = 1 the mass terms add sum(p) - sum(y) = 1 - sum(y) to the KL branch
        # (0 for labels that sum to 1). Take that value off there but keep the terms, so
        # the derivative with respect to t1 and t2 stays that of the general formula.
        kl_point = (t1 == 1.0) & (t2 == 1.0)
        loss = loss - torch.where(kl_point, 1.0 - y.sum(-1), 0.0)
    return loss


def _check_temperatures(name: str, like: Tensor, t1: Any, t2: Any, label_smoothing: Any, num_iters: Any):
    return (
        _temperature(t1, like, name, "t1"),
        _temperature(t2, like, name, "t2"),
        _temperature(label_smoothing, like, name, "label_smoothing"),
        _iterations(num_iters, name),
    )


@register_loss(
    "bi_tempered_logistic_loss",
    [Feature.CATEGORY],
    aliases=("tempered_softmax_cross_entropy",),
    validate=validate_class_range("bi_tempered_logistic_loss"),
)
def bi_tempered_logistic_loss(
    logits: Tensor,
    labels: Tensor,
    *,
    t1: T1 = 1.0,
    t2: T2 = 1.0,
    label_smoothing: LabelSmoothing = 0.0,
    num_iters: NumIters = 5,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Bi-tempered logistic loss: a tempered log (``t1``) of a tempered softmax (``t2``).

    The Bregman divergence of the tempered log between the labels and the tempered
    softmax of the logits. ``t1 < 1`` bounds the loss (robust to large-margin label
    noise); ``t2 > 1`` gives the softmax a heavy tail (robust to small-margin noise);
    ``t2 < 1`` gives it finite support. At ``t1 = t2 = 1`` it is the Kullback-Leibler
    divergence ``KL(y || softmax(x))``: cross-entropy for class-index labels.

    With :math:`\log_t u = \frac{u^{1-t} - 1}{1 - t}`,
    :math:`\exp_t u = [1 + (1 - t) u]_+^{1/(1-t)}` (``log`` and ``exp`` at
    :math:`t = 1`), labels :math:`y_n` (one-hot for class indices, smoothed below) and
    :math:`K` classes:

    .. math::

        \hat y_n = \exp_{t_2}(x_n - \lambda_n), \quad
        \textstyle\sum_c \hat y_{n,c} = 1, \\
        \ell_n = \sum_c \Bigl[ y_{n,c} \bigl(\log_{t_1} y_{n,c} - \log_{t_1} \hat y_{n,c}\bigr)
                 - \frac{y_{n,c}^{2-t_1} - \hat y_{n,c}^{2-t_1}}{2 - t_1} \Bigr]

    and the reduction is :math:`\frac1N \sum_n \ell_n` (``"mean"``) or
    :math:`\sum_n \ell_n` (``"sum"``). At :math:`t_1 = t_2 = 1` the second term is
    left out, as the reference does; it sums to 0 when the labels sum to 1.

    The normalizer :math:`\lambda_n` is the reference's: :math:`\log\sum\exp` at
    ``t2 = 1``, ``num_iters`` fixed-point steps for ``t2 > 1``, ``num_iters`` bisection
    steps for ``t2 < 1``; so :math:`\sum_c \hat y_{n,c}` is 1 only up to that method's
    precision, and the values are the reference's. The gradient is the reference's too
    (:math:`(\hat y - y)\hat y^{t_2 - t_1}` minus its escort-weighted mean), from the
    implicit derivative of :math:`\lambda`; ``t1`` and ``t2`` have gradients as well.

    Label smoothing :math:`a` follows the reference: :math:`1 - a` on the true class and
    :math:`a / (K - 1)` on each other one (probability labels :math:`q` become
    :math:`(1 - \frac{K a}{K-1}) q + \frac{a}{K-1}`). ``torch.nn.functional.cross_entropy``
    puts :math:`1 - a + a/K` and :math:`a/K` instead: the reference's :math:`a` equals
    torch's :math:`a (K - 1) / K`. With probability labels the value at
    ``t1 = t2 = 1`` is the KL divergence, as in the JAX reference; the TensorFlow
    version (``tensorflow/loss.py``) switches there to
    ``tf.nn.softmax_cross_entropy_with_logits``, the cross-entropy
    :math:`-\sum_c y_c \log \hat y_c`, larger by the entropy of :math:`y`.

    Outside the support of a ``t2 < 1`` softmax (a class given probability 0) the
    gradient is the reference's where the reference's is finite: at ``t1 = t2`` it is
    :math:`\hat y - y` there (the reference's forget factor :math:`\hat y^{t_2 - t_1}`
    is 1), so a true class left outside is pulled back in; for ``t2 > t1`` it is 0.
    Beyond the reference, every valid input gives a finite value and gradient: for
    ``t2 < t1`` the gradient there is 0 (the reference's is NaN or infinite); with
    ``t1 = 1`` such a class with positive target costs :math:`-\log(\text{tiny})` of
    the compute dtype (about 87 in float32) instead of :math:`+\infty`.
    Half-precision logits are computed in float32.

    Args:
        logits: ``[B, C]``, or ``[B, C, d1, ...]`` (class dimension 1), or ``[C]``
            for one example; ``C >= 2``.
        labels: class indices ``[B]`` / ``[B, d1, ...]`` / ``[]`` (a signed integer
            dtype), or class probabilities of the logits' shape (float).
        t1: temperature of the log, :math:`0 < t_1 \le 1`; a number or a 0-d tensor.
        t2: temperature of the exp, :math:`t_2 > 0`; a number or a 0-d tensor. As a
            number it picks one normalization method; as a tensor all three run and
            the right one is selected (about three times the work).
        label_smoothing: :math:`a \in [0, 1)`; a number or a 0-d tensor.
        num_iters: steps of the normalization (``t2 != 1``); a Python int (a 0-d
            integer tensor is read once: it sets the number of steps).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, per example: shape ``[B]`` (``[B, d1, ...]``, ``[]``
        for one example); ``"mean"``: its mean (0 for an empty batch); ``"sum"``: its
        sum (0-d). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        >>> labels = torch.tensor([0, 2])
        >>> LF.bi_tempered_logistic_loss(logits, labels)  # cross-entropy
        tensor(0.8606)
        >>> LF.bi_tempered_logistic_loss(logits, labels, t1=0.8, t2=1.2)
        tensor(0.6326)
        >>> LF.bi_tempered_logistic_loss(logits, labels, t1=0.7, t2=0.8)
        tensor(0.5904)

    References:
        Amid, Warmuth, Anil and Koren, `Robust Bi-Tempered Logistic Loss Based on
        Bregman Divergences <https://arxiv.org/abs/1906.03361>`_, NeurIPS 2019.
        Values and gradients checked against the authors' reference implementation
        (`google/bi-tempered-loss <https://github.com/google/bi-tempered-loss>`_,
        JAX version, ``jax-bitempered-loss`` 0.0.2) and its published test vectors;
        at ``t1 = t2 = 1`` against ``torch.nn.functional.cross_entropy``.
    """
    name = "bi_tempered_logistic_loss"
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 1, "[B, C], [B, C, d1, ...] or [C]")
    if not isinstance(labels, Tensor):
        raise fail(name, "labels", "a torch.Tensor", type(labels).__name__)
    dtype = logits.dtype
    logits, labels, one = unbatched(logits, labels, rank=2)
    if logits.shape[1] < 2:
        raise fail(name, "logits", "of shape [B, C] with at least 2 classes", f"shape {shape(logits)}")
    x = logits.to(compute_dtype(logits))
    t1, t2, label_smoothing, num_iters = _check_temperatures(name, x, t1, t2, label_smoothing, num_iters)
    if labels.is_floating_point():  # class probabilities
        if labels.shape != logits.shape:
            raise fail(name, "labels", f"probabilities of the logits' shape {shape(logits)}", f"shape {shape(labels)}")
        check_device(name, "labels", labels, logits, "logits")
        target = labels.to(x.dtype).movedim(1, -1)
        indices = False
    else:
        check_integer_labels(name, labels, "integer class indices or float probabilities", like=logits)
        check_class_indices(name, logits, labels)
        target = as_index(labels)
        indices = True
    loss = _bi_tempered(
        x.movedim(1, -1),
        target,
        t1=t1,
        t2=t2,
        smoothing=label_smoothing,
        num_iters=num_iters,
        indices=indices,
    )
    if one:
        loss = loss.squeeze(0)
    return reduce_loss(loss, reduction, name=name).to(dtype)


@register_loss(
    "bi_tempered_binary_logistic_loss",
    [Feature.BINARY],
    validate=validate_unit_range("bi_tempered_binary_logistic_loss"),
)
def bi_tempered_binary_logistic_loss(
    logits: Tensor,
    labels: Tensor,
    *,
    t1: T1 = 1.0,
    t2: T2 = 1.0,
    label_smoothing: LabelSmoothing = 0.0,
    num_iters: NumIters = 5,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Bi-tempered logistic loss of one logit per example: two classes with activations ``[0, x]``.

    The binary case of :func:`bi_tempered_logistic_loss`, built as the reference
    builds it: logit :math:`x_n` becomes the activations :math:`(0, x_n)` of classes
    (negative, positive), label :math:`y_n \in [0, 1]` the probabilities
    :math:`(1 - y_n, y_n)`. At ``t1 = t2 = 1`` it is the binary cross-entropy of
    :math:`\sigma(x_n)` minus the entropy of :math:`y_n` (the KL divergence; equal to
    ``binary_cross_entropy_with_logits`` for hard labels).

    .. math::

        \hat y_n = \exp_{t_2}\bigl((0, x_n) - \lambda_n\bigr), \quad
        \ell_n = \sum_{c \in \{0, 1\}} \Bigl[ y_{n,c} \bigl(\log_{t_1} y_{n,c}
                 - \log_{t_1} \hat y_{n,c}\bigr)
                 - \frac{y_{n,c}^{2-t_1} - \hat y_{n,c}^{2-t_1}}{2 - t_1} \Bigr]

    with :math:`y_{n} = (1 - y_n, y_n)`, then the mean or sum over every element.
    Label smoothing :math:`a` moves the labels to :math:`(1 - 2a) y_n + a` (the
    reference's parametrization with :math:`K = 2`; torch's would give
    :math:`(1 - a) y_n + a/2`). See :func:`bi_tempered_logistic_loss` for the
    normalization, the gradients and the finite values beyond the reference.

    Args:
        logits: any shape (``[B]``, ``[B, ...]``), the activation of the positive class.
        labels: the same shape; 0/1 (bool or integer) or probabilities (float).
        t1: temperature of the log, :math:`0 < t_1 \le 1`; a number or a 0-d tensor.
        t2: temperature of the exp, :math:`t_2 > 0`; a number or a 0-d tensor.
        label_smoothing: :math:`a \in [0, 1)`; a number or a 0-d tensor.
        num_iters: steps of the normalization (``t2 != 1``).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the logits' shape); ``"mean"``: its
        mean over every element; ``"sum"``: its sum (0-d). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([0.0, 3.0, -2.0])
        >>> labels = torch.tensor([1, 0, 0])
        >>> LF.bi_tempered_binary_logistic_loss(logits, labels, t1=0.7, t2=1.3, reduction="none").round(decimals=4)
        tensor([0.4814, 1.5466, 0.1034])

    References:
        Amid, Warmuth, Anil and Koren, `Robust Bi-Tempered Logistic Loss Based on
        Bregman Divergences <https://arxiv.org/abs/1906.03361>`_, NeurIPS 2019;
        checked against ``bi_tempered_binary_logistic_loss`` of the reference
        implementation (`google/bi-tempered-loss
        <https://github.com/google/bi-tempered-loss>`_, JAX) and, at
        ``t1 = t2 = 1``, ``torch.nn.functional.binary_cross_entropy_with_logits``.
    """
    name = "bi_tempered_binary_logistic_loss"
    check_floating(name, "logits", logits)
    check_same_shape(name, logits, labels)
    x = logits.to(compute_dtype(logits))
    t1, t2, label_smoothing, num_iters = _check_temperatures(name, x, t1, t2, label_smoothing, num_iters)
    y = labels.to(x.dtype)
    activations = torch.stack([torch.zeros_like(x), x], -1)
    target = torch.stack([1.0 - y, y], -1)
    loss = _bi_tempered(
        activations,
        target,
        t1=t1,
        t2=t2,
        smoothing=label_smoothing,
        num_iters=num_iters,
        indices=False,
    )
    return reduce_loss(loss, reduction, name=name).to(logits.dtype)
