"""Softmax cross-entropy on logits (one label per example or position), and its shared core.

:func:`cross_entropy_terms` is the core that the sequence losses (``_sequence.py``)
reuse on their flattened tokens. Besides torch's class weights, label smoothing and
``ignore_index``, it implements the parts of Ludwig's loss configs that Ludwig
declares but leaves unfinished: ``robust_lambda``, ``confidence_penalty`` and
``class_similarities`` (see ``docs/ludwig.md``), and PaLM's ``z_loss``. For class
indices with class weights and ``ignore_index`` alone it calls
``torch.nn.functional.cross_entropy`` itself: torch's fused kernel, and torch's number
by construction; with no class weights either and a ``"mean"`` or ``"sum"`` reduction,
:func:`torch_reduced` lets torch reduce as well (one kernel, one autograd node), which
is what keeps a ``[32, 10]`` call close to ``F.cross_entropy``'s cost. Class probabilities are lossfn's own
arithmetic (torch's number too), which takes ``0 · log 0 = 0`` at a class masked with a
``-inf`` logit, where torch gives NaN. (Torch's label smoothing writes in
place, which ``vmap`` refuses when only the labels are batched, so smoothing stays
lossfn's own arithmetic; its numbers are torch's too, checked by the tests.)
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from msgspec import Meta
from torch import Tensor

from lossfn.registry import AsTensor, Check, Feature, Reduction, functorch_level, register_loss

from ._common import (
    as_index,
    as_param,
    cast,
    check_class_indices,
    check_floating,
    check_integer_labels,
    check_device,
    check_min_rank,
    MEANS,
    compute_dtype,
    fail,
    keep_where,
    kept_weights,
    reduce_loss,
    shape,
    unbatched,
    validate_class_range,
)

__all__ = ["cross_entropy_terms", "softmax_cross_entropy", "torch_reduced"]


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
    Check(
        _positive_sum,
        "weights that sum to more than 0",
        # the weights are >= 0: some weight is > 0 (a list), not every one is <= 0 (a mapping)
        schema={"contains": {"exclusiveMinimum": 0}, "not": {"type": "object", "additionalProperties": {"maximum": 0}}},
    ),
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
    Check(
        _used_with_similarities,
        "0 unless class_similarities are given",
        uses=("class_similarities",),
        schema=lambda field, similarities: {
            "if": {"properties": {similarities: {"type": "null"}}},
            "then": {"properties": {field: {"const": 0}}},
        },
    ),
]
LabelSmoothing = Annotated[
    float, Meta(ge=0.0, lt=1.0, description="mass moved from the labels to the uniform distribution")
]
ZLoss = Annotated[
    float, Meta(ge=0.0, description="weight z of PaLM's z-loss z·logsumexp(logits)², added per example")
]


def is_zero(value: Any) -> bool:
    """A hyperparameter given as the Python number 0 (a tensor is never skipped)."""
    return isinstance(value, (int, float)) and value == 0


IgnoreIndex = Annotated[
    int, Meta(description="class index left out of the loss and of the mean's denominator (torch's ignore_index)")
]


def plogq(p: Tensor, log_q: Tensor) -> Tensor:
    """``p · log q``, with ``0 · log 0 = 0`` (a masked class, ``log q = -inf``, with ``p = 0``).

    ``where`` picks 0 for ``log q`` where ``p`` is 0, so neither the value nor the
    gradient meets ``0 · inf``; a NaN ``p`` stays NaN.
    """
    return p * torch.where(p != 0, log_q, torch.zeros_like(log_q))


def normalized_entropy(log_p: Tensor, dim: int) -> Tensor:
    """``H(p) / log C`` from log-probabilities (``0 · log 0`` is 0: a masked class, or ``p`` underflowing)."""
    num_classes = log_p.shape[dim]
    max_entropy = math.log(num_classes) if num_classes > 1 else 1.0
    return -plogq(log_p.exp(), log_p).sum(dim) / max_entropy


def _fused(
    robust_lambda: Any, confidence_penalty: Any, class_similarities: Any, temperature: Any, label_smoothing: Any
) -> bool:
    """Are these options all torch's own (so ``F.cross_entropy`` computes the loss)?

    Label smoothing is left to lossfn's own terms: torch's smoothing writes in place,
    which fails under ``vmap`` when the labels are batched and the logits are not.
    """
    return (
        is_zero(robust_lambda)
        and is_zero(confidence_penalty)
        and (class_similarities is None or is_zero(temperature))
        and is_zero(label_smoothing)
    )


def plain_options(
    class_weights: Any,
    label_smoothing: Any,
    robust_lambda: Any,
    confidence_penalty: Any,
    class_similarities: Any,
    class_similarities_temperature: Any,
    z_loss: Any,
) -> bool:
    """Are these options torch's own, class weights aside (so :func:`torch_reduced` may take the call)?"""
    return (
        class_weights is None
        and is_zero(z_loss)
        and _fused(robust_lambda, confidence_penalty, class_similarities, class_similarities_temperature,
                   label_smoothing)
    )


