"""Anomaly losses on anomaly scores: Deep SVDD, Deep SAD and DROCC (Ludwig's anomaly output feature).

Each takes ``anomaly_score``, the squared distance :math:`d = \\lVert z - c \\rVert^2` of
an embedding to the hypersphere centre (what Ludwig's anomaly decoder outputs; the
registry records ``kind="anomaly_score"``), elementwise: any shape, ``[B]`` in Ludwig.
``labels``, of the scores' shape, follow Ludwig's anomaly feature: 1 a labelled anomaly,
0 normal, -1 unlabelled (integer, floating or boolean). Deep SAD reads them; Deep SVDD and
DROCC take them only so that every anomaly loss has the same inputs.

The modules (``lossfn.nn.DeepSvdd``, ...) check what the pure functions cannot without a
host sync: scores are non-negative (a squared distance; NaN is left to the loss) and
labels, when given, lie in {-1, 0, 1}. Everything is computed in float32 for half inputs.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, InputCheck, Reduction, register_loss

from ._common import cast, check_floating, check_same_shape, compute_dtype, fail, reduce_loss

__all__ = ["deep_sad", "deep_svdd", "drocc"]

#: Ludwig's guard in Deep SAD's inverse distance, ``eta / (d + eps)``.
SAD_EPSILON = 1e-6
#: Ludwig's floor on the standard deviation of the scores in DROCC's noise scale.
DROCC_MIN_STD = 1e-6
#: The labels of Ludwig's anomaly feature.
LABELS = (-1, 0, 1)
_LABELS_TEXT = "anomaly labels in {-1, 0, 1} (1: a labelled anomaly, 0: normal, -1: unlabelled, as Ludwig's)"
_NAMES = ("anomaly_score", "labels")


def _inputs(name: str, anomaly_score: Any, labels: Any, *, required: bool) -> Tensor:
    """Checked scores (any shape) in the compute dtype; labels, if given, of their shape."""
    check_floating(name, "anomaly_score", anomaly_score)
    if labels is not None or required:
        check_same_shape(name, anomaly_score, labels, names=_NAMES)
    return cast(anomaly_score, compute_dtype(anomaly_score))


def _scalar(value: float | Tensor, like: Tensor) -> Tensor:
    """A hyperparameter (a number or a 0-d tensor) as a tensor of ``like``'s dtype and device."""
    if isinstance(value, Tensor):
        return value.to(dtype=like.dtype, device=like.device)
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


def quantile(values: Tensor, q: Tensor) -> Tensor:
    """``torch.quantile(values, q)`` (linear interpolation) of all elements, by sort and gather.

    ``q`` is a 0-d tensor in [0, 1]. Unlike ``torch.quantile`` this has a batching rule
    (sort and gather have one) and is 0 for no values; the gradient with respect to
    ``q`` is the slope between the two neighbouring order statistics. A NaN among the
    values sorts last (``torch.quantile`` returns NaN then; the losses give NaN either way).
    """
    count = values.numel()  # static, per example under vmap
    if count == 0:
        return values.new_zeros(())
    ordered = values.reshape(-1).sort().values
    rank = q.clamp(0, 1) * (count - 1)
    below = rank.floor()
    # torch's own steps: the value below and the one above the rank, then lerp by the fraction
    low = ordered.gather(0, below.long().reshape(1)).reshape(())
    high = ordered.gather(0, rank.ceil().long().reshape(1)).reshape(())
    return torch.lerp(low, high, rank - below)


def _spread(values: Tensor) -> Tensor:
    """The unbiased standard deviation of all elements (``torch.std``), 0 for fewer than two.

    Taken of ``values / m`` with ``m = max |values|`` and multiplied back by ``m``, so that
    scores of 1e30 give 1e30 in float32 rather than the root of an overflowed square.
    """
    count = values.numel()
    if count < 2:  # torch.std: nan (and a warning) for one value
        return values.new_zeros(())
    scale = values.abs().amax()
    scale = torch.where((scale > 0) & torch.isfinite(scale), scale, torch.ones_like(scale))
    unit = values / scale
    return scale * ((unit - unit.mean()).square().sum() / (count - 1)).sqrt()


