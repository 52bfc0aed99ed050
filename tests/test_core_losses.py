"""Values of the core losses against torch.nn.functional, beyond the generic catalog:
probability labels, per-pixel logits, input errors, and the module's range checks."""

from __future__ import annotations

import inspect
import json
import math
import pathlib

import pytest
import torch
import torch.nn.functional as F

import lossfn
from lossfn import functional as LF

REDUCTIONS = ("none", "mean", "sum")


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_probability_labels_match_torch(gen, reduction, weighted, smoothing):
    logits = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    labels = torch.softmax(torch.randn(7, 4, generator=gen, dtype=torch.float64), dim=1)
    weights = [0.5, 1.0, 2.0, 3.0] if weighted else None
    expected = F.cross_entropy(
        logits, labels, weight=None if weights is None else torch.tensor(weights, dtype=torch.float64),
        label_smoothing=smoothing, reduction=reduction,
    )
    actual = LF.softmax_cross_entropy(logits, labels, class_weights=weights, label_smoothing=smoothing, reduction=reduction)
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_per_pixel_matches_torch(gen, reduction):
    logits = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 4, 5), generator=gen)
    weights = torch.tensor([1.0, 0.2, 5.0], dtype=torch.float64)
    expected = F.cross_entropy(logits, labels, weight=weights, label_smoothing=0.1, reduction=reduction)
    actual = LF.softmax_cross_entropy(logits, labels, class_weights=weights, label_smoothing=0.1, reduction=reduction)
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-9)


def test_one_hot_and_index_labels_agree(gen):
    logits = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 5, (6,), generator=gen)
    one_hot = F.one_hot(labels, 5).to(torch.float64)
    torch.testing.assert_close(LF.softmax_cross_entropy(logits, one_hot), LF.softmax_cross_entropy(logits, labels))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sigmoid_cross_entropy_is_torch_for_every_reduction(gen, reduction):
    logits = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    labels = torch.rand(5, 3, generator=gen, dtype=torch.float64)  # probabilities are fine
    pos_weight = torch.tensor([1.0, 4.0, 0.5], dtype=torch.float64)
    expected = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight, reduction=reduction)
    ours = LF.sigmoid_cross_entropy(logits, labels, class_weights=pos_weight, reduction=reduction)
    torch.testing.assert_close(ours, expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mean_squared_error_on_4x3_is_torchs(gen, reduction):
    """The issue's example: on [4, 3] "sum" was 4.07 where F.mse_loss gives 12.20."""
    x, y = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    torch.testing.assert_close(LF.mean_squared_error(x, y, reduction=reduction), F.mse_loss(x, y, reduction=reduction))
    assert LF.mean_squared_error(x, y, reduction="none").shape == (4, 3)


def test_all_zero_class_weights_give_zero_not_nan(gen):
    logits = torch.randn(4, 3, generator=gen, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    loss = LF.softmax_cross_entropy(logits, labels, class_weights=[0.0, 0.0, 1.0])
    (gradient,) = torch.autograd.grad(loss, logits)
    assert loss.item() == 0.0 and torch.equal(gradient, torch.zeros_like(gradient))
    assert torch.isnan(F.cross_entropy(logits, labels, weight=torch.tensor([0.0, 0.0, 1.0])))  # torch: nan


BAD_INPUTS = [
    ("softmax_cross_entropy", torch.randn(()), torch.zeros((), dtype=torch.long), r"logits must be of shape \[B, C\], \[B, C, d1, ...\] or \[C\]; got shape \[\]"),
    ("softmax_cross_entropy", torch.randn(4), torch.zeros(4, dtype=torch.long), r"labels must be class indices of shape \[\] for logits \[4\]; got shape \[4\]"),
    ("softmax_cross_entropy", torch.randn(4, 3), torch.zeros(4, dtype=torch.uint8), r"labels must be integer class indices or float probabilities of a signed integer dtype .*uint8 indexes as a mask"),
    ("softmax_cross_entropy", torch.randn(4, 3), torch.zeros(4, 3, 1), "labels must be probabilities of the logits' shape"),
    ("softmax_cross_entropy", torch.randn(4, 3), torch.zeros(4, dtype=torch.bool), "integer class indices or float probabilities"),
    ("softmax_cross_entropy", torch.randn(4, 3), torch.zeros(5, dtype=torch.long), r"class indices of shape \[4\] for logits \[4, 3\]; got shape \[5\]"),
    ("softmax_cross_entropy", torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long), "logits must be a floating-point tensor"),
    ("softmax_cross_entropy", [[0.0, 1.0]], torch.zeros(1, dtype=torch.long), "logits must be a torch.Tensor; got list"),
    ("sigmoid_cross_entropy", torch.randn(()), torch.zeros(()), r"logits must be of shape \[B, C\], \[B, C, ...\] or \[C\]; got shape \[\]"),
    ("sigmoid_cross_entropy", torch.randn(4, 3), torch.zeros(4, 3, dtype=torch.complex64), r"labels must be real numbers; got dtype torch.complex64"),
    ("sigmoid_cross_entropy", torch.randn(4, 3), torch.zeros(4, 2), r"same shape as logits \[4, 3\]; got shape \[4, 2\]"),
    ("mean_squared_error", torch.randn(4, 1), torch.randn(4), r"labels must be of the same shape as predictions \[4, 1\]; got shape \[4\]"),
    ("mean_absolute_error", torch.randn(4), torch.randn(4, 1), r"labels must be of the same shape as predictions \[4\]; got shape \[4, 1\]"),
    ("mean_squared_error", torch.randn(4), torch.randn(4, dtype=torch.complex64), r"labels must be real numbers"),
]


@pytest.mark.parametrize("name,logits,labels,message", BAD_INPUTS, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_INPUTS)])
def test_bad_tensors_name_loss_argument_and_expectation(name, logits, labels, message):
    with pytest.raises(ValueError, match=rf"^{name}: .*{message}"):
        lossfn.get_loss(name).fn(logits, labels)


