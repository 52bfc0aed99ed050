"""The floor of lossfn: loss records, feature types and look-ups.

Imports no other lossfn layer and derives nothing; see ``DESIGN.md``.
"""

from ._bounds import FLOAT_MAX, FLOAT_TINY, INT_MAX, INT_MIN, LIMITS, TINY_EXPECTED
from ._checks import check_reduction
from ._checks import functorch_level
from ._checks import fail
from ._feature import DEFAULT_LOSS, Feature
from ._plugins import GROUP as PLUGIN_GROUP
from ._plugins import PluginWarning
from ._registry import DuplicateLossError
from ._registry import LossRedefinedWarning
from ._registry import UnknownLossError
from ._registry import default_loss
from ._registry import generation
from ._registry import get_loss
from ._registry import losses_for
from ._registry import register_loss
from ._registry import registered
from ._registry import temporary_registry
from ._registry import unknown_message
from ._registry import unregister_loss
from ._spec import REDUCTIONS
from ._spec import REPRESENTABLE
from ._spec import DEFAULT_KIND
from ._spec import AsTensor
from ._spec import Check
from ._spec import InputCheck
from ._spec import LossContractError
from ._spec import LossSpec
from ._spec import Param
from ._spec import Reduction
from ._spec import camel_case
from ._spec import register_deriver

__all__ = [
    "AsTensor",
    "Check",
    "DEFAULT_KIND",
    "DEFAULT_LOSS",
    "DuplicateLossError",
    "FLOAT_MAX",
    "FLOAT_TINY",
    "Feature",
    "INT_MAX",
    "INT_MIN",
    "LIMITS",
    "InputCheck",
    "LossContractError",
    "LossRedefinedWarning",
    "LossSpec",
    "PLUGIN_GROUP",
    "Param",
    "PluginWarning",
    "REDUCTIONS",
    "REPRESENTABLE",
    "TINY_EXPECTED",
    "Reduction",
    "UnknownLossError",
    "camel_case",
    "check_reduction",
    "default_loss",
    "fail",
    "functorch_level",
    "generation",
    "get_loss",
    "losses_for",
    "register_deriver",
    "register_loss",
    "registered",
    "temporary_registry",
    "unknown_message",
    "unregister_loss",
]
