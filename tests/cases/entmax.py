"""Cases for the sparse Fenchel–Young losses: ``sparsemax`` and ``entmax15``.

The reference is the ``entmax`` package (Peters, Niculae & Martins), whose
``sparsemax_loss`` / ``entmax15_loss`` return one loss per row of 2-D logits; the
reference flattens any leading dimensions into rows and applies lossfn's
``ignore_index`` and reductions around it (an ignored row is 0 and leaves the mean's
denominator, as the ``entmax`` package's own ``SparsemaxLoss(ignore_index=c)`` does
for a class ``c >= 0``). Ludwig's module is that package's loss with
``ignore_index=-100`` and the mean over rows (``tests/test_entmax.py``).
"""

from __future__ import annotations

import entmax
import torch

from . import Case

CLASSES = 6


def _logits(batch, dtype, generator):
    """``[B, 6]`` logits of scale 1.5 (supports of one to all classes) and labels in [0, 6)."""
    logits = 1.5 * torch.randn(batch, CLASSES, generator=generator)
    labels = torch.randint(0, CLASSES, (batch,), generator=generator)
    return logits.to(dtype), labels


def package_reference(loss):
    """lossfn's reductions around the ``entmax`` package's per-row ``loss(X [N, C], y [N])``."""

    def reference(logits, labels, *, reduction="mean", ignore_index=-100):
        keep = labels != ignore_index
        rows = logits.reshape(-1, logits.shape[-1]).double()
        safe = torch.where(keep, labels, 0).reshape(-1)
        per = loss(rows, safe).reshape(labels.shape)
        per = torch.where(keep, per, 0.0).to(logits.dtype)
        if reduction == "none":
            return per
        if reduction == "sum":
            return per.sum()
        return per.sum() / keep.sum().clamp_min(1)

    return reference


def kept(logits, labels, *, ignore_index=-100, **_):
    """The mean's weights: 1 at every label that is not ``ignore_index``."""
    return (labels != ignore_index).to(logits.dtype)


CASES = [
    Case(
        name,
        _logits,
        params=({}, {"ignore_index": 1}),
        reference=package_reference(loss),
        mean_weights=kept,
    )
    for name, loss in (("sparsemax", entmax.sparsemax_loss), ("entmax15", entmax.entmax15_loss))
]
