"""The case of ``nt_xent`` (SimCLR's NT-Xent, batch-coupled).

The reference is independent of lossfn: pytorch-metric-learning's ``NTXentLoss`` for
the mean (the mean over ordered positive pairs), and a plain Python loop over the
pairs, written from the formula, for the per-row sums (``"none"``, ``"sum"``). The
case gives integer labels, since a ``Case.make`` has one set of inputs; the
label-free pairing ``(2i, 2i + 1)`` is checked in ``tests/test_contrastive.py``
(values against Ludwig's formula, and under vmap, grad and torch.compile).
"""

from __future__ import annotations

import math

import torch
from pytorch_metric_learning.losses import NTXentLoss

from . import Case

DIMENSION = 5
GROUPS = 3  # labels in [0, 3): with 6 rows, some rows have no positive or several


def _embeddings_and_labels(batch, dtype, generator):
    embeddings = torch.randn(batch, DIMENSION, generator=generator).to(dtype)
    return embeddings, torch.randint(0, GROUPS, (batch,), generator=generator)


def pair_loop(embeddings, labels, temperature):
    """Per row: the sum over its ordered positive pairs of -log(e^s_ip / (e^s_ip + Σ_negatives e^s_ik))."""
    z = embeddings / embeddings.norm(dim=1, keepdim=True)
    s = (z @ z.T / float(temperature)).tolist()
    y = labels.tolist()
    rows = []
    for i in range(len(y)):
        negatives = [s[i][k] for k in range(len(y)) if y[k] != y[i]]
        total = 0.0
        for p in range(len(y)):
            if p != i and y[p] == y[i]:
                top = max([s[i][p], *negatives])
                denominator = sum(math.exp(v - top) for v in [s[i][p], *negatives])
                total += -(s[i][p] - top - math.log(denominator))
        rows.append(total)
    return torch.tensor(rows, dtype=embeddings.dtype)


def positives_per_row(embeddings, labels, **_):
    """n_i, the number of rows other than i with row i's label (the weights of the mean)."""
    return ((labels[:, None] == labels[None, :]).sum(1) - 1).to(embeddings.dtype)


def nt_xent_reference(embeddings, labels, *, reduction="mean", temperature=0.07):
    if reduction == "mean":
        return NTXentLoss(temperature=float(temperature))(embeddings, labels)
    rows = pair_loop(embeddings, labels, temperature)
    return rows if reduction == "none" else rows.sum()


CASES = [
    Case(
        "nt_xent",
        _embeddings_and_labels,
        params=({}, {"temperature": 0.5}),
        reference=nt_xent_reference,
        mean_weights=positives_per_row,
        skip={
            "per_example_gradients": "batch-coupled: a row's term depends on every row of the batch "
            "(its negatives), so one row alone has no loss of its own to differentiate",
        },
    ),
]
