"""Cases for the losses of Ludwig's catalog added by issue 3 (see ``docs/ludwig.md``).

Every reference here is independent of lossfn: ``torch.nn.functional``, closed
forms written from the formulas, ``torch.distributions`` entropies, and a loop
version of CORN in the style of ``coral_pytorch`` (boolean indexing is fine in a
reference). The numbers of Ludwig's own modules are checked in
``tests/test_ludwig_catalog.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import Case, Twin, class_logits, elementwise, regression, reduce_like_torch as _reduce
from .core import _regression_twins, binary, softmax_reference

VOCABULARY = 6
STEPS = 5
PAD = 2  # Ludwig's <PAD>
SIMILARITIES_6 = [[1.0 if i == j else 0.5 if abs(i - j) == 1 else 0.0 for j in range(6)] for i in range(6)]
TOKEN_WEIGHTS = [1.0, 0.5, 2.0, 1.5, 0.25, 3.0]


# -- regression -------------------------------------------------------------------------


def _away_from_zero(*features: int):
    """Predictions ~ N(0, 1) and targets with |y| in [0.5, 2] (percentage errors stay moderate)."""

    def make(batch, dtype, generator):
        shape = (batch, *features)
        logits = torch.randn(shape, generator=generator)
        magnitude = 0.5 + 1.5 * torch.rand(shape, generator=generator)
        sign = torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0)
        return logits.to(dtype), (sign * magnitude).to(dtype)

    return make


def mape_reference(x, y, *, reduction="mean"):
    return _reduce((x - y).abs() / torch.clamp(y.abs(), min=1.17e-6), reduction)


def _root(squares, reduction):
    """The root of the mean of the squares for ``"mean"``; elementwise roots otherwise."""
    if reduction == "mean":
        return squares.mean().sqrt()
    return _reduce(squares.sqrt(), reduction)


def rmse_reference(x, y, *, reduction="mean"):
    if reduction == "mean":
        return F.mse_loss(x, y).sqrt()
    return F.l1_loss(x, y, reduction=reduction)  # sqrt((x - y)^2) = |x - y|


def rmspe_reference(x, y, *, reduction="mean"):
    denominator = torch.where(y == 0, y + 1e-4, y)
    return _root(((y - x) / denominator) ** 2, reduction)


def huber_reference(x, y, *, reduction="mean", delta=1.0):
    return F.huber_loss(x, y, delta=float(delta), reduction=reduction)


# -- binary -----------------------------------------------------------------------------


def _binary(batch, dtype, generator):
    logits = 2 * torch.randn(batch, generator=generator)
    labels = torch.randint(0, 2, (batch,), generator=generator)
    return logits.to(dtype), labels


def bwce_reference(
    logits, labels, *, reduction="mean", positive_class_weight=None, robust_lambda=0.0, confidence_penalty=0.0
):
    pos_weight = None if positive_class_weight is None else torch.tensor(positive_class_weight, dtype=logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=pos_weight, reduction="none")
    entropy = torch.distributions.Bernoulli(logits=logits).entropy()
    loss = (1 - robust_lambda) * bce + robust_lambda / 2 + confidence_penalty * (1 - entropy / math.log(2))
    return _reduce(loss, reduction)


# -- sequences --------------------------------------------------------------------------


def _tokens(batch, dtype, generator):
    """``[B, T, V]`` logits and ``[B, T]`` tokens, each sequence padded with <PAD> after a random length."""
    logits = 2 * torch.randn(batch, STEPS, VOCABULARY, generator=generator)
    labels = torch.randint(0, VOCABULARY, (batch, STEPS), generator=generator)
    lengths = torch.randint(2, STEPS + 1, (batch,), generator=generator)
    labels = torch.where(torch.arange(STEPS) < lengths[:, None], labels, PAD)
    return logits.to(dtype), labels


def tokens(vocabulary: int):
    """``[B, T, V]`` logits and ``[B, T]`` tokens of a vocabulary of ``V`` (no padding)."""

    def make(batch, dtype, generator):
        logits = 2 * torch.randn(batch, STEPS, vocabulary, generator=generator)
        return logits.to(dtype), torch.randint(0, vocabulary, (batch, STEPS), generator=generator)

    return make


def _token_mask(labels, padding_index, unique):
    """1 where a token counts: not padding and, with ``unique``, its first occurrence (a Python loop)."""
    mask = torch.ones(labels.shape, dtype=torch.bool)
    for b, row in enumerate(labels.tolist()):
        seen = set()
        for t, token in enumerate(row):
            if token == padding_index:
                mask[b, t] = False
            elif unique and token in seen:
                mask[b, t] = False
            else:
                seen.add(token)
    return mask


def _sequence_reference(logits, labels, *, reduction, padding_index, unique, class_weights=None, **params):
    mask = _token_mask(labels, padding_index, unique)
    safe = torch.where(mask, labels, 0)
    flat_logits = logits.reshape(-1, logits.shape[-1])
    per_token = softmax_reference(
        flat_logits, safe.reshape(-1), reduction="none", class_weights=class_weights, **params
    )
    per_token = per_token.reshape(labels.shape) * mask
    weights = mask.to(logits.dtype)
    if class_weights is not None:
        weights = weights * torch.tensor(class_weights, dtype=logits.dtype)[safe]
    return {"none": per_token, "sum": per_token.sum(), "mean": per_token.sum() / weights.sum()}[reduction]


def sequence_reference(logits, labels, *, reduction="mean", padding_index=PAD, unique=False, **params):
    return _sequence_reference(
        logits, labels, reduction=reduction, padding_index=padding_index, unique=unique, **params
    )


def next_token_reference(logits, labels, *, reduction="mean", padding_index=-100, unique=False, **params):
    return _sequence_reference(
        logits[:, :-1], labels[:, 1:], reduction=reduction, padding_index=padding_index, unique=unique, **params
    )


def _token_weights(shift):
    def weights(logits, labels, *, padding_index=-100 if shift else PAD, unique=False, class_weights=None, **_):
        if shift:
            labels = labels[:, 1:]
        mask = _token_mask(labels, padding_index, unique).to(logits.dtype)
        if class_weights is not None:
            mask = mask * torch.tensor(class_weights, dtype=logits.dtype)[torch.where(mask > 0, labels, 0)]
        return mask

    return weights


def _flat_ce(shift: bool, ignore_index: int):
    """``F.cross_entropy`` on the (shifted) flattened tokens; ``"none"`` back in ``[B, T]``."""

    def call(logits, labels, reduction):
        if shift:
            logits, labels = logits[..., :-1, :], labels[..., 1:]
        flat = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=ignore_index, reduction=reduction
        )
        return flat.reshape(labels.shape) if reduction == "none" else flat

    return call


def _token_batch(*shape: int, padding: int = PAD, nan_at_padding: bool = False, shift: bool = False):
    """Tokens ``[B, T]`` (or ``[T]``) with ``padding`` at every fourth position; NaN logits where they
    predict padding if asked (the same position, or the one before with ``shift``)."""

    def make(dtype, generator):
        logits = 2 * torch.randn(*shape, VOCABULARY, generator=generator, dtype=dtype)
        labels = torch.randint(0, VOCABULARY, shape, generator=generator)
        flat = labels.reshape(-1).clone()
        flat[1::4] = padding
        labels = flat.reshape(shape)
        if nan_at_padding:
            predicts = labels == padding
            if shift:
                predicts = torch.cat([predicts[..., 1:], torch.zeros_like(predicts[..., :1])], -1)
            logits = torch.where(predicts.unsqueeze(-1), torch.nan, logits)
        return logits, labels

    return make


def _sequence_twins(shift: bool):
    params = {"padding_index": PAD} if shift else {}
    twins = [
        Twin("[B, T, V]", _token_batch(3, 6), _flat_ce(shift, PAD), params),
        Twin("[T, V] one sequence", _token_batch(6), _flat_ce(shift, PAD), params),
        Twin("NaN logits at padding", _token_batch(3, 6, nan_at_padding=True, shift=shift), _flat_ce(shift, PAD),
             params),
        Twin("padding_index=-100", _token_batch(3, 6, padding=-100, nan_at_padding=True, shift=shift),
             _flat_ce(shift, -100), {"padding_index": -100}),
    ]
    return tuple(twins)


def _bwce_twin(pos_weight):
    def call(logits, labels, reduction):
        w = None if pos_weight is None else torch.tensor(pos_weight, dtype=logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=w, reduction=reduction)

    return call


BWCE_TWINS = tuple(
    Twin(f"{list(shape)}{' pos_weight' if w else ''}", binary(*shape, soft=soft), _bwce_twin(w),
         {"positive_class_weight": w} if w else {})
    for shape, soft, w in [((7,), False, None), ((5, 3), True, 2.5), ((), False, 0.5), ((0,), False, None)]
)


# -- ordinal ----------------------------------------------------------------------------


def corn_reference(logits, labels, *, reduction="mean"):
    """CORN as coral_pytorch writes it: one boolean-indexed subset per task."""
    per_example = torch.zeros(logits.shape[0], dtype=logits.dtype)
    pairs = 0
    for task in range(logits.shape[1] - 1):
        subset = labels >= task
        pairs += int(subset.sum())
        target = (labels[subset] > task).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits[subset, task], target, reduction="none")
        per_example = per_example.index_add(0, subset.nonzero().squeeze(1), bce)
    return {"none": per_example, "sum": per_example.sum(), "mean": per_example.sum() / pairs}[reduction]


def corn_pairs(logits, labels, **_):
    """Number of tasks each example trains: ``min(y + 1, K - 1)``."""
    return torch.clamp(labels + 1, max=logits.shape[1] - 1).to(logits.dtype)


_ROOT_MEAN = "the mean is the root of the batch mean, not a mean of the per-example roots"

CASES = [
    Case(
        "mean_absolute_percentage_error",
        _away_from_zero(3),
        reference=mape_reference,
        twice_differentiable=False,
        none_shape=elementwise,
    ),
    Case(
        "root_mean_squared_error",
        regression(),
        reference=rmse_reference,
        none_shape=elementwise,
        skip={"reduction_consistency": _ROOT_MEAN},
    ),
    Case(
        "root_mean_squared_percentage_error",
        _away_from_zero(),
        reference=rmspe_reference,
        none_shape=elementwise,
        skip={"reduction_consistency": _ROOT_MEAN},
    ),
    Case(
        "huber",
        regression(3),
        params=({}, {"delta": 0.5}, {"delta": 2.0}),
        reference=huber_reference,
        none_shape=elementwise,
        twins=_regression_twins(F.huber_loss, delta=0.5),
    ),
    Case(
        "binary_weighted_cross_entropy",
        _binary,
        params=(
            {},
            {"positive_class_weight": 2.5},
            {"robust_lambda": 0.3},
            {"confidence_penalty": 0.2},
            {"positive_class_weight": 0.5, "robust_lambda": 0.1, "confidence_penalty": 0.3},
        ),
        reference=bwce_reference,
        none_shape=elementwise,
        twins=BWCE_TWINS,
    ),
    Case(
        "sequence_softmax_cross_entropy",
        _tokens,
        params=(
            {},
            {"class_weights": TOKEN_WEIGHTS},
            {"robust_lambda": 0.3, "confidence_penalty": 0.2},
            {"unique": True},
            {"padding_index": -1},
            {
                "class_weights": TOKEN_WEIGHTS,
                "class_similarities": SIMILARITIES_6,
                "class_similarities_temperature": 0.5,
                "label_smoothing": 0.1,
                "robust_lambda": 0.2,
                "confidence_penalty": 0.1,
                "unique": True,
            },
        ),
        reference=sequence_reference,
        none_shape=lambda logits, labels: tuple(labels.shape),
        mean_weights=_token_weights(shift=False),
        twins=_sequence_twins(shift=False),
        classes=tokens,
    ),
    Case(
        "next_token_softmax_cross_entropy",
        _tokens,
        params=(
            {},
            {"padding_index": PAD},
            {"class_weights": TOKEN_WEIGHTS, "robust_lambda": 0.2},
            {
                "padding_index": PAD,
                "unique": True,
                "confidence_penalty": 0.1,
                "class_similarities": SIMILARITIES_6,
                "class_similarities_temperature": 1.5,
            },
        ),
        reference=next_token_reference,
        none_shape=lambda logits, labels: (labels.shape[0], labels.shape[1] - 1),
        mean_weights=_token_weights(shift=True),
        twins=_sequence_twins(shift=True),
        classes=tokens,
    ),
    Case(
        "corn",
        class_logits(5),
        reference=corn_reference,
        mean_weights=corn_pairs,
    ),
]
