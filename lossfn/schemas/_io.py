"""Decode, load and encode loss configs (dict, JSON, YAML, TOML)."""

from __future__ import annotations

import difflib
import functools
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import msgspec
import msgspec.toml
import msgspec.yaml

from lossfn.registry import Feature

from ._derive import config_type, union_members

__all__ = ["LossConfigError", "decode_config", "encode_config", "field_path", "load_config"]

_FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}


class LossConfigError(msgspec.ValidationError):
    """A loss config is invalid; the message names the JSON path (``$.t1``)."""


def _tags(union: Any) -> list[str]:
    return [cls.__struct_config__.tag for cls in union_members(union)]


_FIELD = re.compile(r"^(.*) \[field (\w+)\](?: - at `(\$[^`]*)`)?$", re.S)


def field_path(message: str) -> str:
    """Put the field of a whole-value check into the JSON path of msgspec's message.

    ``"Expected X, got Y [field w]"`` (msgspec adds no path at the top level) ->
    ``"Expected X, got Y - at `$.w`"``; nested: ``... - at `$.outputs.price.w```.
    """
    match = _FIELD.match(message)
    if not match:
        return message
    text, field, path = match.groups()
    return f"{text} - at `{path or '$'}.{field}`"


def _explain(error: msgspec.ValidationError, union: Any, feature: Feature | None) -> LossConfigError:
    """Re-raise msgspec's error as a `LossConfigError`; for a bad ``type``, list the choices."""
    message = field_path(str(error))
    match = re.match(r"Invalid value '(.*)' - at `(\$(?:.*\.)?type)`$", message)
    if match:
        tag, path = match.groups()
        names = sorted(_tags(union))
        close = difflib.get_close_matches(tag, names, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        where = f" for {feature.value} features" if feature else ""
        message = f"Unknown loss {tag!r}{where}{hint} (allowed: {', '.join(names)}) - at `{path}`"
    return LossConfigError(message)


@functools.lru_cache(maxsize=64)
def _decoders(union: Any) -> tuple[msgspec.json.Decoder, dict[str, type]]:
    """A reusable JSON decoder of the union, and ``{tag: class}`` for mappings.

    Building a decoder for a union type is far slower than decoding: ``msgspec``
    caches it for a single class but not for a ``Union``, so lossfn keeps them.
    """
    return msgspec.json.Decoder(union), {cls.__struct_config__.tag: cls for cls in union_members(union)}


def _feature(feature: Feature | str | None) -> Feature | None:
    return None if feature is None else Feature.parse(feature)


def decode_config(data: Any, *, feature: Feature | str | None = None) -> msgspec.Struct:
    """Validate a loss config and fill its defaults, in one pass.

    Args:
        data: a mapping, a JSON document (``str``/``bytes``), or a config instance
            (validated again: msgspec does not validate a Struct built in Python).
        feature: only accept losses that serve this output-feature type.

    Raises:
        LossConfigError: a ``msgspec.ValidationError`` whose message carries the
            JSON path of the fault (``$.t1``), unknown fields included.
    """
    feature = _feature(feature)
    union = config_type(feature)
    members = union_members(union)
    try:
        if isinstance(data, msgspec.Struct):
            if not isinstance(data, members):
                tag = getattr(type(data).__struct_config__, "tag", None)
                raise msgspec.ValidationError(f"Invalid value '{tag}' - at `$.type`")
            # a Struct's __init__ validates nothing (HuberConfig(delta=-5.0) builds): check it again
            msgspec.convert(msgspec.to_builtins(data), type=type(data))
            return data
        decoder, by_tag = _decoders(union)
        if isinstance(data, (str, bytes, bytearray, memoryview)):
            return decoder.decode(data)
        if isinstance(data, Mapping):
            tag = data.get("type")
            # a known tag converts straight into its class; anything else through the
            # union, whose error names the problem (missing or unknown `type`)
            target = by_tag.get(tag, union) if isinstance(tag, str) else union
            return msgspec.convert(dict(data), type=target)
        raise msgspec.ValidationError(f"Expected a loss config (object), got `{type(data).__name__}`")
    except msgspec.ValidationError as exc:  # (a subclass of DecodeError: test it first)
        raise _explain(exc, union, feature) from None
    except msgspec.DecodeError as exc:
        raise LossConfigError(f"Malformed JSON: {exc}") from None


def _read(path: pathlib.Path) -> Any:
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise LossConfigError(f"{path}: unknown config format {path.suffix!r} (use .json, .yaml, .yml or .toml)")
    raw = path.read_bytes()
    try:  # parse only: validation happens in decode_config
        if kind == "json":
            return msgspec.json.decode(raw)
        if kind == "yaml":
            return msgspec.yaml.decode(raw)
        return msgspec.toml.decode(raw)
    except msgspec.DecodeError as exc:
        detail = " ".join(str(exc).split())  # YAML errors span lines; keep one
        raise LossConfigError(f"Malformed {kind.upper()}: {detail}") from None


def load_config(
    path: str | os.PathLike[str], *, feature: Feature | str | None = None
) -> msgspec.Struct | list[msgspec.Struct]:
    """Load a loss config (or a list of them) from ``.json``, ``.yaml``/``.yml`` or ``.toml``.

    A TOML file holds one config as a table, or several as ``[[loss]]`` entries.
    """
    path = pathlib.Path(path)
    data = _read(path)
    if isinstance(data, Mapping) and set(data) == {"loss"} and isinstance(data["loss"], list):
        data = data["loss"]  # TOML's array of tables
    if isinstance(data, list):
        configs = []
        for index, item in enumerate(data):
            try:
                configs.append(decode_config(item, feature=feature))
            except LossConfigError as exc:
                raise LossConfigError(str(exc).replace("`$", f"`$[{index}]", 1)) from None
        return configs
    return decode_config(data, feature=feature)


def encode_config(config: msgspec.Struct, *, format: str = "json") -> Any:
    """Encode a config: ``"json"`` (str), ``"yaml"`` (str), ``"toml"`` (str) or ``"dict"``.

    Every field is written (as Ludwig writes configs back), except ``None``
    values in TOML, which has no null: decoding restores them as defaults.
    """
    if format == "dict":
        return msgspec.to_builtins(config)
    if format == "json":
        return msgspec.json.encode(config).decode()
    if format == "yaml":
        return msgspec.yaml.encode(config).decode()
    if format == "toml":
        data = {k: v for k, v in msgspec.to_builtins(config).items() if v is not None}
        return msgspec.toml.encode(data).decode()
    raise ValueError(f"encode_config: format must be 'json', 'yaml', 'toml' or 'dict'; got {format!r}")
