"""Divergences between distributions over classes: KL, generalized Jensen-Shannon, distillation.

Every term ``p · (log p - log m)`` is written with ``0 · log 0 = 0`` *inside* a
``where`` (the value and the gradient never meet ``0 · inf``), so a zero target
probability, a masked class (logit ``-inf``) or a probability that underflows gives a
zero term and a finite gradient. That is where ``torch.nn.functional.kl_div`` and
``optax.losses.kl_divergence`` give NaN (a NaN gradient with respect to a zero target:
optax PR 1786; a NaN value for ``0 · (-inf)`` at a masked class or a ``-inf`` log target).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, InputCheck, Reduction, register_loss

from ._common import (
    cast,
    check_device,
    check_floating,
    check_min_rank,
    check_same_shape,
    compute_dtype,
    fail,
    reduce_loss,
    shape,
    validate_class_range,
)

__all__ = ["jensen_shannon", "kl_divergence", "knowledge_distillation"]

LogTarget = Annotated[
    bool, Meta(description="the labels are log-probabilities (torch's log_target), not probabilities")
]
Beta = Annotated[
    float, Meta(gt=0.0, lt=1.0, description="weight β of the target in the mixture M = βP + (1 - β)Q")
]
Temperature = Annotated[float, Meta(gt=0.0, description="softmax temperature T of teacher and student")]


# -- shared pieces --------------------------------------------------------------------


def _check_distributions(name: str, logits: Any, labels: Any) -> int:
    """Logits ``[B, C, *]`` or ``[C]`` and float targets of their shape; returns the class dimension."""
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 1, "[B, C], [B, C, d1, ...] or [C]")
    if not isinstance(labels, Tensor):
        raise fail(name, "labels", "a torch.Tensor", type(labels).__name__)
    if not labels.is_floating_point():
        raise fail(name, "labels", "class probabilities (a floating-point tensor)", f"dtype {labels.dtype}")
    if labels.shape != logits.shape:
        expected = f"class probabilities of the logits' shape {shape(logits)}"
        raise fail(name, "labels", expected, f"shape {shape(labels)}")
    check_device(name, "labels", labels, logits, "logits")
    return 1 if logits.ndim >= 2 else 0


def _term(p: Tensor, log_ratio: Tensor) -> Tensor:
    """``p · log_ratio`` with ``0 · anything = 0``: the ``where`` sits inside the product, so
    neither the value nor any gradient (of ``p``, of the log-ratio) meets ``0 · inf``; a NaN ``p`` stays NaN."""
    return p * torch.where(p != 0, log_ratio, 0.0)


def _safe_log(p: Tensor) -> Tensor:
    """``log p`` where ``p != 0`` and 0 at ``p = 0`` (used only under :func:`_term`, which drops it there)."""
    return torch.log(torch.where(p != 0, p, 1.0))


def _probabilities_hook(name: str):
    """The module's check of float targets: class probabilities over the class dimension."""
    check = validate_class_range(name, probabilities=True)

    def validate(logits: Tensor, labels: Tensor, *_: Any, **params: Any) -> InputCheck | None:
        if not isinstance(labels, Tensor) or not labels.is_floating_point():
            return None  # the pure function says what is wrong
        return check(logits, labels, **params)

    return validate


# -- kl_divergence ------------------------------------------------------------------

_KL_PROBABILITIES = _probabilities_hook("kl_divergence")


