"""Configs derived from loss signatures: msgspec Structs, their tagged union, JSON Schema.

``lossfn.schemas.<Name>Config`` resolves the config class of any registered loss
(so configs pickle), and ``lossfn.schemas.LossConfig`` is the current union.
"""

from typing import Any

from lossfn.registry import registered as _registered

from ._derive import WEIGHT
from ._derive import alias_configs
from ._derive import config_class
from ._derive import config_type
from ._derive import json_schema
from ._derive import python_type
from ._derive import spec_of
from ._io import LossConfigError
from ._io import config_problems
from ._io import decode_config
from ._io import document_configs
from ._io import encode_config
from ._io import field_path
from ._io import load_config
from ._io import max_config_bytes
from ._io import parse_document
from ._io import read_document
from ._derive import inexpressible_checks

__all__ = [
    "LossConfig",
    "LossConfigError",
    "WEIGHT",
    "alias_configs",
    "config_class",
    "config_problems",
    "config_type",
    "decode_config",
    "document_configs",
    "encode_config",
    "field_path",
    "inexpressible_checks",
    "json_schema",
    "load_config",
    "max_config_bytes",
    "parse_document",
    "python_type",
    "read_document",
    "spec_of",
]


def __getattr__(name: str) -> Any:
    if name == "LossConfig":
        return config_type()
    for spec in _registered().values():
        for cls in (spec.config, *alias_configs(spec)):
            if cls.__name__ == name:
                return cls
    raise AttributeError(f"module 'lossfn.schemas' has no attribute {name!r}")
