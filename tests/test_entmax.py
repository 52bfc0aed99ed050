"""sparsemax and entmax15: the mappings and their Fenchel–Young losses against the ``entmax`` package.

Expected values come from the ``entmax`` package (``sparsemax``, ``entmax15``,
``sparsemax_loss``, ``entmax15_loss``, its ``SparsemaxLoss`` module), from closed forms
written here (two classes, the Jacobians of the mappings), and from Ludwig's loss
written out: Ludwig 0.17.8's ``SparsemaxLoss`` / ``Entmax15Loss`` wrap a vendored copy
of the package's losses with ``ignore_index=-100`` (``IGNORE_INDEX_TOKEN_ID``), which
leaves nothing out (the package masks only for ``ignore_index >= 0``), and divide the
sum by the batch size.
"""

from __future__ import annotations

import math

import entmax
import pytest
import torch
import torch.nn.functional as F
from torch.func import hessian, jacfwd, jacrev, vmap

import lossfn
import lossfn.functional as LF

LOSSES = {"sparsemax": entmax.sparsemax_loss, "entmax15": entmax.entmax15_loss}
MAPPINGS = {"sparsemax": (LF.sparsemax_probabilities, entmax.sparsemax),
            "entmax15": (LF.entmax15_probabilities, entmax.entmax15)}
NAMES = list(LOSSES)


def _logits(*shape, seed=0, dtype=torch.float64):
    """Normal logits at several scales, with ties (in and out of the support) and large gaps."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(*shape, generator=g, dtype=dtype)
    scale = torch.tensor([0.1, 1.0, 3.0, 30.0], dtype=dtype).repeat(shape[0] // 4 + 1)[: shape[0]]
    z = z * scale.view(-1, *[1] * (len(shape) - 1))
    flat = z.reshape(-1, shape[-1])
    flat[::3, 1] = flat[::3, 0]  # ties
    flat[1::5, 2:4] = flat[1::5, 4:5]
    flat[2::7, 0] += 100.0  # a large gap: support of one class
    return flat.reshape(shape)


def _labels(*shape, classes, seed=1):
    return torch.randint(0, classes, shape, generator=torch.Generator().manual_seed(seed))


def _primal(name, z, y):
    """Ludwig's (and the package's) formula written out: Omega(p) + <p - e_y, z>, row by row."""
    p = MAPPINGS[name][1](z, -1)
    omega = (1 - (p**2).sum(-1)) / 2 if name == "sparsemax" else (1 - (p * p.sqrt()).sum(-1)) / 0.75
    return omega + ((p - F.one_hot(y, z.shape[-1]).to(z.dtype)) * z).sum(-1)


def _jacobian(name, z):
    """The mapping's Jacobian in closed form: diag(s) - s s^T / |s| (sparsemax), diag(u) - u u^T / sum u."""
    p = MAPPINGS[name][1](z, -1)
    s = (p > 0).to(z.dtype) if name == "sparsemax" else p.sqrt()
    return torch.diag_embed(s) - s.unsqueeze(-1) * s.unsqueeze(-2) / s.sum(-1)[..., None, None]


