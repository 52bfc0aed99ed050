"""docs/catalog.md: every optax and torch.nn.functional loss mapped to lossfn, and kept current.

The mapping is data in ``lossfn/_catalog.py``; the document is rendered from it and the
registry. These tests fail when the committed document drifts, when the installed torch
has a loss the mapping lacks (or the mapping names one torch no longer has), when the
stored optax list and the rows disagree, and when a row names a loss that is not
registered. The last group checks, against torch, the equivalences that the notes state
as formulas (the direct twins are checked in each family's own tests).
"""

from __future__ import annotations

import inspect
import pathlib

import pytest
import torch
import torch.nn.functional as F

import lossfn
import lossfn.functional as LF
from lossfn import _catalog
from lossfn.registry import temporary_registry

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "catalog.md"
REGENERATE = "run `.venv/bin/python -m lossfn._catalog > docs/catalog.md`"


def torch_losses() -> set[str]:
    """The losses of the installed ``torch.nn.functional``: public functions taking ``reduction``.

    A builtin without a readable signature counts when its name ends in ``_loss``.
    """
    found = set()
    for name in dir(F):
        obj = getattr(F, name)
        if name.startswith("_") or isinstance(obj, type) or not callable(obj):
            continue
        try:
            takes_reduction = "reduction" in inspect.signature(obj).parameters
        except (TypeError, ValueError):
            takes_reduction = name.endswith("_loss")
        if takes_reduction:
            found.add(name)
    return found


def _sources(rows: tuple[_catalog.Row, ...]) -> list[str]:
    return [row.source for row in rows]


def test_the_committed_document_is_the_rendered_one():
    drifted = f"docs/catalog.md drifted from lossfn/_catalog.py or the registry: {REGENERATE}"
    assert DOC.read_text() == _catalog.render(), drifted


def test_every_optax_loss_has_exactly_one_row():
    names = _catalog.OPTAX_LOSSES
    assert list(names) == sorted(set(names)), "OPTAX_LOSSES must be sorted, without repeats"
    assert len(names) >= 30 and "softmax_cross_entropy" in names
    sources = _sources(_catalog.OPTAX_ROWS)
    assert len(sources) == len(set(sources)), "an optax loss has two rows"
    assert set(sources) == set(names), (
        f"optax losses without a row: {sorted(set(names) - set(sources))}; "
        f"rows for names not in OPTAX_LOSSES: {sorted(set(sources) - set(names))}"
    )


def test_every_torch_loss_has_exactly_one_row():
    live = torch_losses()
    assert {"cross_entropy", "mse_loss", "triplet_margin_with_distance_loss", "soft_margin_loss"} <= live
    sources = _sources(_catalog.TORCH_ROWS)
    assert len(sources) == len(set(sources)), "a torch loss has two rows"
    assert set(sources) == live, (
        f"torch {torch.__version__} losses without a row in lossfn/_catalog.py: {sorted(live - set(sources))}; "
        f"rows for names torch does not have: {sorted(set(sources) - live)}"
    )


def test_the_document_has_a_row_for_each_source_loss():
    text = DOC.read_text()
    for prefix, names in (("optax.losses", _catalog.OPTAX_LOSSES), ("torch.nn.functional", sorted(torch_losses()))):
        for name in names:
            assert f"| `{prefix}.{name}` |" in text, f"docs/catalog.md has no row for {prefix}.{name}: {REGENERATE}"


def test_every_lossfn_name_of_the_mapping_is_registered_under_that_name():
    names = {name for row in _catalog.OPTAX_ROWS + _catalog.TORCH_ROWS for name in row.lossfn}
    registered = lossfn.registered()
    missing = sorted(names - set(registered))
    assert not missing, f"lossfn/_catalog.py names losses that are not registered: {missing}"
    assert all(lossfn.get_loss(name).name == name for name in names)  # canonical names, not aliases


def test_every_row_says_what_differs_and_a_row_without_a_loss_says_why():
    for row in _catalog.OPTAX_ROWS + _catalog.TORCH_ROWS:
        assert len(row.note) >= 20, f"{row.source}: the note says nothing"
        if not row.lossfn:
            assert len(row.note) >= 80 and "register" in row.note, f"{row.source}: no lossfn loss, and no why"


def test_the_other_losses_are_exactly_the_unmapped_ones():
    mapped = {name for row in _catalog.OPTAX_ROWS + _catalog.TORCH_ROWS for name in row.lossfn}
    text = DOC.read_text().split("## lossfn losses with no optax or torch counterpart", 1)[1]
    for name, spec in lossfn.registered().items():
        if spec.fn.__module__.startswith("lossfn."):
            assert (f"| `{name}(" in text) == (name not in mapped), name


# ---- the equivalences the notes write as formulas, against torch ------------------------------


@pytest.fixture
def x(generator):
    return torch.randn(5, 4, dtype=torch.float64, generator=generator) * 2


@pytest.fixture
def multi_hot(generator):
    return torch.randint(0, 2, (5, 4), generator=generator).to(torch.float64)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_soft_margin_loss_is_the_binary_cross_entropy_of_zero_one_labels(x, multi_hot, reduction):
    signs = 2 * multi_hot - 1
    expected = F.soft_margin_loss(x, signs, reduction=reduction)
    torch.testing.assert_close(LF.sigmoid_cross_entropy(x, (signs + 1) / 2, reduction=reduction), expected)
    flat = x.flatten()
    expected = F.soft_margin_loss(flat, signs.flatten(), reduction=reduction)
    got = LF.binary_weighted_cross_entropy(flat, multi_hot.flatten(), reduction=reduction)
    torch.testing.assert_close(got, expected)