def _validator(name: str) -> Any:
    """The modules' value check of ``name``: scores >= 0 (NaN aside), labels (if given) in {-1, 0, 1}.

    Facts: the smallest non-NaN score, then (with labels) the number of labels outside
    the set and the labels' smallest and largest values. Inputs of the wrong kind,
    shape or device give no check: the pure function says what is wrong.
    """

    def judge(found: list[float]) -> ValueError | None:
        if len(found) > 1 and found[1] > 0:
            bad = int(found[1])
            return fail(
                name, "labels", _LABELS_TEXT,
                f"{bad} value{'s' if bad > 1 else ''} outside them (labels in [{found[2]:g}, {found[3]:g}])",
            )
        if found[0] < 0:
            return fail(name, "anomaly_score", "non-negative (squared distances)", f"a minimum of {found[0]:g}")
        return None

    def validate(anomaly_score: Any, labels: Any = None, *_: Any, **__: Any) -> InputCheck | None:
        if not isinstance(anomaly_score, Tensor) or not anomaly_score.is_floating_point():
            return None
        if anomaly_score.numel() == 0:
            return None
        scores = anomaly_score.detach()
        facts = [torch.where(torch.isnan(scores), math.inf, scores).amin().double()]
        if labels is not None:
            if not isinstance(labels, Tensor) or labels.is_complex() or labels.shape != scores.shape:
                return None
            if labels.device != scores.device:
                return None
            valid = (labels == LABELS[0]) | (labels == LABELS[1]) | (labels == LABELS[2])  # NaN is none of them
            values = labels.detach().double()
            facts += [(~valid).sum().double(), values.amin(), values.amax()]
        return InputCheck(torch.stack(facts), judge)

    return validate


