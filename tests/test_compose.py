"""Loss trees and combinators (``lossfn.compose``), checked against hand-written sums of
``torch.nn.functional`` losses and loops of autograd calls."""

from __future__ import annotations

import collections
import copy
import pickle
import typing

import optree
import optree.dataclasses
import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, jacrev, vmap

import lossfn
from lossfn import compose
from lossfn import functional as LF

B, C = 6, 4


def close(actual, expected, **kw):
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12, **kw)


@pytest.fixture
def batch(generator):
    """Two heads: a regression output ``[B]`` and a classification output ``[B, C]``."""
    outputs = {
        "price": torch.randn(B, generator=generator, dtype=torch.float64),
        "label": torch.randn(B, C, generator=generator, dtype=torch.float64),
    }
    targets = {
        "price": torch.randn(B, generator=generator, dtype=torch.float64),
        "label": torch.randint(0, C, (B,), generator=generator),
    }
    return outputs, targets


def reference(outputs, targets, *, w_price=0.5, w_label=2.0, smoothing=0.1):
    """The total written out with torch.nn.functional."""
    price = F.mse_loss(outputs["price"], targets["price"])
    label = F.cross_entropy(outputs["label"], targets["label"], label_smoothing=smoothing)
    return w_price * price + w_label * label, {"price": price, "label": label}


def code_tree():
    return compose.tree(
        {
            "price": compose.term(LF.mean_squared_error, weight=0.5),
            "label": compose.term("softmax_cross_entropy", label_smoothing=0.1, weight=2.0),
        }
    )


CONFIG = {
    "outputs": {
        "price": {"type": "mean_squared_error", "weight": 0.5},
        "label": {"type": "softmax_cross_entropy", "label_smoothing": 0.1, "weight": 2.0},
    }
}


def module_tree():
    return compose.tree(
        {
            "price": lossfn.nn.MeanSquaredError(weight=0.5),
            "label": lossfn.nn.SoftmaxCrossEntropy(label_smoothing=0.1, weight=2.0),
        }
    )


# -- values -------------------------------------------------------------------------


def config_tree():
    return compose.from_config(CONFIG)


@pytest.mark.parametrize("make", [code_tree, config_tree, module_tree], ids=["code", "config", "modules"])
@pytest.mark.parametrize("form", ["pure", "module"])
def test_total_and_parts_equal_a_sum_of_torch_losses(batch, make, form):
    outputs, targets = batch
    losses = make() if form == "pure" else make().module()
    total, parts = losses(outputs, targets)
    expected_total, expected_parts = reference(outputs, targets)
    close(total, expected_total)
    assert set(parts) == {"price", "label"}
    close(parts, expected_parts)


def test_weights_are_read_from_the_configs():
    assert compose.from_config(CONFIG).weights == {"price": 0.5, "label": 2.0}
    assert module_tree().weights == {"price": 0.5, "label": 2.0}


@optree.dataclasses.dataclass(namespace=compose.NAMESPACE)
class Heads:
    price: typing.Any
    label: typing.Any


Pair = collections.namedtuple("Pair", "first second")


def _structures(price, label):
    """The same two leaves in different pytree shapes, and how to read them back."""
    return {
        "tuple": ((price, label), lambda t: (t[0], t[1])),
        "list": ([price, label], lambda t: (t[0], t[1])),
        "nested": ({"heads": [price, {"label": label}]}, lambda t: (t["heads"][0], t["heads"][1]["label"])),
        "namedtuple": (Pair(price, label), lambda t: (t.first, t.second)),
        "dataclass": (Heads(price, label), lambda t: (t.price, t.label)),
    }


