"""Per-token softmax cross-entropy for sequence and text outputs (logits ``[B, T, V]``).

Both losses flatten the tokens to ``[B·T, V]`` (a view: no copy of the logits) and
reuse the softmax core of ``_softmax.py`` (class weights, robust mixture, confidence
penalty, class similarities, label smoothing, z-loss); padding positions are left out
of the loss and the mean with a ``where`` (torch's ``ignore_index``), so whatever their
logits hold, NaN included, stays out. At the default options a ``"mean"`` or ``"sum"``
is ``F.cross_entropy``'s own reduction (one kernel).

The next-token shift never slices the logits (``logits[:, :-1]`` flattened would be a
copy of all of them): the labels are shifted instead, ``y'_{b,t} = y_{b,t+1}``, and the
last step of each sequence, which predicts nothing, gets the padding label and is left
out like padding. Its loss and weight are exactly 0 (the ``"none"`` output drops it);
its gradient is 0 too, or NaN where its logits are not finite, as at padding.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._softmax import (
    ClassSimilarities,
    ClassWeights,
    ConfidencePenalty,
    LabelSmoothing,
    RobustLambda,
    SimilarityTemperature,
    ZLoss,
    cross_entropy_terms,
    fast_reduction,
    plain_options,
    torch_reduced,
)
from ._common import (
    as_index,
    cast,
    check_floating,
    check_integer_labels,
    compute_dtype,
    fail,
    reduce_loss,
    shape,
    unbatched,
    validate_class_range,
)

__all__ = ["next_token_softmax_cross_entropy", "sequence_softmax_cross_entropy"]

#: Ludwig's vocabularies put ``<PAD>`` at index 2 (``SpecialSymbol.PADDING``).
LUDWIG_PADDING_INDEX = 2

Unique = Annotated[bool, Meta(description="count each distinct target token once per sequence (its first occurrence)")]
#: Hugging Face's ignored label: a negative index that no real token has.
IGNORE_INDEX = -100

SequencePadding = Annotated[
    int, Meta(description="label left out of the loss (Ludwig's <PAD> is 2; a negative one skips no token)")
]
NextTokenPadding = Annotated[
    int, Meta(description="label left out of the loss (default -100: no token, as Ludwig; HF's ignore label)")
]


def _token_terms(
    name: str,
    logits: Tensor,
    labels: Tensor,
    *,
    shift: bool,
    padding_index: Any,
    unique: bool,
    reduction: str,
    **params: Any,
) -> tuple[Tensor, Tensor | None] | Tensor:
    """Per-token losses ``[B, T]`` (exactly 0 at left-out positions, the last step too with
    ``shift``) and their mean weights; or, where torch reduces the call, the reduced loss."""
    check_floating(name, "logits", logits)
    if logits.ndim != 3:
        raise fail(name, "logits", "of shape [B, T, V] (or [T, V] for one sequence)", f"shape {shape(logits)}")
    check_integer_labels(name, labels, "integer token indices", like=logits)
    if labels.shape != logits.shape[:2]:
        dims = f"[{logits.shape[0]}, {logits.shape[1]}]"
        raise fail(
            name, "labels", f"token indices of shape {dims} for logits {shape(logits)}", f"shape {shape(labels)}"
        )
    batch, steps, vocabulary = logits.shape
    labels = as_index(labels)  # int64 before the shift: the padding label need not fit an int8's range
    if shift:  # position t predicts token t + 1 (a time-step shift, never a batch one); the last step: padding
        labels = torch.cat([labels[:, 1:], labels.new_full((batch, min(steps, 1)), padding_index)], dim=1)
    flat = logits.reshape(batch * steps, vocabulary)  # a view of contiguous logits
    if not unique and fast_reduction(reduction) and plain_options(**params):
        x = cast(flat, compute_dtype(flat))
        return torch_reduced(x, labels.reshape(-1), padding_index, reduction)
    keep = None
    if unique:
        # drop a token equal to a kept token earlier in its sequence: [B, T, T] comparison
        keep = labels != padding_index  # (the last step of a shifted sequence holds the padding label)
        earlier = torch.ones(steps, steps, dtype=torch.bool, device=labels.device).tril(-1)
        same = labels.unsqueeze(2) == labels.unsqueeze(1)
        repeated = (same & earlier & keep.unsqueeze(1)).any(2)
        keep = (keep & ~repeated).reshape(-1)
    loss, weights = cross_entropy_terms(
        name,
        flat,
        labels.reshape(batch * steps),
        ignore_index=None if unique else padding_index,
        keep=keep,
        mean_weights=reduction == "mean",
        **params,
    )
    return loss.reshape(batch, steps), None if weights is None else weights.reshape(batch, steps)


@register_loss(
    "sequence_softmax_cross_entropy",
    [Feature.SEQUENCE, Feature.TEXT],
    validate=validate_class_range(
        "sequence_softmax_cross_entropy", ignored="padding_index", class_dim=-1, what="token indices"
    ),
)
def sequence_softmax_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    class_weights: ClassWeights = None,
    robust_lambda: RobustLambda = 0.0,
    confidence_penalty: ConfidencePenalty = 0.0,
    class_similarities: ClassSimilarities = None,
    class_similarities_temperature: SimilarityTemperature = 0.0,
    unique: Unique = False,
    label_smoothing: LabelSmoothing = 0.0,
    z_loss: ZLoss = 0.0,
    padding_index: SequencePadding = LUDWIG_PADDING_INDEX,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Per-token softmax cross-entropy of a sequence, skipping padding.

    Ludwig's default loss for sequence and text outputs. Every time step is an
    example of :func:`softmax_cross_entropy` over the vocabulary (class weights,
    robust mixture, confidence penalty, class similarities and label smoothing
    as there); positions whose target is ``padding_index`` contribute nothing.
    With ``unique=True`` only the first occurrence of each target token in a
    sequence counts (Ludwig documents the field and ignores it).

    For token :math:`y_{b,t}` with keep mask :math:`m_{b,t}` (0 at padding and, with
    ``unique``, at repeats), the per-token loss :math:`\ell_{b,t}` and its weight
    :math:`s_{b,t} = w_{y_{b,t}}` are those of :func:`softmax_cross_entropy` with
    :math:`C = V`:

    .. math::

        \ell_{b,t} = (1 - \lambda)\,\mathrm{CE}_{b,t}
                     + s_{b,t} \Bigl(\frac{\lambda}{V}
                     + \beta \bigl(1 - \tfrac{H(p_{b,t})}{\log V}\bigr)
                     + z\, \mathrm{lse}(x_{b,t})^2\Bigr)

        \text{mean} = \frac{\sum_{b,t} m_{b,t}\, \ell_{b,t}}{\sum_{b,t} m_{b,t}\, s_{b,t}},
        \qquad \text{sum} = \sum_{b,t} m_{b,t}\, \ell_{b,t}

    Args:
        logits: ``[B, T, V]``, or ``[T, V]`` for one sequence.
        labels: token indices ``[B, T]`` (``[T]``; a signed integer dtype);
            ``padding_index`` marks padding, whose logits may hold anything (NaN too).
        class_weights: ``[V]`` non-negative weights, a list or a tensor.
        robust_lambda: :math:`\lambda \in [0, 1]`.
        confidence_penalty: :math:`\beta \ge 0`.
        class_similarities: ``[V, V]`` similarity matrix.
        class_similarities_temperature: :math:`\tau \ge 0` (0: similarities unused).
        unique: count each distinct target token once per sequence (compares
            every pair of steps: ``[B, T, T]`` booleans of memory).
        label_smoothing: :math:`\varepsilon \in [0, 1)` (not in Ludwig).
        z_loss: :math:`z \ge 0`, PaLM's z-loss weight (not in Ludwig): adds
            :math:`s_{b,t}\, z\, \mathrm{lse}(x_{b,t})^2` per token.
        padding_index: the label left out (default 2, Ludwig's ``<PAD>``); any
            integer: a negative one, e.g. ``-100``, keeps every real token.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`m \ell`, per token: shape ``[B, T]`` (``[T]``), exactly 0 at
        padding; ``"sum"``: their sum; ``"mean"``: the weighted mean over kept tokens
        (0 if none is kept, where torch returns nan). Without ``unique`` and the
        Ludwig options, each is ``F.cross_entropy``'s number on the flattened tokens
        with ``ignore_index=padding_index``. Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[[2.0, 0.0, 0.0, -1.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
        >>> labels = torch.tensor([[0, 3, 2]])  # the last position is <PAD>
        >>> LF.sequence_softmax_cross_entropy(logits, labels)
        tensor(1.0108)

    References:
        Checked against ``torch.nn.functional.cross_entropy`` with
        ``ignore_index=2`` on the flattened tokens, and against Ludwig's
        ``SequenceSoftmaxCrossEntropyLoss`` (which drops the first example of the
        batch, ``preds[1:]``; lossfn does not: ``docs/ludwig.md``).
    """
    return _reduced(
        "sequence_softmax_cross_entropy",
        logits,
        labels,
        shift=False,
        padding_index=padding_index,
        unique=unique,
        reduction=reduction,
        class_weights=class_weights,
        robust_lambda=robust_lambda,
        confidence_penalty=confidence_penalty,
        class_similarities=class_similarities,
        class_similarities_temperature=class_similarities_temperature,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
    )


