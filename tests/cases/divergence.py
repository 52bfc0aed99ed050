"""Cases for the divergences: ``kl_divergence``, ``jensen_shannon``, ``knowledge_distillation``.

The references are independent of lossfn: ``torch.nn.functional.kl_div`` on
``log_softmax(logits)`` (its elementwise ``"none"`` summed over the classes, its
``"batchmean"`` for lossfn's mean over examples), the Jensen-Shannon closed form written
with the mixture :math:`M` and ``torch.xlogy``, and torch's usual distillation recipe
``F.kl_div(F.log_softmax(s / T), F.softmax(t / T), reduction="batchmean") * T**2``.
The optax numbers are checked in ``tests/test_divergence.py`` from stored vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Case, Twin, reduce_like_torch as _reduce

CLASSES = 5


def _targets(shape, class_dim, dtype, generator, zeros=True):
    """Probabilities over ``class_dim``, with one class of each row set to exactly 0 (then renormalized)."""
    target = torch.softmax(2 * torch.randn(shape, generator=generator, dtype=torch.float64), dim=class_dim)
    if zeros and target.numel():
        classes = shape[class_dim]
        moved = target.movedim(class_dim, -1)
        drop = torch.randint(0, classes, moved.shape[:-1], generator=generator)
        moved = torch.where(torch.arange(classes) == drop.unsqueeze(-1), 0.0, moved)
        target = (moved / moved.sum(-1, keepdim=True)).movedim(-1, class_dim)
    return target.to(dtype)


def distributions(*shape: int, zeros: bool = True):
    """Twin inputs: logits of ``shape`` (classes on dimension 1, or ``[C]``) and target probabilities."""

    def make(dtype, generator):
        class_dim = 1 if len(shape) > 1 else 0
        logits = 2 * torch.randn(shape, generator=generator, dtype=dtype)
        return logits, _targets(shape, class_dim, dtype, generator, zeros)

    return make


def _batch_of_distributions(batch, dtype, generator):
    return distributions(batch, CLASSES)(dtype, generator)


# -- kl_divergence ------------------------------------------------------------------------


def _kl_div(logits, labels, log_target=False):
    """``F.kl_div``'s elementwise terms on ``log_softmax(logits)`` (classes on dimension 1, or 0 for ``[C]``)."""
    dim = 1 if logits.ndim > 1 else 0
    return F.kl_div(torch.log_softmax(logits, dim), labels, reduction="none", log_target=log_target), dim


def kl_reference(logits, labels, *, reduction="mean", log_target=False):
    terms, dim = _kl_div(logits, labels, log_target)
    return _reduce(terms.sum(dim), reduction)


def kl_twin(log_target=False):
    """torch's reductions: ``"none"`` summed over the classes; ``"batchmean"`` for ``[B, C]``; for
    one example ``[C]`` or positions ``[B, C, d]`` lossfn's mean is ``"sum"`` over the number of
    positions (torch's ``batchmean`` divides by ``size(0)``: ``C`` for ``[C]``, ``B`` for ``[B, C, d]``)."""

    def call(logits, labels, reduction):
        log_q = torch.log_softmax(logits, 1 if logits.ndim > 1 else 0)
        if reduction == "none":
            return F.kl_div(log_q, labels, reduction="none", log_target=log_target).sum(1 if logits.ndim > 1 else 0)
        if reduction == "mean" and logits.ndim == 2:
            return F.kl_div(log_q, labels, reduction="batchmean", log_target=log_target)
        total = F.kl_div(log_q, labels, reduction="sum", log_target=log_target)
        if reduction == "sum":
            return total
        positions = logits.numel() // logits.shape[1 if logits.ndim > 1 else 0]
        return total / positions

    return call


def _log_targets(make):
    def log_make(dtype, generator):
        logits, target = make(dtype, generator)
        return logits, torch.log(target)

    return log_make


KL_TWINS = (
    Twin("[B, C] batchmean", distributions(6, CLASSES, zeros=False), kl_twin()),
    Twin("[B, C] log_target", _log_targets(distributions(6, CLASSES, zeros=False)), kl_twin(True),
         {"log_target": True}),
    Twin("[C] one example", distributions(CLASSES, zeros=False), kl_twin()),
    Twin("[B, C, d] per position", distributions(3, CLASSES, 4, zeros=False), kl_twin()),
    Twin("empty batch", distributions(0, CLASSES), kl_twin()),
)


