"""Preference-optimization losses for language models: DPO (and IPO, hinge, robust), SimPO, ORPO, KTO.

Each takes per-sequence log-probabilities ``[B]`` (``[]`` for one pair), what
:func:`lossfn.functional.sequence_log_probs` computes from a causal model's logits
(the sum for ``dpo`` and ``kto``, the length average for ``simpo`` and ``orpo``), the
policy's chosen answer first; the registry records ``kind="log_probs"``.
``reduction="none"`` returns one loss per pair (per example for ``kto``), ``"mean"``
their mean, as TRL's trainers take it. Half-precision inputs are computed in float32
and the loss is returned in the dtype of the first input. The modules also check the
values (log-probabilities <= 0 within 1e-3, NLLs >= 0, KTO's labels in {0, 1}).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._common import fail, reduce_loss
from ._log_probs import log1mexp, per_sequence, scalar, unpaired_inputs, validator

__all__ = ["dpo", "kto", "orpo", "simpo"]

_KIND = "log_probs"
Beta = Annotated[float, Meta(gt=0.0, description="inverse temperature of the implicit reward (KL strength)")]
LabelSmoothing = Annotated[
    float, Meta(ge=0.0, lt=0.5, description="probability that a preference label is flipped (conservative/robust)")
]
LossType = Annotated[
    Literal["sigmoid", "ipo", "hinge", "robust"],
    Meta(description="sigmoid (DPO, conservative with label_smoothing), ipo, hinge (SLiC) or robust"),
]
LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust")
_DPO_INPUTS = ("policy_chosen", "policy_rejected", "reference_chosen", "reference_rejected")


def _smoothed(z: Tensor, label_smoothing: float | Tensor) -> Tensor:
    r""":math:`-(1-\varepsilon)\log\sigma(z) - \varepsilon\log\sigma(-z) = -\log\sigma(z) + \varepsilon z`.

    (:math:`\log\sigma(-z) = \log\sigma(z) - z`): one ``logsigmoid``, finite for any
    finite :math:`z`; the term is left out for a Python 0 (no ``0 · inf``). "robust" is
    this with :math:`-\varepsilon / (1 - 2\varepsilon)` in place of :math:`\varepsilon`.
    """
    loss = -F.logsigmoid(z)
    if isinstance(label_smoothing, Tensor) or label_smoothing != 0:
        loss = loss + label_smoothing * z
    return loss


@register_loss(
    "dpo", [Feature.TEXT], kind=_KIND,
    validate=validator("dpo", log_probs=_DPO_INPUTS, inputs=_DPO_INPUTS),
)
def dpo(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    reference_chosen: Tensor | None = None,
    reference_rejected: Tensor | None = None,
    *,
    beta: Beta = 0.1,
    label_smoothing: LabelSmoothing = 0.0,
    loss_type: LossType = "sigmoid",
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Direct Preference Optimization, and its IPO, hinge (SLiC) and robust variants.

    From the log-probabilities of the chosen and rejected answers under the policy
    :math:`\pi` and a frozen reference :math:`\pi_{\text{ref}}` (no reference:
    reference-free DPO, :math:`\log\pi_{\text{ref}} = 0`), the margin of the log ratios
    and the implicit reward difference :math:`z`:

    .. math::

        h_i = \bigl(\log\pi(y^w_i) - \log\pi(y^l_i)\bigr)
              - \bigl(\log\pi_{\text{ref}}(y^w_i) - \log\pi_{\text{ref}}(y^l_i)\bigr),
        \qquad z_i = \beta h_i

        \ell_i = \begin{cases}
            -(1-\varepsilon)\log\sigma(z_i) - \varepsilon\log\sigma(-z_i) & \text{sigmoid} \\
            \bigl(-(1-\varepsilon)\log\sigma(z_i) + \varepsilon\log\sigma(-z_i)\bigr) / (1 - 2\varepsilon)
                & \text{robust} \\
            \max(0,\ 1 - z_i) & \text{hinge} \\
            \bigl(h_i - \tfrac{1}{2\beta}\bigr)^2 & \text{ipo}
        \end{cases}

    with :math:`\varepsilon` = ``label_smoothing`` (0: DPO itself; > 0 with "sigmoid":
    conservative DPO; "robust": the unbiased loss under label flips of rate
    :math:`\varepsilon`). They are computed as :math:`-\log\sigma(z) + \varepsilon z`
    and :math:`-\log\sigma(z) - \frac{\varepsilon}{1-2\varepsilon} z` (the same numbers,
    one ``logsigmoid``, no cancellation as :math:`\varepsilon \to 0.5`). "hinge" and
    "ipo" do not use ``label_smoothing`` (as TRL). IPO's :math:`h` is the paper's (not
    scaled by :math:`\beta`; TRL's ``DPOTrainer`` takes it from length-averaged
    log-probabilities: pass ``sequence_log_probs(..., average=True)`` for that).

    **Differences from Ludwig** (``ludwig.modules.dpo_loss.dpo_loss``, its DPO trainer's
    loss): Ludwig takes logits and labels and sums the log-probabilities itself
    (``sequence_log_probs`` here), and returns the mean with the mean rewards; its IPO
    scales the margin, :math:`(\beta h - \frac{1}{2\beta})^2`, which is
    :math:`\beta^2` times lossfn's IPO at :math:`\beta^2`; it takes a missing reference
    on one side as 0 (lossfn wants both or neither); its ``dpo_label_smoothing`` allows
    0.5 (here below 0.5, where "robust" is defined). "hinge" and "robust" are not in Ludwig.

    Args:
        policy_chosen: :math:`\log\pi(y^w)`, ``[B]`` (``[]`` for one pair), floating
            point: a sum of token log-probabilities (``sequence_log_probs``). The module
            refuses log-probabilities above ``1e-3`` (logits passed by mistake), here
            and in every other input.
        policy_rejected: :math:`\log\pi(y^l)`, the same shape.
        reference_chosen: :math:`\log\pi_{\text{ref}}(y^w)`, the same shape, or None.
        reference_rejected: :math:`\log\pi_{\text{ref}}(y^l)`; given with
            ``reference_chosen`` or, with it, left out (reference-free).
        beta: :math:`\beta > 0` (IPO's :math:`\tau`), a number or a 0-d tensor.
        label_smoothing: :math:`\varepsilon \in [0, 0.5)`, a number or a 0-d tensor.
        loss_type: ``"sigmoid"`` | ``"ipo"`` | ``"hinge"`` | ``"robust"``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_i` per pair, ``[B]``; ``"sum"``: :math:`\sum_i \ell_i`;
        ``"mean"``: their mean (0 for an empty batch). Same dtype as ``policy_chosen``.
        "robust" may be negative (it is unbiased, not a log-loss).

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> chosen, rejected = torch.tensor([-10.0, -12.0]), torch.tensor([-14.0, -11.0])
        >>> ref_chosen, ref_rejected = torch.tensor([-11.0, -12.0]), torch.tensor([-13.0, -12.0])
        >>> LF.dpo(chosen, rejected, ref_chosen, ref_rejected, reduction="none")  # h = 2, -1
        tensor([0.5981, 0.7444])
        >>> LF.dpo(chosen, rejected, ref_chosen, ref_rejected, loss_type="ipo", reduction="none")  # (h - 5)^2
        tensor([ 9., 36.])
        >>> LF.dpo(chosen, rejected)  # reference-free: h = 4, -1
        tensor(0.6287)

    References:
        Rafailov et al., `Direct Preference Optimization: Your Language Model is Secretly
        a Reward Model <https://arxiv.org/abs/2305.18290>`_, 2023; Azar et al., `A General
        Theoretical Paradigm to Understand Learning from Human Preferences
        <https://arxiv.org/abs/2310.12036>`_ (IPO, eq. 17), 2023; Zhao et al., `SLiC-HF
        <https://arxiv.org/abs/2305.10425>`_ (hinge), 2023; Chowdhury et al., `Provably
        Robust DPO <https://arxiv.org/abs/2403.00409>`_, 2024. Checked against TRL's
        ``DPOTrainer.dpo_loss`` formulas written out in the test, Ludwig's ``dpo_loss``
        (sigmoid) and, end to end with ``sequence_log_probs``, a naive computation on a
        small causal model.
    """
    name = "dpo"
    if (reference_chosen is None) != (reference_rejected is None):
        given, missing = (
            ("reference_chosen", "reference_rejected") if reference_rejected is None
            else ("reference_rejected", "reference_chosen")
        )
        raise fail(name, missing, f"given with {given} (both, or neither for reference-free DPO)", "None")
    pc, pr, rc, rr = per_sequence(name, [
        ("policy_chosen", policy_chosen), ("policy_rejected", policy_rejected),
        ("reference_chosen", reference_chosen), ("reference_rejected", reference_rejected),
    ])
    h = pc - pr if rc is None else (pc - pr) - (rc - rr)
    b, eps = scalar(beta, h), scalar(label_smoothing, h)
    if loss_type == "sigmoid":
        per = _smoothed(b * h, eps)
    elif loss_type == "robust":
        per = _smoothed(b * h, -eps / (1 - 2 * eps))  # -log σ(z) - ε z / (1 - 2ε)
    elif loss_type == "hinge":
        per = torch.relu(1 - b * h)
    elif loss_type == "ipo":
        per = (h - 1 / (2 * b)).square()
    else:  # the registry's check says it first for a Python call; this is for the rest
        raise fail(name, "loss_type", f"one of {', '.join(map(repr, LOSS_TYPES))}", repr(loss_type))
    return reduce_loss(per, reduction, name=name).to(policy_chosen.dtype)


