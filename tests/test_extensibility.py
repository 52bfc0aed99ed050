"""Adding a loss = writing one function with its decorator line; the rest is derived.

These tests register brand-new losses inside the test and get their config, module,
JSON Schema, CLI page and conformance for free, without touching any other file.
"""

from __future__ import annotations

import inspect
import pickle
import warnings
from typing import Annotated

import jsonschema
import msgspec
import pytest
import torch
from msgspec import Meta
from torch import Tensor

import lossfn
from lossfn.cli import loss_page, loss_table
from lossfn.nn._stub import render_stub
from lossfn.registry import AsTensor, Check, Reduction, temporary_registry


def scaled_log_cosh(
    logits: Tensor,
    labels: Tensor,
    *,
    scale: Annotated[float, Meta(gt=0.0, description="divides the residual before log-cosh")] = 1.0,
    per_dim: Annotated[
        list[Annotated[float, Meta(ge=0.0)]] | None, Meta(description="weights of the feature dimensions"), AsTensor()
    ] = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Log-cosh loss: ``log(cosh((x - y) / s))``, mean over features."""
    r = (logits - labels) / scale
    value = torch.nn.functional.softplus(2 * r) - r - torch.log(torch.tensor(2.0, dtype=r.dtype))
    if per_dim is not None:
        value = value * torch.as_tensor(per_dim, dtype=r.dtype)
    return lossfn.functional.reduce_loss(value.mean(-1), reduction, name="scaled_log_cosh")


def test_a_new_loss_gets_everything_for_free(capsys):
    with temporary_registry():
        before_schema = lossfn.json_schema()
        lossfn.register_loss("scaled_log_cosh", ["number", "vector"], aliases=("scaled_logcosh",))(scaled_log_cosh)

        # config: derived from the signature, in the union at once
        cfg = lossfn.decode_config({"type": "scaled_log_cosh", "scale": 2, "per_dim": [1, 2]})
        assert type(cfg).__name__ == "ScaledLogCoshConfig" and cfg.scale == 2.0 and cfg.weight == 1.0
        aliased = lossfn.decode_config('{"type": "scaled_logcosh"}')  # an alias decodes, and encodes back as written
        assert isinstance(aliased, lossfn.get_loss("scaled_log_cosh").config)
        assert lossfn.encode_config(aliased, format="dict") == {"type": "scaled_logcosh", "scale": 1.0, "per_dim": None, "weight": 1.0}
        assert lossfn.build(aliased).config is aliased
        with pytest.raises(msgspec.ValidationError, match=r"> 0.0 - at `\$.scale`"):
            lossfn.decode_config({"type": "scaled_log_cosh", "scale": 0})
        assert cfg in [lossfn.decode_config(cfg, feature="vector")]

        # module: a real class in lossfn.nn, with buffers, pickling, build()
        module = lossfn.build(cfg)
        assert type(module) is lossfn.nn.ScaledLogCosh and module.per_dim.tolist() == [1.0, 2.0]
        x = torch.randn(4, 2, dtype=torch.float64)
        y = torch.randn(4, 2, dtype=torch.float64)
        r = (x - y) / 2
        expected = (torch.log(torch.cosh(r)) * torch.tensor([1.0, 2.0], dtype=torch.float64)).mean(-1).mean()
        torch.testing.assert_close(module(x, y), expected)
        assert type(pickle.loads(pickle.dumps(module))) is lossfn.nn.ScaledLogCosh
        assert lossfn.functional.scaled_log_cosh is lossfn.get_loss("scaled_log_cosh").fn
        assert lossfn.functional.scaled_log_cosh.__wrapped__ is scaled_log_cosh
        with pytest.raises(ValueError, match=r"^scaled_log_cosh: scale must be a number > 0.0 and <= 1e\+15; got -1.0$"):
            lossfn.functional.scaled_log_cosh(x, y, scale=-1.0)  # the pure function checks its bounds too

        # JSON Schema: grows by the new config, validates it
        schema = lossfn.json_schema()
        assert "ScaledLogCoshConfig" in schema["$defs"] and "ScaledLogCoshConfig" not in before_schema["$defs"]
        jsonschema.validate({"type": "scaled_log_cosh", "scale": 3.0}, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"type": "scaled_log_cosh", "scale": -1.0}, schema)

        # CLI: in the table and with its own page
        assert "scaled_log_cosh" in loss_table("vector") and "scaled_log_cosh" not in loss_table("category")
        page = loss_page("scaled_logcosh")
        assert "scale (float; default 1.0; > 0.0)" in page and "divides the residual" in page
        assert lossfn.cli.main(["show", "scaled_log_cosh"]) == 0
        assert "Log-cosh loss" in capsys.readouterr().out

    # gone again once the block ends: the union follows the registry
    with pytest.raises(msgspec.ValidationError, match="Unknown loss 'scaled_log_cosh'"):
        lossfn.decode_config({"type": "scaled_log_cosh"})
    assert "ScaledLogCoshConfig" not in lossfn.json_schema()["$defs"]


def test_whole_value_checks_from_the_signature():
    def weighted(
        logits: Tensor,
        labels: Tensor,
        *,
        weights: Annotated[
            list[float] | None,
            Meta(description="weights that must not all be zero"),
            AsTensor(),
            Check(lambda w: sum(w) > 0, "weights that sum to more than 0"),
        ] = None,
        reduction: Reduction = "mean",
    ) -> Tensor:
        return lossfn.functional.mean_squared_error(logits, labels, reduction=reduction)

    with temporary_registry():
        lossfn.register_loss("weighted_check", ["number"])(weighted)
        with pytest.raises(
            msgspec.ValidationError, match=r"^Expected weights that sum to more than 0, got \[0.0, 0.0\] - at `\$.weights`$"
        ):
            lossfn.decode_config({"type": "weighted_check", "weights": [0.0, 0.0]})
        with pytest.raises(msgspec.ValidationError, match=r"^WeightedCheck: Expected .* sum to more than 0.* at `\$.weights`$"):
            lossfn.nn.WeightedCheck(weights=[0.0])
        assert lossfn.nn.WeightedCheck(weights=[0.0, 1.0]).weights.tolist() == [0.0, 1.0]


def test_checks_across_fields_and_mapping_parameters_with_a_vocabulary():
    def paired(
        logits: Tensor,
        labels: Tensor,
        *,
        scales: Annotated[
            list[float] | dict[str, float] | None, Meta(description="one scale per column, or by name"), AsTensor()
        ] = None,
        offsets: Annotated[
            list[float] | None,
            Meta(description="one offset per scale"),
            AsTensor(),
            Check(lambda o, s: s is None or len(o) == len(s), "one offset per scale", uses=("scales",)),
        ] = None,
        reduction: Reduction = "mean",
    ) -> Tensor:
        if scales is not None:
            logits = logits * torch.as_tensor(scales, dtype=logits.dtype)
        if offsets is not None:
            logits = logits + torch.as_tensor(offsets, dtype=logits.dtype)
        return lossfn.functional.mean_squared_error(logits, labels, reduction=reduction)

    with temporary_registry():
        lossfn.register_loss("paired_check", ["vector"])(paired)
        with pytest.raises(msgspec.ValidationError, match=r"one offset per scale, got \[1.0\] - at `\$.offsets`"):
            lossfn.decode_config({"type": "paired_check", "scales": [1, 2], "offsets": [1]})
        cfg = lossfn.decode_config({"type": "paired_check", "scales": {"b": 2, "a": 1}})
        with pytest.raises(msgspec.ValidationError, match=r"pass vocabulary=\[...\].* at `\$.scales`"):
            lossfn.build(cfg)
        with pytest.raises(msgspec.ValidationError, match=r"missing \['c'\], not in the vocabulary \[\].* at `\$.scales`"):
            lossfn.build(cfg, vocabulary=["a", "b", "c"])
        module = lossfn.build(cfg, vocabulary=["a", "b"])
        assert module.scales.tolist() == [1.0, 2.0] and module.config is cfg
        x, y = torch.randn(3, 2), torch.randn(3, 2)
        torch.testing.assert_close(module(x, y), ((x * torch.tensor([1.0, 2.0]) - y) ** 2).mean())


def test_ludwig_class_weights_by_name_resolve_with_the_vocabulary():
    vocabulary = ["<UNK>", "cat", "dog"]
    cfg = lossfn.decode_config({"type": "softmax_cross_entropy", "class_weights": {"dog": 3, "<UNK>": 0.5, "cat": 1}})
    module = lossfn.build(cfg, vocabulary=vocabulary)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor([0.5, 1.0, 3.0]))
    torch.testing.assert_close(module(logits, labels), expected)
    with pytest.raises(ValueError, match=r"^softmax_cross_entropy: class_weights must be a list or a tensor \(a mapping"):
        lossfn.functional.softmax_cross_entropy(logits, labels, class_weights={"cat": 1.0})


def toy_triplet(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    *,
    margin: Annotated[float, Meta(ge=0.0, description="how much closer the positive must be")] = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Toy triplet loss: ``max(0, |a - p|^2 - |a - n|^2 + margin)`` per example."""
    gap = (anchor - positive).square().sum(-1) - (anchor - negative).square().sum(-1)
    return lossfn.functional.reduce_loss(torch.relu(gap + margin), reduction, name="toy_triplet")


def test_a_three_input_loss_gets_everything_for_free(capsys):
    with temporary_registry():
        lossfn.register_loss("toy_triplet", ["vector"])(toy_triplet)
        spec = lossfn.get_loss("toy_triplet")
        assert spec.inputs == ("anchor", "positive", "negative") and [p.name for p in spec.params] == ["margin"]

        # config and schema: the hyperparameters only, never the inputs
        cfg = lossfn.decode_config({"type": "toy_triplet", "margin": 0.5})
        assert msgspec.structs.asdict(cfg) == {"margin": 0.5, "weight": 1.0}
        schema = lossfn.json_schema()
        assert set(schema["$defs"]["ToyTripletConfig"]["properties"]) == {"type", "margin", "weight"}
        jsonschema.validate({"type": "toy_triplet", "margin": 2}, schema)

        # module: forward takes the three inputs, with a real signature
        module = lossfn.build(cfg)
        assert list(inspect.signature(module.forward).parameters) == ["anchor", "positive", "negative"]
        g = torch.Generator().manual_seed(0)
        a, p, n = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(3))
        squared = torch.relu((a - p).square().sum(-1) - (a - n).square().sum(-1) + 0.5)  # the closed form
        torch.testing.assert_close(module(a, p, n), squared.mean())
        torch.testing.assert_close(module(a, positive=p, negative=n), squared.mean())
        with pytest.raises(ValueError, match=r"^toy_triplet: margin must be a number >= 0.0 and <= 1e\+15; got -1"):
            lossfn.functional.toy_triplet(a, p, n, margin=-1)

        # transforms over every input
        for argnum in range(3):
            g_fn = torch.func.grad(lossfn.functional.toy_triplet, argnums=argnum)(a, p, n)
            assert g_fn.shape == (5, 3)
        per_example = torch.func.vmap(lambda *t: lossfn.functional.toy_triplet(*t, margin=0.5))(a, p, n)  # one at a time
        torch.testing.assert_close(per_example, squared)

        # CLI: the page shows the inputs
        page = loss_page("toy_triplet")
        assert "toy_triplet(anchor, positive, negative, *, margin: float = 1.0, reduction='mean')" in page
        assert "forward(anchor, positive, negative)" in page
        assert "anchor, positive, negative" in loss_table("vector")
        assert lossfn.cli.main(["show", "toy_triplet"]) == 0
        assert "Toy triplet loss" in capsys.readouterr().out
        stub = render_stub()
        assert "def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor: ..." in stub


