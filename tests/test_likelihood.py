"""Values and gradients of ``nll``, ``binary_cross_entropy`` and ``asymmetric`` beyond the catalog.

References: ``F.nll_loss`` and ``F.binary_cross_entropy`` run here (values and gradients,
every reduction); timm's ``AsymmetricLossMultiLabel`` formula written out in
``tests/cases/likelihood.py`` (timm is not a dependency) and float64 closed forms at
extreme logits, where timm's linear-space form breaks down.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lossfn
from lossfn import functional as LF

from cases.likelihood import WEIGHTS_4, timm_asymmetric
from cases import reduce_like_torch as _reduce

REDUCTIONS = ("none", "mean", "sum")


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _value_and_grad(fn, x, *rest, **params):
    leaf = x.detach().clone().requires_grad_()
    value = fn(leaf, *rest, **params)
    (gradient,) = torch.autograd.grad(value.sum(), leaf)
    return value.detach(), gradient


# -- nll ----------------------------------------------------------------------------------

NLL_SHAPES = [(6, 4), (4,), (2, 4, 3, 2), (5, 4, 3)]


@pytest.mark.parametrize("shape", NLL_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("params", [{}, {"class_weights": WEIGHTS_4}, {"ignore_index": 1},
                                    {"class_weights": WEIGHTS_4, "ignore_index": -100}], ids=str)
def test_nll_values_and_gradients_are_torchs(shape, reduction, params):
    class_dim = 1 if len(shape) > 1 else 0
    x = torch.log_softmax(3 * torch.randn(shape, generator=_gen(), dtype=torch.float64), class_dim)
    labels = torch.randint(0, 4, shape[:1] + shape[2:] if len(shape) > 1 else (), generator=_gen(1))
    ignore = params.get("ignore_index", -100)
    if labels.ndim:
        labels.view(-1)[::3] = ignore
    weight = torch.tensor(WEIGHTS_4, dtype=torch.float64) if "class_weights" in params else None
    ours = _value_and_grad(LF.nll, x, labels, **params, reduction=reduction)
    theirs = _value_and_grad(F.nll_loss, x, labels, weight=weight, ignore_index=ignore, reduction=reduction)
    if reduction == "mean" and (labels == ignore).all():  # nothing to average: 0, where torch gives nan
        assert ours[0].item() == 0.0 and (ours[1] == 0).all() and theirs[0].isnan()
        return
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_nll_of_log_softmax_is_the_softmax_cross_entropy():
    logits = 3 * torch.randn(7, 5, generator=_gen(), dtype=torch.float64)
    labels = torch.tensor([0, 4, -100, 2, 2, 1, -100])
    weights = [0.5, 1.0, 2.0, 1.0, 4.0]
    for reduction in REDUCTIONS:
        torch.testing.assert_close(
            LF.nll(torch.log_softmax(logits, 1), labels, class_weights=weights, reduction=reduction),
            F.cross_entropy(logits, labels, weight=torch.tensor(weights, dtype=torch.float64), reduction=reduction),
        )


def test_nll_masked_class_is_finite_with_a_zero_gradient_there():
    x = torch.log_softmax(torch.tensor([[0.5, 1.5, -math.inf], [2.0, -1.0, -math.inf]]), 1)
    value, gradient = _value_and_grad(LF.nll, x, torch.tensor([0, 1]), class_weights=[1.0, 2.0, 3.0])
    torch.testing.assert_close(value, -(x[0, 0] + 2 * x[1, 1]) / 3)
    assert torch.isfinite(gradient).all() and (gradient[:, 2] == 0).all()


def test_nll_all_ignored_mean_is_zero_with_a_zero_gradient():
    x = torch.log_softmax(torch.randn(3, 4, generator=_gen()), 1)
    value, gradient = _value_and_grad(LF.nll, x, torch.full((3,), -100), class_weights=WEIGHTS_4)
    assert value.item() == 0.0 and (gradient == 0).all()
    assert torch.isnan(F.nll_loss(x, torch.full((3,), -100)))  # torch: nan


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nll_half_precision_is_computed_in_float32(dtype):
    x = torch.log_softmax(torch.randn(6, 4, generator=_gen()), 1).to(dtype)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    ours = LF.nll(x, labels, class_weights=WEIGHTS_4)
    assert ours.dtype == dtype
    expected = F.nll_loss(x.float(), labels, weight=torch.tensor(WEIGHTS_4)).to(dtype)
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)


@pytest.mark.parametrize("params", [{}, {"class_weights": WEIGHTS_4}], ids=str)
@pytest.mark.parametrize("bad", [4, -3])
def test_nll_label_out_of_range_is_a_named_error(params, bad):
    x = torch.log_softmax(torch.randn(3, 4, generator=_gen()), 1)
    labels = torch.tensor([0, bad, 1])
    with pytest.raises(ValueError, match=r"^nll: labels must be class or token indices"):
        LF.nll(x, labels, **params)
    with pytest.raises(ValueError, match=rf"^nll: labels must be class indices in \[0, 3\] or the ignore_index; got values in \[{min(0, bad)}, {max(1, bad)}\]"):
        lossfn.nn.Nll(**params)(x, labels)
    assert torch.isfinite(lossfn.nn.Nll(ignore_index=bad, **params)(x, labels))  # the ignored label is fine


def test_nll_errors_name_log_probs():
    x = torch.log_softmax(torch.randn(3, 4, generator=_gen()), 1)
    with pytest.raises(ValueError, match=r"^nll: labels must be class indices of shape \[3\] for log_probs \[3, 4\]"):
        LF.nll(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"^nll: log_probs must be a floating-point tensor"):
        LF.nll(torch.zeros(3, 4, dtype=torch.long), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"^nll: labels must be integer class indices"):
        LF.nll(x, torch.zeros(3))


# -- binary_cross_entropy -----------------------------------------------------------------

BCE_SHAPES = [(7,), (), (6, 4), (3, 4, 2), (4,)]


def _probabilities(shape, *, soft=False, seed=0):
    g = _gen(seed)
    p = torch.rand(shape, generator=g, dtype=torch.float64)
    if p.numel() > 2:
        p.view(-1)[::5] = 0.0
        p.view(-1)[1::5] = 1.0
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    return p, (u if soft else (u > 0.5).double())


def _torch_weight(shape):
    if len(shape) == 0:
        return None
    class_dim = 1 if len(shape) > 1 else 0
    return torch.tensor(WEIGHTS_4, dtype=torch.float64).view(-1, *[1] * (len(shape) - 1 - class_dim))


# one weight per class: for a [C] or [B, C, ...] input
BCE_SETTINGS = [
    (shape, weighted)
    for shape in BCE_SHAPES
    for weighted in (False, True)
    if not weighted or (shape and shape[1 if len(shape) > 1 else 0] == 4)
]


@pytest.mark.parametrize("shape,weighted", BCE_SETTINGS, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
def test_bce_values_and_gradients_are_torchs_with_p_0_and_1(shape, weighted, reduction, soft):
    """torch's clamp of the logs at -100 and its gradient (p - y) / max(p(1 - p), 1e-12)."""
    p, y = _probabilities(shape, soft=soft)
    params = {"class_weights": WEIGHTS_4} if weighted else {}
    weight = _torch_weight(shape) if weighted else None
    ours = _value_and_grad(LF.binary_cross_entropy, p, y, **params, reduction=reduction)
    theirs = _value_and_grad(F.binary_cross_entropy, p, y, weight=weight, reduction=reduction)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert torch.isfinite(ours[1]).all()  # at p = 0 or 1: torch's w (p - y) / 1e-12, not inf


