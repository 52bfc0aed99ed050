"""Cases for ``nll``, ``binary_cross_entropy`` and ``asymmetric``, with their references.

``nll`` and ``binary_cross_entropy`` are checked against ``F.nll_loss`` and
``F.binary_cross_entropy`` (twins: every reduction, several shapes, weights,
``ignore_index``); ``asymmetric`` against timm's ``AsymmetricLossMultiLabel`` formula
written out here in linear space (timm is not a dependency), which is fine at the
moderate logits of the cases (the extremes: ``tests/test_likelihood.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Case, Twin, elementwise, reduce_like_torch as _reduce

WEIGHTS_4 = [0.5, 2.0, 1.0, 3.0]


# -- nll ----------------------------------------------------------------------------------


def log_probs(num_classes: int, ignored: int | None = None):
    """``[B, C]`` log-softmax outputs and labels in ``[0, C)`` (every third one ``ignored``)."""

    def make(batch, dtype, generator):
        x = torch.log_softmax(2 * torch.randn(batch, num_classes, generator=generator, dtype=torch.float64), 1)
        labels = torch.randint(0, num_classes, (batch,), generator=generator)
        if ignored is not None:
            labels[::3] = ignored
        return x.to(dtype), labels

    return make


def log_probs_twin(*shape: int, ignored: int | None = None):
    """``make(dtype, generator)`` of log-probabilities ``shape`` (classes on dimension 1, or ``[C]``)."""

    def make(dtype, generator):
        class_dim = 1 if len(shape) > 1 else 0
        x = torch.log_softmax(3 * torch.randn(shape, generator=generator, dtype=dtype), class_dim)
        label_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
        labels = torch.randint(0, shape[class_dim], label_shape, generator=generator)
        if ignored is not None and labels.ndim:
            flat = labels.reshape(-1).clone()
            flat[::3] = ignored
            labels = flat.reshape(labels.shape)
        return x, labels

    return make


def _nll(weight=None, **kwargs):
    def call(x, labels, reduction):
        w = None if weight is None else torch.tensor(weight, dtype=x.dtype)
        return F.nll_loss(x, labels, weight=w, reduction=reduction, **kwargs)

    return call


def nll_reference(x, labels, *, reduction="mean", class_weights=None, ignore_index=-100):
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=x.dtype)
    return F.nll_loss(x, labels, weight=weight, ignore_index=ignore_index, reduction=reduction)


def nll_mean_weights(x, labels, *, class_weights=None, ignore_index=-100, **_):
    """torch's denominator: the weight of each kept label (1 if unweighted), 0 at ignored ones."""
    kept = (labels != ignore_index).to(x.dtype)
    if class_weights is None:
        return kept
    return torch.tensor(class_weights, dtype=x.dtype)[torch.where(labels != ignore_index, labels, 0)] * kept


NLL_TWINS = (
    Twin("[B, C]", log_probs_twin(6, 4), _nll()),
    Twin("[C] one example", log_probs_twin(4), _nll()),
    Twin("weights", log_probs_twin(6, 4), _nll(WEIGHTS_4), {"class_weights": WEIGHTS_4}),
    Twin("ignore_index", log_probs_twin(7, 4, ignored=-100), _nll()),
    Twin("ignore_index+weights", log_probs_twin(7, 4, ignored=-100), _nll(WEIGHTS_4), {"class_weights": WEIGHTS_4}),
    Twin("ignore_index=2+weights", log_probs_twin(7, 4, ignored=2), _nll(WEIGHTS_4, ignore_index=2),
         {"class_weights": WEIGHTS_4, "ignore_index": 2}),
    Twin("per-pixel [B, C, H, W]", log_probs_twin(2, 4, 3, 2, ignored=-100), _nll(WEIGHTS_4),
         {"class_weights": WEIGHTS_4}),
    Twin("empty batch", log_probs_twin(0, 4), _nll()),
)


# -- binary_cross_entropy -----------------------------------------------------------------


def probabilities(*features: int, soft: bool = False):
    """``[B, *features]`` probabilities in (0, 1) and 0/1 integer (or soft float) targets."""

    def make(batch, dtype, generator):
        shape = (batch, *features)
        p = torch.sigmoid(2 * torch.randn(shape, generator=generator, dtype=torch.float64)).to(dtype)
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        return p, (u.to(dtype) if soft else (u > 0.5).long())

    return make


def probabilities_twin(*shape: int, soft: bool = False, edges: bool = False):
    """``make(dtype, generator)``; with ``edges`` some probabilities are exactly 0 and 1."""

    def make(dtype, generator):
        p = torch.rand(shape, generator=generator, dtype=dtype)
        if edges and p.numel():
            flat = p.reshape(-1).clone()
            flat[::4], flat[1::4] = 0.0, 1.0
            p = flat.reshape(shape)
        u = torch.rand(shape, generator=generator, dtype=dtype)
        return p, (u if soft else (u > 0.5).to(dtype))

    return make


