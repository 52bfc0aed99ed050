r"""Pair and triplet losses: cosine distance, and torch's embedding, ranking and triplet margin losses.

Each compares two (or three) model outputs. Torch's pair losses take ±1 targets
(1: similar, or ranked first; −1: dissimilar, or ranked second); lossfn takes those,
and 0 in place of −1 (lossfn's 0/1 binary labels): the pure function reads
``labels > 0`` as 1 and anything else as −1, so ±1 targets give torch's number and
0/1 labels the same number as ±1; the module refuses a label outside {−1, 0, 1}
(torch gives a target of 0 a third, undocumented meaning). Cosines and p-norms are
computed on vectors divided by their largest entry (a constant factor held out of
the gradient, which changes no value and no gradient), so they are finite for any
finite magnitude (1e30 in float32); half-precision inputs are computed in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import torch
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, InputCheck, Reduction, register_loss

from ._common import cast, check_device, check_floating, check_same_shape, compute_dtype, fail, reduce_loss, shape

__all__ = ["cosine_distance", "cosine_embedding", "hinge_embedding", "margin_ranking", "triplet_margin"]

#: What ``torch.nn.functional.cosine_embedding_loss`` adds to each squared norm.
_TORCH_EPSILON = 1e-12

#: Integer dtypes that cannot hold -1.
_UNSIGNED = (torch.uint8, torch.uint16, torch.uint32, torch.uint64)


def _scaled(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(x / peak, peak)``, ``peak`` the largest ``|x|`` on the last dimension (kept; 1 for a
    zero vector), detached: every quantity below is homogeneous in it, so holding it constant
    changes neither the value nor the gradient, and the sum of squares cannot overflow."""
    peak = x.detach().abs().amax(dim=-1, keepdim=True)
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    return x / peak, peak


def unit_vectors(x: Tensor, eps: float | Tensor, *, clip: bool) -> Tensor:
    r"""``x / sqrt(|x|² + ε)`` (torch's cosine) or, with ``clip``, ``x / sqrt(max(|x|², ε))`` (optax's), on the last dim.

    Computed as :math:`u / \sqrt{|u|^2 + \varepsilon / m^2}` with :math:`u = x / m`
    (:func:`_scaled`); :math:`\varepsilon / m^2` is capped far above :math:`|u|^2 \le D`,
    where the result is 0 to every digit anyway. A zero vector with :math:`\varepsilon = 0`
    gives 0 (optax: ``nan``), with the gradient of :math:`x / 1`.
    """
    u, peak = _scaled(x)
    floor = (eps / peak / peak).clamp(max=torch.finfo(u.dtype).max / 2**20)
    squares = u.square().sum(dim=-1, keepdim=True)
    total = torch.maximum(squares, floor) if clip else squares + floor
    return u * torch.where(total > 0, total, torch.ones_like(total)).rsqrt()


def _vectors(name: str, first: str, x: Tensor, second: str, y: Any, ranks: tuple[int, ...], layout: str) -> None:
    """Two floating-point outputs of one shape (rank in ``ranks``, or any when empty), on one device."""
    check_floating(name, first, x)
    if ranks and x.ndim not in ranks or x.ndim == 0:
        raise fail(name, first, f"of shape {layout}", f"shape {shape(x)}")
    check_same_shape(name, x, y, names=(first, second))
    check_floating(name, second, y)


def _signs(name: str, labels: Any, expected: torch.Size, like: Tensor, what: str) -> None:
    """±1 (or 0/1) targets of shape ``expected``: real or boolean, on the outputs' device."""
    if not isinstance(labels, Tensor):
        raise fail(name, "labels", "a torch.Tensor", type(labels).__name__)
    if labels.is_complex() or labels.dtype in _UNSIGNED:
        expected = "±1 (or 0/1) labels: float, a signed integer dtype or bool"
        raise fail(name, "labels", expected, f"dtype {labels.dtype}")
    if labels.shape != expected:
        dims = "[" + ", ".join(str(d) for d in expected) + "]"
        raise fail(name, "labels", f"±1 labels of shape {dims} ({what})", f"shape {shape(labels)}")
    check_device(name, "labels", labels, like, "logits")