def test_class_weights_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"^softmax_cross_entropy: class_weights must be of shape \[3\]; got shape \[2\]"):
        LF.softmax_cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), class_weights=[1.0, 2.0])


def test_module_checks_label_range_and_can_skip_it():
    logits, labels = torch.randn(3, 4), torch.tensor([0, 4, 1])
    with pytest.raises(ValueError, match=r"^softmax_cross_entropy: labels must be class indices in \[0, 3\] or the ignore_index; got values in \[0, 4\]"):
        lossfn.nn.SoftmaxCrossEntropy()(logits, labels)
    with pytest.raises(ValueError, match=r"in \[0, 3\] or the ignore_index; got values in \[-1, 1\]"):
        lossfn.nn.SoftmaxCrossEntropy()(logits, torch.tensor([0, -1, 1]))
    # the ignored label passes the check, whatever its value
    assert torch.isfinite(lossfn.nn.SoftmaxCrossEntropy()(logits, torch.tensor([0, -100, 1])))
    assert torch.isfinite(lossfn.nn.SoftmaxCrossEntropy(ignore_index=-1)(logits, torch.tensor([0, -1, 1])))
    unchecked = lossfn.nn.SoftmaxCrossEntropy(validate_inputs=False)
    # torch's own words from deep inside its kernel, with the loss and the argument named
    with pytest.raises(ValueError, match=r"^softmax_cross_entropy: labels must be class or token indices .*out of bounds"):
        unchecked(logits, labels)


def test_module_arguments_are_keyword_only_and_checked():
    with pytest.raises(TypeError, match=r"SoftmaxCrossEntropy\(\): .*positional"):
        lossfn.nn.SoftmaxCrossEntropy([1.0, 2.0])
    with pytest.raises(TypeError, match=r"SoftmaxCrossEntropy\(\): .*unexpected keyword argument 'smoothing'"):
        lossfn.nn.SoftmaxCrossEntropy(smoothing=0.1)
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: reduction must be one of"):
        lossfn.nn.SoftmaxCrossEntropy(reduction="batchmean")


def test_module_accepts_a_tensor_parameter_and_keeps_it():
    weights = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    module = lossfn.nn.SoftmaxCrossEntropy(class_weights=weights)
    assert module.class_weights.dtype == torch.float64 and module.config.class_weights == [1.0, 2.0, 3.0]
    # the tensor itself, as torch.nn.CrossEntropyLoss(weight=w).weight is w
    assert module.class_weights is weights and torch.nn.CrossEntropyLoss(weight=weights).weight is weights


def test_from_config_rejects_another_loss_config():
    cfg = lossfn.decode_config({"type": "mean_squared_error"})
    with pytest.raises(TypeError, match="SoftmaxCrossEntropy.from_config takes a SoftmaxCrossEntropyConfig"):
        lossfn.nn.SoftmaxCrossEntropy.from_config(cfg)


