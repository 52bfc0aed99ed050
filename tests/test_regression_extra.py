"""The extra regression losses against their references, values and gradients.

References, each independent of lossfn: ``torch.nn.functional.smooth_l1_loss``,
``poisson_nll_loss`` and ``gaussian_nll_loss`` (run here, in float64); optax's
``log_cosh`` as stored float64 vectors (``tests/data/regression_optax.json``, written
by ``scripts/make_regression_vectors.py``); kornia's ``charbonnier_loss``,
``cauchy_loss``, ``geman_mcclure_loss`` and ``welsch_loss`` for Barron's loss, with
its formula written out (``tests/cases/regression_extra.py``) and central differences
for its derivative in alpha; the pinball loss as ``max(τ e, (τ - 1) e)``. The generic
checks (transforms, reductions, configs, modules, dtypes) run over the cases in
``tests/test_conformance.py``.
"""

from __future__ import annotations

import json
import math
import pathlib

import kornia.losses as K
import mpmath
import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

import lossfn
import lossfn.functional as LF
from lossfn.registry import Feature

from cases.regression_extra import barron_reference, quantile_reference

DATA = json.loads((pathlib.Path(__file__).parent / "data" / "regression_optax.json").read_text())
REGRESSION = {Feature.NUMBER, Feature.TIMESERIES, Feature.VECTOR}


def _normal(*shape, seed=0, scale=1.0, dtype=torch.float64):
    return scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _grads(fn, *inputs):
    """The gradient of ``fn(*inputs).sum()`` with respect to every input (float64 leaves)."""
    leaves = [x.clone().requires_grad_() for x in inputs]
    return torch.autograd.grad(fn(*leaves).sum(), leaves)


def close(actual, expected, rtol=1e-12, atol=1e-13):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


# -- the catalog ------------------------------------------------------------------------------------


def test_catalog():
    expected = {
        "smooth_l1": (REGRESSION, ("predictions", "labels"), {"beta": 1.0}),
        "log_cosh": (REGRESSION, ("predictions", "labels"), {}),
        "general_robust": (REGRESSION, ("predictions", "labels"), {"alpha": 1.0, "scale": 1.0}),
        "quantile": ({Feature.NUMBER, Feature.TIMESERIES}, ("predictions", "labels"), {"quantiles": None}),
        "poisson_nll": ({Feature.NUMBER}, ("predictions", "labels"), {"log_input": True, "full": False, "eps": 1e-8}),
        "gaussian_nll": ({Feature.NUMBER, Feature.VECTOR}, ("predictions", "labels", "variance"),
                         {"full": False, "eps": 1e-6}),
    }
    for name, (features, inputs, defaults) in expected.items():
        spec = lossfn.get_loss(name)
        assert spec.features == features and spec.inputs == inputs and spec.defaults == defaults, name
        assert getattr(LF, name) is spec.fn


# -- smooth L1: torch's values and gradients ----------------------------------------------------------