def test_bce_label_gradient_is_torchs():
    p, y = _probabilities((5, 4), soft=True)
    p = p.clamp(0.05, 0.95)  # at p = 0 or 1 torch's label gradient, -logit(p), is infinite
    leaf = y.clone().requires_grad_()
    ours = torch.autograd.grad(LF.binary_cross_entropy(p, leaf, class_weights=WEIGHTS_4), leaf)[0]
    theirs = torch.autograd.grad(F.binary_cross_entropy(p, leaf, weight=_torch_weight((5, 4))), leaf)[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    # the closed form: -w logit(p) / N
    torch.testing.assert_close(ours, -_torch_weight((5, 4)) * torch.logit(p) / p.numel())


def test_bce_labels_may_be_integer_bool_or_float():
    p, y = _probabilities((6, 4))
    expected = F.binary_cross_entropy(p, y)
    for labels in (y.long(), y.bool(), y.to(torch.int8), y):
        torch.testing.assert_close(LF.binary_cross_entropy(p, labels), expected)


def test_bce_probability_out_of_range_is_inf_in_the_function_and_an_error_in_the_module():
    p = torch.tensor([0.2, 1.5, -0.1, math.nan, 0.7], dtype=torch.float64)
    y = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(p, y)  # torch reads the values (a host sync) and raises
    value, gradient = _value_and_grad(LF.binary_cross_entropy, p, y, reduction="none")
    assert value.isinf().tolist() == [False, True, True, False, False] and value[3].isnan()
    assert torch.equal(gradient[1:4], torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(value[[0, 4]], F.binary_cross_entropy(p[[0, 4]], y[[0, 4]], reduction="none"))
    module = lossfn.nn.BinaryCrossEntropy()
    with pytest.raises(ValueError, match=r"^binary_cross_entropy: probabilities must be in \[0, 1\]; got values in \[nan, nan\]"):
        module(p, y)
    with pytest.raises(ValueError, match=r"^binary_cross_entropy: probabilities must be in \[0, 1\]; got values in \[-0.1, 1.5\]"):
        module(p.nan_to_num(0.5), y)
    with pytest.raises(ValueError, match=r"^binary_cross_entropy: labels must be targets in \[0, 1\]; got values in \[0, 2\]"):
        module(p.clamp(0, 1).nan_to_num(0.5), y * 2)
    assert torch.isfinite(module(p.clamp(0, 1).nan_to_num(0.5), y))


def test_bce_target_out_of_range_is_nan_in_the_function_where_torch_raises():
    """torch's kernel checks the targets too (a RuntimeError; on a GPU a device-side assert
    that ends the process's CUDA context): the pure function reads no values, so a target
    outside [0, 1] or NaN gives NaN there, with a zero gradient, and leaves the rest torch's."""
    p = torch.tensor([0.2, 0.6, 0.3, 0.9, 0.7, 1.5], dtype=torch.float64)
    y = torch.tensor([1.0, 2.0, -0.5, math.nan, 0.0, 3.0], dtype=torch.float64)
    with pytest.raises(RuntimeError, match="target should be between 0 and 1"):
        F.binary_cross_entropy(p[:5], y[:5])
    leaf_p, leaf_y = p.clone().requires_grad_(), y.clone().requires_grad_()
    value = LF.binary_cross_entropy(leaf_p, leaf_y, class_weights=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], reduction="none")
    assert value.isnan().tolist() == [False, True, True, True, False, True]
    by_p, by_y = torch.autograd.grad(value[~value.isnan()].sum(), (leaf_p, leaf_y))
    assert torch.equal(by_p[1:4], torch.zeros(3, dtype=torch.float64)) and torch.equal(by_y[1:4], by_p[1:4])
    kept = [0, 4]
    weight = torch.tensor([1.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(value[kept], F.binary_cross_entropy(p[kept], y[kept], weight=weight, reduction="none"))
    for reduction in ("mean", "sum"):
        assert LF.binary_cross_entropy(p, y, reduction=reduction).isnan()
    assert torch.isnan(LF.binary_cross_entropy(p[:2], torch.tensor([1, 2])))  # integer labels too
    with pytest.raises(ValueError, match=r"^binary_cross_entropy: labels must be targets in \[0, 1\]"):
        lossfn.nn.BinaryCrossEntropy()(p[:3], y[:3])


def test_bce_float16_gradient_saturates_where_torchs_overflows():
    """A float16 probability near 0 with target 1 has a gradient beyond 65504: float32
    gives it (torch's formula), the cast back saturates at float16's largest number."""
    p = torch.tensor([0.0, 1e-6, 0.3, 1.0], dtype=torch.float16)
    y = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float16)
    value, gradient = _value_and_grad(LF.binary_cross_entropy, p, y, reduction="sum")
    leaf = p.float().requires_grad_()
    exact = torch.autograd.grad(F.binary_cross_entropy(leaf, y.float(), reduction="sum"), leaf)[0]
    assert exact.abs().max() > 65504  # torch's own float32 gradient: 1e12 at p = 0
    largest = torch.finfo(torch.float16).max
    torch.testing.assert_close(gradient, exact.clamp(-largest, largest).half(), rtol=0, atol=0)
    assert value.dtype == torch.float16
    torch.testing.assert_close(value.float(), F.binary_cross_entropy(p.float(), y.float(), reduction="sum"), rtol=1e-3, atol=0)
    bf16 = _value_and_grad(LF.binary_cross_entropy, p.bfloat16(), y.bfloat16(), reduction="sum")[1]
    torch.testing.assert_close(bf16, exact.bfloat16(), rtol=0, atol=0)  # in range: unchanged


def test_bce_class_weights_need_a_class_dimension():
    with pytest.raises(ValueError, match=r"^binary_cross_entropy: class_weights must be None for a 0-d input"):
        LF.binary_cross_entropy(torch.tensor(0.5), torch.tensor(1.0), class_weights=[1.0])
    with pytest.raises(ValueError, match=r"^binary_cross_entropy: class_weights must be of shape \[3\]"):
        LF.binary_cross_entropy(torch.rand(2, 3), torch.ones(2, 3), class_weights=WEIGHTS_4)


# -- asymmetric -----------------------------------------------------------------------------

ASL_PARAMS = [
    {},
    {"gamma_neg": 2.0},
    {"gamma_pos": 0.5},
    {"clip": 0.0},
    {"clip": 0.3},
    {"eps": 1e-3},
    {"gamma_neg": 0.7, "gamma_pos": 3.0, "clip": 0.1, "eps": 1e-5},
]


def _asl_inputs(shape, *, soft=False, scale=2.0, seed=0):
    g = _gen(seed)
    logits = scale * torch.randn(shape, generator=g, dtype=torch.float64)
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    return logits, (u if soft else (u > 0.5).long())


@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 2), (5,)], ids=str)
@pytest.mark.parametrize("params", ASL_PARAMS, ids=str)
@pytest.mark.parametrize("soft", [False, True])
def test_asymmetric_is_timms_formula_values_and_gradients(shape, params, soft):
    logits, labels = _asl_inputs(shape, soft=soft)
    for reduction in REDUCTIONS:
        ours = _value_and_grad(LF.asymmetric, logits, labels, **params, reduction=reduction)
        theirs = _value_and_grad(lambda x, y: _reduce(timm_asymmetric(x, y, **params), reduction), logits, labels)
        torch.testing.assert_close(ours[0], theirs[0], rtol=1e-10, atol=1e-12)
        # timm's gradient is NaN where 1 - p_t = 0 with an exponent below 1 (an easy
        # negative under the clip: pow's derivative 0^(γ-1)); lossfn's is 0 there
        nan = theirs[1].isnan()
        assert not nan.any() or (0 < params.get("gamma_neg", 4.0) < 1 and params.get("clip", 0.05) > 0 and not soft)
        torch.testing.assert_close(ours[1][~nan], theirs[1][~nan], rtol=1e-10, atol=1e-12)
        assert (ours[1][nan] == 0).all()
    # "sum" is the number timm's module returns
    torch.testing.assert_close(LF.asymmetric(logits, labels, **params, reduction="sum"),
                               timm_asymmetric(logits, labels, **params).sum())


