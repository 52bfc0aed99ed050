"""Value tests of ``focal`` and ``poly`` against independent references.

- binary focal: ``torchvision.ops.sigmoid_focal_loss``'s formula written out (torchvision
  is not installable here), ``kornia.losses.binary_focal_loss_with_logits`` (0/1 targets:
  for probability targets kornia weights the two terms by y and 1 - y separately, another
  convention), Ludwig's ``FocalLoss`` binary branch written out, ``F.binary_cross_entropy_with_logits``
  at gamma = 0;
- softmax focal: ``kornia.losses.focal_loss`` with ``alpha=None`` (its ``"none"`` is a
  ``[B, C, *]`` map and its ``"mean"`` divides by C more), kornia's alpha on two classes
  against the binary form of the logit difference, Ludwig's multi-class branch written out
  (``[B, C]`` and ``[B, C, H, W]``), ``F.cross_entropy`` at gamma = 0;
- poly: vectors of ``optax.losses.poly_loss_cross_entropy`` (``tests/data/poly_reference.json``,
  written by ``scripts/make_poly_vectors.py``), Ludwig's ``PolyLoss`` written out,
  ``F.cross_entropy`` at epsilon = 0;
- the extremes: exact closed forms in float64 (``log σ``), where
  ``1 - p_t`` is exactly 0 in float32;
- set (multi-label) outputs, ``[B, C]`` multi-hot or probability labels: torchvision's
  ``sigmoid_focal_loss`` written out here with its reductions, and vectors of
  ``optax.losses.sigmoid_focal_loss`` (``tests/data/focal_optax.json``, written by
  ``scripts/make_focal_vectors.py``: values, logit and label gradients, logits ±30).
"""

from __future__ import annotations

import json
import pathlib

import kornia.losses as KL
import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

import lossfn
import lossfn.functional as LF
from cases.focal import ludwig_poly, ludwig_softmax_focal, sigmoid_focal_reference
from cases import reduce_like_torch as _reduce

REDUCTIONS = ("none", "mean", "sum")
DATA = json.loads((pathlib.Path(__file__).parent / "data" / "poly_reference.json").read_text())
FOCAL_OPTAX = json.loads((pathlib.Path(__file__).parent / "data" / "focal_optax.json").read_text())


def close(actual, expected, rtol=1e-10, atol=1e-12):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _binary_inputs(*shape, kind, seed=0):
    g = _generator(seed)
    logits = 3 * torch.randn(shape, generator=g, dtype=torch.float64)
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    labels = {"int": (u > 0.5).long(), "bool": u > 0.5, "float01": (u > 0.5).double(), "soft": u}[kind]
    return logits, labels


def _class_inputs(*shape, seed=0):
    g = _generator(seed)
    logits = 3 * torch.randn(shape, generator=g, dtype=torch.float64)
    label_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()  # [C]: one example, one label
    labels = torch.randint(0, shape[1] if len(shape) > 1 else shape[0], label_shape, generator=g)
    return logits, labels


SETTINGS = [(0.25, 2.0), (0.5, 0.0), (0.0, 1.0), (1.0, 0.5), (0.8, 3.7)]


