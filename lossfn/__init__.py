"""lossfn: loss functions for PyTorch, written as pure functions.

Each loss is a pure function in :mod:`lossfn.functional`; its config
(:mod:`lossfn.schemas`), its module (:mod:`lossfn.nn`), the JSON Schema and its
CLI page are derived from the function's signature.
"""

from typing import Any

from lossfn import compose
from lossfn import distributed
from lossfn import functional
from lossfn import nn
from lossfn import schemas
from lossfn.functional import register_torch_loss
from lossfn.nn import build
from lossfn.registry import AsTensor
from lossfn.registry import Check
from lossfn.registry import DuplicateLossError
from lossfn.registry import Feature
from lossfn.registry import LossContractError
from lossfn.registry import LossSpec
from lossfn.registry import Reduction
from lossfn.registry import UnknownLossError
from lossfn.registry import default_loss
from lossfn.registry import get_loss
from lossfn.registry import losses_for
from lossfn.registry import register_loss
from lossfn.registry import registered
from lossfn.schemas import LossConfigError
from lossfn.schemas import config_type
from lossfn.schemas import decode_config
from lossfn.schemas import encode_config
from lossfn.schemas import json_schema
from lossfn.schemas import load_config

__version__ = "0.1.0"

__all__ = [
    "AsTensor",
    "Check",
    "DuplicateLossError",
    "Feature",
    "LossConfig",
    "LossConfigError",
    "LossContractError",
    "LossSpec",
    "Reduction",
    "UnknownLossError",
    "build",
    "compose",
    "distributed",
    "config_type",
    "decode_config",
    "default_loss",
    "encode_config",
    "functional",
    "get_loss",
    "json_schema",
    "load_config",
    "losses_for",
    "nn",
    "register_loss",
    "register_torch_loss",
    "registered",
    "schemas",
]


def __getattr__(name: str) -> Any:
    if name == "LossConfig":  # follows the registry: a loss registered later joins it
        return config_type()
    raise AttributeError(f"module 'lossfn' has no attribute {name!r}")