def _torch_inputs(name: str, g: torch.Generator):
    f64 = torch.float64
    if name == "torch_margin_ranking":
        return torch.randn(6, generator=g, dtype=f64), torch.randn(6, generator=g, dtype=f64), torch.sign(torch.randn(6, generator=g, dtype=f64))
    if name == "torch_triplet_margin":
        return tuple(torch.randn(6, 4, generator=g, dtype=f64) for _ in range(3))
    if name == "torch_cosine_embedding":
        return torch.randn(6, 4, generator=g, dtype=f64), torch.randn(6, 4, generator=g, dtype=f64), torch.sign(torch.randn(6, generator=g, dtype=f64))
    if name == "torch_gaussian_nll":
        return torch.randn(6, 2, generator=g, dtype=f64), torch.randn(6, 2, generator=g, dtype=f64), torch.rand(6, 2, generator=g, dtype=f64) + 0.1
    if name == "torch_ctc":
        log_probs = torch.randn(8, 2, 5, generator=g, dtype=f64).log_softmax(2)  # [T, B, C]
        targets = torch.randint(1, 5, (2, 3), generator=g)
        return log_probs, targets, torch.tensor([8, 7]), torch.tensor([3, 2])
    if name == "torch_ce":
        labels = torch.randint(0, 5, (7,), generator=g)
        labels[::3] = -100
        return torch.randn(7, 5, generator=g, dtype=f64), labels
    if name == "kl":
        return torch.randn(4, 5, generator=g, dtype=f64).log_softmax(1), torch.randn(4, 5, generator=g, dtype=f64).softmax(1)
    raise KeyError(name)