# -- binary form ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7,), (4, 3), (2, 3, 4), ()])
@pytest.mark.parametrize("kind", ["int", "bool", "float01", "soft"])
def test_binary_form_is_torchvisions_sigmoid_focal_loss(shape, kind):
    logits, labels = _binary_inputs(*shape, kind=kind)
    for alpha, gamma in SETTINGS:
        for reduction in REDUCTIONS:
            expected = _reduce(sigmoid_focal_reference(logits, labels, alpha=alpha, gamma=gamma), reduction)
            close(LF.focal(logits, labels, alpha=alpha, gamma=gamma, reduction=reduction), expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_form_is_kornias_for_0_1_targets(reduction):
    logits, labels = _binary_inputs(4, 3, 2, kind="int")
    for alpha, gamma in SETTINGS:
        expected = KL.binary_focal_loss_with_logits(
            logits, labels.double(), alpha=alpha, gamma=gamma, reduction=reduction
        )
        close(LF.focal(logits, labels, alpha=alpha, gamma=gamma, reduction=reduction), expected)


def ludwig_focal_binary(preds, target, alpha, gamma):
    """Ludwig's ``FocalLoss.forward`` for ``preds.ndim == 1``, written out (it returns the mean)."""
    bce = F.binary_cross_entropy_with_logits(preds, target.float().to(preds.dtype), reduction="none")
    p_t = torch.exp(-bce)
    t = target.to(preds.dtype)
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    return (alpha_t * (1 - p_t) ** gamma * bce).mean()


def test_binary_form_is_ludwigs_number_for_0_1_targets_and_torchvisions_for_probabilities():
    logits, labels = _binary_inputs(9, kind="int")
    for alpha, gamma in SETTINGS:
        close(LF.focal(logits, labels, alpha=alpha, gamma=gamma), ludwig_focal_binary(logits, labels, alpha, gamma))
    # probability targets: Ludwig's p_t = exp(-BCE) = p^y (1 - p)^(1 - y), not torchvision's p y + (1 - p)(1 - y)
    logits, soft = _binary_inputs(9, kind="soft")
    ours = LF.focal(logits, soft)
    close(ours, sigmoid_focal_reference(logits, soft).mean())
    assert (ours - ludwig_focal_binary(logits, soft, 0.25, 2.0)).abs() > 1e-3


@pytest.mark.parametrize("shape", [(7,), (4, 3), ()])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gamma_0_alpha_half_is_half_the_binary_cross_entropy(shape, reduction):
    for kind in ("int", "soft"):
        logits, labels = _binary_inputs(*shape, kind=kind)
        bce = F.binary_cross_entropy_with_logits(logits, labels.double(), reduction=reduction)
        for gamma in (0.0, torch.tensor(0.0, dtype=torch.float64)):
            close(2 * LF.focal(logits, labels, alpha=0.5, gamma=gamma, reduction=reduction), bce)


def test_alpha_weights_positives_by_alpha_and_negatives_by_one_minus_alpha():
    logits = torch.tensor([1.5, -0.5, 0.3, 2.0], dtype=torch.float64)
    labels = torch.tensor([1, 1, 0, 0])
    positive = LF.focal(logits, labels, alpha=1.0, reduction="none")
    negative = LF.focal(logits, labels, alpha=0.0, reduction="none")
    assert (positive[2:] == 0).all() and (positive[:2] > 0).all()
    assert (negative[:2] == 0).all() and (negative[2:] > 0).all()
    close(LF.focal(logits, labels, alpha=0.3, reduction="none"), 0.3 * positive + 0.7 * negative)


def test_soft_label_gradients_are_exact_to_second_order():
    """Logit 0, labels exactly 0 and 1 as floats, soft ones: finite differences agree (both inputs)."""
    logits = torch.tensor([0.0, -0.0, 2.5, -4.0, 7.0, -1.0, 3.0, 0.5], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.3, 0.999, 1e-3, 0.5], dtype=torch.float64, requires_grad=True)
    for gamma in (0.0, 0.5, 2.0):
        fn = lambda x, y: LF.focal(x, y, alpha=0.3, gamma=gamma, reduction="sum")  # noqa: E731
        assert torch.autograd.gradcheck(fn, (logits, labels))
        if gamma == 0.5:
            assert torch.autograd.gradgradcheck(fn, (logits, labels))


# -- softmax form ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 5), (2, 5, 3, 4), (5,)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_softmax_form_is_kornias_focal_loss_without_alpha(shape, reduction):
    logits, labels = _class_inputs(*shape)
    batched = logits if len(shape) > 1 else logits[None]
    kornia_labels = labels if len(shape) > 1 else labels[None]
    classes = batched.shape[1]
    for gamma in (0.0, 0.5, 2.0, 3.7):
        k = KL.focal_loss(batched, kornia_labels, alpha=None, gamma=gamma, reduction=reduction)
        # kornia's "none" is a [B, C, *] map with the loss in the label's slice; its mean divides by C more
        expected = {"none": lambda: k.sum(1), "mean": lambda: k * classes, "sum": lambda: k}[reduction]()
        if len(shape) == 1 and reduction == "none":
            expected = expected[0]
        for alpha in (0.25, 0.9):  # the softmax form does not use alpha
            close(LF.focal(logits, labels, alpha=alpha, gamma=gamma, reduction=reduction), expected)