def _bce(weight=None, class_dim=1):
    def call(p, labels, reduction):
        w = None
        if weight is not None:
            w = torch.tensor(weight, dtype=p.dtype)
            w = w.view(-1, *[1] * (p.ndim - 1 - class_dim))
        return F.binary_cross_entropy(p, labels.to(p.dtype), weight=w, reduction=reduction)

    return call


def bce_reference(p, labels, *, reduction="mean", class_weights=None):
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=p.dtype)
    return F.binary_cross_entropy(p, labels.to(p.dtype), weight=weight, reduction=reduction)


BCE_TWINS = (
    Twin("[B] binary", probabilities_twin(7), _bce()),
    Twin("[] one element", probabilities_twin(), _bce()),
    Twin("[B, C] weights", probabilities_twin(6, 4), _bce(WEIGHTS_4), {"class_weights": WEIGHTS_4}),
    Twin("[B, C] p = 0 and 1 (the -100 clamp)", probabilities_twin(6, 4, edges=True), _bce(WEIGHTS_4),
         {"class_weights": WEIGHTS_4}),
    Twin("[B, C, L] soft targets, weights", probabilities_twin(3, 4, 2, soft=True), _bce(WEIGHTS_4),
         {"class_weights": WEIGHTS_4}),
    Twin("[C] one example, weights", probabilities_twin(4), _bce(WEIGHTS_4, class_dim=0),
         {"class_weights": WEIGHTS_4}),
    Twin("[0, C] empty", probabilities_twin(0, 4), _bce()),
)


# -- asymmetric -----------------------------------------------------------------------------


def timm_asymmetric(logits, labels, *, gamma_neg=4.0, gamma_pos=1.0, clip=0.05, eps=1e-8):
    """timm's ``AsymmetricLossMultiLabel.forward`` with ``reduction="none"`` (timm 1.0.31; older
    releases returned its ``-loss.sum()``), written out (``disable_torch_grad_focal_loss=False``,
    ``smoothing=0``, no ``weight`` or ``pos_weight``: timm's defaults), elementwise and negated."""
    y = labels.to(logits.dtype)
    xs_pos = torch.sigmoid(logits)
    xs_neg = 1 - xs_pos
    if clip is not None and clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    los_pos = y * torch.log(xs_pos.clamp(min=eps))
    los_neg = (1 - y) * torch.log(xs_neg.clamp(min=eps))
    loss = los_pos + los_neg
    if gamma_neg > 0 or gamma_pos > 0:
        pt = xs_pos * y + xs_neg * (1 - y)
        one_sided_gamma = gamma_pos * y + gamma_neg * (1 - y)
        loss = loss * torch.pow(1 - pt, one_sided_gamma)
    return -loss


def asymmetric_reference(logits, labels, *, reduction="mean", **params):
    return _reduce(timm_asymmetric(logits, labels, **{k: float(v) for k, v in params.items()}), reduction)


def multi_hot_logits(num_classes: int, soft: bool = False):
    """``[B, C]`` logits and ``[B, C]`` 0/1 (or soft) targets: a set output."""

    def make(batch, dtype, generator):
        logits = 2 * torch.randn(batch, num_classes, generator=generator, dtype=torch.float64)
        u = torch.rand(batch, num_classes, generator=generator, dtype=torch.float64)
        return logits.to(dtype), (u.to(dtype) if soft else (u > 0.5).long())

    return make


CASES = [
    Case(
        "nll",
        log_probs(4),
        params=({}, {"class_weights": WEIGHTS_4}, {"ignore_index": 1}, {"class_weights": WEIGHTS_4, "ignore_index": 2}),
        reference=nll_reference,
        mean_weights=nll_mean_weights,
        twins=NLL_TWINS,
        kind="log_probs",
        classes=log_probs,
    ),
    Case(
        "binary_cross_entropy",
        probabilities(4),
        params=({}, {"class_weights": WEIGHTS_4}),
        reference=bce_reference,
        none_shape=elementwise,
        twins=BCE_TWINS,
        kind="probabilities",
        extreme=1.0,  # probabilities: sign(p) * 1 puts them at 0 and 1, torch's clamp at -100
        classes=probabilities,
    ),
    Case(
        "asymmetric",
        multi_hot_logits(4),
        params=(
            {},
            {"gamma_neg": 0.0, "gamma_pos": 0.0, "clip": 0.0, "eps": 0.0},
            {"gamma_neg": 0.5, "gamma_pos": 0.25},
            {"gamma_neg": 2.0, "gamma_pos": 0.0, "clip": 0.2, "eps": 1e-3},
            {"gamma_neg": 3.0, "gamma_pos": 2.0, "clip": 0.0},
        ),
        reference=asymmetric_reference,
        none_shape=elementwise,
        classes=multi_hot_logits,
    ),
]
