r"""The supervised contrastive loss (Khosla et al.) on a batch of embeddings.

Batch-coupled: each anchor's term depends on every row of the batch (its
denominator), so one row alone has no loss of its own. ``reduction="none"`` is
still one value per anchor, whose sum is ``"sum"``; ``"mean"`` is the mean over
the anchors that have a positive (see :func:`supervised_contrastive`).
"""

from __future__ import annotations

from typing import Annotated

import torch
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._common import cast, check_device, check_floating, check_integer_labels, compute_dtype, fail, reduce_loss, shape
from ._pairs import unit_vectors

__all__ = ["supervised_contrastive"]


@register_loss("supervised_contrastive", [Feature.VECTOR])
def supervised_contrastive(
    embeddings: Tensor,
    labels: Tensor,
    *,
    temperature: Annotated[
        float, Meta(gt=0.0, description="temperature τ dividing the cosine similarities (lower: sharper)")
    ] = 0.07,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Supervised contrastive loss (SupCon): each anchor against all other rows, its classmates as positives.

    With :math:`z_i = x_i / \lVert x_i \rVert`, :math:`s_{ik} = z_i^\top z_k / \tau`, the
    positives :math:`P(i) = \{p \ne i : y_p = y_i\}` and all other rows
    :math:`A(i) = \{k \ne i\}`,

    .. math::

        \ell_i = -\frac{1}{|P(i)|} \sum_{p \in P(i)}
                 \log \frac{e^{s_{ip}}}{\sum_{k \in A(i)} e^{s_{ik}}}
        \quad (0 \text{ when } P(i) = \varnothing), \qquad
        \text{mean} = \frac{\sum_i \ell_i}{\#\{i : P(i) \ne \varnothing\}}

    Khosla et al.'s :math:`\mathcal{L}^{sup}_{out}` (the mean over positives outside the
    log), as ``pytorch_metric_learning.losses.SupConLoss`` computes it. Unlike
    :func:`nt_xent`, whose denominator holds one positive and the negatives, the
    denominator here holds every other row, the other positives included.

    Differences from pytorch-metric-learning: a batch with positives but no negative
    pair (every label equal) has the loss above, where pml returns 0 (its loss jumps
    to 0 when the last negative leaves the batch); pml's mean skips anchors whose term
    is exactly 0 (only when it underflows), lossfn averages over every anchor with a
    positive; the default temperature is the paper's 0.07 (pml: 0.1). Rows are
    normalized after being divided by their largest entry, finite for any magnitude
    (a zero row stays 0; pml's ``F.normalize`` divides by ``max(||x||, 1e-12)``, the
    same for any row of norm above 1e-12). Half-precision inputs are computed in float32.

    Args:
        embeddings: ``[B, D]`` vectors (any scale).
        labels: integer class labels ``[B]`` of any value (each value a class).
        temperature: :math:`\tau > 0`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_i` per anchor, shape ``[B]`` (0 for an anchor without a
        positive); ``"sum"``: :math:`\sum_i \ell_i`; ``"mean"``: the mean over anchors with
        a positive, a weighted mean of ``"none"`` with weights :math:`[P(i) \ne \varnothing]`
        (0 when no anchor has one). Same dtype as ``embeddings``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> embeddings = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
        >>> labels = torch.tensor([0, 0, 0, 1])  # row 3 has no positive: 0, left out of the mean
        >>> LF.supervised_contrastive(embeddings, labels, temperature=0.5, reduction="none")
        tensor([1.0333, 0.8271, 1.6271, 0.0000])
        >>> LF.supervised_contrastive(embeddings, labels, temperature=0.5)  # the mean over rows 0 to 2
        tensor(1.1625)

    References:
        Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu and Krishnan,
        `Supervised Contrastive Learning <https://arxiv.org/abs/2004.11362>`_, 2020.
        Checked against ``pytorch_metric_learning.losses.SupConLoss`` (values and
        gradients) and a loop over the pairs written from the formula.
    """
    name = "supervised_contrastive"
    check_floating(name, "embeddings", embeddings)
    if embeddings.ndim != 2:
        raise fail(name, "embeddings", "of shape [B, D] (a batch of vectors)", f"shape {shape(embeddings)}")
    batch = embeddings.shape[0]
    check_integer_labels(name, labels, "integer class labels")
    check_device(name, "labels", labels, embeddings, "embeddings")
    if labels.shape != (batch,):
        raise fail(name, "labels", f"integer class labels of shape [{batch}] for embeddings {shape(embeddings)}",
                   f"shape {shape(labels)}")
    z = unit_vectors(cast(embeddings, compute_dtype(embeddings)), 0.0, clip=True)
    scores = (z @ z.T) / temperature
    others = ~torch.eye(batch, dtype=torch.bool, device=embeddings.device)
    positive = (labels.unsqueeze(1) == labels.unsqueeze(0)) & others
    # log Σ_{k≠i} e^{s_ik}; a batch of one has no other row: its row enters as 0, so no
    # gradient meets the log-sum-exp of nothing (its anchor has no positive: term 0)
    masked = torch.where(others, scores, -torch.inf)
    masked = torch.where(others.any(dim=1, keepdim=True), masked, torch.zeros_like(masked))
    surprise = torch.logsumexp(masked, dim=1, keepdim=True) - scores  # -log(e^{s_ik} / Σ_{k≠i} e^{s_ik})
    count = positive.sum(dim=1)
    total = torch.where(positive, surprise, torch.zeros_like(surprise)).sum(dim=1)
    per_anchor = total / torch.where(count > 0, count, torch.ones_like(count))
    return reduce_loss(per_anchor, reduction, name=name, weights=count > 0).to(embeddings.dtype)
