"""Signature -> frozen ``msgspec.Struct`` config, the tagged union, the JSON Schema.

A loss's config has one field per keyword-only hyperparameter (same name, type,
default, constraints and description, read off the ``Annotated`` annotation) plus
``weight``, and is tagged ``type = <loss name>``. Each alias gets a subclass
tagged with the alias, so a config written with an alias decodes, validates and
encodes back unchanged, and is still an instance of the loss's config class.
"""

from __future__ import annotations

import functools
import reprlib
import typing
from typing import Annotated, Any, Union

import msgspec

from lossfn.registry import (
    LIMITS,
    REPRESENTABLE,
    Check,
    Feature,
    LossSpec,
    camel_case,
    generation,
    register_deriver,
    registered,
)
from lossfn.registry._bounds import bounded

__all__ = ["WEIGHT", "alias_configs", "config_class", "config_type", "json_schema", "python_type", "spec_of"]

#: The field every config has: the loss's weight in a multi-output total (with lossfn's limits).
WEIGHT = bounded(
    Annotated[
        float,
        msgspec.Meta(ge=0.0, description="weight of this loss in a multi-output total (not applied inside the loss)"),
    ]
)

#: How a whole-value check names its field inside msgspec's message (see field_path).
FIELD_MARK = "[field {}]"

_STRUCT_OPTIONS = dict(kw_only=True, frozen=True, forbid_unknown_fields=True, tag_field="type")
MODULE = "lossfn.schemas"


def _checked_fields(spec: LossSpec) -> list[tuple[str, tuple[Check, ...]]]:
    """``(field, checks)`` of every config field with ``Check`` markers, ``weight`` included."""
    return [(p.name, p.checks) for p in spec.params if p.checks] + [("weight", (REPRESENTABLE,))]


def _post_init(spec: LossSpec):
    """``__post_init__`` running the ``Check`` markers of the signature."""
    defaults = {**spec.defaults, "weight": 1.0}
    # a field at its default passes its own checks (checked at registration); a check
    # that reads other fields runs whatever the field's value
    checked = [
        (name, defaults[name], tuple(c for c in checks if not c.uses), tuple(c for c in checks if c.uses))
        for name, checks in _checked_fields(spec)
    ]

    def __post_init__(self: msgspec.Struct) -> None:
        for name, default, own, across in checked:
            value = getattr(self, name)
            if value is None:
                continue
            checks = across if type(value) is type(default) and value == default else own + across
            for check in checks:
                if not check.predicate(value, *(getattr(self, other) for other in check.uses)):
                    raise check_failed(name, value, check)

    return __post_init__


def check_failed(field: str, value: Any, check: Check) -> ValueError:
    """The error of a failed ``Check`` in a config's ``__post_init__``: msgspec turns it into
    a ValidationError with the struct's path, and field_path() moves the field into that path."""
    return ValueError(f"Expected {check.expected}, got {reprlib.repr(value)} {FIELD_MARK.format(field)}")


def _doc(spec: LossSpec) -> str:
    lines = [f"Config of the ``{spec.name}`` loss: {spec.summary}", "", "Fields:"]
    lines += [f"    {p.name}: {p.description} (default {p.default!r})" for p in spec.params]
    lines.append("    weight: weight of this loss in a multi-output total (default 1.0)")
    return "\n".join(lines)


def config_class(spec: LossSpec) -> type[msgspec.Struct]:
    """Build the config class of ``spec`` (installed as the registry's ``config`` deriver)."""
    fields = [(p.name, p.annotation, p.default) for p in spec.params]
    fields.append(("weight", WEIGHT, 1.0))
    namespace: dict[str, Any] = {}
    namespace["__post_init__"] = _post_init(spec)
    cls = msgspec.defstruct(
        f"{spec.class_name}Config",
        fields,
        tag=spec.name,
        module=MODULE,
        namespace=namespace,
        **_STRUCT_OPTIONS,
    )
    cls.__doc__ = _doc(spec)
    return cls


def _alias_configs(spec: LossSpec) -> tuple[type[msgspec.Struct], ...]:
    base = spec.config
    return tuple(
        msgspec.defstruct(f"{camel_case(alias)}Config", [], bases=(base,), tag=alias, module=MODULE, **_STRUCT_OPTIONS)
        for alias in spec.aliases
    )


def alias_configs(spec: LossSpec) -> tuple[type[msgspec.Struct], ...]:
    """The subclasses of ``spec.config`` tagged with each alias."""
    return spec._derive("alias_configs")


register_deriver("config", config_class)
register_deriver("alias_configs", _alias_configs)


def spec_of(config: msgspec.Struct) -> LossSpec:
    """The spec of a config instance (through its ``type`` tag, alias or name)."""
    return spec_of_class(type(config))