@pytest.mark.parametrize("name", ["binary_weighted_cross_entropy", "bi_tempered_binary_logistic_loss"])
def test_binary_modules_check_targets_lie_in_the_unit_interval(name):
    logits = torch.zeros(3)
    with pytest.raises(ValueError, match=rf"^{name}: labels must be targets in \[0, 1\]; got values in \[-0.5, 1\]"):
        lossfn.get_loss(name).module()(logits, torch.tensor([0.0, -0.5, 1.0]))
    assert torch.isfinite(lossfn.get_loss(name).module()(logits, torch.tensor([True, False, True])))
    # a NaN target fails the comparison `0 <= low and high <= 1` instead of slipping through it
    with pytest.raises(ValueError, match=rf"^{name}: labels must be targets in \[0, 1\]; got values in \[nan, nan\]"):
        lossfn.get_loss(name).module()(logits, torch.tensor([0.0, float("nan"), 1.0]))


@pytest.mark.parametrize("name", ["corn", "sequence_softmax_cross_entropy", "softmax_cross_entropy"])
def test_boolean_labels_are_no_class_indices(name):
    logits = torch.zeros(2, 3, 4) if name.startswith("sequence") else torch.zeros(2, 4)
    labels = torch.zeros(logits.shape[:-1] if name.startswith("sequence") else (2,), dtype=torch.bool)
    with pytest.raises(ValueError, match=rf"^{name}: labels must be integer (class|token) indices.*; got dtype torch.bool"):
        lossfn.get_loss(name).fn(logits, labels)


# -- ignore_index: left out whatever the logits hold ------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("options", [{}, {"class_weights": [1.0, 2.0, 0.5]}, {"label_smoothing": 0.1},
                                     {"robust_lambda": 0.2, "confidence_penalty": 0.3}])
def test_ignored_positions_leave_the_loss_whatever_their_logits(gen, bad, options):
    logits = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    logits[1] = bad  # a padded position's logits: NaN or infinite
    labels = torch.tensor([0, -100, 2, 1, 2])
    kept = labels != -100
    leaf = logits.clone().requires_grad_()
    for reduction in REDUCTIONS:
        value = LF.softmax_cross_entropy(leaf, labels, **options, reduction=reduction)
        expected = LF.softmax_cross_entropy(logits[kept], labels[kept], **options, reduction=reduction)
        if reduction == "none":
            assert value[1].item() == 0.0
            torch.testing.assert_close(value[kept], expected)
        else:
            torch.testing.assert_close(value, expected)
    if not options:  # and torch's ignore_index gives the same number
        torch.testing.assert_close(LF.softmax_cross_entropy(logits, labels), F.cross_entropy(logits, labels))
    (gradient,) = torch.autograd.grad(LF.softmax_cross_entropy(leaf, labels, **options), leaf)
    assert torch.isfinite(gradient[kept]).all()


def test_sequence_padding_with_nan_logits_is_left_out(gen):
    """Before, ``loss * mask`` made the whole mean NaN (0 · NaN); torch's ignore_index gives a number."""
    logits = torch.randn(2, 4, 5, generator=gen)
    labels = torch.tensor([[1, 3, 2, 2], [4, 0, 1, 2]])  # 2 is Ludwig's <PAD>
    logits[labels == 2] = float("nan")
    expected = F.cross_entropy(logits.reshape(-1, 5), labels.reshape(-1), ignore_index=2)
    for options in ({}, {"robust_lambda": 0.1}, {"unique": True}):
        assert torch.isfinite(LF.sequence_softmax_cross_entropy(logits, labels, **options))
    torch.testing.assert_close(LF.sequence_softmax_cross_entropy(logits, labels), expected)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "corn", "bi_tempered_logistic_loss",
                                  "sequence_softmax_cross_entropy", "next_token_softmax_cross_entropy"])
def test_unsigned_class_indices_are_refused(name):
    logits = torch.zeros(2, 3, 4) if "sequence" in name or "next_token" in name else torch.zeros(2, 4)
    labels = torch.zeros(logits.shape[:-1] if logits.ndim == 3 else (2,), dtype=torch.uint8)
    with pytest.raises(ValueError, match=rf"^{name}: labels must be integer .* of a signed integer dtype"):
        lossfn.get_loss(name).fn(logits, labels)


