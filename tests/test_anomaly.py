"""The anomaly losses (Deep SVDD, Deep SAD, DROCC) against Ludwig 0.17.8's formulas.

References, each independent of lossfn: Ludwig's ``DeepSVDDLoss``, ``DeepSADLoss`` and
``DROCCLoss`` (``ludwig/modules/loss_modules.py``) written out in ``tests/cases/anomaly.py``
and here, with ``torch.quantile`` and ``torch.std``; closed forms. The generic checks
(transforms, reductions, configs, modules, dtypes) run over those cases in
``tests/test_conformance.py``.
"""

from __future__ import annotations

import math

import msgspec
import pytest
import torch
from torch.func import grad, vmap

import lossfn
import lossfn.functional as LF
from lossfn.functional._anomaly import quantile
from lossfn.registry import DEFAULT_LOSS, Feature

from cases.anomaly import deep_sad_reference, deep_svdd_reference, drocc_reference

NAMES = ("deep_svdd", "deep_sad", "drocc")


def _scores(batch=7, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return ((torch.randn(batch, 4, generator=g) ** 2).sum(1)).to(dtype)


def _labels(batch=7, seed=0):
    g = torch.Generator().manual_seed(seed + 100)
    return torch.randint(-1, 2, (batch,), generator=g)


# -- the catalog: Ludwig's names, feature type, fields, defaults ------------------------------------


def test_catalog_is_ludwigs():
    fields = {
        "deep_svdd": {"nu": 0.1},
        "deep_sad": {"eta": 1.0},
        "drocc": {"perturbation_strength": 0.1, "num_perturbation_steps": 5},
    }
    for name, defaults in fields.items():
        spec = lossfn.get_loss(name)
        assert spec.features == {Feature.ANOMALY} and spec.kind == "anomaly_score"
        assert spec.inputs[0] == "anomaly_score" and spec.defaults == defaults
        assert lossfn.decode_config({"type": name, **defaults}) == spec.config()
    assert DEFAULT_LOSS[Feature.ANOMALY] == "deep_svdd" and lossfn.default_loss("anomaly").name == "deep_svdd"
    assert lossfn.get_loss("deep_sad").required_inputs == ("anomaly_score", "labels")
    assert lossfn.get_loss("deep_svdd").optional_inputs == ("labels",)
    assert lossfn.get_loss("drocc").optional_inputs == ("labels", "noise")


def test_bounds_are_ludwigs_except_nu_zero():
    assert lossfn.decode_config({"type": "deep_svdd", "nu": 0.0}).nu == 0.0  # Ludwig's schema: exclusive 0
    for document in (
        {"type": "deep_svdd", "nu": 1.5},
        {"type": "deep_svdd", "nu": -0.1},
        {"type": "deep_sad", "eta": -1.0},
        {"type": "drocc", "perturbation_strength": -0.1},
        {"type": "drocc", "num_perturbation_steps": 0},
    ):
        with pytest.raises(msgspec.ValidationError):
            lossfn.decode_config(document)


# -- the quantile ----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 7, 10, 64])
def test_quantile_is_torchs(count):
    values = torch.randn(count, generator=torch.Generator().manual_seed(count), dtype=torch.float64)
    values[count // 2] = values[0]  # ties
    for q in (0.0, 0.05, 0.1, 1 / 3, 0.5, 0.9, 0.95, 1.0):
        expected = torch.quantile(values, q)
        torch.testing.assert_close(quantile(values, torch.tensor(q, dtype=torch.float64)), expected, rtol=0, atol=1e-15)
    rows = torch.randn(3, count, dtype=torch.float32, generator=torch.Generator().manual_seed(1))
    q = torch.tensor([0.1, 0.5, 0.9])
    # vmap over rows and over q (torch.quantile has no batching rule: a warning, an error here)
    expected = torch.stack([torch.quantile(row, 0.9) for row in rows])
    torch.testing.assert_close(vmap(lambda r: quantile(r, torch.tensor(0.9)))(rows), expected)
    torch.testing.assert_close(vmap(lambda t: quantile(rows[0], t))(q), torch.quantile(rows[0], q))


def test_quantile_of_nothing_is_zero_and_of_any_shape_is_of_all_elements():
    assert quantile(torch.empty(0), torch.tensor(0.9)).item() == 0.0
    values = torch.rand(4, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(quantile(values, torch.tensor(0.7)), torch.quantile(values.flatten(), 0.7))


# -- deep_svdd -------------------------------------------------------------------------------------


def test_deep_svdd_equals_ludwigs_formula_and_gradient():
    for nu in (0.0, 0.01, 0.1, 0.25, 0.5, 0.9, 1.0):
        for batch in (1, 2, 7, 10, 33):
            scores = _scores(batch, seed=batch).requires_grad_()
            loss = LF.deep_svdd(scores, nu=nu)
            # Ludwig's forward, as written
            if nu > 0:
                radius = torch.quantile(scores.detach(), 1.0 - nu).clamp(min=0.0)
                expected = radius + (1.0 / nu) * torch.mean(torch.clamp(scores - radius, min=0.0))
            else:
                expected = torch.mean(scores)
            torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
            ours, theirs = (torch.autograd.grad(v, scores)[0] for v in (loss, expected))
            torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)  # a score on the radius: 1/nu, as clamp


def test_deep_svdd_none_is_the_per_element_decomposition():
    scores, nu = _scores(), 0.2
    none = LF.deep_svdd(scores, nu=nu, reduction="none")
    radius = torch.quantile(scores, 0.8)
    torch.testing.assert_close(none, radius + 5 * (scores - radius).clamp(min=0))
    torch.testing.assert_close(none.mean(), LF.deep_svdd(scores, nu=nu))
    torch.testing.assert_close(LF.deep_svdd(scores.reshape(7, 1), nu=nu, reduction="none"), none.reshape(7, 1))


def test_deep_svdd_nu_as_a_tensor_selects_the_hard_boundary_at_zero():
    scores = _scores(dtype=torch.float32)
    grid = [0.0, 0.1, 0.5, 1.0]
    expected = torch.stack([deep_svdd_reference(scores, nu=v) for v in grid])
    values = torch.tensor(grid)
    torch.testing.assert_close(vmap(lambda v: LF.deep_svdd(scores, nu=v))(values), expected)
    gradients = vmap(grad(lambda v: LF.deep_svdd(scores, nu=v)))(values)
    assert torch.isfinite(gradients).all() and gradients[0] == 0  # no 1/0 from the unselected branch
    # d/dnu of R^2 + (1/nu) mean(max(0, d - R^2)) with R^2 = lerp(d_(k), d_(k+1), (1 - nu)(N - 1) - k)
    nu = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    ordered, n = _scores().sort().values, 7
    rank = (1 - nu) * (n - 1)
    k = int(rank.detach().floor())
    radius = ordered[k] + (rank - k) * (ordered[k + 1] - ordered[k])
    closed = radius + (_scores() - radius).clamp(min=0).mean() / nu
    (expected_gradient,) = torch.autograd.grad(closed, nu)
    torch.testing.assert_close(grad(lambda v: LF.deep_svdd(_scores(), nu=v))(nu.detach()), expected_gradient)


# -- deep_sad --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float32, torch.float64])
def test_deep_sad_equals_ludwigs_formula(dtype):
    scores, labels = _scores().requires_grad_(), _labels().to(dtype)
    for eta in (0.0, 0.5, 1.0, 3.0):
        loss = LF.deep_sad(scores, labels, eta=eta)
        # Ludwig's forward, as written
        is_anomaly = (labels.float() == 1).float()
        expected = torch.mean(scores * (1.0 - is_anomaly) + eta / (scores + 1e-6) * is_anomaly)
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
        ours, theirs = (torch.autograd.grad(v, scores)[0] for v in (loss, expected))
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)


def test_deep_sad_labels_boolean_and_closed_form():
    scores = torch.tensor([0.5, 2.0, 0.25, 3.0, 0.0], dtype=torch.float64)
    labels = torch.tensor([0, 1, -1, 1, 1])
    expected = torch.tensor([0.5, 1 / (2 + 1e-6), 0.25, 1 / (3 + 1e-6), 1e6], dtype=torch.float64)
    torch.testing.assert_close(LF.deep_sad(scores, labels, reduction="none"), expected)
    torch.testing.assert_close(LF.deep_sad(scores, labels == 1, reduction="none"), expected)  # True is 1
    torch.testing.assert_close(LF.deep_sad(scores, labels, reduction="sum"), expected.sum())
    # the pure function, as Ludwig's, counts every label other than 1 as normal (the module refuses them)
    torch.testing.assert_close(LF.deep_sad(scores, torch.tensor([2, 1, 7, 1, 1]), reduction="none"), expected)


# -- drocc -----------------------------------------------------------------------------------------


def _ludwig_drocc(dist_sq, s):
    """Ludwig's DROCCLoss.forward, as written (its draw from the default generator)."""
    svdd_loss = torch.mean(dist_sq)
    with torch.no_grad():
        noise_scale = s * dist_sq.detach().std().clamp(min=1e-6)
        perturbed = dist_sq.detach() + noise_scale * torch.randn_like(dist_sq)
    hinge = torch.mean(torch.clamp(dist_sq - perturbed, min=0.0))
    return svdd_loss + s * hinge


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_drocc_after_a_seed_is_ludwigs_number_and_gradient(dtype):
    for s in (0.0, 0.1, 0.5, 2.0):
        scores = _scores(9, dtype=dtype).requires_grad_()
        torch.manual_seed(1234)
        expected = _ludwig_drocc(scores, s)
        torch.manual_seed(1234)
        loss = LF.drocc(scores, perturbation_strength=s, num_perturbation_steps=3)
        torch.testing.assert_close(loss, expected)
        ours, theirs = (torch.autograd.grad(v, scores)[0] for v in (loss, expected))
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_drocc_with_noise_is_the_formula_and_steps_have_no_effect():
    scores, noise = _scores(), torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    for s in (0.1, 0.7):
        expected = drocc_reference(scores, noise=noise, perturbation_strength=s, reduction="none")
        for steps in (1, 5, 50):
            actual = LF.drocc(
                scores, None, noise, perturbation_strength=s, num_perturbation_steps=steps, reduction="none"
            )
            torch.testing.assert_close(actual, expected)
    # closed form: d - d~ = -s sigma xi, so the mean is mean(d) + s^2 sigma mean(max(0, -xi))
    s, sigma = 0.7, scores.std()
    closed = scores.mean() + s * s * sigma * (-noise).clamp(min=0).mean()
    torch.testing.assert_close(LF.drocc(scores, None, noise, perturbation_strength=s), closed)


def test_drocc_one_score_is_finite_where_ludwigs_is_nan():
    scores = torch.tensor([2.0], requires_grad=True)
    noise = torch.tensor([-1.0])
    loss = LF.drocc(scores, None, noise, perturbation_strength=0.5)
    # sigma = 0, floored at 1e-6: d + 0.5 * 0.5e-6
    torch.testing.assert_close(loss, torch.tensor(2.0 + 0.25e-6))
    assert torch.isfinite(torch.autograd.grad(loss, scores)[0]).all()


def test_drocc_spread_does_not_overflow():
    scores = torch.tensor([1e30, 3e30, 2e30, 0.5e30])
    noise = torch.tensor([-1.0, 1.0, -0.5, 0.0])
    expected = drocc_reference(scores.double(), noise=noise.double(), perturbation_strength=0.5)
    # the squares of the deviations overflow float32 (1e60): lossfn scales them first
    assert torch.isinf(((scores - scores.mean()) ** 2).sum())
    actual = LF.drocc(scores, None, noise, perturbation_strength=0.5)
    torch.testing.assert_close(actual.double(), expected, rtol=1e-6, atol=0)


def test_drocc_randomness_under_vmap():
    rows = _scores(12, dtype=torch.float32).reshape(3, 4)
    fn = lambda r: LF.drocc(r, perturbation_strength=1.0)  # noqa: E731
    with pytest.raises(RuntimeError, match="randomness"):
        vmap(fn)(rows)
    torch.manual_seed(7)
    same = vmap(fn, randomness="same")(rows)
    expected = []
    for row in rows:  # "same": one draw for every row, the eager draw after the same seed
        torch.manual_seed(7)
        expected.append(fn(row))
    torch.testing.assert_close(same, torch.stack(expected))
    torch.manual_seed(7)
    different = vmap(fn, randomness="different")(rows)
    assert torch.isfinite(different).all() and not torch.equal(different, same)


# -- compile ---------------------------------------------------------------------------------------


def test_compile_fullgraph_every_loss_and_drocc_draws():
    """One compilation for all three (with DROCC's noise given), one for DROCC's own draws."""
    scores = _scores(8, dtype=torch.float32)
    labels, noise = _labels(8), torch.randn(8, generator=torch.Generator().manual_seed(3))
    nu = torch.tensor(0.0)

    def all_three(d, y, xi, nu):
        return LF.deep_svdd(d, y, nu=nu), LF.deep_svdd(d, nu=0.3), LF.deep_sad(d, y, eta=2.0), LF.drocc(d, y, xi)

    torch._dynamo.reset()
    compiled = torch.compile(all_three, fullgraph=True)
    for got, expected in zip(compiled(scores, labels, noise, nu), all_three(scores, labels, noise, nu)):
        torch.testing.assert_close(got, expected)
    drawn = torch.compile(lambda d: LF.drocc(d, perturbation_strength=0.5), fullgraph=True)
    torch.manual_seed(0)
    first = drawn(scores)
    torch.manual_seed(0)
    assert torch.equal(drawn(scores), first) and torch.isfinite(first)  # repeatable after a seed


# -- every loss: numerics, empty batch, shapes, errors, the module's checks -------------------------


def _inputs(name, scores, labels):
    return (scores, labels, torch.zeros_like(scores) - 0.5) if name == "drocc" else (scores, labels)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_scores_up_to_1e4_are_finite_wherever_the_value_is(name, dtype):
    """Scores in [0, 1e4]: value and gradient finite wherever their float64 values fit the dtype
    (in float16 the sum of nine scores of up to 1e4 does not)."""
    fn = lossfn.get_loss(name).fn
    scores = torch.cat([torch.tensor([0.0, 0.05, 1e4, 1e4]), torch.linspace(0, 1e4, 5)]).to(dtype)
    labels = torch.tensor([0, 1, 1, 0, -1, 1, 0, 1, -1])  # (an anomaly at 0: 1e6, beyond float16)
    biggest = torch.finfo(dtype).max
    asked = 0
    for reduction in ("mean", "sum", "none"):
        exact = scores.double().requires_grad_()
        reference = fn(*_inputs(name, exact, labels), reduction=reduction)
        (reference_gradient,) = torch.autograd.grad(reference.sum(), exact)
        leaf = scores.clone().requires_grad_()
        loss = fn(*_inputs(name, leaf, labels), reduction=reduction)
        (gradient,) = torch.autograd.grad(loss.sum(), leaf)
        assert loss.dtype == dtype
        if reference.abs().max() <= biggest:
            asked += 1
            assert torch.isfinite(loss).all(), (reduction, loss)
            torch.testing.assert_close(loss.double(), reference.detach(), rtol=2e-2, atol=1e-2)
        fits = reference_gradient.abs() <= biggest
        assert torch.isfinite(gradient[fits]).all(), (reduction, gradient)
    assert asked > 0


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_is_zero_with_zero_gradients(name):
    scores = torch.empty(0, requires_grad=True)
    params = {"deep_svdd": "nu", "deep_sad": "eta", "drocc": "perturbation_strength"}
    value = torch.tensor(0.5, requires_grad=True)
    loss = lossfn.get_loss(name).fn(*_inputs(name, scores, torch.empty(0, dtype=torch.long)), **{params[name]: value})
    assert loss.item() == 0.0
    for g in torch.autograd.grad(loss, (scores, value), allow_unused=True):
        assert g is None or (g == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_name_the_loss_and_the_argument(name):
    fn = lossfn.get_loss(name).fn
    scores, labels = _scores(4), _labels(4)
    with pytest.raises(ValueError, match=rf"^{name}: anomaly_score must be a floating-point tensor"):
        fn(scores.long(), labels)
    with pytest.raises(ValueError, match=rf"^{name}: labels must be of the same shape as anomaly_score \[4\]"):
        fn(scores, labels[:3])
    with pytest.raises(ValueError, match=rf"^{name}: labels must be real numbers"):
        fn(scores, labels.to(torch.complex64))
    if name == "deep_sad":
        with pytest.raises(ValueError, match=r"^deep_sad: labels must be a torch.Tensor; got NoneType"):
            fn(scores, None)
    else:
        extra = _inputs(name, scores, labels)[2:]
        torch.testing.assert_close(fn(scores, None, *extra), fn(scores, labels, *extra))  # labels are unused
    if name == "drocc":
        with pytest.raises(ValueError, match=r"^drocc: noise must be of the same shape as anomaly_score \[4\]"):
            fn(scores, labels, torch.zeros(5, dtype=scores.dtype))
        with pytest.raises(ValueError, match=r"^drocc: noise must be a floating-point tensor"):
            fn(scores, labels, torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("name", NAMES)
def test_module_refuses_negative_scores_and_labels_outside_the_set(name):
    module = lossfn.get_loss(name).module()
    scores, labels = _scores(6), torch.tensor([1, 0, -1, 1, 0, -1])
    extra = _inputs(name, scores, labels)[2:]
    assert torch.isfinite(module(scores, labels, *extra))
    for bad in (2, 0.5, math.nan):
        wrong = labels.double().clone()
        wrong[3] = bad
        expected = rf"^{name}: labels must be anomaly labels in {{-1, 0, 1}}.*1 value outside"
        with pytest.raises(ValueError, match=expected):
            module(scores, wrong, *extra)
    negative = scores.clone()
    negative[2] = -0.5
    with pytest.raises(ValueError, match=rf"^{name}: anomaly_score must be non-negative .*a minimum of -0.5"):
        module(negative, labels, *extra)
    nan = scores.clone()
    nan[0] = math.nan
    assert torch.isnan(module(nan, labels, *extra))  # a diverged model is not an input error
    if name != "deep_sad":
        assert torch.isfinite(module(scores))  # no labels: nothing to check but the scores
        unchecked = lossfn.get_loss(name).module(validate_inputs=False)
        assert torch.isfinite(unchecked(negative, wrong, *extra))  # the check off: the function's number
