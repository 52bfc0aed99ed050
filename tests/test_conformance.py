"""The conformance suite: every registered loss, present and future, against the contract.

Parametrized over the registry itself (``lossfn.registered()``), with the inputs
and the independent reference of each loss taken from the catalog in
``tests/cases``. A loss without a case fails ``test_every_loss_has_a_case``.
"""

from __future__ import annotations

import copy
import inspect
import io
import itertools
import math
import pickle
import typing
from typing import Any

import jsonschema
import msgspec
import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

import lossfn
from lossfn.registry import REDUCTIONS

from cases import Case, all_cases

CASES = all_cases()
NAMES = list(lossfn.registered())
BATCH = 6


def case_of(name: str) -> Case:
    if name not in CASES:
        pytest.fail(f"loss {name!r} has no Case in tests/cases: add one so the conformance suite covers it")
    return CASES[name]


def skip_if(case: Case, check: str) -> None:
    if check in case.skip:
        pytest.skip(f"{case.name}: {case.skip[check]}")


def settings(name: str) -> list[Any]:
    """(name, params) pairs for parametrization, with readable ids."""
    case = CASES.get(name)
    params = case.params if case else ({},)
    return [pytest.param(name, p, id=f"{name}-{i}") for i, p in enumerate(params)]


ALL_SETTINGS = [s for name in NAMES for s in settings(name)]


def sample(case: Case, dtype=torch.float64, batch: int = BATCH, seed: int = 0):
    return case.make(batch, dtype, torch.Generator().manual_seed(seed))


def call(name: str, logits, labels, params, reduction="mean"):
    return lossfn.get_loss(name).fn(logits, labels, **params, reduction=reduction)


def close(actual, expected, case: Case | None = None, *, rtol=1e-7, atol=1e-9):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=False)


# -- the catalog ------------------------------------------------------------------------


def test_every_loss_has_a_case():
    missing = sorted(set(NAMES) - set(CASES))
    assert not missing, f"losses without a Case in tests/cases: {missing}"


def test_every_case_names_a_registered_loss():
    unknown = sorted(set(CASES) - set(NAMES))
    assert not unknown, f"cases for losses that are not registered: {unknown}"


# -- values and reductions ------------------------------------------------------------


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_reference(name, params, reduction):
    case = case_of(name)
    if case.reference is None:
        pytest.skip(f"{name}: no generic reference (its own test file checks the values)")
    logits, labels = sample(case)
    expected = case.reference(logits, labels, reduction=reduction, **params)
    close(call(name, logits, labels, params, reduction), expected)


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_reductions_agree(name, params):
    case = case_of(name)
    skip_if(case, "reduction_consistency")
    logits, labels = sample(case)
    none = call(name, logits, labels, params, "none")
    assert tuple(none.shape) == tuple(case.none_shape(logits, labels))
    close(call(name, logits, labels, params, "sum"), none.sum())
    weights = case.mean_weights(logits, labels, **params)
    expected_mean = none.mean() if weights is None else none.sum() / weights.sum()
    close(call(name, logits, labels, params, "mean"), expected_mean)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_reduction_names_the_loss(name):
    case = case_of(name)
    logits, labels = sample(case)
    with pytest.raises(ValueError, match=rf"{name}.*reduction"):
        call(name, logits, labels, {}, "batchmean")


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_batch_is_a_clear_error(name):
    case = case_of(name)
    logits, _ = sample(case, batch=BATCH)
    _, labels = sample(case, batch=BATCH + 1)
    with pytest.raises(ValueError, match=rf"^{name}: labels"):
        call(name, logits, labels, {})


@pytest.mark.parametrize("name", NAMES)
def test_function_is_pure(name):
    """No in-place change of the inputs; the same inputs give the same number."""
    case = case_of(name)
    logits, labels = sample(case)
    before = (logits.clone(), labels.clone())
    first = call(name, logits, labels, {})
    second = call(name, logits, labels, {})
    torch.testing.assert_close(logits, before[0], rtol=0, atol=0)
    torch.testing.assert_close(labels, before[1], rtol=0, atol=0)
    torch.testing.assert_close(first, second, rtol=0, atol=0)


# -- configs ------------------------------------------------------------------------


def _function_defaults(name: str) -> dict[str, Any]:
    signature = inspect.signature(lossfn.get_loss(name).fn)
    return {
        p.name: p.default
        for p in signature.parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name != "reduction"
    }