def _kl_validate(logits: Tensor, labels: Tensor, *_: Any, log_target: Any = False, **__: Any) -> InputCheck | None:
    """Probabilities: ``>= 0`` and summing to 1. Log targets: no NaN and no ``+inf``.

    Log targets are not required to be ``<= 0`` or to log-sum-exp to 0: every accepted
    config must run on the same standard inputs (``tests/config_fuzz.py`` runs each one on
    its case's probabilities), and torch and optax take unnormalized log targets too.
    """
    if not isinstance(logits, Tensor) or not isinstance(labels, Tensor) or logits.ndim == 0:
        return None
    if not labels.is_floating_point() or labels.shape != logits.shape or labels.numel() == 0:
        return None
    probabilities = _KL_PROBABILITIES(logits, labels)
    flag = torch.as_tensor(log_target, dtype=labels.dtype).to(labels.device).reshape(1)
    facts = torch.cat([flag, probabilities.facts, labels.amax().reshape(1)])

    def judge(values: list[float]) -> ValueError | None:
        as_logs, *bounds, high = values
        if not as_logs:
            return probabilities.judge(bounds)
        if high < math.inf:  # a NaN fails
            return None
        return fail("kl_divergence", "labels", "log-probabilities (no NaN, no +inf) with log_target=True",
                    f"a maximum of {high:g}")

    return InputCheck(facts, judge)


def _target(labels: Tensor, log_target: Any) -> tuple[Tensor, Tensor]:
    """``(p, log p)`` from probabilities or log-probabilities (a 0-d tensor flag picks with ``where``)."""
    if isinstance(log_target, Tensor):
        flag = log_target.to(torch.bool)
        return torch.where(flag, labels.exp(), labels), torch.where(flag, labels, _safe_log(labels))
    if log_target:
        return labels.exp(), labels
    return labels, _safe_log(labels)


@register_loss("kl_divergence", [Feature.CATEGORY_DISTRIBUTION, Feature.VECTOR], validate=_kl_validate)
def kl_divergence(
    logits: Tensor, labels: Tensor, *, log_target: LogTarget = False, reduction: Reduction = "mean"
) -> Tensor:
    r"""Kullback-Leibler divergence :math:`\mathrm{KL}(P \,\|\, \operatorname{softmax}(x))` per example.

    For example :math:`n` with target probabilities :math:`P_n` (``labels``, or
    :math:`\exp` of them with ``log_target=True``) and :math:`\log Q_n = \operatorname{log\_softmax}(x_n)`:

    .. math::

        \ell_n = \sum_c P_{n,c} \bigl(\log P_{n,c} - \log Q_{n,c}\bigr), \qquad 0 \log 0 = 0

        \text{mean} = \frac{1}{N} \sum_n \ell_n, \qquad \text{sum} = \sum_n \ell_n

    **"mean" is the mean over examples**, which is what
    ``F.kl_div(log_softmax(x), P, reduction="batchmean")`` computes: not torch's
    ``reduction="mean"``, the mean over every *element* ``[B, C]``, which divides by
    :math:`C` too (the trap torch's own documentation warns about). A zero target
    probability gives a zero term with a finite gradient, also at a masked class
    (logit ``-inf``) and for a ``-inf`` log target (torch and optax give NaN there);
    the gradient with respect to a zero target is taken as 0 (the one-sided derivative
    :math:`\log p + 1 - \log q` is :math:`-\infty`). Mass on a class of probability 0
    gives :math:`+\infty`, the true value. Computed in float32 for half-precision inputs.

    Args:
        logits: ``[B, C]``, ``[B, C, d1, ...]`` (classes on dimension 1, as in
            ``softmax_cross_entropy``) or ``[C]`` for one example.
        labels: target probabilities of the logits' shape, or log-probabilities with
            ``log_target=True``. The module checks probabilities (``>= 0``, summing to 1
            over the classes within ``max(1e-3, C·eps)``); log targets it checks only
            for NaN and ``+inf``, so unnormalized ones pass, as in torch and optax.
        log_target: the labels are :math:`\log P` (torch's ``log_target``; optax's
            ``kl_divergence_with_log_targets``).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell` per example, ``[B]`` (``[B, d1, ...]``; ``[]`` for
        one example); ``"sum"``: its sum; ``"mean"``: its mean over the examples (or
        positions: ``F.kl_div(..., reduction="sum")`` over their number, which is
        ``"batchmean"`` for ``[B, C]``; 0 for an empty batch, where torch gives nan).
        Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        >>> target = torch.tensor([[0.7, 0.3, 0.0], [0.2, 0.5, 0.3]])
        >>> LF.kl_divergence(logits, target, reduction="none")
        tensor([0.1590, 0.0218])
        >>> LF.kl_divergence(logits, target.log(), log_target=True)
        tensor(0.0904)

    References:
        Kullback and Leibler, `On Information and Sufficiency
        <https://doi.org/10.1214/aoms/1177729694>`_, 1951. Checked against
        ``torch.nn.functional.kl_div`` on ``log_softmax(logits)`` (``"none"`` summed
        over the classes, ``"sum"``, ``"batchmean"``; both ``log_target``), and against
        stored vectors of ``optax.losses.kl_divergence`` and
        ``kl_divergence_with_log_targets`` (values and gradients).
    """
    name = "kl_divergence"
    dim = _check_distributions(name, logits, labels)
    x = cast(logits, compute_dtype(logits))
    p, log_p = _target(cast(labels, x.dtype), log_target)
    loss = _term(p, log_p - torch.log_softmax(x, dim)).sum(dim)
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)


