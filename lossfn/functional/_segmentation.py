"""Segmentation losses on per-pixel class logits: Dice (Milletari et al.) and Lovász-Softmax (Berman et al.).

Both take logits ``[B, C, d1, ...]`` (any number of spatial dimensions, none
included: ``[B, C]``) and integer labels ``[B, d1, ...]``, take the softmax over
the classes (dimension 1) in float32 for half-precision inputs, and compare it
with the one-hot labels over the flattened pixels ``[B, C, N]``, with tensor ops
only: no loop over classes, no boolean-mask indexing, so they run under
``torch.func`` transforms and ``torch.compile(fullgraph=True)``.

The batch dimension is required (as ``torch.nn.functional.cross_entropy`` requires
it for spatial inputs): with any number of spatial dimensions, one image
``[C, H, W]`` with labels ``[H, W]`` has the shapes of a batch of ``C`` images of
``H`` classes and ``W`` pixels whenever ``C == H``, so no reading of it is safe.
To ``vmap`` over images, give each one its batch dimension: ``loss(x[None], y[None])``.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._common import (
    as_index,
    cast,
    check_class_indices,
    check_floating,
    check_integer_labels,
    check_min_rank,
    compute_dtype,
    fail,
    reduce_loss,
    shape,
    validate_class_range,
)

__all__ = ["dice", "lovasz_softmax"]

_LAYOUT = "[B, C] or [B, C, d1, ...]"

Smooth = Annotated[
    float, Meta(ge=0.0, description="smoothing s added to the numerator and the denominator of each Dice ratio")
]


def _probabilities_and_targets(name: str, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Checked inputs as ``(softmax, one-hot)``, both ``[B, C, N]`` in the compute dtype."""
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 2, _LAYOUT)
    check_integer_labels(name, labels, like=logits)
    check_class_indices(name, logits, labels)
    batch, num_classes = logits.shape[:2]
    if num_classes < 1:
        raise fail(name, "logits", f"of shape {_LAYOUT} with at least one class", f"shape {shape(logits)}")
    pixels = math.prod(logits.shape[2:])  # static: an empty batch or image has no -1 to infer
    x = cast(logits, compute_dtype(logits)).reshape(batch, num_classes, pixels)
    probabilities = torch.softmax(x, dim=1)
    classes = torch.arange(num_classes, device=logits.device).view(1, num_classes, 1)
    targets = (as_index(labels).reshape(batch, 1, pixels) == classes).to(x.dtype)
    return probabilities, targets


@register_loss("dice", [Feature.IMAGE], validate=validate_class_range("dice"))
def dice(logits: Tensor, labels: Tensor, *, smooth: Smooth = 1.0, reduction: Reduction = "mean") -> Tensor:
    r"""Dice loss: one minus the mean soft Dice coefficient of each class, per example.

    The soft Dice coefficient of Milletari et al. between the softmax
    :math:`p_{n,c,i} = \operatorname{softmax}(x_{n,\cdot,i})_c` and the one-hot
    labels :math:`t_{n,c,i} = [y_{n,i} = c]`, over the pixels :math:`i` of example
    :math:`n`, for each class :math:`c` of :math:`C`, with smoothing :math:`s`:

    .. math::

        D_{n,c} = \frac{2 \sum_i p_{n,c,i} t_{n,c,i} + s}{\sum_i p_{n,c,i} + \sum_i t_{n,c,i} + s},
        \qquad \ell_n = 1 - \frac{1}{C} \sum_c D_{n,c}

        \text{mean} = \frac{1}{B} \sum_n \ell_n = 1 - \frac{1}{BC} \sum_{n,c} D_{n,c},
        \qquad \text{sum} = \sum_n \ell_n

    so ``"mean"`` is Ludwig's ``DiceLoss``. Where a denominator is 0 (:math:`s = 0`,
    a class absent from the example and its probabilities all 0, or no pixels) the
    coefficient is 1, agreement on an empty class (the value at any :math:`s > 0`
    there), taken with ``where`` so the value and the gradient stay finite; Ludwig
    gives NaN there.

    Args:
        logits: ``[B, C, d1, ...]`` class scores (``[B, C]``: one pixel per example).
            The batch dimension is required: for one image use ``x[None]``.
        labels: ``[B, d1, ...]`` class indices, a signed integer dtype. The module
            checks that they lie in ``[0, C)``; the pure function reads no values (a
            label out of range is absent from every class).
        smooth: :math:`s \ge 0` (default 1, as Ludwig), a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n` per example, shape ``[B]``; ``"sum"``: their sum;
        ``"mean"``: their mean (0 for an empty batch, with a zero gradient). Same
        dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[[[2.0, -1.0]], [[0.0, 1.5]]]])  # [B=1, C=2, H=1, W=2]
        >>> labels = torch.tensor([[[0, 1]]])
        >>> LF.dice(logits, labels)
        tensor(0.0650)
        >>> LF.dice(logits, labels, smooth=0.0, reduction="none")
        tensor([0.0976])

    References:
        Milletari, Navab and Ahmadi, `V-Net: Fully Convolutional Neural Networks for
        Volumetric Medical Image Segmentation <https://arxiv.org/abs/1606.04797>`_,
        2016. Checked against the formula above written as a loop, Ludwig's
        ``DiceLoss`` written out, and ``kornia.losses.dice_loss(average="macro",
        eps=0)``, which equals ``"mean"`` at :math:`s = 0` when every class is present
        in every example (kornia averages over the present classes only and puts
        ``eps`` in the denominator alone; its ``"micro"`` pools the classes). Differences
        from Ludwig (which takes ``[B, C, H, W]`` only): any number of spatial
        dimensions, every reduction, a 0 denominator gives a coefficient of 1, not
        NaN, and float32 arithmetic for half-precision logits; see ``docs/ludwig.md``.
    """
    name = "dice"
    probabilities, targets = _probabilities_and_targets(name, logits, labels)
    numerator = 2 * (probabilities * targets).sum(-1) + smooth
    denominator = probabilities.sum(-1) + targets.sum(-1) + smooth
    empty = denominator == 0
    # where() twice: an empty class never divides, not even in the gradient
    coefficient = torch.where(empty, 1.0, numerator / torch.where(empty, 1.0, denominator))
    loss = 1 - coefficient.mean(-1)
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)