#: the fast path of softmax_cross_entropy: dtypes torch computes in as lossfn does (half goes to float32)
_FAST_DTYPES = frozenset({torch.float32, torch.float64})
_NUMBERS = frozenset({int, float})
_ZERO = 0.0  # the defaults' object: a hyperparameter left at its default is this very float


def fast_reduction(reduction: Any) -> bool:
    """May torch reduce this call (``"mean"`` / ``"sum"``, nobody collecting means, no ``torch.func``)?

    ``lossfn.distributed.mean`` listens through ``MEANS`` and needs the mean's parts;
    under a ``torch.func`` transform the reduced kernel has no batching rule (torch warns
    and loops), so the unreduced kernel and :func:`reduce_loss` do the work there.
    """
    return (reduction == "mean" or reduction == "sum") and not MEANS and functorch_level() is None




#: ``F.cross_entropy``'s own kernel, called as it calls it (its reduction as torch's enum): the
#: Python wrapper around it costs a tenth of a [32, 10] call. ``__torch_function__`` still applies.
_cross_entropy = torch._C._nn.cross_entropy_loss
_MEAN, _SUM = 1, 2


def torch_reduced(x: Tensor, labels: Tensor, ignore_index: int, reduction: str) -> Tensor:
    """``F.cross_entropy`` reduced by torch (``"mean"`` or ``"sum"``): lossfn's number, one kernel.

    The mean is torch's ``Σ loss / #kept``; where nothing is kept (every label is
    ``ignore_index``) torch gives ``0 / 0 = nan``, and lossfn 0 with a zero gradient.
    Torch's gradient there is already 0 (no position reaches it), so only the value
    needs mending: in eager mode it is overwritten in place outside autograd (two ops
    on the labels and a fill of the scalar, no autograd node: at ``[32, 10]`` the whole
    mend costs a sixth of ``F.cross_entropy``'s forward and backward); under
    ``torch.compile``, which must see no in-place write on a graph's output, a ``where``
    does it. An empty batch is the sum (0, zero gradient).
    """
    if reduction == "sum" or labels.numel() == 0:
        return _cross_entropy(x, labels, None, _SUM, ignore_index, 0.0)
    mean = _cross_entropy(x, labels, None, _MEAN, ignore_index, 0.0)
    nothing_kept = labels.eq(ignore_index).all()
    if torch.compiler.is_compiling():
        return torch.where(nothing_kept, nothing_kept.logical_not(), mean)  # a bool False is 0
    grad_enabled = torch.is_grad_enabled()
    torch._C._set_grad_enabled(False)
    try:
        mean.masked_fill_(nothing_kept, 0)  # the value only: the autograd graph never sees the write
    finally:
        torch._C._set_grad_enabled(grad_enabled)
    return mean


def _z_term(x: Tensor, z_loss: Any, scale: Any, keep: Tensor | None, lse: Tensor | None = None) -> Tensor:
    """``s · z · logsumexp(x)²`` per position (class dimension 1), 0 where ``keep`` is False.

    ``lse``: the log-sum-exp already known from the cross-entropy's own pass (see
    :func:`_lse_from`), which spares a second pass over the logits and its backward;
    computed here otherwise.
    """
    term = z_loss * (torch.logsumexp(x, dim=1) if lse is None else lse).square()
    if scale is not None:
        term = scale * term
    return term if keep is None else keep_where(keep, term)