TORCH_ROUTE = {  # lossfn name -> (torch function, the hyperparameters to pass, the inputs lossfn finds)
    "torch_margin_ranking": (torch.nn.functional.margin_ranking_loss, {"margin": 0.5}, ("input1", "input2", "target")),
    "torch_triplet_margin": (torch.nn.functional.triplet_margin_loss, {"margin": 0.3, "p": 1.5, "swap": True},
                       ("anchor", "positive", "negative")),
    "torch_cosine_embedding": (torch.nn.functional.cosine_embedding_loss, {"margin": 0.25}, ("input1", "input2", "target")),
    "torch_gaussian_nll": (torch.nn.functional.gaussian_nll_loss, {"full": True, "eps": 1e-4}, ("input", "target", "var")),
    "torch_ctc": (torch.nn.functional.ctc_loss, {"blank": 0, "zero_infinity": True},
            ("log_probs", "targets", "input_lengths", "target_lengths")),
    "torch_ce": (torch.nn.functional.cross_entropy, {"label_smoothing": 0.1}, ("input", "target", "weight")),
    "kl": (torch.nn.functional.kl_div, {"log_target": False}, ("input", "target")),
}


@pytest.mark.parametrize("name", TORCH_ROUTE)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_torch_route_registers_any_torch_loss_and_gives_torchs_number(name, reduction):
    torch_fn, params, inputs = TORCH_ROUTE[name]
    with temporary_registry(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "reduction: 'mean' divides", UserWarning)  # kl_div's own advice
        loss = lossfn.register_torch_loss(name, ["vector"], torch_fn)
        spec = lossfn.get_loss(name)
        assert spec.inputs == inputs
        args = _torch_inputs(name, torch.Generator().manual_seed(1))
        expected = torch_fn(*args, **params, reduction=reduction)
        torch.testing.assert_close(loss(*args, **params, reduction=reduction), expected, rtol=0, atol=0)
        # the module and the config: same number, inputs positional or by name
        module = lossfn.build({"type": name, **params}, reduction=reduction)
        torch.testing.assert_close(module(*args), expected, rtol=0, atol=0)
        torch.testing.assert_close(module(**dict(zip(inputs, args))), expected, rtol=0, atol=0)


