"""Classification losses on logits: softmax (one label per example), binary and sigmoid (multi-label).

The softmax losses share one core, :func:`cross_entropy_terms`, which the sequence
losses (``_sequence.py``) reuse with the vocabulary moved to dimension 1. It
implements, besides torch's class weights and label smoothing, the parts of
Ludwig's loss configs that Ludwig declares but leaves unfinished: ``robust_lambda``,
``confidence_penalty`` and ``class_similarities`` (see ``docs/ludwig.md``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from msgspec import Meta
from torch import Tensor

from lossfn.registry import AsTensor, Check, Feature, Reduction, register_loss

from ._common import (
    as_param,
    check_class_indices,
    check_floating,
    check_integer_labels,
    check_min_rank,
    check_same_shape,
    compute_dtype,
    fail,
    mean_over_features,
    reduce_loss,
    shape,
    validate_class_range,
    validate_unit_range,
)

__all__ = ["binary_weighted_cross_entropy", "sigmoid_cross_entropy", "softmax_cross_entropy"]


def _positive_sum(weights: Any) -> bool:
    values = weights.values() if isinstance(weights, dict) else weights
    return float(sum(values)) > 0


def _one_row_per_class(matrix: Any, weights: Any) -> bool:
    return weights is None or len(matrix) == len(weights)


def _used_with_similarities(temperature: float, similarities: Any) -> bool:
    return temperature == 0 or similarities is not None


def _square(matrix: Any) -> bool:
    return all(len(row) == len(matrix) for row in matrix)


ClassWeights = Annotated[
    Annotated[list[Annotated[float, Meta(ge=0)]], Meta(min_length=1)]
    | Annotated[dict[str, Annotated[float, Meta(ge=0)]], Meta(min_length=1)]
    | None,
    Meta(description="one non-negative weight per class, or {class name: weight} (None: all 1)"),
    AsTensor(),
    # all-zero weights make the weighted mean 0/0 (nan in torch and Ludwig)
    Check(_positive_sum, "weights that sum to more than 0"),
]
RobustLambda = Annotated[
    float, Meta(ge=0.0, le=1.0, description="mixing weight λ of the robust loss (1 - λ)·loss + λ/C")
]
ConfidencePenalty = Annotated[
    float, Meta(ge=0.0, description="weight β of the penalty β·(1 - H(p)/log C) on confident predictions")
]
ClassSimilarities = Annotated[
    Annotated[list[Annotated[list[float], Meta(min_length=1)]], Meta(min_length=1)] | None,
    Meta(description="[C, C] class similarities; softmax(row y / temperature) is the target of class y"),
    AsTensor(),
    Check(_square, "a square matrix (C rows of C numbers)"),
    Check(_one_row_per_class, "one row per class weight", uses=("class_weights",)),
]
SimilarityTemperature = Annotated[
    float,
    Meta(ge=0.0, description="temperature of the softmax over a similarity row (0: similarities unused)"),
    Check(_used_with_similarities, "0 unless class_similarities are given", uses=("class_similarities",)),
]
LabelSmoothing = Annotated[
    float, Meta(ge=0.0, lt=1.0, description="mass moved from the labels to the uniform distribution")
]


def is_zero(value: Any) -> bool:
    """A hyperparameter given as the Python number 0 (a tensor is never skipped)."""
    return isinstance(value, (int, float)) and value == 0


def normalized_entropy(log_p: Tensor, dim: int) -> Tensor:
    """``H(p) / log C`` from log-probabilities (``0 · log 0`` is 0: ``p`` underflows to 0)."""
    num_classes = log_p.shape[dim]
    max_entropy = math.log(num_classes) if num_classes > 1 else 1.0
    return -(log_p.exp() * log_p).sum(dim) / max_entropy


def cross_entropy_terms(
    name: str,
    logits: Tensor,
    labels: Tensor,
    *,
    class_weights: Any,
    label_smoothing: Any,
    robust_lambda: Any,
    confidence_penalty: Any,
    class_similarities: Any,
    class_similarities_temperature: Any,
) -> tuple[Tensor, Tensor | None]:
    r"""The softmax cross-entropy family on logits ``[B, C, *]``.

    Returns ``(loss, s)``: per-element losses ``[B, *]`` (already multiplied by
    their weight) and the weights ``s`` of the weighted mean (None: all 1), in
    the compute dtype. Class-index labels must already be in range (the sequence
    losses replace padding positions by 0 before calling this).
    """
    num_classes = logits.shape[1]
    log_p = torch.log_softmax(logits.to(compute_dtype(logits)), dim=1)
    class_dims = (num_classes,) + (1,) * (logits.ndim - 2)
    weights = weights_c = None
    if class_weights is not None:
        weights = as_param(name, "class_weights", class_weights, log_p, (num_classes,))
        weights_c = weights.view(class_dims)  # broadcast over [B, C, d1, ...]

    denominator = None
    target = None  # a distribution over classes [B, C, *]; None: class indices
    if labels.is_floating_point():  # class probabilities
        if labels.shape != logits.shape:
            raise fail(name, "labels", f"probabilities of the logits' shape {shape(logits)}", f"shape {shape(labels)}")
        target = labels.to(log_p.dtype)
    else:
        check_integer_labels(name, labels, "integer class indices or float probabilities")
        check_class_indices(name, logits, labels)
        if weights is not None:
            denominator = weights[labels]
        if class_similarities is not None and not is_zero(class_similarities_temperature):
            similarities = as_param(
                name, "class_similarities", class_similarities, log_p, (num_classes, num_classes)
            )
            temperature = torch.as_tensor(class_similarities_temperature, dtype=log_p.dtype, device=log_p.device)
            active = temperature > 0
            # where() twice: a zero temperature never divides, not even in the gradient
            safe = torch.where(active, temperature, torch.ones_like(temperature))
            soft = torch.softmax(similarities[labels] / safe, dim=-1).movedim(-1, 1)
            classes = torch.arange(num_classes, device=labels.device).view(class_dims)
            one_hot = (labels.unsqueeze(1) == classes).to(log_p.dtype)
            target = torch.where(active, soft, one_hot)

    if target is None:  # class indices: gather, no one-hot
        nll = -log_p.gather(1, labels.unsqueeze(1)).squeeze(1)
        if weights is not None:
            nll = denominator * nll
        if is_zero(label_smoothing):  # the common case: skip the smoothing term's pass over C
            loss = nll
        else:
            smooth = -log_p.sum(1) if weights is None else -(log_p * weights_c).sum(1)
            loss = (1 - label_smoothing) * nll + (label_smoothing / num_classes) * smooth
    else:
        target = target * (1 - label_smoothing) + label_smoothing / num_classes
        if weights is not None:
            target = target * weights_c
        loss = -(target * log_p).sum(1)

    scale = 1.0 if denominator is None else denominator
    if not is_zero(robust_lambda):
        loss = (1 - robust_lambda) * loss + scale * (robust_lambda / num_classes)
    if not is_zero(confidence_penalty):
        loss = loss + scale * (confidence_penalty * (1 - normalized_entropy(log_p, 1)))
    return loss, denominator


@register_loss(
    "softmax_cross_entropy",
    [Feature.CATEGORY, Feature.VECTOR, Feature.IMAGE],
    validate=validate_class_range("softmax_cross_entropy"),
)
def softmax_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    class_weights: ClassWeights = None,
    robust_lambda: RobustLambda = 0.0,
    confidence_penalty: ConfidencePenalty = 0.0,
    class_similarities: ClassSimilarities = None,
    class_similarities_temperature: SimilarityTemperature = 0.0,
    label_smoothing: LabelSmoothing = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Cross-entropy between ``softmax(logits)`` and class labels or class probabilities.

    Ludwig's loss for category, vector and image outputs, with the options Ludwig
    declares and leaves unused made to work: the robust mixture, the confidence
    penalty of Pereyra et al. and similarity-smoothed targets. With all of them
    at their defaults it is ``torch.nn.functional.cross_entropy``.

    For example :math:`n` with :math:`C` classes, :math:`p_n = \operatorname{softmax}(x_n)`
    (from ``log_softmax``, never the log of a softmax, in float32 for half-precision
    inputs), class weights :math:`w` (all 1 by default), label smoothing
    :math:`\varepsilon`, robust mixing weight :math:`\lambda` and confidence
    penalty :math:`\beta`:

    .. math::

        \mathrm{CE}_n = -\sum_c w_c\, \tilde q_{n,c} \log p_{n,c},
        \qquad \tilde q_n = (1 - \varepsilon)\, q_n + \varepsilon / C

        \ell_n = (1 - \lambda)\, \mathrm{CE}_n
                 + s_n \Bigl(\frac{\lambda}{C}
                 + \beta \bigl(1 - \tfrac{H(p_n)}{\log C}\bigr)\Bigr),
        \qquad H(p) = -\sum_c p_c \log p_c

    The target :math:`q_n` is the one-hot vector of the class index :math:`y_n`;
    or, when ``class_similarities`` :math:`S` and a temperature :math:`\tau > 0`
    are given, :math:`q_n = \operatorname{softmax}(S_{y_n} / \tau)`; or the given
    class probabilities. The example weight is :math:`s_n = w_{y_n}` for class
    indices and :math:`s_n = 1` for probabilities, so that

    .. math::

        \text{mean} = \frac{\sum_n \ell_n}{\sum_n s_n}, \qquad
        \text{sum} = \sum_n \ell_n

    which, at :math:`\lambda = \beta = 0`, is the weighting of
    ``torch.nn.functional.cross_entropy`` (class indices: divided by
    :math:`\sum_n w_{y_n}`; probabilities: by the number of examples).

    Args:
        logits: ``[B, C]``, or ``[B, C, d1, ...]`` for per-pixel classification
            (segmentation).
        labels: class indices ``[B]`` / ``[B, d1, ...]`` (integer), or class
            probabilities of the logits' shape (float).
        class_weights: ``[C]`` non-negative weights :math:`w`, a list or a tensor.
        robust_lambda: :math:`\lambda \in [0, 1]`.
        confidence_penalty: :math:`\beta \ge 0`.
        class_similarities: ``[C, C]`` matrix :math:`S`, a nested list or a tensor;
            used only with class indices and a temperature > 0.
        class_similarities_temperature: :math:`\tau \ge 0`; 0 leaves the
            similarities unused (Ludwig's behaviour), and so does ``class_similarities=None``.
        label_smoothing: :math:`\varepsilon \in [0, 1)` (not in Ludwig).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell` of shape ``[B]`` (``[B, d1, ...]``); ``"sum"``:
        :math:`\sum_n \ell_n`; ``"mean"``: the weighted mean above (0 if every
        weight is 0, where torch returns nan). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        >>> labels = torch.tensor([0, 2])
        >>> LF.softmax_cross_entropy(logits, labels)
        tensor(0.8606)
        >>> LF.softmax_cross_entropy(logits, labels, robust_lambda=0.5, confidence_penalty=0.1)
        tensor(0.6287)

    References:
        Checked against ``torch.nn.functional.cross_entropy`` (``weight``,
        ``label_smoothing``, probability targets) for every reduction, and against
        Ludwig's ``SoftmaxCrossEntropyLoss`` module. Confidence penalty: Pereyra
        et al., `Regularizing Neural Networks by Penalizing Confident Output
        Distributions <https://arxiv.org/abs/1701.06548>`_, 2017. Label smoothing:
        Szegedy et al., `Rethinking the Inception Architecture
        <https://arxiv.org/abs/1512.00567>`_, 2016. Differences from Ludwig:
        ``docs/ludwig.md``.
    """
    name = "softmax_cross_entropy"
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 2, "[B, C] or [B, C, d1, ...]")
    if not isinstance(labels, Tensor):
        raise fail(name, "labels", "a torch.Tensor", type(labels).__name__)
    loss, denominator = cross_entropy_terms(
        name,
        logits,
        labels,
        class_weights=class_weights,
        label_smoothing=label_smoothing,
        robust_lambda=robust_lambda,
        confidence_penalty=confidence_penalty,
        class_similarities=class_similarities,
        class_similarities_temperature=class_similarities_temperature,
    )
    return reduce_loss(loss, reduction, name=name, weights=denominator).to(logits.dtype)