def test_one_example_without_a_batch_dimension_as_in_torch(gen):
    logits, label = torch.randn(5, generator=gen), torch.tensor(3)
    torch.testing.assert_close(LF.softmax_cross_entropy(logits, label), F.cross_entropy(logits, label))
    assert LF.softmax_cross_entropy(logits, label, reduction="none").shape == ()
    # the torch.func tutorial's per-example gradients, with no unsqueeze
    batch, labels = torch.randn(4, 5, generator=gen), torch.tensor([0, 1, 2, 3])
    per_example = torch.func.vmap(torch.func.grad(LF.softmax_cross_entropy))(batch, labels)
    expected = torch.func.vmap(torch.func.grad(F.cross_entropy))(batch, labels)
    torch.testing.assert_close(per_example, expected)


# -- a masked class (logit -inf) under probability targets with no mass there (optax #896) ----

OPTAX_SAFE_CE = json.loads((pathlib.Path(__file__).parent / "data" / "likelihood_optax.json").read_text())["cases"]


def _masked_logits(case):
    logits = torch.tensor(case["logits"], dtype=torch.float64)
    for row, column in case["masked"]:
        logits[row, column] = -math.inf
    return logits


@pytest.mark.parametrize("case", OPTAX_SAFE_CE, ids=[c["label"] for c in OPTAX_SAFE_CE])
def test_probability_targets_with_a_masked_class_are_optaxs_safe_cross_entropy(case):
    """optax.losses.safe_softmax_cross_entropy (stored vectors): 0 · log 0 = 0 at the masked
    class; F.cross_entropy (and optax's softmax_cross_entropy) give NaN there."""
    logits, labels = _masked_logits(case), torch.tensor(case["labels"], dtype=torch.float64)
    leaf = logits.clone().requires_grad_()
    value = LF.softmax_cross_entropy(leaf, labels, reduction="none")
    (gradient,) = torch.autograd.grad(value.sum(), leaf)
    torch.testing.assert_close(value.detach(), torch.tensor(case["value"], dtype=torch.float64), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(gradient, torch.tensor(case["gradient"], dtype=torch.float64), rtol=1e-12, atol=1e-13)
    assert torch.isnan(F.cross_entropy(logits, labels, reduction="none")).any() == case["softmax_cross_entropy_is_nan"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", [{}, {"class_weights": [1.0, 2.0, 0.5, 3.0]}, {"robust_lambda": 0.2},
                                     {"confidence_penalty": 0.3}, {"ignore_index": 1}])
def test_probability_targets_with_a_masked_class_are_the_cross_entropy_over_the_others(gen, reduction, options):
    """The last class masked (-inf, no target mass) in every example: the number is the one
    over the other classes, finite, and the masked class gets a zero gradient."""
    logits = 3 * torch.randn(6, 4, generator=gen, dtype=torch.float64)
    logits[:, 3] = -math.inf
    labels = torch.softmax(torch.randn(6, 3, generator=gen, dtype=torch.float64), 1)
    labels = torch.cat([labels, torch.zeros(6, 1, dtype=torch.float64)], 1)
    leaf = logits.clone().requires_grad_()
    value = LF.softmax_cross_entropy(leaf, labels, **options, reduction=reduction)
    (gradient,) = torch.autograd.grad(value.sum(), leaf)
    assert torch.isfinite(value).all() and torch.isfinite(gradient).all() and (gradient[:, 3] == 0).all()
    live = {k: v[:3] if k == "class_weights" else v for k, v in options.items()}
    # over the three live classes the options mean the same, save the penalties' 1/C and log C
    if "robust_lambda" in options or "confidence_penalty" in options:
        log_p = torch.log_softmax(logits[:, :3], 1)
        ce = -(labels[:, :3] * log_p).sum(1)
        lam, beta = options.get("robust_lambda", 0.0), options.get("confidence_penalty", 0.0)
        entropy = -(log_p.exp() * log_p).sum(1)
        expected = (1 - lam) * ce + lam / 4 + beta * (1 - entropy / math.log(4))
        expected = {"none": expected, "sum": expected.sum(), "mean": expected.mean()}[reduction]
    else:  # ignore_index does not apply to probabilities
        weight = None if "class_weights" not in live else torch.tensor(live["class_weights"], dtype=torch.float64)
        expected = F.cross_entropy(logits[:, :3], labels[:, :3], weight=weight, reduction=reduction)
    torch.testing.assert_close(value.detach(), expected)