def test_kornias_alpha_on_two_classes_is_the_binary_form_of_the_logit_difference():
    logits, labels = _class_inputs(8, 2)
    for alpha, gamma in SETTINGS:
        k = KL.focal_loss(logits, labels, alpha=alpha, gamma=gamma, reduction="none").sum(1)
        close(LF.focal(logits[:, 1] - logits[:, 0], labels, alpha=alpha, gamma=gamma, reduction="none"), k)
        # and lossfn's softmax form of two classes is the binary form at alpha = 1/2, twice
        softmax = LF.focal(logits, labels, gamma=gamma, reduction="none")
        close(softmax, 2 * LF.focal(logits[:, 1] - logits[:, 0], labels, alpha=0.5, gamma=gamma, reduction="none"))


@pytest.mark.parametrize("shape", [(6, 5), (2, 4, 3, 5), (3, 7, 2)])
def test_softmax_form_is_ludwigs_number(shape):
    """Ludwig's multi-class branch (F.cross_entropy, p_t = exp(-CE), mean), images [B, C, H, W] too."""
    logits, labels = _class_inputs(*shape)
    for gamma in (0.0, 0.5, 2.0, 3.7):
        expected = ludwig_softmax_focal(logits, labels, gamma=gamma)
        close(LF.focal(logits, labels, gamma=gamma), expected.mean())
        close(LF.focal(logits, labels, gamma=gamma, reduction="none"), expected)
        close(LF.focal(logits, labels, gamma=gamma, reduction="sum"), expected.sum())


@pytest.mark.parametrize("shape", [(6, 5), (5,), (2, 5, 3, 4), (0, 5)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gamma_0_is_the_cross_entropy(shape, reduction):
    logits, labels = _class_inputs(*shape)
    expected = F.cross_entropy(logits, labels, reduction=reduction)
    actual = LF.focal(logits, labels, gamma=0.0, reduction=reduction)
    if reduction == "mean" and logits.numel() == 0:
        assert torch.isnan(expected) and actual.item() == 0.0  # lossfn's empty mean is 0
        return
    close(actual, expected)


# -- which form --------------------------------------------------------------------------------


def test_the_labels_shape_picks_the_form():
    logits, _ = _class_inputs(4, 3)
    multi_hot = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 1], [0, 0, 0]])
    close(LF.focal(logits, multi_hot, reduction="none"), sigmoid_focal_reference(logits, multi_hot))  # elementwise
    indices = torch.tensor([2, 0, 1, 1])
    close(LF.focal(logits, indices, reduction="none"), ludwig_softmax_focal(logits, indices))  # per example
    # one scalar logit and its label: the binary form (no class axis to softmax over)
    close(LF.focal(torch.tensor(1.5, dtype=torch.float64), torch.tensor(1)), sigmoid_focal_reference(
        torch.tensor(1.5, dtype=torch.float64), torch.tensor(1)))


