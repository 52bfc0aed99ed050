"""Values of ``tversky``, ``generalized_dice``, ``jaccard`` and ``lovasz_hinge`` against independent references.

References, none of them lossfn:

- optax 0.2.8 (``tests/data/overlap_optax.json``, written by
  ``scripts/make_overlap_vectors.py``, float64, values and gradients):
  ``optax.losses.dice_loss(alpha=, beta=, smooth=)`` for ``tversky`` and
  ``optax.losses.multiclass_generalized_dice_loss`` on each example for
  ``generalized_dice``;
- loops written from the formulas in ``tests/cases/overlap.py``, and closed forms here
  (Dice as 2I / (P + T), the IoU of hard predictions, 2 (1 - IoU) of ±1 logits);
- ``kornia.losses.tversky_loss(eps=0)`` and ``kornia.losses.lovasz_hinge_loss``, with
  the relation to lossfn where their conventions differ;
- segmentation_models_pytorch's ``JaccardLoss(mode="multiclass")``, written out below
  (it cannot be installed here), and the authors' binary Lovász hinge algorithm.

The generic checks (transforms, reductions, configs, modules, dtypes) run over the
cases in ``tests/cases/overlap.py`` in ``tests/test_conformance.py``.
"""

from __future__ import annotations

import json
import pathlib

import kornia
import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

import lossfn
import lossfn.functional as LF

from cases.overlap import (
    generalized_dice_reference,
    jaccard_reference,
    lovasz_hinge_flat,
    lovasz_hinge_reference,
    pixels,
    tversky_reference,
)
from cases.segmentation import images

DATA = json.loads((pathlib.Path(__file__).parent / "data" / "overlap_optax.json").read_text())
REDUCTIONS = ("none", "mean", "sum")
SHAPES = [(4, 3), (4, 3, 7), (5, 4, 3, 5), (2, 3, 2, 3, 4)]
CLASS_LOSSES = ("tversky", "generalized_dice", "jaccard")


def _inputs(shape=(5, 4, 3, 5), seed=0, dtype=torch.float64, every_class=False):
    """Normal logits ``[B, C, *spatial]`` (scale 2) and labels; with ``every_class`` each
    example's first C pixels are 0, 1, ..., C-1."""
    generator = torch.Generator().manual_seed(seed)
    batch, classes, *spatial = shape
    logits = 2 * torch.randn(shape, generator=generator, dtype=dtype)
    labels = torch.randint(0, classes, (batch, *spatial), generator=generator)
    if every_class:
        flat = labels.reshape(batch, -1)
        flat[:, :classes] = torch.arange(classes)
        labels = flat.reshape(labels.shape)
    return logits, labels


def _close(actual, expected, **tolerance):
    torch.testing.assert_close(actual, expected, **(tolerance or {"rtol": 1e-10, "atol": 1e-12}))


def _value_and_grad(loss, logits, *args, **params):
    leaf = logits.clone().requires_grad_()
    value = loss(leaf, *args, **params)
    return value.detach(), torch.autograd.grad(value.sum(), leaf)[0]


def _tensor(values):
    return torch.tensor(values, dtype=torch.float64)


# -- tversky ---------------------------------------------------------------------------


LOOP_SETTINGS = [
    ("tversky", {}),
    ("tversky", {"alpha": 0.2, "beta": 0.9, "smooth": 0.0}),
    ("tversky", {"alpha": 1.5, "beta": 0.0, "gamma": 2.0}),
    ("tversky", {"alpha": 0.0, "beta": 1.0, "smooth": 3.0, "gamma": 0.5}),
    *[(name, {"smooth": s}) for name in ("generalized_dice", "jaccard") for s in (0.0, 1.0, 2.5)],
]
LOOPS = {"tversky": tversky_reference, "generalized_dice": generalized_dice_reference, "jaccard": jaccard_reference}


