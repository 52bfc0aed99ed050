"""Cases for the losses of the core: regression and the two cross-entropies, with their torch twins."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import Case, Twin, class_logits, elementwise, regression


def multi_hot(num_classes: int):
    """``[B, C]`` logits and ``[B, C]`` 0/1 labels (a set output)."""

    def make(batch: int, dtype: torch.dtype, generator: torch.Generator):
        logits = torch.randn(batch, num_classes, generator=generator).to(dtype)
        labels = torch.randint(0, 2, (batch, num_classes), generator=generator)
        return logits, labels

    return make


_multi_hot = multi_hot(4)


def _sigmoid_reference(logits, labels, *, reduction="mean", class_weights=None):
    pos_weight = None if class_weights is None else torch.tensor(class_weights, dtype=logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=pos_weight, reduction=reduction)


def softmax_reference(
    logits,
    labels,
    *,
    reduction="mean",
    class_weights=None,
    label_smoothing=0.0,
    robust_lambda=0.0,
    confidence_penalty=0.0,
    class_similarities=None,
    class_similarities_temperature=0.0,
    ignore_index=-100,
):
    """``F.cross_entropy`` plus the parts Ludwig leaves unfinished, written from their formulas.

    Per example: ``(1 - λ)·CE + s·(λ/C + β·(1 - H(p)/log C))`` with ``s`` the class
    weight of the label (1 for probability labels); the entropy comes from
    ``torch.distributions.Categorical``; a similarity row, softmaxed at the
    temperature, replaces a class index as the target. The mean divides by ``Σ s``.
    Labels equal to ``ignore_index`` are dropped by boolean indexing (fine in a
    reference) and give 0 in ``"none"``.
    """
    if not labels.is_floating_point():
        kept = labels != ignore_index
        if not kept.all():
            none = torch.zeros(labels.shape, dtype=logits.dtype)
            params = dict(class_weights=class_weights, label_smoothing=label_smoothing, robust_lambda=robust_lambda,
                          confidence_penalty=confidence_penalty, class_similarities=class_similarities,
                          class_similarities_temperature=class_similarities_temperature)
            rows = logits.movedim(1, -1)[kept]
            none[kept] = softmax_reference(rows, labels[kept], reduction="none", **params)
            if reduction == "none":
                return none
            if reduction == "sum":
                return none.sum()
            return softmax_reference(rows, labels[kept], reduction="mean", **params)
    num_classes = logits.shape[1]
    weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=logits.dtype)
    target = labels
    if not labels.is_floating_point() and class_similarities is not None and class_similarities_temperature > 0:
        rows = torch.as_tensor(class_similarities, dtype=logits.dtype)[labels]
        target = torch.softmax(rows / class_similarities_temperature, dim=-1).movedim(-1, 1)
    ce = F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing, reduction="none")
    s = torch.ones_like(ce) if weight is None or labels.is_floating_point() else weight[labels]
    entropy = torch.distributions.Categorical(logits=logits.movedim(1, -1)).entropy()
    loss = (1 - robust_lambda) * ce + s * (
        robust_lambda / num_classes + confidence_penalty * (1 - entropy / math.log(num_classes))
    )
    return {"none": loss, "sum": loss.sum(), "mean": loss.sum() / s.sum()}[reduction]


#: a [5, 5] similarity matrix: each class most similar to itself and its neighbours
SIMILARITIES_5 = [[1.0 if i == j else 0.5 if abs(i - j) == 1 else 0.0 for j in range(5)] for i in range(5)]


# -- twins: the shapes torch accepts ------------------------------------------------------


def pair(*shape: int, positive: bool = False):
    """``make(dtype, generator)`` of two normal tensors of ``shape`` (targets in (0.1, 2.1) if ``positive``)."""

    def make(dtype, generator):
        x = torch.randn(shape, generator=generator, dtype=dtype)
        y = torch.randn(shape, generator=generator, dtype=dtype)
        return x, (y.abs() + 0.1 if positive else y)

    return make


def indices(*shape: int, classes: int, ignored: int | None = None):
    """Logits ``[B, C, ...]`` (``shape`` with the classes at dimension 1, or ``[C]``) and class indices;
    with ``ignored``, every third label is that value."""

    def make(dtype, generator):
        logits = 3 * torch.randn(shape, generator=generator, dtype=dtype)
        label_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
        labels = torch.randint(0, classes, label_shape, generator=generator)
        if ignored is not None and labels.ndim:
            flat = labels.reshape(-1).clone()
            flat[::3] = ignored
            labels = flat.reshape(labels.shape)
        return logits, labels

    return make


def probabilities(*shape: int):
    def make(dtype, generator):
        logits = torch.randn(shape, generator=generator, dtype=dtype)
        target = torch.softmax(torch.randn(shape, generator=generator, dtype=dtype), dim=1 if len(shape) > 1 else 0)
        return logits, target

    return make


def binary(*shape: int, soft: bool = False):
    def make(dtype, generator):
        logits = 3 * torch.randn(shape, generator=generator, dtype=dtype)
        labels = torch.rand(shape, generator=generator, dtype=dtype)
        return logits, (labels if soft else (labels > 0.5).to(dtype))

    return make


def _regression_twins(torch_fn, **params):
    torch_params = {"delta": float(params["delta"])} if "delta" in params else {}
    call = lambda x, y, reduction: torch_fn(x, y, reduction=reduction, **torch_params)  # noqa: E731
    return tuple(
        Twin(f"{list(shape)}", pair(*shape), call, params) for shape in [(6,), (6, 3), (4, 3, 2), (), (0, 3)]
    )


WEIGHTS_5 = [0.5, 1.0, 2.0, 1.0, 4.0]
POS_WEIGHT_4 = [1.0, 3.0, 0.5, 2.0]


def _ce(weight=None, **kwargs):
    def call(logits, labels, reduction):
        w = None if weight is None else torch.tensor(weight, dtype=logits.dtype)
        return F.cross_entropy(logits, labels, weight=w, reduction=reduction, **kwargs)

    return call


def _bce(pos_weight=None, class_dim=1):
    def call(logits, labels, reduction):
        w = None
        if pos_weight is not None:
            w = torch.tensor(pos_weight, dtype=logits.dtype)
            w = w.view(-1, *[1] * (logits.ndim - 1 - class_dim)) if logits.ndim > 1 else w
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=w, reduction=reduction)

    return call


SOFTMAX_TWINS = (
    Twin("[B, C]", indices(6, 5, classes=5), _ce()),
    Twin("[C] one example", indices(5, classes=5), _ce()),
    Twin("weights+smoothing", indices(6, 5, classes=5), _ce(WEIGHTS_5, label_smoothing=0.1),
         {"class_weights": WEIGHTS_5, "label_smoothing": 0.1}),
    Twin("ignore_index", indices(7, 5, classes=5, ignored=-100), _ce()),
    Twin("ignore_index+weights+smoothing", indices(7, 5, classes=5, ignored=-100),
         _ce(WEIGHTS_5, label_smoothing=0.2), {"class_weights": WEIGHTS_5, "label_smoothing": 0.2}),
    Twin("ignore_index=1", indices(7, 5, classes=5, ignored=1), _ce(ignore_index=1), {"ignore_index": 1}),
    Twin("per-pixel [B, C, H, W]", indices(2, 5, 3, 4, classes=5, ignored=-100), _ce(WEIGHTS_5),
         {"class_weights": WEIGHTS_5}),
    Twin("probabilities", probabilities(6, 5), _ce(WEIGHTS_5, label_smoothing=0.1),
         {"class_weights": WEIGHTS_5, "label_smoothing": 0.1}),
    Twin("probabilities [C]", probabilities(5), _ce()),
    Twin("empty batch", indices(0, 5, classes=5), _ce()),
)

SIGMOID_TWINS = (
    Twin("[B, C]", binary(6, 4), _bce()),
    Twin("[B, C] pos_weight", binary(6, 4), _bce(POS_WEIGHT_4), {"class_weights": POS_WEIGHT_4}),
    Twin("[B, C, L] pos_weight", binary(3, 4, 2, soft=True), _bce(POS_WEIGHT_4), {"class_weights": POS_WEIGHT_4}),
    Twin("[C] one example", binary(4), _bce(POS_WEIGHT_4, class_dim=0), {"class_weights": POS_WEIGHT_4}),
)


CASES = [
    Case(
        "mean_squared_error",
        regression(3),
        reference=lambda x, y, reduction="mean": F.mse_loss(x, y, reduction=reduction),
        none_shape=elementwise,
        twins=_regression_twins(F.mse_loss),
    ),
    Case(
        "mean_absolute_error",
        regression(3),
        reference=lambda x, y, reduction="mean": F.l1_loss(x, y, reduction=reduction),
        twice_differentiable=False,
        none_shape=elementwise,
        twins=_regression_twins(F.l1_loss),
    ),
    Case(
        "softmax_cross_entropy",
        class_logits(5),
        params=(
            {},
            {"class_weights": [1.0, 2.0, 0.5, 3.0, 1.5]},
            {"label_smoothing": 0.2},
            {"class_weights": WEIGHTS_5, "label_smoothing": 0.1},
            {"robust_lambda": 0.3},
            {"confidence_penalty": 0.2},
            {"class_similarities": SIMILARITIES_5, "class_similarities_temperature": 0.5},
            {"ignore_index": 2, "robust_lambda": 0.1},
            {
                "class_weights": WEIGHTS_5,
                "robust_lambda": 0.25,
                "confidence_penalty": 0.1,
                "class_similarities": SIMILARITIES_5,
                "class_similarities_temperature": 0.7,
                "label_smoothing": 0.05,
            },
        ),
        reference=softmax_reference,
        mean_weights=lambda logits, labels, *, ignore_index=-100, **params: _kept_class_weights(
            logits, labels, ignore_index, **params
        ),
        twins=SOFTMAX_TWINS,
        classes=class_logits,
    ),
    Case(
        "sigmoid_cross_entropy",
        _multi_hot,
        params=({}, {"class_weights": POS_WEIGHT_4}),
        reference=_sigmoid_reference,
        none_shape=elementwise,
        twins=SIGMOID_TWINS,
        classes=multi_hot,
    ),
]


def _kept_class_weights(logits, labels, ignore_index, *, class_weights=None, **_):
    """The denominator of the weighted mean: the class weight of each kept label (1 if unweighted)."""
    if labels.is_floating_point():
        return None
    kept = (labels != ignore_index).to(logits.dtype)
    if class_weights is None:
        return kept
    weights = torch.tensor(class_weights, dtype=logits.dtype)[torch.where(labels != ignore_index, labels, 0)]
    return weights * kept
