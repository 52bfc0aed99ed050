"""The preference losses (dpo, simpo, orpo, kto) and ``sequence_log_probs`` against independent references.

References, none of them lossfn:

- the papers' formulas written out with ``exp``/``log`` in float64 (Rafailov et
  al. 2023, conservative DPO, Azar et al. 2023 eq. 17, SLiC's hinge, Chowdhury et al.
  2024, Meng et al. 2024 eq. 6, Hong et al. 2024 eqs. 4-7, Ethayarajh et al. 2024 eq. 7),
  here and in ``tests/cases/preference.py`` (with the naive computations below);
- TRL's trainer formulas, in ``tests/cases/preference.py`` (the conformance suite's
  references);
- Ludwig 0.17.8's ``dpo_loss``, ``orpo_loss`` and ``kto_loss``
  (``ludwig/modules/dpo_loss.py``, ``preference_losses.py``) written out;
- ``sequence_log_probs`` against a per-token loop over ``softmax`` and a one-hot sum,
  and ``dpo`` end to end on a small causal model against the same naive computation.

The generic checks (transforms, reductions, configs, modules, dtypes) run over the
cases in ``tests/cases/preference.py`` in ``tests/test_conformance.py``.
"""

from __future__ import annotations

import math

import msgspec
import pytest
import torch
from torch.func import grad, jacfwd, jacrev, vmap

import lossfn
import lossfn.cli
import lossfn.functional as LF
from lossfn.functional._log_probs import log1mexp
from lossfn.registry import Feature

from cases.preference import TinyCausalModel, averages, averages_and_nll, kto_reference, naive_dpo
from cases.preference import naive_sequence_log_probs, paper_dpo, paper_kto, sigmoid, sums, unpaired


def _sample(make, batch=7, seed=0, dtype=torch.float64):
    return make(batch, dtype, torch.Generator().manual_seed(seed))


# -- the catalog ----------------------------------------------------------------------------


def test_catalog_inputs_and_defaults_are_the_issues():
    expected = {
        "dpo": (("policy_chosen", "policy_rejected", "reference_chosen", "reference_rejected"), 2,
                {"beta": 0.1, "label_smoothing": 0.0, "loss_type": "sigmoid"}),
        "simpo": (("policy_chosen", "policy_rejected"), 2, {"beta": 2.0, "gamma": 0.5, "label_smoothing": 0.0}),
        "orpo": (("policy_chosen", "policy_rejected", "chosen_nll"), 2, {"beta": 0.1}),
        "kto": (("policy", "reference", "labels", "kl"), 3,
                {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0}),
    }
    for name, (inputs, required, defaults) in expected.items():
        spec = lossfn.get_loss(name)
        assert spec.features == {Feature.TEXT} and spec.kind == "log_probs"
        assert spec.inputs == inputs and len(spec.required_inputs) == required
        assert spec.defaults == defaults
        assert lossfn.decode_config({"type": name}) == spec.config()
    assert "sequence_log_probs" in LF.__all__ and "sequence_log_probs" not in lossfn.registered()


def test_loss_type_is_a_literal_in_config_schema_module_and_cli(capsys):
    assert lossfn.decode_config({"type": "dpo", "loss_type": "ipo"}).loss_type == "ipo"
    with pytest.raises(msgspec.ValidationError, match=r"Invalid enum value 'logistic' - at `\$\.loss_type`"):
        lossfn.decode_config({"type": "dpo", "loss_type": "logistic"})
    schema = lossfn.json_schema()["$defs"]["DpoConfig"]["properties"]["loss_type"]
    assert sorted(schema["enum"]) == ["hinge", "ipo", "robust", "sigmoid"] and schema["default"] == "sigmoid"
    module = lossfn.nn.Dpo(loss_type="robust", label_smoothing=0.1)
    assert "loss_type='robust'" in repr(module)
    with pytest.raises(msgspec.ValidationError, match="loss_type"):
        module.loss_type = "logistic"
    chosen, rejected = torch.tensor([-1.0]), torch.tensor([-2.0])
    with pytest.raises(ValueError, match=r"^dpo: loss_type must be one of 'hinge', 'ipo', 'robust', 'sigmoid'; got 'logistic'"):
        LF.dpo(chosen, rejected, loss_type="logistic")
    with pytest.raises(ValueError, match=r"^dpo: loss_type must be one of 'sigmoid', 'ipo', 'hinge', 'robust'"):
        lossfn.get_loss("dpo").unchecked(chosen, rejected, loss_type="logistic")  # the function's own check
    lossfn.cli.main(["show", "dpo"])
    assert "loss_type (Literal['hinge', 'ipo', 'robust', 'sigmoid']; default 'sigmoid')" in capsys.readouterr().out


