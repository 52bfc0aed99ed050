"""Hypothesis strategies shared by the tests."""

from hypothesis import strategies as st

from lossfn.registry._bounds import FLOAT_MAX, FLOAT_TINY


def hyperparameter_floats(low: float, high: float, **kwargs) -> st.SearchStrategy[float]:
    """Floats in [low, high] that a hyperparameter may take: 0 or at least 1e-15 in magnitude.

    (A float of magnitude below 1e-15 is refused by every loss: float32 rounds it to 0;
    see ``lossfn/registry/_bounds.py``.) The open upper end of a bound is kept finite.
    """
    high = min(high, FLOAT_MAX)
    base = st.floats(low, high, allow_nan=False, allow_infinity=False, **kwargs)
    return base.filter(lambda v: v == 0 or abs(v) >= FLOAT_TINY)
