"""Cases for the extra regression losses: smooth L1, log-cosh, Barron's general robust loss,
quantile (pinball), Poisson and Gaussian negative log-likelihoods.

References, each independent of lossfn: torch.nn.functional (``smooth_l1_loss``,
``poisson_nll_loss``, ``gaussian_nll_loss``, also as twins for every reduction),
``log(cosh(d))`` in float64, Barron's formula written out with its limits as Python
branches, and the pinball loss as ``max(τ e, (τ - 1) e)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Case, Twin, elementwise, regression, reduce_like_torch as _reduce


# -- smooth L1 ------------------------------------------------------------------------------------


def pair(*shape: int):
    def make(dtype, generator):
        first = torch.randn(shape, generator=generator, dtype=dtype)
        return first, torch.randn(shape, generator=generator, dtype=dtype)

    return make


def _smooth_l1_torch(beta=None):
    extra = {} if beta is None else {"beta": beta}
    return lambda x, y, reduction: F.smooth_l1_loss(x, y, reduction=reduction, **extra)


SMOOTH_L1_TWINS = tuple(
    Twin(f"{list(shape)}", pair(*shape), _smooth_l1_torch()) for shape in [(6,), (6, 3), (4, 3, 2), (), (0, 3)]
) + (
    Twin("[6, 3] beta=0.5", pair(6, 3), _smooth_l1_torch(0.5), {"beta": 0.5}),
    Twin("[6, 3] beta=0 (l1)", pair(6, 3), _smooth_l1_torch(0.0), {"beta": 0.0}),
    Twin("[4, 3, 2] beta=3", pair(4, 3, 2), _smooth_l1_torch(3.0), {"beta": 3.0}),
)


# -- Barron -----------------------------------------------------------------------------------------


def barron_reference(x, y, *, reduction="mean", alpha=1.0, scale=1.0):
    """Barron's rho written out, its limits at 2 and 0 as Python branches (float64 inputs)."""
    z = (x - y) / scale
    if alpha == 2:
        loss = 0.5 * z**2
    elif alpha == 0:
        loss = torch.log(0.5 * z**2 + 1)
    else:
        b = abs(alpha - 2)
        loss = b / alpha * ((z**2 / b + 1) ** (alpha / 2) - 1)
    return _reduce(loss, reduction)


# -- quantile -----------------------------------------------------------------------------------------


def quantile_inputs(count: int):
    """Predictions ``[B, Q]`` and targets ``[B]`` for ``Q = count`` quantile levels."""

    def make(batch, dtype, generator):
        return (
            torch.randn(batch, count, generator=generator).to(dtype),
            torch.randn(batch, generator=generator).to(dtype),
        )

    return make


def quantile_reference(x, y, *, reduction="mean", quantiles=None):
    levels = torch.tensor([0.5] if quantiles is None else quantiles, dtype=x.dtype)
    if x.shape != y.shape:
        y = y[..., None]
    e = y - x
    return _reduce(torch.maximum(levels * e, (levels - 1) * e), reduction)


# -- Poisson ------------------------------------------------------------------------------------------


def poisson_inputs(batch, dtype, generator):
    """Positive predictions (rates, or log-rates) and counts 0..5 as floats (0, 1 and > 1: both Stirling sides)."""
    rates = torch.exp(0.5 * torch.randn(batch, 3, generator=generator))
    counts = torch.randint(0, 6, (batch, 3), generator=generator)
    return rates.to(dtype), counts.to(dtype)


def poisson_reference(x, y, *, reduction="mean", log_input=True, full=False, eps=1e-8):
    return F.poisson_nll_loss(x, y, log_input=log_input, full=full, eps=eps, reduction=reduction)


def _poisson_pair(*shape):
    def make(dtype, generator):
        rates = torch.exp(0.5 * torch.randn(shape, generator=generator, dtype=dtype))
        counts = torch.randint(0, 6, shape, generator=generator).to(dtype)
        return rates, counts

    return make


def _poisson_torch(**params):
    return lambda x, y, reduction: F.poisson_nll_loss(x, y, reduction=reduction, **params)


POISSON_TWINS = tuple(
    Twin(f"{list(shape)} {params}", _poisson_pair(*shape), _poisson_torch(**params), params)
    for shape in [(6,), (4, 3, 2), (), (0, 3)]
    for params in [{}, {"log_input": False}, {"full": True}, {"log_input": False, "full": True, "eps": 0.5}]
)