def test_asymmetric_without_focusing_clip_or_floor_is_the_sigmoid_cross_entropy():
    logits, labels = _asl_inputs((6, 5), soft=True, scale=20.0)
    params = {"gamma_neg": 0.0, "gamma_pos": 0.0, "clip": 0.0, "eps": 0.0}
    for reduction in REDUCTIONS:
        torch.testing.assert_close(
            LF.asymmetric(logits, labels, **params, reduction=reduction),
            F.binary_cross_entropy_with_logits(logits, labels, reduction=reduction),
        )


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 4.0])
def test_asymmetric_at_extreme_logits_matches_closed_forms(gamma):
    """float32 at |x| = 1e4 and 50 against float64 closed forms (timm's linear form gives
    log 0 = -inf or a NaN gradient here). Hard labels: a positive loses
    -log max(σ(x), ε) · σ(-x)^γ+, a negative -log max(min(σ(-x) + c, 1), ε) · max(σ(x) - c, 0)^γ-."""
    x64 = torch.tensor([-1e4, -50.0, 50.0, 1e4, -1e4, -50.0, 50.0, 1e4], dtype=torch.float64)
    y = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    for clip, eps in [(0.05, 1e-8), (0.0, 0.0), (0.2, 0.0)]:
        params = {"gamma_neg": gamma, "gamma_pos": gamma, "clip": clip, "eps": eps}
        log_eps = math.log(eps) if eps > 0 else -math.inf
        pos = -torch.clamp_min(F.logsigmoid(x64), log_eps) * torch.exp(gamma * F.logsigmoid(-x64))
        if clip > 0:
            neg_log = torch.log(torch.sigmoid(-x64) + clip).clamp_max(0)
            m = (torch.sigmoid(x64) - clip).clamp_min(0)
        else:
            neg_log, m = F.logsigmoid(-x64), torch.sigmoid(x64)
        neg = -torch.clamp_min(neg_log, log_eps) * m**gamma
        expected = torch.where(y == 1, pos, neg)
        value, gradient = _value_and_grad(LF.asymmetric, x64.float(), y, **params, reduction="none")
        torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=1e-30)
        assert torch.isfinite(gradient).all()
    # timm's own formula in float32 at x = -1e4, y = 1, eps = 0: log(0)
    assert torch.isinf(timm_asymmetric(torch.tensor([-1e4]), torch.tensor([1]), eps=0.0)).all()


