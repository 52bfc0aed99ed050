"""The checks of the generated-config tests, as functions that return what went wrong.

``tests/test_config_robustness.py`` asserts that each returns ``None`` on what
hypothesis generates; ``scripts/fuzz_configs.py`` runs them on many more
documents and counts the outcomes (the figures of a closing note). Every
registered loss is covered, so a loss added later is too.

The instances come from the published JSON Schema (``hypothesis-jsonschema``),
not from lossfn's own types: the schema and the decoder are checked against
each other, not against themselves.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import jsonschema
import msgspec
import torch
from hypothesis import strategies as st

import lossfn
from lossfn.schemas import LossConfigError, inexpressible_checks, spec_of

from cases import all_cases

FORMATS = ("json", "yaml", "toml", "dict")
CASES = all_cases()


@functools.cache
def schema() -> dict[str, Any]:
    return lossfn.json_schema()


@functools.cache
def validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(schema())


@functools.cache
def _exceptions() -> tuple[str, ...]:
    """What the decoder checks and the schema cannot say (listed in the schema's description)."""
    return tuple(sorted({entry.split(": ", 1)[1] for entry in inexpressible_checks()}))


def listed_exception(error: LossConfigError) -> bool:
    """Whether a rejection is one of the constraints the schema says it cannot express."""
    return any(expected in error.text for expected in _exceptions())


@functools.cache  # building the strategy reads the whole schema (seconds): once
def schema_instances() -> st.SearchStrategy[dict[str, Any]]:
    """Documents valid under ``schemas/lossfn.schema.json``."""
    from hypothesis_jsonschema import from_schema

    return from_schema(schema())


# -- hostile documents -------------------------------------------------------------------

#: JSON values a config field might be given by mistake or malice (JSON has no nan or inf).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -0.0, 9.9e-16, 1e-15, -1e-15, 1e15, 1.0000000000000002e15, 1e30, 2**31, -(2**31) - 1, 1000, 1001])
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=12,
)


@st.composite
def mutants(draw: st.DrawFn) -> dict[str, Any]:
    """A schema-valid document with one to three fields replaced, added or removed."""
    document = dict(draw(schema_instances()))
    names = sorted(lossfn.registered())
    for _ in range(draw(st.integers(1, 3))):
        tag = document.get("type")
        spec = lossfn.get_loss(tag) if isinstance(tag, str) and tag in lossfn.registered() else None
        fields = [p.name for p in spec.params] + ["weight"] if spec else ["weight"]
        key = draw(st.sampled_from(fields) | st.sampled_from(["type", "tpye", ""]) | st.text(max_size=5))
        action = draw(st.sampled_from(["set", "set", "set", "drop"]))
        if action == "drop":
            document.pop(key, None)
        elif key == "type":
            document[key] = draw(st.sampled_from(names) | json_values)
        else:
            document[key] = draw(json_values)
    return document


# -- the checks: each returns None, or a sentence saying what went wrong -----------------


def decode(document: Any) -> tuple[msgspec.Struct | None, LossConfigError | None, str | None]:
    """``(config, error, crash)``: decoding gives a config or a LossConfigError, nothing else."""
    try:
        return lossfn.decode_config(document), None, None
    except LossConfigError as exc:
        if not exc.path and not str(exc).startswith(("Malformed", "Empty")):
            return None, exc, f"a LossConfigError without a JSON path: {exc}"
        return None, exc, None
    except Exception as exc:  # noqa: BLE001 (that is the defect we look for)
        return None, None, f"{type(exc).__name__} instead of LossConfigError: {exc}"


def decode_format(text: str | bytes, format: str) -> tuple[msgspec.Struct | None, LossConfigError | None, str | None]:
    """:func:`decode` of a document in ``format``."""
    try:
        return lossfn.decode_config(text, format=format), None, None
    except LossConfigError as exc:
        return None, exc, None
    except Exception as exc:  # noqa: BLE001
        return None, None, f"{type(exc).__name__} instead of LossConfigError: {exc}"


