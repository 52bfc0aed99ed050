"""Open-set recognition losses (Dhamija et al. 2018): the entropic open-set loss and the objectosphere.

A sample labelled ``background_class`` is an unknown: instead of the cross-entropy
it pays a term that pushes its softmax towards uniform (and, in the objectosphere,
its logits towards 0). Both losses compute every example's term with ``where``
(no boolean indexing), and their ``"mean"`` is Ludwig's: the mean over the known
samples plus the mean over the unknown ones (see :func:`entropic_open_set`).
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._common import (
    as_index,
    check_class_indices,
    check_floating,
    check_integer_labels,
    compute_dtype,
    fail,
    reduce_loss,
    shape,
    unbatched,
    validate_class_range,
)
from ._softmax import plogq

__all__ = ["entropic_open_set", "objectosphere"]

BackgroundClass = Annotated[
    Annotated[int, Meta(ge=0)] | None,
    Meta(description="class index of the unknown (background) samples; None: every sample is known"),
]

Xi = Annotated[float, Meta(ge=0.0, description="ξ, the logit L2 norm below which a known sample pays (ξ - ||x||)²")]
Zeta = Annotated[float, Meta(ge=0.0, description="ζ, the weight of an unknown sample's squared logit norm")]


def _inputs(name: str, logits: Any, labels: Any, background_class: Any) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Checked ``(x, labels, known, one)``: logits ``[B, C]`` in the compute dtype, int64 labels,
    the known mask ``[B]``, and whether one example ``[C]`` got a batch dimension."""
    check_floating(name, "logits", logits)
    if isinstance(labels, Tensor) and labels.dtype == torch.bool:
        labels = labels.long()  # a binary output's targets: classes 0 and 1
    given = logits
    logits, labels, one = unbatched(logits, labels, rank=2, probabilities=False)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise fail(
            name, "logits", "of shape [B, C] with C >= 2 classes, or [C] for one example (a binary output "
            "needs two logits per example, [B, 2], not one)", f"shape {shape(given)}",
        )
    check_integer_labels(name, labels, "integer class indices", like=logits)
    check_class_indices(name, logits, labels)
    num_classes = logits.shape[1]
    if isinstance(background_class, int) and background_class >= num_classes:  # read from the shape: no sync
        raise fail(name, "background_class", f"a class index in [0, {num_classes - 1}] for {num_classes} classes "
                   "(or None)", repr(background_class))
    labels = as_index(labels)
    known = torch.ones_like(labels, dtype=torch.bool) if background_class is None else labels != background_class
    return logits.to(compute_dtype(logits)), labels, known, one


