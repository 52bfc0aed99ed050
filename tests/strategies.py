"""Hypothesis strategies shared by the tests."""

import math

import msgspec
from hypothesis import strategies as st

import lossfn

from lossfn.registry._bounds import FLOAT_MAX, FLOAT_TINY


def hyperparameter_floats(low: float, high: float, **kwargs) -> st.SearchStrategy[float]:
    """Floats in [low, high] that a hyperparameter may take: 0 or at least 1e-15 in magnitude.

    (A nonzero float below 1e-15 in magnitude is refused by every loss, see
    ``lossfn/registry/_bounds.py``.) The open upper end of a bound is kept finite.
    """
    high = min(high, FLOAT_MAX)
    base = st.floats(low, high, allow_nan=False, allow_infinity=False, **kwargs)
    return base.filter(lambda v: v == 0 or abs(v) >= FLOAT_TINY)


def hyperparameter_edges(name: str):
    """(parameter, value) at each end of every scalar float hyperparameter's allowed range."""
    for param in lossfn.get_loss(name).params:
        if param.tensor or any(check.uses for check in param.checks):
            continue
        info = msgspec.inspect.type_info(param.annotation)
        while isinstance(info, msgspec.inspect.Metadata):
            info = info.type
        if not isinstance(info, msgspec.inspect.FloatType):
            continue
        if info.ge is not None:
            yield param.name, float(info.ge)
        if info.gt is not None:
            yield param.name, max(math.nextafter(float(info.gt), math.inf), lossfn.registry.FLOAT_TINY)
        if info.le is not None:
            yield param.name, float(info.le)
        if info.lt is not None:
            yield param.name, math.nextafter(float(info.lt), -math.inf)
