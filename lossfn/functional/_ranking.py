r"""Listwise ranking: the ranking softmax loss (a softmax cross-entropy of item scores against relevance)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lossfn.registry import Feature, InputCheck, Reduction, register_loss

from ._common import cast, check_device, check_floating, check_same_shape, compute_dtype, fail, reduce_loss, shape

__all__ = ["ranking_softmax"]


def _validate(logits: Tensor, labels: Tensor, where: Tensor | None = None, *_: Any, **__: Any) -> InputCheck | None:
    """The module's check: relevance labels are finite and >= 0 at the items kept by ``where`` (NaN fails)."""
    if not isinstance(labels, Tensor) or labels.dtype == torch.bool or labels.is_complex() or labels.numel() == 0:
        return None
    kept = labels
    if isinstance(where, Tensor) and where.dtype == torch.bool and where.shape == labels.shape:
        kept = torch.where(where, labels, torch.zeros_like(labels))  # a padded item's label may be anything
    facts = torch.stack(torch.aminmax(kept)).to(torch.float32 if not kept.is_floating_point() else kept.dtype)

    def judge(bounds: list[float]) -> ValueError | None:
        low, high = bounds
        if 0 <= low and high < float("inf"):  # a NaN fails both
            return None
        return fail("ranking_softmax", "labels", "finite relevance labels >= 0", f"values in [{low:g}, {high:g}]")

    return InputCheck(facts, judge)


@register_loss("ranking_softmax", [Feature.SET, Feature.VECTOR], validate=_validate)
def ranking_softmax(
    logits: Tensor,
    labels: Tensor,
    where: Tensor | None = None,
    *,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Ranking softmax loss: the cross-entropy of the items' softmax against their relevance, per list.

    For a list of item scores :math:`s` and relevance labels :math:`y \ge 0`, over the
    items :math:`K` kept by ``where`` (all when it is None),

    .. math::

        \ell = -\sum_{i \in K} y_i \log \frac{e^{s_i}}{\sum_{j \in K} e^{s_j}}

    optax's ``ranking_softmax_loss``. The labels are not normalized (TF-Ranking's softmax
    loss divides them by their sum: pass ``labels / labels.sum(-1, keepdim=True)`` for its
    number), and optax's per-item ``weights`` multiply them (pass ``labels * weights``).
    An item left out by ``where`` takes no part in the loss, in the softmax or in the
    mean. An item with label 0 costs 0 even when its score is :math:`-\infty` (a mask by
    score; optax: ``nan``).

    Args:
        logits: item scores ``[..., L]`` (``[B, L]``; ``[L]`` for one list).
        labels: relevance of the same shape, >= 0: float, integer (graded relevance)
            or bool (a set feature's multi-hot targets). The module checks the values.
        where: optional boolean mask of the same shape, True for the items to keep.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell` per list, shape ``[...]`` (``[B]``; 0 for a list with no
        kept item); ``"sum"``: their sum; ``"mean"``: their mean over the lists with at
        least one kept item (all lists without ``where``; 0 when there is none), optax's
        mean. Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.ranking_softmax(torch.tensor([2.0, 1.0, 3.0]), torch.tensor([1.0, 0.0, 0.0]))
        tensor(1.4076)
        >>> scores = torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.5, 1.5]])
        >>> relevance = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        >>> LF.ranking_softmax(scores, relevance, torch.tensor([[True, True, False], [True, True, True]]))
        tensor(0.4968)

    References:
        Cao, Qin, Liu, Tsai and Li, `Learning to Rank: From Pairwise Approach to Listwise
        Approach <https://doi.org/10.1145/1273496.1273513>`_, 2007 (ListNet). Checked against
        ``optax.losses.ranking_softmax_loss`` through stored vectors (values and gradients)
        and, without ``where``, against ``torch.nn.functional.cross_entropy`` with
        probability targets (the same formula: a twin, every reduction).
    """
    name = "ranking_softmax"
    check_floating(name, "logits", logits)
    if logits.ndim == 0:
        raise fail(name, "logits", "of shape [..., L] (item scores on the last dimension)", f"shape {shape(logits)}")
    check_same_shape(name, logits, labels)
    if where is not None:
        if not isinstance(where, Tensor) or where.dtype != torch.bool or where.shape != logits.shape:
            got = f"dtype {where.dtype} and shape {shape(where)}" if isinstance(where, Tensor) else type(where).__name__
            raise fail(name, "where", f"None or a boolean mask of the logits' shape {shape(logits)}", got)
        check_device(name, "where", where, logits, "logits")
    dtype = compute_dtype(logits)
    scores, relevance = cast(logits, dtype), cast(labels, dtype)
    kept = torch.ones_like(scores, dtype=torch.bool) if where is None else where
    masked = torch.where(kept, scores, -torch.inf)
    any_kept = kept.any(dim=-1, keepdim=True)
    # a list with nothing kept enters its log-sum-exp as 0s: no gradient meets log Σ of nothing
    masked = torch.where(any_kept, masked, torch.zeros_like(masked))
    surprise = torch.logsumexp(masked, dim=-1, keepdim=True) - scores  # -log softmax
    # left out: the masked items, and label-0 items of score -inf (0 · inf); where twice keeps
    # their nan out of the value and the gradient
    counted = kept & ((relevance != 0) | torch.isfinite(surprise))
    surprise = torch.where(counted, surprise, torch.zeros_like(surprise))
    terms = torch.where(counted, relevance * surprise, torch.zeros_like(surprise))
    per_list = terms.sum(dim=-1)
    weights = None if where is None else any_kept.squeeze(-1)
    return reduce_loss(per_list, reduction, name=name, weights=weights).to(logits.dtype)