@pytest.mark.parametrize(
    "logits,labels,message",
    [
        (torch.randn(4, 3), torch.rand(4), r"labels must be integer class indices \(or binary targets of the logits' "
         r"shape \[4, 3\]\); got dtype torch.float32 of shape \[4\]"),
        (torch.randn(4, 3), torch.zeros(4, 2, dtype=torch.long), r"labels must be binary targets of the logits' "
         r"shape \[4, 3\] or class indices of shape \[4\]; got shape \[4, 2\]"),
        (torch.randn(4, 3), torch.zeros(4, dtype=torch.bool), r"labels must be integer class indices"),
        (torch.randn(4, 3), torch.zeros(4, dtype=torch.uint8), r"labels must be integer class indices of a signed"),
        (torch.randn(2, 3, 4, 5), torch.zeros(2, 3, 5, dtype=torch.long), r"labels must be binary targets of the "
         r"logits' shape \[2, 3, 4, 5\] or class indices of shape \[2, 4, 5\]; got shape \[2, 3, 5\]"),
        (torch.randn(5), torch.zeros(3, dtype=torch.long), r"labels must be binary targets of the logits' shape \[5\] "
         r"or class "
         r"indices of shape \[\]; got shape \[3\]"),
        (torch.tensor(1.0), torch.zeros(3), r"labels must be binary targets of the logits' shape \[\]; "
         r"got shape \[3\]"),
        (torch.randn(4, 1), torch.zeros(4, dtype=torch.long), r"labels must be binary targets of the logits' shape "
         r"\[4, 1\] for one logit per example \(a softmax over one class is 1: the loss would be 0\); got class "
         r"indices of shape \[4\]"),
        (torch.randn(4).long(), torch.zeros(4), r"logits must be a floating-point tensor"),
        (torch.randn(4), [1, 0, 1, 0], r"labels must be a torch.Tensor"),
        (torch.randn(4), torch.zeros(4, dtype=torch.complex64), r"labels must be real numbers"),
    ],
)
def test_inputs_of_neither_form_are_a_clear_error(logits, labels, message):
    with pytest.raises(ValueError, match=rf"^focal: {message}"):
        LF.focal(logits, labels)


def test_the_module_checks_label_values_for_each_form():
    module = lossfn.get_loss("focal").module()
    assert torch.isfinite(module(torch.randn(3), torch.tensor([0.0, 0.5, 1.0])))
    for bad in (torch.tensor([0, 2, 1]), torch.tensor([0.0, -0.5, 1.0]), torch.tensor([0.0, float("nan"), 1.0])):
        with pytest.raises(ValueError, match=r"^focal: labels must be targets in \[0, 1\]"):
            module(torch.randn(3), bad)
    assert torch.isfinite(module(torch.randn(3, 5), torch.tensor([0, 4, 2])))
    for bad in (torch.tensor([0, 5, 2]), torch.tensor([-1, 0, 0])):
        with pytest.raises(ValueError, match=r"^focal: labels must be class indices in \[0, 4\]"):
            module(torch.randn(3, 5), bad)
        with pytest.raises(ValueError, match=r"^poly: labels must be class indices in \[0, 4\]"):
            lossfn.get_loss("poly").module()(torch.randn(3, 5), bad)


# -- numerics ----------------------------------------------------------------------------------

GAMMAS = (0.0, 1e-15, 0.25, 0.5, 1.0, 2.0, 5.0)


def test_confident_correct_predictions_keep_their_loss_and_a_finite_gradient():
    """Where 1 - p_t is exactly 0 in float32, the loss and its gradient match float64's exact closed form:
    positives at logit x, BCE = -log σ(x), 1 - p_t = σ(-x), ℓ = -α exp(γ log σ(-x)) log σ(x)."""
    x64 = torch.tensor([17.0, 30.0, 60.0, 100.0, 1e4], dtype=torch.float64)
    assert (1 - torch.sigmoid(x64.float()) == 0).all()  # the naive (1 - p_t) ** gamma meets 0 ** gamma
    for gamma in GAMMAS:
        exact = lambda x: (0.25 * torch.exp(gamma * F.logsigmoid(-x)) * -F.logsigmoid(x)).sum()  # noqa: E731
        expected_value, expected_grad = exact(x64), grad(exact)(x64)
        for labels in (torch.ones(5, dtype=torch.long), torch.ones(5)):
            x = x64.float().requires_grad_()
            value = LF.focal(x, labels, gamma=gamma, reduction="sum")
            (gradient,) = torch.autograd.grad(value, x)
            assert torch.isfinite(value) and torch.isfinite(gradient).all()
            torch.testing.assert_close(value.double(), expected_value, rtol=1e-5, atol=1e-30)
            torch.testing.assert_close(gradient.double(), expected_grad, rtol=1e-5, atol=1e-30)
        # the softmax form: logits (x, 0, 0) with label 0, the margin logit log 2 - x
        rows = torch.stack([x64, torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)], 1)
        margin = torch.logsumexp(rows[:, 1:], 1) - rows[:, 0]
        expected = (torch.exp(gamma * F.logsigmoid(margin)) * -F.logsigmoid(-margin)).sum()
        leaf = rows.float().requires_grad_()
        value = LF.focal(leaf, torch.zeros(5, dtype=torch.long), gamma=gamma, reduction="sum")
        (gradient,) = torch.autograd.grad(value, leaf)
        assert torch.isfinite(gradient).all()
        torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("form", ["binary int", "binary soft", "softmax", "poly"])
