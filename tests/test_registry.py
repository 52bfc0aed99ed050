"""The registry floor: the function contract at registration, look-ups, plugins."""

from __future__ import annotations

import inspect
import sys
import textwrap
from typing import Annotated, Literal

import pytest
import torch
from msgspec import Meta
from torch import Tensor

import lossfn
from lossfn.registry import (
    DEFAULT_LOSS,
    DuplicateLossError,
    Feature,
    LossContractError,
    PluginWarning,
    Reduction,
    UnknownLossError,
    default_loss,
    get_loss,
    losses_for,
    register_loss,
    registered,
    temporary_registry,
)
from lossfn.registry import _registry as registry_module

Temperature = Annotated[float, Meta(gt=0, description="a temperature")]


def test_user_facing_api_from_the_issue():
    spec = lossfn.get_loss("mean_absolute_error")
    assert spec.features == {Feature.NUMBER, Feature.TIMESERIES, Feature.VECTOR}
    assert spec.name == "mean_absolute_error" and spec.aliases == ()
    assert spec.fn is lossfn.functional.mean_absolute_error
    assert spec.config.__name__ == "MeanAbsoluteErrorConfig"
    assert spec.module is lossfn.nn.MeanAbsoluteError
    assert set(lossfn.losses_for("category")) >= {"softmax_cross_entropy"}
    assert all(isinstance(s, lossfn.LossSpec) for s in lossfn.registered().values())
    assert issubclass(Feature, str) and {f.value for f in Feature} >= {
        "binary", "category", "category_distribution", "number", "sequence", "set", "text", "timeseries", "vector"
    }


def test_registered_is_sorted_and_a_copy():
    names = list(registered())
    assert names == sorted(names)
    registered().clear()
    assert list(registered()) == names


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownLossError, match="did you mean 'softmax_cross_entropy'") as info:
        get_loss("softmax_crossentropy")
    assert isinstance(info.value, KeyError) and isinstance(info.value, LookupError)


def test_losses_for_rejects_unknown_feature():
    with pytest.raises(ValueError, match="unknown feature type 'colour'; expected one of: anomaly, binary"):
        losses_for("colour")


def test_losses_for_matches_features():
    for feature in Feature:
        expected = {n for n, s in registered().items() if feature in s.features}
        assert set(losses_for(feature)) == expected == set(losses_for(feature.value))


def test_default_loss_serves_its_feature():
    for feature, name in DEFAULT_LOSS.items():
        if name in registered():
            spec = default_loss(feature)
            assert spec.name == name and feature in spec.features


def _good(logits: Tensor, labels: Tensor, *, t: Temperature = 1.0, reduction: Reduction = "mean") -> Tensor:
    return ((logits - labels) ** 2).mean() * t


BROKEN = {
    "no input": lambda *, reduction="mean": 0,
    "an input defaulting to a number": lambda logits, labels=0, *, reduction="mean": logits,
    "var positional": lambda logits, *labels, reduction="mean": logits,
    "an input named self": lambda self, labels, *, reduction="mean": self,
    "a hyperparameter without a default": lambda logits, labels, *, t, reduction="mean": logits,
    "no reduction": lambda logits, labels: logits,
    "reduction default sum": lambda logits, labels, *, reduction="sum": logits,
    "var keyword": lambda logits, labels, *, reduction="mean", **kw: logits,
}


@pytest.mark.parametrize("why", BROKEN)
def test_contract_violations_fail_at_registration(why):
    with temporary_registry(), pytest.raises(LossContractError, match="loss 'broken'"):
        register_loss("broken", ["number"])(BROKEN[why])


def test_hyperparameter_needs_a_description():
    def no_description(logits, labels, *, t: float = 1.0, reduction: Reduction = "mean"):
        return logits

    with temporary_registry(), pytest.raises(LossContractError, match="'t' needs Annotated"):
        register_loss("broken", ["number"])(no_description)


def test_annotation_msgspec_cannot_use_fails_at_registration():
    def bad_meta(logits, labels, *,
                 w: Annotated[list[float] | None, Meta(min_length=1, description="weights")] = None,
                 reduction: Reduction = "mean"):
        return logits

    with temporary_registry(), pytest.raises(LossContractError, match="'w' has an annotation msgspec cannot use"):
        register_loss("broken", ["number"])(bad_meta)


def test_reserved_parameter_names():
    def uses_weight(logits, labels, *, weight: Annotated[float, Meta(description="w")] = 1.0,
                    reduction: Reduction = "mean"):
        return logits

    with temporary_registry(), pytest.raises(LossContractError, match="'weight' is reserved"):
        register_loss("broken", ["number"])(uses_weight)