@pytest.mark.parametrize("name,params", LOOP_SETTINGS, ids=str)
def test_the_class_losses_equal_their_loops_for_any_spatial_rank(name, params):
    for seed, shape in enumerate(SHAPES):
        logits, labels = _inputs(shape, seed=seed)
        for reduction in REDUCTIONS:
            _close(lossfn.get_loss(name).fn(logits, labels, **params, reduction=reduction),
                   LOOPS[name](logits, labels, **params, reduction=reduction))


@pytest.mark.parametrize("entry", DATA["dice_loss"], ids=lambda e: e["label"])
def test_tversky_equals_optax_dice_loss_and_its_gradient(entry):
    """optax's dice_loss(alpha, beta, smooth) is the Tversky loss, averaged over the classes per example."""
    logits, labels = _tensor(entry["logits"]), torch.tensor(entry["labels"])
    for result in entry["results"]:
        params = {k: result[k] for k in ("alpha", "beta", "smooth")}
        value, gradient = _value_and_grad(LF.tversky, logits, labels, **params, reduction="none")
        _close(value, _tensor(result["value"]))
        _close(gradient, _tensor(result["grad"]))


@pytest.mark.parametrize("smooth", [0.0, 1.0, 2.5])
def test_tversky_at_one_half_is_dice_with_twice_the_smoothing_and_the_closed_form(smooth):
    """α = β = ½: TI = (I + s) / ((P + T)/2 + s) = (2I + 2s) / (P + T + 2s); at s = 0, 2I / (P + T)."""
    logits, labels = _inputs((4, 3, 4, 5))
    ours = LF.tversky(logits, labels, smooth=smooth, reduction="none")
    _close(ours, LF.dice(logits, labels, smooth=2 * smooth, reduction="none"))
    p = torch.softmax(logits, 1).flatten(2)
    t = F.one_hot(labels.flatten(1), 3).movedim(-1, 1).double()
    coefficient = (2 * (p * t).sum(-1) + 2 * smooth) / (p.sum(-1) + t.sum(-1) + 2 * smooth)
    _close(ours, 1 - coefficient.mean(-1))


def test_tversky_equals_kornia_where_every_class_is_present():
    logits, labels = _inputs(every_class=True)
    for alpha, beta in [(0.5, 0.5), (0.3, 0.7), (1.0, 0.2)]:
        theirs = kornia.losses.tversky_loss(logits, labels, alpha, beta, eps=0.0)
        _close(LF.tversky(logits, labels, alpha=alpha, beta=beta, smooth=0.0), theirs)


def test_tversky_relates_to_kornia_through_the_absent_classes():
    """kornia averages over the present classes; an absent class's index is 0 at smooth 0 (α > 0):
    ℓ_n = (|K_n|·kornia_n + (C - |K_n|)) / C."""
    logits, labels = _inputs((4, 6, 2, 2))
    classes = logits.shape[1]
    ours = LF.tversky(logits, labels, alpha=0.3, beta=0.7, smooth=0.0, reduction="none")
    for n in range(len(logits)):
        present = len(labels[n].unique())
        assert present < classes
        theirs = kornia.losses.tversky_loss(logits[n : n + 1], labels[n : n + 1], 0.3, 0.7, eps=0.0)
        _close(ours[n], (present * theirs + (classes - present)) / classes)


def test_focal_tversky_raises_each_class_term_not_the_mean():
    """Abraham & Khan's exponent per class (their 1/γ); smp's TverskyLoss raises the class mean instead."""
    logits, labels = _inputs()
    for gamma in (0.5, 2.0):
        ours = LF.tversky(logits, labels, gamma=gamma, reduction="none")
        _close(ours, tversky_reference(logits, labels, gamma=gamma, reduction="none"))
        smp_style = tversky_reference(logits, labels, reduction="none") ** gamma
        assert not torch.allclose(ours, smp_style)


