"""The conformance suite: every registered loss, present and future, against the contract.

Parametrized over the registry itself (``lossfn.registered()``), with the inputs
and the independent reference of each loss taken from the catalog in
``tests/cases``. A loss without a case fails ``test_every_loss_has_a_case``.
Every positional input takes part: each is vmapped over (together and alone),
and every floating-point one is differentiated.
"""

from __future__ import annotations

import copy
import inspect
import io
import math
import pickle
import re
import typing
from typing import Any

import jsonschema
import msgspec
import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

import lossfn
from lossfn.registry import FLOAT_MAX
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


#: The checks a test runs part of before it calls ``skip_if`` (the rest of the test still runs).
PARTIAL_CHECKS = {"compile", "reduction_consistency", "tensor_hyperparameters"}


@pytest.fixture(autouse=True)
def _skip_what_the_case_says(request):
    """A case may skip a whole generic check that does not apply to its loss (a
    batch-coupled loss has no single-example gradient): ``Case.skip`` keyed by the
    test's name without ``test_``, with the reason shown in the report."""
    callspec = getattr(request.node, "callspec", None)
    name = callspec.params.get("name") if callspec is not None else None
    if name in CASES:
        check = request.node.originalname.removeprefix("test_")
        if check in CASES[name].skip:
            pytest.skip(f"{name}: {CASES[name].skip[check]}")


def settings(name: str) -> list[Any]:
    """(name, params) pairs for parametrization, with readable ids."""
    case = CASES.get(name)
    params = case.params if case else ({},)
    return [pytest.param(name, p, id=f"{name}-{i}") for i, p in enumerate(params)]


ALL_SETTINGS = [s for name in NAMES for s in settings(name)]


def sample(case: Case, dtype=torch.float64, batch: int = BATCH, seed: int = 0) -> tuple:
    return tuple(case.make(batch, dtype, torch.Generator().manual_seed(seed)))


def call(name: str, inputs, params, reduction="mean"):
    return lossfn.get_loss(name).fn(*inputs, **params, reduction=reduction)


def floating(inputs) -> list[int]:
    """Positions of the floating-point inputs (those a gradient is taken with respect to)."""
    return [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.is_floating_point()]


def tensors(inputs) -> list[int]:
    return [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor)]


def replaced(inputs, position: int, value) -> tuple:
    return tuple(value if i == position else x for i, x in enumerate(inputs))


def close(actual, expected, *, rtol=1e-7, atol=1e-9):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=False)


# -- the catalog ------------------------------------------------------------------------


def test_every_loss_has_a_case():
    missing = sorted(set(NAMES) - set(CASES))
    assert not missing, f"losses without a Case in tests/cases: {missing}"


def test_every_case_names_a_registered_loss():
    unknown = sorted(set(CASES) - set(NAMES))
    assert not unknown, f"cases for losses that are not registered: {unknown}"


def test_every_skip_names_a_check():
    """A misspelt skip would silently skip nothing: each key names a test here or a partial check."""
    tests = {n.removeprefix("test_") for n in globals() if n.startswith("test_")}
    for case in CASES.values():
        unknown = set(case.skip) - tests - PARTIAL_CHECKS
        assert not unknown, f"{case.name}: skip keys that name no check: {sorted(unknown)}"


@pytest.mark.parametrize("name", NAMES)
def test_case_gives_every_input_and_the_kind(name):
    spec = lossfn.get_loss(name)
    case = case_of(name)
    inputs = sample(case)
    assert len(spec.required_inputs) <= len(inputs) <= len(spec.inputs)
    assert spec.kind == case.kind  # what the catalog says the loss consumes (Ludwig's get_loss_inputs())


# -- values and reductions ------------------------------------------------------------


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_reference(name, params, reduction):
    case = case_of(name)
    if case.reference is None:
        pytest.skip(f"{name}: no generic reference (its own test file checks the values)")
    inputs = sample(case)
    expected = case.reference(*inputs, reduction=reduction, **params)
    close(call(name, inputs, params, reduction), expected)


TWINS = [
    pytest.param(name, twin, id=f"{name}-{twin.label}")
    for name in NAMES if name in CASES for twin in CASES[name].twins
]