@pytest.mark.parametrize("kind", list(_structures(0, 0)))
def test_any_pytree_structure(batch, kind):
    outputs, targets = batch
    price = compose.term("mean_squared_error", weight=0.5)
    label = compose.term(LF.softmax_cross_entropy, label_smoothing=0.1, weight=2.0)
    losses, read = _structures(price, label)[kind]
    out, _ = _structures(outputs["price"], outputs["label"])[kind]
    tgt, _ = _structures(targets["price"], targets["label"])[kind]
    expected_total, expected = reference(outputs, targets)
    for form in (compose.tree(losses), compose.tree(losses).module()):
        total, parts = form(out, tgt)
        assert optree.tree_structure(parts, namespace=compose.NAMESPACE) == optree.tree_structure(
            out, namespace=compose.NAMESPACE
        )
        close(read(parts), (expected["price"], expected["label"]))
        close(total, expected_total)


def test_a_single_loss_is_a_tree(batch):
    outputs, targets = batch
    losses = compose.tree(compose.term("mean_squared_error", weight=3.0))
    for form in (losses, losses.module()):
        total, part = form(outputs["price"], targets["price"])
        close(part, F.mse_loss(outputs["price"], targets["price"]))
        close(total, 3.0 * part)


def test_any_kind_of_mapping_matches_a_dict(batch):
    outputs, targets = batch
    expected, _ = reference(outputs, targets)
    ordered = collections.OrderedDict(reversed(list(outputs.items())))
    default = collections.defaultdict(int, targets)
    close(code_tree()(ordered, default)[0], expected)


def test_below_a_leaf_anything_the_loss_takes(generator):
    """A leaf's output may itself be a pytree (a Gaussian head returns mean and log-variance)."""

    def gaussian_nll(output, labels, *, reduction="mean"):
        mean, log_var = output
        return F.gaussian_nll_loss(mean, labels, log_var.exp(), reduction=reduction)

    mean, log_var, y = (torch.randn(B, generator=generator, dtype=torch.float64) for _ in range(3))
    losses = compose.tree({"price": gaussian_nll})
    total, parts = losses({"price": (mean, log_var)}, {"price": y})
    close(total, F.gaussian_nll_loss(mean, y, log_var.exp()))


def test_tensor_weights_and_parameters(batch):
    """Weights and hyperparameters may be 0-d tensors: the gradient of the total w.r.t. a
    weight is that leaf's loss."""
    outputs, targets = batch
    w = torch.tensor([0.5, 2.0], dtype=torch.float64)

    def total(w):
        losses = compose.tree(
            {
                "price": compose.term(LF.mean_squared_error, weight=w[0]),
                "label": compose.term(LF.softmax_cross_entropy, label_smoothing=0.1, weight=w[1]),
            }
        )
        return losses(outputs, targets)[0]

    _, parts = reference(outputs, targets)
    close(grad(total)(w), torch.stack([parts["price"], parts["label"]]))


# -- transforms ------------------------------------------------------------------------


def test_grad_through_the_tree_equals_autograd(batch):
    outputs, targets = batch
    losses = code_tree()
    grads, parts = grad(losses, has_aux=True)(outputs, targets)
    leaves = {k: v.clone().requires_grad_() for k, v in outputs.items()}
    expected_total, expected_parts = reference(leaves, targets)
    expected = torch.autograd.grad(expected_total, [leaves["price"], leaves["label"]])
    close((grads["price"], grads["label"]), expected)
    close(parts, {k: v.detach() for k, v in expected_parts.items()})


def test_vmap_over_problems_equals_a_loop(generator):
    """vmap over a leading axis of independent problems (e.g. ensemble members)."""
    members = 3
    outputs = {
        "price": torch.randn(members, B, generator=generator, dtype=torch.float64),
        "label": torch.randn(members, B, C, generator=generator, dtype=torch.float64),
    }
    targets = {
        "price": torch.randn(members, B, generator=generator, dtype=torch.float64),
        "label": torch.randint(0, C, (members, B), generator=generator),
    }
    totals, parts = vmap(code_tree())(outputs, targets)
    for i in range(members):
        expected_total, expected_parts = reference(
            {k: v[i] for k, v in outputs.items()}, {k: v[i] for k, v in targets.items()}
        )
        close(totals[i], expected_total)
        close({k: v[i] for k, v in parts.items()}, expected_parts)


