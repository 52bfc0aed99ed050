"""Cases for the preference losses: DPO (IPO, hinge, robust), SimPO, ORPO and KTO.

Each reference is TRL's formula written out here from its trainers' source
(``DPOTrainer.dpo_loss`` as of mid-2025, ``CPOTrainer.cpo_loss`` with
``loss_type="simpo"``, ``ORPOTrainer.odds_ratio_loss`` plus the SFT term, the
``KTOTrainer`` loss), in TRL's own form (two log-sigmoids, ``1 - sigmoid``), not
lossfn's rearranged one; ORPO's odds are the paper's ``p / (1 - p)`` taken in float64.
The inputs are per-sequence log-probabilities, multiples of 1/16 (sums, for DPO and
KTO) or 1/64 (length averages, for SimPO and ORPO) below 16 in magnitude, which
float16 and bfloat16 hold exactly, so the half-precision checks compare like with like.

Below the references, for ``tests/test_preference.py``: the papers' formulas with
``exp``/``log`` (no log-sigmoid), ``sequence_log_probs`` as a per-token loop over
``softmax`` and a one-hot sum, and a small causal model for the end-to-end DPO check.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Case, reduce_like_torch as _reduce


def _log_probs(batch, dtype, generator, count, step):
    """``count`` tensors ``[batch]`` of log-probabilities ``-k * step``, k in [1, 255]."""
    return tuple((-step * torch.randint(1, 256, (batch,), generator=generator)).to(dtype) for _ in range(count))


def sums(batch, dtype, generator):
    """Policy and reference log-probabilities of chosen and rejected answers (sums over tokens)."""
    return _log_probs(batch, dtype, generator, 4, 1 / 16)


def averages(batch, dtype, generator):
    """Length-averaged log-probabilities of the chosen and rejected answers."""
    return _log_probs(batch, dtype, generator, 2, 1 / 64)


def averages_and_nll(batch, dtype, generator):
    chosen, rejected = averages(batch, dtype, generator)
    nll = (torch.randint(0, 256, (batch,), generator=generator) / 64).to(dtype)
    return chosen, rejected, nll


def unpaired(batch, dtype, generator):
    """Policy and reference log-probabilities of single answers and labels, desirable and undesirable alike."""
    policy, reference = _log_probs(batch, dtype, generator, 2, 1 / 16)
    labels = (torch.arange(batch) % 2)[torch.randperm(batch, generator=generator)]
    return policy, reference, labels


def dpo_reference(chosen, rejected, ref_chosen=None, ref_rejected=None, *, reduction="mean", beta=0.1,
                  label_smoothing=0.0, loss_type="sigmoid"):
    """TRL's ``DPOTrainer.dpo_loss``: ``logits = pi_logratios - ref_logratios`` (0 reference-free)."""
    logits = chosen - rejected
    if ref_chosen is not None:
        logits = logits - (ref_chosen - ref_rejected)
    ls = label_smoothing
    if loss_type == "sigmoid":
        per = -F.logsigmoid(beta * logits) * (1 - ls) - F.logsigmoid(-beta * logits) * ls
    elif loss_type == "robust":
        per = (-F.logsigmoid(beta * logits) * (1 - ls) + F.logsigmoid(-beta * logits) * ls) / (1 - 2 * ls)
    elif loss_type == "hinge":
        per = torch.relu(1 - beta * logits)
    else:  # ipo: eq. 17 of Azar et al., beta the paper's tau
        per = (logits - 1 / (2 * beta)) ** 2
    return _reduce(per, reduction)


def simpo_reference(chosen, rejected, *, reduction="mean", beta=2.0, gamma=0.5, label_smoothing=0.0):
    """TRL's ``CPOTrainer.cpo_loss`` with ``loss_type="simpo"``."""
    logits = (chosen - rejected) - gamma / beta
    ls = label_smoothing
    per = -F.logsigmoid(beta * logits) * (1 - ls) - F.logsigmoid(-beta * logits) * ls
    return _reduce(per, reduction)


def orpo_reference(chosen, rejected, chosen_nll=None, *, reduction="mean", beta=0.1):
    """Hong et al. eqs. 4-7 in float64: ``nll - beta * log sigmoid(log(odds_w / odds_l))``, ``odds = p / (1 - p)``."""
    p_w, p_l = chosen.double().exp(), rejected.double().exp()
    log_odds_ratio = torch.log((p_w / (1 - p_w)) / (p_l / (1 - p_l)))
    per = -beta * F.logsigmoid(log_odds_ratio)
    if chosen_nll is not None:
        per = per + chosen_nll.double()
    return _reduce(per.to(chosen.dtype), reduction)


def kto_reference(policy, reference, labels, kl=None, *, reduction="mean", beta=0.1, desirable_weight=1.0,
                  undesirable_weight=1.0):
    """TRL's ``KTOTrainer``: chosen and rejected losses computed apart, weighted, concatenated, averaged."""
    z0 = torch.zeros(()) if kl is None else kl.detach().mean().clamp(min=0)
    logratios = policy - reference
    desirable = labels.bool()
    chosen_losses = 1 - F.sigmoid(beta * (logratios[desirable] - z0))
    rejected_losses = 1 - F.sigmoid(beta * (z0 - logratios[~desirable]))
    per = torch.empty_like(policy)
    per[desirable] = desirable_weight * chosen_losses
    per[~desirable] = undesirable_weight * rejected_losses
    return _reduce(per, reduction)


