"""NT-Xent: against pytorch-metric-learning (labels) and Ludwig's formula (pairs (2i, 2i + 1)).

The generic suite runs ``nt_xent`` with integer labels (its case); the label-free
pairing, Ludwig's setting, is checked here, under vmap, grad and torch.compile too.
Ludwig's ``NTXentLoss`` is written out: ``F.cross_entropy`` of the cosine
similarities over the temperature, with a ``-inf`` diagonal, against ``arange(B) ^ 1``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import NTXentLoss
from torch.func import grad, jacfwd, jacrev, vmap

import lossfn
import lossfn.functional as LF

from cases.contrastive import pair_loop

REDUCTIONS = ("none", "sum", "mean")


def ludwig_nt_xent(embeddings, temperature=0.07, reduction="mean"):
    """Ludwig 0.17.8's NTXentLoss.forward for an even batch, written out."""
    z = F.normalize(embeddings, dim=1)
    similarity = z @ z.T / temperature
    similarity = similarity.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    return F.cross_entropy(similarity, torch.arange(len(z)) ^ 1, reduction=reduction)


def close(actual, expected, rtol=1e-10, atol=1e-12):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def draw(batch, dimension=6, seed=0, groups=None):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, dimension, generator=generator, dtype=torch.float64)
    if groups is None:
        return x
    return x, torch.randint(0, groups, (batch,), generator=generator)


# -- values -----------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.07, 0.5, 2.0])
def test_labels_give_pytorch_metric_learnings_number(temperature):
    worst = 0.0
    for seed in range(20):
        x, y = draw(10, seed=seed, groups=1 + seed % 5)  # 1 group: no negatives; 5: rows without a positive
        expected = NTXentLoss(temperature=temperature)(x, y)
        actual = LF.nt_xent(x, y, temperature=temperature)
        close(actual, expected)
        worst = max(worst, (actual - expected).abs().item())
    assert worst < 1e-12


def test_none_is_each_rows_sum_over_its_positive_pairs_and_mean_weighs_by_their_count():
    x, y = draw(9, seed=3, groups=3)
    rows = pair_loop(x, y, 0.3)
    none = LF.nt_xent(x, y, temperature=0.3, reduction="none")
    close(none, rows)
    close(LF.nt_xent(x, y, temperature=0.3, reduction="sum"), rows.sum())
    counts = (y[:, None] == y[None, :]).sum(1) - 1
    close(LF.nt_xent(x, y, temperature=0.3), rows.sum() / counts.sum())


def test_rows_without_a_positive_give_0_and_a_batch_without_pairs_a_mean_of_0():
    x = draw(4)
    labels = torch.tensor([0, 0, 1, 2])  # rows 2 and 3 have no positive
    none = LF.nt_xent(x, labels, reduction="none")
    assert none[2].item() == none[3].item() == 0.0 and (none[:2] > 0).all()
    leaf = x.clone().requires_grad_()
    distinct = LF.nt_xent(leaf, torch.arange(4))
    (gradient,) = torch.autograd.grad(distinct, leaf)
    assert distinct.item() == 0.0 and NTXentLoss()(x, torch.arange(4)).item() == 0.0
    assert (gradient == 0).all()


