"""The binary Lovász hinge loss (Berman et al.): a convex surrogate of the Jaccard loss, per image.

One logit per pixel, ``[B, d1, ...]``, with 0/1 labels (or probabilities) of the same
shape. Sort, gather, cumsum and ``where`` only: no data-dependent shapes, so it runs
under ``torch.func`` transforms and ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._common import (
    cast,
    check_floating,
    check_min_rank,
    check_same_shape,
    compute_dtype,
    reduce_loss,
    validate_unit_range,
)

__all__ = ["lovasz_hinge"]


def _jaccard_steps(labels: Tensor, dtype: torch.dtype) -> Tensor:
    r"""The Lovász gradient of the Jaccard loss at labels sorted along the last dimension, in ``dtype``.

    With :math:`S_k = \sum_{j \le k} g_j`, :math:`G = S_N`, the intersection
    :math:`I_k = G - S_k` and the union :math:`U_k = G + k - S_k` after :math:`k`
    pixels, the Jaccard loss :math:`J_k = 1 - I_k / U_k` (:math:`J_0 = 0`) has the steps

    .. math::

        J_k - J_{k-1} = \frac{g_k U_{k-1} + (1 - g_k) I_{k-1}}{U_{k-1} U_k}
        \quad (k \ge 2), \qquad J_1 = \frac{1}{U_1}

    (:math:`1/U_k` at a foreground pixel, :math:`I_k / (U_k (U_k - 1))` at a
    background one for 0/1 labels), a sum of non-negative terms instead of the first
    differences of float Jaccard values, which lose their digits on many pixels. The
    counts are int64 for integer and boolean labels, float64 for float labels (float32
    on MPS, which has no float64): float32 sums stop counting at 2**24. :math:`U_k \ge k`
    for labels in ``[0, 1]``, so nothing divides by 0.
    """
    if labels.is_floating_point():
        counts = labels.to(torch.float32 if labels.device.type == "mps" else torch.float64)
    else:
        counts = labels.to(torch.int64)
    pixels = labels.shape[-1]
    seen = counts.cumsum(-1)
    total = counts.sum(-1, keepdim=True)
    k = torch.arange(1, pixels + 1, device=labels.device, dtype=counts.dtype)
    intersection = total - seen
    union = total + k - seen
    before_intersection = intersection + counts  # I_{k-1}
    before_union = union - 1 + counts  # U_{k-1} (U_0 = G, maybe 0: the first step is 1 / U_1)
    g, i_before, u_before, u = (cast(v, dtype) for v in (counts, before_intersection, before_union, union))
    first = k == 1
    numerator = g * u_before + (1 - g) * i_before
    return torch.where(first, 1 / u, numerator / torch.where(first, 1.0, u_before * u))


@register_loss("lovasz_hinge", [Feature.BINARY, Feature.IMAGE], validate=validate_unit_range("lovasz_hinge"))
def lovasz_hinge(logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Binary Lovász hinge loss: the Lovász extension of the Jaccard loss at the hinge errors, per image.

    Berman et al.'s binary loss, as their reference ``lovasz_hinge(logits, labels,
    per_image=True)``. For image :math:`n` with pixel logits :math:`x_i` and labels
    :math:`y_i \in [0, 1]`, the hinge errors :math:`e_i = 1 - x_i (2 y_i - 1)` sorted
    in decreasing order (:math:`\pi`), the labels :math:`g_k = y_{\pi(k)}` in that
    order, :math:`G = \sum_i y_i` and :math:`J_k = 1 - \frac{G - \sum_{j \le k} g_j}
    {G + \sum_{j \le k} (1 - g_j)}`, :math:`J_0 = 0`:

    .. math::

        \ell_n = \sum_k \max(e_{\pi(k)}, 0)\, (J_k - J_{k-1})

        \text{mean} = \frac{1}{B} \sum_n \ell_n, \qquad \text{sum} = \sum_n \ell_n

    At logits of :math:`\pm 1` this is :math:`2 (1 - \mathrm{IoU})` of the predicted
    foreground (:math:`x > 0`), and correct logits of magnitude at least 1 give 0. An
    image without foreground has :math:`\ell_n = \max_i \max(e_i, 0)`; one without
    pixels, 0. The steps :math:`J_k - J_{k-1}` are computed in closed form from exact
    counts (see ``_jaccard_steps``), so the float32 gradient keeps its digits on large
    images (within 3e-5 of the largest entry of the float64 one at 131k pixels, where
    the reference's first differences of float32 Jaccard values are 0.6% off, 4.7% at
    1M pixels). The batch-level loss (the reference's ``per_image=False``) is the loss of
    the batch as one image: ``lovasz_hinge(x.reshape(1, -1), y.reshape(1, -1))``.

    Args:
        logits: ``[B, d1, ...]`` one logit per pixel (``[B]``: one pixel per image,
            ``[B, H, W]`` for images). The first dimension is always the batch: one
            image ``[H, W]`` would be read as ``H`` images of ``W`` pixels, so give it
            as ``x[None]``.
        labels: the logits' shape; 0/1 (bool, integer or float) or probabilities,
            which the reference's formulas take as they are. The module checks that
            they lie in ``[0, 1]`` (NaN refused); the pure function reads no values.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n` per image, shape ``[B]``; ``"sum"``: their sum;
        ``"mean"``: their mean (the reference's ``per_image=True``; 0 for an empty
        batch, with a zero gradient). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[[2.0, -1.0], [0.5, -0.3]], [[-1.0, 1.0], [1.0, 1.0]]])  # [B=2, H=2, W=2]
        >>> labels = torch.tensor([[[1, 0], [0, 0]], [[0, 1], [1, 0]]])
        >>> LF.lovasz_hinge(logits, labels, reduction="none")
        tensor([0.8667, 0.6667])
        >>> LF.lovasz_hinge(logits, labels)
        tensor(0.7667)

    References:
        Berman, Rannen Triki and Blaschko, `The Lovász-Softmax loss: A tractable
        surrogate for the optimization of the intersection-over-union measure in
        neural networks <https://arxiv.org/abs/1705.08790>`_, 2018. Checked against
        the authors' reference algorithm (bermanmaxim/LovaszSoftmax) written as a loop
        over images, and ``kornia.losses.lovasz_hinge_loss``, which takes logits
        ``[B, 1, H, W]`` and returns the mean over the images: ``"mean"`` here.
    """
    name = "lovasz_hinge"
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 1, "[B] or [B, d1, ...]")
    check_same_shape(name, logits, labels)
    batch = logits.shape[0]
    pixels = math.prod(logits.shape[1:])  # static: an empty batch or image has no -1 to infer
    x = cast(logits, compute_dtype(logits)).reshape(batch, pixels)
    y = labels.reshape(batch, pixels)
    errors = 1 - x * (2 * cast(y, x.dtype) - 1)
    errors_sorted, order = torch.sort(errors, dim=-1, descending=True, stable=True)
    steps = _jaccard_steps(y.gather(-1, order), x.dtype)
    loss = (torch.relu(errors_sorted) * steps).sum(-1)
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)
