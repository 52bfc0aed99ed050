"""The limits every hyperparameter has, whatever else its annotation says.

A config is a file somebody else wrote, and a module stores and uses its numbers
in float32. So, on top of the bounds a loss writes in its ``Annotated[...,
Meta(...)]`` annotations, the registry gives every number of every hyperparameter
(inside lists and mappings too) these limits, at registration, once; the pure
function's check, the config, the JSON Schema, the module and ``lossfn show``
all read the same annotation:

- a float is finite and at most :data:`FLOAT_MAX` (``1e15``) in magnitude, and 0 or
  at least :data:`FLOAT_TINY` (``1e-15``): fifteen orders of magnitude either side
  of 1, so that a product of two hyperparameters (a class weight times a confidence
  penalty) and a loss value of up to 1e6 stays inside float32's normal range
  (1.2e-38 to 3.4e38). Beyond it a module overflows to ``inf`` or ``nan``, or a
  weight rounds to 0 and the loss is exactly 0 with a zero gradient, with no error
  anywhere (``inf`` and ``nan`` fail every bound);
- an integer lies in int32's range, ``[-2**31, 2**31 - 1]`` (:data:`INT_MIN`,
  :data:`INT_MAX`), unless the loss bounds it tighter (``num_iters <= 1000``): an
  index beyond it names no class, and a count beyond it is a hang.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Union

import msgspec

__all__ = [
    "FLOAT_MAX",
    "FLOAT_TINY",
    "INT_MAX",
    "INT_MIN",
    "LIMITS",
    "TINY_EXPECTED",
    "bounded",
    "has_floats",
    "is_limit",
    "representable",
]

FLOAT_MAX = 1e15
FLOAT_TINY = 1e-15
INT_MIN = -(2**31)
INT_MAX = 2**31 - 1

#: What the check of :func:`representable` says a value must be.
TINY_EXPECTED = f"0 or at least {FLOAT_TINY:g} in magnitude (every number: float32 rounds smaller ones to 0)"

#: The limits in one sentence (``lossfn show``, the schema's description).
LIMITS = (
    f"every number is finite and at most {FLOAT_MAX:g} in magnitude, and 0 or at least {FLOAT_TINY:g}; "
    f"every integer lies in [{INT_MIN}, {INT_MAX}] (int32), unless a tighter bound is given"
)

#: The same rule in JSON Schema, on each float: not (-tiny < x < tiny and x != 0).
TINY_SCHEMA = {"not": {"exclusiveMinimum": -FLOAT_TINY, "exclusiveMaximum": FLOAT_TINY, "not": {"const": 0}}}

_META_FIELDS = (
    "gt", "ge", "lt", "le", "multiple_of", "pattern", "min_length", "max_length", "tz",
    "title", "description", "examples", "extra_json_schema", "extra",
)  # fmt: skip


def _merge(metas: list[msgspec.Meta]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for meta in metas:
        for key in _META_FIELDS:
            value = getattr(meta, key)
            if value is not None:
                merged[key] = value
    return merged


def _window(base: type, metas: list[msgspec.Meta]) -> Any:
    """``Annotated[base, Meta(...)]`` with the lossfn limits added to ``metas``' bounds."""
    fields = _merge(metas)
    low, high = (-FLOAT_MAX, FLOAT_MAX) if base is float else (INT_MIN, INT_MAX)
    # the tighter of the loss's bound and the window, on each side
    if "gt" in fields or "ge" in fields:
        key = "gt" if "gt" in fields else "ge"
        if fields[key] < low:
            fields.pop(key)
            fields["ge"] = low
    else:
        fields["ge"] = low
    if "lt" in fields or "le" in fields:
        key = "lt" if "lt" in fields else "le"
        if fields[key] > high:
            fields.pop(key)
            fields["le"] = high
    else:
        fields["le"] = high
    if base is float:
        fields["extra_json_schema"] = {**(fields.get("extra_json_schema") or {}), **TINY_SCHEMA}
    return Annotated[base, msgspec.Meta(**fields)]


def is_limit(key: str, value: Any) -> bool:
    """Whether a ``Meta`` bound is one of the limits above, not the loss's own bound."""
    return (key, value) in {("ge", -FLOAT_MAX), ("le", FLOAT_MAX), ("ge", INT_MIN), ("le", INT_MAX)}


def bounded(annotation: Any) -> Any:
    """``annotation`` with every ``float`` and ``int`` in it given the lossfn limits.

    >>> from typing import Annotated
    >>> bounded(Annotated[float, msgspec.Meta(gt=0.0)]).__metadata__[0].le
    1000000000000000.0
    """
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *metadata = typing.get_args(annotation)
        metas = [m for m in metadata if isinstance(m, msgspec.Meta)]
        others = [m for m in metadata if not isinstance(m, msgspec.Meta)]
        if base in (float, int):
            window = _window(base, metas)
            return Annotated[(window, *others)] if others else window
        inner = bounded(base)
        return Annotated[(inner, *metadata)]
    if annotation in (float, int):
        return _window(annotation, [])
    if origin in (Union, types.UnionType):
        return Union[tuple(bounded(arg) for arg in typing.get_args(annotation))]
    if origin is list:
        (item,) = typing.get_args(annotation)
        return list[bounded(item)]
    if origin is tuple:
        return tuple[tuple(bounded(arg) for arg in typing.get_args(annotation))]
    if origin is dict:
        key, value = typing.get_args(annotation)
        return dict[key, bounded(value)]
    return annotation


def has_floats(annotation: Any) -> bool:
    """Whether a ``float`` occurs anywhere in ``annotation``."""
    if annotation is float:
        return True
    return any(has_floats(arg) for arg in typing.get_args(annotation) if not isinstance(arg, msgspec.Meta))


def representable(value: Any) -> bool:
    """No float in ``value`` (a number, list or mapping of them) is nonzero and below :data:`FLOAT_TINY`."""
    if type(value) is float:  # the common case, without the walk
        return value == 0 or not abs(value) < FLOAT_TINY
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if item != 0 and abs(item) < FLOAT_TINY:
                return False
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return True
