"""Modules derived from loss signatures: ``lossfn.nn.<CamelCaseName>`` for every loss.

>>> import lossfn
>>> lossfn.nn.SoftmaxCrossEntropy(label_smoothing=0.1)
SoftmaxCrossEntropy(label_smoothing=0.1, reduction='mean')
"""

from collections.abc import Sequence as _Sequence
from typing import Any

from lossfn.registry import Feature as _Feature
from lossfn.registry import Reduction as _Reduction
from lossfn.registry import registered as _registered
from lossfn.schemas import decode_config as _decode_config
from lossfn.schemas import spec_of as _spec_of

from ._derive import DerivedLoss
from ._derive import module_class
from ._derive import stepping_aside
from ._heads import LinearCrossEntropyHead

__all__ = ["DerivedLoss", "LinearCrossEntropyHead", "build", "module_class", "safe_globals", "stepping_aside"]


def safe_globals() -> list[type]:
    """The module classes of every registered loss, for ``torch.load(..., weights_only=True)``.

    A pickled model that holds lossfn modules loads with torch's safe default once
    they are allowed, like any ``nn.Module`` class::

        torch.serialization.add_safe_globals(lossfn.nn.safe_globals())
        model = torch.load(path)   # weights_only=True

    (or ``with torch.serialization.safe_globals([...]):``). Nothing else a lossfn module
    pickles needs allowing: its config is stored as plain numbers and lists.
    """
    return [spec.module for spec in _registered().values()]


def build(
    config: Any,
    *,
    feature: _Feature | str | None = None,
    reduction: _Reduction = "mean",
    validate_inputs: bool = True,
    vocabulary: _Sequence[str] | None = None,
) -> DerivedLoss:
    """An ``nn.Module`` from a loss config: a config instance, a mapping or JSON.

    ``vocabulary`` (class names in index order) resolves tensor parameters that a
    config gives as mappings (Ludwig's ``class_weights: {"cat": 1, "dog": 2}``).

    >>> import lossfn
    >>> lossfn.build({"type": "mean_squared_error", "weight": 0.5})
    MeanSquaredError(reduction='mean', weight=0.5)
    """
    config = _decode_config(config, feature=feature)
    return _spec_of(config).module.from_config(
        config, reduction=reduction, validate_inputs=validate_inputs, vocabulary=vocabulary
    )


def __getattr__(name: str) -> Any:
    for spec in _registered().values():
        if spec.class_name == name:
            return spec.module
    raise AttributeError(f"module 'lossfn.nn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {spec.class_name for spec in _registered().values()})