@pytest.mark.parametrize("name", NAMES)
def test_config_defaults_equal_function_defaults(name):
    config = lossfn.get_loss(name).config()
    fields = msgspec.structs.asdict(config)
    assert fields.pop("weight") == 1.0
    assert fields == _function_defaults(name)
    assert msgspec.to_builtins(config)["type"] == name


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
@pytest.mark.parametrize("fmt", ["json", "yaml", "toml", "dict"])
def test_config_round_trip(name, params, fmt):
    config = lossfn.decode_config({"type": name, "weight": 0.5, **params})
    assert config.weight == 0.5
    text = lossfn.encode_config(config, format=fmt)
    if fmt == "yaml":
        text = msgspec.yaml.decode(text)
    elif fmt == "toml":
        text = msgspec.toml.decode(text)
    again = lossfn.decode_config(text)
    assert again == config and type(again) is type(config)


@pytest.mark.parametrize("name", NAMES)
def test_config_rejects_unknown_fields(name):
    with pytest.raises(msgspec.ValidationError, match="unknown field `no_such_field`"):
        lossfn.decode_config({"type": name, "no_such_field": 1})


def _violations(name: str):
    """(field, bad value) for every numeric bound written in the loss's signature."""
    for param in lossfn.get_loss(name).params:
        info = msgspec.inspect.type_info(param.annotation)
        while isinstance(info, msgspec.inspect.Metadata):
            info = info.type
        if not isinstance(info, (msgspec.inspect.FloatType, msgspec.inspect.IntType)):
            continue
        for bound, step in (("gt", 0), ("ge", -1), ("lt", 0), ("le", 1)):
            value = getattr(info, bound)
            if value is not None:
                yield param.name, value + step
    yield "weight", -1.0


VIOLATIONS = [pytest.param(n, f, v, id=f"{n}-{f}={v}") for n in NAMES for f, v in _violations(n)]


@pytest.mark.parametrize("name,field,value", VIOLATIONS)
def test_constraint_violation_names_the_path(name, field, value):
    with pytest.raises(msgspec.ValidationError, match=rf"at `\$\.{field}`"):
        lossfn.decode_config({"type": name, field: value})
    with pytest.raises(msgspec.ValidationError, match=rf"at `\$\.{field}`"):
        lossfn.get_loss(name).module(**{field: value})
    document = {"type": name, field: value}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, lossfn.json_schema())


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_json_schema_validates_configs(name, params):
    schema = lossfn.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    config = lossfn.decode_config({"type": name, **params})
    jsonschema.validate(lossfn.encode_config(config, format="dict"), schema)
    jsonschema.validate({"type": name}, schema)
    for feature in lossfn.get_loss(name).features:
        jsonschema.validate({"type": name}, lossfn.json_schema(feature))


@pytest.mark.parametrize("name", NAMES)
def test_config_type_of_each_feature_holds_the_loss(name):
    spec = lossfn.get_loss(name)
    for feature in spec.features:
        members = typing.get_args(lossfn.config_type(feature)) or (lossfn.config_type(feature),)
        assert spec.config in members
        assert lossfn.decode_config({"type": name}, feature=feature) == spec.config()
    for alias in spec.aliases:
        assert isinstance(lossfn.decode_config({"type": alias}), spec.config)


