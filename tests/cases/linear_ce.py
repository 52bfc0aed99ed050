"""The case of ``linear_cross_entropy``: hidden states, the output layer's weight, labels and a bias.

The reference is the naive form, ``F.cross_entropy(hidden @ weight.T + bias, labels)``
with the soft cap written as ``c·tanh(x / c)`` on those logits and PaLM's z-loss
``λ·logsumexp(logits)²`` added per kept token; the twins are torch's own
``F.linear_cross_entropy``, its chunked path (``LinearCrossEntropyOptions``) where
torch takes the call. Gradients, shapes with a time dimension, the shift and the
transforms are checked in ``tests/test_linear_ce.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Case, Twin

WIDTH, VOCABULARY = 4, 7  # small: the conformance suite takes hessians of hidden [3, 4]


def tokens(width: int = WIDTH, vocabulary: int = VOCABULARY, *, ignored: int = 0):
    """``make`` for hidden ``[B, width]``, weight ``[V, width]``, labels ``[B]`` and bias ``[V]``;
    the first ``ignored`` labels are -100."""

    def make(batch: int, dtype: torch.dtype, generator: torch.Generator):
        hidden = torch.randn(batch, width, generator=generator).to(dtype)
        weight = torch.randn(vocabulary, width, generator=generator).to(dtype)
        labels = torch.randint(0, vocabulary, (batch,), generator=generator)
        labels[:ignored] = -100
        bias = torch.randn(vocabulary, generator=generator).to(dtype)
        return hidden, weight, labels, bias

    return make


def naive(
    hidden, weight, labels, bias=None, *, reduction="mean", ignore_index=-100, label_smoothing=0.0,
    z_loss=0.0, softcap=None, shift=False, chunk_size=None,
):
    """The naive form: all the logits, then ``F.cross_entropy`` (and the z-loss) on them."""
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    if shift:
        logits, labels = logits[..., :-1, :], labels[..., 1:]
    flat_logits = logits.reshape(-1, weight.shape[0])
    flat_labels = labels.reshape(-1)
    kept = flat_labels != ignore_index
    if isinstance(label_smoothing, torch.Tensor):  # F.cross_entropy takes a number: its formula written out
        nll = F.cross_entropy(flat_logits, flat_labels, ignore_index=ignore_index, reduction="none")
        uniform = torch.where(kept, -flat_logits.log_softmax(-1).mean(-1), 0.0)
        loss = (1 - label_smoothing) * nll + label_smoothing * uniform
    else:
        loss = F.cross_entropy(
            flat_logits, flat_labels, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction="none"
        )
    loss = loss + z_loss * torch.where(kept, torch.logsumexp(flat_logits, -1) ** 2, 0.0)
    if reduction == "none":
        return loss.reshape(labels.shape)
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / kept.sum().clamp_min(1)


def _torch(options: bool = True, **kwargs):
    """``F.linear_cross_entropy`` on the inputs, chunked (``options``) or its reference path."""

    def call(hidden, weight, labels, bias=None, *, reduction):
        chosen = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=2) if options else None
        return F.linear_cross_entropy(
            hidden, weight, labels, linear_bias=bias, reduction=reduction, options=chosen, **kwargs
        )

    return call


def _fixed(batch, make):
    return lambda dtype, generator: make(batch, dtype, generator)


def _one_token(dtype, generator):
    hidden, weight, labels, bias = tokens()(1, dtype, generator)
    return hidden[0], weight, labels[0], bias


def _no_bias(dtype, generator):
    return tokens(6, 30)(9, dtype, generator)[:3]


TWINS = (
    Twin("[6, 4] V=7 with bias, chunked", _fixed(6, tokens()), _torch()),
    Twin("[9, 6] V=30 no bias, chunked", _no_bias, _torch()),
    Twin("[8, 4] two labels -100, chunked", _fixed(8, tokens(ignored=2)), _torch()),
    Twin("[8, 4] ignore_index=3, chunked", _fixed(8, tokens()), _torch(ignore_index=3), {"ignore_index": 3}),
    Twin(
        "[6, 4] label_smoothing=0.2", _fixed(6, tokens()), _torch(False, label_smoothing=0.2), {"label_smoothing": 0.2}
    ),
    Twin("[4] one token", _one_token, _torch(False)),
    Twin("[0, 4] no tokens", _fixed(0, tokens()), _torch(False)),
)


def _kept(hidden, weight, labels, bias=None, *, ignore_index=-100, **_):
    return labels != ignore_index


CASES = [
    Case(
        name="linear_cross_entropy",
        make=tokens(),
        params=(
            {},
            {"chunk_size": 2},
            {"ignore_index": 1, "label_smoothing": 0.1, "z_loss": 0.05, "softcap": 3.0, "chunk_size": 4},
        ),
        reference=naive,
        twins=TWINS,
        mean_weights=_kept,
        kind="hidden",
        skip={
            "per_example_gradients": (
                "the weight [V, H] is shared by the examples, not batched with them; tests/test_linear_ce.py "
                "checks vmap(grad) over tokens with the weight unbatched"
            ),
            "module_works_under_vmap_grad_with_its_check_on": (
                "it vmaps every input over dimension 0, the weight [V, H] too; tests/test_linear_ce.py checks "
                "the module under vmap(grad) with the weight unbatched"
            ),
            "mismatched_batch_is_a_clear_error": (
                "the weight [V, H] has no batch dimension (another batch's weight is the same shape); "
                "tests/test_linear_ce.py checks mismatched labels, hidden width and bias"
            ),
        },
    ),
]