def test_multilabel_soft_margin_loss_is_the_class_mean_of_sigmoid_cross_entropy(x, multi_hot, generator):
    weight = torch.rand(4, dtype=torch.float64, generator=generator)
    elementwise = LF.sigmoid_cross_entropy(x, multi_hot, reduction="none")
    expected = F.multilabel_soft_margin_loss(x, multi_hot, weight=weight, reduction="none")
    torch.testing.assert_close((elementwise * weight).mean(1), expected)
    torch.testing.assert_close(LF.sigmoid_cross_entropy(x, multi_hot), F.multilabel_soft_margin_loss(x, multi_hot))
    expected = F.multilabel_soft_margin_loss(x, multi_hot, reduction="sum")
    torch.testing.assert_close(LF.sigmoid_cross_entropy(x, multi_hot, reduction="sum") / 4, expected)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_linear_cross_entropy_is_softmax_cross_entropy_of_the_linear_map(generator, reduction):
    inputs = torch.randn(6, 3, dtype=torch.float64, generator=generator)
    w = torch.randn(5, 3, dtype=torch.float64, generator=generator)
    b = torch.randn(5, dtype=torch.float64, generator=generator)
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    class_weights = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    expected = F.linear_cross_entropy(inputs, w, labels, linear_bias=b, weight=class_weights, reduction=reduction)
    got = LF.softmax_cross_entropy(F.linear(inputs, w, b), labels, class_weights=class_weights, reduction=reduction)
    torch.testing.assert_close(got, expected)
    unweighted = F.linear_cross_entropy(inputs, w, labels, linear_bias=b, reduction=reduction)
    torch.testing.assert_close(LF.linear_cross_entropy(inputs, w, labels, b, reduction=reduction), unweighted)


def test_triplet_margin_with_the_default_distance_is_triplet_margin(generator):
    a, p, n = (torch.randn(6, 3, dtype=torch.float64, generator=generator) for _ in range(3))
    for swap in (False, True):
        expected = F.triplet_margin_with_distance_loss(a, p, n, margin=0.7, swap=swap, reduction="none")
        torch.testing.assert_close(LF.triplet_margin(a, p, n, margin=0.7, swap=swap, reduction="none"), expected)


def test_a_custom_distance_registers_through_the_torch_route(generator):
    def distance(u, v):
        return 1 - F.cosine_similarity(u, v)

    def cosine_triplet(anchor, positive, negative, *, margin: float = 1.0, swap: bool = False, reduction="mean"):
        return F.triplet_margin_with_distance_loss(
            anchor, positive, negative, distance_function=distance, margin=margin, swap=swap, reduction=reduction
        )

    a, p, n = (torch.randn(6, 3, dtype=torch.float64, generator=generator) for _ in range(3))
    with temporary_registry():
        lossfn.register_torch_loss("catalog_cosine_triplet", ["vector"], cosine_triplet)
        assert [q.name for q in lossfn.get_loss("catalog_cosine_triplet").params] == ["margin", "swap"]
        module = lossfn.build({"type": "catalog_cosine_triplet", "margin": 0.4})
        expected = F.triplet_margin_with_distance_loss(a, p, n, distance_function=distance, margin=0.4)
        torch.testing.assert_close(module(a, p, n), expected)


def test_torchs_element_weights_through_masked_or_the_unreduced_loss(generator):
    predictions, labels = (torch.randn(5, 3, dtype=torch.float64, generator=generator) for _ in range(2))
    weight = torch.rand(5, 3, dtype=torch.float64, generator=generator)
    for torch_fn, loss in ((F.mse_loss, LF.mean_squared_error), (F.l1_loss, LF.mean_absolute_error)):
        expected = torch_fn(predictions, labels, weight=weight)  # torch 2.13: divided by the sum of the weights
        torch.testing.assert_close(lossfn.compose.masked(loss)(predictions, (labels, weight)), expected)
    huber = (LF.huber(predictions, labels, delta=0.5, reduction="none") * weight).mean()  # divided by N
    torch.testing.assert_close(huber, F.huber_loss(predictions, labels, delta=0.5, weight=weight))
    bce = (LF.sigmoid_cross_entropy(predictions, weight, reduction="none") * weight).mean()
    torch.testing.assert_close(bce, F.binary_cross_entropy_with_logits(predictions, weight, weight=weight))


def test_optax_helpers_written_out(x, generator):
    """generalized_kl_divergence, l2_loss, smooth_labels, cosine_similarity: optax's formulas in torch."""
    log_q, p = x, torch.rand(5, 4, dtype=torch.float64, generator=generator) + 0.1
    generalized_kl = (p * (p.log() - log_q)).sum(-1) + (log_q.exp() - p).sum(-1)
    constant = (p * p.log() - p).sum(-1)
    torch.testing.assert_close(LF.poisson_nll(log_q, p, reduction="none").sum(-1) + constant, generalized_kl)
    labels = torch.randn(5, 4, dtype=torch.float64, generator=generator)
    torch.testing.assert_close(0.5 * LF.mean_squared_error(x, labels, reduction="none"), 0.5 * (x - labels) ** 2)
    classes = torch.tensor([0, 3, 1, 1, 2])
    smoothed = (1 - 0.2) * F.one_hot(classes, 4).to(x.dtype) + 0.2 / 4
    expected = -(smoothed * x.log_softmax(1)).sum(1)
    torch.testing.assert_close(LF.softmax_cross_entropy(x, classes, label_smoothing=0.2, reduction="none"), expected)
    cosine = (x * labels).sum(-1) / (x.norm(dim=-1) * labels.norm(dim=-1))
    torch.testing.assert_close(1 - LF.cosine_distance(x, labels, reduction="none"), cosine)