@register_loss("deep_svdd", [Feature.ANOMALY], kind="anomaly_score", validate=_validator("deep_svdd"))
def deep_svdd(
    anomaly_score: Tensor,
    labels: Tensor | None = None,
    *,
    nu: Annotated[
        float,
        Meta(ge=0.0, le=1.0, description="fraction of examples allowed outside the sphere; 0: hard boundary"),
    ] = 0.1,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Deep SVDD: pull the anomaly scores (squared distances to the centre) into a small sphere.

    Deep Support Vector Data Description (Ruff et al.). With the hard boundary
    (:math:`\nu = 0`) every score is pulled towards the centre; with the soft
    boundary (:math:`\nu > 0`) the squared radius :math:`R^2` is the
    :math:`(1 - \nu)` quantile of the batch's scores, held constant (no gradient
    through it), and only the fraction :math:`\nu` of scores beyond it is penalized,
    by :math:`1/\nu` times their excess:

    .. math::

        R^2 = \max\bigl(0,\ Q_{1-\nu}(d)\bigr), \qquad
        \ell_i = \begin{cases} d_i & \nu = 0 \\
                 R^2 + \frac{1}{\nu} \max(0,\ d_i - R^2) & \nu > 0 \end{cases}

        \text{mean} = \frac1N \sum_i \ell_i = R^2 + \frac{1}{\nu} \frac1N \sum_i \max(0,\ d_i - R^2)

    where :math:`Q_q` is ``torch.quantile``'s linear interpolation over all :math:`N`
    scores, computed by a sort and a gather (so it batches under ``vmap``; ``nu`` may be
    a 0-d tensor, and ``nu = 0`` then selects the hard boundary with a ``where``, with
    no division by 0 in any gradient). The mean is Ludwig's number.

    **Batch-coupled.** :math:`R^2` depends on the whole batch: ``"none"`` returns the
    per-element :math:`\ell_i` above, whose mean is the loss; a sub-batch has its own
    :math:`R^2`, so the mean of a split batch (``lossfn.distributed.mean`` across
    ranks) is not the mean of the whole.

    **Differences from Ludwig.** Ludwig's schema refuses ``nu = 0`` (an exclusive
    minimum) though its description and its module offer it as the hard boundary;
    lossfn takes ``nu`` in [0, 1]. An empty batch gives 0 (Ludwig's ``torch.quantile``
    raises on it, and its hard-boundary mean is ``nan``). Half-precision scores are
    computed in float32.

    Args:
        anomaly_score: squared distances :math:`d \ge 0`, any shape (``[B]`` in Ludwig),
            floating point. The module refuses negative scores.
        labels: optional, the scores' shape; unused (Ludwig's anomaly labels, checked
            by the module to lie in {-1, 0, 1} when given).
        nu: :math:`\nu \in [0, 1]`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the scores' shape); ``"sum"``:
        :math:`\sum_i \ell_i`; ``"mean"``: their mean (0 for an empty batch). Same dtype
        as ``anomaly_score``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> scores = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0])
        >>> LF.deep_svdd(scores)  # R^2 = 0.9 quantile = 6.4; 6.4 + 10 * mean([0, 0, 0, 0, 1.6])
        tensor(9.6000)
        >>> LF.deep_svdd(scores, nu=0.0)  # the hard boundary: the mean score
        tensor(3.1000)
        >>> LF.deep_svdd(scores, reduction="none")
        tensor([ 6.4000,  6.4000,  6.4000,  6.4000, 22.4000])

    References:
        Ruff et al., `Deep One-Class Classification
        <https://proceedings.mlr.press/v80/ruff18a.html>`_, ICML 2018. Checked against
        Ludwig's formula (``DeepSVDDLoss``) written out with ``torch.quantile``; the
        quantile against ``torch.quantile``.
    """
    name = "deep_svdd"
    x = _inputs(name, anomaly_score, labels, required=False)
    if not isinstance(nu, Tensor) and nu == 0:  # a Python number: the hard boundary at once
        per = x
    else:
        nu_t = _scalar(nu, x)
        # 1 - nu in Python for a number, as Ludwig computes it, then the quantile of the scores' dtype
        q = 1 - nu_t if isinstance(nu, Tensor) else _scalar(1.0 - nu, x)
        radius = quantile(x.detach(), q).clamp_min(0)
        hard = nu_t == 0
        inverse = 1 / torch.where(hard, torch.ones_like(nu_t), nu_t)  # never 1/0, in value or gradient
        # clamp (not relu), as Ludwig: a score on the radius gets the gradient 1/nu
        soft = radius + inverse * (x - radius).clamp_min(0)
        per = torch.where(hard, x, soft)
    return reduce_loss(per, reduction, name=name).to(anomaly_score.dtype)


@register_loss("deep_sad", [Feature.ANOMALY], kind="anomaly_score", validate=_validator("deep_sad"))
def deep_sad(
    anomaly_score: Tensor,
    labels: Tensor,
    *,
    eta: Annotated[float, Meta(ge=0.0, description="weight of the labelled anomalies' inverse distance")] = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Deep SAD: pull normal and unlabelled scores in, push labelled anomalies out.

    Deep Semi-supervised Anomaly Detection (Ruff et al.) on squared distances
    :math:`d_i` to the centre: a labelled anomaly (label 1) pays the inverse of its
    distance, weighted by :math:`\eta`; every other example pays its distance:

    .. math::

        \ell_i = \begin{cases} \dfrac{\eta}{d_i + \epsilon} & y_i = 1 \\
                 d_i & \text{otherwise} \end{cases}, \qquad \epsilon = 10^{-6}

        \text{mean} = \frac1N \sum_i \ell_i

    (the mean over all examples, unlabelled ones included, as Ludwig's).

    **Labels.** lossfn takes Ludwig's convention: 1 a labelled anomaly, 0 normal, -1
    unlabelled (the paper's is +1 labelled normal, -1 labelled anomaly, 0 unlabelled:
    map those with ``torch.where(y == -1, 1, 0)``). The pure function, as Ludwig's,
    counts every label other than 1 as normal; the module refuses labels outside
    {-1, 0, 1} (and NaN), as it refuses negative scores.

    **Differences from Ludwig.** Half-precision scores are computed in float32 (in
    float16, :math:`d + 10^{-6}` of a zero score is a subnormal and
    :math:`\eta / (d + \epsilon)` overflows); an empty batch gives 0 (Ludwig: ``nan``).

    Args:
        anomaly_score: squared distances :math:`d \ge 0`, any shape (``[B]`` in Ludwig),
            floating point. The module refuses negative scores.
        labels: the scores' shape: 1 for a labelled anomaly, 0 normal, -1 unlabelled
            (integer, floating or boolean: ``True`` is 1).
        eta: :math:`\eta \ge 0`, a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the scores' shape); ``"sum"``:
        :math:`\sum_i \ell_i`; ``"mean"``: their mean (0 for an empty batch). Same dtype
        as ``anomaly_score``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> scores = torch.tensor([0.5, 2.0, 0.25, 3.0])
        >>> labels = torch.tensor([0, 1, -1, 1])
        >>> LF.deep_sad(scores, labels, reduction="none")
        tensor([0.5000, 0.5000, 0.2500, 0.3333])
        >>> LF.deep_sad(scores, labels)
        tensor(0.3958)

    References:
        Ruff et al., `Deep Semi-Supervised Anomaly Detection
        <https://openreview.net/forum?id=HkgH0TEYwH>`_, ICLR 2020. Checked against
        Ludwig's formula (``DeepSADLoss``) written out.
    """
    name = "deep_sad"
    x = _inputs(name, anomaly_score, labels, required=True)
    anomaly = labels == 1
    # where() twice: an unselected 1/(d + eps) never reaches a gradient
    inverse = _scalar(eta, x) / torch.where(anomaly, x + SAD_EPSILON, torch.ones_like(x))
    per = torch.where(anomaly, inverse, x)
    return reduce_loss(per, reduction, name=name).to(anomaly_score.dtype)