# -- Gaussian -----------------------------------------------------------------------------------------


def gaussian_inputs(batch, dtype, generator):
    """Means ``[B, 3]``, targets, and variances in (0.05, 2.05) (some below an eps of 0.5)."""
    mean = torch.randn(batch, 3, generator=generator)
    target = torch.randn(batch, 3, generator=generator)
    variance = 2 * torch.rand(batch, 3, generator=generator) + 0.05
    return mean.to(dtype), target.to(dtype), variance.to(dtype)


def gaussian_reference(x, y, var, *, reduction="mean", full=False, eps=1e-6):
    return F.gaussian_nll_loss(x, y, var, full=full, eps=eps, reduction=reduction)


def _gaussian_triple(shape, var_shape):
    def make(dtype, generator):
        mean = torch.randn(shape, generator=generator, dtype=dtype)
        target = torch.randn(shape, generator=generator, dtype=dtype)
        var = torch.rand(var_shape, generator=generator, dtype=dtype) + 0.01
        return mean, target, var

    return make


def _gaussian_torch(**params):
    return lambda x, y, var, reduction: F.gaussian_nll_loss(x, y, var, reduction=reduction, **params)


GAUSSIAN_SHAPES = [
    ((6, 3), (6, 3)),  # heteroscedastic
    ((6, 3), (6,)),  # one variance per row: unsqueezed
    ((6, 3), (6, 1)),  # last dimension 1: broadcast
    ((4, 3, 5, 5), (4, 1, 5, 5)),  # one dimension of size 1: broadcast
    ((6,), ()),  # number outputs, one variance
    ((), ()),
    ((0, 3), (0, 3)),
]
GAUSSIAN_TWINS = tuple(
    Twin(f"{list(shape)} var {list(var_shape)} {params}", _gaussian_triple(shape, var_shape), _gaussian_torch(**params),
         params)
    for shape, var_shape in GAUSSIAN_SHAPES
    for params in [{}, {"full": True, "eps": 0.3}]
)


CASES = [
    Case(
        "smooth_l1",
        regression(3),
        params=({}, {"beta": 0.5}, {"beta": 0.0}, {"beta": 2.0}),
        reference=lambda x, y, reduction="mean", beta=1.0: F.smooth_l1_loss(x, y, reduction=reduction, beta=beta),
        none_shape=elementwise,
        twins=SMOOTH_L1_TWINS,
    ),
    Case(
        "log_cosh",
        regression(3),
        reference=lambda x, y, reduction="mean": _reduce(torch.log(torch.cosh(x - y)), reduction),
        none_shape=elementwise,
    ),
    Case(
        "general_robust",
        regression(3),
        params=(
            {},
            {"alpha": 2.0},
            {"alpha": 0.0},
            {"alpha": -2.0},
            {"alpha": 0.5, "scale": 0.5},
            {"alpha": 1.5, "scale": 2.0},
        ),
        reference=barron_reference,
        none_shape=elementwise,
    ),
    Case(
        "quantile",
        quantile_inputs(1),
        params=({}, {"quantiles": [0.75]}, {"quantiles": [0.125]}),  # exact in a float32 buffer
        reference=quantile_reference,
        none_shape=elementwise,
        classes=quantile_inputs,
    ),
    Case(
        "poisson_nll",
        poisson_inputs,
        params=({}, {"log_input": False}, {"full": True}, {"log_input": False, "full": True, "eps": 0.1}),
        reference=poisson_reference,
        extreme=50.0,  # exp(x) of a log-rate: exp(1e4) is inf in every dtype, as the true value is
        none_shape=elementwise,
        twins=POISSON_TWINS,
        nonnegative=False,  # -log p without the log(y!) term, as torch's: negative where p(y) > 1/y!
        skip={
            "tensor_hyperparameters": "eps acts only with log_input=False, and the generic test varies it at the "
            "default log_input=True; tests/test_regression_extra.py vmaps and differentiates it there",
        },
    ),
    Case(
        "gaussian_nll",
        gaussian_inputs,
        params=({}, {"full": True}, {"eps": 0.5}, {"full": True, "eps": 1e-3}),
        reference=gaussian_reference,
        none_shape=elementwise,
        twins=GAUSSIAN_TWINS,
        labels_bounded=False,  # real-valued targets; the hook checks the variance
        nonnegative=False,  # a density above 1 has a negative log
    ),
]
