"""The divergences against their references: optax's stored vectors, torch's ``kl_div``,
torch's distillation recipe and closed forms written here (see ``tests/cases/divergence.py``).

Every expected number comes from outside lossfn: ``tests/data/divergence_optax.json``
(``scripts/make_divergence_vectors.py``, optax 0.2.8 in float64), ``F.kl_div`` on
``log_softmax``, and the formulas in float64.
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

from cases.divergence import js_closed_form, kd_closed_form, kd_recipe

DATA = json.loads((pathlib.Path(__file__).parent / "data" / "divergence_optax.json").read_text())
OPTAX = [pytest.param(c, id=c["label"]) for c in DATA["cases"]]
INF = math.inf


def _t(values):
    return torch.tensor(values, dtype=torch.float64)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def close(actual, expected, rtol=1e-10, atol=1e-12):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def _grads(fn, *inputs):
    leaves = [x.clone().requires_grad_() for x in inputs]
    return torch.autograd.grad(fn(*leaves).sum(), leaves)


# -- kl_divergence: optax -----------------------------------------------------------------


@pytest.mark.parametrize("case", OPTAX)
def test_kl_divergence_matches_optax_values_and_gradients(case):
    logits, targets = _t(case["logits"]), _t(case["targets"])
    log_target = case["function"] == "kl_divergence_with_log_targets"
    if logits.ndim == 3:  # optax's classes are last, lossfn's on dimension 1
        logits, targets = logits.movedim(-1, 1), targets.movedim(-1, 1)
    unmove = (lambda g: g.movedim(1, -1)) if logits.ndim == 3 else (lambda g: g)

    def none(x, y):
        return LF.kl_divergence(x, y, log_target=log_target, reduction="none")

    close(none(logits, targets), _t(case["value"]))
    grad_logits, grad_targets = _grads(none, logits, targets)
    close(unmove(grad_logits), _t(case["grad_logits"]))
    if case["grad_targets"] is not None:
        close(unmove(grad_targets), _t(case["grad_targets"]))
    else:  # optax: NaN at every zero target (PR 1786); lossfn: finite, 0 there, optax's elsewhere
        assert case["optax_target_grad_nan_at_zeros"]
        zero = targets == 0
        assert torch.isfinite(grad_targets).all() and (grad_targets[zero] == 0).all()
        log_q = torch.log_softmax(logits, -1)
        expected = torch.log(targets) + 1 - log_q  # d/dp of p (log p - log q) where p > 0
        close(grad_targets[~zero], expected[~zero])


def test_optax_vectors_cover_what_the_docstring_claims():
    labels = {c["label"] for c in DATA["cases"]}
    assert any("zeros" in l for l in labels) and any("log targets" in l for l in labels)
    assert DATA["source"].startswith("optax 0.2.8")


# -- kl_divergence: torch -----------------------------------------------------------------


def test_kl_mean_is_batchmean_not_torchs_elementwise_mean():
    logits = torch.randn(4, 6, generator=_gen(), dtype=torch.float64)
    target = torch.softmax(torch.randn(4, 6, generator=_gen(1), dtype=torch.float64), 1)
    log_q = torch.log_softmax(logits, 1)
    ours = LF.kl_divergence(logits, target)
    close(ours, F.kl_div(log_q, target, reduction="batchmean"))
    with pytest.warns(UserWarning, match="batchmean"):  # torch's own warning about its "mean"
        elementwise = F.kl_div(log_q, target, reduction="mean")
    close(ours / 6, elementwise)  # torch's "mean" also divides by C


@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_kl_gradients_match_torch_kl_div(log_target, reduction):
    logits = 3 * torch.randn(5, 4, generator=_gen(), dtype=torch.float64)
    target = torch.softmax(torch.randn(5, 4, generator=_gen(1), dtype=torch.float64), 1)
    target = target.log() if log_target else target
    torch_reduction = {"none": "none", "mean": "batchmean", "sum": "sum"}[reduction]

    def theirs(x, y):
        value = F.kl_div(torch.log_softmax(x, 1), y, reduction=torch_reduction, log_target=log_target)
        return value.sum(1) if reduction == "none" else value

    ours = lambda x, y: LF.kl_divergence(x, y, log_target=log_target, reduction=reduction)  # noqa: E731
    for mine, expected in zip(_grads(ours, logits, target), _grads(theirs, logits, target)):
        close(mine, expected)


def test_kl_zero_target_at_a_masked_class_is_finite_where_torch_gives_nan():
    logits = _t([[0.5, 1.5, -INF], [2.0, -INF, 0.0]])
    target = _t([[0.25, 0.75, 0.0], [0.6, 0.0, 0.4]])
    live = [torch.tensor([0, 1]), torch.tensor([0, 2])]
    expected = torch.stack([
        (target[n, k] * (target[n, k].log() - torch.log_softmax(logits[n, k], 0))).sum() for n, k in enumerate(live)
    ])
    assert torch.isnan(F.kl_div(torch.log_softmax(logits, 1), target, reduction="none").sum(1)).all()
    for log_target, y in ((False, target), (True, target.log())):  # log(0) = -inf: torch gives nan too
        x, t = logits.clone().requires_grad_(), y.clone().requires_grad_()
        loss = LF.kl_divergence(x, t, log_target=log_target, reduction="none")
        close(loss, expected)
        gx, gt = torch.autograd.grad(loss.sum(), (x, t))
        assert torch.isfinite(gx).all() and torch.isfinite(gt).all()
        assert gx[0, 2] == 0 and gx[1, 1] == 0 and gt[0, 2] == 0 and gt[1, 1] == 0
    torch_log = F.kl_div(torch.log_softmax(logits, 1), target.log(), reduction="none", log_target=True)
    assert torch.isnan(torch_log).any()


def test_kl_mass_on_an_impossible_class_is_inf():
    logits = _t([[0.0, -INF]])
    assert LF.kl_divergence(logits, _t([[0.5, 0.5]])).item() == INF


@pytest.mark.parametrize("scale", [1e4, 1e30])
def test_kl_float32_extremes_match_float64(scale):
    logits = torch.randn(4, 5, generator=_gen(), dtype=torch.float64) * scale
    target = torch.softmax(torch.randn(4, 5, generator=_gen(1), dtype=torch.float64), 1)
    target[0, 1] = 0.0
    target = target / target.sum(1, keepdim=True)
    expected = (torch.xlogy(target, target) - target * torch.log_softmax(logits, 1)).sum(1)
    x = logits.float().requires_grad_()
    loss = LF.kl_divergence(x, target.float(), reduction="none")
    close(loss.double(), expected, rtol=1e-5, atol=0)
    (gradient,) = torch.autograd.grad(loss.sum(), x)
    close(gradient.double(), torch.softmax(logits, 1) - target, rtol=0, atol=1e-6)  # d/dx = q - p


def test_kl_layouts_classes_on_dimension_1():
    logits = torch.randn(2, 4, 3, generator=_gen(), dtype=torch.float64)
    target = torch.softmax(torch.randn(2, 4, 3, generator=_gen(1), dtype=torch.float64), 1)
    per_position = LF.kl_divergence(logits, target, reduction="none")
    flat = [x.movedim(1, -1).reshape(-1, 4) for x in (logits, target)]
    rows = LF.kl_divergence(*flat, reduction="none")
    close(per_position, rows.reshape(2, 3))
    close(LF.kl_divergence(logits[:, :, 0][0], target[:, :, 0][0], reduction="none"), per_position[0, 0])


def test_kl_log_target_as_a_tensor_picks_the_same_form():
    logits = torch.randn(3, 4, generator=_gen(), dtype=torch.float64)
    target = torch.softmax(torch.randn(3, 4, generator=_gen(1), dtype=torch.float64), 1)
    for flag, y in ((False, target), (True, target.log())):
        close(LF.kl_divergence(logits, y, log_target=torch.tensor(flag)), LF.kl_divergence(logits, y, log_target=flag))
    flags = torch.tensor([False, True])
    both = vmap(lambda f, y: LF.kl_divergence(logits, y, log_target=f))(flags, torch.stack([target, target.log()]))
    close(both[0], both[1])


def test_kl_module_checks_the_targets():
    module = lossfn.get_loss("kl_divergence").module()
    logits = torch.randn(2, 3)
    good = torch.tensor([[0.2, 0.8, 0.0], [0.1, 0.1, 0.8]])
    assert torch.isfinite(module(logits, good))
    for bad, why in (([[0.2, 0.9, 0.0]] * 2, "off 1 by"), ([[-0.2, 1.2, 0.0]] * 2, "a minimum of -0.2")):
        with pytest.raises(ValueError, match=rf"^kl_divergence: labels must be class probabilities .*{why}"):
            module(logits, torch.tensor(bad))
    logs = lossfn.get_loss("kl_divergence").module(log_target=True)
    assert torch.isfinite(logs(logits, good.log()))  # -inf is a zero probability
    for bad in (math.nan, INF):
        y = good.log().clone()
        y[0, 0] = bad
        with pytest.raises(ValueError, match=r"^kl_divergence: labels must be log-probabilities"):
            logs(logits, y)


def test_kl_wrong_labels_are_named_errors():
    with pytest.raises(ValueError, match=r"^kl_divergence: labels must be class probabilities \(a floating"):
        LF.kl_divergence(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"^kl_divergence: labels must be class probabilities of the logits' shape"):
        LF.kl_divergence(torch.randn(2, 3), torch.rand(2, 4))


# -- jensen_shannon -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 5), (5,), (2, 4, 3)])
@pytest.mark.parametrize("beta", [0.5, 0.1, 0.75])
def test_js_matches_the_closed_form_with_gradients(shape, beta):
    logits = 2 * torch.randn(shape, generator=_gen(), dtype=torch.float64)
    dim = 1 if len(shape) > 1 else 0
    target = torch.softmax(2 * torch.randn(shape, generator=_gen(1), dtype=torch.float64), dim)
    target = torch.where(target < 0.1, 0.0, target)  # some exact zeros
    target = target / target.sum(dim, keepdim=True)
    ours = lambda x: LF.jensen_shannon(x, target, beta=beta, reduction="none")  # noqa: E731
    reference = lambda x: js_closed_form(x, target, beta=beta)  # noqa: E731
    close(ours(logits), reference(logits))
    close(*(_grads(f, logits)[0] for f in (ours, reference)))
    # the entropy identity: H(M) - βH(P) - (1-β)H(Q)
    q = torch.softmax(logits, dim)
    m = beta * target + (1 - beta) * q
    entropy = lambda p: -torch.xlogy(p, p).sum(dim)  # noqa: E731
    close(ours(logits), entropy(m) - beta * entropy(target) - (1 - beta) * entropy(q))


@pytest.mark.parametrize("beta", [0.5, 0.2, 1e-15, 1 - 2**-53])
def test_js_of_disjoint_supports_is_the_bound_with_finite_gradients(beta):
    """Q = softmax([-inf, 0, -inf]) = [0, 1, 0] against P = [1, 0, 0]: M = [β, 1-β, 0]."""
    logits = _t([[-INF, 0.0, -INF], [-1e30, 1e30, 0.0]]).requires_grad_()
    target = _t([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]).requires_grad_()
    loss = LF.jensen_shannon(logits, target, beta=beta, reduction="none")
    bound = -beta * math.log(beta) - (1 - beta) * math.log1p(-beta)
    close(loss, _t([bound, bound]), rtol=1e-12, atol=1e-300)
    gx, gt = torch.autograd.grad(loss.sum(), (logits, target))
    assert torch.isfinite(gx).all() and torch.isfinite(gt).all()
    if beta == 0.5:
        close(loss[0], _t(math.log(2)))


def test_js_is_accurate_when_q_is_close_to_p():
    """Near Q = P the value is about β(1-β)/2 · Σ (Q-P)²/P (tiny): no cancellation of logs in float32."""
    target = torch.softmax(torch.randn(4, 6, generator=_gen(), dtype=torch.float64), 1)
    logits = target.log() + 1e-3 * torch.randn(4, 6, generator=_gen(1), dtype=torch.float64)
    expected = js_closed_form(logits, target, beta=0.3)
    ours = LF.jensen_shannon(logits.float(), target.float(), beta=0.3, reduction="none")
    # the float32 inputs are not the float64 ones: compare with the closed form on them
    close(ours.double(), js_closed_form(logits.float().double(), target.float().double(), beta=0.3), rtol=2e-3, atol=0)
    assert (expected < 1e-6).all()


@pytest.mark.parametrize("scale", [1e4, 1e30])
def test_js_float32_extremes_match_float64(scale):
    logits = torch.randn(4, 5, generator=_gen(), dtype=torch.float64) * scale
    target = torch.softmax(torch.randn(4, 5, generator=_gen(1), dtype=torch.float64), 1)
    x = logits.float().requires_grad_()
    loss = LF.jensen_shannon(x, target.float(), reduction="none")
    close(loss.double(), js_closed_form(logits, target), rtol=1e-5, atol=1e-7)
    (gradient,) = torch.autograd.grad(loss.sum(), x)
    assert torch.isfinite(gradient).all()


def test_js_tensor_beta_under_vmap_and_grad():
    logits = torch.randn(3, 4, generator=_gen(), dtype=torch.float64)
    target = torch.softmax(torch.randn(3, 4, generator=_gen(1), dtype=torch.float64), 1)
    betas = _t([0.1, 0.5, 0.9])
    close(vmap(lambda b: LF.jensen_shannon(logits, target, beta=b))(betas),
          torch.stack([js_closed_form(logits, target, beta=float(b)).mean() for b in betas]))
    expected = torch.stack([_grads(lambda b: js_closed_form(logits, target, beta=b).mean(), b)[0] for b in betas])
    close(vmap(grad(lambda b: LF.jensen_shannon(logits, target, beta=b)))(betas), expected)


def test_js_module_checks_the_targets():
    module = lossfn.get_loss("jensen_shannon").module()
    with pytest.raises(ValueError, match=r"^jensen_shannon: labels must be class probabilities .*off 1 by"):
        module(torch.randn(1, 3), torch.tensor([[0.5, 0.6, 0.0]]))


# -- knowledge_distillation ---------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.3, 4.0])
@pytest.mark.parametrize("shape", [(6, 5), (5,), (3, 4, 7)])
def test_kd_gradients_match_torchs_recipe(shape, temperature):
    student = 2 * torch.randn(shape, generator=_gen(), dtype=torch.float64)
    teacher = 2 * torch.randn(shape, generator=_gen(1), dtype=torch.float64)
    recipe = kd_recipe(temperature)
    for reduction in ("none", "mean", "sum"):
        ours = lambda s, t: LF.knowledge_distillation(s, t, temperature=temperature, reduction=reduction)  # noqa: E731
        theirs = lambda s, t: recipe(s, t, reduction)  # noqa: E731
        close(ours(student, teacher), theirs(student, teacher))
        for mine, expected in zip(_grads(ours, student, teacher), _grads(theirs, student, teacher)):
            close(mine, expected)


def test_kd_student_gradient_is_t_times_q_minus_p():
    student, teacher = (torch.randn(4, 6, generator=_gen(s), dtype=torch.float64) for s in (0, 1))
    for temperature in (0.5, 2.0, 10.0):
        loss = lambda s: LF.knowledge_distillation(s, teacher, temperature=temperature, reduction="sum")  # noqa: E731
        (gradient,) = _grads(loss, student)
        q, p = torch.softmax(student / temperature, 1), torch.softmax(teacher / temperature, 1)
        close(gradient, temperature * (q - p))


def test_kd_high_temperature_is_logit_matching():
    """Hinton et al.: as T grows, T²·KL -> Σ (δ - mean δ)² / (2C) with δ = s - t."""
    student, teacher = (torch.randn(4, 6, generator=_gen(s), dtype=torch.float64) for s in (0, 1))
    delta = student - teacher
    limit = (delta - delta.mean(1, keepdim=True)).square().sum(1) / (2 * 6)
    close(LF.knowledge_distillation(student, teacher, temperature=1e3, reduction="none"), limit, rtol=1e-2, atol=0)


@pytest.mark.parametrize("temperature", [1e-15, 1e-3, 1e15])
@pytest.mark.parametrize("scale", [1.0, 1e4, 1e30])
def test_kd_float32_extremes_are_finite_and_right(temperature, scale):
    student = torch.randn(4, 5, generator=_gen(), dtype=torch.float64) * scale
    teacher = torch.randn(4, 5, generator=_gen(1), dtype=torch.float64)
    expected = kd_closed_form(student, teacher, temperature=temperature)
    x = student.float().requires_grad_()
    loss = LF.knowledge_distillation(x, teacher.float(), temperature=temperature, reduction="none")
    (gradient,) = torch.autograd.grad(loss.sum(), x)
    assert torch.isfinite(gradient).all()
    if expected.abs().max() > torch.finfo(torch.float32).max:
        return  # the value itself is beyond float32
    assert torch.isfinite(loss).all()
    if temperature < 1e15:  # at T = 1e15 the float32 value is the rounding of T²·(~0): only finite
        rounded = kd_closed_form(student.float().double(), teacher.float().double(), temperature=temperature)
        close(loss.double(), rounded, rtol=1e-4, atol=1e-6 * scale * temperature)


def test_kd_a_class_masked_in_the_teacher_is_finite():
    student = _t([[0.5, 1.5, -INF], [2.0, 0.0, 1.0]])
    teacher = _t([[1.0, 0.0, -INF], [0.0, -INF, 1.0]])
    # row 0: class 2 masked in both (it drops out); row 1: masked in the teacher only (p = 0 there)
    expected = []
    for n, live in enumerate([torch.tensor([0, 1]), torch.tensor([0, 2])]):
        log_p = torch.log_softmax(teacher[n, live] / 2.0, 0)
        log_q = torch.log_softmax(student[n] / 2.0, 0)[live] if n else torch.log_softmax(student[n, live] / 2.0, 0)
        expected.append(4.0 * (log_p.exp() * (log_p - log_q)).sum())
    expected = torch.stack(expected)
    temperature = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    s, t = student.clone().requires_grad_(), teacher.clone().requires_grad_()
    loss = LF.knowledge_distillation(s, t, temperature=temperature, reduction="none")
    close(loss, expected)
    gs, gt, gT = torch.autograd.grad(loss.sum(), (s, t, temperature))
    assert torch.isfinite(gs).all() and torch.isfinite(gt).all() and torch.isfinite(gT)


def test_kd_tensor_temperature_under_vmap_and_grad():
    student, teacher = (torch.randn(3, 4, generator=_gen(s), dtype=torch.float64) for s in (0, 1))
    temps = _t([0.5, 1.0, 3.0])
    close(vmap(lambda T: LF.knowledge_distillation(student, teacher, temperature=T))(temps),
          torch.stack([kd_closed_form(student, teacher, temperature=float(T)).mean() for T in temps]))
    closed = lambda T: kd_closed_form(student, teacher, temperature=T).mean()  # noqa: E731
    expected = torch.stack([_grads(closed, T)[0] for T in temps])
    close(vmap(grad(lambda T: LF.knowledge_distillation(student, teacher, temperature=T)))(temps), expected)


def test_kd_classes_are_last_and_the_rule_is_argmax_last():
    spec = lossfn.get_loss("knowledge_distillation")
    tokens = torch.randn(2, 3, 5, generator=_gen(), dtype=torch.float64)
    teacher = torch.randn(2, 3, 5, generator=_gen(1), dtype=torch.float64)
    per_token = LF.knowledge_distillation(tokens, teacher, reduction="none")
    assert per_token.shape == (2, 3)
    close(per_token, kd_closed_form(tokens, teacher))
    assert torch.equal(spec.prediction_rule(tokens), tokens.argmax(-1))
    with pytest.raises(ValueError, match=r"^knowledge_distillation: teacher_logits must be of the same shape"):
        LF.knowledge_distillation(tokens, teacher[..., :4])


# -- all three: half precision is computed in float32 -------------------------------------


@pytest.mark.parametrize("name", ["kl_divergence", "jensen_shannon", "knowledge_distillation"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(name, dtype):
    logits = (3 * torch.randn(4, 5, generator=_gen())).to(dtype)
    second = torch.randn(4, 5, generator=_gen(1))
    second = (second if name == "knowledge_distillation" else torch.softmax(second, 1)).to(dtype)
    fn = lossfn.get_loss(name).fn
    loss = fn(logits, second, reduction="none")
    assert loss.dtype == dtype
    close(loss, fn(logits.float(), second.float(), reduction="none").to(dtype), rtol=0, atol=0)
