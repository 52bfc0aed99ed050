"""Numbers that never lie: no silent result where an error is due, finite where the math is.

Each expected value is a closed form written here, in float64.
"""

from __future__ import annotations

import math

import pytest
import torch

import lossfn
import lossfn.functional as LF

# -- root mean squares: NaN in, NaN out; 1e30 in, 1e30 out ------------------------------


@pytest.mark.parametrize("name", ["root_mean_squared_error", "root_mean_squared_percentage_error"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_root_mean_squares_do_not_overflow_where_the_value_is_representable(name, reduction):
    labels = torch.tensor([1.0, 2.0, -4.0])
    predictions = torch.tensor([3e29, -1e30, 2e29], requires_grad=True)
    x, y = predictions.detach().double(), labels.double()
    error = (x - y) if name == "root_mean_squared_error" else (y - x) / y
    expected = {"mean": error.square().mean().sqrt(), "sum": error.abs().sum(), "none": error.abs()}[reduction]
    loss = getattr(LF, name)(predictions, labels, reduction=reduction)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=0)
    (gradient,) = torch.autograd.grad(loss.sum(), predictions)
    assert torch.isfinite(gradient).all()
    if reduction == "mean" and name == "root_mean_squared_error":  # d/dx sqrt(mean(e^2)) = e / (N rmse)
        torch.testing.assert_close(gradient.double(), error / (3 * expected), rtol=1e-5, atol=0)


@pytest.mark.parametrize("name", ["root_mean_squared_error", "root_mean_squared_percentage_error"])
@pytest.mark.parametrize("where", ["predictions", "labels"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_root_mean_squares_of_nan_are_nan_not_a_perfect_fit(name, where, reduction):
    predictions, labels = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])
    {"predictions": predictions, "labels": labels}[where][0] = math.nan
    assert torch.isnan(getattr(LF, name)(predictions, labels, reduction=reduction))


def test_root_mean_square_of_zero_errors_has_gradient_zero():
    predictions = torch.zeros(3, requires_grad=True)
    loss = LF.root_mean_squared_error(predictions, torch.zeros(3))
    (gradient,) = torch.autograd.grad(loss, predictions)
    assert loss.item() == 0 and gradient.abs().max().item() == 0


# -- label values: the module checks them (the pure function reads no values) ------------


@pytest.mark.parametrize("bad", [2.0, -1.0, 1.5, math.nan])
def test_sigmoid_cross_entropy_module_refuses_labels_outside_0_1(bad):
    module = lossfn.get_loss("sigmoid_cross_entropy").module()
    labels = torch.tensor([[1.0, 0.0, 0.5]] * 2)
    assert torch.isfinite(module(torch.randn(2, 3), labels))  # soft targets in [0, 1] are fine
    labels[1, 2] = bad
    with pytest.raises(ValueError, match=r"^sigmoid_cross_entropy: labels must be targets in \[0, 1\]"):
        module(torch.randn(2, 3), labels)


@pytest.mark.parametrize(
    "probabilities,why",
    [
        ([[-0.5, 1.0, 0.5]], "a minimum of -0.5"),  # negative "probabilities" gave -0.55 before
        ([[0.2, 0.2, 0.5]], "off 1 by up to 0.1"),
        ([[math.nan, 0.5, 0.5]], "a minimum of nan"),
    ],
)
def test_softmax_module_refuses_soft_labels_that_are_not_probabilities(probabilities, why):
    module = lossfn.get_loss("softmax_cross_entropy").module()
    with pytest.raises(ValueError, match=rf"^softmax_cross_entropy: labels must be class probabilities .*{why}"):
        module(torch.randn(1, 3), torch.tensor(probabilities))


def test_softmax_module_takes_probabilities_of_any_dtype_within_their_rounding():
    module = lossfn.get_loss("softmax_cross_entropy").module()
    logits = torch.randn(6, 50)
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        targets = torch.softmax(torch.randn(6, 50), dim=1).to(dtype)  # sums off 1 by the dtype's rounding
        expected = -(targets.double() * torch.log_softmax(logits.double(), 1)).sum(1).mean()
        torch.testing.assert_close(module(logits.to(dtype), targets).double(), expected, rtol=2e-2, atol=0)


# -- a masked class (logit -inf, never the label) ---------------------------------------


def _masked():
    logits = torch.tensor([[0.5, 1.5, -math.inf], [2.0, -1.0, -math.inf]], dtype=torch.float64, requires_grad=True)
    return logits, torch.tensor([0, 1])


def test_a_masked_class_with_the_confidence_penalty_is_finite_and_right():
    logits, labels = _masked()
    beta = 0.5
    loss = LF.softmax_cross_entropy(logits, labels, confidence_penalty=beta, reduction="none")
    # closed form over the two live classes; the masked one has p = 0 and 0 log 0 = 0
    live = logits.detach()[:, :2]
    log_p = torch.log_softmax(live, 1)
    entropy = -(log_p.exp() * log_p).sum(1)
    expected = -log_p[torch.arange(2), labels] + beta * (1 - entropy / math.log(3))
    torch.testing.assert_close(loss.detach(), expected)
    (gradient,) = torch.autograd.grad(loss.sum(), logits)
    assert torch.isfinite(gradient).all() and (gradient[:, 2] == 0).all()


def test_a_masked_class_without_similarity_mass_is_finite_and_right():
    logits, labels = _masked()
    similarities = [[1.0, 0.5, -1e3], [0.5, 1.0, -1e3], [0.0, 0.0, 1.0]]  # no mass on class 2 from rows 0, 1
    loss = LF.softmax_cross_entropy(
        logits, labels, class_similarities=similarities, class_similarities_temperature=0.5, reduction="none"
    )
    rows = torch.tensor(similarities, dtype=torch.float64)[labels, :2] / 0.5
    target = torch.softmax(rows, 1)
    expected = -(target * torch.log_softmax(logits.detach()[:, :2], 1)).sum(1)
    torch.testing.assert_close(loss.detach(), expected)
    (gradient,) = torch.autograd.grad(loss.sum(), logits)
    assert torch.isfinite(gradient).all()


def test_a_masked_class_with_label_smoothing_is_inf_as_in_torch():
    """Smoothing puts mass on every class, the masked one too: the true value is inf."""
    logits, labels = _masked()
    ours = LF.softmax_cross_entropy(logits.detach(), labels, label_smoothing=0.1)
    theirs = torch.nn.functional.cross_entropy(logits.detach(), labels, label_smoothing=0.1)
    assert math.isinf(ours.item()) and math.isinf(theirs.item())


# -- finite across the whole allowed range of every hyperparameter ------------------------

from cases import all_cases  # noqa: E402
from strategies import hyperparameter_edges as _edges  # noqa: E402

CASES = all_cases()


EDGES = [
    pytest.param(name, field, value, id=f"{name}-{field}={value:g}")
    for name in lossfn.registered()
    if name in CASES
    for field, value in _edges(name)
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,field,value", EDGES)
def test_finite_value_and_gradient_at_every_bound(name, field, value, dtype):
    """``huber(delta=1e39)`` had a NaN gradient (inf · 0 in an unselected branch): at the
    ends of what the signature allows, value and gradient stay finite."""
    inputs = CASES[name].make(6, dtype, torch.Generator().manual_seed(0))
    first = inputs[0].clone().requires_grad_()
    for reduction in ("mean", "sum", "none"):
        loss = lossfn.get_loss(name).fn(first, *inputs[1:], **{field: value}, reduction=reduction)
        (gradient,) = torch.autograd.grad(loss.sum(), first)
        assert torch.isfinite(loss).all(), (reduction, loss)
        assert torch.isfinite(gradient).all(), (reduction, gradient)


# -- autocast: float32, as torch's losses -------------------------------------------------


@pytest.mark.parametrize("name", [n for n in lossfn.registered() if n in CASES])
def test_autocast_gives_float32_as_torch_losses_do(name):
    """Under ``torch.autocast`` torch runs its losses in float32 (``F.cross_entropy`` of
    bfloat16 logits is float32); so does every lossfn loss, function and module."""
    case = CASES[name]
    inputs = case.make(5, torch.bfloat16, torch.Generator().manual_seed(0))
    upcast = tuple(x.float() if x is not None and x.dtype == torch.bfloat16 else x for x in inputs)
    spec = lossfn.get_loss(name)
    # the case's independent reference on the float32 inputs (the loss itself where a case has none)
    expected = (case.reference or spec.fn)(*upcast, reduction="mean").float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        by_function, by_module = spec.fn(*inputs), spec.module()(*inputs)
        twin = torch.nn.functional.cross_entropy(torch.randn(2, 3, dtype=torch.bfloat16), torch.tensor([0, 1]))
    assert twin.dtype == torch.float32  # torch's own behaviour, which lossfn follows
    assert by_function.dtype == by_module.dtype == torch.float32
    torch.testing.assert_close(by_function, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(by_module, expected, rtol=1e-5, atol=1e-6)
    assert spec.fn(*inputs).dtype == torch.bfloat16  # outside autocast, the inputs' dtype


@pytest.mark.parametrize("name", [n for n in lossfn.registered() if n in CASES])
@pytest.mark.parametrize("how", ["function", "module"])
def test_a_model_output_that_is_not_a_tensor_is_a_named_error(name, how):
    inputs = CASES[name].make(3, torch.float32, torch.Generator().manual_seed(0))
    spec = lossfn.get_loss(name)
    loss = spec.fn if how == "function" else spec.module()
    with pytest.raises(ValueError, match=rf"^{name}: {spec.inputs[0]} must be"):
        loss(inputs[0].tolist(), *inputs[1:])


@pytest.mark.parametrize("params", [{}, {"label_smoothing": 0.1}, {"class_weights": [1.0, 2.0, 3.0]}])
@pytest.mark.parametrize("bad", [7, -7])
def test_a_label_out_of_range_in_the_pure_function_is_a_named_error(params, bad):
    """The pure function reads no label values; torch's kernel finds the bad index, and
    its unnamed IndexError/RuntimeError becomes a ValueError naming the loss and labels."""
    labels = torch.tensor([0, 1, bad, 0])
    with pytest.raises(ValueError, match=rf"^softmax_cross_entropy: labels must be class or token indices .*{bad}"):
        LF.softmax_cross_entropy(torch.randn(4, 3), labels, **params)