def test_torch_route_types_hyperparameters_as_torch_annotates_them():
    with temporary_registry():
        lossfn.register_torch_loss("torch_margin_ranking", ["vector"], torch.nn.functional.margin_ranking_loss)
        lossfn.register_torch_loss("torch_ctc", ["sequence"], torch.nn.functional.ctc_loss)
        margin = {p.name: p for p in lossfn.get_loss("torch_margin_ranking").params}["margin"]
        assert margin.default == 0.0 and isinstance(margin.default, float)  # torch: `margin: float = 0`
        assert lossfn.decode_config({"type": "torch_margin_ranking", "margin": 0.5}).margin == 0.5
        ctc = {p.name: p.default for p in lossfn.get_loss("torch_ctc").params}
        assert ctc == {"blank": 0, "zero_infinity": False} and type(ctc["blank"]) is int
        assert [p.name for p in lossfn.get_loss("torch_margin_ranking").params] == ["margin"]  # size_average/reduce hidden


def test_torch_route_optional_tensor_arguments_are_optional_inputs():
    f64 = torch.float64
    g = torch.Generator().manual_seed(2)
    with temporary_registry():
        bce = lossfn.register_torch_loss("bce_logits", ["binary"], torch.nn.functional.binary_cross_entropy_with_logits)
        spec = lossfn.get_loss("bce_logits")
        assert spec.inputs == ("input", "target", "weight", "pos_weight")
        assert spec.optional_inputs == ("weight", "pos_weight")
        x, y = torch.randn(5, 3, generator=g, dtype=f64), torch.rand(5, 3, generator=g, dtype=f64)
        w, pw = torch.rand(5, 3, generator=g, dtype=f64), torch.rand(3, generator=g, dtype=f64) + 0.5
        expected = torch.nn.functional.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw)
        torch.testing.assert_close(bce(x, y, w, pw), expected, rtol=0, atol=0)
        torch.testing.assert_close(bce(x, y, pos_weight=pw),
                                   torch.nn.functional.binary_cross_entropy_with_logits(x, y, pos_weight=pw))
        module = lossfn.build({"type": "bce_logits"})
        assert list(inspect.signature(module.forward).parameters) == ["input", "target", "weight", "pos_weight"]
        torch.testing.assert_close(module(x, y, w, pw), expected, rtol=0, atol=0)
        # renamed, and the optional inputs left out
        mae = lossfn.register_torch_loss("my_l1", ["number"], torch.nn.functional.l1_loss,
                                         inputs=("predictions", "labels"), same_shape=True)
        assert lossfn.get_loss("my_l1").inputs == ("predictions", "labels")
        with pytest.raises(ValueError, match=r"^my_l1: labels must be of the same shape as predictions \[5, 3\]"):
            mae(x, y[:, :2])


