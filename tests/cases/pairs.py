"""The cases of the pair, triplet, supervised contrastive and ranking losses.

References, all independent of lossfn: ``torch.nn.functional``'s embedding, ranking and
triplet losses (as references and as twins, every reduction), optax's formulas written
out in torch (``cosine_distance``; ``ranking_softmax``, whose unmasked form is also
torch's soft-target ``cross_entropy``), and pytorch-metric-learning's ``SupConLoss``
with a loop over the pairs written from Khosla et al.'s formula. Stored optax vectors
are checked in ``tests/test_pairs.py`` and ``tests/test_ranking.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import SupConLoss

from . import Case, Twin, elementwise, per_example


def _normal(generator, dtype, *shape):
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


def _signs(generator, dtype, *shape):
    """±1 labels as torch takes them (float)."""
    return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(dtype)


def _integer_signs_of(generator, *shape):
    """±1 labels, int64: the generic suite differentiates every floating-point input, and
    these losses do not depend on their labels continuously (float labels: the twins)."""
    return torch.randint(0, 2, shape, generator=generator) * 2 - 1


# -- cosine_distance (optax) ----------------------------------------------------------------


def _cosine_inputs(batch, dtype, generator):
    return _normal(generator, dtype, batch, 4), _normal(generator, dtype, batch, 4)


def cosine_distance_reference(logits, labels, *, reduction="mean", eps=0.0):
    """optax: 1 - (x / sqrt(max(|x|², ε))) · (y / sqrt(max(|y|², ε)))."""
    x, y = logits.double(), labels.double()
    nx = x.square().sum(-1).clamp_min(float(eps)).sqrt()
    ny = y.square().sum(-1).clamp_min(float(eps)).sqrt()
    loss = (1 - (x * y).sum(-1) / (nx * ny)).to(logits.dtype)
    return {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[reduction]


# -- cosine_embedding, hinge_embedding, margin_ranking, triplet_margin (torch) ----------------


def _embedding_pairs(batch, dtype, generator):
    return _normal(generator, dtype, batch, 5), _normal(generator, dtype, batch, 5), _integer_signs_of(generator, batch)


def _distances(batch, dtype, generator):
    return _normal(generator, dtype, batch, 3).abs() * 1.5, _integer_signs_of(generator, batch, 3)


def _scores(batch, dtype, generator):
    return _normal(generator, dtype, batch), _normal(generator, dtype, batch), _integer_signs_of(generator, batch)


def _triplets(batch, dtype, generator):
    return tuple(_normal(generator, dtype, batch, 4) for _ in range(3))


def _twin(shape, kind):
    """A ``Twin.make`` of the given batch shape for one of the input layouts above."""

    def make(dtype, generator):
        if kind == "pairs":
            return _normal(generator, dtype, *shape), _normal(generator, dtype, *shape), _signs(generator, dtype, *shape[:-1])
        if kind == "distances":
            return _normal(generator, dtype, *shape).abs(), _signs(generator, dtype, *shape)
        if kind == "scores":
            return _normal(generator, dtype, *shape), _normal(generator, dtype, *shape), _signs(generator, dtype, *shape)
        return tuple(_normal(generator, dtype, *shape) for _ in range(3))

    return make


def _integer_signs(make):
    def with_integers(dtype, generator):
        *outputs, labels = make(dtype, generator)
        return (*outputs, labels.long())

    return with_integers


def _with(fn, **params):
    return lambda *inputs, reduction: fn(*inputs, **params, reduction=reduction)


COSINE_TWINS = (
    Twin("[7, 5]", _twin((7, 5), "pairs"), F.cosine_embedding_loss),
    Twin("[7, 5] margin 0.4", _twin((7, 5), "pairs"), _with(F.cosine_embedding_loss, margin=0.4), {"margin": 0.4}),
    Twin("[7, 5] margin -0.6", _twin((7, 5), "pairs"), _with(F.cosine_embedding_loss, margin=-0.6), {"margin": -0.6}),
    Twin("[5] one pair", _twin((5,), "pairs"), F.cosine_embedding_loss),
    Twin("[7, 5] int64 labels", _integer_signs(_twin((7, 5), "pairs")), F.cosine_embedding_loss),
    Twin("[0, 5] empty", _twin((0, 5), "pairs"), F.cosine_embedding_loss),
)
HINGE_TWINS = (
    Twin("[6, 3]", _twin((6, 3), "distances"), F.hinge_embedding_loss),
    Twin("[9] margin 0.5", _twin((9,), "distances"), _with(F.hinge_embedding_loss, margin=0.5), {"margin": 0.5}),
    Twin("[2, 3, 4] margin 2", _twin((2, 3, 4), "distances"), _with(F.hinge_embedding_loss, margin=2.0), {"margin": 2.0}),
    Twin("[0, 3] empty", _twin((0, 3), "distances"), F.hinge_embedding_loss),
)
RANKING_TWINS = (
    Twin("[9]", _twin((9,), "scores"), F.margin_ranking_loss),
    Twin("[9] margin 0.5", _twin((9,), "scores"), _with(F.margin_ranking_loss, margin=0.5), {"margin": 0.5}),
    Twin("[] one score margin 1", _twin((), "scores"), _with(F.margin_ranking_loss, margin=1.0), {"margin": 1.0}),
    Twin("[9] int64 labels margin -0.2", _integer_signs(_twin((9,), "scores")),
         _with(F.margin_ranking_loss, margin=-0.2), {"margin": -0.2}),
    Twin("[0] empty", _twin((0,), "scores"), F.margin_ranking_loss),
)
TRIPLET_TWINS = (
    Twin("[7, 4]", _twin((7, 4), "triplets"), F.triplet_margin_loss),
    Twin("[7, 4] p 1 margin 0.5", _twin((7, 4), "triplets"), _with(F.triplet_margin_loss, p=1.0, margin=0.5),
         {"p": 1.0, "margin": 0.5}),
    Twin("[7, 4] p 3 eps 0.1 swap", _twin((7, 4), "triplets"), _with(F.triplet_margin_loss, p=3.0, eps=0.1, swap=True),
         {"p": 3.0, "eps": 0.1, "swap": True}),
    Twin("[7, 4] p 1.5 eps 0 margin 2", _twin((7, 4), "triplets"),
         _with(F.triplet_margin_loss, p=1.5, eps=0.0, margin=2.0), {"p": 1.5, "eps": 0.0, "margin": 2.0}),
    Twin("[4] one triplet swap", _twin((4,), "triplets"), _with(F.triplet_margin_loss, swap=True), {"swap": True}),
    Twin("[0, 4] empty", _twin((0, 4), "triplets"), F.triplet_margin_loss),
)


def _torch_reference(fn):
    def reference(*inputs, reduction="mean", **params):
        return fn(*inputs, **params, reduction=reduction)

    return reference


# -- supervised_contrastive (pytorch-metric-learning and a loop) --------------------------------


def _embeddings_and_labels(batch, dtype, generator):
    return _normal(generator, dtype, batch, 5), torch.randint(0, 3, (batch,), generator=generator)


def supcon_loop(embeddings, labels, temperature):
    """Per anchor: the mean over its positives p of -log(e^s_ip / Σ_{k≠i} e^s_ik), 0 without one."""
    z = embeddings.double() / embeddings.double().norm(dim=1, keepdim=True)
    s = (z @ z.T / float(temperature)).tolist()
    y = labels.tolist()
    rows = []
    for i in range(len(y)):
        others = [s[i][k] for k in range(len(y)) if k != i]
        positives = [s[i][p] for p in range(len(y)) if p != i and y[p] == y[i]]
        if not positives:
            rows.append(0.0)
            continue
        top = max(others)
        log_denominator = top + math.log(sum(math.exp(v - top) for v in others))
        rows.append(sum(log_denominator - v for v in positives) / len(positives))
    return torch.tensor(rows, dtype=embeddings.dtype)


def anchors_with_a_positive(embeddings, labels, **_):
    return ((labels[:, None] == labels[None, :]).sum(1) > 1).to(embeddings.dtype)


def supcon_reference(embeddings, labels, *, reduction="mean", temperature=0.07):
    same = labels[:, None] == labels[None, :]
    has_pairs = same.sum() > len(labels) and not same.all()  # pml's loss is 0 without a negative pair
    if reduction == "mean" and has_pairs:
        return SupConLoss(temperature=float(temperature))(embeddings, labels)
    rows = supcon_loop(embeddings, labels, temperature)
    if reduction == "none":
        return rows
    weights = anchors_with_a_positive(embeddings, labels)
    return rows.sum() if reduction == "sum" else rows.sum() / weights.sum().clamp_min(1)


# -- ranking_softmax (optax's formula; torch's soft-target cross_entropy without a mask) ----------


def _lists(batch, dtype, generator):
    """Scores [B, 5], graded relevance {0, 1, 2}, and a mask keeping each list's first item
    (list 2 keeps none, for B > 2: it is left out of the mean)."""
    logits = _normal(generator, dtype, batch, 5) * 2
    labels = torch.randint(0, 3, (batch, 5), generator=generator).to(dtype)
    where = torch.rand(batch, 5, generator=generator) < 0.7
    where[:, 0] = True
    if batch > 2:
        where[2] = False
    return logits, labels, where


def ranking_reference(logits, labels, where=None, *, reduction="mean"):
    """-Σ_{i kept} y_i log softmax_kept(s)_i per list; the mean over lists with a kept item."""
    x, y = logits.double(), labels.double()
    kept = torch.ones_like(x, dtype=torch.bool) if where is None else where
    rows = []
    for scores, relevance, keep in zip(x, y, kept):
        if not keep.any():
            rows.append(torch.zeros((), dtype=torch.float64))
            continue
        log_p = torch.log_softmax(scores[keep], dim=0)
        rows.append(-(relevance[keep] * log_p).sum())
    loss = torch.stack(rows).to(logits.dtype) if rows else x.new_zeros(0).to(logits.dtype)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / kept.any(-1).sum().clamp_min(1).to(loss.dtype)


def lists_with_a_kept_item(logits, labels, where=None, **_):
    return None if where is None else where.any(-1).to(logits.dtype)


def _soft_lists(shape):
    def make(dtype, generator):
        return _normal(generator, dtype, *shape) * 2, torch.rand(shape, generator=generator, dtype=torch.float64).to(dtype)

    return make


SOFTMAX_TWINS = (
    Twin("[6, 5] soft-target cross_entropy", _soft_lists((6, 5)), F.cross_entropy),
    Twin("[0, 5] empty", _soft_lists((0, 5)), F.cross_entropy),
)


CASES = [
    Case("cosine_distance", _cosine_inputs, params=({}, {"eps": 2.0}), reference=cosine_distance_reference),
    Case(
        "cosine_embedding",
        _embedding_pairs,
        params=({}, {"margin": 0.3}, {"margin": -0.5}),
        reference=_torch_reference(F.cosine_embedding_loss),
        twins=COSINE_TWINS,
    ),
    Case(
        "hinge_embedding",
        _distances,
        params=({}, {"margin": 0.5}, {"margin": 2.0}),
        reference=_torch_reference(F.hinge_embedding_loss),
        none_shape=elementwise,
        twins=HINGE_TWINS,
    ),
    Case(
        "margin_ranking",
        _scores,
        params=({}, {"margin": 0.5}),
        reference=_torch_reference(F.margin_ranking_loss),
        none_shape=elementwise,
        twins=RANKING_TWINS,
    ),
    Case(
        "triplet_margin",
        _triplets,
        params=({}, {"margin": 0.5, "p": 1.0}, {"p": 3.0, "eps": 0.0, "swap": True}),
        reference=_torch_reference(F.triplet_margin_loss),
        twins=TRIPLET_TWINS,
    ),
    Case(
        "supervised_contrastive",
        _embeddings_and_labels,
        params=({}, {"temperature": 0.5}),
        reference=supcon_reference,
        mean_weights=anchors_with_a_positive,
        skip={
            "per_example_gradients": "batch-coupled: an anchor's term depends on every row of the batch "
            "(its denominator), so one row alone has no loss of its own to differentiate",
        },
    ),
    Case(
        "ranking_softmax",
        _lists,
        reference=ranking_reference,
        none_shape=per_example,
        mean_weights=lists_with_a_kept_item,
        twins=SOFTMAX_TWINS,
        labels_bounded=False,  # relevance has no upper bound (its hook refuses negative and NaN labels)
    ),
]