def test_jacrev_of_the_parts_with_respect_to_an_output(batch):
    outputs, targets = batch
    jac = jacrev(lambda label: code_tree()({**outputs, "label": label}, targets)[1]["label"])(outputs["label"])
    # closed form: d CE_mean / d logits = ((1 - eps) onehot + eps / C - softmax) * -1 / B
    smooth = 0.9 * F.one_hot(targets["label"], C).double() + 0.1 / C
    close(jac, (outputs["label"].softmax(1) - smooth) / B)


# -- the module form ---------------------------------------------------------------------


def test_module_children_are_the_leaf_modules():
    price = lossfn.nn.MeanSquaredError(weight=0.5)
    label = lossfn.nn.SoftmaxCrossEntropy(class_weights=[1.0, 2.0, 3.0, 4.0])
    module = compose.tree({"heads": {"price": price, "label": label}}).module()
    assert module.get_submodule("heads.price") is price
    assert module.get_submodule("heads.label") is label
    assert list(module.state_dict()) == ["heads.label.class_weights"]
    text = repr(module)
    assert "(price): MeanSquaredError(" in text and "(label): SoftmaxCrossEntropy(" in text
    module.to(torch.float64)
    assert label.class_weights.dtype == torch.float64


def test_module_from_config_holds_generated_modules():
    module = compose.from_config(CONFIG).module()
    assert isinstance(module.get_submodule("label"), lossfn.nn.SoftmaxCrossEntropy)
    assert module.get_submodule("label").config == lossfn.decode_config(CONFIG["outputs"]["label"])
    assert module.get_submodule("price").weight == 0.5


def test_module_runs_the_input_checks(batch):
    outputs, targets = batch
    bad = {**targets, "label": torch.full((B,), C)}  # a label out of range: a host-sync check
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\]"):
        code_tree().module()(outputs, bad)


def test_module_pickles_and_deep_copies(batch):
    outputs, targets = batch
    module = compose.from_config(CONFIG).module()
    expected, _ = reference(outputs, targets)
    for clone in (pickle.loads(pickle.dumps(module)), copy.deepcopy(module)):
        close(clone(outputs, targets)[0], expected)


def test_any_module_or_function_is_a_leaf(generator):
    """An ``nn.Module`` loss of torch and a function with a tensor parameter."""
    x, y = (torch.randn(B, 3, generator=generator, dtype=torch.float64) for _ in range(2))
    scale = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)

    def scaled_l1(logits, labels, *, scale, reduction="mean"):
        return F.l1_loss(logits * scale, labels * scale, reduction=reduction)

    losses = compose.tree(
        {"a": compose.term(torch.nn.SmoothL1Loss(), weight=2.0), "b": compose.term(scaled_l1, scale=scale)}
    )
    expected = 2.0 * F.smooth_l1_loss(x, y) + F.l1_loss(x * scale, y * scale)
    module = losses.module()
    assert isinstance(module.get_submodule("a.fn"), torch.nn.SmoothL1Loss)
    assert list(module.state_dict()) == ["b.scale"]  # the tensor parameter is a buffer
    for form in (losses, module):
        close(form({"a": x, "b": x}, {"a": y, "b": y})[0], expected)
    module.to(torch.float32)
    assert module.get_submodule("b").scale.dtype == torch.float32


def test_module_rejects_an_output_name_that_cannot_name_a_submodule():
    with pytest.raises(ValueError, match=r'\$\["a\.b"\].*cannot name a submodule'):
        compose.tree({"a.b": "mean_squared_error"}).module()