def test_torch_route_checks_bounds_and_hides_what_a_config_cannot_hold():
    with temporary_registry():
        smooth_l1 = lossfn.register_torch_loss(
            "torch_smooth_l1", ["number"], torch.nn.functional.smooth_l1_loss, constraints={"beta": Meta(ge=0)},
            same_shape=True,
        )
        spec = lossfn.get_loss("torch_smooth_l1")
        assert [p.name for p in spec.params] == ["beta"]  # size_average/reduce hidden
        x, y = torch.randn(5, 3), torch.randn(5, 3)
        for reduction in ("mean", "none", "sum"):
            expected = torch.nn.functional.smooth_l1_loss(x, y, beta=0.5, reduction=reduction)
            torch.testing.assert_close(smooth_l1(x, y, beta=0.5, reduction=reduction), expected)
        with pytest.raises(msgspec.ValidationError, match=r"at `\$.beta`"):
            lossfn.nn.TorchSmoothL1(beta=-1.0)
        with pytest.raises(ValueError, match=r"^torch_smooth_l1: beta must be a number >= 0 and <= 1e\+15; got -1.0"):
            smooth_l1(x, y, beta=-1.0)
        with pytest.raises(ValueError, match=r"^torch_smooth_l1: target must be of the same shape as input"):
            smooth_l1(x, y[:, :2])
        assert smooth_l1(torch.zeros(0), torch.zeros(0)).item() == 0.0  # torch: nan
        # a callable parameter stays at torch's default, and the docstring says so
        lossfn.register_torch_loss("triplet_distance", ["vector"], torch.nn.functional.triplet_margin_with_distance_loss)
        spec = lossfn.get_loss("triplet_distance")
        assert [p.name for p in spec.params] == ["margin", "swap"]
        assert "Left at torch's default (a config cannot hold them): distance_function." in spec.doc
        assert "Checked against" not in spec.doc  # it claims nothing that was not checked
        # one line again from the same source (a re-run cell) replaces it, with a warning
        with pytest.warns(lossfn.registry.LossRedefinedWarning):
            lossfn.register_torch_loss("torch_smooth_l1", ["number"], torch.nn.functional.smooth_l1_loss)
        with pytest.raises(lossfn.DuplicateLossError):
            lossfn.register_torch_loss("torch_smooth_l1", ["number"], torch.nn.functional.l1_loss)
    with pytest.raises(TypeError, match="takes no 'reduction' argument"):
        lossfn.register_torch_loss("not_a_loss", ["number"], torch.nn.functional.relu)
