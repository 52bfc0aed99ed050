"""Values and gradients of ``ctc`` against independent references.

References, none of them lossfn:

- ``torch.nn.functional.ctc_loss`` on ``logits.log_softmax(-1)`` moved time first
  (``cases.ctc.torch_ctc``): values for every reduction and gradients with respect
  to the logits through the log-softmax, in float64;
- ``tests/data/ctc_optax.json``: ``optax.losses.ctc_loss`` per-sequence values and
  gradients, written by ``scripts/make_ctc_vectors.py``;
- closed forms: :math:`-\\log(1 - p^2)` for optax issue 1771's two confident frames,
  :math:`-\\sum_t \\log p_t(\\varnothing)` for an empty label.

The generic checks (transforms, reductions, configs, modules, dtypes) run over the
case in ``tests/cases/ctc.py`` in ``tests/test_conformance.py``.
"""

from __future__ import annotations

import json
import math
import pathlib

import pytest
import torch
from torch.func import grad, vmap

import lossfn
import lossfn.functional as LF
from lossfn.functional._ctc import log_likelihood

from cases.ctc import needed_frames, sequences, torch_ctc

OPTAX = json.loads((pathlib.Path(__file__).parent / "data" / "ctc_optax.json").read_text())
REDUCTIONS = ("none", "mean", "sum")
SHAPES = [  # (batch, steps, classes, width, labels drawn from [low, high], shortest label)
    (5, 6, 5, 3, 1, 3, 0),
    (4, 12, 4, 5, 1, 2, 0),  # many repeats
    (3, 30, 12, 8, 1, 10, 1),
]


def _float64(values):
    return torch.tensor(values, dtype=torch.float64)


def _inputs(batch, steps, classes, width, low, high, shortest, seed=0, padding=None):
    make = sequences(steps, classes, width, low=low, high=high, shortest=shortest, padding=padding)
    return make(batch, torch.float64, torch.Generator().manual_seed(seed))


def _value_and_grad(fn, logits, *rest, **params):
    leaf = logits.clone().requires_grad_()
    value = fn(leaf, *rest, **params)
    (gradient,) = torch.autograd.grad(value.sum(), leaf)
    return value.detach(), gradient


def _with_impossible(inputs):
    """Example 0's input cut to one frame fewer than its label needs: no alignment."""
    logits, labels, input_lengths, label_lengths = inputs
    fewest = needed_frames(labels, label_lengths)
    return logits, labels, input_lengths.index_put((torch.tensor([0]),), fewest[0] - 1), label_lengths


# -- torch ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("params", [{}, {"blank": "last"}, {"zero_infinity": True}], ids=str)
def test_values_and_gradients_equal_torch(shape, reduction, params):
    inputs = _inputs(*shape)
    if params.get("blank") == "last":
        params = {"blank": shape[2] - 1}
    ours, our_grad = _value_and_grad(LF.ctc, *inputs, reduction=reduction, **params)
    theirs, their_grad = _value_and_grad(torch_ctc, *inputs, reduction=reduction, **params)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(our_grad, their_grad, rtol=0, atol=1e-10)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_an_impossible_alignment_is_inf_or_zero_with_zero_infinity(reduction):
    """torch's number in both settings; with zero_infinity torch's gradient too. Without it the
    loss is inf, where torch's gradient is NaN everywhere and lossfn's is finite (0 for that example)."""
    inputs = _with_impossible(_inputs(*SHAPES[0][:-1], 2))
    assert torch.isinf(torch_ctc(*inputs, reduction="none"))[0]
    ours, our_grad = _value_and_grad(LF.ctc, *inputs, reduction=reduction, zero_infinity=True)
    theirs, their_grad = _value_and_grad(torch_ctc, *inputs, reduction=reduction, zero_infinity=True)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(our_grad, their_grad, rtol=0, atol=1e-10)
    assert (our_grad[0] == 0).all()
    ours, our_grad = _value_and_grad(LF.ctc, *inputs, reduction="none")
    torch.testing.assert_close(ours, torch_ctc(*inputs, reduction="none"), rtol=1e-12, atol=1e-12)
    assert math.isinf(ours[0]) and torch.isfinite(ours[1:]).all()
    assert torch.isfinite(our_grad).all() and (our_grad[0] == 0).all()
    _, their_grad = _value_and_grad(torch_ctc, *inputs, reduction="none")
    torch.testing.assert_close(our_grad[1:], their_grad[1:], rtol=0, atol=1e-10)  # the other examples: torch's