# -- structure errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "outputs,message",
    [
        ({"price": 0}, r"outputs do not match the loss tree: missing \$\.label$"),
        ({"price": 0, "label": 0, "labels": 0}, r"extra \$\.labels$"),
        ({"price": 0, "labl": 0}, r"missing \$\.label; extra \$\.labl$"),
        ([0, 0], r"\$ is list, expected a mapping with keys 'label', 'price'"),
        (None, r"\$ is NoneType"),
    ],
)
def test_structure_mismatch_names_the_keys(batch, outputs, message):
    _, targets = batch
    with pytest.raises(ValueError, match=message):
        code_tree()(outputs, targets)
    with pytest.raises(ValueError, match=message):
        code_tree().module()(outputs, targets)


def test_nested_mismatch_names_the_path(batch):
    losses = compose.tree({"heads": ("mean_squared_error", {"label": "softmax_cross_entropy"})})
    outputs = {"heads": (0, {"label": 0})}
    message = r"^targets do not match the loss tree: missing \$\.heads\[1\]\.label; extra \$\.heads\[1\]\.lbl$"
    with pytest.raises(ValueError, match=message):
        losses(outputs, {"heads": (0, {"lbl": 0})})
    with pytest.raises(ValueError, match=r"\$\.heads is list, expected a tuple of 2"):
        losses(outputs, {"heads": [0, {"label": 0}]})
    with pytest.raises(ValueError, match=r"extra \$\.heads\[2\]"):
        losses(outputs, {"heads": (0, {"label": 0}, 0)})


def test_an_error_inside_a_leaf_names_the_leaf(batch):
    outputs, targets = batch
    with pytest.raises(ValueError, match="mean_squared_error") as info:
        code_tree()({**outputs, "price": outputs["price"][:3]}, targets)
    assert any("$.price" in note for note in info.value.__notes__)


@pytest.mark.parametrize(
    "losses,error,message",
    [
        ({}, ValueError, "at least one loss"),
        ({"price": None}, TypeError, r"no loss at \$\.price"),
        ({"price": 3}, TypeError, r"loss tree at \$\.price: .*got int"),
        ({"a": {"b": {"type": "huber", "delta": -1.0}}}, lossfn.LossConfigError, r"> 0\.0 - at `\$\.a\.b\.delta`"),
        ({"a": [{"type": "huber", "delt": 1.0}]}, lossfn.LossConfigError, r"unknown field `delt`; did you mean .delta.\? - at `\$\.a\[0\]`"),
        ({"a": "hubr"}, lossfn.UnknownLossError, "did you mean 'huber'"),
    ],
)
def test_bad_loss_trees(losses, error, message):
    with pytest.raises(error, match=message):
        compose.tree(losses)


# -- term ---------------------------------------------------------------------------------


def test_term_checks_the_parameters_of_a_registered_loss():
    with pytest.raises(lossfn.LossConfigError, match=r"softmax_cross_entropy: .*< 1\.0 - at `\$\.label_smoothing`"):
        compose.term(LF.softmax_cross_entropy, label_smoothing=1.5)
    with pytest.raises(lossfn.LossConfigError, match="unknown field `smoothing`"):
        compose.term("softmax_cross_entropy", smoothing=0.1)
    with pytest.raises(lossfn.LossConfigError, match="unknown field `smoothing`"):
        compose.term("softmax_cross_entropy", smoothing=torch.tensor(0.1))
    with pytest.raises(ValueError, match="reduction must be one of"):
        compose.term("softmax_cross_entropy", reduction="avg")
    # tensors are not read (no host sync), plain values are
    assert compose.term("softmax_cross_entropy", label_smoothing=torch.tensor(0.1)).params["label_smoothing"] == 0.1


@pytest.mark.parametrize(
    "source",
    [
        {"type": "mean_squared_error"},
        lossfn.decode_config({"type": "mean_squared_error"}),
        lossfn.nn.MeanSquaredError(),
    ],
    ids=["mapping", "config", "module"],
)
def test_configs_and_modules_carry_their_own_weight(source):
    with pytest.raises(TypeError, match="carries its own weight and parameters"):
        compose.term(source, weight=2.0)


