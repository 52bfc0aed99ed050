"""Cases for the anomaly losses: Deep SVDD, Deep SAD and DROCC on anomaly scores.

Each reference is Ludwig 0.17.8's formula (``ludwig/modules/loss_modules.py``:
``DeepSVDDLoss``, ``DeepSADLoss``, ``DROCCLoss``) written out here with
``torch.quantile`` and ``torch.std``, extended to ``"none"``/``"sum"`` by the
per-element decomposition lossfn documents (its mean is Ludwig's number). The
inputs are those of Ludwig's anomaly feature: squared distances ``[B]`` (here kept
away from 0, so Deep SAD's inverse stays moderate in half precision) and labels in
{-1, 0, 1} with every value present; DROCC's case passes its ``noise``, so every
generic check is deterministic.
"""

from __future__ import annotations

import torch

from . import Case, elementwise, reduce_like_torch as _reduce


def scores_and_labels(batch: int, dtype: torch.dtype, generator: torch.Generator):
    """Squared distances of 3-d embeddings to the centre (plus 0.25) and labels cycling -1, 0, 1."""
    scores = (torch.randn(batch, 3, generator=generator) ** 2).sum(1) + 0.25
    labels = (torch.arange(batch) % 3 - 1)[torch.randperm(batch, generator=generator)]
    return scores.to(dtype), labels


def with_noise(batch: int, dtype: torch.dtype, generator: torch.Generator):
    scores, labels = scores_and_labels(batch, dtype, generator)
    return scores, labels, torch.randn(batch, generator=generator).to(dtype)


def deep_svdd_reference(scores, labels=None, *, reduction="mean", nu=0.1):
    if nu == 0:  # Ludwig's hard boundary
        return _reduce(scores, reduction)
    radius = torch.quantile(scores.detach(), 1.0 - nu).clamp(min=0.0)
    per = radius + (1.0 / nu) * torch.clamp(scores - radius, min=0.0)
    return _reduce(per, reduction)


def deep_sad_reference(scores, labels, *, reduction="mean", eta=1.0):
    is_anomaly = (labels.float() == 1).to(scores.dtype)
    return _reduce(scores * (1.0 - is_anomaly) + eta / (scores + 1e-6) * is_anomaly, reduction)


def drocc_reference(scores, labels=None, noise=None, *, reduction="mean", perturbation_strength=0.1, **_):
    with torch.no_grad():
        scale = perturbation_strength * scores.detach().std().clamp(min=1e-6)
        perturbed = scores.detach() + scale * noise
    return _reduce(scores + perturbation_strength * torch.clamp(scores - perturbed, min=0.0), reduction)


CASES = [
    Case(
        "deep_svdd",
        scores_and_labels,
        params=({}, {"nu": 0.0}, {"nu": 1.0}, {"nu": 0.3}),
        reference=deep_svdd_reference,
        none_shape=elementwise,
        kind="anomaly_score",
    ),
    Case(
        "deep_sad",
        scores_and_labels,
        params=({}, {"eta": 0.0}, {"eta": 2.5}),
        reference=deep_sad_reference,
        none_shape=elementwise,
        kind="anomaly_score",
    ),
    Case(
        "drocc",
        with_noise,
        params=({}, {"perturbation_strength": 0.0}, {"perturbation_strength": 0.5, "num_perturbation_steps": 1}),
        reference=drocc_reference,
        none_shape=elementwise,
        kind="anomaly_score",
    ),
]