# -- z-loss and the fast paths of the softmax family (issue 13) ------------------------------


def _lse(x):
    """log Σ_c exp(x_c) over the last dimension, written out (float64: no overflow here)."""
    return x.exp().sum(-1).log()


def _z_reference(x, y, *, z, weights=None, ignore=-100, smoothing=0.0):
    """Per-example CE (label-smoothed: (1-ε)·w_y·nll + ε/C·Σ_c w_c·(-log p_c)) + s·z·lse² (s = w_y),
    0 where y is ignored; the weighted mean's denominator."""
    keep = y != ignore
    safe = torch.where(keep, y, 0)
    s = torch.ones(y.shape, dtype=x.dtype) if weights is None else weights[safe]
    w = torch.ones(x.shape[-1], dtype=x.dtype) if weights is None else weights
    log_p = x - _lse(x).unsqueeze(-1)
    nll = s * (-log_p.gather(-1, safe.unsqueeze(-1)).squeeze(-1))
    ce = (1 - smoothing) * nll + smoothing / x.shape[-1] * (-(log_p * w).sum(-1))
    per = ce + s * z * _lse(x) ** 2
    per = torch.where(keep, per, 0.0)
    return per, torch.where(keep, s, 0.0).sum()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])  # torch's kernel, and lossfn's own log-softmax path
def test_z_loss_is_the_closed_form(gen, reduction, weighted, smoothing):
    x = (3 * torch.randn(9, 5, generator=gen, dtype=torch.float64)).requires_grad_()
    y = torch.randint(0, 5, (9,), generator=gen)
    y[2] = -100
    weights = 0.5 + torch.rand(5, generator=gen, dtype=torch.float64) if weighted else None
    per, total = _z_reference(x, y, z=0.3, weights=weights, smoothing=smoothing)
    expected = {"none": per, "sum": per.sum(), "mean": per.sum() / total}[reduction]
    actual = LF.softmax_cross_entropy(x, y, z_loss=0.3, class_weights=weights, label_smoothing=smoothing,
                                      reduction=reduction)
    torch.testing.assert_close(actual, expected)
    # the gradient too: the log-sum-exp comes from the loss's own pass, its gradient through it
    torch.testing.assert_close(*(torch.autograd.grad(v.sum(), x)[0] for v in (actual, expected)))


@pytest.mark.parametrize("name", ["sequence_softmax_cross_entropy", "next_token_softmax_cross_entropy"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sequence_z_loss_is_the_closed_form_on_the_shifted_tokens(gen, name, reduction):
    x = 2 * torch.randn(3, 6, 7, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 7, (3, 6), generator=gen)
    y[0, 4:] = 2
    shift = name.startswith("next")
    xs, ys = (x[:, :-1], y[:, 1:]) if shift else (x, y)
    per, total = _z_reference(xs, ys, z=0.05, ignore=2)
    expected = {"none": per, "sum": per.sum(), "mean": per.sum() / total}[reduction]
    actual = getattr(LF, name)(x, y, z_loss=0.05, padding_index=2, reduction=reduction)
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "sequence_softmax_cross_entropy",
                                  "next_token_softmax_cross_entropy"])
def test_zero_z_loss_is_torchs_kernel_bit_for_bit(gen, name):
    """z_loss=0 (and the defaults) are F.cross_entropy itself: the same value and gradient, exactly."""
    seq = name != "softmax_cross_entropy"
    x = torch.randn(*((2, 5, 6) if seq else (8, 6)), generator=gen).requires_grad_()
    y = torch.randint(0, 6, x.shape[:-1], generator=gen)
    ignore = 2 if name.startswith("sequence") else -100
    if name.startswith("next"):
        y[0, 3] = -100
        flat_x, flat_y = x[:, :-1].reshape(-1, 6), y[:, 1:].reshape(-1)
    else:
        flat_x, flat_y = x.reshape(-1, 6), y.reshape(-1)
    for reduction in ("mean", "sum"):
        expected = F.cross_entropy(flat_x, flat_y, ignore_index=ignore, reduction=reduction)
        (expected_grad,) = torch.autograd.grad(expected, x)
        for params in ({}, {"z_loss": 0.0}):
            actual = getattr(LF, name)(x, y, reduction=reduction, **params)
            (grad,) = torch.autograd.grad(actual, x)
            assert torch.equal(actual, expected) and torch.equal(grad, expected_grad)