def test_masked_classes_give_torch_s_numbers_and_finite_gradients():
    """-inf logits (a masked class) make some paths impossible, never the gradient NaN. torch's
    value is the reference; its gradient is NaN at -inf logits, so the gradient's reference is
    torch's at -1e300, the same probabilities (exactly 0) with finite logits."""
    logits, labels, input_lengths, label_lengths = _inputs(*SHAPES[0][:-1], 1)
    masked = torch.zeros_like(logits, dtype=torch.bool).index_fill(2, torch.tensor([4]), True)  # never a label
    masked[0, 0, 0] = True  # example 0 cannot start with a blank
    masked[1, :, labels[1, 0]] = True  # example 1 has no alignment at all
    rest = (labels, input_lengths, label_lengths)
    for zero_infinity in (False, True):
        ours, our_grad = _value_and_grad(
            LF.ctc, torch.where(masked, -math.inf, logits), *rest, reduction="none", zero_infinity=zero_infinity
        )
        theirs = torch_ctc(torch.where(masked, -math.inf, logits), *rest, reduction="none", zero_infinity=zero_infinity)
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
        assert torch.isfinite(our_grad).all()
        _, their_grad = _value_and_grad(torch_ctc, torch.where(masked, -1e300, logits), *rest, reduction="none",
                                        zero_infinity=zero_infinity)
        possible = [0, 2, 3, 4]  # at -1e300 example 1 has a finite loss (1e300): no reference there
        torch.testing.assert_close(our_grad[possible], their_grad[possible], rtol=0, atol=1e-10)
        assert (our_grad[1] == 0).all()
        assert ours[1] == (0 if zero_infinity else math.inf)


def test_per_example_gradients_under_vmap_equal_torch_one_example_at_a_time():
    """What F.ctc_loss cannot do (it has no vmap rule): vmap(grad) over the examples."""
    inputs = _inputs(*SHAPES[1])
    per_example = vmap(grad(lambda *row: LF.ctc(*row)))(*inputs)
    for i in range(len(inputs[0])):
        row = [x[i : i + 1] for x in inputs]
        _, expected = _value_and_grad(torch_ctc, *row)
        torch.testing.assert_close(per_example[i], expected[0], rtol=0, atol=1e-10)


# -- optax ----------------------------------------------------------------------------


@pytest.mark.parametrize("vector", OPTAX["cases"], ids=lambda c: c["label"])
def test_values_and_gradients_equal_optax(vector):
    logits = _float64(vector["logits"])
    rest = tuple(torch.tensor(vector[key]) for key in ("labels", "input_lengths", "label_lengths"))
    ours, our_grad = _value_and_grad(LF.ctc, logits, *rest, blank=vector["blank"], reduction="none")
    torch.testing.assert_close(ours, _float64(vector["value"]), rtol=1e-12, atol=2e-16)
    torch.testing.assert_close(our_grad, _float64(vector["grad"]), rtol=0, atol=1e-12)
    module = lossfn.nn.Ctc(blank=vector["blank"], reduction="none")
    torch.testing.assert_close(module(logits, *rest), ours, rtol=0, atol=0)