# -- jensen_shannon -----------------------------------------------------------------


def _log_mix(d: Tensor, w: Any, log_w: Any, log_rest: Any) -> Tensor:
    """``log((1 - w) + w·exp(d))`` accurately: ``log1p(w·expm1(d))`` near ``d = 0`` (the value is
    then tiny, where a difference of logs would cancel), ``logaddexp`` elsewhere (no overflow).
    ``log_w = log w`` and ``log_rest = log(1 - w)`` are given, exact for Python numbers."""
    near = d.abs() < 1
    small = torch.where(near, d, 0.0)  # expm1 never sees a large d, not even in the gradient
    far = torch.logaddexp(log_w + d, torch.zeros_like(d) + log_rest)
    return torch.where(near, torch.log1p(w * torch.expm1(small)), far)


@register_loss("jensen_shannon", [Feature.CATEGORY_DISTRIBUTION], validate=_probabilities_hook("jensen_shannon"))
def jensen_shannon(logits: Tensor, labels: Tensor, *, beta: Beta = 0.5, reduction: Reduction = "mean") -> Tensor:
    r"""Generalized Jensen-Shannon divergence between target probabilities and ``softmax(logits)``.

    With the target :math:`P_n` (``labels``), :math:`Q_n = \operatorname{softmax}(x_n)` and
    their mixture :math:`M_n = \beta P_n + (1 - \beta) Q_n`:

    .. math::

        \ell_n = \beta\, \mathrm{KL}(P_n \,\|\, M_n) + (1 - \beta)\, \mathrm{KL}(Q_n \,\|\, M_n)
               = \sum_c \beta P_{n,c} \log\frac{P_{n,c}}{M_{n,c}}
                 + (1 - \beta) Q_{n,c} \log\frac{Q_{n,c}}{M_{n,c}}

        \text{mean} = \frac{1}{N} \sum_n \ell_n, \qquad \text{sum} = \sum_n \ell_n

    :math:`\beta = 1/2` is the Jensen-Shannon divergence (at most :math:`\log 2`);
    :math:`\ell_n \le -\beta \log \beta - (1 - \beta) \log(1 - \beta)` always, so it is
    finite for any logits. The log-ratios are computed from
    :math:`d = \log Q - \log P` as :math:`\log(M/P) = \log(\beta + (1 - \beta) e^d)`
    (``log1p``/``expm1`` near :math:`d = 0`, ``logaddexp`` elsewhere), never from
    :math:`\log M`: accurate when :math:`Q \approx P` and exact where one of them is 0
    (:math:`\log(P/M) = -\log \beta` where :math:`Q = 0`, a masked class or an underflow;
    a class with :math:`P = Q = 0` gives 0, with a finite gradient). Computed in
    float32 for half-precision inputs.

    Args:
        logits: ``[B, C]``, ``[B, C, d1, ...]`` (classes on dimension 1) or ``[C]``.
        labels: target probabilities :math:`P` of the logits' shape (the module
            checks: ``>= 0``, summing to 1 over the classes within ``max(1e-3, C·eps)``).
        beta: :math:`\beta \in (0, 1)`, the target's weight in the mixture (a number or a 0-d tensor).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell` per example, ``[B]`` (``[B, d1, ...]``; ``[]`` for one
        example); ``"sum"``: its sum; ``"mean"``: its mean (0 for an empty batch).

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        >>> target = torch.tensor([[0.7, 0.3, 0.0], [0.2, 0.5, 0.3]])
        >>> LF.jensen_shannon(logits, target, reduction="none")
        tensor([0.0395, 0.0052])
        >>> LF.jensen_shannon(logits, target, beta=0.9)
        tensor(0.0099)

    References:
        Lin, `Divergence measures based on the Shannon entropy
        <https://doi.org/10.1109/18.61115>`_, 1991 (the weighted form). Checked
        against the closed form written with :math:`M` in float64 and against the
        entropy identity :math:`H(M) - \beta H(P) - (1 - \beta) H(Q)`.
    """
    name = "jensen_shannon"
    dim = _check_distributions(name, logits, labels)
    x = cast(logits, compute_dtype(logits))
    p = cast(labels, x.dtype)
    log_q = torch.log_softmax(x, dim)
    q = log_q.exp()
    has_p, has_q = p != 0, log_q != -math.inf  # (a NaN counts as present: it stays NaN)
    d = torch.where(has_p & has_q, log_q - _safe_log(p), 0.0)
    if isinstance(beta, Tensor):
        b = beta.to(x.dtype)
        log_b, log_1mb = torch.log(b), torch.log1p(-b)
    else:
        b, log_b, log_1mb = beta, math.log(beta), math.log1p(-beta)
    # log(P/M) = -log(β + (1-β)e^d), -log β where Q = 0; log(Q/M) = -log((1-β) + βe^-d), -log(1-β) where P = 0
    log_pm = torch.where(has_q, -_log_mix(d, 1 - b, log_1mb, log_b), -log_b)
    log_qm = torch.where(has_p, -_log_mix(-d, b, log_b, log_1mb), -log_1mb)
    loss = (b * _term(p, log_pm) + (1 - b) * _term(q, log_qm)).sum(dim)
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)


