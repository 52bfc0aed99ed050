"""The open-set losses against Ludwig's modules written out, and ``F.cross_entropy``.

``ludwig_terms`` / ``ludwig_mean`` (tests/cases/open_set.py) are Ludwig 0.17.8's
``EntropicOpenSetLoss`` and ``ObjectosphereLoss`` in plain torch, boolean masks and
``log(p + 1e-10)`` included; the vectors of Ludwig's own tests are repeated here.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

import lossfn
import lossfn.functional as LF

from cases.open_set import LUDWIG_EPSILON, ludwig_mean, ludwig_terms

REDUCTIONS = ("none", "sum", "mean")


def close(actual, expected, rtol=1e-10, atol=1e-12):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def draw(batch=12, classes=5, seed=0, scale=2.0):
    generator = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(batch, classes, generator=generator, dtype=torch.float64)
    return logits, torch.randint(0, classes, (batch,), generator=generator)


def ludwig(logits, labels, reduction="mean", **params):
    terms, known = ludwig_terms(logits, labels, **params)
    return {"none": terms, "sum": terms.sum(), "mean": ludwig_mean(terms, known)}[reduction]


# -- Ludwig's own test vectors ---------------------------------------------------------


def test_ludwigs_entropic_decomposition_vector():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.5, 0.5, 0.5]])
    target = torch.tensor([0, 1, 2])
    probs = torch.softmax(logits[2:], dim=-1)
    expected = F.cross_entropy(logits[:2], target[:2]) + (probs * torch.log(probs + LUDWIG_EPSILON)).sum(-1).mean()
    close(LF.entropic_open_set(logits, target, background_class=2), expected, rtol=1e-6, atol=1e-7)


def test_ludwigs_objectosphere_vectors():
    logits = torch.tensor([[1.0, 0.5, -0.5], [0.2, 1.0, 0.8]])
    target = torch.tensor([0, 1])
    expected = F.cross_entropy(logits, target) + torch.clamp(3.0 - logits.norm(dim=-1), min=0.0).pow(2).mean()
    close(LF.objectosphere(logits, target, xi=3.0), expected, rtol=1e-6, atol=1e-7)
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0], [0.0, 2.0, 0.5, 0.0], [0.3, 0.3, 0.2, 0.2]])
    target = torch.tensor([0, 1, 3])
    known, unknown = logits[:2], logits[2:]
    probs = torch.softmax(unknown, dim=-1)
    expected = (
        F.cross_entropy(known, target[:2])
        + torch.clamp(2.0 - known.norm(dim=-1), min=0.0).pow(2).mean()
        + (probs * torch.log(probs + LUDWIG_EPSILON)).sum(dim=-1).mean()
        + 0.5 * unknown.norm(dim=-1).pow(2).mean()
    )
    close(LF.objectosphere(logits, target, background_class=3, xi=2.0, zeta=0.5), expected, rtol=1e-6, atol=1e-7)


# -- against Ludwig's formulas and F.cross_entropy -------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ludwigs_numbers_over_random_batches(reduction):
    worst = 0.0
    for seed in range(10):
        logits, labels = draw(seed=seed)
        for background in (None, 0, 4):
            cases = [
                (LF.entropic_open_set, {"background_class": background}, {}),
                (LF.objectosphere, {"background_class": background, "xi": 4.0, "zeta": 0.3}, {"xi": 4.0, "zeta": 0.3}),
            ]
            for fn, params, extra in cases:
                expected = ludwig(logits, labels, reduction, background_class=background, **extra)
                actual = fn(logits, labels, **params, reduction=reduction)
                close(actual, expected, rtol=1e-9, atol=1e-9)
                worst = max(worst, (actual - expected).abs().max().item())
    assert worst <= 12 * 5 * LUDWIG_EPSILON  # Ludwig's epsilon: at most C·1e-10 per unknown sample


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_without_a_background_class_cross_entropy_and_the_hinge(reduction):
    logits, labels = draw(seed=11)
    ce = F.cross_entropy(logits, labels, reduction=reduction)
    close(LF.entropic_open_set(logits, labels, reduction=reduction), ce)
    hinge = F.relu(5.0 - torch.linalg.vector_norm(logits, dim=1)).square()
    hinge = {"none": hinge, "sum": hinge.sum(), "mean": hinge.mean()}[reduction]
    close(LF.objectosphere(logits, labels, xi=5.0, reduction=reduction), ce + hinge)
    # a background class that no label names: the same numbers
    kept = torch.where(labels == 4, 0, labels)
    close(LF.entropic_open_set(logits, kept, background_class=4, reduction=reduction),
          F.cross_entropy(logits, kept, reduction=reduction))


def test_mean_is_the_known_mean_plus_the_unknown_mean():
    logits, labels = draw(seed=12)
    labels = torch.tensor([2, 0, 1, 2, 3, 4, 0, 1, 3, 4, 0, 1])  # class 2 twice: 2 unknowns, 10 knowns
    none = LF.entropic_open_set(logits, labels, background_class=2, reduction="none")
    unknown = labels == 2
    close(LF.entropic_open_set(logits, labels, background_class=2), none[~unknown].mean() + none[unknown].mean())
    # every sample unknown: the mean of the negative entropies
    everyone = torch.full((12,), 2)
    negative_entropy = -torch.distributions.Categorical(logits=logits).entropy()
    close(LF.entropic_open_set(logits, everyone, background_class=2), negative_entropy.mean())


def test_the_unknowns_term_is_within_c_times_1e_10_of_ludwigs_epsilon_form_and_minimal_at_uniform():
    classes = 6
    logits = torch.tensor([[0.0] * classes, [30.0, 0, 0, 0, 0, -30.0], [1.0, 2, 3, 4, 5, 6]], dtype=torch.float64)
    labels = torch.zeros(3, dtype=torch.long)
    ours = LF.entropic_open_set(logits, labels, background_class=0, reduction="none")
    probs = torch.softmax(logits, dim=1)
    theirs = (probs * torch.log(probs + LUDWIG_EPSILON)).sum(1)
    difference = theirs - ours
    assert (difference >= 0).all() and difference.max() <= classes * LUDWIG_EPSILON * (1 + 1e-6)
    close(ours[0], torch.tensor(-math.log(classes), dtype=torch.float64))
    assert (ours[1:] > -math.log(classes)).all()


def test_binary_outputs_take_two_logits_per_example():
    logits, labels = draw(batch=6, classes=2, seed=13)
    close(LF.entropic_open_set(logits, labels.bool()), F.cross_entropy(logits, labels))
    expected = ludwig(logits, labels, background_class=1, xi=10.0, zeta=0.1)
    close(LF.objectosphere(logits, labels, background_class=1), expected)
    for bad in (logits[:, 0], logits[:, :1]):
        with pytest.raises(ValueError, match=r"^entropic_open_set: logits must be of shape \[B, C\] with C >= 2.*"
                                             r"a binary output needs two logits per example, \[B, 2\]"):
            LF.entropic_open_set(bad, labels)


# -- gradients, norms, extremes ------------------------------------------------------------


def test_gradients_equal_ludwigs():
    logits, labels = draw(seed=14)
    for fn, params, extra in [
        (LF.entropic_open_set, {"background_class": 1}, {}),
        (LF.objectosphere, {"background_class": 1, "xi": 4.0, "zeta": 0.3}, {"xi": 4.0, "zeta": 0.3}),
    ]:
        leaf = logits.clone().requires_grad_()
        (expected,) = torch.autograd.grad(ludwig(leaf, labels, background_class=1, **extra), leaf)
        close(grad(lambda x: fn(x, labels, **params))(logits), expected, rtol=1e-8, atol=1e-9)


def test_zero_logits_and_a_masked_class_have_finite_gradients():
    labels = torch.tensor([0, 1, 2, 1])
    for params in ({}, {"background_class": 2}, {"background_class": 2, "xi": 0.0}):
        zeros = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
        (gradient,) = torch.autograd.grad(LF.objectosphere(zeros, labels, **params), zeros)
        assert torch.isfinite(gradient).all()
    masked, labels = draw(seed=15)
    masked[:, 4] = -math.inf
    labels = torch.where(labels == 4, 0, labels)
    for fn in (LF.entropic_open_set, LF.objectosphere):
        leaf = masked.clone().requires_grad_()
        loss = fn(leaf, labels)
        (gradient,) = torch.autograd.grad(loss, leaf)
        assert torch.isfinite(loss) and torch.isfinite(gradient).all() and (gradient[:, 4] == 0).all()
    leaf = masked.clone().requires_grad_()  # an unknown's entropy with a masked class: finite too
    (gradient,) = torch.autograd.grad(LF.entropic_open_set(leaf, labels, background_class=1), leaf)
    assert torch.isfinite(gradient).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_finite_at_extreme_logits_and_in_half_precision(dtype):
    logits, labels = draw(seed=16)
    scale = 1e4 if dtype is torch.float32 else 1.0
    for fn in (LF.entropic_open_set, LF.objectosphere):
        leaf = (logits.sign() * scale).to(dtype).requires_grad_()
        loss = fn(leaf, labels, background_class=3)
        (gradient,) = torch.autograd.grad(loss, leaf)
        assert loss.dtype == dtype and torch.isfinite(loss) and torch.isfinite(gradient).all()
        if dtype is not torch.float32:
            reference = fn(logits.float(), labels, background_class=3)
            torch.testing.assert_close(fn(logits.to(dtype), labels, background_class=3).float(), reference,
                                       rtol=2e-2, atol=2e-2)


def test_tensor_xi_and_zeta_under_vmap_and_grad():
    logits, labels = draw(seed=17)
    labels[:3] = 3
    unknown = labels == 3
    norms = torch.linalg.vector_norm(logits, dim=1)
    fn = lambda xi, zeta: LF.objectosphere(logits, labels, background_class=3, xi=xi, zeta=zeta)  # noqa: E731
    xis = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64)
    zetas = torch.tensor([0.0, 0.1, 1.0], dtype=torch.float64)
    expected = torch.stack([fn(float(a), float(b)) for a, b in zip(xis, zetas)])
    close(vmap(fn)(xis, zetas), expected)
    # closed forms: d/dζ = mean over unknowns of ‖x‖², d/dξ = mean over knowns of 2 max(0, ξ - ‖x‖)
    d_xi, d_zeta = vmap(grad(fn, argnums=(0, 1)))(xis, zetas)
    close(d_zeta, norms[unknown].square().mean().expand(3))
    close(d_xi, torch.stack([(2 * F.relu(xi - norms[~unknown])).mean() for xi in xis]))


# -- errors, modules, configs ---------------------------------------------------------


def test_background_class_out_of_range_is_refused_from_the_shape():
    logits, labels = draw(classes=5)
    for fn in (LF.entropic_open_set, LF.objectosphere):
        with pytest.raises(ValueError, match=r"background_class must be a class index in \[0, 4\] for 5 classes"):
            fn(logits, labels, background_class=5)
        with pytest.raises(ValueError, match=r"background_class must be an integer >= 0"):
            fn(logits, labels, background_class=-1)
    with pytest.raises(ValueError, match=r"^objectosphere: background_class must be a class index"):
        lossfn.nn.Objectosphere(background_class=7)(logits, labels)


def test_the_module_checks_the_label_range():
    logits, labels = draw(classes=5)
    for module in (lossfn.nn.EntropicOpenSet(background_class=4), lossfn.nn.Objectosphere()):
        with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 4\]; got values in \[\d, 5\]"):
            module(logits, torch.where(labels == 0, 5, labels))


def test_ludwig_configs_decode_with_ludwigs_defaults():
    config = lossfn.decode_config({"type": "objectosphere", "background_class": 3})
    assert (config.background_class, config.xi, config.zeta, config.weight) == (3, 10.0, 0.1, 1.0)
    assert lossfn.decode_config({"type": "entropic_open_set"}).background_class is None
    logits, labels = draw()
    close(lossfn.build(config)(logits, labels), ludwig(logits, labels, background_class=3, xi=10.0, zeta=0.1))


def test_distributed_mean_refuses_the_two_means():
    logits, labels = draw()
    for name in ("entropic_open_set", "objectosphere"):
        with pytest.raises(ValueError, match=rf"^{name}: distributed.mean needs a loss whose mean"):
            lossfn.distributed.mean(name, logits, labels, background_class=1)
