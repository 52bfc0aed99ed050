"""The ranking softmax loss against stored optax vectors and torch's soft-target cross-entropy.

optax's numbers (``optax.losses.ranking_softmax_loss``, per list, mean and sum, and the
gradients of the mean) come from ``tests/data/pairs_optax.json``
(``scripts/make_pairs_vectors.py``). Without a mask the loss is also
``F.cross_entropy`` with probability targets, which runs here directly.
"""

from __future__ import annotations

import json
import math
import pathlib

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

import lossfn
import lossfn.functional as LF

DATA = json.loads((pathlib.Path(__file__).parent / "data" / "pairs_optax.json").read_text())["ranking_softmax"]
f64 = torch.float64


def close(actual, expected, rtol=1e-10, atol=1e-12):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def draw(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=f64) * 2, torch.randint(0, 4, shape, generator=g).to(f64)


@pytest.mark.parametrize("case", DATA, ids=lambda c: c["label"])
def test_optaxs_values_reductions_and_gradients(case):
    logits, labels = torch.tensor(case["logits"], dtype=f64), torch.tensor(case["labels"], dtype=f64)
    where = None if case["where"] is None else torch.tensor(case["where"])
    close(LF.ranking_softmax(logits, labels, where, reduction="none"), torch.tensor(case["none"], dtype=f64))
    close(LF.ranking_softmax(logits, labels, where, reduction="sum"), torch.tensor(case["sum"], dtype=f64))
    leaves = logits.clone().requires_grad_(), labels.clone().requires_grad_()
    mean = LF.ranking_softmax(*leaves, where)
    close(mean.detach(), torch.tensor(case["mean"], dtype=f64))
    by_logits, by_labels = torch.autograd.grad(mean, leaves)
    close(by_logits, torch.tensor(case["grad_logits"], dtype=f64))
    close(by_labels, torch.tensor(case["grad_labels"], dtype=f64))