def test_term_replaces_weight_and_parameters():
    base = compose.term("softmax_cross_entropy", label_smoothing=0.1)
    changed = compose.term(base, weight=3.0, label_smoothing=0.2)
    assert (changed.weight, changed.params["label_smoothing"], base.params["label_smoothing"]) == (3.0, 0.2, 0.1)
    with pytest.raises(lossfn.LossConfigError):
        compose.term(base, label_smoothing=2.0)


@pytest.mark.parametrize("weight", [-1, -0.5, float("nan"), "heavy"])
def test_term_rejects_a_weight_no_config_would_take(weight):
    with pytest.raises(lossfn.LossConfigError, match=r"term\(\): weight: .* - at `\$.weight`"):
        compose.term(LF.huber, weight=weight)
    with pytest.raises(lossfn.LossConfigError, match=r"at `\$.weight`"):
        compose.term(compose.term("huber"), weight=weight)
    assert compose.term(LF.huber, weight=torch.tensor(2.0)).weight.item() == 2.0  # a tensor is not read


def test_a_multi_input_term_calls_its_loss_with_every_input(generator):
    x, y = torch.randn(4, 3, generator=generator), torch.randn(4, 3, generator=generator)
    leaf = compose.term(LF.huber, delta=0.5)
    torch.testing.assert_close(leaf(x, y), LF.huber(x, y, delta=0.5))


def test_term_rejects_what_is_no_loss():
    with pytest.raises(TypeError, match="expected a loss function.*got float"):
        compose.term(1.0)


# -- combinators -------------------------------------------------------------------------------


def test_weighted_sum(generator):
    values = {"a": torch.randn((), generator=generator), "b": (torch.randn((), generator=generator),)}
    close(compose.weighted_sum(values, {"a": 2.0, "b": (0.5,)}), 2.0 * values["a"] + 0.5 * values["b"][0])
    close(compose.weighted_sum(values), values["a"] + values["b"][0])
    with pytest.raises(ValueError, match=r"weights do not match the values: missing \$\.b"):
        compose.weighted_sum(values, {"a": 1.0})
    with pytest.raises(ValueError, match="no values"):
        compose.weighted_sum({})


def test_detach_labels_stops_the_gradient_of_the_target(generator):
    """Self-distillation: the target is computed from the same input."""
    x = torch.randn(B, C, generator=generator, dtype=torch.float64)
    teacher = lambda x: (2 * x).softmax(1)  # noqa: E731
    loss = compose.detach_labels(LF.softmax_cross_entropy)

    constant = teacher(x)  # computed apart: no graph to x at all
    leaf = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(F.cross_entropy(leaf, constant), leaf)

    close(grad(lambda x: loss(x, teacher(x)))(x), expected)
    leaf = x.clone().requires_grad_()
    (autograd,) = torch.autograd.grad(loss(leaf, teacher(leaf)), leaf)
    close(autograd, expected)
    # without the stop-gradient the teacher's path adds to the gradient
    assert not torch.allclose(grad(lambda x: LF.softmax_cross_entropy(x, teacher(x)))(x), expected)
    assert loss.__name__ == "detach_labels(softmax_cross_entropy)"


@pytest.fixture
def masked_batch(generator):
    logits = torch.randn(B, C, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, C, (B,), generator=generator)
    mask = torch.tensor([True, False, True, True, False, True])
    return logits, labels, mask