@pytest.mark.parametrize("gamma", [0.25, 0.5, 0.9])
def test_asymmetric_gradient_is_finite_where_one_minus_pt_is_zero(gamma):
    """1 - p_t = 0 (an easy negative below the clip, or σ(-x) underflowing for a positive)
    with γ < 1: timm's pow has an infinite derivative there (NaN gradient); lossfn's is 0."""
    x = torch.tensor([-5.0, -30.0, 120.0], dtype=torch.float32)
    y = torch.tensor([0, 0, 1])
    params = {"gamma_neg": gamma, "gamma_pos": gamma, "clip": 0.05}
    value, gradient = _value_and_grad(LF.asymmetric, x, y, **params, reduction="sum")
    assert value.item() == 0.0 and torch.equal(gradient, torch.zeros(3))
    _, timm_gradient = _value_and_grad(lambda v: timm_asymmetric(v, y, **params).sum(), x)
    assert torch.isnan(timm_gradient[:2]).all()


def test_asymmetric_gradient_with_respect_to_hyperparameters_is_timms():
    logits, labels = _asl_inputs((6, 5), soft=True)
    base = {"gamma_neg": 2.5, "gamma_pos": 0.5, "clip": 0.1, "eps": 0.02}
    for name in base:
        value = torch.tensor(base[name], dtype=torch.float64, requires_grad=True)
        ours = torch.autograd.grad(LF.asymmetric(logits, labels, **{**base, name: value}), value)[0]
        theirs = torch.autograd.grad(timm_asymmetric(logits, labels, **{**base, name: value}).mean(), value)[0]
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
        assert ours.abs() > 0, name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_asymmetric_half_precision_is_computed_in_float32(dtype):
    logits, labels = _asl_inputs((6, 5), scale=8.0)
    ours = LF.asymmetric(logits.to(dtype), labels)
    expected = timm_asymmetric(logits.to(dtype).double(), labels).mean()
    assert ours.dtype == dtype
    torch.testing.assert_close(ours.double(), expected, rtol=1e-2, atol=0)


def test_asymmetric_module_refuses_labels_outside_0_1():
    logits, labels = _asl_inputs((2, 3))
    module = lossfn.nn.Asymmetric()
    assert torch.isfinite(module(logits, labels))
    with pytest.raises(ValueError, match=r"^asymmetric: labels must be targets in \[0, 1\]"):
        module(logits, labels * 3)