# -- the papers' formulas and naive computations, for tests/test_preference.py ---------------------


def sigmoid(x):
    return 1 / (1 + torch.exp(-x))


def paper_dpo(pc, pr, rc, rr, beta, eps, loss_type):
    h = (pc - pr) - (rc - rr)
    z = beta * h
    p = sigmoid(z)  # the Bradley-Terry probability that the chosen answer wins
    if loss_type == "sigmoid":  # DPO; with eps: cross-entropy against the soft label 1 - eps
        return -(1 - eps) * torch.log(p) - eps * torch.log(1 - p)
    if loss_type == "robust":  # Chowdhury et al. eq. 8: the unbiased loss under flips of rate eps
        return ((1 - eps) * -torch.log(p) - eps * -torch.log(1 - p)) / (1 - 2 * eps)
    if loss_type == "hinge":  # SLiC: margin 1 on the scaled log-ratio difference
        return torch.clamp(1 - z, min=0)
    return (h - 1 / (2 * beta)) ** 2  # IPO eq. 17, tau = beta


def paper_kto(policy, reference, labels, z0, beta, wd, wu):
    r = policy - reference
    value = torch.where(labels == 1, sigmoid(beta * (r - z0)), sigmoid(beta * (z0 - r)))  # v(x, y)
    weights = torch.where(labels == 1, torch.tensor(wd, dtype=r.dtype), torch.tensor(wu, dtype=r.dtype))
    return weights * (1 - value)


def naive_sequence_log_probs(logits, labels, ignore_index=-100, shift=True, average=False):
    """A loop over tokens: log of the softmax's label entry, via a one-hot sum."""
    out = []
    for b in range(logits.shape[0]):
        total, count = logits.new_zeros(()), 0
        for t in range(1 if shift else 0, logits.shape[1]):
            label = int(labels[b, t])
            if label == ignore_index:
                continue
            row = logits[b, t - 1 if shift else t]
            probabilities = torch.exp(row) / torch.exp(row).sum()
            one_hot = torch.nn.functional.one_hot(torch.tensor(label), row.shape[-1]).to(row.dtype)
            total = total + torch.log((probabilities * one_hot).sum())
            count += 1
        out.append(total / count if average and count else total)
    return torch.stack(out)


class TinyCausalModel(torch.nn.Module):
    """Embedding, a causal running mean of the embeddings, a linear head: position t sees tokens <= t."""

    def __init__(self, vocab, width, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.embedding = torch.nn.Embedding(vocab, width, dtype=torch.float64)
        self.head = torch.nn.Linear(width, vocab, dtype=torch.float64)

    def forward(self, tokens):
        hidden = self.embedding(tokens)
        counts = torch.arange(1, tokens.shape[1] + 1, dtype=hidden.dtype)[:, None]
        return self.head(hidden.cumsum(1) / counts)


def naive_dpo(policy, reference, chosen, rejected, chosen_labels, rejected_labels, beta):
    """Token loops and the DPO formula with exp/log: -log sigmoid(beta * (log ratio margin))."""
    with torch.no_grad():
        ref_c = naive_sequence_log_probs(reference(chosen), chosen_labels)
        ref_r = naive_sequence_log_probs(reference(rejected), rejected_labels)
    pol_c = naive_sequence_log_probs(policy(chosen), chosen_labels)
    pol_r = naive_sequence_log_probs(policy(rejected), rejected_labels)
    z = beta * ((pol_c - ref_c) - (pol_r - ref_r))
    return (-torch.log(1 / (1 + torch.exp(-z)))).mean()


CASES = [
    Case(
        "dpo",
        sums,
        params=(
            {},
            {"loss_type": "ipo"},
            {"loss_type": "hinge"},
            {"loss_type": "robust", "label_smoothing": 0.2},
            {"label_smoothing": 0.1, "beta": 0.5},
        ),
        reference=dpo_reference,
        kind="log_probs",
        labels_bounded=False,
    ),
    Case(
        "simpo",
        averages,
        params=({}, {"gamma": 0.0, "beta": 1.0}, {"label_smoothing": 0.2, "gamma": 1.0}),
        reference=simpo_reference,
        kind="log_probs",
        labels_bounded=False,
    ),
    Case(
        "orpo",
        averages_and_nll,
        params=({}, {"beta": 0.0}, {"beta": 0.5}),
        reference=orpo_reference,
        kind="log_probs",
        labels_bounded=False,
    ),
    Case(
        "kto",
        unpaired,
        params=({}, {"beta": 0.5, "desirable_weight": 1.33}, {"undesirable_weight": 0.0}),
        reference=kto_reference,
        kind="log_probs",
    ),
]
