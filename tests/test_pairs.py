"""Pair, triplet and supervised contrastive losses against torch, stored optax vectors and pml.

Torch runs here directly (values and gradients, several shapes, every hyperparameter
at a non-default value); optax's numbers come from ``tests/data/pairs_optax.json``
(``scripts/make_pairs_vectors.py``); pytorch-metric-learning's ``SupConLoss`` and a
loop written from Khosla et al.'s formula check ``supervised_contrastive``. The
generic suite (``tests/test_conformance.py``) runs every one of them too.
"""

from __future__ import annotations

import json
import math
import pathlib

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import SupConLoss
from torch.func import grad, vmap

import lossfn
import lossfn.functional as LF

from cases.pairs import supcon_loop

DATA = json.loads((pathlib.Path(__file__).parent / "data" / "pairs_optax.json").read_text())
REDUCTIONS = ("none", "mean", "sum")
f64 = torch.float64


def close(actual, expected, rtol=1e-10, atol=1e-12):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def tensor(values, dtype=f64):
    return torch.tensor(values, dtype=dtype)


def gradients(fn, inputs, positions):
    """The gradients of ``fn(*inputs)`` with respect to the inputs at ``positions`` (autograd)."""
    leaves = [x.clone().requires_grad_() if i in positions else x for i, x in enumerate(inputs)]
    return torch.autograd.grad(fn(*leaves), [leaves[i] for i in positions])


