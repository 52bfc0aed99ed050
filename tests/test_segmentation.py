"""Values of the segmentation losses ``dice`` and ``lovasz_softmax`` against independent references.

References, none of them lossfn:

- loops over examples and classes written from the papers' formulas, in
  ``tests/cases/segmentation.py``: the soft Dice coefficient, and the authors'
  Lovász-Softmax algorithm (bermanmaxim/LovaszSoftmax, ``classes="present"``,
  ``per_image=True`` / ``False``);
- ``kornia.losses.dice_loss(average="macro", eps=0)`` and
  ``kornia.losses.lovasz_softmax_loss``, with the formulas that relate them to
  lossfn where their conventions differ (kornia averages Dice over the present
  classes only, and Lovász over all classes per image);
- Ludwig 0.17.8's ``DiceLoss`` and ``LovaszSoftmaxLoss`` written out below from
  their formulas (Ludwig cannot be installed here);
- the Jaccard index itself: on hard (one-hot) probabilities the Lovász extension
  equals the set function, 1 - IoU per class.

The generic checks (transforms, reductions, configs, modules, dtypes) run over the
cases in ``tests/cases/segmentation.py`` in ``tests/test_conformance.py``.
"""

from __future__ import annotations

import kornia
import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

import lossfn
import lossfn.functional as LF

from cases.segmentation import dice_reference, images, lovasz_reference

REDUCTIONS = ("none", "mean", "sum")


def _inputs(shape=(5, 4, 3, 5), seed=0, dtype=torch.float64, every_class=False):
    """Normal logits ``[B, C, *spatial]`` (scale 2) and labels; with ``every_class`` each
    example holds every class (its first C pixels are 0, 1, ..., C-1)."""
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


# -- Ludwig 0.17.8, written out from its modules' formulas ----------------------------


def ludwig_dice(logits, labels, smooth=1.0):
    """``DiceLoss.forward``: 1 - the mean over (example, class) of (2I + s) / (P + T + s); [B, C, H, W] only."""
    batch, classes = logits.shape[:2]
    p = torch.softmax(logits, 1).reshape(batch, classes, -1)
    t = F.one_hot(labels, classes).permute(0, 3, 1, 2).to(logits.dtype).reshape(batch, classes, -1)
    return 1 - ((2 * (p * t).sum(2) + smooth) / (p.sum(2) + t.sum(2) + smooth)).mean()


def ludwig_lovasz(logits, labels):
    """``LovaszSoftmaxLoss.forward``: the batch flattened, the sum over present classes divided by C, shape [1]."""
    classes = logits.shape[1]
    p = torch.softmax(logits, 1).permute(0, 2, 3, 1).reshape(-1, classes)
    y = labels.reshape(-1)
    total = torch.zeros(1, dtype=logits.dtype)
    for c in range(classes):
        fg = (y == c).to(logits.dtype)
        if fg.sum() == 0:
            continue
        errors, order = torch.sort((fg - p[:, c]).abs(), descending=True)
        g = fg[order]
        jaccard = 1 - (g.sum() - g.cumsum(0)) / (g.sum() + (1 - g).cumsum(0))
        total = total + torch.dot(errors, torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]]))
    return total / classes


# -- dice -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 7), (5, 4, 3, 5), (2, 3, 2, 3, 4)], ids=str)
@pytest.mark.parametrize("smooth", [0.0, 1.0, 2.5])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_dice_equals_the_loop_reference_for_any_spatial_rank(shape, smooth, reduction):
    logits, labels = _inputs(shape)
    _close(LF.dice(logits, labels, smooth=smooth, reduction=reduction),
           dice_reference(logits, labels, smooth=smooth, reduction=reduction))


@pytest.mark.parametrize("smooth", [0.0, 1.0, 3.0])
def test_dice_mean_is_ludwigs_number_and_its_gradient(smooth):
    logits, labels = _inputs()
    leaf = logits.clone().requires_grad_()
    ours = LF.dice(leaf, labels, smooth=smooth)
    (ours_grad,) = torch.autograd.grad(ours, leaf)
    leaf = logits.clone().requires_grad_()
    theirs = ludwig_dice(leaf, labels, smooth)
    (their_grad,) = torch.autograd.grad(theirs, leaf)
    _close(ours, theirs)
    _close(ours_grad, their_grad)


def test_dice_equals_kornia_macro_where_every_class_is_present():
    """kornia's macro Dice at eps=0 averages over the present classes: lossfn's smooth=0 when all are present."""
    logits, labels = _inputs(every_class=True)
    _close(LF.dice(logits, labels, smooth=0.0), kornia.losses.dice_loss(logits, labels, average="macro", eps=0.0))


def test_dice_relates_to_kornia_macro_through_the_absent_classes():
    """With absent classes (D = 0 for them at smooth 0): ℓ_n = (|K_n|·kornia_n + (C - |K_n|)) / C."""
    logits, labels = _inputs((4, 6, 2, 2))  # 4 pixels, 6 classes: some absent in each image
    classes = logits.shape[1]
    ours = LF.dice(logits, labels, smooth=0.0, reduction="none")
    for n in range(logits.shape[0]):
        present = len(labels[n].unique())
        assert present < classes
        theirs = kornia.losses.dice_loss(logits[n : n + 1], labels[n : n + 1], average="macro", eps=0.0)
        _close(ours[n], (present * theirs + (classes - present)) / classes)