@pytest.mark.parametrize("gamma", [1e-15, 0.25, 0.75, 1.0])
def test_focal_tversky_gradient_is_finite_at_a_perfect_class(gamma):
    """(1 - TI)^γ has an infinite slope at TI = 1 for γ < 1: finite gradient at saturated float32 logits,
    also where 1 - TI is subnormal (a gap of 100: p = e^-100); the value as the float64 closed form
    (1e-15: finite only)."""
    labels = torch.tensor([[[0, 1], [2, 1]], [[2, 2], [0, 1]]])
    logits = 1e4 * F.one_hot(labels, 3).movedim(-1, 1).float()  # perfect, saturated predictions
    logits[0, 2, 0, 0] = 1e4 - 100.0  # class 2 at a pixel of class 0: a subnormal probability in float32
    value, gradient = _value_and_grad(LF.tversky, logits, labels, smooth=0.0, gamma=gamma, reduction="none")
    assert torch.isfinite(value).all() and torch.isfinite(gradient).all()
    # 1 - TI = (FP + FN) / (2I + FP + FN) at α = β = ½, s = 0, with 1 - p as the sum of the other classes
    p = torch.softmax(logits.double(), 1).flatten(2)
    t = F.one_hot(labels.flatten(1), 3).movedim(-1, 1).double()
    false_positive, intersection = (p * (1 - t)).sum(-1), (p * t).sum(-1)
    others = torch.stack([p[:, [1, 2]], p[:, [0, 2]], p[:, [0, 1]]], 1).sum(2)  # 1 - p without rounding
    false_negative = (others * t).sum(-1)
    q = (false_positive + false_negative) / (2 * intersection + false_positive + false_negative)
    if gamma >= 0.25:  # near γ = 0, q^γ jumps from 0 to 1 on the e^-100 float32 cannot add to 1e4
        _close(value.double(), (q**gamma).mean(-1), rtol=1e-5, atol=1e-6)
    gamma_leaf = torch.tensor(gamma, requires_grad=True)
    (by_gamma,) = torch.autograd.grad(LF.tversky(logits, labels, smooth=0.0, gamma=gamma_leaf), gamma_leaf)
    assert torch.isfinite(by_gamma)


# -- generalized_dice --------------------------------------------------------------------


def _generalized_entries(empty):
    return [e for e in DATA["generalized_dice"] if e["empty_class"] is empty]


def _smooth(result):
    return {} if result["smooth"] is None else {"smooth": result["smooth"]}


@pytest.mark.parametrize("entry", _generalized_entries(False), ids=lambda e: e["label"])
def test_generalized_dice_equals_optax_on_each_example_and_its_gradient(entry):
    """Every class present in every example: optax's number for each example alone, within optax's
    1e-7 added to T² (a relative 1e-7 / T² on a weight); its mean is optax's number at B = 1."""
    logits, labels = _tensor(entry["logits"]), torch.tensor(entry["labels"])
    for result in entry["results"]:
        value, gradient = _value_and_grad(LF.generalized_dice, logits, labels, **_smooth(result), reduction="none")
        _close(value, _tensor(result["per_example"]), rtol=1e-7, atol=1e-9)
        _close(gradient, _tensor(result["grad"]), rtol=1e-6, atol=1e-9)
        _close(LF.generalized_dice(logits[:1], labels[:1], **_smooth(result)), value[0])


def test_optax_generalized_dice_takes_its_class_weights_from_the_whole_batch():
    """What optax's batch number is (its formula written out here): weights from the batch's counts,
    then the mean over (example, class) of the weighted Dice losses. lossfn's mean is another number."""
    for entry in _generalized_entries(False):
        logits, labels = _tensor(entry["logits"]), torch.tensor(entry["labels"])
        classes = logits.shape[1]
        for result in entry["results"]:
            smooth = 1.0 if result["smooth"] is None else result["smooth"]
            p = torch.softmax(logits, 1).flatten(2)
            t = F.one_hot(labels.flatten(1), classes).movedim(-1, 1).double()
            i, total_p, total_t = (p * t).sum(-1), p.sum(-1), t.sum(-1)
            d = 1 - (i + smooth) / (i + (total_p - i) / 2 + (total_t - i) / 2 + smooth)
            w = 1 / (total_t.sum(0) ** 2 + 1e-7)
            w = w / w.sum() * classes
            _close(_tensor(result["batch"]), (d * w).mean())
            ours = LF.generalized_dice(logits, labels, **_smooth(result))
            assert abs(ours.item() - result["batch"]) > 1e-4


