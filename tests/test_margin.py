"""Values and gradients of the margin losses against optax's stored vectors and torch's twins.

optax's numbers come from ``tests/data/margin_optax.json`` (written by
``scripts/make_margin_vectors.py`` in float64: the unreduced values and ``jax.grad`` of
their sum); torch's from ``torch.nn.functional.multi_margin_loss`` and
``multilabel_margin_loss`` run here. Probability labels are checked against the
expectation over Bernoulli labels, computed by enumeration from the 0/1 references.
"""

from __future__ import annotations

import itertools
import json
import math
import pathlib

import pytest
import torch
from torch.func import grad, vmap

import lossfn
import lossfn.functional as LF

from cases.margin import (
    MULTI_MARGIN_TWINS,
    MULTILABEL_TWINS,
    binary_sparsemax_reference,
    hinge_reference,
    multilabel_margin_reference,
    perceptron_reference,
    torch_targets,
)

DATA = json.loads((pathlib.Path(__file__).parent / "data" / "margin_optax.json").read_text())
OPTAX = [pytest.param(c, id=f"{c['loss']}-{c['label']}") for c in DATA["cases"]]
BINARY = {"hinge": hinge_reference, "perceptron": perceptron_reference, "binary_sparsemax": binary_sparsemax_reference}


def _lossfn_layout(case):
    """Logits and labels as lossfn takes them (optax's classes are on the last axis; lossfn's on 1)."""
    logits = torch.tensor(case["logits"], dtype=torch.float64)
    labels = torch.tensor(case["labels"])
    if case["loss"].startswith("multiclass") and logits.ndim > 2:
        return logits.movedim(-1, 1), labels, lambda t: t.movedim(1, -1)
    return logits, labels, lambda t: t