def test_fast_mean_with_every_label_ignored_is_zero_with_a_zero_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    loss = LF.softmax_cross_entropy(x, torch.full((4,), -100))
    (gradient,) = torch.autograd.grad(loss, x)
    assert loss.item() == 0.0 and torch.equal(gradient, torch.zeros_like(x))
    nan = torch.full((4, 3), torch.nan)  # a kept NaN stays NaN (the mend does not hide it)
    assert torch.isnan(LF.softmax_cross_entropy(nan, torch.tensor([0, 1, -100, 2])))
    with torch.no_grad():  # the mend turns autograd off for its write and back to what it was
        assert LF.softmax_cross_entropy(x, torch.full((4,), -100)).item() == 0.0
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    # compiled, the mend is a where (no in-place write on a graph's output): the same answers
    compiled = torch.compile(LF.softmax_cross_entropy, fullgraph=True, backend="aot_eager")
    loss = compiled(x, torch.full((4,), -100))
    (gradient,) = torch.autograd.grad(loss, x)
    assert loss.item() == 0.0 and torch.equal(gradient, torch.zeros_like(x))
    assert torch.isnan(compiled(nan, torch.tensor([0, 1, -100, 2])))


def test_z_loss_as_a_tensor_under_grad_and_vmap(gen):
    from torch.func import grad, vmap

    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=gen)
    # d mean / dz = mean of lse², written out
    slope = grad(lambda z: LF.softmax_cross_entropy(x, y, z_loss=z))(torch.tensor(0.1, dtype=torch.float64))
    torch.testing.assert_close(slope, (_lse(x) ** 2).mean())
    grid = torch.tensor([0.0, 0.01, 0.5], dtype=torch.float64)
    swept = vmap(lambda z: LF.next_token_softmax_cross_entropy(x[None], y[None], z_loss=z))(grid)
    looped = torch.stack([_z_reference(x[:-1], y[1:], z=float(z))[0].mean() for z in grid])
    torch.testing.assert_close(swept, looped)


def test_next_token_last_step_gets_no_gradient_and_none_drops_it(gen):
    x = torch.randn(2, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (2, 4), generator=gen)
    for params in ({}, {"label_smoothing": 0.1, "z_loss": 0.1}, {"unique": True}):
        (gradient,) = torch.autograd.grad(LF.next_token_softmax_cross_entropy(x, y, **params), x)
        assert torch.equal(gradient[:, -1], torch.zeros(2, 5, dtype=torch.float64))
        assert gradient[:, :-1].abs().sum() > 0
        assert LF.next_token_softmax_cross_entropy(x, y, reduction="none", **params).shape == (2, 3)


@pytest.mark.parametrize("name,logits,labels,ok", [
    ("softmax_cross_entropy", torch.zeros(3, 4), torch.tensor([0, -100, 3]), True),
    ("softmax_cross_entropy", torch.zeros(3, 4), torch.tensor([0, -1, 3]), False),
    ("softmax_cross_entropy", torch.zeros(3, 4), torch.tensor([0, 4, 3]), False),
    ("sequence_softmax_cross_entropy", torch.zeros(1, 3, 2), torch.tensor([[0, 2, 1]]), True),  # <PAD> = 2 >= C
    ("sequence_softmax_cross_entropy", torch.zeros(1, 3, 2), torch.tensor([[0, 3, 1]]), False),
    ("next_token_softmax_cross_entropy", torch.zeros(1, 3, 4), torch.tensor([[0, -100, 1]]), True),
])
def test_the_label_check_lets_the_ignored_label_through_and_nothing_else(name, logits, labels, ok):
    """One aminmax read decides labels in [0, C); the ignored label outside it gets a second look."""
    spec = lossfn.get_loss(name)
    check = spec.validate(logits, labels, **spec.defaults)
    verdict = check.verdict()
    assert (verdict is None) == ok
    if not ok:
        ignored = "ignore_index" if name == "softmax_cross_entropy" else "padding_index"
        what = "class" if name == "softmax_cross_entropy" else "token"
        low, high = int(labels.min()), int(labels.max())
        assert str(verdict) == (f"{name}: labels must be {what} indices in [0, {logits.shape[-1] - 1}] or the "
                                f"{ignored}; got values in [{low}, {high}]")