@pytest.mark.parametrize("entry", _generalized_entries(True), ids=lambda e: e["label"])
def test_generalized_dice_with_an_empty_class_against_optax(entry):
    """optax weighs an absent class 1/1e-7: its loss of that example is the absent class's Dice loss
    1 - s / (P/2 + s) to within about 1e-7 (the present classes get ~1e-7/T² of the weight). lossfn
    gives the absent class the largest present weight (the loop reference, NiftyNet's and MONAI's
    rule) and keeps optax's number on the other examples."""
    logits, labels = _tensor(entry["logits"]), torch.tensor(entry["labels"])
    for result in entry["results"]:
        smooth = 1.0 if result["smooth"] is None else result["smooth"]
        theirs = _tensor(result["per_example"])
        p = torch.softmax(logits[0], 0).flatten(1)[-1]  # the absent class of example 0
        absent_dice = 1 - smooth / (p.sum() / 2 + smooth) if smooth > 0 else torch.tensor(1.0, dtype=torch.float64)
        _close(theirs[0], absent_dice, rtol=1e-5, atol=1e-7)
        value, gradient = _value_and_grad(LF.generalized_dice, logits, labels, **_smooth(result), reduction="none")
        _close(value, generalized_dice_reference(logits, labels, smooth=smooth, reduction="none"))
        _close(value[1:], theirs[1:], rtol=1e-7, atol=1e-9)
        _close(gradient[1:], _tensor(result["grad"])[1:], rtol=1e-6, atol=1e-9)
        assert torch.isfinite(gradient).all() and abs(value[0].item() - theirs[0].item()) > 1e-3


def test_generalized_dice_at_equal_counts_is_tversky_at_one_half():
    """Every class the same number of pixels: equal weights, the plain mean of the Dice losses."""
    generator = torch.Generator().manual_seed(5)
    logits = 2 * torch.randn(3, 4, 2, 4, generator=generator, dtype=torch.float64)
    labels = torch.stack([torch.randperm(8, generator=generator).reshape(2, 4) % 4 for _ in range(3)])
    for smooth in (0.0, 1.5):
        _close(LF.generalized_dice(logits, labels, smooth=smooth, reduction="none"),
               LF.dice(logits, labels, smooth=2 * smooth, reduction="none"))


# -- jaccard -----------------------------------------------------------------------------


def smp_jaccard(logits, labels, smooth=0.0, eps=1e-7):
    """segmentation_models_pytorch ``JaccardLoss(mode="multiclass", from_logits=True)``: sums over the
    batch and the pixels (dims=(0, 2)), (I + s) / clamp_min(U + s, eps), a class absent from the
    batch set to 0, the mean over all C classes."""
    batch, classes = logits.shape[:2]
    p = logits.log_softmax(1).exp().reshape(batch, classes, -1)
    t = F.one_hot(labels.reshape(batch, -1), classes).permute(0, 2, 1).to(p.dtype)
    intersection = (p * t).sum((0, 2))
    union = (p + t).sum((0, 2)) - intersection
    loss = 1 - (intersection + smooth) / (union + smooth).clamp_min(eps)
    return (loss * (t.sum((0, 2)) > 0).to(p.dtype)).mean()


@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_jaccard_equals_smp_for_one_example_with_every_class(smooth):
    logits, labels = _inputs(every_class=True)
    for n in range(len(logits)):
        row = (logits[n : n + 1], labels[n : n + 1])
        _close(LF.jaccard(*row, smooth=smooth), smp_jaccard(*row, smooth=smooth))


