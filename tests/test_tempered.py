"""The tempered family against the authors' reference, closed forms and its own contract.

Reference numbers come from ``tests/data/bitempered_reference.json``, written by
``scripts/make_bitempered_vectors.py`` from the JAX reference implementation
(google/bi-tempered-loss, ``jax-bitempered-loss`` on PyPI) in float64; the JAX
package is not needed here. Its ``published`` part holds the cases of the
reference's own test file with the numbers printed there.
"""

from __future__ import annotations

import json
import math
import pathlib

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.func import grad, jacfwd, jacrev, jvp, vmap

import lossfn
import lossfn.functional as LF

from cases.tempered import _exp_t, _normalization, binary_bitempered_reference, bitempered_reference

DATA = json.loads((pathlib.Path(__file__).parent / "data" / "bitempered_reference.json").read_text())
f64 = torch.float64


def as_tensor(values, integer: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long if integer else f64)


def grad_tolerance(num_iters: int) -> float:
    return 1e-7 if num_iters >= 30 else 1e-4


def value_and_grad(fn, logits, labels, **params):
    logits = logits.clone().requires_grad_()
    value = fn(logits, labels, **params, reduction="none")
    (gradient,) = torch.autograd.grad(value.sum(), logits)
    return value.detach(), gradient


# -- the reference's numbers ------------------------------------------------------------


#: With the cases whose labels put mass where a t2 < 1 softmax puts none (the gradient
#: there is the reference's: p - y at t1 = t2, 0 for t2 > t1).
LOSS_CASES = DATA["loss"] + DATA["loss_beyond_support"]
BINARY_CASES = DATA["binary"] + DATA["binary_beyond_support"]


def case_id(case: dict) -> str:
    smoothing = f"-ls{case['label_smoothing']}" if case["label_smoothing"] else ""
    return f"t1={case['t1']}-t2={case['t2']}{smoothing}-n{case['num_iters']}-{case['labels_kind']}"


@pytest.mark.parametrize("case", LOSS_CASES, ids=case_id)
def test_loss_matches_reference(case):
    labels = as_tensor(case["labels"], integer=case["labels_kind"] == "indices")
    params = {k: case[k] for k in ("t1", "t2", "label_smoothing", "num_iters")}
    value, gradient = value_and_grad(LF.bi_tempered_logistic_loss, as_tensor(case["logits"]), labels, **params)
    torch.testing.assert_close(value, as_tensor(case["value"]), rtol=0, atol=1e-6)
    tolerance = grad_tolerance(case["num_iters"])
    torch.testing.assert_close(gradient, as_tensor(case["grad"]), rtol=0, atol=tolerance)


@pytest.mark.parametrize("case", BINARY_CASES, ids=case_id)
def test_binary_loss_matches_reference(case):
    labels = as_tensor(case["labels"], integer=case["labels_kind"] == "hard")
    params = {k: case[k] for k in ("t1", "t2", "label_smoothing", "num_iters")}
    value, gradient = value_and_grad(
        LF.bi_tempered_binary_logistic_loss, as_tensor(case["logits"]), labels, **params
    )
    torch.testing.assert_close(value, as_tensor(case["value"]), rtol=0, atol=1e-6)
    tolerance = grad_tolerance(case["num_iters"])
    torch.testing.assert_close(gradient, as_tensor(case["grad"]), rtol=0, atol=tolerance)


def test_reference_precision_summary():
    """The largest differences over the whole stored grid, far inside the bounds."""
    worst = {"value": 0.0, "grad5": 0.0, "grad30": 0.0}
    for key, fn in (("loss", LF.bi_tempered_logistic_loss), ("binary", LF.bi_tempered_binary_logistic_loss)):
        for case in DATA[key] + DATA[f"{key}_beyond_support"]:
            integer = case["labels_kind"] in ("indices", "hard") and key == "loss"
            labels = as_tensor(case["labels"], integer=integer)
            params = {k: case[k] for k in ("t1", "t2", "label_smoothing", "num_iters")}
            value, gradient = value_and_grad(fn, as_tensor(case["logits"]), labels, **params)
            worst["value"] = max(worst["value"], (value - as_tensor(case["value"])).abs().max().item())
            slot = "grad30" if case["num_iters"] >= 30 else "grad5"
            worst[slot] = max(worst[slot], (gradient - as_tensor(case["grad"])).abs().max().item())
    # measured: 2.5e-8, 1.6e-8, 1.0e-8; all from the reference's 1e-10 added to the labels,
    # its bisection bracket and its label-smoothing coefficient in float32 (see the script)
    assert worst["value"] < 1e-7 and worst["grad5"] < 1e-7 and worst["grad30"] < 5e-8, worst