def _lovasz_per_class(errors: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    r"""The Lovász extension of the Jaccard loss of each class, over the last dimension.

    ``errors`` and ``targets`` are ``[..., C, N]``; returns ``(loss [..., C], present [..., C])``.
    Sorted by decreasing error, with :math:`g` the sorted targets, :math:`G = \sum_i g_i`,
    and after :math:`k` pixels the intersection :math:`I_k = G - \sum_{i \le k} g_i` and
    the union :math:`U_k = G + \sum_{i \le k} (1 - g_i)`, the Jaccard loss is
    :math:`J_k = 1 - I_k / U_k` and the loss :math:`\sum_k e_k (J_k - J_{k-1})`,
    :math:`J_0 = 0`. The steps are taken in closed form,

    .. math::

        J_k - J_{k-1} = \frac{1}{U_k} \text{ if } g_k = 1, \qquad
        \frac{I_k}{U_k (U_k - 1)} \text{ if } g_k = 0
        \quad (1 \text{ where } U_k = 1: \text{ an absent class's first pixel}),

    from integer counts: exact to rounding at any number of pixels, where the first
    differences of float32 Jaccard values lose their digits (about 10% of the largest
    step at 4M pixels: sixteen 512 x 512 images flattened). :math:`U_k \ge 1` at every
    :math:`k` (:math:`G \ge 1`, or :math:`g_1 = 0` when the class is absent): nothing
    divides by 0, and an absent class gives its largest error.
    """
    errors_sorted, order = torch.sort(errors, dim=-1, descending=True, stable=True)
    hit = targets.gather(-1, order) > 0
    hits = hit.to(torch.int64).cumsum(-1)  # int64: float32 counts stop at 2**24
    total = hits[..., -1:] if hits.shape[-1] > 0 else hits.sum(-1, keepdim=True)
    seen = torch.arange(1, hits.shape[-1] + 1, device=hits.device)
    intersection = (total - hits).to(errors.dtype)
    union = (total + seen - hits).to(errors.dtype)
    before = union - 1  # the union before a miss
    after_miss = torch.where(before > 0, intersection / union / torch.where(before > 0, before, 1.0), 1.0)
    steps = torch.where(hit, 1 / union, after_miss)
    return (errors_sorted * steps).sum(-1), total.squeeze(-1) > 0


def _mean_over_present(per_class: Tensor, present: Tensor) -> Tensor:
    """The mean over the present classes (last dimension); 0 where none is (no pixels)."""
    count = present.sum(-1).clamp_min(1).to(per_class.dtype)
    return torch.where(present, per_class, 0.0).sum(-1) / count


@register_loss("lovasz_softmax", [Feature.IMAGE], validate=validate_class_range("lovasz_softmax"))
def lovasz_softmax(logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Lovász-Softmax loss: a convex surrogate of the mean intersection-over-union, on softmax probabilities.

    Berman et al.'s loss, as their reference ``lovasz_softmax(probas, labels,
    classes="present")``. For a set :math:`P` of pixels, the softmax
    :math:`p_{c,i}` and the one-hot labels :math:`t_{c,i}`, class :math:`c` has the
    errors :math:`e_{c,i} = |t_{c,i} - p_{c,i}|`; sorted in decreasing order
    (:math:`\pi`) with the targets :math:`g_k = t_{c,\pi(k)}` in the same order and
    :math:`G_c = \sum_i t_{c,i}`:

    .. math::

        J_{c,k} = 1 - \frac{G_c - \sum_{j \le k} g_j}{G_c + \sum_{j \le k} (1 - g_j)},
        \qquad \bar\Delta_c(P) = \sum_k e_{c,\pi(k)} (J_{c,k} - J_{c,k-1}),
        \quad J_{c,0} = 0

        L(P) = \frac{1}{|K(P)|} \sum_{c \in K(P)} \bar\Delta_c(P),
        \qquad K(P) = \{c : G_c > 0\}

    the mean over the classes present in the labels of :math:`P` (0 when
    :math:`P` is empty). The steps :math:`J_{c,k} - J_{c,k-1}` are computed in
    closed form from integer counts, so a float32 gradient keeps float64's digits
    on many pixels (the reference's first differences of float32 Jaccard values
    lose about 1% of it at 131k pixels, 8% at 1M). The loss couples the pixels it
    is taken over:

    - ``"none"``: :math:`\ell_n = L(\text{pixels of image } n)`, per image, shape
      ``[B]`` (the reference's ``per_image=True`` terms);
    - ``"sum"``: :math:`\sum_n \ell_n`;
    - ``"mean"``: :math:`L(\text{all pixels of the batch})`, the reference's
      ``per_image=False`` value (the batch flattened into one set of pixels, as
      Ludwig flattens it). It is **not** the mean of ``"none"`` (that is the
      reference's ``per_image=True``: ``loss(..., reduction="none").mean()``), so
      ``lossfn.distributed.mean`` refuses this loss.

    Ludwig's ``LovaszSoftmaxLoss`` takes the batch-level sum over the present
    classes but divides by the number of all classes:
    :math:`\frac{1}{C} \sum_{c \in K} \bar\Delta_c = \frac{|K|}{C}\, L`, which is
    lossfn's ``"mean"`` when every class is present in the batch and smaller
    otherwise. ``kornia.losses.lovasz_softmax_loss`` averages over all :math:`C`
    classes per image and then over the images (an absent class enters with
    :math:`\max_i p_{c,i}`): the mean of ``"none"`` when every class is present in
    every image.

    Args:
        logits: ``[B, C, d1, ...]`` class scores (``[B, C]``: one pixel per image). The
            batch dimension is required: for one image use ``x[None]``.
        labels: ``[B, d1, ...]`` class indices, a signed integer dtype. The module
            checks that they lie in ``[0, C)``; the pure function reads no values (a
            label out of range is absent from every class).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        As above: ``[B]`` for ``"none"``, a scalar otherwise (``"mean"`` of an empty
        batch is 0 with a zero gradient). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[[[2.0, -1.0]], [[0.0, 1.5]]], [[[0.5, 0.0]], [[0.0, 1.0]]]])
        >>> labels = torch.tensor([[[0, 1]], [[1, 1]]])  # [B=2, H=1, W=2]; image 1 lacks class 0
        >>> LF.lovasz_softmax(logits, labels, reduction="none")
        tensor([0.1084, 0.4457])
        >>> LF.lovasz_softmax(logits, labels)  # the four pixels together
        tensor(0.3609)

    References:
        Berman, Rannen Triki and Blaschko, `The Lovász-Softmax loss: A tractable
        surrogate for the optimization of the intersection-over-union measure in
        neural networks <https://arxiv.org/abs/1705.08790>`_, 2018. Checked against
        the authors' reference algorithm (bermanmaxim/LovaszSoftmax) written as a
        loop over images and classes, Ludwig's formula written out, and
        ``kornia.losses.lovasz_softmax_loss`` where the conventions agree.
        Differences from Ludwig (which takes ``[B, C, H, W]`` only and returns a
        tensor of shape ``[1]``): the mean over the present classes, not the sum
        divided by :math:`C`; any number of spatial dimensions; per-image ``"none"``
        and ``"sum"``; a scalar in the logits' dtype; see ``docs/ludwig.md``.
    """
    name = "lovasz_softmax"
    probabilities, targets = _probabilities_and_targets(name, logits, labels)
    # |t - p| for t in {0, 1} and p in [0, 1], without the kink of abs() at t = p
    errors = torch.where(targets > 0, 1 - probabilities, probabilities)
    if reduction == "mean":  # the whole batch as one set of pixels: [C, B·N]
        num_classes = errors.shape[1]
        pixels = errors.shape[0] * errors.shape[2]
        flat_errors = errors.transpose(0, 1).reshape(num_classes, pixels)
        flat_targets = targets.transpose(0, 1).reshape(num_classes, pixels)
        loss = _mean_over_present(*_lovasz_per_class(flat_errors, flat_targets))
        return cast(loss, logits.dtype)
    loss = _mean_over_present(*_lovasz_per_class(errors, targets))  # [B]
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)
