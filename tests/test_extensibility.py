"""Adding a loss = writing one function with its decorator line; the rest is derived.

These tests register brand-new losses inside the test and get their config, module,
JSON Schema, CLI page and conformance for free, without touching any other file.
"""

from __future__ import annotations

import pickle
from typing import Annotated

import jsonschema
import msgspec
import pytest
import torch
from msgspec import Meta
from torch import Tensor

import lossfn
from lossfn.cli import loss_page, loss_table
from lossfn.registry import AsTensor, Check, Reduction, temporary_registry


def log_cosh(
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
    return lossfn.functional.reduce_loss(value.mean(-1), reduction, name="log_cosh")


def test_a_new_loss_gets_everything_for_free(capsys):
    with temporary_registry():
        before_schema = lossfn.json_schema()
        lossfn.register_loss("log_cosh", ["number", "vector"], aliases=("logcosh",))(log_cosh)

        # config: derived from the signature, in the union at once
        cfg = lossfn.decode_config({"type": "log_cosh", "scale": 2, "per_dim": [1, 2]})
        assert type(cfg).__name__ == "LogCoshConfig" and cfg.scale == 2.0 and cfg.weight == 1.0
        aliased = lossfn.decode_config('{"type": "logcosh"}')  # an alias decodes, and encodes back as written
        assert isinstance(aliased, lossfn.get_loss("log_cosh").config)
        assert lossfn.encode_config(aliased, format="dict") == {"type": "logcosh", "scale": 1.0, "per_dim": None, "weight": 1.0}
        assert lossfn.build(aliased).config is aliased
        with pytest.raises(msgspec.ValidationError, match=r"> 0.0 - at `\$.scale`"):
            lossfn.decode_config({"type": "log_cosh", "scale": 0})
        assert cfg in [lossfn.decode_config(cfg, feature="vector")]

        # module: a real class in lossfn.nn, with buffers, pickling, build()
        module = lossfn.build(cfg)
        assert type(module) is lossfn.nn.LogCosh and module.per_dim.tolist() == [1.0, 2.0]
        x = torch.randn(4, 2, dtype=torch.float64)
        y = torch.randn(4, 2, dtype=torch.float64)
        r = (x - y) / 2
        expected = (torch.log(torch.cosh(r)) * torch.tensor([1.0, 2.0], dtype=torch.float64)).mean(-1).mean()
        torch.testing.assert_close(module(x, y), expected)
        assert type(pickle.loads(pickle.dumps(module))) is lossfn.nn.LogCosh
        assert lossfn.functional.log_cosh is log_cosh

        # JSON Schema: grows by the new config, validates it
        schema = lossfn.json_schema()
        assert "LogCoshConfig" in schema["$defs"] and "LogCoshConfig" not in before_schema["$defs"]
        jsonschema.validate({"type": "log_cosh", "scale": 3.0}, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"type": "log_cosh", "scale": -1.0}, schema)

        # CLI: in the table and with its own page
        assert "log_cosh" in loss_table("vector") and "log_cosh" not in loss_table("category")
        page = loss_page("logcosh")
        assert "scale (float; default 1.0; > 0.0)" in page and "divides the residual" in page
        assert lossfn.cli.main(["show", "log_cosh"]) == 0
        assert "Log-cosh loss" in capsys.readouterr().out

    # gone again once the block ends: the union follows the registry
    with pytest.raises(msgspec.ValidationError, match="Unknown loss 'log_cosh'"):
        lossfn.decode_config({"type": "log_cosh"})
    assert "LogCoshConfig" not in lossfn.json_schema()["$defs"]


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


def test_torch_route_registers_a_torch_loss_in_one_line():
    with temporary_registry():
        smooth_l1 = lossfn.register_torch_loss(
            "smooth_l1", ["number"], torch.nn.functional.smooth_l1_loss, constraints={"beta": Meta(ge=0)}
        )
        spec = lossfn.get_loss("smooth_l1")
        assert [p.name for p in spec.params] == ["beta"]  # size_average/reduce hidden
        x, y = torch.randn(5, 3), torch.randn(5, 3)
        for reduction in ("mean", "none"):
            expected = torch.nn.functional.smooth_l1_loss(x, y, beta=0.5, reduction="none").mean(1)
            expected = expected.mean() if reduction == "mean" else expected
            torch.testing.assert_close(smooth_l1(x, y, beta=0.5, reduction=reduction), expected)
        with pytest.raises(msgspec.ValidationError, match=r"at `\$.beta`"):
            lossfn.nn.SmoothL1(beta=-1.0)
        with pytest.raises(ValueError, match=r"^smooth_l1: labels must be of the same shape"):
            smooth_l1(x, y[:, :2])