def check_schema_valid(document: dict[str, Any]) -> str | None:
    """A document the schema accepts decodes, unless it breaks a listed exception."""
    config, error, crash = decode(document)
    if crash:
        return crash
    if error is not None and not listed_exception(error):
        return f"schema-valid but rejected: {error}"
    return None


def check_accepted_is_schema_valid(document: dict[str, Any]) -> str | None:
    """A document lossfn accepts is valid under the schema (and decodes the same from JSON text)."""
    config, error, crash = decode(document)
    if crash:
        return crash
    try:
        text = json.dumps(document, allow_nan=False)
    except (ValueError, TypeError):
        return None
    from_text, text_error, text_crash = decode(text)
    if text_crash:
        return text_crash
    if (config is None) != (from_text is None) or (config is not None and config != from_text):
        return f"decode_config(dict) and decode_config(str) disagree: {error} / {text_error}"
    if config is not None and not validator().is_valid(document):
        reason = next(iter(validator().iter_errors(document))).message
        return f"schema-invalid but accepted ({reason[:200]})"
    return None


def check_round_trip(config: msgspec.Struct) -> str | None:
    """``decode(encode(config)) == config`` in every format."""
    for format in FORMATS:
        encoded = lossfn.encode_config(config, format=format)
        try:
            again = lossfn.decode_config(encoded) if format == "dict" else lossfn.decode_config(encoded, format=format)
        except LossConfigError as exc:
            return f"{format} round trip rejected: {exc} (encoded: {str(encoded)[:200]})"
        if again != config:
            return f"{format} round trip changed the config: {config} -> {again}"
    return None


def _num_classes(config: msgspec.Struct) -> tuple[int | None, list[str] | None]:
    """The class count a config's per-class hyperparameters fix (or None), and the class
    names a ``{name: value}`` one needs as the module's vocabulary."""
    classes, vocabulary = None, None
    for param in spec_of(config).params:
        value = getattr(config, param.name)
        if param.tensor and isinstance(value, (list, dict)):
            classes = len(value)
            if isinstance(value, dict):
                vocabulary = list(value)
    return classes, vocabulary


def check_module_runs(config: msgspec.Struct, seed: int = 0) -> str | None:
    """The module of an accepted config gives a finite loss and gradient on standard inputs."""
    spec = spec_of(config)
    case = CASES[spec.name]
    classes, vocabulary = _num_classes(config)
    needed = case.classes_needed(**{p.name: getattr(config, p.name) for p in spec.params})
    if needed is not None:  # a class-index hyperparameter (background_class) sets the smallest class count
        classes = max(classes or 0, needed)
    if classes is not None and case.classes is None:
        return f"{spec.name}: its case needs classes= (a per-class hyperparameter is set)"
    make = case.make if classes is None else case.classes(classes)
    inputs = make(4, torch.float32, torch.Generator().manual_seed(seed))
    inputs = tuple(x.requires_grad_() if x is not None and x.is_floating_point() and i == 0 else x for i, x in enumerate(inputs))
    module = lossfn.build(config, vocabulary=vocabulary)
    try:
        loss = module(*inputs)
        (gradient,) = torch.autograd.grad(loss.sum(), inputs[0])
    except ValueError as exc:
        return f"{spec.name}: the module of an accepted config refused standard inputs: {exc}"
    if not torch.isfinite(loss).all():
        return f"non-finite loss {loss.tolist()} from {config}"
    if not torch.isfinite(gradient).all():
        return f"non-finite gradient from {config}"
    return None


def check_text(text: str | bytes, format: str) -> str | None:
    """Any text in any format gives a config or a LossConfigError."""
    try:
        lossfn.decode_config(text, format=format)
    except LossConfigError:
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__} from {format} text {text[:80]!r}: {exc}"
    return None


def finite_json(value: Any) -> bool:
    """Whether a value holds no nan or inf (JSON cannot)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_json(v) for v in value.values())
    if isinstance(value, list):
        return all(finite_json(v) for v in value)
    return True