def _binary_cross_entropy(x: Tensor, y: Tensor, positive_weight: Tensor | float | None) -> Tensor:
    """Elementwise ``-[w y log σ(x) + (1 - y) log(1 - σ(x))]`` as torch's BCE with logits.

    Written ``(1 - y) x + (1 + (w - 1) y) (-log σ(x))`` with ``logsigmoid``: exact
    and finite for any logit, with the right gradient at ``x = 0``.
    """
    neg_log_sigmoid = -F.logsigmoid(x)  # softplus(-x)
    if positive_weight is not None:
        neg_log_sigmoid = (1 + (positive_weight - 1) * y) * neg_log_sigmoid
    return (1 - y) * x + neg_log_sigmoid


@register_loss("sigmoid_cross_entropy", [Feature.SET])
def sigmoid_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    class_weights: Annotated[
        Annotated[list[Annotated[float, Meta(ge=0)]], Meta(min_length=1)] | None,
        Meta(description="per-class weight of the positive term (torch's pos_weight)"),
        AsTensor(),
    ] = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Multi-label binary cross-entropy on logits, one independent sigmoid per class.

    For logit :math:`x_{n,c}`, target :math:`y_{n,c} \in [0, 1]` and positive-class
    weight :math:`w_c` (all 1 by default):

    .. math::

        \ell_{n,c} = -\bigl[w_c\, y_{n,c} \log \sigma(x_{n,c})
                     + (1 - y_{n,c}) \log(1 - \sigma(x_{n,c}))\bigr],
        \qquad \ell_n = \frac{1}{C} \sum_c \ell_{n,c}

    computed as :math:`(1 - y) x + (1 + (w - 1) y)\,(-\log\sigma(x))` with
    ``logsigmoid``, exact and finite for any logit.

    Args:
        logits: ``[B, C]`` (or ``[B, C, ...]``).
        labels: same shape; multi-hot (bool or integer) or probabilities (float).
        class_weights: ``[C]`` weights of the positive term, ``pos_weight`` in torch.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n`, shape ``[B]`` (mean over the classes);
        ``"mean"``: mean over examples, equal to torch's mean over all elements;
        ``"sum"``: :math:`\sum_n \ell_n` (torch's ``"sum"`` divided by ``C``).

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[1.0, -1.0], [0.0, 2.0]])
        >>> labels = torch.tensor([[1, 0], [0, 1]])
        >>> LF.sigmoid_cross_entropy(logits, labels)
        tensor(0.3616)

    References:
        Checked against ``torch.nn.functional.binary_cross_entropy_with_logits``
        with ``pos_weight=class_weights``.
    """
    name = "sigmoid_cross_entropy"
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 2, "[B, C]")
    check_same_shape(name, logits, labels)
    x = logits.to(compute_dtype(logits))
    y = labels.to(x.dtype)
    weights = None
    if class_weights is not None:
        weights = as_param(name, "class_weights", class_weights, x, (logits.shape[1],))
        weights = weights.view((logits.shape[1],) + (1,) * (logits.ndim - 2))
    elementwise = _binary_cross_entropy(x, y, weights)
    return reduce_loss(mean_over_features(elementwise), reduction, name=name).to(logits.dtype)


@register_loss(
    "binary_weighted_cross_entropy",
    [Feature.BINARY],
    validate=validate_unit_range("binary_weighted_cross_entropy"),
)
def binary_weighted_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    positive_class_weight: Annotated[
        Annotated[float, Meta(gt=0.0)] | None,
        Meta(description="weight of the positive term, torch's pos_weight (None: 1)"),
    ] = None,
    robust_lambda: Annotated[
        float, Meta(ge=0.0, le=1.0, description="mixing weight λ of the robust loss (1 - λ)·loss + λ/2")
    ] = 0.0,
    confidence_penalty: Annotated[
        float, Meta(ge=0.0, description="weight β of the penalty β·(1 - H(σ(x))/log 2) on confident predictions")
    ] = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Binary cross-entropy on logits with a weight on the positive class (Ludwig's BWCE).

    Ludwig's default loss for binary outputs: ``BCEWithLogitsLoss(pos_weight=...)``
    with a robust mixture and a confidence penalty. The penalty is the one of
    Pereyra et al. applied per example (Ludwig takes the largest
    :math:`-p \log p` over the batch instead; see ``docs/ludwig.md``).

    For logit :math:`x_n`, target :math:`y_n \in [0, 1]`, positive-class weight
    :math:`w` (1 by default), :math:`\lambda` = ``robust_lambda`` and
    :math:`\beta` = ``confidence_penalty``:

    .. math::

        b_n = -\bigl[w\, y_n \log \sigma(x_n) + (1 - y_n) \log(1 - \sigma(x_n))\bigr]

        \ell_n = (1 - \lambda)\, b_n + \frac{\lambda}{2}
                 + \beta \Bigl(1 - \frac{H(\sigma(x_n))}{\log 2}\Bigr),
        \qquad H(p) = -p \log p - (1 - p) \log(1 - p)

    :math:`b_n` is computed as :math:`(1 - y) x + (1 + (w - 1) y)\,(-\log\sigma(x))`
    and the entropy from ``logsigmoid``, both finite for any logit. Inputs
    ``[B, ...]`` are averaged over all but the batch dimension.

    Args:
        logits: ``[B]`` (or ``[B, ...]``).
        labels: same shape; 0/1 (bool, integer) or probabilities (float).
        positive_class_weight: :math:`w > 0`, a number or a 0-d tensor.
        robust_lambda: :math:`\lambda \in [0, 1]`.
        confidence_penalty: :math:`\beta \ge 0`.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, shape ``[B]``; ``"mean"``: :math:`\frac1B \sum_n \ell_n`
        (at :math:`\lambda = \beta = 0` torch's ``binary_cross_entropy_with_logits``);
        ``"sum"``: :math:`\sum_n \ell_n`. Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([1.5, -0.5, 0.0])
        >>> labels = torch.tensor([1, 0, 1])
        >>> LF.binary_weighted_cross_entropy(logits, labels, positive_class_weight=2.0)
        tensor(0.7544)
        >>> LF.binary_weighted_cross_entropy(logits, labels, robust_lambda=0.2)
        tensor(0.4650)

    References:
        Checked against ``torch.nn.functional.binary_cross_entropy_with_logits``
        (``pos_weight``) and Ludwig's ``BWCEWLoss`` module. Confidence penalty:
        Pereyra et al., `Regularizing Neural Networks by Penalizing Confident
        Output Distributions <https://arxiv.org/abs/1701.06548>`_, 2017.
    """
    name = "binary_weighted_cross_entropy"
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 1, "[B] or [B, ...]")
    check_same_shape(name, logits, labels)
    x = logits.to(compute_dtype(logits))
    y = labels.to(x.dtype)
    elementwise = _binary_cross_entropy(x, y, positive_class_weight)
    if not is_zero(robust_lambda):
        elementwise = (1 - robust_lambda) * elementwise + robust_lambda / 2
    if not is_zero(confidence_penalty):
        log_p = torch.stack([F.logsigmoid(x), F.logsigmoid(-x)])  # log σ(x), log(1 - σ(x))
        elementwise = elementwise + confidence_penalty * (1 - normalized_entropy(log_p, 0))
    return reduce_loss(mean_over_features(elementwise), reduction, name=name).to(logits.dtype)