@register_loss(
    "next_token_softmax_cross_entropy",
    [Feature.SEQUENCE, Feature.TEXT],
    validate=validate_class_range(
        "next_token_softmax_cross_entropy", ignored="padding_index", class_dim=-1, what="token indices"
    ),
)
def next_token_softmax_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    class_weights: ClassWeights = None,
    robust_lambda: RobustLambda = 0.0,
    confidence_penalty: ConfidencePenalty = 0.0,
    class_similarities: ClassSimilarities = None,
    class_similarities_temperature: SimilarityTemperature = 0.0,
    unique: Unique = False,
    label_smoothing: LabelSmoothing = 0.0,
    z_loss: ZLoss = 0.0,
    padding_index: NextTokenPadding = IGNORE_INDEX,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Next-token softmax cross-entropy: the logits at step :math:`t` predict token :math:`t + 1`.

    Ludwig's loss for LLM text outputs: :func:`sequence_softmax_cross_entropy`
    of ``logits[:, :-1]`` against ``labels[:, 1:]``. Ludwig's module skips no
    token, so ``padding_index`` defaults to ``-100`` here, which no real token
    has (an LLM tokenizer's index 2 is often a real token, such as ``</s>``):
    mark the positions to leave out with ``-100``, as Hugging Face does, or set
    ``padding_index`` to the tokenizer's padding token.

    .. math::

        \ell_{b,t} = \ell^{\mathrm{seq}}\bigl(x_{b,t},\, y_{b,t+1}\bigr),
        \qquad t = 0, \dots, T - 2

    with :math:`\ell^{\mathrm{seq}}`, the keep mask and the reductions of
    :func:`sequence_softmax_cross_entropy`. The logits are not sliced (no copy): the
    labels are shifted and the last step of each sequence is left out like padding,
    so its gradient is 0 (NaN where its logits are not finite, as at padding).

    Args:
        logits: ``[B, T, V]``, or ``[T, V]`` for one sequence.
        labels: token indices ``[B, T]`` (``[T]``; a signed integer dtype), the input
            sequence itself.
        class_weights: ``[V]`` non-negative weights, a list or a tensor.
        robust_lambda: :math:`\lambda \in [0, 1]`.
        confidence_penalty: :math:`\beta \ge 0`.
        class_similarities: ``[V, V]`` similarity matrix.
        class_similarities_temperature: :math:`\tau \ge 0` (0: similarities unused).
        unique: count each distinct target token once per sequence.
        label_smoothing: :math:`\varepsilon \in [0, 1)` (not in Ludwig).
        z_loss: :math:`z \ge 0`, PaLM's z-loss weight (not in Ludwig).
        padding_index: the label left out; the default ``-100`` (Hugging Face's
            ignored label) keeps every real token, as Ludwig does.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: per token, shape ``[B, T - 1]`` (``[T - 1]``), exactly 0 at
        padding; ``"sum"``: their sum; ``"mean"``: the weighted mean over kept tokens
        (0 if none is kept). Without ``unique`` and the Ludwig options, each is
        ``F.cross_entropy``'s number on the shifted, flattened tokens with
        ``ignore_index=padding_index``. Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 5.0]]])
        >>> labels = torch.tensor([[0, 0, 1]])
        >>> LF.next_token_softmax_cross_entropy(logits, labels)
        tensor(0.3955)

    References:
        Checked against ``torch.nn.functional.cross_entropy`` on the shifted,
        flattened tokens (the recipe of Hugging Face ``transformers``' causal LM
        loss) and Ludwig's ``NextTokenSoftmaxCrossEntropyLoss``.
    """
    return _reduced(
        "next_token_softmax_cross_entropy",
        logits,
        labels,
        shift=True,
        padding_index=padding_index,
        unique=unique,
        reduction=reduction,
        class_weights=class_weights,
        robust_lambda=robust_lambda,
        confidence_penalty=confidence_penalty,
        class_similarities=class_similarities,
        class_similarities_temperature=class_similarities_temperature,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
    )


def _reduced(name: str, logits: Tensor, labels: Tensor, *, reduction: str, shift: bool, **params: Any) -> Tensor:
    if not isinstance(labels, Tensor):
        raise fail(name, "labels", "a torch.Tensor", type(labels).__name__)
    logits_in = logits
    logits, labels, one = unbatched(logits, labels, rank=3, probabilities=False)
    terms = _token_terms(name, logits, labels, shift=shift, reduction=reduction, **params)
    if isinstance(terms, Tensor):  # reduced by torch
        return cast(terms, logits_in.dtype)
    loss, weights = terms
    if shift and reduction == "none":
        loss = loss[:, :-1]  # the last step predicts nothing (its loss is 0: sums and means need no slice)
    if one:
        loss = loss.squeeze(0)
    return cast(reduce_loss(loss, reduction, name=name, weights=weights), logits_in.dtype)
