"""Full-batch training of the per-seed networks with loss modules from ``lossfn.build``.

All label conditions and seeds train at once: ``G`` groups (conditions) of ``S``
networks (seeds) are the ``G * S`` copies of one :class:`Ensemble`, and each
group's loss module scores its own copies. Groups that share a module are scored
in one call. The objective is the sum over copies of each copy's mean loss, so
no gradient crosses from one copy to another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .model import Ensemble

__all__ = ["Predict", "accuracy", "argmax", "fit", "per_copy_loss"]


def per_copy_loss(loss: nn.Module, logits: Tensor, labels: Tensor) -> Tensor:
    """Mean loss of each copy ``[K]``, from logits ``[K, N, C]`` and labels ``[K, N]``.

    ``loss`` is a module built with ``reduction="none"``: the copies are flattened
    into one batch, so one call of the loss serves all of them.
    """
    copies, n = labels.shape
    values = loss(logits.flatten(0, 1), labels.flatten())
    if values.shape != (copies * n,):
        raise ValueError(
            f"{type(loss).__name__} returned shape {tuple(values.shape)} for {copies * n} examples; "
            "the demo needs one loss per example (a classification loss with reduction='none')"
        )
    return values.view(copies, n).mean(dim=1)


def _groups(losses: Sequence[nn.Module]) -> list[tuple[nn.Module, list[int]]]:
    shared: dict[int, tuple[nn.Module, list[int]]] = {}
    for g, module in enumerate(losses):
        shared.setdefault(id(module), (module, []))[1].append(g)
    return list(shared.values())


def fit(
    model: Ensemble,
    x: Tensor,
    labels: Tensor,
    losses: Sequence[nn.Module],
    *,
    epochs: int,
    lr: float = 0.01,
    on_epoch: Callable[[], None] | None = None,
) -> Tensor:
    """Train ``model`` (``G * S`` copies, group-major) on points ``x [S, N, 2]`` and ``labels [G, S, N]``.

    ``losses[g]`` trains group ``g``; the points are shared by all groups. Full
    batch, Adam. Returns the final mean loss of every copy ``[G, S]``.
    """
    groups, seeds, n = labels.shape
    if len(losses) != groups or len(model.seeds) != groups * seeds:
        raise ValueError(f"{len(losses)} losses and {len(model.seeds)} networks for labels of shape {tuple(labels.shape)}")
    inputs = x.expand(groups, *x.shape).reshape(groups * seeds, n, x.shape[-1])
    scorers = _groups(losses)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    last = torch.full((groups, seeds), float("nan"))
    for _ in range(epochs):
        optimizer.zero_grad()
        logits = model(inputs).view(groups, seeds, n, -1)
        last = torch.empty(groups, seeds)
        total = logits.new_zeros(())
        for module, index in scorers:
            chosen = index if len(index) < groups else slice(None)
            values = per_copy_loss(module, logits[chosen].flatten(0, 1), labels[chosen].flatten(0, 1))
            total = total + values.sum()
            last[chosen] = values.detach().view(-1, seeds)
        total.backward()
        optimizer.step()
        if on_epoch is not None:
            on_epoch()
    return last


Predict = Callable[[Tensor], Tensor]
"""A loss's prediction rule: logits ``[B, C]`` -> class indices ``[B]`` (``LossSpec.prediction_rule``)."""


def argmax(logits: Tensor) -> Tensor:
    """The default prediction rule: the class of the largest logit."""
    return logits.argmax(dim=-1)


@torch.no_grad()
def accuracy(
    model: Ensemble, x: Tensor, labels: Tensor, predict: Predict | Sequence[Predict | None] | None = None
) -> Tensor:
    """Fraction of ``labels [S, M]`` that each copy predicts right ``[G, S]`` (points ``x [S, M, 2]``).

    ``predict`` decodes the logits into classes the way the loss that trained the
    copies does (``lossfn.get_loss(name).prediction_rule``: argmax for most losses,
    the rank rule for ``corn``): one rule for every group, or one per group
    (``None``: argmax).
    """
    seeds, m = labels.shape
    groups = len(model.seeds) // seeds
    inputs = x.expand(groups, *x.shape).reshape(groups * seeds, m, x.shape[-1])
    logits = model(inputs).view(groups, seeds * m, -1)
    rules = list(predict) if isinstance(predict, Sequence) else [predict] * groups
    if len(rules) != groups:
        raise ValueError(f"{len(rules)} prediction rules for {groups} groups of copies")
    predicted = torch.stack([(rule or argmax)(logits[g]) for g, rule in enumerate(rules)]).view(groups, seeds, m)
    return (predicted == labels).float().mean(dim=-1)