@pytest.mark.parametrize("beta", [1.0, 0.5, 0.0, 3.0])
@pytest.mark.parametrize("shape", [(7,), (4, 3), (2, 3, 4)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_smooth_l1_is_torchs_with_its_gradient(beta, shape, reduction):
    x, y = _normal(*shape, seed=1, scale=2.0), _normal(*shape, seed=2)
    ours = lambda a, b: LF.smooth_l1(a, b, beta=beta, reduction=reduction)  # noqa: E731
    theirs = lambda a, b: F.smooth_l1_loss(a, b, beta=beta, reduction=reduction)  # noqa: E731
    close(ours(x, y), theirs(x, y))
    for mine, torchs in zip(_grads(ours, x, y), _grads(theirs, x, y)):
        close(mine, torchs)


def test_smooth_l1_beta_as_a_tensor_at_zero_is_l1_with_a_finite_gradient():
    x, y = _normal(6, seed=3), _normal(6, seed=4)
    beta = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    loss = LF.smooth_l1(x, y, beta=beta)
    close(loss, F.l1_loss(x, y))
    (by_beta,) = torch.autograd.grad(loss, beta)
    close(by_beta, torch.tensor(-0.5, dtype=torch.float64))  # d/dβ of |d| - β/2, averaged
    grid = torch.tensor([0.0, 0.3, 1.0, 2.5], dtype=torch.float64)
    by_grid = vmap(lambda b: LF.smooth_l1(x, y, beta=b))(grid)
    close(by_grid, torch.stack([F.smooth_l1_loss(x, y, beta=float(b)) for b in grid]))


# -- log-cosh: optax's vectors ----------------------------------------------------------------------------


@pytest.mark.parametrize("item", DATA["cases"], ids=lambda c: c["label"])
def test_log_cosh_is_optax(item):
    x = torch.tensor(item["predictions"], dtype=torch.float64)
    y = torch.zeros_like(x) if item["targets"] is None else torch.tensor(item["targets"], dtype=torch.float64)
    value = LF.log_cosh(x, y, reduction="none")
    close(value, torch.tensor(item["value"], dtype=torch.float64), rtol=1e-12, atol=1e-15)
    (gradient,) = _grads(lambda a: LF.log_cosh(a, y, reduction="sum"), x)
    close(gradient, torch.tensor(item["grad"], dtype=torch.float64), rtol=1e-12, atol=1e-15)
    close(LF.log_cosh(x, y), value.mean())


def test_log_cosh_keeps_small_errors_precise_and_large_ones_finite():
    errors = torch.tensor([1e-4, -3e-3, 0.2, 0.99, 1.01, 5.0, -40.0, 1e4])
    with mpmath.workdps(40):
        exact = torch.tensor([float(mpmath.log(mpmath.cosh(float(e)))) for e in errors], dtype=torch.float64)
    value = LF.log_cosh(errors, torch.zeros(8), reduction="none")
    torch.testing.assert_close(value.double(), exact, rtol=2e-7, atol=0)  # a few float32 ulps, relative
    optax_form = torch.logaddexp(errors, -errors) - math.log(2.0)  # optax's form, in float32
    assert optax_form[0] == 0 and (optax_form[1].double() - exact[1]).abs() / exact[1] > 5e-3  # what sinh avoids
    (gradient,) = _grads(lambda a: LF.log_cosh(a, torch.zeros(8), reduction="sum"), errors)
    torch.testing.assert_close(gradient.double(), torch.tanh(errors.double()), rtol=1e-6, atol=1e-7)


# -- Barron's general robust loss -----------------------------------------------------------------------------

KORNIA = {1.0: K.charbonnier_loss, 0.0: K.cauchy_loss, -2.0: K.geman_mcclure_loss}


@pytest.mark.parametrize("alpha", sorted(KORNIA))
@pytest.mark.parametrize("scale", [1.0, 0.3, 4.0])
def test_general_robust_is_kornias_named_losses(alpha, scale):
    """kornia's losses have no scale: ρ(d, α, c) = kornia(x / c, y / c)."""
    x, y = _normal(3, 5, seed=5, scale=3.0), _normal(3, 5, seed=6)
    ours = lambda a, b: LF.general_robust(a, b, alpha=alpha, scale=scale, reduction="none")  # noqa: E731
    theirs = lambda a, b: KORNIA[alpha](a / scale, b / scale, reduction="none")  # noqa: E731
    close(ours(x, y), theirs(x, y), rtol=1e-13, atol=1e-15)
    for mine, kornias in zip(_grads(ours, x, y), _grads(theirs, x, y)):
        close(mine, kornias, rtol=1e-12, atol=1e-14)
    close(LF.general_robust(x, y, alpha=alpha, scale=scale), theirs(x, y).mean(), rtol=1e-13, atol=1e-15)


def test_general_robust_approaches_welsch_as_alpha_goes_to_minus_infinity():
    x, y = _normal(20, seed=7, scale=2.0), _normal(20, seed=8)
    welsch = K.welsch_loss(x, y, reduction="none")
    gaps = [
        (LF.general_robust(x, y, alpha=alpha, reduction="none") - welsch).abs().max().item()
        for alpha in (-1e2, -1e4, -1e8, -1e15)
    ]
    assert gaps[0] > gaps[1] > gaps[2] > 0 and gaps[3] < 1e-14
    assert gaps[1] < 1e-2 * gaps[0] * 1.5  # about z^4 / |α|: a hundred times smaller per factor 100


@pytest.mark.parametrize("alpha", [-7.0, -2.0, -0.5, 0.5, 1.0, 1.5, 3.0, 6.0])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_general_robust_is_barrons_formula(alpha, scale):
    x, y = _normal(4, 3, seed=9, scale=2.0), _normal(4, 3, seed=10)
    given = alpha if alpha <= 2 else torch.tensor(alpha, dtype=torch.float64)  # a number above 2 is refused
    for reduction in ("none", "mean", "sum"):
        close(LF.general_robust(x, y, alpha=given, scale=scale, reduction=reduction),
              barron_reference(x, y, alpha=alpha, scale=scale, reduction=reduction), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("alpha,closed", [
    (2.0, lambda z: 0.5 * z**2),
    (0.0, lambda z: torch.log1p(0.5 * z**2)),
])
def test_general_robust_is_exact_at_its_removable_singularities(alpha, closed):
    x, y = _normal(10, seed=11, scale=3.0), _normal(10, seed=12)
    z = (x - y) / 0.7
    for given in (alpha, torch.tensor(alpha, dtype=torch.float64)):
        value = LF.general_robust(x, y, alpha=given, scale=0.7, reduction="none")
        close(value, closed(z), rtol=4e-16, atol=0)
        (by_x,) = _grads(lambda a: LF.general_robust(a, y, alpha=given, scale=0.7, reduction="sum"), x)
        (expected,) = _grads(lambda a: closed((a - y) / 0.7), x)
        close(by_x, expected, rtol=1e-14, atol=1e-15)


def _barron_mp(z: float, alpha, scale) -> object:
    """Barron's rho in 40-digit arithmetic (mpmath, which torch installs through sympy), its limits
    at 2 and 0 as branches (mpmath.diff evaluates at the point itself: there α = 0 is taken at 1e-25)."""
    z = mpmath.mpf(z) / scale
    if alpha == 2:
        return z**2 / 2
    if alpha == 0:
        return mpmath.log(z**2 / 2 + 1)
    b = abs(alpha - 2)
    return b / alpha * ((z**2 / b + 1) ** (alpha / 2) - 1)


@pytest.mark.parametrize("alpha", [-5.0, -2.0, -0.3, 0.0, 1e-9, -1e-9, 0.4, 1.0, 1.9, 2.1, 3.0, 4.5])
def test_general_robust_gradient_in_alpha_is_finite_and_right(alpha):
    """d/dα and d/dc against mpmath's derivative of the formula (at α = 0 from its limit form)."""
    x, y = _normal(8, seed=13, scale=2.0), _normal(8, seed=14)
    a = torch.tensor(alpha, dtype=torch.float64)
    by_alpha = grad(lambda t: LF.general_robust(x, y, alpha=t, scale=0.8, reduction="sum"))(a)
    c = torch.tensor(0.8, dtype=torch.float64)
    by_scale = grad(lambda s: LF.general_robust(x, y, alpha=a, scale=s, reduction="sum"))(c)
    errors = (x - y).tolist()
    with mpmath.workdps(40):
        at = mpmath.mpf(alpha) if alpha != 0 else mpmath.mpf("1e-25")
        expected_alpha = sum(mpmath.diff(lambda t: _barron_mp(e, t, mpmath.mpf("0.8")), at) for e in errors)
        expected_scale = sum(mpmath.diff(lambda c: _barron_mp(e, at, c), mpmath.mpf("0.8"))
                             for e in errors)
    assert torch.isfinite(by_alpha) and torch.isfinite(by_scale)
    close(by_alpha, torch.tensor(float(expected_alpha), dtype=torch.float64), rtol=1e-9, atol=1e-12)
    close(by_scale, torch.tensor(float(expected_scale), dtype=torch.float64), rtol=1e-12, atol=1e-13)


def test_general_robust_gradient_in_alpha_at_two():
    """0 at exactly 2 (documented), large and finite beside it, as the expansion there says."""
    z = torch.tensor([0.3, 1.0, 2.5, -4.0], dtype=torch.float64)
    zero = torch.zeros(4, dtype=torch.float64)
    at_two = vmap(grad(lambda t, zi: LF.general_robust(zi, zero[0], alpha=t)), in_dims=(None, 0))(
        torch.tensor(2.0, dtype=torch.float64), z
    )
    assert (at_two == 0).all()
    for eps in (1e-9, -1e-9):
        beside = vmap(grad(lambda t, zi: LF.general_robust(zi, zero[0], alpha=t)), in_dims=(None, 0))(
            torch.tensor(2.0 + eps, dtype=torch.float64), z
        )
        expansion = z**2 / 4 * (2 * torch.log(z.abs()) - 2 - math.log(abs(eps)))
        close(beside, expansion, rtol=1e-6, atol=0)
    for neighbour in (2 - 2**-23, 2 + 2**-22):  # float32
        g = grad(lambda t: LF.general_robust(torch.ones(1), torch.zeros(1), alpha=t))(torch.tensor(neighbour))
        assert torch.isfinite(g) and 2.5 < g.item() < 4


def test_general_robust_alpha_as_a_number_or_a_tensor_gives_the_same_numbers():
    x, y = _normal(5, 2, seed=15, scale=2.0), _normal(5, 2, seed=16)
    grid = [-1e15, -3.0, -2.0, 0.0, 0.5, 1.0, 1.9, 2.0]
    alphas = torch.tensor(grid, dtype=torch.float64)
    by_vmap = vmap(lambda t: LF.general_robust(x, y, alpha=t, reduction="none"))(alphas)
    for row, alpha in zip(by_vmap, grid):
        close(row, LF.general_robust(x, y, alpha=alpha, reduction="none"), rtol=1e-15, atol=0)


def test_general_robust_alpha_above_two_only_as_a_tensor():
    x, y = _normal(6, seed=39), _normal(6, seed=40)
    with pytest.raises(ValueError, match=r"^general_robust: alpha must be a number >= -1e\+15 and <= 2"):
        LF.general_robust(x, y, alpha=2.5)
    with pytest.raises(lossfn.LossConfigError, match=r"\$\.alpha"):
        lossfn.decode_config({"type": "general_robust", "alpha": 3})
    value = LF.general_robust(x, y, alpha=torch.tensor(3.0, dtype=torch.float64))
    close(value, barron_reference(x, y, alpha=3.0))


def test_general_robust_increases_with_alpha():
    """Barron's property 3: ρ is monotonic in α (for fixed z)."""
    z = _normal(50, seed=17, scale=5.0)
    alphas = torch.linspace(-20, 8, 113, dtype=torch.float64)
    values = vmap(lambda t: LF.general_robust(z, torch.zeros_like(z), alpha=t, reduction="none"))(alphas)
    assert (values.diff(dim=0) >= -1e-12).all()


@pytest.mark.parametrize("alpha,scale,size", [
    (1.0, 1e-15, 1e4), (1.5, 1e-6, 1e4), (-2.0, 1.0, 1e30),
    (2 - 2**-23, 1.0, 1e15), (2 - 2**-23, 1.0, 1e17), (2.0, 1e-15, 1e4), (0.0, 1.0, 1e30),
])
def test_general_robust_does_not_overflow_where_its_value_is_representable(alpha, scale, size):
    """z² and the power overflow float32 long before ρ does: log forms keep it finite, and right."""
    x = torch.tensor([size, -size, 0.5, 0.0], dtype=torch.float32)
    y = torch.zeros(4)
    value = LF.general_robust(x, y, alpha=alpha, scale=scale, reduction="none")
    a32, c32 = (mpmath.mpf(float(torch.tensor(v, dtype=torch.float32))) for v in (alpha, scale))
    with mpmath.workdps(40):
        exact = torch.tensor([float(_barron_mp(float(d), a32, c32)) for d in x], dtype=torch.float64)
    assert exact.abs().max() < torch.finfo(torch.float32).max
    torch.testing.assert_close(value.double(), exact, rtol=1e-5, atol=1e-7)
    (gradient,) = _grads(lambda a: LF.general_robust(a, y, alpha=alpha, scale=scale, reduction="sum"), x)
    assert torch.isfinite(gradient).all()


# -- quantile --------------------------------------------------------------------------------------------------

LEVELS = [0.1, 0.5, 0.9]


@pytest.mark.parametrize("shape", [(6,), (2, 5), ()])  # the labels' shape; predictions add [Q]
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_quantile_is_the_pinball_loss(shape, reduction):
    x, y = _normal(*shape, 3, seed=18), _normal(*shape, seed=19)
    value = LF.quantile(x, y, quantiles=LEVELS, reduction=reduction)
    close(value, quantile_reference(x, y, quantiles=LEVELS, reduction=reduction))
    as_tensor = LF.quantile(x, y, quantiles=torch.tensor(LEVELS, dtype=torch.float64), reduction=reduction)
    close(as_tensor, value)
    if reduction == "none":
        assert value.shape == x.shape


def test_quantile_gradient_and_the_median():
    x, y = _normal(6, 3, seed=20), _normal(6, seed=21)
    (by_x,) = _grads(lambda a: LF.quantile(a, y, quantiles=LEVELS, reduction="sum"), x)
    levels = torch.tensor(LEVELS, dtype=torch.float64)
    close(by_x, torch.where(y[:, None] - x < 0, 1 - levels, -levels))
    one = _normal(6, seed=22)
    close(LF.quantile(one, y), 0.5 * F.l1_loss(one, y))  # τ = 0.5 is half the absolute error
    close(LF.quantile(one[:, None], y), LF.quantile(one, y))  # [B, 1] against [B], or [B] against [B]


def test_quantile_with_several_levels_under_the_transforms():
    """The generic suite runs one level (compiled too); here three, on [B, T, Q]."""
    x, y = _normal(4, 5, 3, seed=23), _normal(4, 5, seed=24)
    fn = lambda a, b: LF.quantile(a, b, quantiles=LEVELS)  # noqa: E731
    per_example = vmap(grad(fn))(x, y)
    for i in range(4):
        (expected,) = _grads(lambda a: fn(a, y[i]), x[i])
        close(per_example[i], expected)
    stacked = vmap(lambda a, b: LF.quantile(a, b, quantiles=LEVELS, reduction="none"))(x, y)
    close(stacked, torch.stack([LF.quantile(x[i], y[i], quantiles=LEVELS, reduction="none") for i in range(4)]))
    module = lossfn.build({"type": "quantile", "quantiles": LEVELS})
    assert module.quantiles.shape == (3,)
    close(module(x, y), fn(x, y), rtol=1e-7, atol=1e-8)


def test_quantile_errors_name_the_argument():
    x, y = _normal(6, 3, seed=25), _normal(6, seed=26)
    with pytest.raises(ValueError, match=r"^quantile: predictions must be of shape \[\.\.\., Q\] with Q = 2"):
        LF.quantile(x, y, quantiles=[0.2, 0.8])
    with pytest.raises(ValueError, match=r"^quantile: labels must be of shape \[6\]"):
        LF.quantile(x, _normal(6, 3, seed=27), quantiles=LEVELS)
    for bad in ([], [0.0], [1.0], [0.5, 1.5]):
        with pytest.raises(ValueError, match=r"^quantile: quantiles "):
            LF.quantile(x, y, quantiles=bad)
    with pytest.raises(ValueError, match=r"^quantile: quantiles must be a non-empty list or a tensor of shape \[Q\]"):
        LF.quantile(x, y, quantiles=torch.tensor(0.5))
    with pytest.raises(lossfn.LossConfigError, match=r"quantiles"):
        lossfn.decode_config({"type": "quantile", "quantiles": [0.5, 1.0]})


# -- Poisson: torch's values and gradients --------------------------------------------------------------------

POISSON = [{}, {"log_input": False}, {"full": True}, {"log_input": False, "full": True, "eps": 0.3}, {"eps": 0.0}]


@pytest.mark.parametrize("params", POISSON, ids=str)
@pytest.mark.parametrize("shape", [(7,), (3, 4)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_poisson_nll_is_torchs_with_its_gradient(params, shape, reduction):
    rates = torch.exp(_normal(*shape, seed=28))
    counts = torch.randint(0, 7, shape, generator=torch.Generator().manual_seed(29)).double()
    ours = lambda a, b: LF.poisson_nll(a, b, **params, reduction=reduction)  # noqa: E731
    theirs = lambda a, b: F.poisson_nll_loss(a, b, **params, reduction=reduction)  # noqa: E731
    close(ours(rates, counts), theirs(rates, counts))
    (mine,) = _grads(lambda a: ours(a, counts), rates)
    (torchs,) = _grads(lambda a: theirs(a, counts), rates)
    close(mine, torchs)
    (by_label,) = _grads(lambda b: ours(rates, b), counts)
    assert torch.isfinite(by_label).all()  # torch's is NaN at a zero count with full=True (0 * log 0)
    if not params.get("full"):
        close(by_label, _grads(lambda b: theirs(rates, b), counts)[0])


def test_poisson_nll_eps_as_a_tensor():
    rates, counts = torch.exp(_normal(6, seed=30)) * 0.01, torch.arange(6).double()
    fn = lambda e: LF.poisson_nll(rates, counts, log_input=False, eps=e)  # noqa: E731
    grid = torch.tensor([0.0, 1e-3, 0.1, 1.0], dtype=torch.float64)
    close(vmap(fn)(grid), torch.stack([F.poisson_nll_loss(rates, counts, log_input=False, eps=float(e)) for e in grid]))
    by_eps = vmap(grad(fn))(grid)
    close(by_eps, -(counts / (rates + grid[:, None])).mean(dim=1))  # d/dε of -y log(x + ε)
    # unused with log_input=True: there, a zero gradient (not a missing one)
    eps = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.grad(LF.poisson_nll(rates, counts, eps=eps), eps)[0].item() == 0.0


# -- Gaussian: torch's values, gradients and shape rules ------------------------------------------------------

SHAPES = [((6, 3), (6, 3)), ((6, 3), (6,)), ((6, 3), (6, 1)), ((2, 3, 4), (2, 1, 4)), ((6,), ()), ((6,), (6,))]


@pytest.mark.parametrize("shape,var_shape", SHAPES, ids=str)
@pytest.mark.parametrize("params", [{}, {"full": True}, {"eps": 0.4}], ids=str)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_gaussian_nll_is_torchs_with_its_gradient(shape, var_shape, params, reduction):
    x, y = _normal(*shape, seed=31), _normal(*shape, seed=32)
    var = torch.rand(var_shape, generator=torch.Generator().manual_seed(33), dtype=torch.float64) + 1e-7  # some < eps
    ours = lambda a, b, v: LF.gaussian_nll(a, b, v, **params, reduction=reduction)  # noqa: E731
    theirs = lambda a, b, v: F.gaussian_nll_loss(a, b, v, **params, reduction=reduction)  # noqa: E731
    close(ours(x, y, var), theirs(x, y, var))
    for mine, torchs in zip(_grads(ours, x, y, var), _grads(theirs, x, y, var)):
        close(mine, torchs)  # the variance's gradient passes the clamp unchanged, as torch's


def test_gaussian_nll_runs_under_vmap_and_takes_a_number_and_a_tensor_eps():
    x, y = _normal(5, 3, seed=34), _normal(5, 3, seed=35)
    var = torch.rand(5, 3, generator=torch.Generator().manual_seed(36), dtype=torch.float64)
    rows = vmap(lambda a, b, v: LF.gaussian_nll(a, b, v))(x, y, var)
    close(rows, torch.stack([F.gaussian_nll_loss(x[i], y[i], var[i]) for i in range(5)]))
    close(LF.gaussian_nll(x, y, 0.5, full=True), F.gaussian_nll_loss(x, y, 0.5, full=True))
    grid = torch.tensor([1e-6, 0.2, 0.6], dtype=torch.float64)
    by_grid = vmap(lambda e: LF.gaussian_nll(x, y, var, eps=e))(grid)
    close(by_grid, torch.stack([F.gaussian_nll_loss(x, y, var, eps=float(e)) for e in grid]))
    assert torch.isfinite(vmap(grad(lambda e: LF.gaussian_nll(x, y, var, eps=e)))(grid)).all()


def test_gaussian_nll_variance_checks():
    x, y = _normal(4, 3, seed=37), _normal(4, 3, seed=38)
    for bad in (torch.ones(4, 2), torch.ones(3), torch.ones(4, 3, 1), torch.ones(1, 1)):
        with pytest.raises(ValueError, match=r"^gaussian_nll: variance must be of the predictions' shape \[4, 3\]"):
            LF.gaussian_nll(x, y, bad)
        with pytest.raises(ValueError, match="var is of incorrect size"):  # torch refuses them too
            F.gaussian_nll_loss(x, y, bad)
    with pytest.raises(ValueError, match=r"^gaussian_nll: variance must be non-negative; got -1.0"):
        LF.gaussian_nll(x, y, -1.0)
    module = lossfn.get_loss("gaussian_nll").module()
    negative = torch.ones(4, 3).double()
    negative[1, 2] = -0.5
    message = r"^gaussian_nll: variance must be non-negative \(NaN refused\); got a minimum of -0.5"
    with pytest.raises(ValueError, match=message):
        module(x, y, negative)
    negative[1, 2] = math.nan
    with pytest.raises(ValueError, match=r"^gaussian_nll: variance must be non-negative"):
        module(x, y, negative)
    assert torch.isfinite(LF.gaussian_nll(x, y, negative.nan_to_num(-0.5)))  # the pure function reads nothing


# -- every loss: finite at errors of 1e4 in half precision -----------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name,params", [
    ("smooth_l1", {}), ("smooth_l1", {"beta": 0.0}), ("log_cosh", {}), ("general_robust", {}),
    ("general_robust", {"alpha": -2.0}), ("general_robust", {"alpha": 0.0}), ("quantile", {}),
    ("poisson_nll", {"log_input": False, "full": True}), ("gaussian_nll", {}),
])
def test_errors_of_1e4_in_half_precision_are_finite(name, params, dtype):
    x = torch.tensor([1e4, -1e4, 3.0, 0.0], dtype=dtype)
    if name == "poisson_nll":  # rates: positive (at a rate of 0 the gradient -y/eps is beyond float16)
        x = x.abs() + 0.5
    inputs = [x.clone().requires_grad_(), torch.tensor([0.0, 1.0, 2.0, 5.0], dtype=dtype)]
    if name == "gaussian_nll":  # variances that keep the loss (d²/σ²) representable in float16
        inputs.append(torch.tensor([1e4, 1e4, 2.0, 1e3], dtype=dtype))
    loss = lossfn.get_loss(name).fn(*inputs, **params)
    (gradient,) = torch.autograd.grad(loss, inputs[0])
    assert loss.dtype == dtype and torch.isfinite(loss) and torch.isfinite(gradient).all()
