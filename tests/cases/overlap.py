"""Cases for the overlap losses (``tversky``, ``generalized_dice``, ``jaccard``) and ``lovasz_hinge``.

The class losses run on the segmentation cases' images (``[B, 3, 3, 4]`` logits,
image 0 without class 2). ``lovasz_hinge`` runs on ``[B, 3, 4]`` pixel logits with
0/1 labels, image 0 without foreground. The references are independent of lossfn,
loops over examples and classes written from the formulas (boolean indexing is fine
in a reference): the Tversky index, the generalized Dice loss with NiftyNet/MONAI's
weights, the Jaccard index from the union :math:`P + T - I`, and the authors'
binary Lovász hinge algorithm (bermanmaxim/LovaszSoftmax, ``per_image=True``).
``tests/test_overlap.py`` checks them against optax's vectors, kornia and
segmentation_models_pytorch's formula too.
"""

from __future__ import annotations

import torch

from . import Case
from .segmentation import _reduce, images, lovasz_grad

HEIGHT, WIDTH = 3, 4


def _per_example(logits, labels, term, reduction):
    """``term(sums) -> loss of one example`` stacked over the batch and reduced, where ``sums[c]`` is
    the soft (I, FP, FN, P, T) of class c in that example, from the softmax and the label mask."""
    batch, classes = logits.shape[:2]
    probabilities = torch.softmax(logits, dim=1).reshape(batch, classes, -1)
    flat = labels.reshape(batch, -1)
    rows = []
    for p_n, y_n in zip(probabilities, flat):
        sums = []
        for p, c in zip(p_n, range(classes)):
            t = (y_n == c).to(logits.dtype)
            sums.append(((p * t).sum(), (p * (1 - t)).sum(), ((1 - p) * t).sum(), p.sum(), t.sum()))
        rows.append(term(sums))
    return _reduce(torch.stack(rows) if rows else torch.zeros(0, dtype=logits.dtype), reduction)


def tversky_reference(logits, labels, *, reduction="mean", alpha=0.5, beta=0.5, smooth=1.0, gamma=1.0):
    """mean_c (1 - TI)^gamma per example; a 0/0 index is 1."""

    def term(sums):
        losses = []
        for i, fp, fn, _, _ in sums:
            denominator = i + alpha * fp + beta * fn + smooth
            index = torch.ones((), dtype=logits.dtype) if float(denominator) == 0 else (i + smooth) / denominator
            losses.append((1 - index) ** gamma)
        return torch.stack(losses).mean()

    return _per_example(logits, labels, term, reduction)


def generalized_dice_reference(logits, labels, *, reduction="mean", smooth=1.0):
    """Weights 1/T^2, an absent class the largest present one (all 1 without pixels), normalized to sum to C
    as optax does; Dice losses 1 - (I + s) / (I + FP/2 + FN/2 + s), 0 where 0/0; their weighted mean."""
    classes = logits.shape[1]

    def term(sums):
        counts = [float(t) for *_, t in sums]
        present = [1 / t**2 for t in counts if t > 0]
        weights = torch.tensor([1 / t**2 if t > 0 else max(present, default=1.0) for t in counts], dtype=logits.dtype)
        weights = classes * weights / weights.sum()
        losses = []
        for i, fp, fn, _, _ in sums:
            denominator = i + (fp + fn) / 2 + smooth
            empty = float(denominator) == 0
            losses.append(torch.zeros((), dtype=logits.dtype) if empty else 1 - (i + smooth) / denominator)
        return (weights * torch.stack(losses)).mean()

    return _per_example(logits, labels, term, reduction)


def jaccard_reference(logits, labels, *, reduction="mean", smooth=1.0):
    """1 - mean_c (I + s) / (P + T - I + s) per example; a 0/0 index is 1."""

    def term(sums):
        indices = []
        for i, _, _, p, t in sums:
            union = p + t - i + smooth
            indices.append(torch.ones((), dtype=logits.dtype) if float(union) == 0 else (i + smooth) / union)
        return 1 - torch.stack(indices).mean()

    return _per_example(logits, labels, term, reduction)


def lovasz_hinge_flat(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The authors' ``lovasz_hinge_flat``: logits and labels ``[P]``; 0 without pixels."""
    if len(labels) == 0:
        return logits.sum() * 0.0
    labels = labels.to(logits.dtype)
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    return torch.dot(torch.relu(errors_sorted), lovasz_grad(labels[perm]))


def lovasz_hinge_reference(logits, labels, *, reduction="mean"):
    """``per_image=True``: the authors' loss of each image; "mean" their mean, "sum" their sum."""
    terms = [lovasz_hinge_flat(x.reshape(-1), y.reshape(-1)) for x, y in zip(logits, labels)]
    return _reduce(torch.stack(terms) if terms else torch.zeros(0, dtype=logits.dtype), reduction)


def pixels(batch: int, dtype: torch.dtype, generator: torch.Generator):
    """``[B, 3, 4]`` pixel logits (normal, scale 2) and 0/1 integer labels; image 0 has no foreground."""
    logits = 2 * torch.randn(batch, HEIGHT, WIDTH, generator=generator)
    labels = torch.randint(0, 2, (batch, HEIGHT, WIDTH), generator=generator)
    if batch > 0:
        labels[0] = 0
    return logits.to(dtype), labels


_NO_UNBATCHED = (
    "one image without its batch dimension is not accepted (as dice): logits [C, H, W] with labels [H, W] have "
    "the shapes of a batch [B=C, C'=H, W] with labels [B, W] whenever C == H, so the batch dimension is required; "
    "tests/test_overlap.py checks vmap(grad) over x[None] against autograd per example instead"
)

CASES = [
    Case(
        name="tversky",
        make=images,
        params=(
            {},
            {"alpha": 0.3, "beta": 0.7, "smooth": 0.0, "gamma": 2.0},
            {"alpha": 0.8, "beta": 0.2, "smooth": 2.5, "gamma": 0.75},
        ),
        reference=tversky_reference,
        skip={"per_example_gradients": _NO_UNBATCHED},
    ),
    Case(
        name="generalized_dice",
        make=images,
        params=({}, {"smooth": 0.0}, {"smooth": 2.5}),
        reference=generalized_dice_reference,
        skip={"per_example_gradients": _NO_UNBATCHED},
    ),
    Case(
        name="jaccard",
        make=images,
        params=({}, {"smooth": 0.0}, {"smooth": 2.5}),
        reference=jaccard_reference,
        skip={"per_example_gradients": _NO_UNBATCHED},
    ),
    Case(
        name="lovasz_hinge",
        make=pixels,
        reference=lovasz_hinge_reference,
        skip={
            "per_example_gradients": (
                "the first dimension is always the batch: one image [H, W] without it is a valid batch of H "
                "one-dimensional images of W pixels, a different loss, so the check's unbatched form cannot hold; "
                "tests/test_overlap.py checks vmap(grad) over x[None] against autograd per image instead"
            ),
        },
    ),
]