@pytest.mark.parametrize("case", DATA["tempered_softmax"], ids=lambda c: f"t={c['t']}-n{c['num_iters']}")
def test_tempered_softmax_matches_reference(case):
    value = LF.tempered_softmax(as_tensor(case["logits"]), case["t"], num_iters=case["num_iters"])
    torch.testing.assert_close(value, as_tensor(case["value"]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", DATA["tempered_sigmoid"], ids=lambda c: f"t={c['t']}-n{c['num_iters']}")
def test_tempered_sigmoid_matches_reference(case):
    value = LF.tempered_sigmoid(as_tensor(case["logits"]), case["t"], num_iters=case["num_iters"])
    torch.testing.assert_close(value, as_tensor(case["value"]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["log_t", "exp_t"])
def test_log_t_exp_t_match_reference(name):
    for case in DATA[name]:
        for t in (case["t"], torch.tensor(case["t"], dtype=f64)):
            value = getattr(LF, name)(as_tensor(case["u"]), t)
            torch.testing.assert_close(value, as_tensor(case["value"]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", DATA["published"], ids=lambda c: c["test"])
def test_published_vectors(case):
    """The cases of the reference's loss_test.py, at the tolerance printed there."""
    fn = getattr(LF, case["function"])
    logits = as_tensor(case["logits"])
    if case["function"] in ("tempered_softmax", "tempered_sigmoid"):
        value = fn(logits, **case["params"])
    else:
        value = fn(logits, as_tensor(case["labels"]), **case["params"], reduction="none")
    torch.testing.assert_close(value, as_tensor(case["expected"]), rtol=0, atol=case["atol"])
    torch.testing.assert_close(value, as_tensor(case["reference"]), rtol=0, atol=1e-7)


def test_catalog_reference_is_the_reference():
    """The transcription used by the conformance suite reproduces the JAX numbers."""
    for case in DATA["loss"][::3]:
        labels = as_tensor(case["labels"], integer=case["labels_kind"] == "indices")
        params = {k: case[k] for k in ("t1", "t2", "label_smoothing", "num_iters")}
        value = bitempered_reference(as_tensor(case["logits"]), labels, reduction="none", **params)
        torch.testing.assert_close(value, as_tensor(case["value"]), rtol=0, atol=1e-6)
    for case in DATA["binary"][::3]:
        params = {k: case[k] for k in ("t1", "t2", "label_smoothing", "num_iters")}
        value = binary_bitempered_reference(
            as_tensor(case["logits"]), as_tensor(case["labels"]), reduction="none", **params
        )
        torch.testing.assert_close(value, as_tensor(case["value"]), rtol=0, atol=1e-6)


# -- limits: cross-entropy and KL at t1 = t2 = 1 ------------------------------------------


def test_t1_t2_one_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(16, 7, generator=g, dtype=f64)
    labels = torch.randint(0, 7, (16,), generator=g)
    for reduction in ("none", "mean", "sum"):
        for t in (1.0, torch.tensor(1.0, dtype=f64)):
            ours = LF.bi_tempered_logistic_loss(logits, labels, t1=t, t2=t, reduction=reduction)
            torch.testing.assert_close(ours, F.cross_entropy(logits, labels, reduction=reduction), rtol=0, atol=1e-7)
    # per-pixel layout [B, C, d]
    pixels = torch.randn(4, 5, 3, generator=g, dtype=f64)
    targets = torch.randint(0, 5, (4, 3), generator=g)
    torch.testing.assert_close(
        LF.bi_tempered_logistic_loss(pixels, targets, reduction="none"),
        F.cross_entropy(pixels, targets, reduction="none"),
        rtol=0,
        atol=1e-7,
    )
    # and the gradient
    x = logits.clone().requires_grad_()
    (ours,) = torch.autograd.grad(LF.bi_tempered_logistic_loss(x, labels), x)
    (theirs,) = torch.autograd.grad(F.cross_entropy(x, labels), x)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)


def test_binary_t1_t2_one_is_binary_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits = 4 * torch.randn(32, generator=g, dtype=f64)
    labels = torch.randint(0, 2, (32,), generator=g)
    torch.testing.assert_close(
        LF.bi_tempered_binary_logistic_loss(logits, labels, reduction="none"),
        F.binary_cross_entropy_with_logits(logits, labels.to(f64), reduction="none"),
        rtol=0,
        atol=1e-7,
    )


def test_soft_labels_at_t1_t2_one_give_kl():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(8, 6, generator=g, dtype=f64)
    labels = torch.softmax(2 * torch.randn(8, 6, generator=g, dtype=f64), -1)
    labels[0, 3] = 0.0
    labels[0] /= labels[0].sum()
    kl = (torch.xlogy(labels, labels) - labels * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(LF.bi_tempered_logistic_loss(logits, labels, reduction="none"), kl, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        F.kl_div(torch.log_softmax(logits, -1), labels, reduction="batchmean"),
        LF.bi_tempered_logistic_loss(logits, labels),
    )
    # tensor temperatures at 1 take the same branch (up to rounding)
    one = torch.tensor(1.0, dtype=f64)
    torch.testing.assert_close(LF.bi_tempered_logistic_loss(logits, labels, t1=one, t2=one, reduction="none"), kl)


def test_index_labels_equal_one_hot_labels():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(10, 5, generator=g, dtype=f64)
    labels = torch.randint(0, 5, (10,), generator=g)
    one_hot = F.one_hot(labels, 5).to(f64)
    for t1, t2 in [(0.5, 1.5), (0.8, 0.7), (1.0, 0.8), (0.7, 1.0), (1.0, 1.0)]:
        for smoothing in (0.0, 0.2):
            params = dict(t1=t1, t2=t2, label_smoothing=smoothing)
            a, ga = value_and_grad(LF.bi_tempered_logistic_loss, logits, labels, **params)
            b, gb = value_and_grad(LF.bi_tempered_logistic_loss, logits, one_hot, **params)
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
            torch.testing.assert_close(ga, gb, rtol=0, atol=1e-12)


def test_label_smoothing_parametrization():
    """Reference: 1 - a on the true class, a/(K-1) elsewhere; torch: 1 - a + a/K and a/K."""
    g = torch.Generator().manual_seed(4)
    k, a = 5, 0.2
    logits = torch.randn(6, k, generator=g, dtype=f64)
    labels = torch.randint(0, k, (6,), generator=g)
    smoothed = torch.full((6, k), a / (k - 1), dtype=f64).scatter(1, labels[:, None], 1 - a)
    for t1, t2 in [(0.6, 1.4), (0.9, 0.8), (1.0, 1.0)]:
        torch.testing.assert_close(
            LF.bi_tempered_logistic_loss(logits, labels, t1=t1, t2=t2, label_smoothing=a, reduction="none"),
            LF.bi_tempered_logistic_loss(logits, smoothed, t1=t1, t2=t2, reduction="none"),
        )
    # at t1 = t2 = 1: the reference's a equals torch's a (K - 1) / K, and the value is
    # torch's cross-entropy minus the entropy of the smoothed labels (it is a KL)
    torch_a = a * k / (k - 1)
    entropy = -torch.xlogy(smoothed, smoothed).sum(-1)
    torch.testing.assert_close(
        LF.bi_tempered_logistic_loss(logits, labels, label_smoothing=a, reduction="none"),
        F.cross_entropy(logits, labels, label_smoothing=torch_a, reduction="none") - entropy,
    )
    # the binary loss: K = 2, labels (1 - 2a) y + a
    y = torch.tensor([1.0, 0.0, 1.0], dtype=f64)
    x = torch.tensor([0.3, -1.0, 2.0], dtype=f64)
    torch.testing.assert_close(
        LF.bi_tempered_binary_logistic_loss(x, y, t1=0.7, t2=1.3, label_smoothing=0.1, reduction="none"),
        LF.bi_tempered_binary_logistic_loss(x, 0.8 * y + 0.1, t1=0.7, t2=1.3, reduction="none"),
    )


# -- tensor temperatures: vmap over a grid, gradients ---------------------------------------


GRID = [(t1, t2) for t1 in (0.3, 0.8, 1.0) for t2 in (0.5, 0.9, 1.0, 1.2, 3.0)]


def _problem(seed=5, batch=6, classes=5):
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(batch, classes, generator=g, dtype=f64)
    labels = torch.randint(0, classes, (batch,), generator=g)
    soft = torch.softmax(torch.randn(batch, classes, generator=g, dtype=f64), -1)
    return logits, labels, soft


@pytest.mark.parametrize("labels_kind", ["indices", "probabilities"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_vmap_over_temperature_grid_equals_loop(labels_kind, smoothing):
    logits, indices, soft = _problem()
    labels = indices if labels_kind == "indices" else soft
    t1s = torch.tensor([p[0] for p in GRID], dtype=f64)
    t2s = torch.tensor([p[1] for p in GRID], dtype=f64)

    def fn(t1, t2):
        return LF.bi_tempered_logistic_loss(logits, labels, t1=t1, t2=t2, label_smoothing=smoothing, reduction="none")

    batched = vmap(fn)(t1s, t2s)
    loop = torch.stack([fn(t1, t2) for t1, t2 in GRID])
    assert torch.isfinite(batched).all()
    torch.testing.assert_close(batched, loop, rtol=1e-12, atol=1e-12)
    g1, g2 = vmap(grad(lambda a, b: fn(a, b).sum(), argnums=(0, 1)))(t1s, t2s)
    assert torch.isfinite(g1).all() and torch.isfinite(g2).all()


def test_vmap_over_temperature_and_smoothing_of_binary_and_softmax():
    logits, _, _ = _problem()
    labels = (logits[:, 0] > 0).long()
    t2s = torch.tensor([0.5, 1.0, 2.0], dtype=f64)
    batched = vmap(lambda t: LF.bi_tempered_binary_logistic_loss(logits[:, 0], labels, t1=0.8, t2=t))(t2s)
    loop = torch.stack([LF.bi_tempered_binary_logistic_loss(logits[:, 0], labels, t1=0.8, t2=float(t)) for t in t2s])
    torch.testing.assert_close(batched, loop, rtol=1e-12, atol=1e-12)
    probabilities = vmap(lambda t: LF.tempered_softmax(logits, t))(t2s)
    torch.testing.assert_close(probabilities, torch.stack([LF.tempered_softmax(logits, float(t)) for t in t2s]))
    smooth = torch.tensor([0.0, 0.3], dtype=f64)
    batched = vmap(lambda a: LF.bi_tempered_logistic_loss(logits, labels, t1=0.7, t2=1.3, label_smoothing=a))(smooth)
    loop = [LF.bi_tempered_logistic_loss(logits, labels, t1=0.7, t2=1.3, label_smoothing=float(a)) for a in smooth]
    torch.testing.assert_close(batched, torch.stack(loop), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "t1,t2",
    [(0.7, 1.3), (0.8, 0.8), (0.6, 0.4), (0.9, 1.0), (1.0, 1.5), (1.0, 0.8), (1.0, 1.0)],
)
def test_temperature_gradients_match_finite_differences(t1, t2):
    """d/dt1 and d/dt2 where the normalization has converged (num_iters=60).

    Central differences, one-sided from below at t1 = 1 (t1 <= 1); across t2 = 1 the
    difference mixes the bisection, the exact softmax and the fixed point.
    """
    logits, indices, soft = _problem(seed=6)
    logits = logits / 4  # inside the support of t2 < 1 (outside it, t1 = 1 has a cap)
    for labels in (indices, soft):

        def fn(a, b):
            return LF.bi_tempered_logistic_loss(logits, labels, t1=a, t2=b, num_iters=60)

        a, b = torch.tensor(t1, dtype=f64), torch.tensor(t2, dtype=f64)
        d1, d2 = grad(fn, argnums=(0, 1))(a, b)
        h = 1e-6
        fd1 = (fn(a, b) - fn(a - h, b)) / h if t1 == 1.0 else (fn(a + h, b) - fn(a - h, b)) / (2 * h)
        fd2 = (fn(a, b + h) - fn(a, b - h)) / (2 * h)
        tol1 = 1e-4 if t1 == 1.0 else 1e-6  # one-sided: O(h)
        torch.testing.assert_close(d1, fd1, rtol=tol1, atol=tol1)
        torch.testing.assert_close(d2, fd2, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("t", [0.3, 0.8, 1.0, 1.1, 2.5])
def test_tempered_softmax_gradient_is_implicit(t):
    """Gradients from the implicit derivative agree with finite differences (converged)."""
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 4, generator=g, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: LF.tempered_softmax(x, t, num_iters=60), (logits,))
    assert torch.autograd.gradgradcheck(lambda x: LF.tempered_softmax(x, t, num_iters=60), (logits,))
    temperature = torch.tensor(t, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: LF.tempered_softmax(logits.detach(), s, num_iters=60), (temperature,))


def test_forward_and_reverse_mode_agree():
    logits, indices, soft = _problem(seed=8, batch=3)
    for t1, t2 in [(0.7, 1.4), (0.8, 0.6), (1.0, 0.9), (0.5, 1.0)]:
        for labels in (indices, soft):
            fn = lambda x: LF.bi_tempered_logistic_loss(x, labels, t1=t1, t2=t2, reduction="none")  # noqa: B023,E731
            torch.testing.assert_close(jacrev(fn)(logits), jacfwd(fn)(logits))
            # with respect to t2 as well
            ft = lambda s: LF.bi_tempered_logistic_loss(logits, labels, t1=t1, t2=s)  # noqa: B023,E731
            s = torch.tensor(t2, dtype=f64)
            _, tangent = jvp(ft, (s,), (torch.ones((), dtype=f64),))
            torch.testing.assert_close(tangent, grad(ft)(s))


def test_gradient_matches_reference_formula_at_any_iteration_count():
    """d loss / d x = (p - y) p^(t2-t1) - escort * sum((p - y) p^(t2-t1)), p unnormalized."""
    logits, _, soft = _problem(seed=9)
    for t1, t2, n in [(0.5, 1.5, 1), (0.7, 0.8, 2), (0.9, 3.0, 5)]:
        _, gradient = value_and_grad(LF.bi_tempered_logistic_loss, logits, soft, t1=t1, t2=t2, num_iters=n)
        # p from the independent transcription of the reference (tests/cases/tempered.py)
        p = _exp_t(logits - _normalization(logits, t2, n), t2)
        weighted = (p - soft) * p ** (t2 - t1)
        escort = p**t2 / (p**t2).sum(-1, keepdim=True)
        expected = weighted - escort * weighted.sum(-1, keepdim=True)
        torch.testing.assert_close(gradient, expected, rtol=1e-10, atol=1e-12)


# -- numerics beyond the reference ----------------------------------------------------------


TEMPERATURES = [(t1, t2) for t1 in (0.2, 0.8, 1.0) for t2 in (0.1, 0.6, 0.99, 1.0, 1.01, 1.5, 5.0)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_extreme_logits_and_half_precision_are_finite(dtype):
    g = torch.Generator().manual_seed(10)
    base = torch.randn(16, 6, generator=g)
    labels = torch.randint(0, 6, (16,), generator=g)
    soft = torch.softmax(3 * torch.randn(16, 6, generator=g), -1)
    soft[:, 2] = 0.0  # a class of zero target probability
    for scale in (1.0, 1e4):
        logits = (base * scale).to(dtype)
        for t1, t2 in TEMPERATURES:
            for target in (labels, soft.to(dtype)):
                for smoothing in (0.0, 0.2):
                    x = logits.clone().requires_grad_()
                    loss = LF.bi_tempered_logistic_loss(x, target, t1=t1, t2=t2, label_smoothing=smoothing)
                    (gradient,) = torch.autograd.grad(loss, x)
                    assert loss.dtype == dtype and gradient.dtype == dtype
                    assert torch.isfinite(loss) and torch.isfinite(gradient).all(), (scale, t1, t2, smoothing)
            x = logits[:, 0].clone().requires_grad_()
            loss = LF.bi_tempered_binary_logistic_loss(x, labels % 2, t1=t1, t2=t2)
            (gradient,) = torch.autograd.grad(loss, x)
            assert torch.isfinite(loss) and torch.isfinite(gradient).all(), ("binary", scale, t1, t2)
            assert LF.tempered_softmax(logits, t2).dtype == dtype


def test_half_precision_is_computed_in_float32():
    logits, labels, _ = _problem(seed=11)
    expected = LF.bi_tempered_logistic_loss(logits.float(), labels, t1=0.7, t2=1.3)
    half = LF.bi_tempered_logistic_loss(logits.bfloat16(), labels, t1=0.7, t2=1.3)
    rounded = LF.bi_tempered_logistic_loss(logits.bfloat16().float(), labels, t1=0.7, t2=1.3)
    assert half.dtype == torch.bfloat16
    assert half == rounded.bfloat16()
    torch.testing.assert_close(half.float(), expected, rtol=2e-2, atol=2e-2)


def test_classes_outside_the_support():
    """t2 < 1 gives some classes exactly zero probability: finite values, zero gradients there."""
    logits = torch.tensor([[1.0, 0.0, -6.0], [0.0, 0.5, -9.0]], dtype=f64)
    p = LF.tempered_softmax(logits, 0.5, num_iters=30)
    assert (p[:, 2] == 0).all() and (p[:, :2] > 0).all()
    # t2 < t1 (the reference's gradient is nan here): label on a supported class
    labels = torch.tensor([0, 1])
    value, gradient = value_and_grad(LF.bi_tempered_logistic_loss, logits, labels, t1=0.9, t2=0.5)
    assert torch.isfinite(value).all() and torch.isfinite(gradient).all()
    assert (gradient[:, 2] == 0).all()
    # t1 = 1 with classes of zero target probability outside the support: the KL terms vanish
    value, gradient = value_and_grad(LF.bi_tempered_logistic_loss, logits, labels, t1=1.0, t2=0.5)
    assert torch.isfinite(value).all() and torch.isfinite(gradient).all()
    # t1 = 1 with the true class outside the support: capped at -log(tiny), gradient 0
    value, gradient = value_and_grad(
        LF.bi_tempered_logistic_loss, logits, torch.tensor([2, 2]), t1=1.0, t2=0.5, num_iters=30
    )
    cap = -math.log(torch.finfo(f64).tiny)
    assert torch.isfinite(gradient).all() and (gradient.abs() < 1e-12).all()
    torch.testing.assert_close(value, torch.full_like(value, cap), rtol=1e-12, atol=1e-9)
    # t1 < 1 at a class outside the support: log_t1(0) = -1/(1 - t1), finite
    value, _ = value_and_grad(LF.bi_tempered_logistic_loss, logits, torch.tensor([2, 2]), t1=0.8, t2=0.5)
    assert torch.isfinite(value).all()


def _outside_support_case(t: float):
    logits = torch.tensor([[6.0, 0.0, -6.0], [2.0, 1.0, -9.0]], dtype=f64)
    labels = torch.tensor([2, 2])
    p = LF.tempered_softmax(logits, t, num_iters=30)
    assert (p[:, 2] == 0).all()
    expected = (p - F.one_hot(labels, 3).to(f64)) / 2  # the mean over two examples

    def loss(x, temperature=t):
        return LF.bi_tempered_logistic_loss(x, labels, t1=temperature, t2=temperature, num_iters=30)

    return logits, loss, expected


@pytest.mark.parametrize("t", [0.5, 0.8])
def test_true_class_outside_the_support_is_pulled_back_at_t1_equal_t2(t):
    """At t1 = t2 the reference's gradient is p - y, also where p = 0 (not a dead 0).

    In reverse mode (torch.func.grad), forward mode (jacfwd) and for a tensor
    temperature under vmap; the vectors of the reference package are in the
    ``*_beyond_support`` cases above.
    """
    logits, loss, expected = _outside_support_case(t)
    torch.testing.assert_close(grad(loss)(logits), expected, rtol=0, atol=1e-9)
    torch.testing.assert_close(jacfwd(loss)(logits), expected, rtol=0, atol=1e-9)
    grid = torch.tensor([t, t], dtype=f64)
    by_vmap = vmap(lambda temperature: grad(loss)(logits, temperature))(grid)
    torch.testing.assert_close(by_vmap, expected.expand(2, -1, -1), rtol=0, atol=1e-9)


# Dynamo (torch 2.13, side_effects.track_object_new) builds a Function context with
# torch.autograd.Function() inside catch_warnings(record=True), which an "error" filter
# still raises: torch's own deprecation warning, not lossfn's.
@pytest.mark.filterwarnings("ignore:.*should not be instantiated:DeprecationWarning")
def test_true_class_outside_the_support_is_pulled_back_under_compile():
    logits, loss, expected = _outside_support_case(0.5)
    compiled = logits.clone().requires_grad_()
    torch.compile(loss, fullgraph=True)(compiled).backward()
    torch.testing.assert_close(compiled.grad, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("t", [0.1, 0.99, 1.01, 2.0])
def test_tempered_softmax_rows_sum_to_one(t):
    """The reference's test_normalization: [100, 50000] N(0, 1) logits, 20 steps, float32."""
    logits = torch.randn(100, 50000, generator=torch.Generator().manual_seed(1335))
    with torch.no_grad():
        total = LF.tempered_softmax(logits, t, num_iters=20).sum(-1)
    torch.testing.assert_close(total, torch.ones(100), rtol=0, atol=1e-5)


# -- log_t and exp_t --------------------------------------------------------------------------


def test_log_t_exp_t_closed_forms():
    u = torch.tensor([0.0, 0.25, 1.0, 4.0, 9.0], dtype=f64)
    torch.testing.assert_close(LF.log_t(u, 0.5), 2 * (u.sqrt() - 1))
    torch.testing.assert_close(LF.log_t(u[1:], 2.0), 1 - 1 / u[1:])
    torch.testing.assert_close(LF.log_t(u, 0.0), u - 1)
    v = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5], dtype=f64)
    torch.testing.assert_close(LF.exp_t(v, 0.0), torch.clamp_min(1 + v, 0))
    torch.testing.assert_close(LF.exp_t(v, 2.0), 1 / (1 - v))
    torch.testing.assert_close(LF.exp_t(v, 0.5), torch.clamp_min(1 + v / 2, 0) ** 2)
    # boundaries: log_t(0) = -1/(1-t) for t < 1, -inf for t >= 1; exp_t past the pole is inf
    assert LF.log_t(torch.zeros(1, dtype=f64), 0.75).item() == -4.0
    assert LF.log_t(torch.zeros(1, dtype=f64), 1.5).item() == -math.inf
    assert LF.exp_t(torch.tensor([3.0], dtype=f64), 1.5).item() == math.inf


@pytest.mark.parametrize("t", [0.2, 0.7, 0.999999, 1.0, 1.000001, 1.4, 3.0])
def test_log_t_and_exp_t_are_inverse(t):
    u = torch.tensor([1e-3, 0.1, 0.5, 1.0, 2.0, 10.0], dtype=f64)
    torch.testing.assert_close(LF.exp_t(LF.log_t(u, t), t), u, rtol=1e-12, atol=0)
    v = torch.tensor([-1.0, -0.3, 0.0, 0.2, 0.4], dtype=f64)
    torch.testing.assert_close(LF.log_t(LF.exp_t(v, t), t), v, rtol=1e-12, atol=1e-14)


def test_log_t_exp_t_limits_at_one():
    u = torch.tensor([0.01, 0.5, 1.0, 3.0, 100.0], dtype=f64)
    v = torch.tensor([-5.0, -0.5, 0.0, 0.7, 2.0], dtype=f64)
    for t in (1.0, torch.tensor(1.0, dtype=f64)):
        torch.testing.assert_close(LF.log_t(u, t), u.log(), rtol=0, atol=0)
        torch.testing.assert_close(LF.exp_t(v, t), v.exp(), rtol=0, atol=0)
    for t in (1 - 1e-9, 1 + 1e-9):  # continuous through t = 1, numbers or tensors
        for temperature in (t, torch.tensor(t, dtype=f64)):
            torch.testing.assert_close(LF.log_t(u, temperature), u.log(), rtol=1e-8, atol=1e-8)
            torch.testing.assert_close(LF.exp_t(v, temperature), v.exp(), rtol=1e-8, atol=1e-8)
    # d/dt at t = 1: log_t u -> -(log u)^2 / 2, exp_t v -> e^v v^2 / 2
    one = torch.tensor(1.0, dtype=f64)
    d_log = vmap(grad(lambda s, x: LF.log_t(x, s)), in_dims=(None, 0))(one, u)
    d_exp = vmap(grad(lambda s, x: LF.exp_t(x, s)), in_dims=(None, 0))(one, v)
    torch.testing.assert_close(d_log, -(u.log() ** 2) / 2)
    torch.testing.assert_close(d_exp, v.exp() * v**2 / 2)
    # ... and near it, where the series takes over from the closed form, against differences
    for t in (1 - 1e-4, 1 + 1e-4, 0.9, 1.2):
        s, h = torch.tensor(t, dtype=f64), 1e-6
        d_log = vmap(grad(lambda s, x: LF.log_t(x, s)), in_dims=(None, 0))(s, u)
        fd = (LF.log_t(u, t + h) - LF.log_t(u, t - h)) / (2 * h)
        torch.testing.assert_close(d_log, fd, rtol=1e-6, atol=1e-6)
        d_exp = vmap(grad(lambda s, x: LF.exp_t(x, s)), in_dims=(None, 0))(s, v)
        fd = (LF.exp_t(v, t + h) - LF.exp_t(v, t - h)) / (2 * h)
        torch.testing.assert_close(d_exp, fd, rtol=1e-6, atol=1e-6)


def test_tempered_sigmoid_is_sigmoid_at_one_and_a_softmax_column():
    x = torch.linspace(-6, 6, 13, dtype=f64)
    torch.testing.assert_close(LF.tempered_sigmoid(x, 1.0), torch.sigmoid(x))
    torch.testing.assert_close(LF.tempered_sigmoid(x, torch.tensor(1.0, dtype=f64)), torch.sigmoid(x))
    pair = torch.stack([torch.zeros_like(x), x], -1)
    for t in (0.5, 2.0):
        torch.testing.assert_close(LF.tempered_sigmoid(x, t), LF.tempered_softmax(pair, t)[:, 1])


# -- properties ----------------------------------------------------------------------------


temperatures_1 = st.sampled_from([0.1, 0.5, 0.8, 0.95, 1.0])
temperatures_2 = st.sampled_from([0.2, 0.6, 0.9, 1.0, 1.05, 1.5, 3.0])
rows = st.lists(st.floats(-20, 20, allow_nan=False), min_size=2, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    logits=rows,
    data=st.data(),
    t1=temperatures_1,
    t2=temperatures_2,
    smoothing=st.sampled_from([0.0, 0.1, 0.5]),
    num_iters=st.integers(1, 8),
)
def test_loss_is_non_negative(logits, data, t1, t2, smoothing, num_iters):
    """Each term is a Bregman divergence of a convex function: >= 0 even before convergence."""
    x = torch.tensor([logits], dtype=f64)
    weights = data.draw(st.lists(st.floats(0, 1), min_size=len(logits), max_size=len(logits)))
    y = torch.tensor([weights], dtype=f64) + 1e-3
    y = y / y.sum()
    label = data.draw(st.integers(0, len(logits) - 1))
    params = dict(t1=t1, t2=t2, label_smoothing=smoothing, num_iters=num_iters)
    for target in (y, torch.tensor([label])):
        loss = LF.bi_tempered_logistic_loss(x, target, **params)
        assert torch.isfinite(loss) and loss >= -1e-12


@settings(max_examples=60, deadline=None)
@given(logits=rows, shift=st.floats(-50, 50), t=temperatures_2)
def test_tempered_softmax_is_shift_invariant(logits, shift, t):
    x = torch.tensor(logits, dtype=f64)
    torch.testing.assert_close(
        LF.tempered_softmax(x + shift, t, num_iters=30), LF.tempered_softmax(x, t, num_iters=30), rtol=0, atol=1e-9
    )


@settings(max_examples=40, deadline=None)
@given(logits=rows, t=temperatures_2)
def test_tempered_softmax_is_a_distribution_ordered_like_the_logits(logits, t):
    x = torch.tensor(logits, dtype=f64)
    p = LF.tempered_softmax(x, t, num_iters=60)
    assert (p >= 0).all() and abs(p.sum().item() - 1) < 1e-9
    order = torch.argsort(x)
    assert (p[order].diff() >= -1e-15).all()


# -- errors and the registry ---------------------------------------------------------------


def test_bad_inputs_are_clear_errors():
    name = "bi_tempered_logistic_loss"
    logits = torch.randn(4, 3)
    with pytest.raises(ValueError, match=rf"^{name}: labels must be probabilities of the logits' shape"):
        LF.bi_tempered_logistic_loss(logits, torch.rand(4, 4))
    with pytest.raises(ValueError, match=rf"^{name}: labels must be class indices of shape \[4\]"):
        LF.bi_tempered_logistic_loss(logits, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"^{name}: labels must be integer class indices or float"):
        LF.bi_tempered_logistic_loss(logits, torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match=rf"^{name}: logits must be of shape \[B, C\] with at least 2 classes"):
        LF.bi_tempered_logistic_loss(torch.randn(4, 1), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"^{name}: logits must be a floating-point tensor"):
        LF.bi_tempered_logistic_loss(torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"^{name}: t2 must be a number or a 0-d tensor; got a tensor of shape \[2\]"):
        LF.bi_tempered_logistic_loss(logits, torch.zeros(4, dtype=torch.long), t2=torch.ones(2))
    with pytest.raises(ValueError, match=rf"^{name}: num_iters must be an integer >= 1 and <= 1000, or a 0-d tensor; got 2.5"):
        LF.bi_tempered_logistic_loss(logits, torch.zeros(4, dtype=torch.long), num_iters=2.5)
    with pytest.raises(ValueError, match="^bi_tempered_binary_logistic_loss: labels must be of the same shape"):
        LF.bi_tempered_binary_logistic_loss(torch.randn(4), torch.ones(4, 1))
    with pytest.raises(ValueError, match="^tempered_softmax: logits must be a floating-point tensor"):
        LF.tempered_softmax(torch.zeros(3, dtype=torch.long), 1.5)


def test_num_iters_may_be_a_0d_integer_tensor():
    logits, labels, _ = _problem()
    torch.testing.assert_close(
        LF.bi_tempered_logistic_loss(logits, labels, t1=0.7, t2=0.8, num_iters=torch.tensor(7)),
        LF.bi_tempered_logistic_loss(logits, labels, t1=0.7, t2=0.8, num_iters=7),
    )


def test_module_validates_labels():
    module = lossfn.get_loss("bi_tempered_binary_logistic_loss").module(t1=0.8, t2=1.2)
    with pytest.raises(ValueError, match="labels must be targets in \\[0, 1\\]"):
        module(torch.zeros(3), torch.tensor([0.0, 2.0, 1.0]))
    module = lossfn.get_loss("tempered_softmax_cross_entropy").module(t2=0.7)
    with pytest.raises(ValueError, match="class indices in \\[0, 2\\]"):
        module(torch.zeros(2, 3), torch.tensor([0, 3]))


def test_registry_entries():
    spec = lossfn.get_loss("tempered_softmax_cross_entropy")
    assert spec.name == "bi_tempered_logistic_loss" and spec.fn is LF.bi_tempered_logistic_loss
    assert "bi_tempered_logistic_loss" in lossfn.losses_for("category")
    assert "bi_tempered_binary_logistic_loss" in lossfn.losses_for("binary")
    assert spec.defaults == {"t1": 1.0, "t2": 1.0, "label_smoothing": 0.0, "num_iters": 5}
