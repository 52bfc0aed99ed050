"""Prediction rules per loss (``register_loss(..., predict=)``) and CORN's logits convention.

CORN's rule is checked against the closed form of Shi, Cao and Raschka (2021),
written here with Python floats: rank = sum_k [prod_{j<=k} sigmoid(x_j) > 0.5]
over the first K - 1 columns.
"""

from __future__ import annotations

import json
import math
from typing import Annotated

import msgspec
import pytest
import torch

import lossfn
import lossfn.functional as LF
from lossfn import Feature, Reduction, register_loss
from lossfn import demo
from lossfn.demo import data, train
from lossfn.demo.model import Ensemble
from lossfn.registry import temporary_registry


def corn_rank(row: list[float]) -> int:
    """The closed form: how many of the K - 1 cumulative probabilities exceed 0.5."""
    rank, cumulative = 0, 1.0
    for x in row[:-1]:  # the last column is unused
        cumulative *= 1.0 / (1.0 + math.exp(-x))
        rank += cumulative > 0.5
    return rank


# -- corn's rule -------------------------------------------------------------------------

HAND_MADE = [
    ([5.0, 5.0, 5.0, 0.0], 3),  # every task sure: the top class
    ([-5.0, 5.0, 5.0, 0.0], 0),  # the first task fails: later tasks cannot lift the product
    ([5.0, -5.0, 5.0, 0.0], 1),
    ([5.0, 5.0, -5.0, 9.0], 2),  # the unused last column does not count
    ([1.0, 1.0, -2.0, 0.0], 2),  # 0.731, 0.534, 0.064
    ([2.0, 0.0, 0.0, 0.0], 1),  # 0.881, then 0.440
    ([0.0, 3.0, 3.0, 0.0], 0),  # sigmoid(0) = 0.5 is not above 0.5
]


def test_corn_rule_matches_the_closed_form_on_hand_made_logits():
    logits = torch.tensor([row for row, _ in HAND_MADE])
    expected = [rank for _, rank in HAND_MADE]
    assert [corn_rank(row) for row, _ in HAND_MADE] == expected  # the closed form agrees with the hand count
    rule = lossfn.get_loss("corn").prediction_rule
    predicted = rule(logits)
    assert predicted.dtype == torch.int64 and predicted.tolist() == expected
    assert rule(logits.double()).tolist() == expected and rule(logits.half()).tolist() == expected


def test_corn_rule_matches_the_closed_form_on_random_logits():
    logits = torch.randn(64, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    predicted = lossfn.get_loss("corn").prediction_rule(logits)
    assert predicted.tolist() == [corn_rank(row) for row in logits.tolist()]
    assert predicted.min() >= 0 and predicted.max() <= logits.shape[1] - 1  # always a class


def test_corn_rule_on_one_example_and_two_classes():
    rule = lossfn.get_loss("corn").prediction_rule
    assert rule(torch.tensor([5.0, 5.0, -5.0, 0.0])).tolist() == 2  # [K] -> []
    two = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.1, 9.0]])  # K = 2: sigmoid(x_0) > 0.5
    assert rule(two).tolist() == [1, 0, 1]


def test_corn_registers_its_rule_on_the_spec():
    spec = lossfn.get_loss("corn")
    assert spec.predict is not None and spec.prediction_rule is spec.predict


# -- the default rule --------------------------------------------------------------------


def test_the_default_rule_of_a_category_loss_is_argmax_over_the_class_dimension():
    spec = lossfn.get_loss("softmax_cross_entropy")
    assert spec.predict is None
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 5, generator=g)
    assert torch.equal(spec.prediction_rule(logits), logits.argmax(dim=1))
    spatial = torch.randn(2, 5, 3, 4, generator=g)  # [B, C, d1, d2], the class dimension is 1
    assert torch.equal(spec.prediction_rule(spatial), spatial.argmax(dim=1))
    assert spec.prediction_rule(torch.tensor([0.0, 3.0, 1.0])).tolist() == 1  # one example [C]
    assert lossfn.get_loss("bi_tempered_logistic_loss").prediction_rule is spec.prediction_rule


def test_a_loss_without_classes_has_no_default_rule():
    spec = lossfn.get_loss("huber")
    assert spec.predict is None and spec.prediction_rule is None


def _toy(logits, labels, *, reduction: Reduction = "mean"):
    """Toy loss for the registration tests."""
    return LF.softmax_cross_entropy(logits, labels, reduction=reduction)


def _toy_with_scale(
    logits,
    labels,
    *,
    scale: Annotated[float, msgspec.Meta(gt=0.0, description="a scale")] = 1.0,
    reduction: Reduction = "mean",
):
    """Toy loss for the registration tests."""
    return LF.softmax_cross_entropy(logits * scale, labels, reduction=reduction)