# -- dpo: the papers' formulas ------------------------------------------------------------------


@pytest.mark.parametrize("loss_type", ["sigmoid", "robust", "hinge", "ipo"])
@pytest.mark.parametrize("beta,eps", [(0.1, 0.0), (0.5, 0.1), (2.0, 0.3)])
def test_dpo_per_pair_is_the_papers_formula(loss_type, beta, eps):
    pc, pr, rc, rr = _sample(sums)
    expected = paper_dpo(pc, pr, rc, rr, beta, eps, loss_type)
    got = LF.dpo(pc, pr, rc, rr, beta=beta, label_smoothing=eps, loss_type=loss_type, reduction="none")
    # log(1 - p) of the naive formula loses digits where p is near 1
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    free = LF.dpo(pc, pr, beta=beta, label_smoothing=eps, loss_type=loss_type, reduction="none")
    zeros = torch.zeros_like(pc)
    torch.testing.assert_close(free, paper_dpo(pc, pr, zeros, zeros, beta, eps, loss_type), rtol=1e-10, atol=1e-12)


def test_dpo_is_ludwigs_for_sigmoid_and_ludwigs_ipo_rescales():
    """Ludwig's ``dpo_loss`` on log-probabilities: sigmoid (smoothed) is lossfn's number; Ludwig's IPO
    is ``(beta h - 1/(2 beta))^2`` (h scaled), which is ``beta^2`` times lossfn's IPO at ``beta^2``."""
    pc, pr, rc, rr = _sample(sums)
    for beta, eps in [(0.1, 0.0), (0.3, 0.2)]:
        diff = beta * ((pc - rc) - (pr - rr))
        ludwig = (-torch.nn.functional.logsigmoid(diff) * (1 - eps) - torch.nn.functional.logsigmoid(-diff) * eps).mean()
        torch.testing.assert_close(LF.dpo(pc, pr, rc, rr, beta=beta, label_smoothing=eps), ludwig)
        ludwig_ipo = ((diff - 1 / (2 * beta)) ** 2).mean()
        torch.testing.assert_close(beta**2 * LF.dpo(pc, pr, rc, rr, beta=beta**2, loss_type="ipo"), ludwig_ipo)
        assert not torch.isclose(LF.dpo(pc, pr, rc, rr, beta=beta, loss_type="ipo"), ludwig_ipo)


def test_dpo_needs_both_references_or_neither():
    pc, pr, rc, _ = _sample(sums)
    with pytest.raises(ValueError, match=r"^dpo: reference_rejected must be given with reference_chosen"):
        LF.dpo(pc, pr, rc)
    with pytest.raises(ValueError, match=r"^dpo: reference_chosen must be given with reference_rejected"):
        LF.dpo(pc, pr, None, rc)


def test_per_token_inputs_are_refused_with_a_hint():
    with pytest.raises(ValueError, match=r"^dpo: policy_chosen must be log-probabilities of shape \[B\].*sequence_log_probs"):
        LF.dpo(-torch.rand(2, 5), -torch.rand(2, 5))


def test_inputs_of_another_shape_are_refused_not_broadcast():
    pc, pr, rc, rr = _sample(sums)
    with pytest.raises(ValueError, match=r"^dpo: reference_rejected must be of the same shape as policy_chosen \[7\]"):
        LF.dpo(pc, pr, rc, rr[:1])
    policy, reference, labels = _sample(unpaired)
    with pytest.raises(ValueError, match=r"^kto: labels must be of the same shape as policy \[7\]; got shape \[1, 7\]"):
        LF.kto(policy, reference, labels[None])