def test_masked_equals_slicing(masked_batch):
    logits, labels, mask = masked_batch
    loss = compose.masked(LF.softmax_cross_entropy)
    kept = mask.nonzero().squeeze(1)
    close(loss(logits, (labels, mask)), F.cross_entropy(logits[kept], labels[kept]))
    close(loss(logits, (labels, mask), reduction="sum"), F.cross_entropy(logits[kept], labels[kept], reduction="sum"))
    none = loss(logits, (labels, mask), reduction="none")
    close(none[kept], F.cross_entropy(logits[kept], labels[kept], reduction="none"))
    assert (none[~mask] == 0).all()
    # the gradient of the masked mean equals the gradient on the slice
    leaf = logits.clone().requires_grad_()
    (full,) = torch.autograd.grad(F.cross_entropy(leaf[kept], labels[kept]), leaf)
    close(grad(loss)(logits, (labels, mask)), full)


def test_masked_with_float_weights(masked_batch):
    logits, labels, _ = masked_batch
    weights = torch.tensor([0.5, 0.0, 2.0, 1.0, 0.0, 1.5], dtype=torch.float64)
    per_example = F.cross_entropy(logits, labels, reduction="none")
    loss = compose.masked(LF.softmax_cross_entropy)(logits, (labels, weights))
    close(loss, (weights * per_example).sum() / weights.sum())


def test_masked_all_out_is_zero_with_a_zero_gradient(masked_batch):
    logits, labels, mask = masked_batch
    loss = compose.masked(LF.softmax_cross_entropy)
    none = torch.zeros_like(mask)
    close(loss(logits, (labels, none)), torch.tensor(0.0, dtype=torch.float64))
    close(grad(loss)(logits, (labels, none)), torch.zeros_like(logits))


def test_masked_per_example_mask_on_an_elementwise_loss(generator):
    """A [B] mask masks every element of a [B, D] elementwise loss; the mean is over the kept elements."""
    x, y = torch.randn(5, 3, generator=generator), torch.randn(5, 3, generator=generator)
    mask = torch.tensor([True, False, True, True, False])
    loss = compose.masked(LF.mean_squared_error)
    close(loss(x, (y, mask)), F.mse_loss(x[mask], y[mask]))
    close(loss(x, (y, mask), reduction="sum"), F.mse_loss(x[mask], y[mask], reduction="sum"))
    none = loss(x, (y, mask), reduction="none")
    assert none.shape == (5, 3) and (none[~mask] == 0).all()


def test_masked_errors(masked_batch):
    logits, labels, mask = masked_batch
    loss = compose.masked(LF.softmax_cross_entropy)
    message = r"mask must have the shape of the unreduced losses \[6\] or of their leading dimensions; got shape \[6, 1\]"
    with pytest.raises(ValueError, match=message):
        loss(logits, (labels, mask[:, None]))
    with pytest.raises(TypeError, match=r"labels must be a \(labels, mask\) pair; got Tensor"):
        loss(logits, labels)


def test_masked_in_a_tree_per_example_gradients(batch, masked_batch):
    """Missing targets in one head: the mask travels with the labels; per-example
    gradients through the tree (vmap of grad) equal a loop of autograd calls."""
    outputs, targets = batch
    _, _, mask = masked_batch
    losses = compose.tree(
        {"price": compose.term(compose.masked(LF.mean_squared_error), weight=0.5), "label": "softmax_cross_entropy"}
    )
    targets = {**targets, "price": (targets["price"], mask)}

    def one(out, tgt):  # a batch of one example
        batched = optree.tree_map(lambda t: t.unsqueeze(0), (out, tgt))
        return losses(*batched)[0]

    per_example = vmap(grad(one))(outputs, targets)
    for n in range(B):
        leaves = {k: v[n : n + 1].clone().requires_grad_() for k, v in outputs.items()}
        price = F.mse_loss(leaves["price"], targets["price"][0][n : n + 1]) * mask[n]
        total = 0.5 * price + F.cross_entropy(leaves["label"], targets["label"][n : n + 1])
        expected = torch.autograd.grad(total, [leaves["price"], leaves["label"]])
        close((per_example["price"][n], per_example["label"][n]), (expected[0][0], expected[1][0]))