@register_loss("drocc", [Feature.ANOMALY], kind="anomaly_score", validate=_validator("drocc"))
def drocc(
    anomaly_score: Tensor,
    labels: Tensor | None = None,
    noise: Tensor | None = None,
    *,
    perturbation_strength: Annotated[
        float, Meta(ge=0.0, description="scale s of the score perturbations and weight of their hinge")
    ] = 0.1,
    num_perturbation_steps: Annotated[
        int, Meta(ge=1, description="accepted for Ludwig configs; unused (Ludwig does not read it either)")
    ] = 5,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""DROCC in Ludwig's score-space form: the mean score plus a hinge on perturbed scores.

    Ludwig's regularizer against hypersphere collapse, after Goyal et al.: each score
    is compared with a randomly perturbed copy of itself, held constant,

    .. math::

        \tilde d_i = \operatorname{sg}\bigl[d_i + s \max(\sigma, 10^{-6})\, \xi_i\bigr],
        \qquad \xi_i \sim \mathcal N(0, 1)

        \ell_i = d_i + s \max(0,\ d_i - \tilde d_i), \qquad
        \text{mean} = \frac1N \sum_i d_i + s\, \frac1N \sum_i \max(0,\ d_i - \tilde d_i)

    with :math:`s` = ``perturbation_strength`` and :math:`\sigma` the unbiased standard
    deviation of the batch's scores (``torch.std``), both held constant as in Ludwig
    (its perturbation is computed under ``no_grad``). The gradient of the hinge is 1
    where :math:`\xi_i \le 0`. This is not the adversarial search of the DROCC paper:
    ``num_perturbation_steps`` is accepted so Ludwig configs decode, and has no effect
    (Ludwig never reads it).

    **Randomness.** Without ``noise`` the function draws :math:`\xi` with
    ``torch.randn_like(anomaly_score)`` from torch's default generator, as Ludwig
    does: ``torch.manual_seed`` makes it repeatable (the same numbers as Ludwig's after
    the same seed), ``vmap`` needs ``randomness="different"`` (or ``"same"``), and so
    the call is not pure. Under ``torch.compile(fullgraph=True)`` it compiles, but the
    draws come from the compiler's generator (repeatable after a seed, not the eager
    numbers; ``torch._inductor.config.fallback_random = True`` gives those). Pass
    ``noise`` (standard normal draws of the scores' shape) for full control: the
    function is then pure and deterministic. Gradients flow to ``noise`` (through
    :math:`\tilde d`, a gradient of no use in training), none to the scores or to
    :math:`s` through :math:`\tilde d`.

    **Batch-coupled.** :math:`\sigma` is the batch's: ``"none"`` returns the
    per-element :math:`\ell_i`, whose mean is the loss.

    **Differences from Ludwig.** For fewer than two scores :math:`\sigma = 0` (floored
    to :math:`10^{-6}`), where Ludwig's ``torch.std`` is ``nan`` and so is its loss;
    :math:`\sigma` is computed on the scores divided by their largest magnitude (the
    same number, finite for scores of 1e30 in float32); an empty batch gives 0 (Ludwig:
    ``nan``); half-precision scores are computed in float32 (the draws are made in the
    scores' dtype, as Ludwig's).

    Args:
        anomaly_score: squared distances :math:`d \ge 0`, any shape (``[B]`` in Ludwig),
            floating point. The module refuses negative scores.
        labels: optional, the scores' shape; unused (Ludwig's anomaly labels, checked
            by the module to lie in {-1, 0, 1} when given).
        noise: optional standard normal draws :math:`\xi` of the scores' shape; drawn
            from the default generator when ``None``.
        perturbation_strength: :math:`s \ge 0`, a number or a 0-d tensor.
        num_perturbation_steps: unused (see above), an integer >= 1.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the scores' shape); ``"sum"``:
        :math:`\sum_i \ell_i`; ``"mean"``: their mean (0 for an empty batch). Same dtype
        as ``anomaly_score``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> scores = torch.tensor([1.0, 2.0, 3.0, 4.0])
        >>> noise = torch.tensor([-1.0, 0.5, -2.0, 1.0])
        >>> LF.drocc(scores, None, noise, perturbation_strength=0.5)  # 2.5 + 0.5 * mean(0.5 σ [1, 0, 2, 0])
        tensor(2.7421)
        >>> _ = torch.manual_seed(0)
        >>> LF.drocc(scores)  # noise from the default generator
        tensor(2.5080)

    References:
        Goyal et al., `DROCC: Deep Robust One-Class Classification
        <https://proceedings.mlr.press/v119/goyal20c.html>`_, ICML 2020, in the form
        Ludwig implements (``DROCCLoss``), checked against Ludwig's formula written out
        with ``torch.std`` and, without ``noise``, against its draws after the same seed.
    """
    name = "drocc"
    x = _inputs(name, anomaly_score, labels, required=False)
    if noise is None:
        draws = torch.randn_like(anomaly_score)  # in the scores' dtype, as Ludwig draws
    else:
        check_floating(name, "noise", noise)
        check_same_shape(name, anomaly_score, noise, names=("anomaly_score", "noise"))
        draws = noise
    strength = _scalar(perturbation_strength, x)
    scores = x.detach()
    scale = strength.detach() * _spread(scores).clamp_min(DROCC_MIN_STD)
    perturbed = scores + scale * cast(draws, x.dtype)
    # clamp (not relu), as Ludwig: the gradient is 1 where the score equals its perturbed copy
    per = x + strength * (x - perturbed).clamp_min(0)
    return reduce_loss(per, reduction, name=name).to(anomaly_score.dtype)