def test_robust_is_finite_and_right_near_half():
    pc, pr, rc, rr = _sample(sums)
    eps = math.nextafter(0.5, 0)
    got = LF.dpo(pc, pr, rc, rr, label_smoothing=eps, loss_type="robust", reduction="none")
    z = 0.1 * ((pc - pr) - (rc - rr))
    torch.testing.assert_close(got, torch.log1p(torch.exp(-z)) - eps / (1 - 2 * eps) * z, rtol=1e-12, atol=0)
    assert torch.isfinite(got).all()


# -- simpo, orpo --------------------------------------------------------------------------------


@pytest.mark.parametrize("beta,gamma,eps", [(2.0, 0.5, 0.0), (1.0, 0.0, 0.0), (2.5, 1.4, 0.15)])
def test_simpo_per_pair_is_the_papers_formula(beta, gamma, eps):
    chosen, rejected = _sample(averages)
    p = sigmoid(beta * chosen - beta * rejected - gamma)
    expected = -(1 - eps) * torch.log(p) - eps * torch.log(1 - p)
    got = LF.simpo(chosen, rejected, beta=beta, gamma=gamma, label_smoothing=eps, reduction="none")
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_simpo_with_gamma_zero_is_reference_free_dpo_on_averages():
    chosen, rejected = _sample(averages)
    torch.testing.assert_close(LF.simpo(chosen, rejected, beta=2.0, gamma=0.0), LF.dpo(chosen, rejected, beta=2.0))


def test_orpo_per_pair_is_the_papers_formula():
    chosen, rejected, nll = _sample(averages_and_nll)
    p_w, p_l = chosen.exp(), rejected.exp()
    ratio = (p_w / (1 - p_w)) / (p_l / (1 - p_l))
    odds_term = -torch.log(ratio / (1 + ratio))  # -log sigmoid(log ratio)
    for beta in (0.1, 0.7):
        torch.testing.assert_close(LF.orpo(chosen, rejected, beta=beta, reduction="none"), beta * odds_term)
        torch.testing.assert_close(LF.orpo(chosen, rejected, nll, beta=beta, reduction="none"), nll + beta * odds_term)