def test_logits_of_1e4_are_finite_in_every_dtype(dtype, form):
    g = _generator(1)
    if form.startswith("binary"):
        signs = torch.randn(8, 3, generator=g).sign()
        labels = torch.rand(8, 3, generator=g) if form.endswith("soft") else torch.randint(0, 2, (8, 3), generator=g)
    else:
        signs = torch.randn(8, 5, generator=g).sign()
        labels = torch.randint(0, 5, (8,), generator=g)
    fn = LF.poly if form == "poly" else LF.focal
    settings = [{"epsilon": e} for e in (0.0, 5.0)] if form == "poly" else [{"gamma": v} for v in (0.0, 0.5, 2.0)]
    for params in settings:
        reference = fn(signs * 1e4, labels, **params, reduction="none")
        for reduction in REDUCTIONS:
            leaf = (signs * 1e4).to(dtype).requires_grad_()
            loss = fn(leaf, labels, **params, reduction=reduction)
            (gradient,) = torch.autograd.grad(loss.sum(), leaf)
            assert loss.dtype == dtype and torch.isfinite(gradient).all(), params
            # finite wherever the float32 value fits the dtype (a float16 sum of 1e4s may not)
            fits = _reduce(reference, reduction).abs() <= torch.finfo(dtype).max
            assert torch.isfinite(loss[fits]).all(), params
        half = fn((signs * 1e4).to(dtype), labels, **params, reduction="none").float()
        torch.testing.assert_close(half, reference.to(dtype).float(), rtol=1e-2, atol=1e-2)


def test_a_masked_class_and_a_single_class():
    logits = torch.tensor([[0.5, 1.5, -torch.inf], [2.0, -1.0, -torch.inf]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1])
    live = logits.detach()[:, :2]
    for gamma in (0.0, 0.5, 2.0):
        loss = LF.focal(logits, labels, gamma=gamma, reduction="none")
        close(loss.detach(), ludwig_softmax_focal(live, labels, gamma=gamma))
        (gradient,) = torch.autograd.grad(loss.sum(), logits)
        assert torch.isfinite(gradient).all() and (gradient[:, 2] == 0).all()
    poly = LF.poly(logits, labels, epsilon=1.5, reduction="none")
    close(poly.detach(), ludwig_poly(live, labels, epsilon=1.5))
    # one class: p_y = 1, the loss is 0 with a zero gradient (no log-sum-exp of nothing)
    one = torch.randn(3, 1, dtype=torch.float64, requires_grad=True)
    for epsilon in (0.0, 2.0):
        loss = LF.poly(one, torch.zeros(3, dtype=torch.long), epsilon=epsilon)
        (gradient,) = torch.autograd.grad(loss, one)
        assert loss.item() == 0.0 and (gradient == 0).all()
    # every other class masked: the same, for focal too
    masked = torch.tensor([[0.5, -torch.inf, -torch.inf]], dtype=torch.float64, requires_grad=True)
    for gamma in (0.0, 0.5):
        loss = LF.focal(masked, torch.tensor([0]), gamma=gamma)
        (gradient,) = torch.autograd.grad(loss, masked)
        assert loss.item() == 0.0 and (gradient == 0).all()
    assert torch.isnan(LF.focal(torch.tensor([[torch.nan, 1.0, 2.0]]), torch.tensor([1])))  # NaN in, NaN out
    assert torch.isnan(LF.poly(torch.tensor([[torch.nan, 1.0, 2.0]]), torch.tensor([1])))


