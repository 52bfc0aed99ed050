"""Cases for the losses of the core: regression and the two cross-entropies."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import Case, class_logits, regression


def _multi_hot(batch: int, dtype: torch.dtype, generator: torch.Generator):
    logits = torch.randn(batch, 4, generator=generator).to(dtype)
    labels = torch.randint(0, 2, (batch, 4), generator=generator)
    return logits, labels


def _per_example(elementwise: torch.Tensor, reduction: str) -> torch.Tensor:
    per = elementwise.flatten(1).mean(1) if elementwise.ndim > 1 else elementwise
    return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]


def _sigmoid_reference(logits, labels, *, reduction="mean", class_weights=None):
    pos_weight = None if class_weights is None else torch.tensor(class_weights, dtype=logits.dtype)
    elementwise = F.binary_cross_entropy_with_logits(
        logits, labels.to(logits.dtype), pos_weight=pos_weight, reduction="none"
    )
    return _per_example(elementwise, reduction)


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
):
    """``F.cross_entropy`` plus the parts Ludwig leaves unfinished, written from their formulas.

    Per example: ``(1 - λ)·CE + s·(λ/C + β·(1 - H(p)/log C))`` with ``s`` the class
    weight of the label (1 for probability labels); the entropy comes from
    ``torch.distributions.Categorical``; a similarity row, softmaxed at the
    temperature, replaces a class index as the target. The mean divides by ``Σ s``.
    """
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


def _class_weight_of_label(logits, labels, *, class_weights=None, **_):
    if class_weights is None or labels.is_floating_point():
        return None
    return torch.tensor(class_weights, dtype=logits.dtype)[labels]


CASES = [
    Case(
        "mean_squared_error",
        regression(3),
        reference=lambda x, y, reduction="mean": _per_example(F.mse_loss(x, y, reduction="none"), reduction),
    ),
    Case(
        "mean_absolute_error",
        regression(3),
        reference=lambda x, y, reduction="mean": _per_example(F.l1_loss(x, y, reduction="none"), reduction),
        twice_differentiable=False,
    ),
    Case(
        "softmax_cross_entropy",
        class_logits(5),
        params=(
            {},
            {"class_weights": [1.0, 2.0, 0.5, 3.0, 1.5]},
            {"label_smoothing": 0.2},
            {"class_weights": [0.5, 1.0, 2.0, 1.0, 4.0], "label_smoothing": 0.1},
            {"robust_lambda": 0.3},
            {"confidence_penalty": 0.2},
            {"class_similarities": SIMILARITIES_5, "class_similarities_temperature": 0.5},
            {
                "class_weights": [0.5, 1.0, 2.0, 1.0, 4.0],
                "robust_lambda": 0.25,
                "confidence_penalty": 0.1,
                "class_similarities": SIMILARITIES_5,
                "class_similarities_temperature": 0.7,
                "label_smoothing": 0.05,
            },
        ),
        reference=softmax_reference,
        mean_weights=_class_weight_of_label,
    ),
    Case(
        "sigmoid_cross_entropy",
        _multi_hot,
        params=({}, {"class_weights": [1.0, 3.0, 0.5, 2.0]}),
        reference=_sigmoid_reference,
    ),
]
