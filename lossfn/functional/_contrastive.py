"""Contrastive losses on vector outputs: NT-Xent (SimCLR's normalized temperature-scaled cross-entropy).

The loss is batch-coupled: each row's term depends on every other row of the batch
(its negatives), so there is no per-example gradient of one row alone. Its
``reduction="none"`` is still one value per row, whose sum is ``"sum"``, and
``"mean"`` is a weighted mean of them (see :func:`nt_xent`).
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._common import check_device, check_floating, check_integer_labels, compute_dtype, fail, reduce_loss, shape

__all__ = ["nt_xent"]


def _unit_rows(x: Tensor) -> Tensor:
    """Rows of ``x`` scaled to unit L2 norm (a zero row stays 0), for any finite magnitude.

    Each row is first divided by its largest absolute entry (held constant: the
    direction does not depend on it), so the sum of squares neither overflows (1e30
    in float32) nor underflows; the norm of the result lies in ``[1, sqrt(D)]``.
    ``where`` twice keeps a zero row's 0/0 out of the value and the gradient.
    """
    peak = x.detach().abs().amax(dim=1, keepdim=True)
    x = x / torch.where(peak > 0, peak, torch.ones_like(peak))
    squares = x.square().sum(dim=1, keepdim=True)
    nonzero = squares > 0
    return x / torch.where(nonzero, squares, torch.ones_like(squares)).sqrt()


def _pair_losses(similarity: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    r"""Per row ``(sum of its positive pairs' terms, number of its positive pairs)``.

    ``similarity`` is ``s_{ik} / t`` ``[B, B]``. The term of the ordered positive pair
    :math:`(i, p)` is :math:`-\log\sigma(s_{ip} - N_i)`, with :math:`N_i` the
    log-sum-exp of row :math:`i` over its negatives (:math:`-\infty` without any: the
    term is then 0). Masks are ``where``; a row without negatives has its entries set
    to 0 before the log-sum-exp (then replaced by :math:`-\infty`), so no gradient
    meets the all-masked row's NaN.
    """
    batch = similarity.shape[0]
    same = labels.unsqueeze(1) == labels.unsqueeze(0)
    diagonal = torch.eye(batch, dtype=torch.bool, device=similarity.device)
    positive = same & ~diagonal
    negative = ~same
    has_negative = negative.any(dim=1)
    masked = torch.where(negative, similarity, -torch.inf)
    masked = torch.where(has_negative.unsqueeze(1), masked, torch.zeros_like(masked))
    negatives = torch.where(has_negative, torch.logsumexp(masked, dim=1), -torch.inf)  # N_i
    # -log(e^{s_ip} / (e^{s_ip} + e^{N_i})) = -log σ(s_ip - N_i): exact and finite for any
    # scores (softplus's linear branch above 20 would be off by up to e^-20)
    terms = -F.logsigmoid(similarity - negatives.unsqueeze(1))
    row_sums = torch.where(positive, terms, torch.zeros_like(terms)).sum(dim=1)
    return row_sums, positive.sum(dim=1).to(similarity.dtype)


@register_loss("nt_xent", [Feature.VECTOR])
def nt_xent(
    embeddings: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: Annotated[
        float, Meta(gt=0.0, description="temperature t dividing the cosine similarities (lower: sharper)")
    ] = 0.07,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR, on a batch of embeddings.

    With :math:`z_i = x_i / \lVert x_i \rVert` and the scores
    :math:`s_{ik} = z_i^\top z_k / t` (cosine similarity over the temperature), every
    ordered pair :math:`(i, p)` of distinct rows with equal labels is a positive
    pair; row :math:`i`'s negatives are the rows :math:`k` with :math:`y_k \ne y_i`
    (the row itself is never counted). The term of a positive pair is

    .. math::

        \ell_{ip} = -\log \frac{e^{s_{ip}}}{e^{s_{ip}} + \sum_{k:\, y_k \ne y_i} e^{s_{ik}}},
        \qquad
        \ell_i = \sum_{p \ne i:\, y_p = y_i} \ell_{ip},
        \qquad
        n_i = \#\{p \ne i : y_p = y_i\}

    and :math:`\text{mean} = \sum_i \ell_i / \sum_i n_i`: the mean over the ordered
    positive pairs (pytorch-metric-learning's convention). A pair whose anchor has no
    negative costs 0; a batch without positive pairs has mean 0.

    **Without labels** (``labels=None``, Ludwig's setting) rows :math:`2i` and
    :math:`2i + 1` are the positive pairs (two views of one example), as if
    ``labels = arange(B) // 2``: then every other row is a negative,
    :math:`\ell_i = \log \sum_{k \ne i} e^{s_{ik}} - s_{i, i \oplus 1}`, and the mean is
    ``F.cross_entropy`` of the scores with a :math:`-\infty` diagonal against
    targets ``arange(B) ^ 1``, Ludwig's ``NTXentLoss`` number. The batch must then be
    even: Ludwig falls back to each row's most similar other row as its positive for
    an odd batch, which lossfn refuses instead (a row's positive would be its own
    nearest neighbour, a loss that rewards nothing). Ludwig always passes its vector
    target and ignores it; lossfn ignores a floating-point ``labels`` tensor of the
    embeddings' shape the same way (that call gives Ludwig's number), and takes
    integer labels as classes.

    The loss is batch-coupled (a row's term depends on every row), so there is no
    per-example gradient of one row alone. Masks are ``where`` and log-sum-exps, so
    no shape depends on the labels' values; rows are normalized after being divided
    by their largest entry, finite for any magnitude (Ludwig's ``F.normalize``
    divides by ``max(||x||, 1e-12)``: the two differ only for rows whose norm is
    below 1e-12, which lossfn still scales to unit length). Half-precision inputs
    are computed in float32.

    Args:
        embeddings: ``[B, D]`` vectors (the model's output, any scale).
        labels: ``None`` (pairs ``(2i, 2i + 1)``; ``B`` even), integer labels ``[B]``
            of any value (each a class: no range to check), or a floating-point
            tensor of the embeddings' shape (Ludwig's ignored vector target: as None).
        temperature: :math:`t > 0`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_i` per row, shape ``[B]`` (the sum of row :math:`i`'s
        positive-pair terms; 0 for a row without a positive; without labels each row
        has exactly one); ``"sum"``: :math:`\sum_i \ell_i`, the sum over all ordered
        positive pairs; ``"mean"``: :math:`\sum_i \ell_i / \sum_i n_i`, a weighted
        mean of ``"none"`` with weights :math:`n_i` (the plain mean over rows without
        labels), 0 without positive pairs. Same dtype as ``embeddings``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> embeddings = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
        >>> LF.nt_xent(embeddings, temperature=0.5)
        tensor(0.4302)
        >>> LF.nt_xent(embeddings, torch.tensor([0, 0, 1, 1]), temperature=0.5)  # the same pairs
        tensor(0.4302)

        With labels, row 3 has no positive (0) and rows 0 to 2 have two each:

        >>> LF.nt_xent(embeddings, torch.tensor([0, 0, 0, 1]), temperature=0.5, reduction="none")
        tensor([0.3223, 0.4472, 2.6969, 0.0000])
        >>> LF.nt_xent(embeddings, torch.tensor([0, 0, 0, 1]), temperature=0.5)  # sum / 6 pairs
        tensor(0.5777)

    References:
        Chen, Kornblith, Norouzi and Hinton, `A Simple Framework for Contrastive
        Learning of Visual Representations <https://arxiv.org/abs/2002.05709>`_, 2020.
        Checked against ``pytorch_metric_learning.losses.NTXentLoss`` (labels) and
        Ludwig's ``NTXentLoss`` formula (no labels).
    """
    name = "nt_xent"
    check_floating(name, "embeddings", embeddings)
    if embeddings.ndim != 2:
        raise fail(name, "embeddings", "of shape [B, D] (a batch of vectors)", f"shape {shape(embeddings)}")
    batch = embeddings.shape[0]
    if labels is not None and not isinstance(labels, Tensor):
        raise fail(name, "labels", "None or integer labels [B] (a torch.Tensor)", type(labels).__name__)
    if labels is not None and labels.is_floating_point():
        if labels.shape != embeddings.shape:
            raise fail(
                name, "labels", f"integer labels of shape [{batch}], or None for the pairs (2i, 2i + 1) "
                f"(a floating-point target is ignored, as Ludwig does, only with the embeddings' shape "
                f"{shape(embeddings)})", f"dtype {labels.dtype} and shape {shape(labels)}",
            )
        check_device(name, "labels", labels, embeddings, "embeddings")
        labels = None  # Ludwig's vector target: unused
    if labels is None:
        if batch % 2:
            raise fail(
                name, "embeddings", "an even batch [2N, D] of N positive pairs (rows 2i, 2i + 1) when labels "
                "is None (pass integer labels [B] for any other pairing)", f"shape {shape(embeddings)}",
            )
        labels = torch.arange(batch, device=embeddings.device) // 2
    else:
        check_integer_labels(name, labels, "integer labels")
        check_device(name, "labels", labels, embeddings, "embeddings")
        if labels.shape != (batch,):
            raise fail(name, "labels", f"integer labels of shape [{batch}] for embeddings {shape(embeddings)}",
                       f"shape {shape(labels)}")
    x = embeddings.to(compute_dtype(embeddings))
    # a batch without a positive pair (one row, or all labels distinct) has loss 0 whatever
    # its rows hold: they enter as 0, so a NaN or an infinity there reaches no gradient
    # (with a positive pair somewhere, every row is a positive or a negative of some row)
    paired = (labels.unsqueeze(1) == labels.unsqueeze(0)).sum() > batch
    z = _unit_rows(torch.where(paired, x, torch.zeros_like(x)))
    similarity = (z @ z.T) / temperature
    row_sums, positives = _pair_losses(similarity, labels)
    return reduce_loss(row_sums, reduction, name=name, weights=positives).to(embeddings.dtype)