@pytest.mark.parametrize("smooth", [0.0, 1.0, 2.5])
def test_jaccard_relates_to_smp_through_the_absent_classes(smooth):
    """smp sets an absent class's loss to 0; here it is P / (P + s) (1 at s = 0): for one example,
    smp = ℓ - (1/C) Σ_{c absent} P_c / (P_c + s)."""
    logits, labels = _inputs((4, 6, 2, 2))
    classes = logits.shape[1]
    ours = LF.jaccard(logits, labels, smooth=smooth, reduction="none")
    p = torch.softmax(logits, 1).flatten(2).sum(-1)
    for n in range(len(logits)):
        absent = torch.ones(classes, dtype=torch.bool)
        absent[labels[n].unique()] = False
        assert absent.any()
        correction = (p[n] / (p[n] + smooth))[absent].sum() / classes
        _close(smp_jaccard(logits[n : n + 1], labels[n : n + 1], smooth=smooth), ours[n] - correction)
    assert not torch.isclose(smp_jaccard(logits, labels), ours.mean())  # smp pools the batch


def test_jaccard_on_hard_predictions_is_one_minus_the_mean_iou():
    """Saturated one-hot softmax, smooth 0: J = |A ∩ B| / |A ∪ B| per class, 1 for a class in neither."""
    generator = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 4, (6, 5, 5), generator=generator)
    predicted = torch.where(torch.rand(labels.shape, generator=generator) < 0.7, labels, (labels + 1) % 4)
    predicted[0] = predicted[0] % 3  # class 3: maybe in neither set in image 0
    labels[0] = labels[0] % 3
    logits = 1e4 * F.one_hot(predicted, 4).movedim(-1, 1).double()
    expected = []
    for y, y_hat in zip(labels, predicted):
        ious = []
        for c in range(4):
            union = ((y == c) | (y_hat == c)).sum()
            ious.append(((y == c) & (y_hat == c)).sum().double() / union if union > 0 else torch.tensor(1.0).double())
        expected.append(1 - torch.stack(ious).mean())
    _close(LF.jaccard(logits, labels, smooth=0.0, reduction="none"), torch.stack(expected))


def test_jaccard_is_tversky_at_one_one():
    logits, labels = _inputs()
    for smooth in (0.0, 1.0):
        _close(LF.jaccard(logits, labels, smooth=smooth, reduction="none"),
               tversky_reference(logits, labels, alpha=1.0, beta=1.0, smooth=smooth, reduction="none"))


# -- lovasz_hinge --------------------------------------------------------------------------