def normal(*shape, seed=0, dtype=f64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def signs(*shape, seed=0):
    return torch.randint(0, 2, shape, generator=torch.Generator().manual_seed(seed + 100)).to(f64) * 2 - 1


# -- optax vectors ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", DATA["cosine_distance"], ids=lambda c: c["label"])
def test_cosine_distance_gives_optaxs_values_and_gradients(case):
    x, y = tensor(case["logits"]), tensor(case["labels"])
    params = {} if case["epsilon"] is None else {"eps": case["epsilon"]}
    close(LF.cosine_distance(x, y, **params, reduction="none"), tensor(case["value"]))
    grad_x, grad_y = gradients(lambda a, b: LF.cosine_distance(a, b, **params, reduction="sum"), (x, y), (0, 1))
    close(grad_x, tensor(case["grad_logits"]))
    close(grad_y, tensor(case["grad_labels"]))


@pytest.mark.parametrize("case", DATA["triplet_margin"], ids=lambda c: c["label"])
def test_triplet_margin_gives_optaxs_values_and_gradients_where_the_conventions_agree(case):
    """eps = 0 and an even p: optax's (Σ (a - b)^p + eps)^(1/p) is torch's ||a - b + eps||_p."""
    inputs = tuple(tensor(case[k]) for k in ("anchor", "positive", "negative"))
    params = {"p": case["p"], "margin": case["margin"], "eps": 0.0}
    close(LF.triplet_margin(*inputs, **params, reduction="none"), tensor(case["value"]))
    expected = [tensor(case[f"grad_{k}"]) for k in ("anchor", "positive", "negative")]
    for actual, wanted in zip(gradients(lambda *v: LF.triplet_margin(*v, **params, reduction="sum"), inputs, (0, 1, 2)),
                              expected):
        close(actual, wanted)


# -- torch: values and gradients, every reduction --------------------------------------------------

TORCH = [  # (lossfn, torch, make inputs, floating positions, params)
    ("cosine_embedding", F.cosine_embedding_loss, lambda s: (normal(9, 5, seed=s), normal(9, 5, seed=s + 1), signs(9, seed=s)),
     (0, 1), [{}, {"margin": 0.5}, {"margin": -1.0}, {"margin": 1.0}]),
    ("cosine_embedding", F.cosine_embedding_loss, lambda s: (normal(3, seed=s), normal(3, seed=s + 1), signs(seed=s)),
     (0, 1), [{"margin": 0.2}]),
    ("hinge_embedding", F.hinge_embedding_loss, lambda s: (normal(7, 3, seed=s).abs(), signs(7, 3, seed=s)),
     (0,), [{}, {"margin": 0.4}, {"margin": 2.5}, {"margin": -1.0}]),
    ("hinge_embedding", F.hinge_embedding_loss, lambda s: (normal(2, 3, 4, seed=s), signs(2, 3, 4, seed=s)),
     (0,), [{"margin": 0.8}]),
    ("margin_ranking", F.margin_ranking_loss, lambda s: (normal(11, seed=s), normal(11, seed=s + 1), signs(11, seed=s)),
     (0, 1), [{}, {"margin": 0.7}, {"margin": -0.3}]),
    ("triplet_margin", F.triplet_margin_loss, lambda s: tuple(normal(8, 5, seed=s + k) for k in range(3)),
     (0, 1, 2), [{}, {"margin": 0.2}, {"p": 1.0}, {"p": 3.0}, {"p": 1.5, "eps": 0.0}, {"eps": 0.3},
                 {"swap": True}, {"p": 4.0, "swap": True, "margin": 2.0}]),
    ("triplet_margin", F.triplet_margin_loss, lambda s: tuple(normal(5, seed=s + k) for k in range(3)),
     (0, 1, 2), [{"swap": True}]),
]
TORCH_CELLS = [
    pytest.param(name, fn, make, positions, params, id=f"{name}-{tuple(make(0)[0].shape)}-{params}")
    for name, fn, make, positions, grid in TORCH for params in grid
]


@pytest.mark.parametrize("name,torch_fn,make,positions,params", TORCH_CELLS)
def test_torch_values_and_gradients(name, torch_fn, make, positions, params):
    ours = lossfn.get_loss(name).fn
    worst = 0.0
    for seed in range(4):
        inputs = make(seed)
        for reduction in REDUCTIONS:
            expected = torch_fn(*inputs, **params, reduction=reduction)
            actual = ours(*inputs, **params, reduction=reduction)
            close(actual, expected)
            worst = max(worst, (actual - expected).abs().max().item())
            weighted = lambda fn: lambda *v: (fn(*v, **params, reduction=reduction) * 1.7).sum()  # noqa: E731
            for mine, theirs in zip(gradients(weighted(ours), inputs, positions),
                                    gradients(weighted(torch_fn), inputs, positions)):
                close(mine, theirs)
    assert worst < 1e-13


@pytest.mark.parametrize("name,make", [
    ("cosine_embedding", lambda y: (normal(6, 4), normal(6, 4, seed=1), y)),
    ("hinge_embedding", lambda y: (normal(6, 4).abs(), y.expand(4, 6).T.contiguous())),
    ("margin_ranking", lambda y: (normal(6), normal(6, seed=1), y)),
])
def test_zero_one_and_bool_labels_give_the_plus_minus_one_number(name, make):
    """lossfn's 0/1 labels (0 for -1) and booleans give torch's ±1 number; the pure function reads labels > 0."""
    fn = lossfn.get_loss(name).fn
    pm = tensor([1, -1, -1, 1, 1, -1])
    expected = fn(*make(pm), reduction="none")
    for labels in ((pm > 0).to(f64), (pm > 0).long(), pm > 0, pm.to(torch.int8)):
        close(fn(*make(labels), reduction="none"), expected)
    module = lossfn.get_loss(name).module()
    close(module(*make((pm > 0).long())), expected.mean())
    close(module(*make(pm)), expected.mean())
    with pytest.raises(ValueError, match=rf"^{name}: labels must be .*\(or 0/1\)"):
        fn(*make(pm.to(torch.uint8)))  # uint8 cannot hold -1


@pytest.mark.parametrize("name,make", [
    ("cosine_embedding", lambda y: (normal(3, 4), normal(3, 4, seed=1), y)),
    ("hinge_embedding", lambda y: (normal(3).abs(), y)),
    ("margin_ranking", lambda y: (normal(3), normal(3, seed=1), y)),
])
@pytest.mark.parametrize("bad", [2.0, 0.5, -3.0, math.nan, math.inf])
def test_the_module_refuses_labels_other_than_plus_minus_one_or_zero(name, make, bad):
    labels = tensor([1.0, bad, -1.0])
    with pytest.raises(ValueError, match=rf"^{name}: labels must be ±1 .*; got a label {bad:g}$"):
        lossfn.get_loss(name).module()(*make(labels))
    lossfn.get_loss(name).module(validate_inputs=False)(*make(labels))  # the pure function reads no values


# -- numerics ---------------------------------------------------------------------------------


def test_cosine_distance_of_a_zero_vector_is_one_with_a_finite_gradient():
    """optax gives nan there (0 / 0) with its default epsilon 0."""
    x = torch.zeros(2, 3, dtype=f64, requires_grad=True)
    y = tensor([[1.0, 2.0, 2.0], [0.0, -1.0, 0.0]])
    loss = LF.cosine_distance(x, y, reduction="none")
    (gradient,) = torch.autograd.grad(loss.sum(), x)
    assert loss.tolist() == [1.0, 1.0] and torch.isfinite(gradient).all()
    close(gradient, -y / y.norm(dim=1, keepdim=True))  # the direction that lowers the distance fastest
    eps = LF.cosine_distance(x, y, eps=0.25, reduction="none")  # optax's floor: finite either way
    assert eps.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cosine_embedding_of_a_zero_vector_is_finite_in_every_dtype(dtype):
    """torch's own float16 cosine_embedding_loss gives nan here (its 1e-12 underflows)."""
    x = torch.zeros(2, 4, dtype=dtype, requires_grad=True)
    z = normal(2, 4, seed=3).to(dtype)
    loss = LF.cosine_embedding(x, z, tensor([1, -1]))
    (gradient,) = torch.autograd.grad(loss, x)
    assert loss.item() == 0.5 and torch.isfinite(gradient).all()
    if dtype is torch.float32:  # torch's number and gradient where torch is finite
        (expected,) = gradients(lambda a: F.cosine_embedding_loss(a, z, tensor([1.0, -1.0]).float()), (x.detach(),), (0,))
        close(gradient, expected, rtol=1e-5, atol=1e-3)


def test_triplet_margin_with_anchor_equal_to_positive_has_a_finite_gradient():
    anchor, negative = normal(4, 3), normal(4, 3, seed=1)
    for p in (1.0, 1.5, 2.0, 3.0):
        (gradient,) = gradients(lambda a: LF.triplet_margin(a, a.detach(), negative, p=p, eps=0.0, margin=5.0),
                                (anchor,), (0,))
        assert torch.isfinite(gradient).all()
        (expected,) = gradients(lambda a: F.triplet_margin_loss(a, a.detach(), negative, p=p, eps=0.0, margin=5.0),
                                (anchor,), (0,))
        close(gradient, expected)


@pytest.mark.parametrize("name,make", [
    ("cosine_distance", lambda s, d: (normal(5, 4, seed=1).to(d) * s, normal(5, 4, seed=2).to(d))),
    ("cosine_embedding", lambda s, d: (normal(5, 4, seed=1).to(d) * s, normal(5, 4, seed=2).to(d), signs(5).long())),
    ("triplet_margin", lambda s, d: (normal(5, 4, seed=1).to(d) * s, normal(5, 4, seed=2).to(d) * s,
                                     normal(5, 4, seed=3).to(d))),
    ("supervised_contrastive", lambda s, d: (normal(6, 4, seed=1).to(d) * s, torch.tensor([0, 0, 1, 1, 2, 0]))),
])
@pytest.mark.parametrize("scale", [1e-30, 1e4, 1e30])
def test_any_finite_magnitude_gives_the_float64_number_in_float32(name, make, scale):
    """Vectors are divided by their largest entry before any square: 1e30 in float32 does not overflow."""
    fn = lossfn.get_loss(name).fn
    expected = fn(*make(scale, f64), reduction="none")
    inputs = make(scale, torch.float32)
    leaf = inputs[0].clone().requires_grad_()
    actual = fn(leaf, *inputs[1:], reduction="none")
    (gradient,) = torch.autograd.grad(actual.sum(), leaf)
    assert torch.isfinite(actual).all() and torch.isfinite(gradient).all()
    close(actual.double(), expected, rtol=1e-5, atol=1e-5)


def test_tensor_hyperparameters_under_vmap_and_grad():
    a, p, n = normal(6, 4), normal(6, 4, seed=1), normal(6, 4, seed=2)
    degrees = tensor([1.0, 1.5, 2.0, 3.5])
    by_vmap = vmap(lambda q: LF.triplet_margin(a, p, n, p=q))(degrees)
    close(by_vmap, torch.stack([F.triplet_margin_loss(a, p, n, p=float(q)) for q in degrees]))
    assert torch.isfinite(vmap(grad(lambda q: LF.triplet_margin(a, p, n, p=q)))(degrees)).all()
    swaps = torch.tensor([False, True])
    close(vmap(lambda s: LF.triplet_margin(a, p, n, swap=s))(swaps),
          torch.stack([F.triplet_margin_loss(a, p, n, swap=bool(s)) for s in swaps]))
    x, z, y = normal(6, 4), normal(6, 4, seed=1), signs(6)
    margins = tensor([-0.5, 0.0, 0.5])
    close(vmap(lambda m: LF.cosine_embedding(x, z, y, margin=m))(margins),
          torch.stack([F.cosine_embedding_loss(x, z, y, margin=float(m)) for m in margins]))


def test_the_hyperparameter_bounds():
    x, z, y = normal(2, 3), normal(2, 3, seed=1), signs(2)
    with pytest.raises(ValueError, match=r"^cosine_embedding: margin must be a number >= -1.0 and <= 1.0; got 1.5"):
        LF.cosine_embedding(x, z, y, margin=1.5)
    with pytest.raises(ValueError, match=r"^triplet_margin: p must be a number >= 1.0 and <= 1e\+15; got 0.5"):
        LF.triplet_margin(x, z, x, p=0.5)
    with pytest.raises(ValueError, match=r"^triplet_margin: margin must be a number >= 0.0 and <= 1e\+15; got -0.1"):
        LF.triplet_margin(x, z, x, margin=-0.1)
    with pytest.raises(ValueError, match=r"^cosine_distance: eps must be a number >= 0.0 and <= 1e\+15; got -1.0"):
        LF.cosine_distance(x, z, eps=-1.0)


def test_shape_errors_name_the_argument():
    x = normal(4, 3)
    with pytest.raises(ValueError, match=r"^cosine_embedding: labels must be ±1 labels of shape \[4\]"):
        LF.cosine_embedding(x, x, signs(4, 3))
    with pytest.raises(ValueError, match=r"^cosine_embedding: logits must be of shape \[B, D\]"):
        LF.cosine_embedding(normal(2, 3, 4), normal(2, 3, 4), signs(2, 3))
    with pytest.raises(ValueError, match=r"^margin_ranking: other must be of the same shape as logits"):
        LF.margin_ranking(normal(4), normal(5), signs(4))
    with pytest.raises(ValueError, match=r"^triplet_margin: negative must be of the same shape as anchor"):
        LF.triplet_margin(x, x, normal(4, 2))
    with pytest.raises(ValueError, match=r"^triplet_margin: positive must be a floating-point tensor"):
        LF.triplet_margin(x, x.long(), x)
    with pytest.raises(ValueError, match=r"^cosine_distance: logits must be of shape \[\.\.\., D\]"):
        LF.cosine_distance(torch.tensor(1.0), torch.tensor(1.0))


# -- supervised_contrastive ----------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.07, 0.5, 2.0])
def test_supcon_gives_pytorch_metric_learnings_values_and_gradients(temperature):
    worst = 0.0
    for seed in range(12):
        x = normal(10, 6, seed=seed)
        y = torch.randint(0, 2 + seed % 4, (10,), generator=torch.Generator().manual_seed(seed))
        if (y[:, None] == y[None, :]).all():
            continue  # pml's loss is 0 without a negative pair (tested below)
        expected = SupConLoss(temperature=temperature)(x, y)
        actual = LF.supervised_contrastive(x, y, temperature=temperature)
        close(actual, expected)
        worst = max(worst, (actual - expected).abs().item())
        (mine,) = gradients(lambda v: LF.supervised_contrastive(v, y, temperature=temperature), (x,), (0,))
        (theirs,) = gradients(lambda v: SupConLoss(temperature=temperature)(v, y), (x,), (0,))
        close(mine, theirs)
    assert worst < 1e-12


def test_supcon_none_is_each_anchors_mean_over_its_positives_and_mean_skips_anchors_without_one():
    x, y = normal(9, 4, seed=5), torch.tensor([0, 0, 1, 2, 2, 2, 3, 0, 4])
    rows = supcon_loop(x, y, 0.3)
    none = LF.supervised_contrastive(x, y, temperature=0.3, reduction="none")
    close(none, rows)
    assert (none[[0, 1, 3, 4, 5, 7]] > 0).all() and none[[2, 6, 8]].tolist() == [0.0] * 3  # labels 1, 3, 4: alone
    close(LF.supervised_contrastive(x, y, temperature=0.3, reduction="sum"), rows.sum())
    close(LF.supervised_contrastive(x, y, temperature=0.3), rows.sum() / 6)


def test_supcon_without_a_negative_pair_follows_the_formula_where_pml_gives_zero():
    x, y = normal(5, 3, seed=2), torch.zeros(5, dtype=torch.long)
    assert SupConLoss(temperature=0.1)(x, y).item() == 0.0
    close(LF.supervised_contrastive(x, y, temperature=0.1), supcon_loop(x, y, 0.1).mean())


def test_supcon_without_positives_is_zero_with_a_zero_gradient():
    for x, y in ((normal(4, 3), torch.arange(4)), (normal(1, 3), torch.tensor([7]))):
        leaf = x.clone().requires_grad_()
        loss = LF.supervised_contrastive(leaf, y)
        (gradient,) = torch.autograd.grad(loss, leaf)
        assert loss.item() == 0.0 and gradient.abs().max().item() == 0.0
        assert SupConLoss()(x, y).item() == 0.0


def test_supcon_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^supervised_contrastive: labels must be integer class labels of shape \[4\]"):
        LF.supervised_contrastive(normal(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^supervised_contrastive: labels must be integer class labels"):
        LF.supervised_contrastive(normal(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"^supervised_contrastive: embeddings must be of shape \[B, D\]"):
        LF.supervised_contrastive(normal(4), torch.zeros(4, dtype=torch.long))
