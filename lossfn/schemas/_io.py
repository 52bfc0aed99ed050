"""Decode, load and encode loss configs (dict, JSON, YAML, TOML).

Configs are files somebody else wrote, so everything here is bounded and every
fault is a :class:`LossConfigError` whose message ends with the JSON path of the
fault (`` - at `$.outputs.price.delta` ``):

- a file is read only if it is a regular file of at most :func:`max_config_bytes`
  bytes (``LOSSFN_MAX_CONFIG_BYTES``, 4 MiB by default): never a device, a FIFO
  or a directory;
- a document may hold at most that many values once YAML aliases are expanded,
  nested at most :data:`MAX_DEPTH` deep, and no mapping may repeat a key (JSON,
  YAML and TOML alike, and ``decode_config(str)`` as ``load_config``);
- YAML numbers follow YAML 1.2 (``1e-3`` is a float, not the string YAML 1.1 reads);
- echoed values are shortened and control characters escaped, so a message is
  one line of reasonable length whatever the file holds.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
import pathlib
import re
import stat
import tomllib
from collections.abc import Mapping
from typing import Any

import msgspec
import msgspec.toml
import msgspec.yaml
import yaml

from lossfn.registry import DEFAULT_LOSS, Feature

from ._derive import check_failed, config_type, spec_of_class, union_members

__all__ = [
    "MAX_DEPTH",
    "LossConfigError",
    "config_problems",
    "decode_config",
    "encode_config",
    "field_path",
    "load_config",
    "max_config_bytes",
    "parse_document",
    "read_document",
]

FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}

#: The environment variable that sets :func:`max_config_bytes`.
MAX_BYTES_ENV = "LOSSFN_MAX_CONFIG_BYTES"
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
#: How deep a config document may nest (a loss tree with a similarity matrix is 5 deep).
MAX_DEPTH = 64
#: The most values a config built in Python may hold (a parsed one: as many as its characters).
MAX_VALUES = 10_000_000
#: Longest run of non-blank characters an error message echoes (longer ones are shortened).
ECHO = 80


def max_config_bytes() -> int:
    """The largest config file lossfn reads: ``$LOSSFN_MAX_CONFIG_BYTES``, else 4 MiB."""
    value = os.environ.get(MAX_BYTES_ENV, "")
    try:
        limit = int(value) if value.strip() else DEFAULT_MAX_BYTES
    except ValueError:
        raise LossConfigError(f"{MAX_BYTES_ENV} must be a number of bytes; got {value!r}") from None
    if limit < 1:
        raise LossConfigError(f"{MAX_BYTES_ENV} must be at least 1; got {limit}")
    return limit


# -- messages --------------------------------------------------------------------------

_AT = re.compile(r"^(.*) - at `(\$[^`]*)`$", re.S)


def _shorten(match: re.Match[str], echo: int = ECHO) -> str:
    text = match.group(0)
    return f"{text[: echo // 2]}…{text[-echo // 4 :]} ({len(text)} characters)"


def clean(text: str, limit: int = 2000, echo: int = ECHO) -> str:
    """``text`` on one line: long runs shortened, control characters and newlines escaped."""
    if len(text) > echo:
        text = re.sub(r"\S{%d,}" % (echo + 1), lambda m: _shorten(m, echo), text)
    if len(text) > limit:  # keep the end: it holds the path
        text = f"{text[: limit // 2]} … {text[-limit // 4 :]}"
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return text


class LossConfigError(msgspec.ValidationError):
    """A loss config is invalid; the message ends with the JSON path of the fault (`` - at `$.t1` ``).

    ``error.path`` is that path and ``error.text`` the message before it.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        if path is None:
            match = _AT.match(message)
            text, path = match.groups() if match else (message, None)
        else:
            text = message
        self.text = clean(text)
        # a path 64 levels deep is long but must stay whole; a 10 MB key in it must not
        self.path = None if path is None else clean(path, limit=1000, echo=400)
        super().__init__(self.text if self.path is None else f"{self.text} - at `{self.path}`")

    def under(self, prefix: str) -> LossConfigError:
        """The same error inside ``prefix``: ``$.delta`` under ``$.outputs.price`` -> ``$.outputs.price.delta``."""
        return LossConfigError(self.text, prefix + (self.path or "$")[1:])