def test_tensor_hyperparameters_give_the_closed_form_derivatives():
    """d/dγ of ℓ = α_t (1 - p_t)^γ BCE is ℓ log(1 - p_t); d/dα of the mean is the mean of
    (2y - 1) (1 - p_t)^γ BCE; d/dε of poly's mean is the mean of 1 - p_y."""
    logits, labels = _binary_inputs(7, kind="soft")
    gamma, alpha = torch.tensor(1.5, dtype=torch.float64), torch.tensor(0.4, dtype=torch.float64)
    p = torch.sigmoid(logits)
    q = (1 - labels) * p + labels * (1 - p)
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    alpha_t = 0.4 * labels + 0.6 * (1 - labels)
    close(grad(lambda g: LF.focal(logits, labels, alpha=alpha, gamma=g))(gamma),
          (alpha_t * q**1.5 * bce * torch.log(q)).mean())
    by_alpha = grad(lambda a: LF.focal(logits, labels, alpha=a, gamma=gamma))(alpha)
    close(by_alpha, ((2 * labels - 1) * q**1.5 * bce).mean())
    epsilons = torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64)
    x, y = _class_inputs(6, 5)
    expected = torch.stack([ludwig_poly(x, y, epsilon=e).mean() for e in epsilons])
    close(vmap(lambda e: LF.poly(x, y, epsilon=e))(epsilons), expected)
    close(grad(lambda e: LF.poly(x, y, epsilon=e))(epsilons[1]), (1 - torch.softmax(x, 1)[torch.arange(6), y]).mean())


# -- set (multi-label) outputs -------------------------------------------------------------------


def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """``torchvision.ops.sigmoid_focal_loss`` (0.2x), reductions included: the catalog's formula."""
    return _reduce(sigmoid_focal_reference(inputs, targets, alpha=alpha, gamma=gamma), reduction)


def _set_inputs(batch, classes, kind, seed=0):
    g = _generator(seed)
    logits = 3 * torch.randn(batch, classes, generator=g, dtype=torch.float64)
    u = torch.rand(batch, classes, generator=g, dtype=torch.float64)
    hot = u > 0.6
    labels = {"int": hot.long(), "bool": hot, "float": hot.double(), "soft": u}[kind]
    return logits, labels, (u if kind == "soft" else hot.double())


@pytest.mark.parametrize("size", [(8, 5), (1, 7), (3, 1)])
@pytest.mark.parametrize("kind", ["int", "bool", "float", "soft"])
def test_set_is_torchvisions_sigmoid_focal_loss_for_every_reduction(size, kind):
    """[B, C] multi-hot (or per-class probability) labels: "none" is elementwise [B, C], "mean" is over
    all B·C elements (torchvision's reduction="mean"); values and logit gradients."""
    logits, labels, targets = _set_inputs(*size, kind)
    for alpha, gamma in [(0.25, 2.0), (0.4, 3.0), (0.9, 0.5), (0.1, 1.0), (0.0, 2.5), (1.0, 0.0)]:
        for reduction in REDUCTIONS:
            leaf, ref_leaf = logits.clone().requires_grad_(), logits.clone().requires_grad_()
            ours = LF.focal(leaf, labels, alpha=alpha, gamma=gamma, reduction=reduction)
            expected = torchvision_sigmoid_focal_loss(ref_leaf, targets, alpha, gamma, reduction)
            assert ours.shape == (size if reduction == "none" else ())
            close(ours, expected)
            close(*(torch.autograd.grad(v.sum(), x)[0] for v, x in ((ours, leaf), (expected, ref_leaf))))


