"""The pure losses: ``(logits, labels, *, params..., reduction="mean") -> Tensor``.

One private module per loss family; each loss registers itself with
``@register_loss`` and is re-exported here. A loss registered elsewhere (a plugin,
a notebook cell) is reachable here too, as ``lossfn.functional.<name>``.
"""

from typing import Any

from lossfn.registry import get_loss as _get_loss
from lossfn.registry import registered as _registered

from ._classification import sigmoid_cross_entropy
from ._classification import softmax_cross_entropy
from ._regression import mean_absolute_error
from ._regression import mean_squared_error
from ._torch_route import register_torch_loss

__all__ = [
    "mean_absolute_error",
    "mean_squared_error",
    "register_torch_loss",
    "sigmoid_cross_entropy",
    "softmax_cross_entropy",
]


def __getattr__(name: str) -> Any:
    if name in _registered():
        return _get_loss(name).fn
    raise AttributeError(f"module 'lossfn.functional' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_registered()))