def test_duplicate_names_and_aliases():
    with temporary_registry():
        with pytest.raises(DuplicateLossError, match="'mean_squared_error' is already registered"):
            register_loss("mean_squared_error", ["number"])(_good)
        register_loss("fresh_loss", ["number"], aliases=("fresh_alias",))(_good)
        with pytest.raises(DuplicateLossError, match="alias of 'fresh_loss'"):
            register_loss("other_loss", ["number"], aliases=("fresh_alias",))(_good)
    assert "fresh_loss" not in registered()


def test_names_are_snake_case():
    with temporary_registry(), pytest.raises(ValueError, match="snake_case"):
        register_loss("MyLoss", ["number"])(_good)


def test_decorator_returns_a_checking_wrapper_with_the_same_face():
    with temporary_registry():
        checked = register_loss("plain_loss", ["number"])(_good)
        spec = get_loss("plain_loss")
        assert checked is spec.fn and inspect.unwrap(spec.unchecked) is _good and checked.__wrapped__ is _good
        assert checked.__name__ == "_good" and checked.__doc__ == _good.__doc__

        assert inspect.signature(checked) == inspect.signature(_good, eval_str=True)
        x = torch.randn(3)
        assert torch.equal(checked(x, x + 1, t=2.0), _good(x, x + 1, t=2.0))
        with pytest.raises(ValueError, match=r"^plain_loss: t must be a number > 0 and <= 1e\+15; got -2.0$"):
            checked(x, x, t=-2.0)


def test_inputs_kind_and_optional_inputs_are_read_off_the_signature():
    def triplet(anchor, positive, negative, mask=None, *, reduction: Reduction = "mean"):
        return anchor.sum()

    with temporary_registry():
        register_loss("toy_triplet_spec", ["vector"], kind="embeddings")(triplet)
        spec = get_loss("toy_triplet_spec")
        assert spec.inputs == ("anchor", "positive", "negative", "mask")
        assert spec.optional_inputs == ("mask",) and spec.required_inputs == ("anchor", "positive", "negative")
        assert spec.kind == "embeddings" and spec.params == ()
    assert get_loss("mean_squared_error").kind == lossfn.registry.DEFAULT_KIND == "logits"


def test_defaults_out_of_their_own_bounds_fail_at_registration():
    def bad_default(logits, labels, *, t: Annotated[float, Meta(gt=0, description="t")] = 0.0,
                    reduction: Reduction = "mean"):
        return logits

    with temporary_registry(), pytest.raises(LossContractError, match="the default of 't' is invalid"):
        register_loss("broken", ["number"])(bad_default)


def test_class_names_that_collide_are_refused():
    with temporary_registry():
        register_loss("my_mse2", ["number"])(_good)
        with pytest.raises(DuplicateLossError, match=r"'my_mse_2': its class name 'MyMse2' is already that of 'my_mse2'"):
            register_loss("my_mse_2", ["number"])(lambda logits, labels, *, reduction="mean": logits)
        with pytest.raises(DuplicateLossError, match="class name 'MyMse2'"):
            register_loss("other_name", ["number"], aliases=("my_mse_2",))(
                lambda logits, labels, *, reduction="mean": logits
            )
        assert "my_mse_2" not in registered() and "other_name" not in registered()


def test_registering_the_same_function_again_replaces_it_with_a_warning():
    """A notebook cell run twice: the same module and qualified name, a new function object."""
    namespace: dict = {}
    source = textwrap.dedent(
        """
        import lossfn
        @lossfn.register_loss("rerun_loss", ["number"], aliases=("rerun_alias",))
        def rerun_loss(logits, labels, *, reduction="mean"):
            return (logits - labels).abs().mean() * VERSION
        """
    )
    with temporary_registry():
        exec(compile(source, "<cell>", "exec"), namespace | {"VERSION": 1.0, "__name__": "notebook"})
        first = get_loss("rerun_loss")
        second_namespace = {"VERSION": 2.0, "__name__": "notebook"}
        with pytest.warns(lossfn.registry.LossRedefinedWarning, match="'rerun_loss' is registered again"):
            exec(compile(source, "<cell>", "exec"), second_namespace)
        second = get_loss("rerun_loss")
        assert second is not first and get_loss("rerun_alias") is second
        x = torch.ones(2)
        assert second.fn(x, torch.zeros(2)).item() == 2.0
        assert lossfn.build({"type": "rerun_loss"})(x, torch.zeros(2)).item() == 2.0  # the new config and module
        # another function under the same name is still an error
        with pytest.raises(DuplicateLossError, match="'rerun_loss' is already registered"):
            register_loss("rerun_loss", ["number"])(_good)
    assert "rerun_loss" not in registered()