@pytest.mark.parametrize("case", OPTAX)
def test_values_and_gradients_equal_optax(case):
    logits, labels, back = _lossfn_layout(case)
    leaf = logits.clone().requires_grad_()
    fn = getattr(LF, case["loss"])
    value = fn(leaf, labels, reduction="none")
    (gradient,) = torch.autograd.grad(fn(leaf, labels, reduction="sum"), leaf)
    expected = torch.tensor(case["value"], dtype=torch.float64)
    torch.testing.assert_close(value.detach(), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(back(gradient), torch.tensor(case["grad"], dtype=torch.float64), rtol=1e-12, atol=1e-12)
    # torch.func.grad gives the same gradient, and the mean is the mean of the values
    torch.testing.assert_close(grad(lambda x: fn(x, labels, reduction="sum"))(logits), gradient)
    torch.testing.assert_close(fn(logits, labels), expected.mean() if expected.numel() else expected.sum())


def test_the_vectors_cover_every_optax_loss_and_shape():
    seen = {(c["loss"], c["label"]) for c in DATA["cases"]}
    for loss in (*BINARY, "multiclass_hinge", "multiclass_perceptron"):
        assert sum(name == loss for name, _ in seen) >= 5, loss
    assert "optax 0.2.8" in DATA["source"]


# -- probabilities: the expected loss under Bernoulli labels --------------------------------


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_probabilities_are_the_expected_loss(name):
    generator = torch.Generator().manual_seed(5)
    logits = 3 * torch.randn(4, 3, generator=generator, dtype=torch.float64)
    y = torch.rand(4, 3, generator=generator, dtype=torch.float64)
    ones, zeros = torch.ones(4, 3, dtype=torch.long), torch.zeros(4, 3, dtype=torch.long)
    reference = BINARY[name]
    expected = y * reference(logits, ones, reduction="none") + (1 - y) * reference(logits, zeros, reduction="none")
    torch.testing.assert_close(getattr(LF, name)(logits, y, reduction="none"), expected, rtol=1e-12, atol=1e-12)
    # bool labels are 0/1 labels
    hard = y > 0.5
    torch.testing.assert_close(getattr(LF, name)(logits, hard), getattr(LF, name)(logits, hard.long()))


def test_multilabel_probabilities_are_the_expected_loss_over_every_label_set():
    """Each class a target independently with probability y_c: the mean of torch's loss over all 2^C sets."""
    generator = torch.Generator().manual_seed(6)
    logits = 2 * torch.randn(2, 4, generator=generator, dtype=torch.float64)
    y = torch.rand(2, 4, generator=generator, dtype=torch.float64)
    expected = torch.zeros(2, dtype=torch.float64)
    for bits in itertools.product([0, 1], repeat=4):
        labels = torch.tensor([bits, bits])
        chance = torch.where(labels.bool(), y, 1 - y).prod(1)
        expected += chance * multilabel_margin_reference(logits, labels, reduction="none")
    torch.testing.assert_close(LF.multilabel_margin(logits, y, reduction="none"), expected, rtol=1e-12, atol=1e-12)


# -- torch's gradients ---------------------------------------------------------------------------


TWINS = [pytest.param("multi_margin", t, id=f"multi_margin-{t.label}") for t in MULTI_MARGIN_TWINS] + [
    pytest.param("multilabel_margin", t, id=f"multilabel_margin-{t.label}") for t in MULTILABEL_TWINS
]


@pytest.mark.parametrize("name,twin", TWINS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradients_equal_torch_autograd(name, twin, reduction):
    largest = 0.0
    for seed in (8, 9, 10):
        logits, labels = twin.make(torch.float64, torch.Generator().manual_seed(seed))
        ours, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        (expected,) = torch.autograd.grad(twin.torch(theirs, labels, reduction=reduction), theirs)
        (gradient,) = torch.autograd.grad(getattr(LF, name)(ours, labels, **twin.params, reduction=reduction), ours)
        torch.testing.assert_close(gradient, expected, rtol=1e-12, atol=1e-12)
        largest = max(largest, expected.abs().max().item())
    assert largest > 0  # some hinge was active: the comparison meant something


def test_multi_margin_with_a_tensor_p_and_margin_under_vmap_and_grad():
    logits, labels = MULTI_MARGIN_TWINS[0].make(torch.float64, torch.Generator().manual_seed(9))
    expected = torch.stack([LF.multi_margin(logits, labels, p=p) for p in (1, 2)])
    torch.testing.assert_close(vmap(lambda p: LF.multi_margin(logits, labels, p=p))(torch.tensor([1, 2])), expected)
    # d/dm of the p=1 loss: (1/C) · (number of active hinges), averaged over the examples
    margin = torch.tensor(1.0, dtype=torch.float64)
    active = (margin - logits.gather(1, labels[:, None]) + logits > 0).sum(1) - 1  # the label's own term is out
    expected_slope = (active.double() / logits.shape[1]).mean()
    torch.testing.assert_close(grad(lambda m: LF.multi_margin(logits, labels, margin=m))(margin), expected_slope)


# -- masked classes, conventions, errors --------------------------------------------------------


@pytest.mark.parametrize("name", ["multiclass_hinge", "multiclass_perceptron", "multi_margin"])
def test_a_masked_class_drops_out(name):
    """A class with logit -inf (never the label) adds nothing: the loss of the other classes
    (times C / (C - 1) for multi_margin's 1/C), finite, with a zero gradient on the masked class."""
    generator = torch.Generator().manual_seed(10)
    logits = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (6,), generator=generator)
    masked = torch.cat([logits, torch.full((6, 1), -math.inf, dtype=torch.float64)], 1).requires_grad_()
    fn = getattr(LF, name)
    value = fn(masked, labels, reduction="none")
    (gradient,) = torch.autograd.grad(value.sum(), masked)
    scale = 5 / 4 if name == "multi_margin" else 1.0
    torch.testing.assert_close(value * scale, fn(logits, labels, reduction="none"))
    assert torch.isfinite(gradient).all() and (gradient[:, -1] == 0).all()


def test_multilabel_masked_classes_drop_out_even_two_of_them():
    """Two masked non-target classes meet in a pair as -inf - (-inf): left out, not NaN."""
    generator = torch.Generator().manual_seed(11)
    logits = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 2, (5, 4), generator=generator)
    masked = torch.cat([logits, torch.full((5, 2), -math.inf, dtype=torch.float64)], 1).requires_grad_()
    masked_labels = torch.cat([labels, torch.zeros(5, 2, dtype=torch.long)], 1)
    value = LF.multilabel_margin(masked, masked_labels, reduction="none")
    (gradient,) = torch.autograd.grad(value.sum(), masked)
    torch.testing.assert_close(value * 6 / 4, multilabel_margin_reference(logits, labels, reduction="none"))
    assert torch.isfinite(gradient).all() and (gradient[:, -2:] == 0).all()