@pytest.mark.parametrize("logits,labels,message", [
    (torch.randn(4, 3), torch.zeros(4, 1, dtype=torch.long), r"class indices of shape \[4\] for logits \[4, 3\]; got shape \[4, 1\]"),
    (torch.randn(4, 3), torch.zeros(1, dtype=torch.long), r"class indices of shape \[4\] for logits \[4, 3\]; got shape \[1\]"),
    (torch.randn(2, 3, 5), torch.zeros(2, 3, dtype=torch.long), r"class indices of shape \[2, 5\] for logits \[2, 3, 5\]; got shape \[2, 3\]"),
    (torch.randn(4, 3), torch.zeros(4, dtype=torch.long, device="meta"), r"labels must be on the device of logits \(cpu\); got a tensor on meta"),
    (torch.randn(4, 3, dtype=torch.float64), torch.zeros(4, dtype=torch.bool), "integer class indices or float probabilities; got dtype torch.bool"),
])
def test_inputs_the_fast_path_turns_down_get_the_named_error(logits, labels, message):
    """float32/float64 logits, int64 labels, torch's options: each condition of the fast path that
    fails sends the call to the checks (no broadcast, no kernel error from another device)."""
    for reduction in ("mean", "sum"):
        with pytest.raises(ValueError, match=rf"^softmax_cross_entropy: .*{message}"):
            LF.softmax_cross_entropy(logits, labels, reduction=reduction)


def test_next_token_labels_of_a_small_dtype_take_any_padding_index(gen):
    """int8 labels with a padding index outside int8's range: the shift's padding label does not
    overflow (the labels are int64 first), and the number is torch's on the sliced tokens."""
    x = torch.randn(2, 5, 6, generator=gen)
    y = torch.randint(0, 6, (2, 5), generator=gen)
    for reduction in REDUCTIONS:
        expected = F.cross_entropy(x[:, :-1].reshape(-1, 6), y[:, 1:].reshape(-1), reduction=reduction)
        actual = LF.next_token_softmax_cross_entropy(x, y.to(torch.int8), padding_index=300, reduction=reduction)
        torch.testing.assert_close(actual, expected if reduction != "none" else expected.view(2, 4))


def test_the_module_check_lets_a_tensor_ignore_index_through(gen):
    """ignore_index as a 0-d integer tensor (which the checker accepts): its label passes the
    module's range check as the int would, and any other label out of range still fails."""
    x = torch.randn(4, 3, generator=gen)
    y = torch.tensor([0, -100, 2, 1])
    module = lossfn.nn.SoftmaxCrossEntropy(ignore_index=torch.tensor(-100))
    torch.testing.assert_close(module(x, y), F.cross_entropy(x, y))
    with pytest.raises(ValueError, match=r"in \[0, 2\] or the ignore_index; got values in \[-1, 2\]"):
        module(x, torch.tensor([0, -1, 2, 1]))


def test_every_option_off_its_default_leaves_torchs_reduced_kernel(monkeypatch):
    """The fast path of softmax_cross_entropy restates its options' test inline: an option it
    forgot would be dropped silently. Each one set (and any new one, which fails the first
    assert until it is listed here) must reach lossfn's own terms, never torch_reduced."""
    from lossfn.functional import _softmax

    options = {
        "class_weights": [1.0, 2.0, 0.5],
        "robust_lambda": 0.1,
        "confidence_penalty": 0.1,
        "class_similarities": [[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]],
        "class_similarities_temperature": 0.5,
        "label_smoothing": 0.1,
        "z_loss": 0.1,
    }
    keywords = set(inspect.signature(LF.softmax_cross_entropy).parameters) - {"logits", "labels"}
    assert keywords - {"ignore_index", "reduction"} == set(options)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    reference = {reduction: LF.softmax_cross_entropy(x, y, reduction=reduction) for reduction in ("mean", "sum")}

    def refused(*_args, **_kwargs):
        raise AssertionError("torch_reduced took a call with an option set")

    monkeypatch.setattr(_softmax, "torch_reduced", refused)
    for name, value in options.items():
        if name == "class_similarities_temperature":
            continue  # set with the similarities, below
        params = {name: value}
        if name == "class_similarities":
            params["class_similarities_temperature"] = options["class_similarities_temperature"]
        for reduction in ("mean", "sum"):
            value_ = LF.softmax_cross_entropy(x, y, reduction=reduction, **params)
            assert not torch.equal(value_, reference[reduction]), (name, reduction)