def _sign_check(name: str, position: int, meaning: str) -> Callable[..., InputCheck | None]:
    """The modules' check: every label is 1, −1 or 0 (the first one that is not is reported; NaN fails)."""

    def validate(*inputs: Any, **_: Any) -> InputCheck | None:
        labels = inputs[position] if len(inputs) > position else None
        if not isinstance(labels, Tensor) or labels.dtype == torch.bool or labels.is_complex() or labels.numel() == 0:
            return None
        flat = labels.flatten()
        bad = ~((flat == 1) | (flat == -1) | (flat == 0))
        first = flat.gather(0, bad.to(torch.int32).argmax().view(1))[0]
        facts = torch.stack([bad.any().to(torch.float32), first.to(torch.float32)])

        def judge(values: list[float]) -> ValueError | None:
            return fail(name, "labels", meaning, f"a label {values[1]:g}") if values[0] else None

        return InputCheck(facts, judge)

    return validate


_SIMILAR = "±1 (torch's convention: 1 similar, -1 dissimilar) or 0/1 (0 for -1)"


@register_loss("cosine_distance", [Feature.VECTOR])
def cosine_distance(
    logits: Tensor,
    labels: Tensor,
    *,
    eps: Annotated[
        float, Meta(ge=0.0, description="floor ε of each squared norm, x / sqrt(max(|x|², ε)) (optax's epsilon)")
    ] = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Cosine distance, one minus the cosine similarity of predicted and target vectors.

    .. math::

        \ell_n = 1 - \frac{x_n}{\sqrt{\max(\lVert x_n \rVert^2, \varepsilon)}} \cdot
                     \frac{y_n}{\sqrt{\max(\lVert y_n \rVert^2, \varepsilon)}}

    over the last dimension, optax's definition (:math:`\varepsilon` floors the squared
    norms). A zero vector with :math:`\varepsilon = 0` has cosine 0 (distance 1) and a
    finite gradient (optax: ``nan``).

    Args:
        logits: predicted vectors ``[..., D]`` (``[B, D]``; ``[D]`` for one).
        labels: target vectors of the same shape.
        eps: :math:`\varepsilon \ge 0`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n`, one per vector, shape ``[...]`` (``[B]``); ``"mean"`` its
        mean (0 for an empty batch); ``"sum"`` its sum. Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> x, y = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 2.0], [1.0, 0.0]])
        >>> LF.cosine_distance(x, y, reduction="none")
        tensor([1.0000, 0.2929])

    References:
        ``optax.losses.cosine_distance`` (``predictions, targets, epsilon``), checked
        against stored optax vectors (values and gradients).
    """
    name = "cosine_distance"
    _vectors(name, "logits", logits, "labels", labels, (), "[..., D] (vectors on the last dimension)")
    dtype = compute_dtype(logits)
    x, y = unit_vectors(cast(logits, dtype), eps, clip=True), unit_vectors(cast(labels, dtype), eps, clip=True)
    return reduce_loss(1 - (x * y).sum(dim=-1), reduction, name=name).to(logits.dtype)


@register_loss(
    "cosine_embedding", [Feature.VECTOR], validate=_sign_check("cosine_embedding", 2, _SIMILAR)
)
def cosine_embedding(
    logits: Tensor,
    other: Tensor,
    labels: Tensor,
    *,
    margin: Annotated[
        float, Meta(ge=-1.0, le=1.0, description="cosine m above which a dissimilar pair costs cos - m")
    ] = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Cosine embedding loss: pull similar pairs to cosine 1, push dissimilar ones below a margin.

    With torch's cosine :math:`c_n = x_n \cdot z_n / \sqrt{(\lVert x_n \rVert^2 + 10^{-12})
    (\lVert z_n \rVert^2 + 10^{-12})}` of ``logits`` :math:`x_n` and ``other`` :math:`z_n`,

    .. math::

        \ell_n = \begin{cases} 1 - c_n & y_n = 1 \\ \max(0, c_n - m) & y_n = -1 \text{ (or 0)} \end{cases}

    ``torch.nn.functional.cosine_embedding_loss(logits, other, labels)``, argument for
    argument, for every reduction. Labels are torch's ±1; 0 is read as −1 (lossfn's 0/1
    labels; torch gives a target of 0 a loss of 0); the module refuses anything else.
    For float16 inputs the :math:`10^{-12}` is raised to :math:`4 / 65504^2`, so that the
    gradient at a zero vector, about :math:`1 / \sqrt{\varepsilon}`, is a float16 number
    (torch's float16 :math:`10^{-12}` underflows to 0, and a zero vector gives ``nan``).

    Args:
        logits: ``[B, D]`` (``[D]`` for one pair), torch's ``input1``.
        other: the second vectors, of the same shape (torch's ``input2``).
        labels: ``[B]`` (``[]``): 1 similar, −1 or 0 dissimilar; float, integer or bool.
        margin: :math:`m \in [-1, 1]`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n`, shape ``[B]`` (``[]``); ``"mean"`` its mean (0 for an
        empty batch, torch: ``nan``); ``"sum"`` its sum. Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> x, z = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[1.0, 1.0], [1.0, 0.0]])
        >>> LF.cosine_embedding(x, z, torch.tensor([1, -1]), margin=0.5, reduction="none")
        tensor([0.2929, 0.2071])
        >>> LF.cosine_embedding(x, z, torch.tensor([1, 0]), margin=0.5, reduction="none")  # 0/1 labels
        tensor([0.2929, 0.2071])

    References:
        ``torch.nn.functional.cosine_embedding_loss``, checked value for value (and
        gradient) in the tests.
    """
    name = "cosine_embedding"
    _vectors(name, "logits", logits, "other", other, (1, 2), "[B, D] (or [D] for one pair)")
    _signs(name, labels, logits.shape[:-1], logits, "one per pair")
    dtype = compute_dtype(logits)
    # float16: 1e-12 raised to 4 / 65504², so that the gradient at a zero vector (1 / √ε) is a float16 number
    eps = max(_TORCH_EPSILON, 4 / torch.finfo(logits.dtype).max / torch.finfo(logits.dtype).max)
    x, z = unit_vectors(cast(logits, dtype), eps, clip=False), unit_vectors(cast(other, dtype), eps, clip=False)
    cosine = (x * z).sum(dim=-1)
    loss = torch.where(labels > 0, 1 - cosine, (cosine - margin).clamp_min(0))
    return reduce_loss(loss, reduction, name=name).to(logits.dtype)


@register_loss("hinge_embedding", [Feature.VECTOR], validate=_sign_check("hinge_embedding", 1, _SIMILAR))
def hinge_embedding(
    logits: Tensor,
    labels: Tensor,
    *,
    margin: Annotated[float, Meta(description="distance m below which a dissimilar pair costs m - x")] = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Hinge embedding loss on distances: similar pairs cost their distance, dissimilar ones a hinge.

    .. math::

        \ell_i = \begin{cases} x_i & y_i = 1 \\ \max(0, m - x_i) & y_i = -1 \text{ (or 0)} \end{cases}

    elementwise, ``torch.nn.functional.hinge_embedding_loss(logits, labels)`` for every
    reduction (``logits`` are typically distances, e.g. an L1 distance per pair).
    Labels are torch's ±1; 0 is read as −1 (torch: :math:`x_i + \max(0, m - x_i)`); the
    module refuses anything else.

    Args:
        logits: distances of any shape (``[B, D]``, ``[B]``).
        labels: of the same shape: 1 similar, −1 or 0 dissimilar; float, integer or bool.
        margin: :math:`m`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_i`, elementwise (the shape of ``logits``); ``"mean"`` their
        mean (0 for an empty batch, torch: ``nan``); ``"sum"`` their sum. Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.hinge_embedding(torch.tensor([0.3, 0.4, 2.0]), torch.tensor([1.0, -1.0, -1.0]), reduction="none")
        tensor([0.3000, 0.6000, 0.0000])

    References:
        ``torch.nn.functional.hinge_embedding_loss``, checked value for value (and
        gradient) in the tests.
    """
    name = "hinge_embedding"
    check_floating(name, "logits", logits)
    _signs(name, labels, logits.shape, logits, "one per distance")
    x = cast(logits, compute_dtype(logits))
    loss = torch.where(labels > 0, x, (margin - x).clamp_min(0))
    return reduce_loss(loss, reduction, name=name).to(logits.dtype)