def test_without_labels_the_pairs_2i_2i_plus_1_give_ludwigs_number_for_every_reduction():
    for seed, temperature in [(0, 0.07), (1, 0.5), (2, 1.0)]:
        x = draw(8, seed=seed)
        for reduction in REDUCTIONS:
            expected = ludwig_nt_xent(x, temperature, reduction)
            close(LF.nt_xent(x, temperature=temperature, reduction=reduction), expected)
            # the same pairs as labels: pytorch-metric-learning's convention equals Ludwig's number
            close(LF.nt_xent(x, torch.arange(8) // 2, temperature=temperature, reduction=reduction), expected)
        close(NTXentLoss(temperature=temperature)(x, torch.arange(8) // 2), ludwig_nt_xent(x, temperature))


def test_a_ludwig_style_call_with_its_vector_target_ignores_the_target():
    x, target = draw(6, seed=4), draw(6, seed=5)
    close(LF.nt_xent(x, target), ludwig_nt_xent(x))
    close(lossfn.nn.NtXent(temperature=0.2)(x, target), ludwig_nt_xent(x, 0.2))
    close(lossfn.build({"type": "nt_xent"})(x), ludwig_nt_xent(x))


def test_scale_invariant_and_finite_for_any_magnitude():
    x, y = draw(8, seed=6, groups=3)
    expected = LF.nt_xent(x, y)
    for scale in (1e-30, 1e-8, 1e4, 1e30):
        close(LF.nt_xent(x * scale, y), expected, rtol=1e-9, atol=1e-12)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        leaf = (x.sign() * (1e4 if dtype is torch.float32 else 1.0)).to(dtype).requires_grad_()
        for labels in (None, y):
            loss = LF.nt_xent(leaf, labels, temperature=0.01)
            (gradient,) = torch.autograd.grad(loss, leaf)
            assert loss.dtype == dtype and torch.isfinite(loss) and torch.isfinite(gradient).all()


def test_a_zero_row_is_finite_and_identical_rows_are_perfect_positives():
    x = draw(4, seed=7)
    x[1] = 0.0
    leaf = x.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(LF.nt_xent(leaf), leaf)
    assert torch.isfinite(gradient).all()
    twins = torch.eye(4, dtype=torch.float64).repeat_interleave(2, dim=0)  # rows 2i, 2i + 1 equal and orthogonal
    # s_ip = 1 / 0.1 and six negatives at 0: log(e^10 + 6) - 10 = log(1 + 6 e^-10)
    close(LF.nt_xent(twins, temperature=0.1, reduction="none"),
          torch.full((8,), math.log1p(6 * math.exp(-10)), dtype=torch.float64))


# -- transforms without labels --------------------------------------------------------


def test_label_free_pairing_under_grad_vmap_jacobians():
    problems = torch.stack([draw(6, seed=s) for s in range(3)])
    for reduction in REDUCTIONS:
        fn = lambda x: LF.nt_xent(x, temperature=0.3, reduction=reduction)  # noqa: E731
        close(vmap(fn)(problems), torch.stack([fn(p) for p in problems]))
    x = problems[0]
    leaf = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(ludwig_nt_xent(leaf, 0.3), leaf)
    close(grad(lambda e: LF.nt_xent(e, temperature=0.3))(x), expected)
    per_row = lambda e: LF.nt_xent(e, temperature=0.3, reduction="none")  # noqa: E731
    close(jacrev(per_row)(x), jacfwd(per_row)(x))
    leaves = [p.clone().requires_grad_() for p in problems]
    expected = torch.stack([torch.autograd.grad(ludwig_nt_xent(leaf, 0.3), leaf)[0] for leaf in leaves])
    close(vmap(grad(lambda e: LF.nt_xent(e, temperature=0.3)))(problems), expected)


def test_tensor_temperature_under_vmap_and_grad_without_labels():
    x = draw(6, seed=8)
    temperatures = torch.tensor([0.05, 0.2, 1.0], dtype=torch.float64)
    fn = lambda t: LF.nt_xent(x, temperature=t)  # noqa: E731
    close(vmap(fn)(temperatures), torch.stack([ludwig_nt_xent(x, float(t)) for t in temperatures]))
    t = temperatures[1].clone().requires_grad_()
    (expected,) = torch.autograd.grad(ludwig_nt_xent(x, t), t)
    close(grad(fn)(temperatures[1]), expected)


def test_torch_compile_fullgraph_without_and_with_labels():
    x, y = draw(6, seed=9, groups=3)
    x = x.float()
    torch._dynamo.reset()
    both = torch.compile(
        lambda e, labels: (LF.nt_xent(e, reduction="none"), LF.nt_xent(e, labels, temperature=0.5)), fullgraph=True
    )
    free, labelled = both(x, y)
    torch.testing.assert_close(free, ludwig_nt_xent(x, reduction="none"), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(labelled, NTXentLoss(temperature=0.5)(x, y), rtol=1e-5, atol=1e-5)


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "embeddings,labels,match",
    [
        (torch.randn(5, 3), None, r"^nt_xent: embeddings must be an even batch \[2N, D\].*got shape \[5, 3\]$"),
        (torch.randn(4), None, r"^nt_xent: embeddings must be of shape \[B, D\]"),
        (torch.randn(4, 3), torch.zeros(4), r"^nt_xent: labels must be integer labels of shape \[4\], or None"),
        (torch.randn(4, 3), torch.zeros(4, 1, dtype=torch.long), r"^nt_xent: labels must be integer labels of shape"),
        (torch.randn(4, 3), torch.zeros(4, dtype=torch.uint8), r"^nt_xent: labels must be integer labels of a signed"),
        (torch.randn(4, 3), [0, 0, 1, 1], r"^nt_xent: labels must be None or integer labels"),
    ],
)
def test_bad_inputs_are_named_errors(embeddings, labels, match):
    with pytest.raises(ValueError, match=match):
        LF.nt_xent(embeddings, labels)
    with pytest.raises(ValueError, match=match):
        lossfn.nn.NtXent()(embeddings, labels)


def test_an_odd_batch_with_labels_is_fine_and_the_mean_over_pairs():
    x, y = draw(7, seed=10, groups=2)
    close(LF.nt_xent(x, y), NTXentLoss()(x, y))
