r"""Overlap losses on per-pixel class logits: Tversky (and focal Tversky), generalized Dice, Jaccard.

Each compares the softmax over the classes (dimension 1) of logits ``[B, C, d1, ...]``
with the one-hot integer labels ``[B, d1, ...]``, per example and class, through
three sums over the pixels :math:`i` of example :math:`n`:

.. math::

    I_{n,c} = \sum_i p_{n,c,i} t_{n,c,i}, \quad
    F^+_{n,c} = \sum_i p_{n,c,i} (1 - t_{n,c,i}), \quad
    F^-_{n,c} = \sum_i (1 - p_{n,c,i})\, t_{n,c,i}

(the soft true positives, false positives and false negatives), and one minus an
index :math:`(I + s) / (I + M + s)` with a mismatch :math:`M` (a weighted sum of
:math:`F^+` and :math:`F^-`) and a smoothing :math:`s`, written
:math:`M / (I + M + s)` so that a near-perfect class keeps its digits, with
:math:`1 - p` as ``-expm1(log_softmax)``. Where the denominator is 0 (:math:`s = 0`
and a class absent from the example whose probabilities underflow to 0, or no
pixels) the index is 1, with ``where`` twice so that the gradient stays finite, as
:func:`lossfn.functional.dice` does. Every class enters the mean, absent ones
included; shapes, checks, the float32 arithmetic for half-precision inputs and the
required batch dimension are those of ``dice`` (one image: ``x[None]``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

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
from ._segmentation import _LAYOUT

__all__ = ["generalized_dice", "jaccard", "tversky"]

Smooth = Annotated[
    float, Meta(ge=0.0, description="smoothing s added to the numerator and the denominator of each index")
]


def _overlaps(name: str, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Checked inputs as ``(I, F+, F-, T)``, each ``[B, C]`` in the compute dtype (``T``: pixels of each class)."""
    check_floating(name, "logits", logits)
    check_min_rank(name, "logits", logits, 2, _LAYOUT)
    check_integer_labels(name, labels, like=logits)
    check_class_indices(name, logits, labels)
    batch, num_classes = logits.shape[:2]
    if num_classes < 1:
        raise fail(name, "logits", f"of shape {_LAYOUT} with at least one class", f"shape {shape(logits)}")
    pixels = math.prod(logits.shape[2:])  # static: an empty batch or image has no -1 to infer
    x = cast(logits, compute_dtype(logits)).reshape(batch, num_classes, pixels)
    log_p = torch.log_softmax(x, dim=1)
    p, not_p = log_p.exp(), -torch.expm1(log_p)  # 1 - p without the rounding of p near 1
    classes = torch.arange(num_classes, device=logits.device).view(1, num_classes, 1)
    t = (as_index(labels).reshape(batch, 1, pixels) == classes).to(x.dtype)
    return (p * t).sum(-1), (p * (1 - t)).sum(-1), (not_p * t).sum(-1), t.sum(-1)


def _distance(intersection: Tensor, mismatch: Tensor, smooth: Any) -> Tensor:
    """``1 - (I + s) / (I + M + s) = M / (I + M + s)``; 0 where the denominator is 0 (an index of 1)."""
    denominator = intersection + mismatch + smooth
    empty = denominator == 0
    # where() twice: an empty class never divides, not even in the gradient
    return torch.where(empty, 0.0, mismatch / torch.where(empty, 1.0, denominator))


def _power(q: Tensor, gamma: Any) -> Tensor:
    r"""``q ** gamma`` for ``q`` in ``[0, 1]``, ``gamma > 0``, with a finite gradient everywhere.

    The derivative :math:`\gamma q^{\gamma - 1}` is infinite at ``q = 0`` for
    :math:`\gamma < 1`, and beyond the float range for subnormal ``q``. Below the
    smallest normal number the base is held at that number (a flat piece: no
    gradient, a value within :math:`\text{tiny}^\gamma` of the true one; exactly 0 at
    ``q = 0``), so the derivative is at most :math:`\gamma\, \text{tiny}^{\gamma - 1}`:
    below 4e35 in float32 for every :math:`\gamma`, 1 at :math:`\gamma = 1`.
    """
    tiny = torch.finfo(q.dtype).tiny
    base = torch.where(q < tiny, tiny, q)  # (comparisons that a NaN fails: it stays NaN)
    return torch.where(q == 0, 0.0, base**gamma)


