"""Cases for the losses of the core: regression and the two cross-entropies."""

from __future__ import annotations

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


def _cross_entropy_reference(logits, labels, *, reduction="mean", class_weights=None, label_smoothing=0.0):
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=logits.dtype)
    return F.cross_entropy(logits, labels, weight=weight, label_smoothing=label_smoothing, reduction=reduction)


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
        ),
        reference=_cross_entropy_reference,
        mean_weights=_class_weight_of_label,
    ),
    Case(
        "sigmoid_cross_entropy",
        _multi_hot,
        params=({}, {"class_weights": [1.0, 3.0, 0.5, 2.0]}),
        reference=_sigmoid_reference,
    ),
]