@pytest.mark.parametrize("name,twin", TWINS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_twin_gives_the_same_number(name, twin, reduction):
    """A loss with a ``torch.nn.functional`` twin gives torch's number for every reduction
    on every shape torch accepts (the empty batch's mean aside: 0, where torch gives nan)."""
    inputs = tuple(twin.make(torch.float64, torch.Generator().manual_seed(3)))
    expected = twin.torch(*inputs, reduction=reduction)
    actual = call(name, inputs, dict(twin.params), reduction)
    if reduction == "mean" and inputs[0].numel() == 0:
        assert torch.isnan(expected) and actual.item() == 0.0
        return
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    close(actual, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_reductions_agree(name, params):
    case = case_of(name)
    inputs = sample(case)
    none = call(name, inputs, params, "none")
    assert tuple(none.shape) == tuple(case.none_shape(*inputs))
    close(call(name, inputs, params, "sum"), none.sum())
    skip_if(case, "reduction_consistency")
    weights = case.mean_weights(*inputs, **params)
    expected_mean = none.mean() if weights is None else none.sum() / weights.sum()
    close(call(name, inputs, params, "mean"), expected_mean)


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_distributed_mean_takes_every_weighted_mean(name, params):
    """``lossfn.distributed.mean`` takes every loss whose mean is a weighted mean (its
    Σw is the case's independent ``mean_weights``, or the count of the ``"none"``
    output) and refuses, by name, exactly the losses whose mean is not one."""
    case = case_of(name)
    inputs = sample(case)
    if "reduction_consistency" in case.skip:
        with pytest.raises(ValueError, match=rf"^{name}: distributed.mean needs a loss whose mean"):
            lossfn.distributed.mean(name, *inputs, **params)
        return
    none = call(name, inputs, params, "none")
    weights = case.mean_weights(*inputs, **params)
    expected_sum = none.numel() if weights is None else weights.sum()
    close(lossfn.distributed.weight_sum(name, *inputs, **params), torch.as_tensor(expected_sum, dtype=none.dtype))
    positions = floating(inputs)[:1]
    leaf = inputs[positions[0]].clone().requires_grad_()
    leafy = replaced(inputs, positions[0], leaf)
    got = lossfn.distributed.mean(name, *leafy, **params)
    mean = call(name, leafy, params, "mean")
    close(got, mean)
    close(*(torch.autograd.grad(value, leaf)[0] for value in (got, mean)))
    # a global Σw twice this batch's (another rank, or micro-batch, of the same size): half
    close(lossfn.distributed.mean(name, *inputs, weight_sum=2 * expected_sum, **params), mean.detach() / 2)


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_mean_is_zero_with_a_zero_gradient(name):
    """One answer in every loss: nothing to average is 0 (torch: nan), and nothing flows back:
    the gradient with respect to a tensor hyperparameter is exactly 0 (a 0/0 would make it NaN)."""
    case = case_of(name)
    inputs = sample(case, batch=0)
    assert inputs[0].numel() == 0
    leaf = inputs[0].clone().requires_grad_()
    mean = call(name, replaced(inputs, 0, leaf), {}, "mean")
    (gradient,) = torch.autograd.grad(mean, leaf, allow_unused=True)
    assert mean.shape == () and mean.item() == 0.0
    assert gradient is None or gradient.shape == leaf.shape
    for param, grid, base in _float_hyperparameters(name):
        value = torch.tensor(grid[len(grid) // 2], dtype=inputs[0].dtype, requires_grad=True)
        (by_param,) = torch.autograd.grad(call(name, inputs, {**base, param: value}, "mean"), value, allow_unused=True)
        assert by_param is None or by_param.item() == 0.0, (param, by_param)
    assert call(name, inputs, {}, "sum").item() == 0.0
    assert tuple(call(name, inputs, {}, "none").shape) == tuple(case.none_shape(*inputs))


@pytest.mark.parametrize("name", NAMES)
def test_unknown_reduction_names_the_loss(name):
    inputs = sample(case_of(name))
    with pytest.raises(ValueError, match=rf"^{name}: reduction"):
        call(name, inputs, {}, "batchmean")
    with pytest.raises(ValueError, match=rf"^{name}: reduction"):
        lossfn.get_loss(name).unchecked(*inputs, reduction="batchmean")  # the shared helper says it too


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_batch_is_a_clear_error(name):
    spec = lossfn.get_loss(name)
    inputs = sample(case_of(name), batch=BATCH)
    other = sample(case_of(name), batch=BATCH + 1)
    for position in range(1, len(spec.required_inputs)):
        with pytest.raises(ValueError, match=rf"^{name}: {spec.inputs[position]} "):
            call(name, replaced(inputs, position, other[position]), {})


@pytest.mark.parametrize("name", NAMES)
def test_function_is_pure(name):
    """No in-place change of the inputs; the same inputs give the same number."""
    inputs = sample(case_of(name))
    before = [x.clone() for x in inputs if isinstance(x, torch.Tensor)]
    first = call(name, inputs, {})
    second = call(name, inputs, {})
    for x, kept in zip([x for x in inputs if isinstance(x, torch.Tensor)], before):
        torch.testing.assert_close(x, kept, rtol=0, atol=0)
    torch.testing.assert_close(first, second, rtol=0, atol=0)


INTEGER_LABELS = [n for n in NAMES if n in CASES and not sample(CASES[n])[1].is_floating_point()]


@pytest.mark.parametrize("name", INTEGER_LABELS)
def test_integer_labels_of_any_index_dtype_or_a_clear_error(name):
    """int32/int16 labels give the int64 number; uint8 (which indexes as a mask) gives it or is refused."""
    inputs = sample(case_of(name))
    labels = inputs[1]
    expected = call(name, inputs, {})
    for dtype in (torch.int32, torch.int16, torch.uint8):
        try:
            value = call(name, replaced(inputs, 1, labels.to(dtype)), {})
        except ValueError as error:
            assert dtype is torch.uint8 and str(error).startswith(f"{name}: labels must be"), error
            continue
        close(value, expected)


@pytest.mark.parametrize("name", NAMES)
def test_labels_on_another_device_are_a_clear_error(name):
    """Metadata only, so the pure function checks it for free (the meta device stands in for a GPU)."""
    spec = lossfn.get_loss(name)
    inputs = sample(case_of(name))
    with pytest.raises(ValueError, match=rf"^{name}: {spec.inputs[1]} must be on the device of {spec.inputs[0]} \(cpu\)"):
        call(name, replaced(inputs, 1, inputs[1].to("meta")), {})


# -- hyperparameters checked by the pure function ------------------------------------------


def _violations(name: str):
    """(field, bad value) for every numeric bound written in the loss's signature."""
    for param in lossfn.get_loss(name).params:
        info = msgspec.inspect.type_info(param.annotation)
        while isinstance(info, msgspec.inspect.Metadata):
            info = info.type
        if isinstance(info, msgspec.inspect.UnionType):
            scalars = [t for t in info.types if isinstance(t, (msgspec.inspect.FloatType, msgspec.inspect.IntType))]
            info = scalars[0] if len(scalars) == 1 else info
        if not isinstance(info, (msgspec.inspect.FloatType, msgspec.inspect.IntType)):
            continue
        is_float = isinstance(info, msgspec.inspect.FloatType)
        for bound, step in (("gt", 0), ("ge", -1), ("lt", 0), ("le", 1)):
            value = getattr(info, bound)
            if value is not None:
                # the next float beyond a bound (1e15 + 0.1 is 1e15 in floating point)
                yield param.name, math.nextafter(value, step * math.inf) if is_float and step else value + step


FUNCTION_VIOLATIONS = [pytest.param(n, f, v, id=f"{n}-{f}={v}") for n in NAMES for f, v in _violations(n)]


@pytest.mark.parametrize("name,field,value", FUNCTION_VIOLATIONS)
def test_pure_function_rejects_out_of_range_numbers(name, field, value):
    """As ``F.huber_loss(delta=-1)`` raises: a ValueError naming the loss, the argument and the bound."""
    inputs = sample(case_of(name))
    with pytest.raises(ValueError, match=rf"^{name}: {field} must be .*[<>]=? .*; got {re.escape(repr(value))}$"):
        call(name, inputs, {field: value})
    # a 0-d tensor is not read (that would be a host sync), a tensor of another shape is refused
    with pytest.raises(ValueError, match=rf"^{name}: {field} must be .* or a 0-d tensor; got a tensor of shape \[2\]"):
        call(name, inputs, {field: torch.tensor([value, value])})


@pytest.mark.parametrize("name", NAMES)
def test_pure_function_rejects_wrong_types(name):
    inputs = sample(case_of(name))
    for param in lossfn.get_loss(name).params:
        with pytest.raises(ValueError, match=rf"^{name}: {param.name} "):
            call(name, inputs, {param.name: "nonsense"})


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
    assert not set(lossfn.get_loss(name).inputs) & set(fields)  # inputs are data, not config


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


VIOLATIONS = [
    pytest.param(n, f, v, id=f"{n}-{f}={v}") for n in NAMES for f, v in [*_violations(n), ("weight", -1.0)]
]


@pytest.mark.parametrize("name,field,value", VIOLATIONS)
def test_constraint_violation_names_the_path(name, field, value):
    with pytest.raises(msgspec.ValidationError, match=rf"at `\$\.{field}`"):
        lossfn.decode_config({"type": name, field: value})
    with pytest.raises(msgspec.ValidationError, match=rf"at `\$\.{field}`"):
        lossfn.get_loss(name).module(**{field: value})
    # a config instance built in Python (msgspec does not validate there) is validated where it is used
    try:
        instance = lossfn.get_loss(name).config(**{field: value})
    except ValueError:  # a cross-field Check in __post_init__ caught it already
        instance = None
    if instance is not None:
        with pytest.raises(msgspec.ValidationError, match=rf"at `\$\.{field}`"):
            lossfn.decode_config(instance)
        with pytest.raises(msgspec.ValidationError, match=rf"at `\$\.{field}`"):
            lossfn.build(instance)
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
def test_module_signature_shows_the_parameters_and_the_inputs(name):
    spec = lossfn.get_loss(name)
    module_cls = getattr(lossfn.nn, spec.class_name)
    assert module_cls is spec.module and issubclass(module_cls, torch.nn.Module)
    parameters = inspect.signature(module_cls).parameters
    expected = {
        **_function_defaults(name), "weight": 1.0, "reduction": "mean", "validate_inputs": True, "vocabulary": None,
    }
    assert {k: p.default for k, p in parameters.items()} == expected
    assert all(p.kind is p.KEYWORD_ONLY for p in parameters.values())
    forward = inspect.signature(module_cls().forward).parameters
    function = inspect.signature(spec.fn).parameters
    assert list(forward) == list(spec.inputs) == [n for n, p in function.items() if p.kind is not p.KEYWORD_ONLY]
    assert all(forward[n].default is None for n in spec.optional_inputs)


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_module_equals_function(name, params, reduction):
    case = case_of(name)
    inputs = sample(case)
    spec = lossfn.get_loss(name)
    direct = spec.module(**params, reduction=reduction)
    from_config = lossfn.build({"type": name, **params}, reduction=reduction)
    expected = call(name, inputs, params, reduction)
    close(direct(*inputs), expected)
    close(from_config(*inputs), expected)
    by_name = dict(zip(spec.inputs, inputs))
    close(direct(**by_name), expected)


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_module_round_trips(name, params):
    spec = lossfn.get_loss(name)
    module = spec.module(**params, weight=2.0)
    config = lossfn.decode_config({"type": name, "weight": 2.0, **params})
    assert module.config == config
    assert lossfn.decode_config(lossfn.encode_config(module.config)) == config
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
    inputs = sample(case_of(name), dtype=torch.float32)
    expected = module(*inputs)
    assert clone.config.weight == deep.config.weight == 2.0 and loaded.config.weight == 1.0
    for other in (clone, deep, loaded):
        assert type(other) is type(module) and other.config.weight in (1.0, 2.0)
        torch.testing.assert_close(other(*inputs), expected, rtol=0, atol=0)


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
    assert module.config == lossfn.decode_config({"type": name, **params})  # float64 buffers, same numbers


@pytest.mark.parametrize("name", NAMES)
def test_module_works_under_vmap_grad_with_its_check_on(name):
    """The label check steps aside by itself inside torch.func transforms."""
    case = case_of(name)
    inputs = sample(case)
    module = lossfn.get_loss(name).module()
    assert module.validate_inputs
    per_example = vmap(grad(lambda *row: module(*(x.unsqueeze(0) for x in row))))(*inputs)
    function = vmap(grad(lambda *row: call(name, [x.unsqueeze(0) for x in row], {})))(*inputs)
    close(per_example, function)


@pytest.mark.parametrize("name", NAMES)
def test_module_input_errors_are_the_functions(name):
    """A module gives the function's clear error, never one from inside its own check."""
    inputs = sample(case_of(name))
    scalar = torch.tensor(0.5, dtype=torch.float64)
    for bad in ([scalar, *inputs[1:]], [inputs[0][..., None, None], *inputs[1:]]):
        with pytest.raises(ValueError) as from_function:
            call(name, bad, {})
        with pytest.raises(ValueError) as from_module:
            lossfn.get_loss(name).module()(*bad)
        assert str(from_module.value) == str(from_function.value)
        assert str(from_module.value).startswith(f"{name}: ")


HOOKED = [n for n in NAMES if lossfn.get_loss(n).validate is not None]


@pytest.mark.parametrize("name", HOOKED)
def test_validate_hook_reads_no_values(name):
    """A hook computes facts with tensor ops and reads none: on meta tensors, which cannot be
    read, it still returns its InputCheck; the module's one host sync reads the facts."""
    spec = lossfn.get_loss(name)
    inputs = sample(case_of(name))
    on_meta = [x.to("meta") for x in inputs]
    check = spec.validate(*on_meta, **spec.defaults)
    facts = check.facts if isinstance(check.facts, tuple) else (check.facts,)
    assert isinstance(check, lossfn.registry.InputCheck) and all(f.device.type == "meta" for f in facts)
    real = spec.validate(*inputs, **spec.defaults)
    assert real.verdict() is None  # the case's labels are valid


# -- transforms ----------------------------------------------------------------------


def _scalar_loss(name, inputs, position, params, reduction="mean"):
    return lambda x: call(name, replaced(inputs, position, x), params, reduction)


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_grad_equals_autograd_for_every_floating_input(name, params):
    inputs = sample(case_of(name))
    for position in floating(inputs):
        leaf = inputs[position].clone().requires_grad_()
        expected = torch.autograd.grad(call(name, replaced(inputs, position, leaf), params), leaf)[0]
        close(grad(_scalar_loss(name, inputs, position, params))(inputs[position]), expected)


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_vmap_over_problems_equals_loop(name, params):
    case = case_of(name)
    problems = [sample(case, seed=s, batch=4) for s in range(3)]
    positions = tensors(problems[0])
    stacked = [torch.stack([p[i] for p in problems]) if i in positions else problems[0][i]
               for i in range(len(problems[0]))]
    all_dims = tuple(0 if i in positions else None for i in range(len(stacked)))
    for reduction in REDUCTIONS:
        fn = lambda *xs: call(name, xs, params, reduction)  # noqa: E731
        expected = torch.stack([fn(*p) for p in problems])
        close(vmap(fn, in_dims=all_dims)(*stacked), expected)
    fn = lambda *xs: call(name, xs, params)  # noqa: E731
    # each tensor input alone batched, the others shared (None in in_dims)
    for position in positions:
        dims = tuple(0 if i == position else None for i in range(len(stacked)))
        alone = [stacked[i] if i == position else problems[0][i] for i in range(len(stacked))]
        expected = torch.stack([fn(*replaced(problems[0], position, p[position])) for p in problems])
        close(vmap(fn, in_dims=dims)(*alone), expected)
    # the batch dimension may sit anywhere; vmap of vmap works too
    moved = [x.movedim(0, -1) if i == 0 else problems[0][i] for i, x in enumerate(stacked)]
    dims = tuple(-1 if i == 0 else None for i in range(len(stacked)))
    close(vmap(fn, in_dims=dims)(*moved), torch.stack([fn(*replaced(problems[0], 0, p[0])) for p in problems]))
    twice = vmap(vmap(fn, in_dims=all_dims), in_dims=all_dims)(
        *[x.unsqueeze(0).repeat(2, *[1] * x.ndim) if i in positions else x for i, x in enumerate(stacked)]
    )
    close(twice, torch.stack([fn(*p) for p in problems]).unsqueeze(0).repeat(2, 1))


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_per_example_gradients(name, params):
    """vmap(grad) over examples equals one autograd call per example, with or without a batch dimension."""
    inputs = sample(case_of(name))
    batched = lambda *row: call(name, [x.unsqueeze(0) for x in row], params)  # noqa: E731
    single = lambda *row: call(name, row, params)  # noqa: E731: one example, no batch dimension
    per_example = vmap(grad(batched))(*inputs)
    close(vmap(grad(single))(*inputs), per_example)
    for i in range(inputs[0].shape[0]):
        row = [x[i : i + 1] for x in inputs]
        leaf = row[0].clone().requires_grad_()
        expected = torch.autograd.grad(call(name, [leaf, *row[1:]], params), leaf)[0][0]
        close(per_example[i], expected)


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_jacrev_equals_jacfwd_and_jvp_for_every_floating_input(name, params):
    inputs = sample(case_of(name), batch=3)
    for position in floating(inputs):
        fn = _scalar_loss(name, inputs, position, params, "none")
        x = inputs[position]
        reverse, forward = jacrev(fn)(x), jacfwd(fn)(x)
        close(reverse, forward)
        tangent = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
        _, directional = jvp(fn, (x,), (tangent,))
        close(directional, (reverse * tangent).flatten(reverse.ndim - x.ndim).sum(-1))


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_hessian(name, params):
    case = case_of(name)
    inputs = sample(case, batch=3)
    fn = _scalar_loss(name, inputs, 0, params)
    h = hessian(fn)(inputs[0])
    assert h.shape == inputs[0].shape * 2 and torch.isfinite(h).all()
    if case.twice_differentiable:
        close(h, torch.autograd.functional.hessian(fn, inputs[0]))


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
        high = low + 4.0 if high is None or high >= FLOAT_MAX else float(high)  # lossfn's limit: open
        grid = [low + (high - low) * f for f in (0.1, 0.5, 0.9)]
        yield param.name, sorted({float(param.default), *grid}), base


HYPER = [pytest.param(n, p, g, b, id=f"{n}-{p}") for n in NAMES for p, g, b in _float_hyperparameters(n)]


@pytest.mark.parametrize("name,param,grid,base", HYPER)
def test_tensor_hyperparameters_vmap_and_grad(name, param, grid, base):
    """A hyperparameter may be a 0-d tensor: vmap over a grid, grad with respect to it."""
    case = case_of(name)
    skip_if(case, "tensor_hyperparameters")
    inputs = sample(case)
    fn = lambda value: call(name, inputs, {**base, param: value})  # noqa: E731
    values = torch.tensor(grid, dtype=inputs[0].dtype)
    expected = torch.stack([fn(v) for v in grid])
    assert (expected - expected[0]).abs().max() > 1e-9, f"{param} has no effect on this grid"
    close(vmap(fn)(values), expected)
    close(torch.stack([fn(v) for v in values]), expected)
    gradients = vmap(grad(fn))(values)
    assert torch.isfinite(gradients).all() and gradients.abs().max() > 0


@pytest.mark.parametrize("name", NAMES)
def test_torch_compile_and_export_fullgraph(name):
    """One compilation per loss exercises both forms: the checked pure function and the
    module with its default label check (which steps aside under Dynamo); export too."""
    case = case_of(name)
    skip_if(case, "compile")
    params = case.params[-1]
    inputs = sample(case, dtype=torch.float32)
    fn = lossfn.get_loss(name).fn
    module = lossfn.get_loss(name).module(**params, reduction="none")
    torch._dynamo.reset()
    both = torch.compile(lambda *xs: (fn(*xs, **params, reduction="none"), module(*xs)), fullgraph=True)
    rtol, atol = case.tolerance
    compiled_fn, compiled_module = both(*inputs)
    eager = fn(*inputs, **params, reduction="none")
    torch.testing.assert_close(compiled_fn, eager, rtol=rtol, atol=atol)
    torch.testing.assert_close(compiled_module, eager, rtol=rtol, atol=atol)
    exported = torch.export.export(module, tuple(inputs))
    torch.testing.assert_close(exported.module()(*inputs), eager, rtol=rtol, atol=atol)


# -- numerics ------------------------------------------------------------------------


@pytest.mark.parametrize("name,params", ALL_SETTINGS)
def test_extreme_inputs_are_finite(name, params):
    case = case_of(name)
    inputs = sample(case, dtype=torch.float32)
    leaf = (inputs[0].sign() * case.extreme).requires_grad_()
    loss = call(name, replaced(inputs, 0, leaf), params)
    (gradient,) = torch.autograd.grad(loss, leaf)
    assert torch.isfinite(loss) and torch.isfinite(gradient).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(name, dtype):
    case = case_of(name)
    params = case.params[-1]
    inputs = sample(case, dtype=torch.float32)
    reference = call(name, inputs, params)
    half_inputs = [x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in inputs]
    leaf = half_inputs[0].requires_grad_()
    loss = call(name, half_inputs, params)
    (gradient,) = torch.autograd.grad(loss, leaf)
    assert loss.dtype == dtype and gradient.dtype == dtype
    assert torch.isfinite(loss) and torch.isfinite(gradient).all()
    torch.testing.assert_close(loss.float(), reference, rtol=2e-2, atol=2e-2)