def _lse_from(x: Tensor, log_p_or_nll: Tensor, index: Tensor, *, nll: bool) -> Tensor:
    """``logsumexp(x)`` per position from what the cross-entropy computed anyway, one gather away.

    ``log p_c = x_c - lse`` at every class, so ``lse = x_y - log p_y = x_y + nll``: a gather of
    the logits at the (safe) labels, no pass over the classes, and the gradient then flows
    through the loss's own softmax backward (``2·z·lse·softmax(x)`` in the end, as it should).
    """
    at = x.gather(1, index.unsqueeze(1)).squeeze(1)
    return at + log_p_or_nll if nll else at - log_p_or_nll.gather(1, index.unsqueeze(1)).squeeze(1)


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
    z_loss: Any = 0.0,
    ignore_index: int | None = None,
    keep: Tensor | None = None,
    mean_weights: bool = True,
) -> tuple[Tensor, Tensor | None]:
    r"""The softmax cross-entropy family on logits ``[B, C, *]`` and checked labels.

    Returns ``(loss, s)``: per-position losses ``[B, *]`` (already multiplied by
    their weight, and exactly 0 where a position is left out) and the weights ``s``
    of the weighted mean (``None``: a plain mean over every position), in the
    compute dtype; ``s`` is only built when ``mean_weights``. A ``z_loss`` other than the
    number 0 adds ``s_n · z · logsumexp(x_n)²`` (``s_n = w_{y_n}``, or 1) at kept positions. Class-index positions
    whose label is ``ignore_index``, or where ``keep`` is False, are left out, whatever
    their logits hold (NaN included).
    """
    num_classes = logits.shape[1]
    x = cast(logits, compute_dtype(logits))
    class_dims = (num_classes,) + (1,) * (logits.ndim - 2)
    weights = None
    if class_weights is not None:
        weights = as_param(name, "class_weights", class_weights, x, (num_classes,))

    if labels.is_floating_point():  # class probabilities: torch has no ignore_index for them
        # lossfn's own arithmetic, not F.cross_entropy: a class masked with a -inf logit and
        # no target mass gives 0 · log 0 = 0 (plogq), where torch's kernel gives NaN
        target = labels.to(x.dtype)
        log_p = torch.log_softmax(x, dim=1)
        target = target * (1 - label_smoothing) + label_smoothing / num_classes
        if weights is not None:
            target = target * weights.view(class_dims)
        ce = -plogq(target, log_p).sum(1)
        loss = _robust_and_penalized(ce, log_p, 1.0, num_classes, robust_lambda, confidence_penalty)
        if not is_zero(z_loss):
            loss = loss + _z_term(x, z_loss, None, None)
        if keep is None:
            return loss, None
        return keep_where(keep, loss), keep if mean_weights else None

    labels = as_index(labels)
    similarities_used = class_similarities is not None and not is_zero(class_similarities_temperature)
    fused = not similarities_used and _fused(robust_lambda, confidence_penalty, None, 0, label_smoothing)
    if fused and keep is None:
        # torch's fused kernel: its ignore_index writes 0 at left-out positions, NaN logits or not
        ignore = -100 if ignore_index is None else ignore_index
        loss = F.cross_entropy(x, labels, weight=weights, ignore_index=ignore, reduction="none")
        with_z = not is_zero(z_loss)
        if not mean_weights and not with_z:
            return loss, None
        kept = None if ignore_index is None else labels != ignore_index
        safe = labels if kept is None or (weights is None and not with_z) else torch.where(kept, labels, 0)
        chosen = None if weights is None else weights[safe]
        if with_z:  # unweighted, torch's loss is the nll itself: lse = x_y + nll (weighted, w_y = 0 hides it)
            lse = _lse_from(x, loss, safe, nll=True) if weights is None else None
            loss = loss + _z_term(x, z_loss, chosen, kept, lse)
        return loss, kept_weights(kept, chosen) if mean_weights else None

    if ignore_index is not None:
        ignored = labels != ignore_index
        keep = ignored if keep is None else keep & ignored
    # a left-out position may hold any label (-100): index a valid class there, masked afterwards
    safe = labels if keep is None else torch.where(keep, labels, 0)
    chosen = None if weights is None else weights[safe]  # w_{y_n}
    if fused:  # left-out positions given as a mask (unique tokens): torch's kernel still does the work
        targets = torch.where(keep, labels, -100)
        loss = F.cross_entropy(x, targets, weight=weights, ignore_index=-100, reduction="none")
        if not is_zero(z_loss):
            lse = _lse_from(x, loss, safe, nll=True) if weights is None else None
            loss = loss + _z_term(x, z_loss, chosen, keep, lse)
        return loss, kept_weights(keep, chosen) if mean_weights else None

    log_p = torch.log_softmax(x, dim=1)
    target = None  # a distribution over classes [B, C, *] for similarity targets
    if similarities_used:
        similarities = as_param(name, "class_similarities", class_similarities, x, (num_classes, num_classes))
        temperature = torch.as_tensor(class_similarities_temperature, dtype=x.dtype, device=x.device)
        active = temperature > 0
        # where() twice: a zero temperature never divides, not even in the gradient
        divisor = torch.where(active, temperature, torch.ones_like(temperature))
        rows = similarities[safe]
        # shift by the row's maximum before dividing (softmax does not change): a large
        # similarity over a small temperature then gives -inf, not inf - inf = nan
        rows = rows - rows.amax(dim=-1, keepdim=True).detach()
        soft = torch.softmax(rows / divisor, dim=-1).movedim(-1, 1)
        classes = torch.arange(num_classes, device=labels.device).view(class_dims)
        one_hot = (safe.unsqueeze(1) == classes).to(x.dtype)
        target = torch.where(active, soft, one_hot)

    if target is None:  # class indices: gather, no one-hot
        nll = -log_p.gather(1, safe.unsqueeze(1)).squeeze(1)
        if chosen is not None:
            nll = chosen * nll
        if is_zero(label_smoothing):
            loss = nll
        else:
            smooth = -log_p.sum(1) if weights is None else -(log_p * weights.view(class_dims)).sum(1)
            loss = (1 - label_smoothing) * nll + (label_smoothing / num_classes) * smooth
    else:
        target = target * (1 - label_smoothing) + label_smoothing / num_classes
        if weights is not None:
            target = target * weights.view(class_dims)
        loss = -plogq(target, log_p).sum(1)  # no mass on a masked class: 0, not 0 · (-inf)

    scale = 1.0 if chosen is None else chosen
    loss = _robust_and_penalized(loss, log_p, scale, num_classes, robust_lambda, confidence_penalty)
    if not is_zero(z_loss):
        loss = loss + _z_term(x, z_loss, chosen, None, _lse_from(x, log_p, safe, nll=False))
    loss = loss if keep is None else keep_where(keep, loss)
    return loss, kept_weights(keep, chosen) if mean_weights else None