def _optax_case(case):
    """lossfn's (alpha, gamma) for optax's: optax's alpha=None weighs every element 1, lossfn's
    alpha=0.5 weighs it 1/2 (so its loss is doubled); optax's default gamma is 2."""
    gamma = 2.0 if case["gamma"] is None else case["gamma"]
    alpha, scale = (0.5, 2.0) if case["alpha"] is None else (case["alpha"], 1.0)
    return alpha, gamma, scale


def _label_derivative(x, y, alpha, gamma):
    """dℓ/dy of ℓ = α_t q^γ BCE, q = 1 - p_t = (1 - y) σ(x) + y σ(-x), written out in float64:
    (2α - 1) q^γ BCE + α_t γ q^(γ-1) (σ(-x) - σ(x)) BCE - α_t q^γ x (dBCE/dy = -x)."""
    p, r = torch.sigmoid(x), torch.sigmoid(-x)
    q = (1 - y) * p + y * r
    bce = -(y * F.logsigmoid(x) + (1 - y) * F.logsigmoid(-x))
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    by_alpha_t = (2 * alpha - 1) * q**gamma * bce
    return by_alpha_t + alpha_t * gamma * q ** (gamma - 1) * (r - p) * bce - alpha_t * q**gamma * x


@pytest.mark.parametrize("index", range(len(FOCAL_OPTAX["cases"])), ids=[
    f"{c['label']} alpha={c['alpha']} gamma={c['gamma']}" for c in FOCAL_OPTAX["cases"]
])
def test_set_matches_optax_sigmoid_focal_loss(index):
    """Values and logit gradients everywhere (logits ±30, labels exactly 0 and 1 included); label
    gradients where 0 < y < 1: at y = 0 or 1 optax's is not the derivative (jax's logsumexp drops
    the b = 0 term, and its derivative with it: 0.35 where the derivative is 0, signs flipped), so
    lossfn's is checked against the derivative written out as well."""
    case = FOCAL_OPTAX["cases"][index]
    alpha, gamma, scale = _optax_case(case)
    logits, labels = (torch.tensor(case[k], dtype=torch.float64) for k in ("logits", "labels"))
    value, gradient = (torch.tensor(case[k], dtype=torch.float64) for k in ("value", "grad"))
    soft = "label_grad" in case
    for y in (labels,) if soft else (labels, labels.long(), labels.bool()):  # multi-hot as float, int, bool
        x = logits.clone().requires_grad_()
        y = y.clone().requires_grad_() if soft else y
        ours = scale * LF.focal(x, y, alpha=alpha, gamma=gamma, reduction="none")
        grads = torch.autograd.grad(ours.sum(), (x, y) if soft else (x,))
        assert ours.shape == value.shape
        close(ours.detach(), value, rtol=1e-12, atol=1e-300)
        close(grads[0], gradient, rtol=1e-12, atol=1e-300)
        if soft:
            inside = (labels > 0) & (labels < 1)
            optax_by_labels = torch.tensor(case["label_grad"], dtype=torch.float64)
            close(grads[1][inside], optax_by_labels[inside], rtol=1e-12, atol=1e-300)
            close(grads[1], scale * _label_derivative(logits, labels, alpha, gamma), rtol=1e-12, atol=1e-300)
            assert not inside.all()
        close(scale * LF.focal(logits, y.detach(), alpha=alpha, gamma=gamma), value.mean(), rtol=1e-12, atol=1e-300)
        close(scale * LF.focal(logits, y.detach(), alpha=alpha, gamma=gamma, reduction="sum"), value.sum(),
              rtol=1e-12, atol=1e-300)