def test_orpo_is_ludwigs_with_its_sft_term_as_the_nll():
    """Ludwig's ``orpo_loss``: ``sft - beta * mean(logsigmoid(log odds ratio))``, its SFT term the batch's token-mean CE."""
    chosen, rejected, _, _ = _sample(sums)  # Ludwig feeds summed log-probabilities
    chosen, rejected = chosen / 8, rejected / 8  # away from 0, where Ludwig's clamp at 1 - 1e-7 does nothing
    sft = torch.tensor(1.7, dtype=torch.float64)

    def odds(lp):
        return lp - torch.log1p(-torch.exp(lp).clamp(max=1 - 1e-7))

    ludwig = sft - 0.1 * torch.nn.functional.logsigmoid(odds(chosen) - odds(rejected)).mean()
    torch.testing.assert_close(LF.orpo(chosen, rejected, sft.expand_as(chosen)), ludwig)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log1mexp_is_exact_to_rounding_near_zero_and_far(dtype):
    x = -torch.tensor([1e-30, 1e-20, 1e-12, 1e-7, 1e-3, 0.3, math.log(2), 0.9, 5.0, 40.0, 1e4], dtype=torch.float64)
    exact = torch.log(-torch.expm1(x))  # float64: exact to rounding for these (no cancellation in expm1)
    exact[-3:] = torch.log1p(-torch.exp(x[-3:]))
    got = log1mexp(x.to(dtype)).double()
    torch.testing.assert_close(got, exact, rtol=4 * torch.finfo(dtype).eps, atol=4 * torch.finfo(dtype).eps)
    # certainty (0, -0) and a positive input: log(tiny), the ceiling of ORPO's log odds, with a zero gradient
    top = torch.tensor([0.0, -0.0, 1e-3], dtype=dtype, requires_grad=True)
    at_top = log1mexp(top)
    torch.testing.assert_close(at_top.double(), torch.full((3,), math.log(torch.finfo(dtype).tiny), dtype=torch.float64))
    assert (torch.autograd.grad(at_top.sum(), top)[0] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_orpo_at_certainty_is_finite_with_a_finite_gradient(dtype):
    """A log-probability of exactly 0 has infinite odds: read as minus the smallest normal number."""
    chosen = torch.tensor([0.0, -0.0, -1e-30, -0.5], dtype=dtype, requires_grad=True)
    rejected = torch.tensor([-1.0, 0.0, 0.0, -1e-30], dtype=dtype, requires_grad=True)
    loss = LF.orpo(chosen, rejected, beta=0.5, reduction="none")
    gradients = torch.autograd.grad(loss.sum(), (chosen, rejected))
    assert torch.isfinite(loss).all() and all(torch.isfinite(g).all() for g in gradients)
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    ceiling = -math.log(torch.finfo(compute).tiny)  # the largest log odds: 87.3 in float32
    p_l = math.exp(-1.0)
    expected = 0.5 * math.log1p(math.exp(-(ceiling - math.log(p_l / (1 - p_l)))))
    assert math.isclose(loss[0].item(), expected, rel_tol=1e-2, abs_tol=1e-30)
    assert math.isclose(loss[1].item(), 0.5 * math.log(2), rel_tol=1e-2)  # both certain: even odds


# -- kto ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta,wd,wu", [(0.1, 1.0, 1.0), (0.5, 1.33, 0.8), (2.0, 0.0, 3.0)])
def test_kto_per_example_is_the_papers_formula(beta, wd, wu):
    policy, reference, labels = _sample(unpaired)
    for kl in (None, torch.tensor(0.7, dtype=torch.float64), torch.tensor(-0.4, dtype=torch.float64)):
        z0 = 0.0 if kl is None else max(kl.item(), 0.0)  # z_ref = max(0, KL estimate)
        expected = paper_kto(policy, reference, labels, z0, beta, wd, wu)
        got = LF.kto(policy, reference, labels, kl, beta=beta, desirable_weight=wd, undesirable_weight=wu,
                     reduction="none")
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(LF.kto(policy, reference, labels, kl, beta=beta, desirable_weight=wd,
                                          undesirable_weight=wu),
                                   kto_reference(policy, reference, labels, kl, beta=beta, desirable_weight=wd,
                                                 undesirable_weight=wu))


def test_kto_labels_of_every_dtype_and_a_per_example_kl():
    policy, reference, labels = _sample(unpaired)
    expected = LF.kto(policy, reference, labels, torch.tensor(0.3, dtype=torch.float64), reduction="none")
    for as_dtype in (torch.bool, torch.int32, torch.float32, torch.float64):
        per_example_kl = torch.full_like(policy, 0.3)
        got = LF.kto(policy, reference, labels.to(as_dtype), per_example_kl, reduction="none")
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_kto_with_kl_under_vmap_equals_a_loop():
    problems = [_sample(unpaired, batch=4, seed=s) for s in range(3)]
    kls = torch.tensor([0.0, 0.4, -1.0], dtype=torch.float64)
    stacked = [torch.stack([p[i] for p in problems]) for i in range(3)]
    expected = torch.stack([LF.kto(*p, k, beta=0.5, reduction="none") for p, k in zip(problems, kls)])
    torch.testing.assert_close(vmap(lambda *xs: LF.kto(*xs, beta=0.5, reduction="none"))(*stacked, kls), expected)
    policy, reference, labels = problems[0]
    per_example = vmap(grad(lambda *row: LF.kto(*row)))(policy, reference, labels, torch.full_like(policy, 0.4))
    loop = torch.stack([grad(LF.kto)(policy[i], reference[i], labels[i], torch.tensor(0.4, dtype=torch.float64))
                        for i in range(4)])
    torch.testing.assert_close(per_example, loop)


def test_kto_kl_is_detached():
    policy, reference, labels = _sample(unpaired)
    kl = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    policy = policy.clone().requires_grad_()
    loss = LF.kto(policy, reference, labels, kl)
    (by_kl,) = torch.autograd.grad(loss, (policy, kl), allow_unused=True)[1:]
    assert by_kl is None
    assert (grad(lambda k: LF.kto(policy.detach(), reference, labels, k))(kl.detach()) == 0).all()


def test_kto_is_ludwigs_for_paired_data_with_ludwigs_kl():
    """Ludwig's ``kto_loss`` takes chosen/rejected pairs and estimates the KL as the mean |log ratio|;
    given that estimate and the pairs concatenated, lossfn's mean is Ludwig's number."""
    pc, pr, rc, rr = _sample(sums)
    chosen, rejected = pc - rc, pr - rr
    kl = 0.5 * (chosen.abs().mean() + rejected.abs().mean())
    ludwig = 0.5 * ((1 - sigmoid(0.1 * (chosen - kl))).mean() + (1 - sigmoid(0.1 * (kl - rejected))).mean())
    labels = torch.cat([torch.ones(len(pc)), torch.zeros(len(pr))])
    torch.testing.assert_close(LF.kto(torch.cat([pc, pr]), torch.cat([rc, rr]), labels, kl), ludwig)


def test_kto_kl_of_a_wrong_shape_is_a_named_error():
    policy, reference, labels = _sample(unpaired)
    with pytest.raises(ValueError, match=r"^kto: kl must be a 0-d tensor \(the batch's estimate\) or of the shape"):
        LF.kto(policy, reference, labels, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^kto: labels must be 1 \(desirable\) or 0"):
        LF.kto(policy, reference, labels.to(torch.complex64))


# -- the modules' value checks --------------------------------------------------------------------


def test_modules_refuse_logits_passed_as_log_probabilities():
    pc, pr, rc, rr = _sample(sums, dtype=torch.float32)
    assert torch.isfinite(lossfn.nn.Dpo()(pc, pr, rc, rr))
    with pytest.raises(ValueError, match=r"^dpo: reference_rejected must be log-probabilities \(<= 0.*a maximum of 3"):
        lossfn.nn.Dpo()(pc, pr, rc, rr.abs().clamp(max=3))
    slightly = torch.full_like(pc, 1e-4)  # rounding in another engine
    assert torch.isfinite(lossfn.nn.Simpo()(slightly, pr))
    with pytest.raises(ValueError, match=r"^simpo: policy_chosen must be log-probabilities"):
        lossfn.nn.Simpo()(pc.abs(), pr)
    assert torch.isfinite(lossfn.nn.Simpo(validate_inputs=False)(pc.abs(), pr))  # the check can be switched off
    chosen, rejected, nll = _sample(averages_and_nll, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"^orpo: chosen_nll must be a negative log-likelihood \(>= 0.*-0.5"):
        lossfn.nn.Orpo()(chosen, rejected, nll - nll.amin() - 0.5)
    nan = pc.clone()
    nan[0] = math.nan
    assert torch.isnan(lossfn.nn.Dpo()(nan, pr))  # NaN is the loss's answer, not the check's


@pytest.mark.parametrize("bad", [2, -1, 0.5])
def test_kto_module_refuses_labels_outside_0_1(bad):
    policy, reference, labels = _sample(unpaired, dtype=torch.float32)
    labels = labels.float()
    labels[2] = bad
    with pytest.raises(ValueError, match=r"^kto: labels must be 1 \(desirable\) or 0 \(undesirable\).*1 value outside"):
        lossfn.nn.Kto()(policy, reference, labels)


# -- tensor hyperparameters, compile ------------------------------------------------------------


@pytest.mark.parametrize("loss_type,param,grid", [
    ("ipo", "beta", [0.05, 0.1, 1.0]), ("hinge", "beta", [0.05, 0.3, 1.0]), ("robust", "label_smoothing", [0.05, 0.2, 0.45]),
])
def test_dpo_variants_take_tensor_hyperparameters_under_vmap_and_grad(loss_type, param, grid):
    pc, pr, rc, rr = _sample(sums)

    def fn(value):
        return LF.dpo(pc, pr, rc, rr, loss_type=loss_type, **{param: value})

    values = torch.tensor(grid, dtype=torch.float64)
    expected = torch.stack([fn(v) for v in grid])
    torch.testing.assert_close(vmap(fn)(values), expected)
    gradients = vmap(grad(fn))(values)
    for value, gradient in zip(grid, gradients):
        step = 1e-6
        numeric = (fn(value + step) - fn(value - step)) / (2 * step)
        torch.testing.assert_close(gradient, numeric, rtol=1e-5, atol=1e-8)


def test_one_compilation_holds_every_variant_and_the_helper():
    pc, pr, rc, rr = _sample(sums, dtype=torch.float32)
    policy, reference, labels = _sample(unpaired, dtype=torch.float32)
    logits = torch.randn(3, 6, 5, generator=torch.Generator().manual_seed(1))
    tokens = torch.tensor([[-100, -100, 1, 2, 3, 4], [-100, 0, 4, 4, -100, -100], [-100] * 6])

    def everything(pc, pr, rc, rr, policy, reference, labels, kl, logits, tokens):
        dpos = [LF.dpo(pc, pr, rc, rr, loss_type=t, label_smoothing=0.1, reduction="none") for t in
                ("sigmoid", "ipo", "hinge", "robust")]
        return (*dpos, LF.simpo(pc / 16, pr / 16, reduction="none"), LF.orpo(pc / 16, pr / 16, -pc / 16, reduction="none"),
                LF.kto(policy, reference, labels, kl, reduction="none"),
                LF.sequence_log_probs(logits, tokens), LF.sequence_log_probs(logits, tokens, average=True))

    inputs = (pc, pr, rc, rr, policy, reference, labels, torch.tensor(0.2), logits, tokens)
    torch._dynamo.reset()
    compiled = torch.compile(everything, fullgraph=True)(*inputs)
    for got, expected in zip(compiled, everything(*inputs)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


# -- sequence_log_probs -------------------------------------------------------------------------


def _tokens(batch=4, steps=7, vocab=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, steps, vocab, generator=g, dtype=torch.float64)
    labels = torch.randint(0, vocab, (batch, steps), generator=g)
    labels[:, :2] = -100  # the prompt
    labels[1, 5:] = -100  # padding
    labels[2, :] = -100  # nothing kept
    return logits, labels


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("average", [False, True])
def test_sequence_log_probs_is_the_naive_loop(shift, average):
    logits, labels = _tokens()
    leaf = logits.clone().requires_grad_()
    got = LF.sequence_log_probs(leaf, labels, shift=shift, average=average)
    naive_leaf = logits.clone().requires_grad_()
    expected = naive_sequence_log_probs(naive_leaf, labels, shift=shift, average=average)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert got[2] == 0  # no kept token: 0, not 0/0
    weights = torch.arange(1.0, 5.0, dtype=torch.float64)
    (by_got,) = torch.autograd.grad((got * weights).sum(), leaf)
    (by_naive,) = torch.autograd.grad((expected * weights).sum(), naive_leaf)
    torch.testing.assert_close(by_got, by_naive, rtol=1e-10, atol=1e-12)
    assert (by_got[2] == 0).all()


@pytest.mark.parametrize("shift", [True, False])
def test_sequence_log_probs_is_minus_torchs_summed_cross_entropy(shift):
    """torch's twin: ``-F.cross_entropy(..., ignore_index=-100, reduction="none")`` summed over the kept tokens."""
    logits, labels = _tokens()
    x, y = (logits[:, :-1], labels[:, 1:]) if shift else (logits, labels)
    per_token = torch.nn.functional.cross_entropy(x.transpose(1, 2), y, ignore_index=-100, reduction="none")
    kept = (y != -100).sum(1)
    torch.testing.assert_close(LF.sequence_log_probs(logits, labels, shift=shift), -per_token.sum(1),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(LF.sequence_log_probs(logits, labels, shift=shift, average=True),
                               -per_token.sum(1) / kept.clamp(min=1), rtol=1e-12, atol=1e-12)


def test_sequence_log_probs_under_transforms_and_for_one_sequence():
    logits, labels = _tokens()
    batched = LF.sequence_log_probs(logits, labels, average=True)
    torch.testing.assert_close(vmap(lambda x, y: LF.sequence_log_probs(x, y, average=True))(logits, labels), batched)
    torch.testing.assert_close(torch.stack([LF.sequence_log_probs(x, y, average=True) for x, y in zip(logits, labels)]),
                               batched)
    fn = lambda x: LF.sequence_log_probs(x, labels)  # noqa: E731
    torch.testing.assert_close(jacrev(fn)(logits), jacfwd(fn)(logits))
    per_example = vmap(grad(lambda x, y: LF.sequence_log_probs(x, y)))(logits, labels)
    torch.testing.assert_close(per_example, jacrev(fn)(logits).diagonal(dim1=0, dim2=1).movedim(-1, 0))


def test_sequence_log_probs_keeps_ignored_logits_out_and_half_precision_in_float32():
    logits, labels = _tokens()
    poisoned = logits.clone()
    poisoned[:, 0] = math.nan  # position 0 predicts label 1: ignored
    poisoned[2] = math.inf
    torch.testing.assert_close(LF.sequence_log_probs(poisoned, labels), LF.sequence_log_probs(logits, labels))
    half = logits.to(torch.bfloat16)
    got = LF.sequence_log_probs(half, labels)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, LF.sequence_log_probs(half.float(), labels), rtol=0, atol=0)


def test_sequence_log_probs_errors_name_the_argument():
    logits, labels = _tokens()
    cases = [
        ((logits[0, 0], labels), r"logits must be of shape \[B, T, V\]"),
        ((logits, labels.double()), r"labels must be integer token indices"),
        ((logits, labels[:, :3]), r"labels must be token indices of shape \[4, 7\]"),
        ((logits, torch.where(labels == 3, 9, labels)), r"labels must be token indices in \[0, 5\] or the ignore_index"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=rf"^sequence_log_probs: {message}"):
            LF.sequence_log_probs(*args)
    with pytest.raises(ValueError, match=r"^sequence_log_probs: average must be True or False; got 1"):
        LF.sequence_log_probs(logits, labels, average=1)
    with pytest.raises(ValueError, match=r"^sequence_log_probs: ignore_index must be an integer"):
        LF.sequence_log_probs(logits, labels, ignore_index=None)


# -- end to end: dpo on a small causal model ------------------------------------------------------


def test_dpo_with_sequence_log_probs_end_to_end_on_a_causal_model():
    vocab, steps, batch = 11, 9, 5
    policy, reference = TinyCausalModel(vocab, 8, seed=1), TinyCausalModel(vocab, 8, seed=2)
    g = torch.Generator().manual_seed(3)
    prompt = torch.randint(0, vocab, (batch, 3), generator=g)
    chosen = torch.cat([prompt, torch.randint(0, vocab, (batch, steps - 3), generator=g)], 1)
    rejected = torch.cat([prompt, torch.randint(0, vocab, (batch, steps - 3), generator=g)], 1)
    chosen_labels, rejected_labels = chosen.clone(), rejected.clone()
    chosen_labels[:, :3] = rejected_labels[:, :3] = -100  # the prompt is not scored
    chosen_labels[0, 7:] = rejected_labels[3, 6:] = -100  # padding

    def lossfn_dpo():
        with torch.no_grad():
            ref_c = LF.sequence_log_probs(reference(chosen), chosen_labels)
            ref_r = LF.sequence_log_probs(reference(rejected), rejected_labels)
        pol_c = LF.sequence_log_probs(policy(chosen), chosen_labels)
        pol_r = LF.sequence_log_probs(policy(rejected), rejected_labels)
        return LF.dpo(pol_c, pol_r, ref_c, ref_r, beta=0.5)

    got = lossfn_dpo()
    by_lossfn = torch.autograd.grad(got, list(policy.parameters()))
    expected = naive_dpo(policy, reference, chosen, rejected, chosen_labels, rejected_labels, 0.5)
    by_naive = torch.autograd.grad(expected, list(policy.parameters()))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for a, b in zip(by_lossfn, by_naive):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # the module, built from a config, gives the same number
    module = lossfn.build({"type": "dpo", "beta": 0.5})
    with torch.no_grad():
        logps = [LF.sequence_log_probs(m(x), y) for m in (policy, reference)
                 for x, y in ((chosen, chosen_labels), (rejected, rejected_labels))]
    torch.testing.assert_close(module(*logps), expected.detach())