def spec_of_class(cls: type) -> LossSpec:
    """The spec of a config class (through its ``type`` tag, alias or name)."""
    from lossfn.registry import get_loss

    tag = getattr(cls.__struct_config__, "tag", None) if hasattr(cls, "__struct_config__") else None
    if tag is None:
        raise TypeError(f"{cls.__name__} is not a lossfn config")
    return get_loss(tag)


def config_type(feature: Feature | str | None = None) -> Any:
    """The tagged union (on ``type``) of every registered config, or of one feature's.

    Use it as a type: ``msgspec.convert(data, lossfn.config_type("number"))``. The
    union follows the registry, so a loss registered at run time joins it at once.
    """
    feature = None if feature is None else Feature.parse(feature)
    return _union(feature, generation())


@functools.lru_cache(maxsize=64)
def _union(feature: Feature | None, _generation: int) -> Any:
    classes: list[type] = []
    for spec in registered().values():
        if feature is None or feature in spec.features:
            classes.append(spec.config)
            classes.extend(alias_configs(spec))
    if not classes:
        raise LookupError(f"no loss is registered for feature type {feature!r}")
    return Union[tuple(classes)] if len(classes) > 1 else classes[0]


def json_schema(feature: Feature | str | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of :func:`config_type`."""
    feature = None if feature is None else Feature.parse(feature)
    return _schema(feature, generation())


@functools.lru_cache(maxsize=64)
def _schema(feature: Feature | None, _generation: int) -> dict[str, Any]:
    union = config_type(feature)
    schema = msgspec.json.schema(union)
    inexpressible = _add_checks(schema.get("$defs", {}), union)
    title = "lossfn loss config" + (f" ({feature.value} features)" if feature else "")
    description = f"The config of a lossfn loss, tagged by `type`. Limits: {LIMITS}."
    if inexpressible:
        description += (
            " Checked by lossfn but not expressible in JSON Schema: " + "; ".join(inexpressible) + "."
        )
    description += f" {INTEGRAL_FLOATS}"
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "description": description,
        **schema,
    }


#: The one place the schema is looser than the decoder by the nature of JSON Schema.
INTEGRAL_FLOATS = (
    "An integer field written with a fraction (5.0) is an integer to JSON Schema but is refused by lossfn."
)


def inexpressible_checks(feature: Feature | str | None = None) -> list[str]:
    """The ``Check`` constraints that the JSON Schema cannot state, as ``"loss.field: what"``."""
    feature = None if feature is None else Feature.parse(feature)
    return _add_checks({}, config_type(feature))


def _add_checks(defs: dict[str, Any], union: Any) -> list[str]:
    """Put each config's ``Check`` constraints into its schema in ``defs``; return those it cannot state."""
    missing: list[str] = []
    for cls in union_members(union):
        spec = spec_of_class(cls)
        schema = defs.get(cls.__name__)
        for field, checks in _checked_fields(spec):
            for check in checks:
                fragment = check.json_schema(field)
                if fragment is None:
                    if cls is spec.config:
                        missing.append(f"{spec.name}.{field}: {check.expected}")
                    continue
                if not fragment or schema is None:
                    continue
                if check.uses:  # spans several fields: a constraint on the whole config
                    schema.setdefault("allOf", []).append(fragment)
                else:
                    properties = schema["properties"]
                    properties[field] = {"allOf": [properties[field], fragment]}
    return missing


_SCALARS = {
    msgspec.inspect.FloatType: "float",
    msgspec.inspect.IntType: "int",
    msgspec.inspect.BoolType: "bool",
    msgspec.inspect.StrType: "str",
    msgspec.inspect.NoneType: "None",
}


def python_type(annotation: Any) -> str:
    """A type expression for ``annotation`` (``Annotated`` metadata dropped)."""

    def render(info: Any) -> str:
        if isinstance(info, msgspec.inspect.Metadata):
            return render(info.type)
        if type(info) in _SCALARS:
            return _SCALARS[type(info)]
        if isinstance(info, msgspec.inspect.UnionType):
            return " | ".join(render(t) for t in info.types)
        if isinstance(info, msgspec.inspect.ListType):
            return f"list[{render(info.item_type)}]"
        if isinstance(info, msgspec.inspect.DictType):
            return f"dict[{render(info.key_type)}, {render(info.value_type)}]"
        if isinstance(info, msgspec.inspect.LiteralType):
            return f"Literal[{', '.join(map(repr, info.values))}]"
        return "Any"

    return render(msgspec.inspect.type_info(annotation))


def union_members(union: Any) -> tuple[type, ...]:
    return typing.get_args(union) or (union,)