@register_loss(
    "simpo", [Feature.TEXT], kind=_KIND,
    validate=validator("simpo", log_probs=("policy_chosen", "policy_rejected"),
                       inputs=("policy_chosen", "policy_rejected")),
)
def simpo(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    *,
    beta: Annotated[float, Meta(gt=0.0, description="scale of the length-averaged log-probability reward")] = 2.0,
    gamma: Annotated[float, Meta(ge=0.0, description="target reward margin")] = 0.5,
    label_smoothing: LabelSmoothing = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""SimPO: a reference-free preference loss on length-averaged log-probabilities, with a target margin.

    The reward of an answer is :math:`\beta` times its length-averaged log-probability
    :math:`\bar s = \frac{1}{|y|}\log\pi(y)`; the chosen one must beat the rejected one
    by the margin :math:`\gamma`:

    .. math::

        z_i = \beta\,(\bar s^w_i - \bar s^l_i) - \gamma, \qquad
        \ell_i = -(1-\varepsilon)\log\sigma(z_i) - \varepsilon\log\sigma(-z_i)

    computed as :math:`-\log\sigma(z_i) + \varepsilon z_i` (:math:`\varepsilon` =
    ``label_smoothing``, 0 in the paper). TRL's ``CPOTrainer`` (``loss_type="simpo"``)
    writes :math:`\beta\,(\bar s^w - \bar s^l - \gamma/\beta)`: the same number.

    Args:
        policy_chosen: :math:`\bar s^w`, ``[B]`` (``[]`` for one pair): a length-averaged
            log-probability (``sequence_log_probs(..., average=True)``); the module
            refuses values above ``1e-3``, here and in ``policy_rejected``.
        policy_rejected: :math:`\bar s^l`, the same shape.
        beta: :math:`\beta > 0` (the paper's 2.0), a number or a 0-d tensor.
        gamma: :math:`\gamma \ge 0`, a number or a 0-d tensor.
        label_smoothing: :math:`\varepsilon \in [0, 0.5)`.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_i` per pair, ``[B]``; ``"sum"``; ``"mean"`` (0 for an empty
        batch). Same dtype as ``policy_chosen``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> chosen, rejected = torch.tensor([-0.8, -1.5]), torch.tensor([-1.2, -1.0])
        >>> LF.simpo(chosen, rejected, reduction="none")  # z = 0.3, -1.5
        tensor([0.5544, 1.7014])

    References:
        Meng, Xia and Chen, `SimPO: Simple Preference Optimization with a Reference-Free
        Reward <https://arxiv.org/abs/2405.14734>`_, 2024 (eq. 6). Checked against the
        paper's formula and TRL's ``CPOTrainer.cpo_loss`` written out in the test.
    """
    name = "simpo"
    pc, pr = per_sequence(name, [("policy_chosen", policy_chosen), ("policy_rejected", policy_rejected)])
    margin = pc - pr
    z = scalar(beta, margin) * margin - scalar(gamma, margin)
    per = _smoothed(z, scalar(label_smoothing, margin))
    return reduce_loss(per, reduction, name=name).to(policy_chosen.dtype)


@register_loss(
    "orpo", [Feature.TEXT], kind=_KIND,
    validate=validator("orpo", log_probs=("policy_chosen", "policy_rejected"), nonnegative=("chosen_nll",),
                       inputs=("policy_chosen", "policy_rejected", "chosen_nll")),
)
def orpo(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    chosen_nll: Tensor | None = None,
    *,
    beta: Annotated[float, Meta(ge=0.0, description="weight of the odds-ratio term (the paper's lambda)")] = 0.1,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""ORPO: the odds-ratio preference term, plus the chosen answer's NLL when given.

    With :math:`p = \exp(\bar s)` from the length-averaged log-probability
    :math:`\bar s` of an answer, its log odds are
    :math:`\log\frac{p}{1-p} = \bar s - \log(1 - e^{\bar s})`, and

    .. math::

        r_i = \bigl(\bar s^w_i - \log(1 - e^{\bar s^w_i})\bigr)
              - \bigl(\bar s^l_i - \log(1 - e^{\bar s^l_i})\bigr), \qquad
        \ell_i = \mathrm{nll}_i - \beta \log\sigma(r_i)

    where :math:`\mathrm{nll}_i` is ``chosen_nll`` (the SFT term, 0 when it is not
    given). :math:`\log(1 - e^x)` is computed stably on both sides of :math:`-\ln 2`
    (``log(-expm1(x))`` above, ``log1p(-exp(x))`` below), so log-probabilities near 0
    give their true, finite log odds. At exactly 0 (certainty; also a float16 value
    that rounded to 0) the odds are infinite: a log-probability above minus the
    smallest normal number of the compute dtype (``-1.2e-38`` in float32) is read as
    that number, so the log odds are at most about 87.3 (708 in float64), finite, and
    the gradient through :math:`\log(1 - e^x)` there is 0.

    **Differences from Ludwig** (``ludwig.modules.preference_losses.orpo_loss``): Ludwig
    feeds summed, not length-averaged, log-probabilities, clamps :math:`e^{\bar s}` at
    :math:`1 - 10^{-7}` (log odds at most 16.1) and adds the batch's token-mean
    cross-entropy of the chosen answers as the SFT term; lossfn takes the SFT term as
    ``chosen_nll`` (per pair: a batch value repeated gives Ludwig's mean).

    Args:
        policy_chosen: :math:`\bar s^w`, ``[B]`` (``[]`` for one pair): a length-averaged
            log-probability (``sequence_log_probs(..., average=True)``), :math:`\le 0`:
            the module refuses values above ``1e-3`` here and in ``policy_rejected``, and
            a ``chosen_nll`` below ``-1e-3``.
        policy_rejected: :math:`\bar s^l`, the same shape.
        chosen_nll: optional, the same shape: the SFT loss of the chosen answer, e.g.
            ``-sequence_log_probs(..., average=True)`` of the chosen answer, which is
            ``-policy_chosen`` itself when the SFT term covers the same tokens.
        beta: :math:`\beta \ge 0` (the paper's :math:`\lambda`), a number or a 0-d tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_i` per pair, ``[B]``; ``"sum"``; ``"mean"`` (0 for an empty
        batch). Same dtype as ``policy_chosen``. TRL's ``ORPOTrainer`` adds the token
        mean of the batch's NLL to the mean odds-ratio term; with per-pair NLLs that
        is the same number when every chosen answer has the same length.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> chosen, rejected = torch.tensor([-0.5, -2.0]), torch.tensor([-1.0, -1.5])
        >>> LF.orpo(chosen, rejected, reduction="none")
        tensor([0.0320, 0.1042])
        >>> LF.orpo(chosen, rejected, -chosen, reduction="none")  # with the SFT term
        tensor([0.5320, 2.1042])

    References:
        Hong, Lee and Thorne, `ORPO: Monolithic Preference Optimization without Reference
        Model <https://arxiv.org/abs/2403.07691>`_, 2024 (eqs. 4-7). Checked against the
        paper's formula in float64 and TRL's ``ORPOTrainer.odds_ratio_loss`` written out
        in the test.
    """
    name = "orpo"
    pc, pr, nll = per_sequence(name, [
        ("policy_chosen", policy_chosen), ("policy_rejected", policy_rejected), ("chosen_nll", chosen_nll),
    ])
    log_odds = (pc - log1mexp(pc)) - (pr - log1mexp(pr))
    per = -scalar(beta, log_odds) * F.logsigmoid(log_odds)
    if nll is not None:
        per = per + nll
    return reduce_loss(per, reduction, name=name).to(policy_chosen.dtype)


@register_loss(
    "kto", [Feature.TEXT], kind=_KIND,
    validate=validator("kto", log_probs=("policy", "reference"), binary="labels",
                       inputs=("policy", "reference", "labels", "kl")),
)
def kto(
    policy: Tensor,
    reference: Tensor,
    labels: Tensor,
    kl: Tensor | None = None,
    *,
    beta: Beta = 0.1,
    desirable_weight: Annotated[float, Meta(ge=0.0, description="weight of the desirable examples' losses")] = 1.0,
    undesirable_weight: Annotated[float, Meta(ge=0.0, description="weight of the undesirable examples' losses")] = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""KTO: Kahneman-Tversky Optimization on unpaired desirable and undesirable answers.

    Each example is one answer, labelled desirable (1) or undesirable (0), with its
    implied reward :math:`r_i = \log\pi(y_i) - \log\pi_{\text{ref}}(y_i)`. The reference
    point :math:`z_0 = \max(0, \mathrm{KL})` is the batch's KL estimate between policy
    and reference (TRL: the mean log ratio of mismatched prompt/answer pairs),
    detached here (no gradient flows through it, as in the paper):

    .. math::

        \ell_i = \begin{cases}
            \lambda_D\,\bigl(1 - \sigma(\beta(r_i - z_0))\bigr) & y_i = 1 \\
            \lambda_U\,\bigl(1 - \sigma(\beta(z_0 - r_i))\bigr) & y_i = 0
        \end{cases}

    (computed as :math:`\sigma(\beta(z_0 - r_i))` and :math:`\sigma(\beta(r_i - z_0))`,
    without the cancellation of :math:`1 - \sigma`); without ``kl``, :math:`z_0 = 0`.
    The mean is over all examples (TRL's mean of the concatenated weighted losses):
    the weights scale the losses, not the denominator.

    **Differences from Ludwig** (``ludwig.modules.preference_losses.kto_loss``): Ludwig's
    is paired (a chosen and a rejected answer per example) and estimates the KL itself
    as :math:`\frac12(\overline{|r^w|} + \overline{|r^l|})`, not detached, with no
    weights, taking :math:`\frac12` (chosen mean + rejected mean); the pairs
    concatenated with their labels and that estimate as ``kl`` give Ludwig's value (the
    gradient differs: lossfn's reference point is detached, as the paper's).

    Args:
        policy: :math:`\log\pi(y)`, ``[B]`` (``[]`` for one answer): a sum of token
            log-probabilities (``sequence_log_probs``); the module refuses values above
            ``1e-3``, here and in ``reference``.
        reference: :math:`\log\pi_{\text{ref}}(y)`, the same shape.
        labels: the same shape, 1 (desirable) or 0 (undesirable): bool, integer or float.
            The pure function counts every label other than 1 as undesirable; the
            module refuses labels outside {0, 1}.
        kl: optional, the KL estimate: a 0-d tensor (the batch's number) or one per
            example (the policy's shape); detached and clamped at 0 here.
        beta: :math:`\beta > 0`, a number or a 0-d tensor.
        desirable_weight: :math:`\lambda_D \ge 0`.
        undesirable_weight: :math:`\lambda_U \ge 0`.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_i` per example, ``[B]``; ``"sum"``; ``"mean"``:
        :math:`\frac1B\sum_i \ell_i` (0 for an empty batch). Same dtype as ``policy``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> policy, reference = torch.tensor([-10.0, -12.0]), torch.tensor([-12.0, -11.0])
        >>> labels = torch.tensor([1, 0])
        >>> LF.kto(policy, reference, labels, reduction="none")  # r = 2, -1
        tensor([0.4502, 0.4750])
        >>> LF.kto(policy, reference, labels, torch.tensor(0.5), reduction="none")
        tensor([0.4626, 0.4626])

    References:
        Ethayarajh et al., `KTO: Model Alignment as Prospect Theoretic Optimization
        <https://arxiv.org/abs/2402.01306>`_, 2024 (eq. 7). Checked against TRL's
        ``KTOTrainer`` loss written out in the test.
    """
    name = "kto"
    pi, ref, labels, estimate = unpaired_inputs(name, policy, reference, labels, kl)
    reward = pi - ref
    z0 = reward.new_zeros(()) if estimate is None else estimate.clamp_min(0)
    u = scalar(beta, reward) * (reward - z0)
    per = torch.where(
        labels == 1,
        scalar(desirable_weight, reward) * torch.sigmoid(-u),
        scalar(undesirable_weight, reward) * torch.sigmoid(u),
    )
    return reduce_loss(per, reduction, name=name).to(policy.dtype)