def test_two_threads_deriving_at_once_get_one_class(monkeypatch):
    """Derivation runs under a lock: before, two threads could derive two config classes,
    after which every build of the loss failed (``X.from_config takes a XConfig; got XConfig``)."""
    import threading
    import time

    from lossfn.registry import _spec

    original = _spec._DERIVERS["config"]

    def slow(spec):  # widen the window in which two threads would both derive
        time.sleep(0.05)
        return original(spec)

    monkeypatch.setitem(_spec._DERIVERS, "config", slow)
    with temporary_registry():
        register_loss("raced_loss", ["number"])(_good)
        spec = get_loss("raced_loss")
        barrier = threading.Barrier(8)
        seen, errors = [], []

        def use():
            barrier.wait()
            try:
                seen.append(spec.config)
                lossfn.build({"type": "raced_loss", "t": 2.0})
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=use) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors and len({id(cls) for cls in seen}) == 1


def test_unknown_feature_at_registration():
    with temporary_registry(), pytest.raises(ValueError, match="loss 'x_loss': unknown feature type 'colour'"):
        register_loss("x_loss", ["colour"])(_good)


def _install_plugin(tmp_path, monkeypatch, module_body: str, *, name="demo_plugin"):
    """A distribution on sys.path whose entry point (group lossfn.losses) imports a module."""
    package = tmp_path / f"{name}_pkg.py"
    package.write_text(textwrap.dedent(module_body))
    dist = tmp_path / f"{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[lossfn.losses]\n{name} = {name}_pkg\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry_module, "_PLUGINS_LOADED", False)


def test_entry_point_plugins_register_losses(tmp_path, monkeypatch):
    body = """
        from typing import Annotated
        from msgspec import Meta
        import lossfn

        @lossfn.register_loss("plugin_squared_error", ["number"])
        def plugin_squared_error(logits, labels, *, scale: Annotated[float, Meta(gt=0, description="scale")] = 1.0,
                                 reduction="mean"):
            return lossfn.functional.mean_squared_error(logits * scale, labels * scale, reduction=reduction)
    """
    _install_plugin(tmp_path, monkeypatch, body)
    with temporary_registry():
        spec = get_loss("plugin_squared_error")  # the first read loads the plugins
        module = lossfn.build({"type": "plugin_squared_error", "scale": 2.0})
        x, y = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
        assert module(x, y).item() == pytest.approx(((2.0**2) + (4.0**2)) / 2)
        assert spec.fn.__module__ == "demo_plugin_pkg"
    sys.modules.pop("demo_plugin_pkg", None)


def test_broken_plugin_warns_and_lossfn_still_works(tmp_path, monkeypatch):
    _install_plugin(tmp_path, monkeypatch, "raise RuntimeError('boom')\n", name="broken_plugin")
    with pytest.warns(PluginWarning, match="broken_plugin.*boom"):
        names = registered()
    assert "mean_squared_error" in names


def test_a_literal_hyperparameter_is_checked_in_the_one_message_form():
    """A ``Literal[...]`` hyperparameter (``dpo``'s ``loss_type``): the pure function names the
    loss, the argument and the choices; the config and the schema hold the same choices."""

    def toy_choice(
        logits: Tensor,
        labels: Tensor,
        *,
        kind: Annotated[Literal["sum", "max"], Meta(description="how to combine")] = "sum",
        reduction: lossfn.Reduction = "mean",
    ) -> Tensor:
        value = (logits - labels).abs()
        return lossfn.functional.reduce_loss(value if kind == "sum" else value * 2, reduction, name="toy_choice")

    with temporary_registry():
        fn = lossfn.register_loss("toy_choice", ["number"])(toy_choice)
        x = torch.ones(3)
        assert fn(x, torch.zeros(3), kind="max").item() == 2.0
        for bad in ("min", 1, True, None):
            with pytest.raises(ValueError, match=r"^toy_choice: kind must be one of 'max', 'sum'; got "):
                fn(x, torch.zeros(3), kind=bad)
        schema = lossfn.json_schema()["$defs"]["ToyChoiceConfig"]["properties"]["kind"]
        assert sorted(schema["enum"]) == ["max", "sum"]
        with pytest.raises(Exception, match=r"at `\$.kind`"):
            lossfn.decode_config({"type": "toy_choice", "kind": "min"})