def test_optax_issue_1771_is_never_negative():
    """Two confident frames: the true loss is -log(1 - p^2), p the blank's probability
    (1.7e-15): close to it in float64, and never below 0 in float32 (optax returns
    -8.3e-8 for scale 17), over a sweep of confidences, with torch's gradient."""
    p = 1 / (1 + math.exp(17.0))
    args = (torch.tensor([[1]]), torch.tensor([2]), torch.tensor([1]))
    in_float64 = LF.ctc(_float64([[[0.0, 17.0], [0.0, 17.0]]]), *args, reduction="none")
    torch.testing.assert_close(in_float64, _float64([-math.log1p(-p * p)]), rtol=0, atol=2e-16)
    scales = torch.linspace(5.0, 30.0, 101)[:, None, None]
    logits = torch.cat([torch.zeros_like(scales), scales], 2).expand(101, 2, 2)  # [101, 2, 2] float32
    batch = (torch.ones(101, 1, dtype=torch.int64), torch.full((101,), 2), torch.ones(101, dtype=torch.int64))
    ours, our_grad = _value_and_grad(LF.ctc, logits, *batch, reduction="none")
    _, their_grad = _value_and_grad(torch_ctc, logits, *batch, reduction="none")
    assert (ours >= 0).all() and (torch.copysign(torch.ones_like(ours), ours) == 1).all()  # not even -0.0
    torch.testing.assert_close(our_grad, their_grad, rtol=0, atol=1e-6)


def test_a_loss_that_rounds_below_zero_is_zero_with_torch_s_gradient():
    """Three confident frames (float32) where the forward algorithm's log-likelihood rounds
    to +1.0e-7 and F.ctc_loss returns -1.0e-7; the float64 value is +1.3e-8. lossfn gives 0,
    with the gradient of the unclamped loss (torch's)."""
    logits = torch.tensor([[[1.3384321928024292, 3.2717795372009277], [1.2464431524276733, 19.274478912353516],
                            [1.4425580501556396, 10.941644668579102]]])
    args = (torch.tensor([[1]]), torch.tensor([3]), torch.tensor([1]))
    assert log_likelihood(logits.log_softmax(-1), *args, 0).item() > 0  # what the clamp is for
    assert torch_ctc(logits, *args, reduction="none").item() < 0
    assert 0 < LF.ctc(logits.double(), *args, reduction="none").item() < 2e-8
    ours, our_grad = _value_and_grad(LF.ctc, logits, *args, reduction="none")
    _, their_grad = _value_and_grad(torch_ctc, logits, *args, reduction="none")
    assert ours.item() == 0 and math.copysign(1.0, ours.item()) == 1.0
    torch.testing.assert_close(our_grad, their_grad, rtol=0, atol=1e-6)
    assert our_grad.abs().max() > 0


def test_random_float32_losses_are_never_negative():
    generator = torch.Generator().manual_seed(5)
    for _ in range(20):
        logits, labels, input_lengths, label_lengths = sequences(6, 4, 2, low=1, high=3)(16, torch.float32, generator)
        blanks = torch.zeros(16, 2, dtype=torch.int64)
        path = torch.cat([labels[:, :1], blanks, labels[:, 1:], blanks], 1)  # a valid alignment, made certain
        confident = logits + 20 * torch.nn.functional.one_hot(path, 4)
        full = torch.full((16,), 6)
        assert (LF.ctc(confident, labels, full, torch.full((16,), 2), reduction="none") >= 0).all()
    # the batches above never round below 0 even without the clamp; these do (one label,
    # three frames, the label's logit up to 25 above the blank's), so the check can fail
    logits = torch.randn(1024, 3, 2, generator=generator)
    logits = logits + torch.tensor([0.0, 1.0]) * 25 * torch.rand(1024, 3, 1, generator=generator)
    args = (torch.ones(1024, 1, dtype=torch.int64), torch.full((1024,), 3), torch.ones(1024, dtype=torch.int64))
    assert (log_likelihood(logits.log_softmax(-1), *args, 0) > 0).any()  # what the clamp is for
    ours = LF.ctc(logits, *args, reduction="none")
    assert (ours >= 0).all() and (torch.copysign(torch.ones_like(ours), ours) == 1).all()  # not even -0.0