@register_loss(
    "margin_ranking",
    [Feature.NUMBER],
    validate=_sign_check("margin_ranking", 2, "±1 (torch's convention: 1 if logits rank above other, -1 if below) "
                         "or 0/1 (0 for -1)"),
)
def margin_ranking(
    logits: Tensor,
    other: Tensor,
    labels: Tensor,
    *,
    margin: Annotated[
        float, Meta(description="margin m by which the higher-ranked score should exceed the other")
    ] = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Margin ranking loss: the score labelled first should exceed the other by a margin.

    .. math::

        \ell_i = \max\bigl(0, -y_i (x_i - z_i) + m\bigr), \qquad y_i \in \{1, -1\}

    elementwise, with ``logits`` :math:`x_i`, ``other`` :math:`z_i`, and :math:`y_i = 1`
    when :math:`x_i` should rank above :math:`z_i`:
    ``torch.nn.functional.margin_ranking_loss(logits, other, labels)`` for every
    reduction. Labels are torch's ±1; 0 is read as −1 (torch: a loss of
    :math:`\max(0, m)`); the module refuses anything else.

    Args:
        logits: scores of any shape (``[B]``), torch's ``input1``.
        other: the scores compared with them, of the same shape (torch's ``input2``).
        labels: of the same shape: 1, or −1 or 0; float, integer or bool.
        margin: :math:`m`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_i`, elementwise (the shape of ``logits``); ``"mean"`` their
        mean (0 for an empty batch, torch: ``nan``); ``"sum"`` their sum. Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> scores, others = torch.tensor([2.0, 0.5]), torch.tensor([1.0, 1.0])
        >>> LF.margin_ranking(scores, others, torch.tensor([1, 1]), margin=1.0, reduction="none")
        tensor([0.0000, 1.5000])

    References:
        ``torch.nn.functional.margin_ranking_loss``, checked value for value (and
        gradient) in the tests.
    """
    name = "margin_ranking"
    check_floating(name, "logits", logits)
    check_same_shape(name, logits, other, names=("logits", "other"))
    check_floating(name, "other", other)
    _signs(name, labels, logits.shape, logits, "one per score")
    dtype = compute_dtype(logits)
    difference = cast(logits, dtype) - cast(other, dtype)
    sign = torch.where(labels > 0, 1.0, -1.0).to(dtype)
    return reduce_loss((margin - sign * difference).clamp_min(0), reduction, name=name).to(logits.dtype)


def _distance(x: Tensor, y: Tensor, p: float | Tensor, eps: float | Tensor) -> Tensor:
    r"""Torch's ``pairwise_distance``, :math:`\lVert x - y + \varepsilon \rVert_p` on the last dimension.

    As :math:`m (\sum_j |u_j|^p)^{1/p}` with :math:`u = d / m` (:func:`_scaled`); a zero
    coordinate, and a zero difference, have gradient 0 (a safe norm: ``where`` twice keeps
    :math:`0^{p-1}` and :math:`0^{1/p - 1}` out of the gradient).
    """
    u, peak = _scaled(x - y + eps)
    size = u.abs()
    nonzero = size > 0
    powers = torch.where(nonzero, torch.where(nonzero, size, torch.ones_like(size)) ** p, torch.zeros_like(size))
    total = powers.sum(dim=-1)
    positive = total > 0
    root = torch.where(positive, total, torch.ones_like(total)) ** (1 / p)
    root = torch.where(positive, root, torch.zeros_like(total))
    return peak.squeeze(-1) * root


@register_loss("triplet_margin", [Feature.VECTOR])
def triplet_margin(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    *,
    margin: Annotated[
        float, Meta(ge=0.0, description="margin m by which the negative should be farther than the positive")
    ] = 1.0,
    p: Annotated[float, Meta(ge=1.0, description="degree p of the norm of the differences")] = 2.0,
    eps: Annotated[float, Meta(ge=0.0, description="ε added to each difference, ||a - b + ε||_p (torch's)")] = 1e-6,
    swap: Annotated[
        bool, Meta(description="use min(d(a, n), d(p, n)) as the negative distance (the distance swap)")
    ] = False,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Triplet margin loss: the anchor nearer its positive than its negative by a margin.

    With torch's distance :math:`d(a, b) = \lVert a - b + \varepsilon \rVert_p` (the
    :math:`\varepsilon` added to every coordinate of the difference),

    .. math::

        \ell_n = \max\bigl(0, m + d(a_n, p_n) - d'_n\bigr), \qquad
        d'_n = \begin{cases} \min(d(a_n, n_n), d(p_n, n_n)) & \text{swap} \\ d(a_n, n_n) & \text{else} \end{cases}

    ``torch.nn.functional.triplet_margin_loss`` for every reduction. ``optax.losses.triplet_margin_loss``
    computes :math:`(\sum_j (a - b)_j^p + \varepsilon)^{1/p}` instead (:math:`\varepsilon`
    inside the sum, no absolute value, so odd :math:`p` differ); the two agree for
    :math:`\varepsilon = 0` and even :math:`p`, where lossfn is checked against both.
    A zero difference (``anchor == positive`` with :math:`\varepsilon = 0`) has distance 0
    with gradient 0 (a safe norm, as torch's), and so has a zero coordinate.

    Differences from torch: :math:`p \ge 1` (torch takes any :math:`p`; below 1 the
    "norm" is none, and grows as :math:`D^{1/p}` towards ``inf`` as :math:`p \to 0`);
    :math:`m \ge 0` (torch: :math:`m > 0`) and :math:`\varepsilon \ge 0`.

    Args:
        anchor: ``[B, D]`` (``[D]`` for one triplet).
        positive: of the same shape.
        negative: of the same shape.
        margin: :math:`m \ge 0`; p: :math:`p \ge 1`; eps: :math:`\varepsilon \ge 0`: each a
            number or a 0-d tensor.
        swap: the distance swap of Balntas et al.: True or False (or a 0-d bool tensor).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n`, shape ``[B]`` (``[]``); ``"mean"`` its mean (0 for an
        empty batch, torch: ``nan``); ``"sum"`` its sum. Same dtype as ``anchor``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> a, p, n = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.3, 0.4]]), torch.tensor([[1.0, 0.0]])
        >>> LF.triplet_margin(a, p, n, eps=0.0)
        tensor(0.5000)
        >>> LF.triplet_margin(a, p, n, eps=0.0, swap=True)  # d(p, n) = 0.806 < d(a, n) = 1
        tensor(0.6938)

    References:
        Balntas, Riba, Ponsa and Mikolajczyk, `Learning local feature descriptors with
        triplets and shallow convolutional neural networks
        <https://bmva-archive.org.uk/bmvc/2016/papers/paper119/abstract119.pdf>`_, 2016.
        Checked against ``torch.nn.functional.triplet_margin_loss`` (values and
        gradients) and stored optax vectors (:math:`\varepsilon = 0`, even :math:`p`).
    """
    name = "triplet_margin"
    _vectors(name, "anchor", anchor, "positive", positive, (1, 2), "[B, D] (or [D] for one triplet)")
    check_same_shape(name, anchor, negative, names=("anchor", "negative"))
    check_floating(name, "negative", negative)
    dtype = compute_dtype(anchor)
    a, b, c = cast(anchor, dtype), cast(positive, dtype), cast(negative, dtype)
    near, far = _distance(a, b, p, eps), _distance(a, c, p, eps)
    if isinstance(swap, Tensor):
        far = torch.where(swap, torch.minimum(far, _distance(b, c, p, eps)), far)
    elif swap:
        far = torch.minimum(far, _distance(b, c, p, eps))
    return reduce_loss((margin + near - far).clamp_min(0), reduction, name=name).to(anchor.dtype)