# -- modules ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_module_signature_shows_the_parameters(name):
    spec = lossfn.get_loss(name)
    module_cls = getattr(lossfn.nn, spec.class_name)
    assert module_cls is spec.module and issubclass(module_cls, torch.nn.Module)
    parameters = inspect.signature(module_cls).parameters
    expected = {
        **_function_defaults(name), "weight": 1.0, "reduction": "mean", "validate_inputs": True, "vocabulary": None,
    }
    assert {k: p.default for k, p in parameters.items()} == expected
    assert all(p.kind is p.KEYWORD_ONLY for p in parameters.values())


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_module_equals_function(name, params, reduction):
    case = case_of(name)
    logits, labels = sample(case)
    spec = lossfn.get_loss(name)
    direct = spec.module(**params, reduction=reduction)
    from_config = lossfn.build({"type": name, **params}, reduction=reduction)
    expected = call(name, logits, labels, params, reduction)
    close(direct(logits, labels), expected)
    close(from_config(logits, labels), expected)


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_module_round_trips(name, params):
    spec = lossfn.get_loss(name)
    module = spec.module(**params, weight=2.0)
    config = lossfn.decode_config({"type": name, "weight": 2.0, **params})
    assert module.config == config
    assert spec.module.from_config(config).config == config
    assert spec.module.get_schema_cls() is spec.config
    for key, value in params.items():
        if value != spec.defaults[key]:
            assert f"{key}={getattr(config, key)!r}" in repr(module)
    clone = pickle.loads(pickle.dumps(module))
    deep = copy.deepcopy(module)
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    loaded = spec.module(**params)
    loaded.load_state_dict(torch.load(buffer))
    case = case_of(name)
    logits, labels = sample(case, dtype=torch.float32)
    expected = module(logits, labels)
    assert clone.config.weight == deep.config.weight == 2.0 and loaded.config.weight == 1.0
    for other in (clone, deep, loaded):
        assert type(other) is type(module)
        torch.testing.assert_close(other(logits, labels), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_module_to_moves_tensor_parameters(name, params):
    spec = lossfn.get_loss(name)
    module = spec.module(**params).to(torch.float64)
    tensor_params = [p.name for p in spec.params if p.tensor]
    for key in tensor_params:
        value = getattr(module, key)
        assert (value is None) == (params.get(key, spec.defaults[key]) is None)
        if value is not None:
            assert value.dtype == torch.float64 and key in module.state_dict()
    set_tensors = {key for key in tensor_params if getattr(module, key) is not None}
    assert set(module.state_dict()) == set_tensors  # buffers only, scalars stay plain attributes


# -- transforms ----------------------------------------------------------------------


def _scalar_loss(name, labels, params, reduction="mean"):
    return lambda logits: call(name, logits, labels, params, reduction)


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_grad_equals_autograd(name, params):
    case = case_of(name)
    logits, labels = sample(case)
    expected = torch.autograd.grad(call(name, logits.requires_grad_(), labels, params), logits)[0]
    close(grad(_scalar_loss(name, labels, params))(logits.detach()), expected)


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_vmap_over_problems_equals_loop(name, params):
    case = case_of(name)
    problems = [sample(case, seed=s, batch=4) for s in range(3)]
    stacked_logits = torch.stack([p[0] for p in problems])
    stacked_labels = torch.stack([p[1] for p in problems])
    for reduction in REDUCTIONS:
        fn = lambda x, y: call(name, x, y, params, reduction)  # noqa: E731
        expected = torch.stack([fn(x, y) for x, y in problems])
        close(vmap(fn)(stacked_logits, stacked_labels), expected)
    # the batch dimension may sit anywhere; vmap of vmap works too
    fn = lambda x, y: call(name, x, y, params)  # noqa: E731
    moved = vmap(fn, in_dims=(-1, None))(stacked_logits.movedim(0, -1), problems[0][1])
    close(moved, torch.stack([fn(x, problems[0][1]) for x, _ in problems]))
    twice = vmap(vmap(fn))(stacked_logits.unsqueeze(0).repeat(2, *[1] * stacked_logits.ndim),
                           stacked_labels.unsqueeze(0).repeat(2, *[1] * stacked_labels.ndim))
    close(twice, torch.stack([fn(x, y) for x, y in problems]).unsqueeze(0).repeat(2, 1))


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_per_example_gradients(name, params):
    """vmap(grad) over examples equals one autograd call per example."""
    case = case_of(name)
    logits, labels = sample(case)
    fn = lambda x, y: call(name, x.unsqueeze(0), y.unsqueeze(0), params)  # noqa: E731
    per_example = vmap(grad(fn))(logits, labels)
    for i in range(logits.shape[0]):
        x = logits[i : i + 1].clone().requires_grad_()
        expected = torch.autograd.grad(call(name, x, labels[i : i + 1], params), x)[0][0]
        close(per_example[i], expected)


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_jacrev_equals_jacfwd_and_jvp(name, params):
    case = case_of(name)
    logits, labels = sample(case, batch=3)
    fn = _scalar_loss(name, labels, params, "none")
    reverse, forward = jacrev(fn)(logits), jacfwd(fn)(logits)
    close(reverse, forward)
    tangent = torch.randn(logits.shape, generator=torch.Generator().manual_seed(1), dtype=logits.dtype)
    _, directional = jvp(fn, (logits,), (tangent,))
    close(directional, (reverse * tangent).flatten(reverse.ndim - logits.ndim).sum(-1))


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_hessian(name, params):
    case = case_of(name)
    logits, labels = sample(case, batch=3)
    fn = _scalar_loss(name, labels, params)
    h = hessian(fn)(logits)
    assert h.shape == logits.shape * 2 and torch.isfinite(h).all()
    if case.twice_differentiable:
        close(h, torch.autograd.functional.hessian(fn, logits))


def _float_hyperparameters(name: str):
    """Scalar float hyperparameters, a grid of valid values from their bounds, and the
    other parameters they need (a ``Check`` with ``uses``: taken from a case setting)."""
    for param in lossfn.get_loss(name).params:
        uses = {u for check in param.checks for u in check.uses}
        base = {}
        if uses:
            settings_ = [p for p in CASES[name].params if all(p.get(u) is not None for u in uses)] if name in CASES else []
            if not settings_:
                continue  # no case gives the fields it depends on
            base = {k: v for k, v in settings_[0].items() if k in uses}
        info = msgspec.inspect.type_info(param.annotation)
        while isinstance(info, msgspec.inspect.Metadata):
            info = info.type
        if not isinstance(info, msgspec.inspect.FloatType) or param.tensor:
            continue
        low = info.gt if info.gt is not None else info.ge
        high = info.lt if info.lt is not None else info.le
        low = 0.0 if low is None else float(low)
        high = low + 4.0 if high is None else float(high)
        grid = [low + (high - low) * f for f in (0.1, 0.5, 0.9)]
        yield param.name, sorted({float(param.default), *grid}), base


HYPER = [pytest.param(n, p, g, b, id=f"{n}-{p}") for n in NAMES for p, g, b in _float_hyperparameters(n)]


@pytest.mark.parametrize("name,param,grid,base", HYPER)
def test_tensor_hyperparameters_vmap_and_grad(name, param, grid, base):
    """A hyperparameter may be a 0-d tensor: vmap over a grid, grad with respect to it."""
    case = case_of(name)
    skip_if(case, "tensor_hyperparameters")
    logits, labels = sample(case)
    fn = lambda value: call(name, logits, labels, {**base, param: value})  # noqa: E731
    values = torch.tensor(grid, dtype=logits.dtype)
    expected = torch.stack([fn(v) for v in grid])
    assert (expected - expected[0]).abs().max() > 1e-9, f"{param} has no effect on this grid"
    close(vmap(fn)(values), expected)
    close(torch.stack([fn(v) for v in values]), expected)
    gradients = vmap(grad(fn))(values)
    assert torch.isfinite(gradients).all() and gradients.abs().max() > 0


@pytest.mark.parametrize("name", NAMES)
def test_torch_compile_fullgraph(name):
    case = case_of(name)
    skip_if(case, "compile")
    params = case.params[-1]
    logits, labels = sample(case, dtype=torch.float32)
    fn = lossfn.get_loss(name).fn
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, y: fn(x, y, **params, reduction="none"), fullgraph=True)
    rtol, atol = case.tolerance
    torch.testing.assert_close(compiled(logits, labels), fn(logits, labels, **params, reduction="none"), rtol=rtol, atol=atol)


# -- numerics ------------------------------------------------------------------------


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_extreme_inputs_are_finite(name, params):
    case = case_of(name)
    logits, labels = sample(case, dtype=torch.float32)
    logits = (logits.sign() * case.extreme).requires_grad_()
    loss = call(name, logits, labels, params)
    (gradient,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(loss) and torch.isfinite(gradient).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(name, dtype):
    case = case_of(name)
    params = case.params[-1]
    logits, labels = sample(case, dtype=torch.float32)
    reference = call(name, logits, labels, params)
    half_labels = labels.to(dtype) if labels.is_floating_point() else labels
    half = logits.to(dtype).requires_grad_()
    loss = call(name, half, half_labels, params)
    (gradient,) = torch.autograd.grad(loss, half)
    assert loss.dtype == dtype and gradient.dtype == dtype
    assert torch.isfinite(loss) and torch.isfinite(gradient).all()
    torch.testing.assert_close(loss.float(), reference, rtol=2e-2, atol=2e-2)