def test_a_set_config_builds_a_module_that_checks_multi_hot_labels():
    assert "focal" in lossfn.losses_for("set")
    config = lossfn.decode_config({"type": "focal", "alpha": 0.4, "gamma": 3.0}, feature="set")
    assert (config.alpha, config.gamma) == (0.4, 3.0)
    module = lossfn.build(config, feature="set", reduction="none")
    logits, _, hot = _set_inputs(4, 3, "float")
    for labels in (hot, hot.long(), hot.bool(), torch.rand(4, 3, dtype=torch.float64)):  # multi-hot, probabilities
        close(module(logits, labels), torchvision_sigmoid_focal_loss(logits, labels.double(), 0.4, 3.0))
    for bad, seen in [(2, r"\[0, 2\]"), (-1, r"\[-1, 1\]"), (1.5, r"\[0, 1.5\]"), (-0.25, r"\[-0.25, 1\]")]:
        labels = hot.clone() if isinstance(bad, float) else hot.long()
        labels[1, 2] = bad
        with pytest.raises(ValueError, match=rf"^focal: labels must be targets in \[0, 1\]; got values in {seen}"):
            module(logits, labels)
    nan = hot.clone()
    nan[0, 0] = torch.nan
    with pytest.raises(ValueError, match=r"^focal: labels must be targets in \[0, 1\]"):
        module(logits, nan)


# -- poly ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(DATA["cases"])), ids=[
    f"{c['label']} epsilon={c['epsilon']}" for c in DATA["cases"]
])
def test_poly_matches_optax(index):
    case = DATA["cases"][index]
    logits = torch.tensor(case["logits"], dtype=torch.float64)
    labels = torch.tensor(case["labels"])
    if logits.ndim > 2:  # optax takes the classes last, lossfn on dimension 1
        logits = logits.movedim(-1, 1)
    value, gradient = torch.tensor(case["value"], dtype=torch.float64), torch.tensor(case["grad"], dtype=torch.float64)
    if logits.ndim > 2:
        gradient = gradient.movedim(-1, 1)
    epsilon = 2.0 if case["epsilon"] is None else case["epsilon"]  # optax's default epsilon is 2
    leaf = logits.clone().requires_grad_()
    ours = LF.poly(leaf, labels, epsilon=epsilon, reduction="none")
    (ours_grad,) = torch.autograd.grad(ours.sum(), leaf)
    close(ours.detach(), value, rtol=1e-12, atol=1e-12)
    close(ours_grad, gradient, rtol=1e-12, atol=1e-12)
    close(LF.poly(logits, labels, epsilon=epsilon), value.mean(), rtol=1e-12, atol=1e-12)


def test_poly_default_is_ludwigs_epsilon_1_not_optaxs_2():
    assert lossfn.get_loss("poly").defaults["epsilon"] == 1.0
    case = next(c for c in DATA["cases"] if c["epsilon"] is None and c["label"] == "[6, 5] scale 2")
    logits, labels = torch.tensor(case["logits"], dtype=torch.float64), torch.tensor(case["labels"])
    optax_default = torch.tensor(case["value"], dtype=torch.float64)
    ce = F.cross_entropy(logits, labels, reduction="none")
    # optax's default is CE + 2 (1 - p_y), lossfn's CE + (1 - p_y): halfway between it and CE
    close(LF.poly(logits, labels, reduction="none"), (ce + optax_default) / 2)


@pytest.mark.parametrize("shape", [(6, 5), (2, 5, 3, 4), (5,)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_poly_is_ludwigs_number_and_the_cross_entropy_at_epsilon_0(shape, reduction):
    logits, labels = _class_inputs(*shape)
    for epsilon in (0.0, 0.3, 1.0, 2.0, 10.0):
        expected = _reduce(ludwig_poly(logits, labels, epsilon=epsilon), reduction)
        close(LF.poly(logits, labels, epsilon=epsilon, reduction=reduction), expected)
    cross_entropy = F.cross_entropy(logits, labels, reduction=reduction)
    close(LF.poly(logits, labels, epsilon=0.0, reduction=reduction), cross_entropy)


def test_poly_takes_class_indices_only():
    with pytest.raises(ValueError, match=r"^poly: labels must be integer class indices; got dtype torch.float32"):
        LF.poly(torch.randn(4, 3), torch.softmax(torch.randn(4, 3), 1))
    with pytest.raises(ValueError, match=r"^poly: labels must be class indices of shape \[4\] for logits \[4, 3\]"):
        LF.poly(torch.randn(4, 3), torch.zeros(4, 3, dtype=torch.long))
