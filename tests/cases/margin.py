"""Cases for the margin losses (issue 12): binary hinge / perceptron / sparsemax, and the multiclass ones.

The references are independent of lossfn: the binary and multiclass losses are
written out here from optax's formulas (the stored optax vectors are checked in
``tests/test_margin.py``), with optax's ±1 targets ``t = 2y - 1`` for the hinge and
the perceptron; ``multi_margin`` and ``multilabel_margin`` are torch's own
``F.multi_margin_loss`` and ``F.multilabel_margin_loss`` (multi-hot labels turned
into torch's -1-padded class indices), also as twins for every reduction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Case, Twin, class_logits, elementwise, reduce_like_torch as _reduce
from .core import indices, multi_hot

WEIGHTS_5 = [0.5, 1.0, 2.0, 1.0, 4.0]


# -- binary: one logit per element ---------------------------------------------------------


def binary_logits(batch, dtype, generator):
    logits = 2 * torch.randn(batch, generator=generator)
    labels = torch.randint(0, 2, (batch,), generator=generator)
    return logits.to(dtype), labels


def _targets(labels, like):
    """optax's ±1 targets from lossfn's 0/1 labels."""
    return 2 * labels.to(like.dtype) - 1


def hinge_reference(logits, labels, *, reduction="mean"):
    return _reduce(torch.clamp(1 - _targets(labels, logits) * logits, min=0), reduction)


def perceptron_reference(logits, labels, *, reduction="mean"):
    return _reduce(torch.clamp(-_targets(labels, logits) * logits, min=0), reduction)


def sparse_plus(z):
    """``jax.nn.sparse_plus``, written as jax writes it."""
    return torch.where(z <= -1, 0.0, torch.where(z >= 1, z, (z + 1) ** 2 / 4))


def binary_sparsemax_reference(logits, labels, *, reduction="mean"):
    """optax's ``sparse_plus(where(labels, -logits, logits))``."""
    return _reduce(sparse_plus(torch.where(labels.bool(), -logits, logits)), reduction)


# -- multiclass: class indices ---------------------------------------------------------------


def multiclass_hinge_reference(logits, labels, *, reduction="mean"):
    """optax's ``max(x + 1 - one_hot) - <x, one_hot>`` over the classes."""
    one_hot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return _reduce((logits + 1 - one_hot).amax(1) - (logits * one_hot).sum(1), reduction)


def multiclass_perceptron_reference(logits, labels, *, reduction="mean"):
    one_hot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return _reduce(logits.amax(1) - (logits * one_hot).sum(1), reduction)


def multi_margin_torch(p=1, margin=1.0, class_weights=None):
    """``F.multi_margin_loss`` with lossfn's hyperparameters."""

    def call(logits, labels, reduction):
        weight = None if class_weights is None else torch.tensor(class_weights, dtype=logits.dtype)
        return F.multi_margin_loss(logits, labels, p=p, margin=float(margin), weight=weight, reduction=reduction)

    return call


def multi_margin_reference(logits, labels, *, reduction="mean", **params):
    return multi_margin_torch(**params)(logits, labels, reduction)


# -- multi-label: multi-hot labels -----------------------------------------------------------


def torch_targets(labels):
    """Multi-hot ``[B, C]`` (or ``[C]``) as torch's targets: each row's target classes, then -1s."""
    rows = labels.reshape(-1, labels.shape[-1]).tolist()
    padded = [[c for c, on in enumerate(row) if on] for row in rows]
    padded = [row + [-1] * (len(rows[0]) - len(row)) for row in padded]
    return torch.tensor(padded, dtype=torch.long).reshape(labels.shape)


def multilabel_margin_reference(logits, labels, *, reduction="mean"):
    return F.multilabel_margin_loss(logits, torch_targets(labels), reduction=reduction)


def _multilabel_twin(logits, labels, reduction):
    return multilabel_margin_reference(logits, labels, reduction=reduction)


def multi_hot_rows(*shape, extremes=False):
    """``make(dtype, generator)``: logits of ``shape`` and 0/1 labels; with ``extremes`` the first
    row has no target and the second has every class a target (torch's loss is 0 for both)."""

    def make(dtype, generator):
        logits = 2 * torch.randn(shape, generator=generator, dtype=dtype)
        labels = torch.randint(0, 2, shape, generator=generator)
        if extremes:
            labels[0], labels[1] = 0, 1
        return logits, labels

    return make


def _bool_labels(dtype, generator):
    logits, labels = multi_hot_rows(5, 4)(dtype, generator)
    return logits, labels.bool()


MULTI_MARGIN_PARAMS = (
    {},
    {"p": 2},
    {"margin": 0.3},
    {"class_weights": WEIGHTS_5},
    {"p": 2, "margin": 1.5, "class_weights": WEIGHTS_5},
)

MULTI_MARGIN_TWINS = (
    Twin("[B, C]", indices(6, 5, classes=5), multi_margin_torch()),
    Twin("[C] one example", indices(5, classes=5), multi_margin_torch()),
    Twin("p=2", indices(6, 5, classes=5), multi_margin_torch(p=2), {"p": 2}),
    Twin("margin=0.3", indices(6, 5, classes=5), multi_margin_torch(margin=0.3), {"margin": 0.3}),
    Twin("weights", indices(7, 5, classes=5), multi_margin_torch(class_weights=WEIGHTS_5),
         {"class_weights": WEIGHTS_5}),
    Twin("p=2 margin=1.5 weights", indices(7, 5, classes=5),
         multi_margin_torch(p=2, margin=1.5, class_weights=WEIGHTS_5),
         {"p": 2, "margin": 1.5, "class_weights": WEIGHTS_5}),
    Twin("[C] one example p=2 weights", indices(5, classes=5), multi_margin_torch(p=2, class_weights=WEIGHTS_5),
         {"p": 2, "class_weights": WEIGHTS_5}),
)

MULTILABEL_TWINS = (
    Twin("[B, C]", multi_hot_rows(6, 5), _multilabel_twin),
    Twin("[C] one example", multi_hot_rows(5), _multilabel_twin),
    Twin("no target, every class a target", multi_hot_rows(5, 4, extremes=True), _multilabel_twin),
    Twin("bool labels", _bool_labels, _multilabel_twin),
)


CASES = [
    Case("hinge", binary_logits, reference=hinge_reference, none_shape=elementwise),
    Case("perceptron", binary_logits, reference=perceptron_reference, none_shape=elementwise),
    Case("binary_sparsemax", binary_logits, reference=binary_sparsemax_reference, none_shape=elementwise),
    Case("multiclass_hinge", class_logits(5), reference=multiclass_hinge_reference),
    Case("multiclass_perceptron", class_logits(5), reference=multiclass_perceptron_reference),
    Case(
        "multi_margin",
        class_logits(5),
        params=MULTI_MARGIN_PARAMS,
        reference=multi_margin_reference,
        twins=MULTI_MARGIN_TWINS,
        classes=class_logits,
    ),
    Case("multilabel_margin", multi_hot(5), reference=multilabel_margin_reference, twins=MULTILABEL_TWINS),
]