def _robust_and_penalized(
    loss: Tensor, log_p: Tensor, scale: Any, num_classes: int, robust_lambda: Any, confidence_penalty: Any
) -> Tensor:
    """``(1 - λ)·loss + s·(λ/C + β·(1 - H(p)/log C))`` (each term skipped when it is the number 0)."""
    if not is_zero(robust_lambda):
        loss = (1 - robust_lambda) * loss + scale * (robust_lambda / num_classes)
    if not is_zero(confidence_penalty):
        loss = loss + scale * (confidence_penalty * (1 - normalized_entropy(log_p, 1)))
    return loss


@register_loss(
    "softmax_cross_entropy",
    # category_distribution: the labels are class probabilities [B, C] (Ludwig uses it there too)
    [Feature.CATEGORY, Feature.CATEGORY_DISTRIBUTION, Feature.VECTOR, Feature.IMAGE],
    validate=validate_class_range("softmax_cross_entropy", ignored="ignore_index", probabilities=True),
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
    z_loss: ZLoss = 0.0,
    ignore_index: IgnoreIndex = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Cross-entropy between ``softmax(logits)`` and class labels or class probabilities.

    Ludwig's loss for category, vector and image outputs, with the options Ludwig
    declares and leaves unused made to work: the robust mixture, the confidence
    penalty of Pereyra et al. and similarity-smoothed targets; and PaLM's z-loss.
    With all of them at their defaults it is ``torch.nn.functional.cross_entropy``
    (which then does the reduction too: one kernel, torch's cost).

    For example :math:`n` with :math:`C` classes, :math:`p_n = \operatorname{softmax}(x_n)`
    (from ``log_softmax``, never the log of a softmax, in float32 for half-precision
    inputs), class weights :math:`w` (all 1 by default), label smoothing
    :math:`\varepsilon`, robust mixing weight :math:`\lambda`, confidence
    penalty :math:`\beta` and z-loss weight :math:`z`:

    .. math::

        \mathrm{CE}_n = -\sum_c w_c\, \tilde q_{n,c} \log p_{n,c},
        \qquad \tilde q_n = (1 - \varepsilon)\, q_n + \varepsilon / C

        \ell_n = (1 - \lambda)\, \mathrm{CE}_n
                 + s_n \Bigl(\frac{\lambda}{C}
                 + \beta \bigl(1 - \tfrac{H(p_n)}{\log C}\bigr)
                 + z \bigl(\log \textstyle\sum_c e^{x_{n,c}}\bigr)^2\Bigr),
        \qquad H(p) = -\sum_c p_c \log p_c

    The target :math:`q_n` is the one-hot vector of the class index :math:`y_n`;
    or, when ``class_similarities`` :math:`S` and a temperature :math:`\tau > 0`
    are given, :math:`q_n = \operatorname{softmax}(S_{y_n} / \tau)`; or the given
    class probabilities. The example weight is :math:`s_n = w_{y_n}` for class
    indices and :math:`s_n = 1` for probabilities. A position whose label is
    ``ignore_index`` (:math:`m_n = 0`, else 1) contributes nothing, whatever its logits
    hold (NaN or infinite ones included), and leaves the denominator:

    .. math::

        \text{mean} = \frac{\sum_n m_n \ell_n}{\sum_n m_n s_n}, \qquad
        \text{sum} = \sum_n m_n \ell_n

    which, at :math:`\lambda = \beta = 0`, is the weighting of
    ``torch.nn.functional.cross_entropy`` (class indices: divided by
    :math:`\sum_n m_n w_{y_n}`; probabilities: by the number of examples). The
    gradient at an ignored position is 0, or NaN where its logits are not finite, as
    in torch (a ``where`` over the whole logits would cost a pass over them). With
    class weights and ``ignore_index`` alone the loss of class indices is
    ``F.cross_entropy`` itself.

    Class probabilities that put no mass on a class masked with a ``-inf`` logit
    give the cross-entropy over the other classes, finite, with a zero gradient at the
    masked class (:math:`0 \log 0 = 0`), as ``optax.losses.safe_softmax_cross_entropy``;
    ``F.cross_entropy`` gives NaN there.

    Args:
        logits: ``[B, C]``, or ``[B, C, d1, ...]`` for per-pixel classification
            (segmentation), or ``[C]`` for one example (as torch accepts it).
        labels: class indices ``[B]`` / ``[B, d1, ...]`` / ``[]`` (a signed integer
            dtype), or class probabilities of the logits' shape (float). The module
            checks the values: indices in ``[0, C)`` (or ``ignore_index``), probabilities
            ``>= 0`` summing to 1 over the classes within ``max(1e-3, C·eps)``. The pure
            function reads no label values; an index out of range is a ``ValueError``
            from torch's kernel.
        class_weights: ``[C]`` non-negative weights :math:`w`, a list or a tensor.
        robust_lambda: :math:`\lambda \in [0, 1]`.
        confidence_penalty: :math:`\beta \ge 0`.
        class_similarities: ``[C, C]`` matrix :math:`S`, a nested list or a tensor;
            used only with class indices and a temperature > 0.
        class_similarities_temperature: :math:`\tau \ge 0`; 0 leaves the
            similarities unused (Ludwig's behaviour), and so does ``class_similarities=None``.
        label_smoothing: :math:`\varepsilon \in [0, 1)` (not in Ludwig).
        z_loss: :math:`z \ge 0`, PaLM's z-loss weight (PaLM uses 1e-4; not in
            Ludwig): it pulls the log-normalizer towards 0.
        ignore_index: class-index label left out (default ``-100``, as torch; not
            in Ludwig, where no label is left out).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`m \ell`, per example: shape ``[B]`` (``[B, d1, ...]``;
        ``[]`` for one example), 0 at ignored positions; ``"sum"``: its sum;
        ``"mean"``: the weighted mean above (0 when nothing is left to average, where
        torch returns nan). Each is ``F.cross_entropy``'s number at
        :math:`\lambda = \beta = 0` without similarities. Same dtype as ``logits``.

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
        ``label_smoothing``, ``ignore_index``, probability targets, unbatched and
        per-pixel inputs) for every reduction, and against
        Ludwig's ``SoftmaxCrossEntropyLoss`` module. Confidence penalty: Pereyra
        et al., `Regularizing Neural Networks by Penalizing Confident Output
        Distributions <https://arxiv.org/abs/1701.06548>`_, 2017. Label smoothing:
        Szegedy et al., `Rethinking the Inception Architecture
        <https://arxiv.org/abs/1512.00567>`_, 2016. z-loss: Chowdhery et al.,
        `PaLM <https://arxiv.org/abs/2204.02311>`_, 2022, section 5. Differences from Ludwig:
        ``docs/ludwig.md``.
    """
    if (  # torch's options on [B, C, *] logits and int64 indices, reduced by torch: checks inlined
        isinstance(logits, Tensor)
        and isinstance(labels, Tensor)
        and logits.dtype in _FAST_DTYPES
        and labels.dtype == torch.int64
        and logits.ndim >= 2
        and labels.shape == logits.shape[:1] + logits.shape[2:]
        and labels.device == logits.device
        and class_weights is None
        and (z_loss is _ZERO or type(z_loss) in _NUMBERS and z_loss == 0)  # `is`: the default, not passed
        and (label_smoothing is _ZERO or type(label_smoothing) in _NUMBERS and label_smoothing == 0)
        and (robust_lambda is _ZERO or type(robust_lambda) in _NUMBERS and robust_lambda == 0)
        and (confidence_penalty is _ZERO or type(confidence_penalty) in _NUMBERS and confidence_penalty == 0)
        and (class_similarities is None or type(class_similarities_temperature) in _NUMBERS
             and class_similarities_temperature == 0)
        and (reduction == "mean" or reduction == "sum")
        and not MEANS
        and functorch_level() is None
    ):
        return torch_reduced(logits, labels, ignore_index, reduction)
    name = "softmax_cross_entropy"
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 1, "[B, C], [B, C, d1, ...] or [C]")
    if not isinstance(labels, Tensor):
        raise fail(name, "labels", "a torch.Tensor", type(labels).__name__)
    logits_in = logits
    logits, labels, one = unbatched(logits, labels, rank=2)
    if labels.is_floating_point():
        if labels.shape != logits.shape:
            raise fail(name, "labels", f"probabilities of the logits' shape {shape(logits_in)}", f"shape {shape(labels)}")
        check_device(name, "labels", labels, logits, "logits")
    else:
        check_integer_labels(name, labels, "integer class indices or float probabilities", like=logits)
        check_class_indices(name, logits, labels)
        if fast_reduction(reduction) and plain_options(
            class_weights, label_smoothing, robust_lambda, confidence_penalty, class_similarities,
            class_similarities_temperature, z_loss,
        ):
            x = cast(logits, compute_dtype(logits))
            return cast(torch_reduced(x, as_index(labels), ignore_index, reduction), logits.dtype)
    loss, weights = cross_entropy_terms(
        name,
        logits,
        labels,
        class_weights=class_weights,
        label_smoothing=label_smoothing,
        robust_lambda=robust_lambda,
        confidence_penalty=confidence_penalty,
        class_similarities=class_similarities,
        class_similarities_temperature=class_similarities_temperature,
        z_loss=z_loss,
        ignore_index=ignore_index,
        mean_weights=reduction == "mean",
    )
    if one:
        loss = loss.squeeze(0)
    return cast(reduce_loss(loss, reduction, name=name, weights=weights), logits.dtype)