def field_path(message: str) -> str:
    """Put the field of a whole-value check into the JSON path of msgspec's message.

    ``"Expected X, got Y [field w]"`` (msgspec adds no path at the top level) ->
    ``"Expected X, got Y - at `$.w`"``; nested: ``... - at `$.outputs.price.w```.
    """
    match = re.match(r"^(.*) \[field (\w+)\](?: - at `(\$[^`]*)`)?$", message, re.S)
    if not match:
        return message
    text, field, path = match.groups()
    return f"{text} - at `{path or '$'}.{field}`"


def _describe(value: Any) -> str:
    names = {str: "a string", list: "a list", int: "an integer", float: "a number", bool: "a boolean"}
    if value is None:
        return "nothing (null)"
    return names.get(type(value), f"`{type(value).__name__}`")


def path_of(path: str, key: Any) -> str:
    """The JSON path of ``key`` inside ``path``: ``$.delta``, ``$[1]``, ``$.outputs["a.b"]``."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    key = str(key)
    return f"{path}.{key}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else f"{path}[{json.dumps(key)}]"


# -- parsing ----------------------------------------------------------------------------


class _Object(dict):
    """A parsed mapping that remembers the keys its document repeated."""

    duplicates: tuple[Any, ...] = ()


def _json_object(pairs: list[tuple[str, Any]]) -> _Object:
    result = _Object(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        result.duplicates = tuple(key for key, _ in pairs if key in seen or seen.add(key))
    return result


# YAML 1.2's floats that YAML 1.1 reads as strings: an exponent without a dot or a sign
_YAML12_FLOAT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading YAML 1.2 floats and remembering repeated keys."""

    def construct_config_map(self, node: yaml.MappingNode):  # type: ignore[no-untyped-def]
        data = _Object()
        yield data
        if isinstance(node, yaml.MappingNode):
            keys = [self.construct_object(k, deep=True) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
            try:
                if len(set(keys)) != len(keys):
                    seen: set[Any] = set()
                    data.duplicates = tuple(k for k in keys if k in seen or seen.add(k))
            except TypeError:  # an unhashable key: construct_mapping says so
                pass
        data.update(self.construct_mapping(node))


_YamlLoader.add_constructor("tag:yaml.org,2002:map", _YamlLoader.construct_config_map)
_YamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789."))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def parse_document(raw: bytes | str, kind: str) -> Any:
    """Parse a JSON, YAML or TOML document (no validation), refusing repeated keys.

    Raises:
        LossConfigError: the document is malformed, too deep, too large once
            expanded, or repeats a key (with the path of the mapping).
    """
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark, as editors on Windows write
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LossConfigError(f"Malformed {kind.upper()}: not UTF-8 text ({exc.reason} at byte {exc.start})", "$")
    else:
        text = raw.removeprefix("\ufeff")
    if not text.strip():
        raise LossConfigError(f"Empty {kind.upper()} document: expected a loss config", "$")
    try:
        if kind == "json":
            data = json.loads(text, object_pairs_hook=_json_object)
        elif kind == "yaml":
            data = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a SafeLoader subclass)
        elif kind == "toml":
            data = tomllib.loads(text)  # TOML itself refuses a repeated key
        else:
            raise ValueError(f"unknown config format {kind!r} (use 'json', 'yaml' or 'toml')")
    except RecursionError:
        raise LossConfigError(
            f"Malformed {kind.upper()}: nested too deeply for the parser (lossfn reads at most {MAX_DEPTH} levels)", "$"
        ) from None
    except (json.JSONDecodeError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise LossConfigError(f"Malformed {kind.upper()}: {_one_line(exc)}", "$") from None
    except ValueError as exc:  # Python's limit on the digits of an integer, say
        raise LossConfigError(f"Malformed {kind.upper()}: {_one_line(exc)}", "$") from None
    return plain(data, max_values=max(len(text), 64))


def plain(data: Any, *, max_values: int | None = None) -> Any:
    """A plain copy of a parsed document (dicts and lists), checked for size, depth and repeated keys.

    YAML aliases share one object many times; the copy counts every use, so a
    small file cannot expand into gigabytes: at most ``max_values`` values (a
    parsed document: as many as it has characters; a mapping built in Python:
    :data:`MAX_VALUES`).
    """
    limit = MAX_VALUES if max_values is None else max_values
    budget = [limit]

    def copy(value: Any, path: str, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise LossConfigError(f"Document too large: more than {limit} values once YAML aliases are expanded", "$")
        if isinstance(value, str):
            _check_text(value, path)
            return value
        if isinstance(value, Mapping):
            if depth >= MAX_DEPTH:
                raise LossConfigError(f"Document nested too deeply (at most {MAX_DEPTH} levels)", path)
            duplicates = getattr(value, "duplicates", ())
            if duplicates:
                raise LossConfigError(f"Object contains the key {_quote(duplicates[0])} more than once", path)
            for key in value:
                if isinstance(key, str):
                    _check_text(key, path)
            return {key: copy(item, path_of(path, key), depth + 1) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            if depth >= MAX_DEPTH:
                raise LossConfigError(f"Document nested too deeply (at most {MAX_DEPTH} levels)", path)
            return [copy(item, path_of(path, index), depth + 1) for index, item in enumerate(value)]
        return value

    return copy(data, "$", 0)


def _check_text(text: str, path: str) -> None:
    """A string must be Unicode text: JSON's ``"\ud800"`` is a lone surrogate, which no encoder takes."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise LossConfigError(f"Invalid string: {exc.reason} (a lone UTF-16 surrogate?)", path) from None


def _quote(key: Any) -> str:
    return f"`{key}`" if isinstance(key, str) else repr(key)


def read_document(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> Any:
    """Read and parse a config file: a regular file of at most ``max_bytes`` (see :func:`max_config_bytes`).

    Raises:
        LossConfigError: an unknown suffix, not a regular file (a device, a FIFO,
            a directory), too large, unreadable, or malformed.
    """
    path = pathlib.Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise LossConfigError(f"unknown config format {path.suffix!r} (use .json, .yaml, .yml or .toml)")
    limit = max_config_bytes() if max_bytes is None else max_bytes
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise LossConfigError(f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = "a directory" if stat.S_ISDIR(info.st_mode) else "a device, a FIFO or a socket"
            raise LossConfigError(f"not a regular file ({what}); lossfn reads config files only")
        if info.st_size > limit:
            raise LossConfigError(f"file too large: {info.st_size} bytes, more than the limit of {limit} ({MAX_BYTES_ENV})")
        with os.fdopen(fd, "rb", closefd=False) as file:
            raw = file.read(limit + 1)
    except OSError as exc:
        raise LossConfigError(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) > limit:  # the file grew while we read it
        raise LossConfigError(f"file too large: more than the limit of {limit} bytes ({MAX_BYTES_ENV})")
    return parse_document(raw, kind)


# -- validation ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _classes(union: Any) -> dict[str, type]:
    """``{tag: class}`` of a union of configs."""
    return {cls.__struct_config__.tag: cls for cls in union_members(union)}


def _feature(feature: Feature | str | None) -> Feature | None:
    return None if feature is None else Feature.parse(feature)


def _close(word: str, choices: list[str]) -> list[str]:
    if len(word) > 200:  # nothing is that close to a long string, and difflib would take its time
        return []
    return difflib.get_close_matches(word, choices, n=3, cutoff=0.5)


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(cls.__struct_fields__)


def _at_path(data: Any, path: str) -> Any:
    """The value at a JSON path msgspec wrote (``$.outputs.price``, ``$.a[0]``), or None."""
    for name, index in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", path):
        try:
            data = data[name] if name else data[int(index)]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _explain(error: msgspec.ValidationError, union: Any, feature: Feature | None, data: Any) -> LossConfigError:
    """msgspec's error as a `LossConfigError`: the path always, the choices for an unknown name."""
    message = field_path(str(error))
    key = re.fullmatch(r"(.*) - at `key` in `(\$[^`]*)`", message, re.S)  # msgspec's form for a bad key
    if key:
        return LossConfigError(f"{key.group(1)} keys (a mapping's keys are names)", key.group(2))
    match = _AT.match(message)
    text, path = match.groups() if match else (message, "$")
    # msgspec writes the limit 1e15 as 1000000000000000.0
    text = re.sub(r"(?<=[<>] )(-?\d{7,}\.0)\b|(?<=[<>]= )(-?\d{7,}\.0)\b", lambda m: f"{float(m.group(0)):g}", text)
    value = _at_path(data, path)
    if isinstance(value, float) and not math.isfinite(value):  # msgspec names the bound, not the value
        text += f", got {value}"
    tags = _classes(union)
    unknown_tag = re.fullmatch(r"Invalid value '(.*)'", text, re.S)
    if unknown_tag and path.endswith("type"):
        names = sorted(tags)
        close = _close(unknown_tag.group(1), names)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        where = f" for {feature.value} features" if feature else ""
        return LossConfigError(f"Unknown loss {unknown_tag.group(1)!r}{where}{hint} (allowed: {', '.join(names)})", path)
    unknown_field = re.fullmatch(r"Object contains unknown field `(.*)`", text, re.S)
    if unknown_field:
        holder = _at_path(data, path)
        cls = tags.get(holder.get("type")) if isinstance(holder, Mapping) else None
        if cls is not None:
            return _unknown_field(unknown_field.group(1), cls, path)
    if text == "Object missing required field `type`":
        text += " (name the loss, or give a feature type to use its default loss)"
    return LossConfigError(text, path)


def _unknown_field(key: Any, cls: type, path: str) -> LossConfigError:
    close = _close(str(key), list(_fields(cls)))
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return LossConfigError(f"Object contains unknown field {_quote(key)}{hint}", path)


def _with_default_type(data: Mapping[str, Any], feature: Feature | None) -> dict[str, Any]:
    """A config without ``type`` for a feature gets the feature's default loss, as in Ludwig."""
    data = dict(data)
    if "type" not in data and feature is not None and feature in DEFAULT_LOSS:
        data["type"] = DEFAULT_LOSS[feature]
    return data


def _convert(data: Any, union: Any, feature: Feature | None) -> msgspec.Struct:
    """Validate parsed data (already :func:`plain`) into a config of ``union``."""
    if not isinstance(data, Mapping):
        raise LossConfigError(f"Expected a loss config (an object), got {_describe(data)}", "$")
    data = _with_default_type(data, feature)
    tag = data.get("type")
    # a known tag converts straight into its class; anything else through the
    # union, whose error names the problem (missing or unknown `type`)
    target = _classes(union).get(tag, union) if isinstance(tag, str) else union
    try:
        return msgspec.convert(data, type=target)
    except msgspec.ValidationError as exc:
        raise _explain(exc, union, feature, data) from None


def decode_config(data: Any, *, feature: Feature | str | None = None, format: str = "json") -> msgspec.Struct:
    """Validate a loss config and fill its defaults, in one pass.

    Args:
        data: a mapping, a document (``str``/``bytes``: JSON, or ``format``), or a
            config instance (validated again: msgspec does not validate a Struct
            built in Python).
        feature: only accept losses that serve this output-feature type; a config
            without ``type`` gets the feature's default loss (as in Ludwig).
        format: the format of a ``str``/``bytes`` document: ``"json"``, ``"yaml"``
            or ``"toml"``.

    Raises:
        LossConfigError: a ``msgspec.ValidationError`` whose message ends with the
            JSON path of the fault (``$.t1``), unknown fields and repeated keys included.
    """
    feature = _feature(feature)
    union = config_type(feature)
    if isinstance(data, msgspec.Struct):
        if not isinstance(data, union_members(union)):
            tag = getattr(type(data).__struct_config__, "tag", None)
            raise _explain(msgspec.ValidationError(f"Invalid value '{tag}' - at `$.type`"), union, feature, {})
        try:  # a Struct's __init__ validates nothing (HuberConfig(delta=-5.0) builds): check it again
            msgspec.convert(msgspec.to_builtins(data), type=type(data))
        except msgspec.ValidationError as exc:
            raise _explain(exc, union, feature, msgspec.to_builtins(data)) from None
        return data
    if isinstance(data, (str, bytes, bytearray, memoryview)):
        data = parse_document(data, format)
    elif isinstance(data, Mapping):
        data = plain(data)
    return _convert(data, union, feature)


# -- every fault, for `lossfn validate` ------------------------------------------------


@functools.lru_cache(maxsize=256)
def _holder(cls: type, field: str) -> type:
    """A struct of one field of ``cls`` (its annotation and the field's own checks)."""
    spec = spec_of_class(cls)
    from ._derive import WEIGHT, _checked_fields

    annotation = WEIGHT if field == "weight" else next(p.annotation for p in spec.params if p.name == field)
    own = [c for name, checks in _checked_fields(spec) if name == field for c in checks if not c.uses]

    def __post_init__(self: msgspec.Struct) -> None:
        value = getattr(self, field)
        if value is not None:
            for check in own:
                if not check.predicate(value):
                    raise check_failed(field, value, check)

    return msgspec.defstruct(f"_{cls.__name__}_{field}", [(field, annotation)], namespace={"__post_init__": __post_init__})


def config_problems(data: Any, *, feature: Feature | str | None = None) -> list[LossConfigError]:
    """Every fault of one parsed config (``[]``: valid); :func:`decode_config` raises the first.

    Each field is checked on its own, so a config with three bad fields gives
    three errors; the checks across fields run once each field is valid.
    """
    feature = _feature(feature)
    union = config_type(feature)
    try:
        _convert(data, union, feature)
        return []
    except LossConfigError as first:
        if not isinstance(data, Mapping):
            return [first]
        data = _with_default_type(data, feature)
        cls = _classes(union).get(data.get("type")) if isinstance(data.get("type"), str) else None
        if cls is None:
            return [first]
        problems: list[LossConfigError] = []
        for key, value in data.items():
            if key == "type":
                continue
            if key not in _fields(cls):
                problems.append(_unknown_field(key, cls, "$"))
                continue
            try:
                msgspec.convert({key: value}, type=_holder(cls, key))
            except msgspec.ValidationError as exc:
                problems.append(_explain(exc, union, feature, data))
        return problems or [first]


def document_configs(data: Any) -> list[tuple[str, Any]]:
    """``[(JSON path, config), ...]`` of a parsed document: one config (``$``), a list
    (``$[0]``, ...) or TOML's ``[[loss]]`` tables (``$.loss[0]``, ...)."""
    root = "$"
    if isinstance(data, Mapping) and set(data) == {"loss"} and isinstance(data["loss"], list):
        data, root = data["loss"], "$.loss"  # TOML's array of tables
    if isinstance(data, list):
        if not data:
            raise LossConfigError("Expected at least one loss config, got an empty list", root)
        return [(f"{root}[{index}]", item) for index, item in enumerate(data)]
    return [("$", data)]


def load_config(
    path: str | os.PathLike[str], *, feature: Feature | str | None = None, max_bytes: int | None = None
) -> msgspec.Struct | list[msgspec.Struct]:
    """Load a loss config (or a list of them) from ``.json``, ``.yaml``/``.yml`` or ``.toml``.

    A TOML file holds one config as a table, or several as ``[[loss]]`` entries.
    Only a regular file of at most ``max_bytes`` is read (default
    :func:`max_config_bytes`: ``$LOSSFN_MAX_CONFIG_BYTES`` or 4 MiB).
    """
    data = read_document(path, max_bytes=max_bytes)
    items = document_configs(data)
    union = config_type(_feature(feature))
    configs = []
    for where, item in items:
        try:
            configs.append(_convert(item, union, _feature(feature)))
        except LossConfigError as exc:
            raise exc.under(where) from None
    return configs[0] if items[0][0] == "$" else configs


def encode_config(config: msgspec.Struct, *, format: str = "json") -> Any:
    """Encode a config: ``"json"`` (str), ``"yaml"`` (str), ``"toml"`` (str) or ``"dict"``.

    Every field is written (as Ludwig writes configs back), except ``None``
    values in TOML, which has no null: decoding restores them as defaults. The
    config is validated first (one built in Python is not: ``HuberConfig(delta=inf)``
    would be written as ``null``), so what is written decodes back to it.
    """
    if not isinstance(config, msgspec.Struct):
        raise TypeError(f"encode_config: expected a loss config, got {type(config).__name__}")
    decode_config(config)
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