@pytest.mark.parametrize("shape", [(6, 5), (1, 9), (3, 2)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_without_a_mask_it_is_torchs_soft_target_cross_entropy(shape, reduction):
    logits, labels = draw(*shape, seed=sum(shape))
    close(LF.ranking_softmax(logits, labels, reduction=reduction), F.cross_entropy(logits, labels, reduction=reduction))
    leaf = logits.clone().requires_grad_()
    (ours,) = torch.autograd.grad(LF.ranking_softmax(leaf, labels, reduction=reduction).sum(), leaf)
    (theirs,) = torch.autograd.grad(F.cross_entropy(leaf, labels, reduction=reduction).sum(), leaf)
    close(ours, theirs)


def test_a_masked_item_is_as_if_sliced_out_whatever_it_holds():
    logits, labels = draw(4, 6, seed=3)
    where = torch.rand(4, 6, generator=torch.Generator().manual_seed(1)) < 0.6
    where[:, 0] = True
    garbage_logits = torch.where(where, logits, torch.tensor(math.nan, dtype=f64))
    garbage_labels = torch.where(where, labels, torch.tensor(-7.0, dtype=f64))  # padding, never read
    leaf = garbage_logits.clone().requires_grad_()
    none = LF.ranking_softmax(leaf, garbage_labels, where, reduction="none")
    (gradient,) = torch.autograd.grad(none.sum(), leaf)
    for row in range(4):
        keep = where[row]
        sliced = LF.ranking_softmax(logits[row, keep], labels[row, keep], reduction="none")
        close(none[row], sliced)
    assert torch.isfinite(gradient).all() and (gradient[~where] == 0).all()
    assert lossfn.get_loss("ranking_softmax").module()(garbage_logits, garbage_labels, where).isfinite()


def test_a_list_with_nothing_kept_is_zero_and_left_out_of_the_mean():
    logits, labels = draw(3, 4, seed=4)
    where = torch.ones(3, 4, dtype=torch.bool)
    where[1] = False
    leaf = logits.clone().requires_grad_()
    mean = LF.ranking_softmax(leaf, labels, where)
    none = LF.ranking_softmax(logits, labels, where, reduction="none")
    (gradient,) = torch.autograd.grad(mean, leaf)
    assert none[1].item() == 0.0 and (gradient[1] == 0).all() and torch.isfinite(gradient).all()
    close(mean.detach(), (none[0] + none[2]) / 2)
    nothing = LF.ranking_softmax(leaf, labels, torch.zeros(3, 4, dtype=torch.bool))
    (gradient,) = torch.autograd.grad(nothing, leaf)
    assert nothing.item() == 0.0 and (gradient == 0).all()


def test_an_irrelevant_item_of_score_minus_infinity_costs_nothing():
    """A mask by score: optax's 0 · inf is nan there; lossfn leaves the item out."""
    logits, labels = draw(2, 5, seed=5)
    labels[:, -1] = 0
    masked = logits.clone()
    masked[:, -1] = -math.inf
    leaf = masked.clone().requires_grad_()
    loss = LF.ranking_softmax(leaf, labels)
    (gradient,) = torch.autograd.grad(loss, leaf)
    keep = torch.ones(2, 5, dtype=torch.bool)
    keep[:, -1] = False
    close(loss.detach(), LF.ranking_softmax(logits, labels, keep))
    assert torch.isfinite(gradient).all() and (gradient[:, -1] == 0).all()


def test_integer_and_boolean_relevance_give_the_float_number():
    logits, labels = draw(5, 4, seed=6)
    close(LF.ranking_softmax(logits, labels.long()), LF.ranking_softmax(logits, labels))
    close(LF.ranking_softmax(logits, labels > 1), LF.ranking_softmax(logits, (labels > 1).to(f64)))


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_the_module_refuses_relevance_that_is_negative_or_not_finite(bad):
    logits, labels = draw(2, 3, seed=7)
    labels[1, 2] = bad
    module = lossfn.get_loss("ranking_softmax").module()
    with pytest.raises(ValueError, match=r"^ranking_softmax: labels must be finite relevance labels >= 0"):
        module(logits, labels)
    where = torch.ones(2, 3, dtype=torch.bool)
    where[1, 2] = False
    assert module(logits, labels, where).isfinite()  # a left-out item's label is not read


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_large_scores_and_half_precision_are_finite(dtype):
    logits, labels = draw(4, 6, seed=8)
    expected = LF.ranking_softmax(logits, labels)
    leaf = logits.to(dtype).requires_grad_()
    loss = LF.ranking_softmax(leaf, labels.to(dtype))
    (gradient,) = torch.autograd.grad(loss, leaf)
    assert loss.dtype == dtype and torch.isfinite(gradient).all()
    close(loss.double(), expected, rtol=2e-2, atol=2e-2)
    huge = (logits * 5e3).float().requires_grad_()  # |scores| up to about 1e5
    loss = LF.ranking_softmax(huge, labels.float())
    assert torch.isfinite(loss) and torch.isfinite(torch.autograd.grad(loss, huge)[0]).all()


def test_vmap_and_grad_over_lists_equal_a_loop():
    logits, labels = draw(3, 4, 5, seed=9)
    where = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(2)) < 0.8
    per_problem = vmap(LF.ranking_softmax)(logits, labels, where)
    close(per_problem, torch.stack([LF.ranking_softmax(*xs) for xs in zip(logits, labels, where)]))
    gradients = vmap(grad(LF.ranking_softmax))(logits, labels, where)
    loop = []
    for x, y, m in zip(logits, labels, where):
        leaf = x.clone().requires_grad_()
        loop.append(torch.autograd.grad(LF.ranking_softmax(leaf, y, m), leaf)[0])
    close(gradients, torch.stack(loop))


def test_errors_name_the_argument():
    logits, labels = draw(2, 3)
    with pytest.raises(ValueError, match=r"^ranking_softmax: where must be None or a boolean mask"):
        LF.ranking_softmax(logits, labels, torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"^ranking_softmax: where must be None or a boolean mask"):
        LF.ranking_softmax(logits, labels, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^ranking_softmax: where must be on the device of logits"):
        LF.ranking_softmax(logits, labels, torch.ones(2, 3, dtype=torch.bool, device="meta"))
    with pytest.raises(ValueError, match=r"^ranking_softmax: labels must be of the same shape as logits"):
        LF.ranking_softmax(logits, labels[:, :2])
    with pytest.raises(ValueError, match=r"^ranking_softmax: logits must be of shape \[\.\.\., L\]"):
        LF.ranking_softmax(torch.tensor(1.0), torch.tensor(1.0))