# -- reductions, lengths, padding, inputs ---------------------------------------------


def test_mean_is_torch_s_length_normalized_mean():
    """mean = mean_b(loss_b / max(L_b, 1)): an empty label divides by 1, not 0."""
    logits, labels, _, _ = _inputs(*SHAPES[0], seed=3)
    inputs = (logits, labels, torch.full((5,), 6), torch.tensor([0, 1, 2, 3, 0]))  # 6 frames fit any label
    none = torch_ctc(*inputs, reduction="none")
    expected = (none / _float64([1, 1, 2, 3, 1])).mean()
    torch.testing.assert_close(LF.ctc(*inputs), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(LF.ctc(*inputs, reduction="sum"), none.sum(), rtol=1e-12, atol=0)
    assert LF.ctc(*inputs) != none.mean()


def test_an_empty_label_is_the_blank_at_every_frame():
    logits, labels, input_lengths, _ = _inputs(*SHAPES[0])
    loss = LF.ctc(logits, labels, input_lengths, torch.zeros(5, dtype=torch.int64), reduction="none")
    frames = torch.arange(logits.shape[1]) < input_lengths[:, None]
    expected = -(logits.log_softmax(-1)[..., 0] * frames).sum(1)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)


def test_distributed_mean_is_the_mean_of_the_normalized_terms():
    inputs = _inputs(*SHAPES[0])
    leaf = inputs[0].clone().requires_grad_()
    got = lossfn.distributed.mean("ctc", leaf, *inputs[1:])
    mean = LF.ctc(leaf, *inputs[1:])
    torch.testing.assert_close(got, mean, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.autograd.grad(got, leaf)[0], torch.autograd.grad(mean, leaf)[0])
    assert lossfn.distributed.weight_sum("ctc", *inputs).item() == len(inputs[0])  # Σw: one per sequence


def test_padding_is_ignored_whatever_it_holds():
    """Labels past label_lengths (any value) and frames past input_lengths (NaN too) change nothing;
    the gradient there is 0."""
    logits, labels, input_lengths, label_lengths = _inputs(*SHAPES[2], padding=3)
    expected, expected_grad = _value_and_grad(LF.ctc, logits, labels, input_lengths, label_lengths, reduction="none")
    past_label = torch.arange(labels.shape[1]) >= label_lengths[:, None]
    past_input = torch.arange(logits.shape[1]) >= input_lengths[:, None]
    assert past_label.any() and past_input.any()
    for fill in (-100, 1000, 0):
        odd_labels = torch.where(past_label, fill, labels)
        odd_logits = torch.where(past_input[..., None], math.nan, logits)
        value, gradient = _value_and_grad(
            LF.ctc, odd_logits, odd_labels, input_lengths, label_lengths, reduction="none"
        )
        torch.testing.assert_close(value, expected, rtol=0, atol=0)
        torch.testing.assert_close(gradient, expected_grad, rtol=0, atol=0)
    assert (expected_grad[past_input] == 0).all()
    by_module = lossfn.nn.Ctc()(logits, torch.where(past_label, -1, labels), input_lengths, label_lengths)
    torch.testing.assert_close(by_module, LF.ctc(logits, labels, input_lengths, label_lengths))


def test_a_nan_within_an_input_s_length_is_nan_for_that_example_only():
    """A NaN (or +inf) logit inside the frames read gives NaN, never a number; zero_infinity keeps it."""
    logits, *rest = _inputs(*SHAPES[0])
    expected = LF.ctc(logits, *rest, reduction="none")
    for bad in (math.nan, math.inf):
        odd = logits.index_put((torch.tensor([1]), torch.tensor([0]), torch.tensor([4])), torch.tensor(bad).double())
        for zero_infinity in (False, True):
            value = LF.ctc(odd, *rest, reduction="none", zero_infinity=zero_infinity)
            assert torch.isnan(value[1])
            torch.testing.assert_close(value[[0, 2, 3, 4]], expected[[0, 2, 3, 4]], rtol=0, atol=0)
            assert torch.isnan(LF.ctc(odd, *rest, zero_infinity=zero_infinity))