def test_dice_zero_denominator_is_a_coefficient_of_one_never_nan():
    """smooth=0, a class absent and its probabilities underflowing to 0: D = 1, finite gradient; Ludwig: NaN."""
    logits, labels = _inputs((3, 3, 4, 4), dtype=torch.float32)
    logits[:, 2] = -1e4
    labels = labels % 2
    smooth = torch.tensor(0.0, requires_grad=True)
    leaf = logits.clone().requires_grad_()
    loss = LF.dice(leaf, labels, smooth=smooth, reduction="none")
    by_logits, by_smooth = torch.autograd.grad(loss.sum(), (leaf, smooth))
    assert torch.isfinite(by_logits).all() and torch.isfinite(by_smooth)
    expected = dice_reference(logits.double(), labels, smooth=0.0, reduction="none")  # its 0/0 is 1 too
    _close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    assert torch.isnan(ludwig_dice(logits, labels, smooth=0.0))


@pytest.mark.parametrize("name", ["dice", "lovasz_softmax"])
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_images_without_pixels_give_zero_and_a_zero_gradient(name, smooth):
    logits = torch.randn(2, 3, 0, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.zeros(2, 0, 4, dtype=torch.int64)
    params = {"smooth": smooth} if name == "dice" else {}
    loss = lossfn.get_loss(name).fn
    _close(loss(logits, labels, **params, reduction="none"), torch.zeros(2, dtype=torch.float64))
    mean = loss(logits, labels, **params)
    (gradient,) = torch.autograd.grad(mean, logits)
    assert mean.item() == 0.0 and gradient.shape == logits.shape


# -- lovasz_softmax ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 7), (5, 4, 3, 5), (2, 3, 2, 3, 4)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_lovasz_equals_the_authors_algorithm_and_its_gradient(shape, reduction):
    """"none": per_image=True's terms; "mean": per_image=False; gradients through the authors' loop too."""
    logits, labels = _inputs(shape)
    leaf = logits.clone().requires_grad_()
    ours = LF.lovasz_softmax(leaf, labels, reduction=reduction)
    (ours_grad,) = torch.autograd.grad(ours.sum(), leaf)
    leaf = logits.clone().requires_grad_()
    theirs = lovasz_reference(leaf, labels, reduction=reduction)
    (their_grad,) = torch.autograd.grad(theirs.sum(), leaf)
    _close(ours, theirs)
    _close(ours_grad, their_grad)


def test_lovasz_float32_gradient_keeps_its_digits_on_many_pixels():
    """131k pixels: the closed-form Jaccard steps keep the float32 gradient at float64's (to 1e-4 of its
    largest entry), where the authors' first differences of float32 Jaccard values lose about 1%."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 2, 256, 512, generator=generator)
    labels = torch.randint(0, 2, (1, 256, 512), generator=generator)

    def gradient(loss, x):
        x = x.clone().requires_grad_()
        return torch.autograd.grad(loss(x, labels), x)[0].double()

    exact = gradient(LF.lovasz_softmax, logits.double())
    scale = exact.abs().max()
    assert (gradient(LF.lovasz_softmax, logits) - exact).abs().max() < 1e-4 * scale
    assert (gradient(lovasz_reference, logits) - exact).abs().max() > 1e-3 * scale


def test_lovasz_per_image_mean_is_the_mean_of_none():
    logits, labels = _inputs()
    per_image = torch.stack([lovasz_reference(logits[n : n + 1], labels[n : n + 1]) for n in range(len(logits))])
    _close(LF.lovasz_softmax(logits, labels, reduction="none").mean(), per_image.mean())
    assert not torch.isclose(LF.lovasz_softmax(logits, labels), per_image.mean())  # "mean" is batch-level


def test_lovasz_on_hard_predictions_is_one_minus_iou_over_present_classes():
    """The Lovász extension equals the Jaccard loss at 0/1 errors: mean over present classes of 1 - IoU."""
    generator = torch.Generator().manual_seed(4)
    classes = 4
    labels = torch.randint(0, classes, (6, 5, 5), generator=generator)
    predicted = torch.where(torch.rand(labels.shape, generator=generator) < 0.7, labels, (labels + 1) % classes)
    logits = 1e4 * F.one_hot(predicted, classes).movedim(-1, 1).double()  # softmax exactly one-hot
    expected = []
    for y, y_hat in zip(labels, predicted):
        ious = [
            ((y == c) & (y_hat == c)).sum().double() / ((y == c) | (y_hat == c)).sum().double()
            for c in range(classes)
            if (y == c).any()
        ]
        expected.append(1 - torch.stack(ious).mean())
    _close(LF.lovasz_softmax(logits, labels, reduction="none"), torch.stack(expected))


def test_lovasz_mean_relates_to_ludwigs_number():
    """Ludwig divides the sum over the batch's present classes by C: Ludwig = |K| / C · lossfn's mean."""
    logits, labels = _inputs()
    _close(LF.lovasz_softmax(logits, labels), ludwig_lovasz(logits, labels)[0])  # every class present
    labels = labels % 3  # class 3 of 4 absent from the whole batch
    _close(ludwig_lovasz(logits, labels)[0], 3 / 4 * LF.lovasz_softmax(logits, labels))


def test_lovasz_equals_kornia_where_every_class_is_present():
    """kornia: per image, the mean over all C classes, then over images: the mean of "none" here."""
    logits, labels = _inputs(every_class=True)
    theirs = kornia.losses.lovasz_softmax_loss(logits, labels)
    _close(LF.lovasz_softmax(logits, labels, reduction="none").mean(), theirs)


def test_lovasz_relates_to_kornia_through_the_absent_classes():
    """kornia_n = (|K_n|·ℓ_n + Σ_{c absent} max_i p_{n,c,i}) / C (an absent class enters with its largest error)."""
    logits, labels = _inputs((4, 6, 2, 2))
    classes = logits.shape[1]
    ours = LF.lovasz_softmax(logits, labels, reduction="none")
    p = torch.softmax(logits, 1).flatten(2)
    for n in range(logits.shape[0]):
        present = torch.zeros(classes, dtype=torch.bool)
        present[labels[n].unique()] = True
        assert not present.all()
        absent_errors = p[n].amax(-1)[~present].sum()
        theirs = kornia.losses.lovasz_softmax_loss(logits[n : n + 1], labels[n : n + 1])
        _close(theirs, (present.sum() * ours[n] + absent_errors) / classes)


# -- both: bounds, transforms, shapes -----------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_values_lie_in_the_unit_interval(seed):
    logits, labels = _inputs(seed=seed)
    logits = logits * (seed + 1)
    for value in (
        LF.dice(logits, labels, reduction="none"),
        LF.dice(logits, labels, smooth=0.0, reduction="none"),
        LF.lovasz_softmax(logits, labels, reduction="none"),
        LF.lovasz_softmax(logits, labels)[None],
    ):
        assert ((0 <= value) & (value <= 1)).all()


@pytest.mark.parametrize("name", ["dice", "lovasz_softmax"])
def test_vmap_grad_over_images_with_their_batch_dimension_equals_autograd(name):
    """What the skipped generic per-example check covers, with one image given as ``x[None]``."""
    logits, labels = images(5, torch.float64, torch.Generator().manual_seed(2))
    loss = lossfn.get_loss(name).fn
    per_image = vmap(grad(lambda x, y: loss(x[None], y[None])))(logits, labels)
    for n in range(len(logits)):
        leaf = logits[n : n + 1].clone().requires_grad_()
        (expected,) = torch.autograd.grad(loss(leaf, labels[n : n + 1]), leaf)
        _close(per_image[n], expected[0])
    # under vmap "none" gives the per-image losses too
    _close(vmap(lambda x, y: loss(x[None], y[None], reduction="none")[0])(logits, labels),
           loss(logits, labels, reduction="none"))


def test_compiled_fullgraph_equals_eager_for_the_means():
    """The paths the generic check (``"none"``, a number smooth) leaves out: Dice's mean with a tensor
    smooth and Lovász's batch-level mean, in one compilation."""
    logits, labels = images(4, torch.float32, torch.Generator().manual_seed(3))
    smooth = torch.tensor(0.5)

    def every(x, y, s):
        return LF.dice(x, y, smooth=s), LF.lovasz_softmax(x, y)

    torch._dynamo.reset()
    compiled = torch.compile(every, fullgraph=True, backend="aot_eager")  # the capture is the point: no codegen
    for actual, expected in zip(compiled(logits, labels, smooth), every(logits, labels, smooth)):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["dice", "lovasz_softmax"])
def test_one_image_without_its_batch_dimension_is_a_clear_error(name):
    logits, labels = _inputs((1, 3, 4, 5))
    with pytest.raises(ValueError, match=rf"^{name}: labels must be class indices of shape \[3, 5\]"):
        lossfn.get_loss(name).fn(logits[0], labels[0])


@pytest.mark.parametrize("name", ["dice", "lovasz_softmax"])
def test_logits_without_classes_are_a_clear_error(name):
    with pytest.raises(ValueError, match=rf"^{name}: logits must be of shape .* with at least one class"):
        lossfn.get_loss(name).fn(torch.zeros(2, 0, 3), torch.zeros(2, 3, dtype=torch.int64))


@pytest.mark.parametrize("name", ["dice", "lovasz_softmax"])
def test_the_module_refuses_a_label_equal_to_the_number_of_classes(name):
    logits, labels = _inputs((2, 3, 2, 2))
    labels[1, 1, 1] = 3
    with pytest.raises(ValueError, match=rf"^{name}: labels must be class indices in \[0, 2\]"):
        lossfn.get_loss(name).module()(logits, labels)