@pytest.mark.parametrize("name", ["hinge", "perceptron"])
def test_the_module_refuses_plus_minus_one_targets_and_says_how_to_convert(name):
    module = lossfn.get_loss(name).module()
    logits = torch.randn(4)
    with pytest.raises(ValueError, match=rf"^{name}: labels must be targets in \[0, 1\].*pass \(targets \+ 1\) / 2"):
        module(logits, torch.tensor([1, -1, 1, -1]))
    targets = torch.tensor([1.0, -1.0, 1.0, -1.0])
    torch.testing.assert_close(module(logits, (targets + 1) / 2), getattr(LF, name)(logits, (targets + 1) / 2))


def test_multilabel_module_refuses_torch_padded_indices_and_says_so():
    module = lossfn.get_loss("multilabel_margin").module()
    logits = torch.tensor([[0.1, 0.2, 0.4, 0.8]])
    with pytest.raises(ValueError, match=r"^multilabel_margin: labels must be .*not torch's class indices padded"):
        module(logits, torch.tensor([[3, 0, -1, 1]]))
    assert torch_targets(torch.tensor([[1, 0, 0, 1]])).tolist() == [[0, 3, -1, -1]]
    torch.testing.assert_close(module(logits, torch.tensor([[1, 0, 0, 1]])), torch.tensor(0.85))  # torch's example


@pytest.mark.parametrize("name", ["multiclass_hinge", "multiclass_perceptron", "multi_margin"])
def test_a_label_out_of_range_in_the_pure_function_is_a_named_error(name):
    with pytest.raises(ValueError, match=rf"^{name}: labels must be class or token indices"):
        getattr(LF, name)(torch.randn(3, 4), torch.tensor([0, 4, 1]))


def test_multi_margin_refuses_p_other_than_1_or_2_and_weights_of_the_wrong_length():
    logits, labels = torch.randn(3, 4), torch.tensor([0, 1, 2])
    for p in (0, 3):
        with pytest.raises(ValueError, match=rf"^multi_margin: p must be an integer >= 1 and <= 2; got {p}$"):
            LF.multi_margin(logits, labels, p=p)
    with pytest.raises(ValueError, match=r"^multi_margin: class_weights must be of shape \[4\]"):
        LF.multi_margin(logits, labels, class_weights=[1.0, 2.0])
    module = lossfn.get_loss("multi_margin").module(class_weights=[1.0, 2.0, 3.0, 4.0])
    assert "class_weights" in module.state_dict()  # a buffer: .to(device) moves it


def test_per_position_logits_are_per_position_rows():
    """``[B, C, d]`` logits give the loss of each position's ``[C]`` row (lossfn's class dimension 1)."""
    generator = torch.Generator().manual_seed(12)
    logits = torch.randn(2, 5, 3, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 5, (2, 3), generator=generator)
    rows, row_labels = logits.movedim(1, -1).reshape(-1, 5), labels.reshape(-1)
    for name, params in [("multiclass_hinge", {}), ("multiclass_perceptron", {}), ("multi_margin", {"p": 2})]:
        expected = getattr(LF, name)(rows, row_labels, **params, reduction="none").reshape(2, 3)
        torch.testing.assert_close(getattr(LF, name)(logits, labels, **params, reduction="none"), expected)
    torch.testing.assert_close(
        LF.multi_margin(logits, labels, p=2, reduction="none"),
        torch.nn.functional.multi_margin_loss(rows, row_labels, p=2, reduction="none").reshape(2, 3),
    )