def test_log_probabilities_give_the_same_loss():
    logits, *rest = _inputs(*SHAPES[0])
    torch.testing.assert_close(LF.ctc(logits.log_softmax(-1), *rest), LF.ctc(logits, *rest), rtol=1e-12, atol=0)


def test_one_sequence_equals_a_batch_of_one():
    inputs = _inputs(*SHAPES[1])
    for reduction in REDUCTIONS:
        one = LF.ctc(*(x[2] for x in inputs), reduction=reduction)
        batch = LF.ctc(*(x[2:3] for x in inputs), reduction=reduction)
        assert one.shape == ()
        torch.testing.assert_close(one, batch.reshape(()), rtol=0, atol=0)


def test_lengths_as_lists_and_hyperparameters_as_tensors():
    logits, labels, input_lengths, label_lengths = _inputs(*SHAPES[0][:-1], 2)
    expected = LF.ctc(logits, labels, input_lengths, label_lengths, blank=4)
    as_lists = LF.ctc(logits, labels, input_lengths.tolist(), label_lengths.tolist(), blank=4)
    torch.testing.assert_close(as_lists, expected, rtol=0, atol=0)
    torch.testing.assert_close(LF.ctc(logits, labels, input_lengths, label_lengths, blank=torch.tensor(4)), expected)
    short = _with_impossible((logits, labels, input_lengths, label_lengths))
    for zero_infinity in (False, True):
        as_tensor = LF.ctc(*short, zero_infinity=torch.tensor(zero_infinity), reduction="none")
        torch.testing.assert_close(as_tensor, LF.ctc(*short, zero_infinity=zero_infinity, reduction="none"))
    flags = torch.tensor([False, True])
    by_vmap = vmap(lambda flag: LF.ctc(*short, zero_infinity=flag, reduction="sum"))(flags)
    assert math.isinf(by_vmap[0]) and math.isfinite(by_vmap[1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    logits, *rest = _inputs(*SHAPES[2])
    half = logits.to(dtype)
    value = LF.ctc(half, *rest, reduction="none")
    assert value.dtype == dtype
    torch.testing.assert_close(value, LF.ctc(half.float(), *rest, reduction="none").to(dtype), rtol=0, atol=0)


# -- errors -----------------------------------------------------------------------------


def test_the_pure_function_checks_shapes_and_dtypes():
    logits, labels, input_lengths, label_lengths = _inputs(*SHAPES[0])
    bad = [
        ((logits[None], labels, input_lengths, label_lengths), "logits must be of shape"),
        ((logits, labels[:, :, None], input_lengths, label_lengths), "labels must be padded label sequences"),
        ((logits, labels[:4], input_lengths, label_lengths), r"labels must be .* of shape \[5, S\]"),
        ((logits, labels.float(), input_lengths, label_lengths), "labels must be integer"),
        ((logits, labels, input_lengths.float(), label_lengths), "input_lengths must be .* signed integer"),
        ((logits, labels, input_lengths[:4], label_lengths), r"input_lengths must be .* shape \[5\]"),
        ((logits, labels, input_lengths, label_lengths[:, None]), r"label_lengths must be .* shape \[5\]"),
        ((logits, labels, input_lengths, "3"), "label_lengths must be"),
        ((logits[0], labels[0], input_lengths, label_lengths[0]), r"input_lengths must be .* shape \[\]"),
    ]
    for inputs, message in bad:
        with pytest.raises(ValueError, match="^ctc: " + message):
            LF.ctc(*inputs)
    with pytest.raises(ValueError, match=r"^ctc: blank must be a class index in \[0, 4\]"):
        LF.ctc(logits, labels, input_lengths, label_lengths, blank=5)


def test_the_module_checks_label_values_and_lengths():
    logits, labels, input_lengths, label_lengths = _inputs(*SHAPES[0][:-1], 1)
    module = lossfn.nn.Ctc(blank=4)
    first = torch.tensor([0])
    module(logits, labels, input_lengths, label_lengths)  # valid
    cases = [
        ((logits, labels.index_fill(1, torch.tensor([0]), 5), input_lengths, label_lengths),
         r"labels must be class indices in \[0, 4\] within label_lengths; got values in \[\d, 5\]"),
        ((logits, labels.index_fill(1, torch.tensor([0]), -2), input_lengths, label_lengths), r"labels .*\[-2, \d\]"),
        ((logits, labels.index_fill(1, torch.tensor([0]), 4), input_lengths, label_lengths),
         r"labels must be labels other than the blank \(4\) within label_lengths; got 5 equal to it"),
        ((logits, labels, input_lengths.index_fill(0, first, 7), label_lengths),
         r"input_lengths must be lengths in \[0, 6\]"),
        ((logits, labels, input_lengths.index_fill(0, first, -1), label_lengths), r"input_lengths .*\[-1, \d\]"),
        ((logits, labels, input_lengths, label_lengths.index_fill(0, first, 4)),
         r"label_lengths must be lengths in \[0, 3\]"),
    ]
    for inputs, message in cases:
        with pytest.raises(ValueError, match="^ctc: " + message):
            module(*inputs)
    lossfn.nn.Ctc(blank=4, validate_inputs=False)(*cases[3][0])  # the check can be switched off (lengths clamped)
    unchecked = lossfn.nn.Ctc(blank=4, validate_inputs=False, reduction="none")(*cases[3][0])
    clamped = LF.ctc(logits, labels, input_lengths.index_fill(0, first, 6), label_lengths, blank=4, reduction="none")
    torch.testing.assert_close(unchecked, clamped, rtol=0, atol=0)  # 7 frames of 6 read as 6
    # 4 labels of 3 are read as 3, in the likelihood and in the mean's division by the length
    long = label_lengths.index_fill(0, first, 4)
    mean = lossfn.nn.Ctc(blank=4, validate_inputs=False)(logits, labels, input_lengths, long)
    per = LF.ctc(logits, labels, input_lengths, label_lengths.index_fill(0, first, 3), blank=4, reduction="none")
    torch.testing.assert_close(mean, (per / label_lengths.index_fill(0, first, 3).clamp_min(1)).mean())


@pytest.mark.parametrize("tied", [False, True], ids=["random", "all-zero logits (ties everywhere)"])
def test_second_derivatives_equal_differences_of_torch_s_gradient(tied):
    """Hessian-vector products against central differences of F.ctc_loss's gradient (torch has
    no double backward for it), with an impossible example present (zero_infinity)."""
    logits, *rest = _with_impossible(_inputs(*SHAPES[0][:-1], 2))
    logits = torch.zeros_like(logits) if tied else logits
    direction = torch.randn(logits.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def torch_gradient(x):
        return _value_and_grad(torch_ctc, x, *rest, zero_infinity=True)[1]

    step = 1e-5
    expected = (torch_gradient(logits + step * direction) - torch_gradient(logits - step * direction)) / (2 * step)
    _, product = torch.func.jvp(grad(lambda x: LF.ctc(x, *rest, zero_infinity=True)), (logits,), (direction,))
    torch.testing.assert_close(product, expected, rtol=0, atol=1e-7)
    hessian = torch.func.hessian(lambda x: LF.ctc(x, *rest, zero_infinity=True))(logits)
    assert torch.isfinite(hessian).all()
    torch.testing.assert_close((hessian * direction).sum((3, 4, 5)), product, rtol=0, atol=1e-10)