def test_register_loss_stores_the_rule_and_defaults_to_none():
    def lowest(logits):
        return logits.argmin(dim=1)

    with temporary_registry():
        register_loss("toy_predicting", [Feature.CATEGORY], predict=lowest)(_toy)
        register_loss("toy_plain", [Feature.CATEGORY])(_toy_with_scale)
        assert lossfn.get_loss("toy_predicting").predict is lowest
        assert lossfn.get_loss("toy_predicting").prediction_rule is lowest
        assert lossfn.get_loss("toy_plain").predict is None
        x = torch.tensor([[0.0, 2.0, -1.0]])
        assert lossfn.get_loss("toy_plain").prediction_rule(x).tolist() == [1]
        # the rule changes nothing that is derived from the signature
        assert lossfn.build({"type": "toy_predicting"})(x, torch.tensor([1])).ndim == 0


def test_a_rule_that_is_not_a_function_is_refused_at_registration():
    with temporary_registry(), pytest.raises(TypeError, match="loss 'toy_bad_rule': predict must be a function"):
        register_loss("toy_bad_rule", [Feature.CATEGORY], predict="argmax")(_toy)


# -- corn's logits convention ----------------------------------------------------------------


def test_the_module_refuses_label_k_and_explains_the_convention():
    module = lossfn.nn.Corn()
    coral_logits = torch.randn(3, 3, generator=torch.Generator().manual_seed(2))  # [B, K-1] for K = 4
    labels = torch.tensor([0, 3, 1])
    with pytest.raises(ValueError, match=r"^corn: labels must be class indices in \[0, 2\]; got values in \[0, 3\]") as info:
        module(coral_logits, labels)
    message = str(info.value)
    assert "[B, K-1]" in message and "coral_pytorch" in message and "append a zero column" in message
    # the remedy the message gives works, and gives the loss of the K - 1 tasks
    fixed = torch.cat([coral_logits, coral_logits.new_zeros(*coral_logits.shape[:-1], 1)], dim=-1)
    torch.testing.assert_close(module(fixed, labels), LF.corn(fixed, labels))
    # one example [K-1] too
    with pytest.raises(ValueError, match=r"append a zero column"):
        module(coral_logits[0], torch.tensor(3))


def test_other_out_of_range_labels_are_refused_without_the_convention_hint():
    module = lossfn.nn.Corn()
    for labels in (torch.tensor([0, 7, 1]), torch.tensor([-1, 2, 1])):
        with pytest.raises(ValueError, match=r"^corn: labels must be class indices in \[0, 3\]") as info:
            module(torch.zeros(3, 4), labels)
        assert "coral_pytorch" not in str(info.value)
    assert torch.isfinite(module(torch.zeros(3, 4), torch.tensor([0, 3, 1])))  # in range: no error


def test_the_pure_function_documents_its_convention_and_that_it_checks_no_label_values():
    doc = " ".join(LF.corn.__doc__.split())
    assert "[B, K]" in doc and "coral_pytorch" in doc and "append a zero column" in doc
    assert "does not check label values" in doc
    # and indeed it does not: a label K gives a number (as class K - 1), no error
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0]])
    torch.testing.assert_close(LF.corn(logits, torch.tensor([4])), LF.corn(logits, torch.tensor([3])))


# -- the demo scores each loss by its rule ---------------------------------------------------------


def test_accuracy_takes_one_rule_per_group():
    g = torch.Generator().manual_seed(0)
    x, y = data.sample(50, g)
    model = Ensemble([0, 1])  # two groups of one seed
    logits = model(x.expand(2, *x.shape))
    by_argmax = (logits.argmax(-1) == y).float().mean(-1)
    by_argmin = (logits.argmin(-1) == y).float().mean(-1)
    got = train.accuracy(model, x[None], y[None], [None, lambda z: z.argmin(dim=-1)])
    torch.testing.assert_close(got.view(-1), torch.stack([by_argmax[0], by_argmin[1]]))
    torch.testing.assert_close(train.accuracy(model, x[None], y[None]).view(-1), by_argmax)


def test_demo_scores_corn_by_its_rule(tmp_path, capsys):
    argv = ["--seeds", "1", "--epochs", "60", "--no-plot", "--out", str(tmp_path), "--loss", '{"type": "corn"}']
    assert demo.main(argv) == 0
    capsys.readouterr()
    results = json.loads((tmp_path / "results.json").read_text())
    (corn,) = [loss for loss in results["losses"] if loss["label"] == "corn"]
    for condition in data.CONDITIONS:
        (acc,) = corn["conditions"][condition]["clean_test_accuracy"]
        assert acc > 0.6, (condition, acc)  # chance is 0.5; argmax of corn's logits gave about 0.0-0.4
