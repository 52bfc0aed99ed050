"""The case of ``ctc``: batch-first logits, padded labels and both lengths; torch's ``F.ctc_loss`` as reference.

The reference is ``torch.nn.functional.ctc_loss`` on ``logits.log_softmax(-1)``
moved time first, for every reduction; the twins add shapes torch accepts (one
sequence, longer sequences, empty labels, an empty input, impossible
alignments with and without ``zero_infinity``, int32 lengths). The stored optax
vectors and the gradients are checked in ``tests/test_ctc.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Case, Twin

STEPS, CLASSES, WIDTH = 6, 5, 3  # small: the conformance suite takes hessians
LABELS = (1, CLASSES - 2)  # never 0 or C - 1: either may be the blank


def needed_frames(labels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The fewest frames that fit each label sequence: its length plus its repeats (a blank between each)."""
    within = torch.arange(labels.shape[-1]) < lengths[..., None]
    repeats = (labels[..., 1:] == labels[..., :-1]) & within[..., 1:]
    return lengths + repeats.sum(-1)


def sequences(
    steps: int, classes: int, width: int, *, low: int = 1, high: int | None = None, shortest: int = 1,
    padding: int | None = None,
):
    """``make`` for ``[B, steps, classes]`` logits, labels in ``[low, high]`` of ``width`` columns,
    label lengths in ``[shortest, width]`` and input lengths from the fewest frames that fit to ``steps``
    (every alignment possible: a finite loss).

    Past its length a row keeps random classes, or ``padding`` where one is given. (The
    conformance suite mixes the labels of one batch with the lengths of another: a padding
    out of range would then be read as a label.)
    """
    high = classes - 2 if high is None else high

    def make(batch: int, dtype: torch.dtype, generator: torch.Generator):
        logits = (2 * torch.randn(batch, steps, classes, generator=generator)).to(dtype)
        labels = torch.randint(low, high + 1, (batch, width), generator=generator)
        label_lengths = torch.randint(shortest, width + 1, (batch,), generator=generator)
        if padding is not None:
            labels = torch.where(torch.arange(width) < label_lengths[:, None], labels, padding)
        fewest = needed_frames(labels, label_lengths)
        spare = torch.rand(batch, generator=generator) * (steps - fewest + 1)
        input_lengths = fewest + spare.long().clamp_max(steps - fewest)
        return logits, labels, input_lengths, label_lengths

    return make


def torch_ctc(logits, labels, input_lengths, label_lengths, *, reduction="mean", blank=0, zero_infinity=False):
    """``F.ctc_loss`` on the log-softmax, time first (torch's layout), padding replaced by a valid class.

    One sequence (``[T, C]``) goes to torch with a batch of one: torch reads 1-D labels as
    the concatenated form, which has no padding.
    """
    one = logits.ndim == 2
    if one:
        logits, labels, input_lengths, label_lengths = (x[None] for x in (logits, labels, input_lengths, label_lengths))
    log_probs = logits.log_softmax(-1).transpose(0, 1)
    labels = torch.where(labels >= 0, labels, LABELS[0])  # torch reads no padding either; keep it in range
    loss = F.ctc_loss(
        log_probs, labels, input_lengths, label_lengths,
        blank=int(blank), reduction=reduction, zero_infinity=bool(zero_infinity),
    )
    return loss[0] if one and reduction == "none" else loss


def _impossible(batch, dtype, generator):
    """Example 0's two labels are longer than its one frame; the others fit."""
    logits, labels, input_lengths, label_lengths = sequences(STEPS, CLASSES, WIDTH, shortest=2)(batch, dtype, generator)
    return logits, labels, input_lengths.index_fill(0, torch.tensor([0]), 1), label_lengths


def _twin(label, make, **params):
    return Twin(label, make, lambda *xs, reduction: torch_ctc(*xs, reduction=reduction, **params), params)


def _fixed(batch, make):
    return lambda dtype, generator: make(batch, dtype, generator)


def _one_sequence(dtype, generator):
    return tuple(x[0] for x in sequences(8, 6, 4, padding=-1)(1, dtype, generator))


def _empty_labels(dtype, generator):
    logits, _, input_lengths, _ = sequences(STEPS, CLASSES, WIDTH)(4, dtype, generator)
    return logits, torch.zeros(4, 0, dtype=torch.int64), input_lengths, torch.zeros(4, dtype=torch.int64)


def _empty_inputs(dtype, generator):
    """Input lengths 0: an empty label gives 0 (the one empty path), a label inf."""
    logits = (2 * torch.randn(5, STEPS, CLASSES, generator=generator)).to(dtype)
    labels = torch.randint(LABELS[0], LABELS[1] + 1, (5, WIDTH), generator=generator)
    return logits, labels, torch.tensor([0, 4, 0, 6, 6]), torch.tensor([0, 0, 1, 2, 3])


def _int32(dtype, generator):
    logits, labels, input_lengths, label_lengths = sequences(20, 7, 6)(3, dtype, generator)
    return logits, labels.int(), input_lengths.int(), label_lengths.int()


TWINS = (
    _twin("[5, 6, 5]", _fixed(5, sequences(STEPS, CLASSES, WIDTH))),
    _twin("[5, 6, 5] padded with -100", _fixed(5, sequences(STEPS, CLASSES, WIDTH, padding=-100))),
    _twin("[5, 6, 5] blank=4", _fixed(5, sequences(STEPS, CLASSES, WIDTH)), blank=4),
    _twin("[2, 50, 20] S=10, repeats", _fixed(2, sequences(50, 20, 10, low=1, high=3, shortest=0))),
    _twin("[8, 6] one sequence", _one_sequence),
    _twin("[4, 6, 5] empty labels (S = 0)", _empty_labels),
    _twin("[5, 6, 5] empty inputs", _empty_inputs, zero_infinity=True),
    _twin("[5, 6, 5] impossible -> inf", _fixed(5, _impossible)),
    _twin("[5, 6, 5] impossible, zero_infinity", _fixed(5, _impossible), zero_infinity=True),
    _twin("[3, 20, 7] int32, blank=6", _int32, blank=6),
)

_TORCH_MEAN = (
    '"mean" is torch\'s: each sequence\'s loss divided by its label length (at least 1), then the '
    'mean over the batch; not a weighted mean of "none" (the reference and the twins check it)'
)

CASES = [
    Case(
        name="ctc",
        make=sequences(STEPS, CLASSES, WIDTH),
        params=({}, {"zero_infinity": True}, {"blank": CLASSES - 1}),
        reference=torch_ctc,
        twins=TWINS,
        skip={
            "reduction_consistency": _TORCH_MEAN,
            "distributed_mean_takes_every_weighted_mean": (
                'distributed.mean does take ctc: its mean is the plain mean of the terms loss / max(L, 1), '
                'which are not the "none" output this generic check compares with; tests/test_ctc.py checks it'
            ),
        },
    ),
]