# -- knowledge_distillation ---------------------------------------------------------


def _over(z: Tensor, temperature: Any) -> Tensor:
    """``z / T`` for shifted logits ``z <= 0``; with a tensor ``T``, a masked ``-inf`` never
    enters the division (its gradient with respect to ``T`` would be ``0 · inf``)."""
    if not isinstance(temperature, Tensor):
        return z / temperature
    masked = z == -math.inf
    return torch.where(masked, z, torch.where(masked, 0.0, z) / temperature)


def _argmax_last(logits: Tensor) -> Tensor:
    """The prediction rule: argmax over the last dimension (the classes, or the vocabulary)."""
    return logits.argmax(dim=-1)


@register_loss("knowledge_distillation", [Feature.CATEGORY, Feature.SEQUENCE, Feature.TEXT], predict=_argmax_last)
def knowledge_distillation(
    logits: Tensor, teacher_logits: Tensor, *, temperature: Temperature = 1.0, reduction: Reduction = "mean"
) -> Tensor:
    r"""Hinton's distillation loss: :math:`T^2\, \mathrm{KL}(p \,\|\, q)` between tempered softmaxes.

    For student logits :math:`s_n` (``logits``), teacher logits :math:`t_n` and
    temperature :math:`T`, with :math:`p_n = \operatorname{softmax}(t_n/T)` and
    :math:`q_n = \operatorname{softmax}(s_n/T)`:

    .. math::

        \ell_n = T^2 \sum_c p_{n,c} \bigl(\log p_{n,c} - \log q_{n,c}\bigr)

        \text{mean} = \frac{1}{N} \sum_n \ell_n, \qquad \text{sum} = \sum_n \ell_n

    The factor :math:`T^2` keeps the gradient, :math:`T (q_n - p_n)` with respect to
    :math:`s_n`, of the same size across temperatures. **The classes are on the last
    dimension for every rank**: ``[C]``, ``[B, C]``, ``[B, T, V]`` (tokens of a
    vocabulary, as lossfn's sequence losses take them) and any ``[..., C]``; one loss
    per leading position. (Per-pixel maps ``[B, C, H, W]`` go in as
    ``movedim(1, -1)``.) ``"mean"`` is over every position (examples, or tokens:
    ``batchmean`` of the flattened ``[N, C]`` rows), with no padding mask. The teacher
    logits are data: a gradient flows to them too, so detach them for the usual use.
    :math:`T^2 (\log p - \log q)` is computed as
    :math:`T (z^t - z^s) - T^2 (\operatorname{lse}(z^t/T) - \operatorname{lse}(z^s/T))` from
    max-shifted logits :math:`z`: a finite gradient for :math:`T` from ``1e-15`` to
    ``1e15`` and logits up to ``1e30`` in float32, and a finite value wherever it is
    representable (:math:`s/T` itself would overflow); a class masked (``-inf``) in the
    teacher gives 0. Computed in float32 for half-precision inputs. As in torch's recipe,
    the float32 value carries a relative rounding error that grows like :math:`T^2`
    (about ``2e-5`` at :math:`T = 20`, ``1e-3`` at :math:`T = 100`).

    Args:
        logits: student logits ``[..., C]``: ``[B, C]``, ``[B, T, V]`` or ``[C]``.
        teacher_logits: teacher logits of the same shape.
        temperature: :math:`T > 0` (a number or a 0-d tensor: vmap over a grid, or a gradient).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell` per position, ``logits.shape[:-1]`` (``[B]``,
        ``[B, T]``, ``[]``); ``"sum"``: its sum; ``"mean"``: its mean (0 when empty).

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> student = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        >>> teacher = torch.tensor([[3.0, 1.0, -2.0], [1.0, 1.0, -1.0]])
        >>> LF.knowledge_distillation(student, teacher, reduction="none")
        tensor([0.0252, 0.1978])
        >>> LF.knowledge_distillation(student, teacher, temperature=4.0)
        tensor(0.2942)

    References:
        Hinton, Vinyals and Dean, `Distilling the Knowledge in a Neural Network
        <https://arxiv.org/abs/1503.02531>`_, 2015. Checked against torch's usual
        recipe ``F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1),
        reduction="batchmean") * T**2`` (on the flattened rows) and the closed form.
    """
    name = "knowledge_distillation"
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 1, "[B, C], [B, T, V] or [C] (classes last)")
    check_floating(name, "teacher_logits", teacher_logits)
    check_same_shape(name, logits, teacher_logits, names=("logits", "teacher_logits"))
    x = cast(logits, compute_dtype(logits))
    t = cast(teacher_logits, x.dtype)
    temp = temperature.to(x.dtype) if isinstance(temperature, Tensor) else temperature
    # shifted by the (detached) maximum: every z <= 0, and the loss does not change
    z_s = x - x.amax(-1, keepdim=True).detach()
    z_t = t - t.amax(-1, keepdim=True).detach()
    a_t = _over(z_t, temp)
    lse_s = torch.logsumexp(_over(z_s, temp), -1, keepdim=True)
    lse_t = torch.logsumexp(a_t, -1, keepdim=True)
    p = torch.exp(a_t - lse_t)
    shift = torch.where(p != 0, z_t - z_s, 0.0)  # (-inf) - (-inf) at a class masked in both stays out
    loss = (p * (temp * shift - temp * temp * (lse_t - lse_s))).sum(-1)
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)