def _binary(shape, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(shape, generator=generator, dtype=dtype)
    return logits, torch.randint(0, 2, shape, generator=generator)


@pytest.mark.parametrize("shape", [(6,), (4, 7), (5, 3, 4), (2, 3, 2, 4)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_lovasz_hinge_equals_the_authors_algorithm_and_its_gradient(shape, reduction):
    logits, labels = _binary(shape)
    labels[0] = 0  # an image without foreground
    ours = _value_and_grad(LF.lovasz_hinge, logits, labels, reduction=reduction)
    theirs = _value_and_grad(lovasz_hinge_reference, logits, labels, reduction=reduction)
    _close(ours[0], theirs[0])
    _close(ours[1], theirs[1])


def test_lovasz_hinge_mean_is_kornias_and_none_its_per_image_values():
    logits, labels = _binary((5, 4, 6))
    _close(LF.lovasz_hinge(logits, labels), kornia.losses.lovasz_hinge_loss(logits[:, None], labels))
    per_image = [kornia.losses.lovasz_hinge_loss(logits[n : n + 1, None], labels[n : n + 1]) for n in range(5)]
    _close(LF.lovasz_hinge(logits, labels, reduction="none"), torch.stack(per_image))


def test_lovasz_hinge_batch_level_loss_is_the_batch_as_one_image():
    """The authors' per_image=False: every pixel of the batch in one sorted set."""
    logits, labels = _binary((4, 3, 5))
    _close(LF.lovasz_hinge(logits.reshape(1, -1), labels.reshape(1, -1)),
           lovasz_hinge_flat(logits.reshape(-1), labels.reshape(-1)))


def test_lovasz_hinge_takes_bool_integer_float_and_soft_labels():
    """Probabilities enter the authors' formulas as they are; the gradient reaches them too."""
    logits, labels = _binary((4, 3, 5))
    expected = LF.lovasz_hinge(logits, labels, reduction="none")
    for same in (labels.bool(), labels.to(torch.int8), labels.to(torch.uint8), labels.double(), labels.float()):
        _close(LF.lovasz_hinge(logits, same, reduction="none"), expected)
    soft = torch.rand(labels.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    soft_leaf, reference_leaf = soft.clone().requires_grad_(), soft.clone().requires_grad_()
    ours = LF.lovasz_hinge(logits, soft_leaf, reduction="none")
    theirs = lovasz_hinge_reference(logits, reference_leaf, reduction="none")
    _close(ours, theirs)
    _close(*(torch.autograd.grad(v.sum(), leaf)[0] for v, leaf in ((ours, soft_leaf), (theirs, reference_leaf))))


def test_lovasz_hinge_at_unit_logits_is_twice_one_minus_iou():
    """Logits ±1 positive on the predicted foreground: errors 0 or 2, the loss 2 (1 - IoU)."""
    generator = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 2, (6, 4, 4), generator=generator)
    predicted = torch.where(torch.rand(labels.shape, generator=generator) < 0.8, labels, 1 - labels)
    labels[:, 0, 0] = predicted[:, 0, 0] = 1  # a non-empty union
    logits = 2.0 * predicted.double() - 1
    iou = (labels & predicted).flatten(1).sum(1).double() / (labels | predicted).flatten(1).sum(1)
    _close(LF.lovasz_hinge(logits, labels, reduction="none"), 2 * (1 - iou))


def test_lovasz_hinge_float32_gradient_keeps_its_digits_on_many_pixels():
    """131k pixels: the closed-form steps keep the float32 gradient at the authors' float64 one (3e-5 of
    its largest entry, from ties that float32's rounding of 1 - x makes), where their first differences
    of float32 Jaccard values lose 0.6%."""
    logits, labels = _binary((1, 256, 512), dtype=torch.float32)
    exact = _value_and_grad(lovasz_hinge_reference, logits.double(), labels)[1]
    scale = exact.abs().max()
    assert (_value_and_grad(LF.lovasz_hinge, logits, labels)[1].double() - exact).abs().max() < 1e-4 * scale
    authors = _value_and_grad(lovasz_hinge_reference, logits, labels)[1].double()
    assert (authors - exact).abs().max() > 1e-3 * scale


def test_lovasz_hinge_images_without_pixels_give_zero():
    logits = torch.randn(3, 0, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.zeros(3, 0, 4, dtype=torch.int64)
    _close(LF.lovasz_hinge(logits, labels, reduction="none"), torch.zeros(3, dtype=torch.float64))
    (gradient,) = torch.autograd.grad(LF.lovasz_hinge(logits, labels), logits)
    assert gradient.shape == logits.shape


# -- all: bounds, transforms, errors ---------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_values_lie_in_the_unit_interval(seed):
    logits, labels = _inputs(seed=seed)
    logits = logits * (seed + 1)
    for value in (
        LF.tversky(logits, labels, alpha=0.2, beta=0.8, gamma=0.5, reduction="none"),
        LF.generalized_dice(logits, labels, smooth=0.0, reduction="none"),
        LF.jaccard(logits, labels, reduction="none"),
    ):
        assert ((0 <= value) & (value <= 1)).all()


@pytest.mark.parametrize("name", [*CLASS_LOSSES, "lovasz_hinge"])
def test_a_nan_logit_makes_its_example_nan_never_a_number(name):
    make = pixels if name == "lovasz_hinge" else images
    logits, labels = make(3, torch.float64, torch.Generator().manual_seed(6))
    logits.view(-1)[0] = float("nan")
    params = {"gamma": 0.5} if name == "tversky" else {}
    value = lossfn.get_loss(name).fn(logits, labels, **params, reduction="none")
    assert torch.isnan(value[0]) and torch.isfinite(value[1:]).all()


@pytest.mark.parametrize("name", [*CLASS_LOSSES, "lovasz_hinge"])
def test_vmap_grad_over_images_with_their_batch_dimension_equals_autograd(name):
    """What the skipped generic per-example check covers, with one image given as ``x[None]``."""
    make = pixels if name == "lovasz_hinge" else images
    logits, labels = make(5, torch.float64, torch.Generator().manual_seed(2))
    loss = lossfn.get_loss(name).fn
    per_image = vmap(grad(lambda x, y: loss(x[None], y[None])))(logits, labels)
    for n in range(len(logits)):
        _close(per_image[n], _value_and_grad(loss, logits[n : n + 1], labels[n : n + 1])[1][0])
    _close(vmap(lambda x, y: loss(x[None], y[None], reduction="none")[0])(logits, labels),
           loss(logits, labels, reduction="none"))


def test_compiled_fullgraph_equals_eager_with_tensor_hyperparameters():
    """The paths the generic check (``"none"``, numbers) leaves out, in one compilation: tensor alpha and
    gamma < 1, the means, and lovasz_hinge on float labels (float64 counts)."""
    logits, labels = images(4, torch.float32, torch.Generator().manual_seed(3))
    x, y = pixels(4, torch.float32, torch.Generator().manual_seed(3))
    alpha, gamma = torch.tensor(0.3), torch.tensor(0.6)

    def every(logits, labels, x, y, alpha, gamma):
        return (LF.tversky(logits, labels, alpha=alpha, gamma=gamma), LF.generalized_dice(logits, labels),
                LF.jaccard(logits, labels, smooth=alpha), LF.lovasz_hinge(x, y.float()))

    torch._dynamo.reset()
    compiled = torch.compile(every, fullgraph=True, backend="aot_eager")  # the capture is the point
    arguments = (logits, labels, x, y, alpha, gamma)
    for actual, expected in zip(compiled(*arguments), every(*arguments)):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CLASS_LOSSES)
def test_one_image_without_its_batch_dimension_is_a_clear_error(name):
    logits, labels = _inputs((1, 3, 4, 5))
    with pytest.raises(ValueError, match=rf"^{name}: labels must be class indices of shape \[3, 5\]"):
        lossfn.get_loss(name).fn(logits[0], labels[0])


@pytest.mark.parametrize("name", CLASS_LOSSES)
def test_logits_without_classes_are_a_clear_error(name):
    with pytest.raises(ValueError, match=rf"^{name}: logits must be of shape .* with at least one class"):
        lossfn.get_loss(name).fn(torch.zeros(2, 0, 3), torch.zeros(2, 3, dtype=torch.int64))


@pytest.mark.parametrize("name", CLASS_LOSSES)
def test_the_module_refuses_a_label_equal_to_the_number_of_classes(name):
    logits, labels = _inputs((2, 3, 2, 2))
    labels[1, 1, 1] = 3
    with pytest.raises(ValueError, match=rf"^{name}: labels must be class indices in \[0, 2\]"):
        lossfn.get_loss(name).module()(logits, labels)


def test_lovasz_hinge_shape_errors_and_the_module_label_check():
    with pytest.raises(ValueError, match=r"^lovasz_hinge: logits must be of shape \[B\] or \[B, d1, ...\]"):
        LF.lovasz_hinge(torch.tensor(0.5), torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"^lovasz_hinge: labels must be of the same shape as logits \[2, 3\]"):
        LF.lovasz_hinge(torch.zeros(2, 3), torch.zeros(2, 1, 3))
    for bad in (2, -1):
        with pytest.raises(ValueError, match=r"^lovasz_hinge: labels must be targets in \[0, 1\]"):
            lossfn.get_loss("lovasz_hinge").module()(torch.zeros(2, 3), torch.full((2, 3), bad))