def _cross_entropy_and_negative_entropy(x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    r"""Per example :math:`-\log p_y` and :math:`\sum_c p_c \log p_c`, both from ``log_softmax``.

    ``plogq`` takes :math:`0 \cdot \log 0` as 0 (a class whose probability underflows,
    or a masked logit :math:`-\infty`), in the value and the gradient.
    """
    log_p = torch.log_softmax(x, dim=1)
    cross_entropy = -log_p.gather(1, labels.unsqueeze(1)).squeeze(1)
    negative_entropy = plogq(log_p.exp(), log_p).sum(dim=1)
    return cross_entropy, negative_entropy


def _safe_norm(x: Tensor) -> Tensor:
    """The L2 norm of each row, with gradient 0 (not 0/0) at a zero row."""
    squares = x.square().sum(dim=1)
    positive = squares > 0
    return torch.where(positive, torch.where(positive, squares, torch.ones_like(squares)).sqrt(), 0.0)


def _reduce(name: str, loss: Tensor, known: Tensor, reduction: str, one: bool) -> Tensor:
    r"""``"none"`` and ``"sum"`` through ``reduce_loss``; ``"mean"`` is Ludwig's two means,
    :math:`\frac{1}{|K|}\sum_{n \in K} \ell_n + \frac{1}{|U|}\sum_{n \in U} \ell_n`, each 0 for an
    empty group (no gradient meets a 0/0)."""
    if one:
        loss, known = loss.squeeze(0), known.squeeze(0)
    if reduction != "mean":
        return reduce_loss(loss, reduction, name=name)
    unknown = ~known
    zero = torch.zeros_like(loss)
    known_sum, unknown_sum = torch.where(known, loss, zero).sum(), torch.where(unknown, loss, zero).sum()
    return known_sum / known.sum().clamp_min(1) + unknown_sum / unknown.sum().clamp_min(1)


@register_loss(
    "entropic_open_set", [Feature.BINARY, Feature.CATEGORY], validate=validate_class_range("entropic_open_set")
)
def entropic_open_set(
    logits: Tensor,
    labels: Tensor,
    *,
    background_class: BackgroundClass = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Entropic open-set loss: cross-entropy for known samples, maximal entropy for background ones.

    A sample whose label is ``background_class`` (an unknown) pays the negative
    entropy of its softmax :math:`p = \operatorname{softmax}(x_n)`; every other sample
    pays the cross-entropy:

    .. math::

        \ell_n = \begin{cases}
            -\log p_{n, y_n} & y_n \ne b \quad (n \in K) \\
            \sum_c p_{n,c} \log p_{n,c} & y_n = b \quad (n \in U)
        \end{cases}

    With ``background_class=None`` every sample is known: ``F.cross_entropy``.

    **The mean is Ludwig's.** Ludwig sums two separate means, the known samples' and the
    unknown samples' (each left out when the batch has none of its kind), so the two
    kinds weigh the same whatever their counts. lossfn's ``"mean"`` is that number
    (a Ludwig config gives Ludwig's loss), computed with ``where``:

    .. math::

        \text{mean} = \frac{1}{|K|} \sum_{n \in K} \ell_n + \frac{1}{|U|} \sum_{n \in U} \ell_n

    over the known samples :math:`K` and the unknown ones :math:`U` (a term is 0 when
    its group is empty). It is the plain mean of ``"none"`` when the batch holds one
    kind only (every sample known, in particular with ``background_class=None``),
    and otherwise not a mean of ``"none"`` at all: ``lossfn.distributed.mean``
    refuses these losses.

    **The unknowns' term is Ludwig's**, the negative entropy
    :math:`\sum_c p_c \log p_c`, minimal (:math:`-\log C`) at the uniform
    distribution. The paper writes the cross-entropy against the uniform distribution,
    :math:`-\frac1C \sum_c \log p_c`, which has the same minimizer; lossfn keeps
    Ludwig's number for Ludwig's configs. It is computed as
    :math:`\sum_c p_c \log\operatorname{softmax}(x)_c`, with no epsilon: Ludwig's
    :math:`\sum_c p_c \log(p_c + 10^{-10})` is larger by
    :math:`\sum_c p_c \log(1 + 10^{-10}/p_c) \le C \cdot 10^{-10}`.

    Args:
        logits: ``[B, C]`` with :math:`C \ge 2` (a binary output: ``[B, 2]``), or
            ``[C]`` for one example.
        labels: class indices ``[B]`` (``[]``) in ``[0, C)``, a signed integer dtype
            (bool for a binary output: classes 0 and 1). The module checks the range;
            the pure function reads no label values.
        background_class: :math:`b`, the unknowns' class index in ``[0, C)``, or None
            (a Python ``int`` of ``C`` or more is refused from the logits' shape).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n` per example, shape ``[B]``; ``"sum"``:
        :math:`\sum_n \ell_n`; ``"mean"``: Ludwig's known mean plus unknown mean (above).
        Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.5, 0.5, 0.5]])
        >>> labels = torch.tensor([0, 1, 2])
        >>> LF.entropic_open_set(logits, labels, background_class=2, reduction="none")
        tensor([ 0.4076,  0.4076, -1.0986])
        >>> LF.entropic_open_set(logits, labels, background_class=2)  # 0.4076 + (-1.0986)
        tensor(-0.6910)

    References:
        Dhamija, Günther and Boult, `Reducing Network Agnostophobia
        <https://arxiv.org/abs/1811.04110>`_, 2018. Checked against Ludwig's
        ``EntropicOpenSetLoss`` formula (boolean masks, written out in the tests) and
        ``torch.nn.functional.cross_entropy`` without a background class.
    """
    name = "entropic_open_set"
    x, labels, known, one = _inputs(name, logits, labels, background_class)
    cross_entropy, negative_entropy = _cross_entropy_and_negative_entropy(x, labels)
    loss = torch.where(known, cross_entropy, negative_entropy)
    return _reduce(name, loss, known, reduction, one).to(logits.dtype)


@register_loss("objectosphere", [Feature.BINARY, Feature.CATEGORY], validate=validate_class_range("objectosphere"))
def objectosphere(
    logits: Tensor,
    labels: Tensor,
    *,
    background_class: BackgroundClass = None,
    xi: Xi = 10.0,
    zeta: Zeta = 0.1,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Objectosphere loss: the entropic open-set loss plus a constraint on the logits' magnitude.

    A known sample pays its cross-entropy plus a hinge that pushes its logits' L2
    norm above :math:`\xi`; an unknown sample (label ``background_class``) pays the
    negative entropy of its softmax plus :math:`\zeta` times its squared norm:

    .. math::

        \ell_n = \begin{cases}
            -\log p_{n, y_n} + \max(0,\ \xi - \lVert x_n \rVert)^2 & y_n \ne b \quad (n \in K) \\
            \sum_c p_{n,c} \log p_{n,c} + \zeta \lVert x_n \rVert^2 & y_n = b \quad (n \in U)
        \end{cases}

    with :math:`\lVert x_n \rVert` the L2 norm over the classes. With
    ``background_class=None`` every sample is known: cross-entropy plus the hinge.
    The norm's gradient at zero logits is 0 (not 0/0), and each branch only sees the
    logits it uses, so a masked logit (:math:`-\infty`) of a known sample, whose
    hinge is 0, gives a finite gradient.

    **The mean is Ludwig's.** Ludwig sums two separate means, the known samples' and the
    unknown samples' (each left out when the batch has none of its kind), so the two
    kinds weigh the same whatever their counts. lossfn's ``"mean"`` is that number
    (a Ludwig config gives Ludwig's loss), computed with ``where``:

    .. math::

        \text{mean} = \frac{1}{|K|} \sum_{n \in K} \ell_n + \frac{1}{|U|} \sum_{n \in U} \ell_n

    over the known samples :math:`K` and the unknown ones :math:`U` (a term is 0 when
    its group is empty). It is the plain mean of ``"none"`` when the batch holds one
    kind only (every sample known, in particular with ``background_class=None``),
    and otherwise not a mean of ``"none"`` at all: ``lossfn.distributed.mean``
    refuses these losses.

    **The unknowns' term is Ludwig's**, the negative entropy
    :math:`\sum_c p_c \log p_c`, minimal (:math:`-\log C`) at the uniform
    distribution. The paper writes the cross-entropy against the uniform distribution,
    :math:`-\frac1C \sum_c \log p_c`, which has the same minimizer; lossfn keeps
    Ludwig's number for Ludwig's configs. It is computed as
    :math:`\sum_c p_c \log\operatorname{softmax}(x)_c`, with no epsilon: Ludwig's
    :math:`\sum_c p_c \log(p_c + 10^{-10})` is larger by
    :math:`\sum_c p_c \log(1 + 10^{-10}/p_c) \le C \cdot 10^{-10}`.

    Args:
        logits: ``[B, C]`` with :math:`C \ge 2` (a binary output: ``[B, 2]``), or
            ``[C]`` for one example.
        labels: class indices ``[B]`` (``[]``) in ``[0, C)``, a signed integer dtype
            (bool for a binary output). The module checks the range.
        background_class: :math:`b`, the unknowns' class index in ``[0, C)``, or None.
        xi: :math:`\xi \ge 0`, a number or a 0-d tensor.
        zeta: :math:`\zeta \ge 0`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n` per example, shape ``[B]``; ``"sum"``:
        :math:`\sum_n \ell_n`; ``"mean"``: Ludwig's known mean plus unknown mean (above).
        Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.1, 0.1, 0.1]])
        >>> labels = torch.tensor([0, 1, 2])
        >>> LF.objectosphere(logits, labels, background_class=2, xi=2.0, reduction="none")
        tensor([ 0.0949,  1.5514, -1.0956])
        >>> LF.objectosphere(logits, labels, background_class=2, xi=2.0)  # (0.0949 + 1.5514) / 2 - 1.0956
        tensor(-0.2724)

    References:
        Dhamija, Günther and Boult, `Reducing Network Agnostophobia
        <https://arxiv.org/abs/1811.04110>`_, 2018. Checked against Ludwig's
        ``ObjectosphereLoss`` formula (boolean masks, written out in the tests) and
        ``F.cross_entropy`` plus the hinge without a background class.
    """
    name = "objectosphere"
    x, labels, known, one = _inputs(name, logits, labels, background_class)
    cross_entropy, negative_entropy = _cross_entropy_and_negative_entropy(x, labels)
    zero = torch.zeros_like(x)
    # the hinge is active only below ξ: inactive rows (large, or infinite, logits) enter as 0
    active = known & (x.detach().square().sum(dim=1).sqrt() < xi)
    hinge = torch.where(active, (xi - _safe_norm(torch.where(active.unsqueeze(1), x, zero))).square(), 0.0)
    unknown = ~known
    magnitude = torch.where(unknown.unsqueeze(1), x, zero).square().sum(dim=1)
    loss = torch.where(known, cross_entropy + hinge, negative_entropy + zeta * magnitude)
    return _reduce(name, loss, known, reduction, one).to(logits.dtype)
