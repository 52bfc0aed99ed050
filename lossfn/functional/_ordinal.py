"""Ordinal regression losses: CORN (conditional ordinal regression) on category outputs."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lossfn.registry import Feature, InputCheck, Reduction, register_loss

from ._common import (
    check_class_indices,
    check_floating,
    check_integer_labels,
    compute_dtype,
    fail,
    keep_where,
    reduce_loss,
    shape,
    unbatched,
    validate_class_range,
)

__all__ = ["corn"]

_CLASS_RANGE = validate_class_range("corn")

#: Why a label equal to the number of columns is out of range, and the way out.
_CONVENTION = (
    "corn takes logits [B, K] for K classes, one column per class (Ludwig's convention; the last column "
    "is unused), so labels lie in [0, K); a largest label equal to the number of columns ({columns}) "
    "suggests coral_pytorch's convention, logits [B, K-1] for K classes (corn_loss(logits, labels, "
    "num_classes=K)): append a zero column, torch.cat([logits, logits.new_zeros(*logits.shape[:-1], 1)], dim=-1)"
)


def _validate(logits: Tensor, labels: Tensor, *inputs: Any, **params: Any) -> InputCheck | None:
    """The module's check: ``validate_class_range("corn")``, whose error explains the logits convention
    when the largest label equals the number of columns (``[B, K-1]`` logits, as coral_pytorch takes them)."""
    check = _CLASS_RANGE(logits, labels, *inputs, **params)
    if check is None:
        return None
    columns = logits.shape[-1]  # [B, K] or one example's [K]

    def judge(bounds: list[int]) -> ValueError | None:
        error = check.judge(bounds)  # bounds: the labels' [min, max]
        if error is None or bounds[1] != columns:
            return error
        return ValueError(f"{error}. {_CONVENTION.format(columns=columns)}")

    return InputCheck(check.facts, judge)


def _predict(logits: Tensor) -> Tensor:
    r"""CORN's prediction rule: the number of tasks whose cumulative probability exceeds 0.5.

    The cumulative probabilities are the running products of the task probabilities,
    :math:`P(y > k) = \prod_{j \le k} \sigma(x_j)`, over the first :math:`K - 1` columns
    of ``[B, K]`` logits (``[K]`` for one example); the rank is
    :math:`\sum_k [P(y > k) > 0.5]`, class indices ``[B]`` (``[]``), int64.
    """
    tasks = logits[..., :-1].to(compute_dtype(logits))
    above = torch.cumprod(torch.sigmoid(tasks), dim=-1) > 0.5
    return above.sum(dim=-1)


@register_loss("corn", [Feature.CATEGORY], validate=_validate, predict=_predict)
def corn(logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""CORN loss: ordinal regression as :math:`K - 1` conditional binary tasks.

    Conditional Ordinal Regression for Neural networks (Shi, Cao and Raschka).
    For ordered classes :math:`0 < 1 < \dots < K - 1`, task :math:`k` predicts
    :math:`P(y > k \mid y > k - 1)` from logit :math:`x_{n,k}`; it is trained only
    on the examples with :math:`y_n \ge k` (the conditional training subset).

    **Logits convention.** lossfn takes Ludwig's convention: ``[B, K]`` logits for
    :math:`K` classes, one column per class, the first :math:`K - 1` being the tasks
    (the last column is unused: its gradient is 0). ``coral_pytorch.losses.corn_loss``
    takes ``[B, K - 1]`` logits with ``num_classes=K``; to call lossfn with those,
    append a zero column: ``corn(torch.cat([logits, logits.new_zeros(len(logits), 1)],
    dim=1), labels)`` gives coral_pytorch's number (see the example). Given ``[B, K - 1]``
    logits without it, ``corn`` computes with :math:`K - 2` tasks.

    With the task mask :math:`m_{n,k} = [y_n \ge k]` and task label
    :math:`t_{n,k} = [y_n > k]`, :math:`k = 0, \dots, K - 2`:

    .. math::

        \ell_n = -\sum_{k=0}^{K-2} m_{n,k} \bigl[t_{n,k} \log \sigma(x_{n,k})
                 + (1 - t_{n,k}) \log(1 - \sigma(x_{n,k}))\bigr]

        \text{mean} = \frac{\sum_n \ell_n}{\sum_n \sum_k m_{n,k}}, \qquad
        \text{sum} = \sum_n \ell_n

    so the mean is over (example, task) pairs, like the reference implementation.
    The masks are multiplicative (no boolean indexing), so the loss works under
    ``vmap``; the log-sigmoids are ``logsigmoid``, finite for any logit.

    Args:
        logits: ``[B, K]`` (``[K]`` for one example); column :math:`k < K - 1` is task :math:`k`.
        labels: class indices ``[B]`` (``[]``; a signed integer dtype) in ``[0, K)``.
            The pure function does not check label values (that would be a host
            sync): a label :math:`\ge K - 1` counts as class :math:`K - 1` and a
            negative one adds no task. The module (``lossfn.nn.Corn``) checks them,
            and its error explains the ``[B, K - 1]`` convention when the largest
            label equals the number of columns.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n`, per example: shape ``[B]`` (a sum over the example's
        :math:`\min(y_n + 1, K - 1)` tasks); ``"mean"``: divided by the number of
        (example, task) pairs, not by :math:`B`; ``"sum"``: :math:`\sum_n \ell_n`.
        Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn, lossfn.functional as LF
        >>> logits = torch.tensor([[2.0, -1.0, 0.5, 0.0], [1.0, 1.0, -2.0, 0.0]])
        >>> labels = torch.tensor([1, 3])
        >>> LF.corn(logits, labels)
        tensor(0.6387)

        The same tasks as coral_pytorch's ``[B, K - 1]`` logits, with a zero column appended:

        >>> coral_logits = logits[:, :-1]
        >>> LF.corn(torch.cat([coral_logits, coral_logits.new_zeros(2, 1)], dim=1), labels)
        tensor(0.6387)

        The predicted class is the number of tasks whose cumulative probability
        :math:`\prod_{j \le k} \sigma(x_{n,j})` exceeds 0.5 (the loss's prediction rule):

        >>> lossfn.get_loss("corn").prediction_rule(logits)
        tensor([1, 2])

    References:
        Shi, Cao and Raschka, `Deep Neural Networks for Rank-Consistent Ordinal
        Regression Based On Conditional Probabilities
        <https://arxiv.org/abs/2111.08851>`_, 2021. Checked against
        ``coral_pytorch.losses.corn_loss`` (``num_classes=K``), the implementation
        Ludwig copies, through stored test vectors.
    """
    name = "corn"
    check_floating(name, "logits", logits)
    logits_in = logits
    logits, labels, one = unbatched(logits, labels, rank=2, probabilities=False)
    if logits.ndim != 2:
        raise fail(name, "logits", "of shape [B, K] (or [K] for one example)", f"shape {shape(logits_in)}")
    check_integer_labels(name, labels, "integer class indices", like=logits)
    check_class_indices(name, logits, labels)
    x = logits[:, :-1].to(compute_dtype(logits))  # K - 1 tasks
    tasks = torch.arange(x.shape[1], device=labels.device)
    y = labels.unsqueeze(1)
    trained = y >= tasks  # the tasks this example trains
    target = (y > tasks).to(x.dtype)
    # -[t log σ(x) + (1 - t) log σ(-x)], each log-sigmoid finite for any logit
    elementwise = -(target * F.logsigmoid(x) + (1 - target) * F.logsigmoid(-x))
    # where, not a product: a NaN logit of a task the example does not train stays out
    per_example = keep_where(trained, elementwise).sum(1)
    pairs = trained.sum(1).to(x.dtype)
    if one:
        per_example, pairs = per_example.squeeze(0), pairs.squeeze(0)
    return reduce_loss(per_example, reduction, name=name, weights=pairs).to(logits.dtype)
