"""Cases for the segmentation losses: ``dice`` and ``lovasz_softmax`` on ``[B, C, H, W]`` logits.

The references are independent of lossfn, written from the papers' formulas with
loops (boolean indexing is fine in a reference): the soft Dice coefficient per
(example, class), and the authors' Lovász-Softmax algorithm (bermanmaxim/LovaszSoftmax,
``lovasz_softmax(probas, labels, classes="present", per_image=...)``) as a loop over
images and classes with ``continue`` for an absent class. ``tests/test_segmentation.py``
checks them against kornia and Ludwig's formulas too.
"""

from __future__ import annotations

import torch

from . import Case, reduce_like_torch as _reduce

CLASSES = 3
HEIGHT, WIDTH = 3, 4


def images(batch: int, dtype: torch.dtype, generator: torch.Generator):
    """``[B, 3, 3, 4]`` logits and ``[B, 3, 4]`` labels; image 0 lacks class 2 (an absent class)."""
    logits = 2 * torch.randn(batch, CLASSES, HEIGHT, WIDTH, generator=generator)
    labels = torch.randint(0, CLASSES, (batch, HEIGHT, WIDTH), generator=generator)
    if batch > 0:
        labels[0] = labels[0] % 2
    return logits.to(dtype), labels


def dice_reference(logits, labels, *, reduction="mean", smooth=1.0):
    """Soft Dice per (example, class) with a loop over both; a 0/0 coefficient (smooth 0, empty class) is 1."""
    batch, classes = logits.shape[:2]
    probabilities = torch.softmax(logits, dim=1).reshape(batch, classes, -1)
    flat = labels.reshape(batch, -1)
    rows = []
    for n in range(batch):
        coefficients = []
        for c in range(classes):
            target = (flat[n] == c).to(logits.dtype)
            numerator = 2 * (probabilities[n, c] * target).sum() + smooth
            denominator = probabilities[n, c].sum() + target.sum() + smooth
            empty = float(denominator) == 0
            coefficients.append(torch.ones((), dtype=logits.dtype) if empty else numerator / denominator)
        rows.append(1 - torch.stack(coefficients).mean())
    per_example = torch.stack(rows) if rows else torch.zeros(0, dtype=logits.dtype)
    return _reduce(per_example, reduction)


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """The authors' ``lovasz_grad``: the first differences of the Jaccard loss of the sorted prefix."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if len(gt_sorted) > 1:
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return jaccard


def lovasz_softmax_flat(probas: torch.Tensor, labels: torch.Tensor, classes: str = "present") -> torch.Tensor:
    """The authors' ``lovasz_softmax_flat``: probas ``[P, C]``, labels ``[P]``; mean over classes."""
    if probas.numel() == 0:
        return probas.sum() * 0.0
    losses = []
    for c in range(probas.shape[1]):
        fg = (labels == c).to(probas.dtype)
        if classes == "present" and fg.sum() == 0:
            continue
        errors = (fg - probas[:, c]).abs()
        errors_sorted, perm = torch.sort(errors, 0, descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(fg[perm])))
    return torch.stack(losses).mean() if losses else probas.sum() * 0.0


def _flatten(probas: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' ``flatten_probas`` for any number of spatial dimensions: ``[B·N, C]``, ``[B·N]``."""
    return probas.movedim(1, -1).reshape(-1, probas.shape[1]), labels.reshape(-1)


def lovasz_reference(logits, labels, *, reduction="mean", classes="present"):
    """``"none"``: per image (``per_image=True``'s terms); ``"mean"``: ``per_image=False``; ``"sum"``: of ``"none"``."""
    probas = torch.softmax(logits, dim=1)
    if reduction == "mean":
        return lovasz_softmax_flat(*_flatten(probas, labels), classes=classes)
    terms = [lovasz_softmax_flat(*_flatten(p[None], y[None]), classes=classes) for p, y in zip(probas, labels)]
    per_image = torch.stack(terms) if terms else torch.zeros(0, dtype=logits.dtype)
    return per_image if reduction == "none" else per_image.sum()


_NO_UNBATCHED = (
    "one image without its batch dimension is not accepted: with any number of spatial dimensions, logits "
    "[C, H, W] with labels [H, W] have the shapes of a batch [B=C, C'=H, W] with labels [B, W] whenever C == H, "
    "so the batch dimension is required (as F.cross_entropy requires it for spatial inputs); "
    "tests/test_segmentation.py checks vmap(grad) over x[None] against autograd per example instead"
)

CASES = [
    Case(
        name="dice",
        make=images,
        params=({}, {"smooth": 0.0}, {"smooth": 2.5}),
        reference=dice_reference,
        skip={"per_example_gradients": _NO_UNBATCHED},
    ),
    Case(
        name="lovasz_softmax",
        make=images,
        reference=lovasz_reference,
        skip={
            "per_example_gradients": _NO_UNBATCHED,
            "reduction_consistency": (
                '"mean" is the batch-level Lovász-Softmax (every pixel of the batch in one sorted set, the '
                'reference\'s per_image=False), "none" the per-image losses: the mean is not the mean of "none"'
            ),
        },
    ),
]