# -- jensen_shannon -----------------------------------------------------------------------


def js_closed_form(logits, labels, *, beta=0.5):
    """β·KL(P‖M) + (1-β)·KL(Q‖M) with M = βP + (1-β)Q, Q = softmax(logits), written with xlogy."""
    dim = 1 if logits.ndim > 1 else 0
    beta = torch.as_tensor(beta, dtype=logits.dtype)
    p, q = labels, torch.softmax(logits, dim)
    m = beta * p + (1 - beta) * q
    kl_pm = (torch.xlogy(p, p) - torch.xlogy(p, m)).sum(dim)
    kl_qm = (torch.xlogy(q, q) - torch.xlogy(q, m)).sum(dim)
    return beta * kl_pm + (1 - beta) * kl_qm


def js_reference(logits, labels, *, reduction="mean", beta=0.5):
    return _reduce(js_closed_form(logits, labels, beta=beta), reduction)


# -- knowledge_distillation ---------------------------------------------------------------


def _student_teacher(batch, dtype, generator):
    student = 2 * torch.randn(batch, CLASSES, generator=generator, dtype=dtype)
    teacher = 2 * torch.randn(batch, CLASSES, generator=generator, dtype=dtype)
    return student, teacher


def logits_pair(*shape: int):
    def make(dtype, generator):
        return tuple(2 * torch.randn(shape, generator=generator, dtype=dtype) for _ in range(2))

    return make


def kd_closed_form(student, teacher, *, temperature=1.0):
    """T²·Σ p (log p − log q), p = softmax(teacher / T), q = softmax(student / T), classes last."""
    temperature = torch.as_tensor(temperature, dtype=student.dtype)
    log_p = torch.log_softmax(teacher / temperature, -1)
    log_q = torch.log_softmax(student / temperature, -1)
    return temperature**2 * (log_p.exp() * (log_p - log_q)).sum(-1)


def kd_reference(student, teacher, *, reduction="mean", temperature=1.0):
    return _reduce(kd_closed_form(student, teacher, temperature=temperature), reduction)


def kd_recipe(temperature=1.0):
    """torch's usual recipe on the rows flattened to ``[N, C]``; ``"none"`` summed over the classes."""

    def call(student, teacher, reduction):
        classes = student.shape[-1]
        s = student.reshape(-1, classes) / temperature
        t = teacher.reshape(-1, classes) / temperature
        log_q, p = F.log_softmax(s, dim=-1), F.softmax(t, dim=-1)
        scale = temperature * temperature
        if reduction == "none":
            return (F.kl_div(log_q, p, reduction="none").sum(-1) * scale).reshape(student.shape[:-1])
        return F.kl_div(log_q, p, reduction="batchmean" if reduction == "mean" else "sum") * scale

    return call


KD_TWINS = (
    Twin("[B, C]", logits_pair(6, CLASSES), kd_recipe()),
    Twin("[B, C] T=4", logits_pair(6, CLASSES), kd_recipe(4.0), {"temperature": 4.0}),
    Twin("[B, T, V] tokens T=2", logits_pair(3, 4, 7), kd_recipe(2.0), {"temperature": 2.0}),
    Twin("[C] one example T=0.5", logits_pair(CLASSES), kd_recipe(0.5), {"temperature": 0.5}),
    Twin("empty batch", logits_pair(0, CLASSES), kd_recipe()),
)


CASES = [
    Case(
        "kl_divergence",
        _batch_of_distributions,
        # log_target=True on the same probabilities: the unnormalized target exp(y), as torch computes it
        params=({}, {"log_target": True}),
        reference=kl_reference,
        twins=KL_TWINS,
    ),
    Case(
        "jensen_shannon",
        _batch_of_distributions,
        params=({}, {"beta": 0.2}, {"beta": 0.85}),
        reference=js_reference,
    ),
    Case(
        "knowledge_distillation",
        _student_teacher,
        params=({}, {"temperature": 4.0}, {"temperature": 0.5}),
        reference=kd_reference,
        twins=KD_TWINS,
    ),
]