# -- the mappings --------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_probabilities_equal_the_package_sum_to_one_and_have_exact_zeros(name):
    ours, theirs = MAPPINGS[name]
    z = _logits(40, 9)
    p = ours(z)
    torch.testing.assert_close(p, theirs(z, -1), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(p.sum(-1), torch.ones(40, dtype=z.dtype), rtol=0, atol=1e-12)
    assert (p >= 0).all() and (p == 0).any(-1)[2::7].all()  # a gap of 100 leaves one class
    cube = _logits(4, 5, 7, seed=3)
    for dim in (0, 1, -1):
        torch.testing.assert_close(ours(cube, dim=dim), theirs(cube, dim), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", NAMES)
def test_two_classes_have_the_closed_form(name):
    d = torch.linspace(-4, 4, 81, dtype=torch.float64)
    z = torch.stack([d, torch.zeros_like(d)], -1)
    if name == "sparsemax":  # hard sigmoid
        first = ((d + 1) / 2).clamp(0, 1)
    else:  # u1 - u2 = d/2, u1^2 + u2^2 = 1 while both are in the support
        h = d / 2
        first = torch.where(h.abs() >= 1, (h > 0).double(), ((h + (2 - h * h).clamp_min(0).sqrt()) / 2) ** 2)
    p = MAPPINGS[name][0](z)
    torch.testing.assert_close(p[:, 0], first, rtol=0, atol=1e-14)
    torch.testing.assert_close(p[:, 1], 1 - first, rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_a_masked_class_gets_exactly_zero_and_the_rest_is_unchanged(name):
    ours, theirs = MAPPINGS[name]
    z = _logits(8, 5, seed=4)
    masked = torch.cat([z, torch.full((8, 1), -math.inf, dtype=z.dtype)], -1)
    p = ours(masked)
    assert (p[:, -1] == 0).all()
    torch.testing.assert_close(p[:, :-1], theirs(z, -1), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", NAMES)
def test_probability_jacobian_is_the_closed_form_under_jacrev_jacfwd_and_vmap(name):
    ours = MAPPINGS[name][0]
    z = _logits(8, 6, seed=5)[[1, 3, 5, 6]]  # rows without ties at the support's edge
    expected = _jacobian(name, z)
    torch.testing.assert_close(vmap(jacrev(ours))(z), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(vmap(jacfwd(ours))(z), expected, rtol=1e-10, atol=1e-12)


def test_entmax15_rows_sum_to_one_in_float32_over_a_wide_support():
    """The Newton step on the threshold: the closed form alone is off by ~1e-3 here."""
    z = torch.full((2, 50000), -1.9)
    z[:, 0] = 0.0
    z = z + 1e-3 * torch.randn(z.shape, generator=torch.Generator().manual_seed(6))
    p = LF.entmax15_probabilities(z)
    assert ((p.double().sum(-1) - 1).abs() < 2e-4).all()
    torch.testing.assert_close(p.double(), entmax.entmax15(z.double(), -1), rtol=0, atol=1e-6)


def test_probabilities_refuse_bad_input_by_name():
    for fn in (LF.sparsemax_probabilities, LF.entmax15_probabilities):
        name = fn.__name__
        for bad in (torch.tensor(1.0), torch.ones(2, 0), torch.ones(3, dtype=torch.long), [1.0, 2.0]):
            with pytest.raises(ValueError, match=rf"^{name}: logits "):
                fn(bad)
        with pytest.raises(ValueError, match=rf"^{name}: dim "):
            fn(torch.ones(2, 3), dim=2)


# -- the losses ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_loss_and_gradient_equal_the_package_and_the_gradient_is_p_minus_onehot(name):
    z = _logits(40, 9, seed=7)
    y = _labels(40, classes=9)
    leaf = z.clone().requires_grad_()
    per = lossfn.get_loss(name).fn(leaf, y, reduction="none")
    (gradient,) = torch.autograd.grad(per.sum(), leaf)
    theirs = z.clone().requires_grad_()
    expected = LOSSES[name](theirs, y)
    (expected_gradient,) = torch.autograd.grad(expected.sum(), theirs)
    torch.testing.assert_close(per, expected.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(per, _primal(name, z, y), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gradient, expected_gradient, rtol=1e-12, atol=1e-12)
    p_minus_onehot = MAPPINGS[name][1](z, -1) - F.one_hot(y, 9).double()
    torch.testing.assert_close(gradient, p_minus_onehot, rtol=1e-12, atol=1e-12)
    assert (per >= -1e-12).all()


@pytest.mark.parametrize("name", NAMES)
def test_hessian_is_the_mapping_jacobian(name):
    z = _logits(8, 6, seed=5)[[1, 3, 5, 6]]
    y = _labels(4, classes=6)
    fn = lossfn.get_loss(name).fn
    per_row = vmap(hessian(lambda row, label: fn(row, label)))(z, y)
    torch.testing.assert_close(per_row, _jacobian(name, z), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_a_margin_gives_zero_loss(name):
    margin = 1.0 if name == "sparsemax" else 2.0  # p = e_y exactly from this margin on
    z = torch.tensor([[margin, 0.0, -3.0], [0.0, margin + 0.5, margin - 0.1]])
    per = lossfn.get_loss(name).fn(z, torch.tensor([0, 1]), reduction="none")
    assert per[0].item() == 0.0 and per[1].item() > 0.0


@pytest.mark.parametrize("name", NAMES)
def test_tokens_equal_the_package_on_flattened_tokens_with_ignored_positions(name):
    fn = lossfn.get_loss(name).fn
    z = _logits(3, 5, 7, seed=8)
    y = _labels(3, 5, classes=7, seed=9)
    y[0, 3:] = 2  # Ludwig's <PAD>
    y[2, 0] = -100  # Hugging Face's ignored label
    per_token = LOSSES[name](z.reshape(-1, 7), y.clamp_min(0).reshape(-1)).reshape(3, 5)
    keep = y != -100  # the default ignore_index: the <PAD> tokens count, the -100 does not
    expected = torch.where(keep, per_token, 0.0)
    torch.testing.assert_close(fn(z, y, reduction="none"), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fn(z, y), expected.sum() / keep.sum(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fn(z, y, reduction="sum"), expected.sum(), rtol=1e-12, atol=1e-12)
    y[2, 0] = 4
    package = entmax.SparsemaxLoss if name == "sparsemax" else entmax.Entmax15Loss
    for reduction, theirs in (("mean", "elementwise_mean"), ("sum", "sum")):  # the package's masked mean
        flat = package(ignore_index=2, reduction=theirs)(z.reshape(-1, 7), y.reshape(-1))
        torch.testing.assert_close(fn(z, y, ignore_index=2, reduction=reduction), flat, rtol=1e-12, atol=1e-12)
    # an ignored position's logits may hold anything: the value and the gradient stay out
    z[0, 4] = math.nan
    z[1, 1, 3] = math.inf
    y[1, 1] = 2
    leaf = z.clone().requires_grad_()
    loss = fn(leaf, y, ignore_index=2)
    (gradient,) = torch.autograd.grad(loss, leaf)
    assert torch.isfinite(loss) and torch.isfinite(gradient).all() and (gradient[y == 2] == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_one_example_and_one_sequence_equal_their_batched_rows(name):
    fn = lossfn.get_loss(name).fn
    z, y = _logits(4, 6, seed=10), _labels(4, classes=6)
    batched = fn(z, y, reduction="none")
    for i in range(4):
        torch.testing.assert_close(fn(z[i], y[i], reduction="none"), batched[i], rtol=0, atol=0)
    tokens, labels = _logits(2, 3, 6, seed=11), _labels(2, 3, classes=6)
    torch.testing.assert_close(fn(tokens[1], labels[1], reduction="none"), fn(tokens, labels, reduction="none")[1])


@pytest.mark.parametrize("name", NAMES)
def test_ludwig_number_is_the_package_loss_averaged_over_the_batch(name):
    """Ludwig's module: ``_GenericLoss(ignore_index=-100, reduction="elementwise_mean")``
    leaves nothing out (``ignore_index < 0``) and divides the sum by ``target.size(0)``."""
    z, y = _logits(12, 5, seed=12), _labels(12, classes=5)
    ludwig = _primal(name, z, y).sum() / y.shape[0]
    torch.testing.assert_close(lossfn.get_loss(name).fn(z, y), ludwig, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lossfn.get_loss(name).module()(z, y), ludwig, rtol=1e-12, atol=1e-12)
    package = entmax.SparsemaxLoss() if name == "sparsemax" else entmax.Entmax15Loss()
    torch.testing.assert_close(lossfn.get_loss(name).fn(z, y), package(z, y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_a_masked_class_is_finite_and_equals_the_loss_without_it(name):
    """The package (and Ludwig) give nan here: 0 * (-inf) in <p - e_y, z>."""
    fn = lossfn.get_loss(name).fn
    z, y = _logits(8, 5, seed=13), _labels(8, classes=5)
    masked = torch.cat([z, torch.full((8, 1), -math.inf, dtype=z.dtype)], -1).requires_grad_()
    loss = fn(masked, y, reduction="none")
    (gradient,) = torch.autograd.grad(loss.sum(), masked)
    torch.testing.assert_close(loss, LOSSES[name](z, y), rtol=1e-12, atol=1e-12)
    assert torch.isfinite(gradient).all() and (gradient[:, -1] == 0).all()
    assert torch.isnan(LOSSES[name](masked.detach(), y)).all()  # what the package gives


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_extreme_logits_are_finite_in_every_dtype(name, dtype):
    z = (_logits(8, 6, seed=14, dtype=torch.float32).sign() * 1e4).to(dtype)
    z[:, 0] = 6e4 if dtype == torch.float32 else z[:, 0]
    leaf = z.clone().requires_grad_()
    loss = lossfn.get_loss(name).fn(leaf, _labels(8, classes=6))
    (gradient,) = torch.autograd.grad(loss, leaf)
    assert loss.dtype == dtype and torch.isfinite(loss) and torch.isfinite(gradient).all()
    expected = LOSSES[name](z.double(), _labels(8, classes=6)).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-2, atol=1e-2)


def test_compiled_fullgraph_equals_eager():
    """One compilation for both losses on tokens (with ignored positions) and both mappings."""
    z = _logits(2, 4, 6, seed=15, dtype=torch.float32)
    y = _labels(2, 4, classes=6)
    y[1, 2:] = -100

    def everything(z, y):
        return (LF.sparsemax(z, y, reduction="none"), LF.entmax15(z, y, reduction="none"),
                LF.sparsemax_probabilities(z, dim=1), LF.entmax15_probabilities(z))

    torch._dynamo.reset()
    compiled = torch.compile(everything, fullgraph=True)
    for got, expected in zip(compiled(z, y), everything(z, y)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_tokens_under_vmap_and_an_empty_batch(name):
    fn = lossfn.get_loss(name).fn
    z, y = _logits(3, 2, 4, 5, seed=16), _labels(3, 2, 4, classes=5)
    torch.testing.assert_close(vmap(fn)(z, y), torch.stack([fn(a, b) for a, b in zip(z, y)]))
    empty = torch.zeros(0, 4, 5, requires_grad=True)
    mean = fn(empty, torch.zeros(0, 4, dtype=torch.long))
    (gradient,) = torch.autograd.grad(mean, empty)
    assert mean.item() == 0.0 and gradient.shape == empty.shape
    assert fn(empty, torch.zeros(0, 4, dtype=torch.long), reduction="none").shape == (0, 4)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_are_named_errors(name):
    spec = lossfn.get_loss(name)
    z, y = _logits(4, 5), _labels(4, classes=5)
    bad = [
        (z[None, None], y, "logits"),  # rank 4
        (torch.ones(4, 0), torch.zeros(4, dtype=torch.long), "logits"),  # no class
        (z, y.double(), "labels"),
        (z, y[:3], "labels"),
        (z.view(2, 2, 5), y, "labels"),
    ]
    for logits, labels, arg in bad:
        with pytest.raises(ValueError, match=rf"^{name}: {arg} "):
            spec.fn(logits, labels)
    module = spec.module()
    for value in (5, -1, -100):
        labels = y.clone()
        labels[0] = value
        if value == -100:  # the default ignore_index: left out, not refused
            assert torch.isfinite(module(z, labels))
            continue
        with pytest.raises(ValueError, match=rf"^{name}: labels "):
            module(z, labels)
    assert spec.prediction_rule(z.view(2, 2, 5)).shape == (2, 2)  # argmax over the vocabulary
