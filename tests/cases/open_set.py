"""The cases of the open-set losses ``entropic_open_set`` and ``objectosphere``.

The reference is Ludwig's module written out in plain torch (boolean masks, fine in
a reference; ``log(p + 1e-10)`` as Ludwig has it): per example for ``"none"`` and
``"sum"``, and Ludwig's known mean plus unknown mean for ``"mean"``. Without a
background class both are ``F.cross_entropy`` (plus the hinge), checked in
``tests/test_open_set.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Case

CLASSES = 4
LUDWIG_EPSILON = 1e-10  # ludwig/modules/loss_modules.py, EPSILON


def _classes(num_classes):
    """``[B, C]`` logits and labels in [0, C), every third one class C - 1 (so both kinds are
    present for a background class C - 1)."""

    def make(batch, dtype, generator):
        logits = 2 * torch.randn(batch, num_classes, generator=generator)
        labels = torch.randint(0, num_classes, (batch,), generator=generator)
        labels = torch.where(torch.arange(batch) % 3 == 0, num_classes - 1, labels)
        return logits.to(dtype), labels

    return make


_logits_and_labels = _classes(CLASSES)


def _needed(background_class=None, **_):
    """A background class is a class index: the logits need one column past it."""
    return None if background_class is None else max(CLASSES, background_class + 1)


def ludwig_terms(logits, labels, *, background_class=None, xi=None, zeta=None):
    """Per example (known: CE [+ hinge]; unknown: Σ p log(p + ε) [+ ζ‖x‖²]) and the known mask."""
    known = torch.ones_like(labels, dtype=torch.bool) if background_class is None else labels != background_class
    terms = torch.zeros(labels.shape, dtype=logits.dtype)
    if known.any():
        kl = logits[known]
        known_terms = F.cross_entropy(kl, labels[known], reduction="none")
        if xi is not None:
            known_terms = known_terms + torch.clamp(xi - kl.norm(dim=-1), min=0.0).pow(2)
        terms[known] = known_terms
    if (~known).any():
        ul = logits[~known]
        probs = torch.softmax(ul, dim=-1)
        unknown_terms = (probs * torch.log(probs + LUDWIG_EPSILON)).sum(dim=-1)
        if zeta is not None:
            unknown_terms = unknown_terms + zeta * ul.norm(dim=-1).pow(2)
        terms[~known] = unknown_terms
    return terms, known


def ludwig_mean(terms, known):
    """Ludwig's number: the known samples' mean plus the unknown samples' mean (each only if present)."""
    loss = terms.new_tensor(0.0)
    if known.any():
        loss = loss + terms[known].mean()
    if (~known).any():
        loss = loss + terms[~known].mean()
    return loss


def _reference(logits, labels, reduction, **params):
    terms, known = ludwig_terms(logits, labels, **params)
    return {"none": terms, "sum": terms.sum(), "mean": ludwig_mean(terms, known)}[reduction]


def entropic_reference(logits, labels, *, reduction="mean", background_class=None):
    return _reference(logits, labels, reduction, background_class=background_class)


def objectosphere_reference(logits, labels, *, reduction="mean", background_class=None, xi=10.0, zeta=0.1):
    return _reference(logits, labels, reduction, background_class=background_class, xi=xi, zeta=zeta)


_TWO_MEANS = (
    "the mean is Ludwig's known mean plus unknown mean, not a (weighted) mean of the per-example "
    "terms once a batch holds both kinds (the reference checks it for every reduction)"
)

CASES = [
    Case(
        "entropic_open_set",
        _logits_and_labels,
        params=({}, {"background_class": 0}, {"background_class": 3}),
        reference=entropic_reference,
        classes=_classes,
        classes_needed=_needed,
        skip={"reduction_consistency": _TWO_MEANS},
    ),
    Case(
        "objectosphere",
        _logits_and_labels,
        params=(
            {},
            {"background_class": 1, "xi": 0.0, "zeta": 0.0},
            {"background_class": 3},
            {"background_class": 3, "xi": 3.0, "zeta": 0.5},  # the last: compiled, and in half precision
        ),
        reference=objectosphere_reference,
        classes=_classes,
        classes_needed=_needed,
        skip={
            "reduction_consistency": _TWO_MEANS,
            "tensor_hyperparameters": "the generic check calls with background_class=None (the default), "
            "where zeta weighs no sample; tests/test_open_set.py checks xi and zeta as 0-d tensors under "
            "vmap and grad with a background class",
        },
    ),
]