@register_loss("tversky", [Feature.IMAGE], validate=validate_class_range("tversky"))
def tversky(
    logits: Tensor,
    labels: Tensor,
    *,
    alpha: Annotated[float, Meta(ge=0.0, description="weight α of the soft false positives Σ p(1 - t)")] = 0.5,
    beta: Annotated[float, Meta(ge=0.0, description="weight β of the soft false negatives Σ (1 - p)t")] = 0.5,
    smooth: Smooth = 1.0,
    gamma: Annotated[
        float, Meta(gt=0.0, description="exponent γ of each class's (1 - TI); 1 is the Tversky loss, else focal")
    ] = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Tversky loss (Salehi et al.), and the focal Tversky loss: a Dice loss that weighs errors by kind.

    With :math:`I, F^+, F^-` the soft true positives, false positives and false
    negatives of class :math:`c` in example :math:`n` (module docstring),

    .. math::

        \mathrm{TI}_{n,c} = \frac{I_{n,c} + s}{I_{n,c} + \alpha F^+_{n,c} + \beta F^-_{n,c} + s},
        \qquad \ell_n = \frac{1}{C} \sum_c \left(1 - \mathrm{TI}_{n,c}\right)^{\gamma}

        \text{mean} = \frac{1}{B} \sum_n \ell_n, \qquad \text{sum} = \sum_n \ell_n

    over every class, absent ones included (an absent class has :math:`I = F^- = 0`:
    its index is :math:`s / (\alpha P + s)`, :math:`P` its probability mass). A 0
    denominator gives :math:`\mathrm{TI} = 1`. :math:`\alpha = \beta = \frac12` gives
    Dice: :math:`\mathrm{TI} = (2I + 2s) / (P + T + 2s)`, so ``tversky(smooth=s)`` is
    ``dice(smooth=2 s)`` (the same at :math:`s = 0`); :math:`\alpha = \beta = 1`
    gives the Jaccard loss (:func:`jaccard`). :math:`\gamma \ne 1` is the focal
    Tversky loss per class, as Abraham and Khan write it with exponent
    :math:`1/\gamma` (their :math:`\gamma = 4/3` is ``gamma=0.75`` here). For
    :math:`\gamma < 1` the derivative of :math:`q^\gamma` is infinite at
    :math:`q = 1 - \mathrm{TI} = 0`: below the smallest normal float the base is held
    there, so the gradient stays finite (at most about :math:`4 \cdot 10^{35}` in
    float32), as the focal loss keeps its modulating factor's.

    Args:
        logits: ``[B, C, d1, ...]`` class scores (``[B, C]``: one pixel per example).
            The batch dimension is required: for one image use ``x[None]``.
        labels: ``[B, d1, ...]`` class indices, a signed integer dtype. The module
            checks that they lie in ``[0, C)``; the pure function reads no values (a
            label out of range is absent from every class).
        alpha: :math:`\alpha \ge 0`, the weight of the false positives.
        beta: :math:`\beta \ge 0`, the weight of the false negatives.
        smooth: :math:`s \ge 0`.
        gamma: :math:`\gamma > 0`. Each is a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n` per example, shape ``[B]``; ``"sum"``: their sum;
        ``"mean"``: their mean (0 for an empty batch, with a zero gradient). Same
        dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[[[2.0, -1.0]], [[0.0, 1.5]]]])  # [B=1, C=2, H=1, W=2]
        >>> labels = torch.tensor([[[0, 1]]])
        >>> LF.tversky(logits, labels, alpha=0.3, beta=0.7)
        tensor(0.0488)
        >>> LF.tversky(logits, labels, smooth=0.0, reduction="none")  # Dice at smooth 0
        tensor([0.0976])
        >>> LF.tversky(logits, labels, smooth=0.0, gamma=0.75, reduction="none")
        tensor([0.1746])

    References:
        Salehi, Erdogmus and Gholipour, `Tversky loss function for image segmentation
        using 3D fully convolutional deep networks <https://arxiv.org/abs/1706.05721>`_,
        2017; Abraham and Khan, `A Novel Focal Tversky loss function with improved
        Attention U-Net for lesion segmentation <https://arxiv.org/abs/1810.07842>`_,
        2019. Checked against the formula written as a loop, against ``dice``, against
        ``optax.losses.dice_loss(alpha=, beta=, smooth=)`` (stored vectors; optax's
        per-example ``"mean"`` over classes is ``"none"`` here at :math:`\gamma = 1`), and
        against ``kornia.losses.tversky_loss(eps=0)``, which is ``"mean"`` at
        :math:`s = 0` when every class is present in every example (kornia averages
        over the present classes only). segmentation_models_pytorch's ``TverskyLoss``
        raises the class mean to :math:`\gamma`; here each class's term is raised.
    """
    name = "tversky"
    intersection, false_positive, false_negative, _ = _overlaps(name, logits, labels)
    q = _distance(intersection, alpha * false_positive + beta * false_negative, smooth)
    loss = _power(q, gamma).mean(-1)
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)


@register_loss("generalized_dice", [Feature.IMAGE], validate=validate_class_range("generalized_dice"))
def generalized_dice(logits: Tensor, labels: Tensor, *, smooth: Smooth = 1.0, reduction: Reduction = "mean") -> Tensor:
    r"""Generalized Dice loss: Dice losses of the classes weighted by their inverse squared size (Sudre et al.).

    optax's ``multiclass_generalized_dice_loss``, per example. With :math:`I, F^+, F^-`
    as in the module docstring and :math:`T_{n,c}` the number of pixels of class
    :math:`c` in example :math:`n`, each class has optax's Dice loss (its
    ``dice_loss`` at :math:`\alpha = \beta = \frac12`) and a weight:

    .. math::

        d_{n,c} = 1 - \frac{I_{n,c} + s}{I_{n,c} + \frac12 F^+_{n,c} + \frac12 F^-_{n,c} + s},
        \qquad w_{n,c} = \begin{cases}
            1 / T_{n,c}^2 & T_{n,c} > 0 \\
            \max_{c' : T_{n,c'} > 0} 1 / T_{n,c'}^2 & T_{n,c} = 0
        \end{cases}

        \ell_n = \frac{\sum_c w_{n,c}\, d_{n,c}}{\sum_c w_{n,c}}, \qquad
        \text{mean} = \frac{1}{B} \sum_n \ell_n, \qquad \text{sum} = \sum_n \ell_n

    The weights are scaled by the smallest present count, :math:`(\min T / T_c)^2`
    (the same normalized weights, never an overflow); with no pixels at all every
    weight is 1 and :math:`\ell_n = 0`. A 0 denominator gives :math:`d = 0`. At
    equal counts this is :func:`tversky` at :math:`\alpha = \beta = \frac12`, i.e.
    ``dice(smooth=2 s)``.

    Differences from optax, which is checked through stored vectors:

    - optax takes the class counts over the whole batch; lossfn per example, so
      ``"none"`` is optax's number for each example alone, ``"mean"`` their mean,
      and a loss of one example never depends on the others (``"mean"`` is optax's
      number for ``B = 1``);
    - an empty class: optax's weight is :math:`1 / (T^2 + 10^{-7}) = 10^7`, which
      after normalization leaves the present classes about :math:`10^{-7} / T^2` of
      the weight, so its loss is almost only the absent classes' false positives.
      lossfn gives an empty class the largest weight of the present ones (the rule
      of NiftyNet and MONAI's ``GeneralizedDiceLoss``), so both count;
    - optax's :math:`10^{-7}` also shifts the present classes' weights, by a
      relative :math:`10^{-7} / T^2` (at most 1e-7), which lossfn leaves out.

    Sudre et al. take one ratio of weighted sums,
    :math:`1 - 2 \sum_c w_c I_c / \sum_c w_c (P_c + T_c)`; optax (and lossfn)
    average the Dice losses of the classes with the weights instead.

    Args:
        logits: ``[B, C, d1, ...]`` class scores (``[B, C]``: one pixel per example).
            The batch dimension is required: for one image use ``x[None]``.
        labels: ``[B, d1, ...]`` class indices, a signed integer dtype. The module
            checks that they lie in ``[0, C)``; the pure function reads no values.
        smooth: :math:`s \ge 0` (default 1, as optax), a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n` per example, shape ``[B]``; ``"sum"``: their sum;
        ``"mean"``: their mean (0 for an empty batch, with a zero gradient). Same
        dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[[[2.0, -1.0, 0.5]], [[0.0, 1.5, 0.0]]]])  # [B=1, C=2, H=1, W=3]
        >>> labels = torch.tensor([[[0, 1, 1]]])  # class 0: 1 pixel (weight 1), class 1: 2 (weight 1/4)
        >>> LF.generalized_dice(logits, labels)
        tensor(0.1730)
        >>> LF.generalized_dice(logits, labels, smooth=0.0)
        tensor(0.3014)

    References:
        Sudre, Li, Vercauteren, Ourselin and Cardoso, `Generalised Dice overlap as a
        deep learning loss function for highly unbalanced segmentations
        <https://arxiv.org/abs/1707.03237>`_, 2017. Checked against
        ``optax.losses.multiclass_generalized_dice_loss`` on each example (stored
        vectors, values and gradients) and the formula above written as a loop.
    """
    name = "generalized_dice"
    intersection, false_positive, false_negative, counts = _overlaps(name, logits, labels)
    d = _distance(intersection, (false_positive + false_negative) / 2, smooth)
    present = counts > 0
    smallest = torch.where(present, counts, math.inf).amin(-1, keepdim=True)
    ratio = torch.where(present, smallest / torch.where(present, counts, 1.0), 1.0)
    weights = ratio * ratio  # (min T / T_c)^2: 1 for the rarest present class and for an absent one
    loss = (weights * d).sum(-1) / weights.sum(-1)  # the sum is >= 1 (C >= 1)
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)


@register_loss("jaccard", [Feature.IMAGE], validate=validate_class_range("jaccard"))
def jaccard(logits: Tensor, labels: Tensor, *, smooth: Smooth = 1.0, reduction: Reduction = "mean") -> Tensor:
    r"""Jaccard (soft intersection-over-union) loss: one minus the mean soft IoU of each class, per example.

    With :math:`I, F^+, F^-` as in the module docstring, the soft union is
    :math:`I + F^+ + F^- = P + T - I`:

    .. math::

        J_{n,c} = \frac{I_{n,c} + s}{I_{n,c} + F^+_{n,c} + F^-_{n,c} + s},
        \qquad \ell_n = 1 - \frac{1}{C} \sum_c J_{n,c}

        \text{mean} = \frac{1}{B} \sum_n \ell_n, \qquad \text{sum} = \sum_n \ell_n

    over every class, absent ones included (their index is :math:`s / (P + s)`), as
    :func:`lossfn.functional.dice`; a 0 denominator gives :math:`J = 1`. It is
    :func:`tversky` at :math:`\alpha = \beta = 1`, :math:`\gamma = 1`.

    segmentation_models_pytorch's ``JaccardLoss(mode="multiclass")`` (smooth 0 and
    ``eps=1e-7`` by default) takes each class's sums over the whole batch, sets the
    loss of a class absent from the batch to 0 and averages over all :math:`C`
    classes: :math:`\frac1C \sum_{c \in K} (1 - J_c)` with :math:`K` the classes
    present in the batch. lossfn keeps dice's convention instead, per example with
    every class: a loss per example (``"none"``, per-example gradients, the mean of
    micro-batches is the batch's mean), and false positives on an absent class
    count. The two agree for one example with every class present (and the
    denominators above ``eps``); otherwise, for one example,
    :math:`\text{smp} = \ell - \frac1C \sum_{c \notin K} P_c / (P_c + s)`.

    Args:
        logits: ``[B, C, d1, ...]`` class scores (``[B, C]``: one pixel per example).
            The batch dimension is required: for one image use ``x[None]``.
        labels: ``[B, d1, ...]`` class indices, a signed integer dtype. The module
            checks that they lie in ``[0, C)``; the pure function reads no values.
        smooth: :math:`s \ge 0`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n` per example, shape ``[B]``; ``"sum"``: their sum;
        ``"mean"``: their mean (0 for an empty batch, with a zero gradient). Same
        dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[[[2.0, -1.0]], [[0.0, 1.5]]]])  # [B=1, C=2, H=1, W=2]
        >>> labels = torch.tensor([[[0, 1]]])
        >>> LF.jaccard(logits, labels)
        tensor(0.0930)
        >>> LF.jaccard(logits, labels, smooth=0.0, reduction="none")
        tensor([0.1778])

    References:
        Rahman and Wang, `Optimizing Intersection-Over-Union in Deep Neural Networks
        for Image Segmentation <https://doi.org/10.1007/978-3-319-50835-1_22>`_, 2016.
        Checked against the formula above written as a loop, and against
        segmentation_models_pytorch's ``JaccardLoss`` written out (it cannot be
        installed here), through the relation above.
    """
    name = "jaccard"
    intersection, false_positive, false_negative, _ = _overlaps(name, logits, labels)
    loss = _distance(intersection, false_positive + false_negative, smooth).mean(-1)
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)
