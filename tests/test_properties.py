"""Property tests (hypothesis) over the registry: hyperparameters drawn from the bounds
written in each signature, read through ``msgspec.inspect.type_info``."""

from __future__ import annotations

import math

import msgspec
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lossfn
from lossfn import functional as LF

from lossfn.registry._bounds import FLOAT_MAX

from cases import all_cases
from strategies import hyperparameter_floats

CASES = all_cases()
NAMES = [name for name in lossfn.registered() if name in CASES]
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _bounded_floats(info: msgspec.inspect.FloatType) -> st.SearchStrategy[float]:
    low = info.gt if info.gt is not None else info.ge
    high = info.lt if info.lt is not None else info.le
    if high is None or high >= FLOAT_MAX:  # lossfn's limit, not the loss's: stay in a useful range
        high = (low or 0.0) + 10.0
    return hyperparameter_floats(low, high, exclude_min=info.gt is not None, exclude_max=info.lt is not None)


def hyperparameters(name: str) -> st.SearchStrategy[dict]:
    """Valid values for each scalar float hyperparameter of the loss (others at defaults).

    A parameter whose validity depends on other fields (a ``Check`` with ``uses``)
    stays at its default: its bounds alone do not say which values are valid.
    """
    fields = {}
    for param in lossfn.get_loss(name).params:
        if any(check.uses for check in param.checks):
            continue
        info = msgspec.inspect.type_info(param.annotation)
        while isinstance(info, msgspec.inspect.Metadata):
            info = info.type
        if isinstance(info, msgspec.inspect.FloatType) and not param.tensor:
            fields[param.name] = _bounded_floats(info)
    return st.fixed_dictionaries(fields)


@pytest.mark.parametrize("name", NAMES)
def test_random_valid_hyperparameters_give_finite_consistent_losses(name):
    case = CASES[name]

    @SETTINGS
    @given(params=hyperparameters(name), seed=st.integers(0, 2**16), batch=st.integers(1, 9))
    def check(params, seed, batch):
        lossfn.decode_config({"type": name, **params})  # what hypothesis drew is a valid config
        logits, *rest = case.make(batch, torch.float32, torch.Generator().manual_seed(seed))
        fn = lossfn.get_loss(name).fn
        none = fn(logits, *rest, **params, reduction="none")
        total = fn(logits, *rest, **params, reduction="sum")
        assert torch.isfinite(none).all() and none.dtype == logits.dtype
        if "reduction_consistency" not in case.skip:
            torch.testing.assert_close(total, none.sum(), rtol=1e-5, atol=1e-5)

    check()


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n].nonnegative])
def test_losses_at_defaults_are_non_negative(name):
    case = CASES[name]

    @SETTINGS
    @given(seed=st.integers(0, 2**16), scale=st.floats(1e-3, 1e3))
    def check(seed, scale):
        logits, *rest = case.make(5, torch.float64, torch.Generator().manual_seed(seed))
        loss = lossfn.get_loss(name).fn(logits * scale, *rest, reduction="none")
        assert (loss >= -1e-12).all()

    check()


@SETTINGS
@given(shift=st.floats(-1e3, 1e3), seed=st.integers(0, 2**16), smoothing=hyperparameter_floats(0.0, 0.99))
def test_softmax_cross_entropy_ignores_a_shift_of_the_logits(shift, seed, smoothing):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 6, (4,), generator=generator)
    base = LF.softmax_cross_entropy(logits, labels, label_smoothing=smoothing, reduction="none")
    shifted = LF.softmax_cross_entropy(logits + shift, labels, label_smoothing=smoothing, reduction="none")
    torch.testing.assert_close(shifted, base, rtol=1e-9, atol=1e-9)


@SETTINGS
@given(seed=st.integers(0, 2**16))
def test_softmax_cross_entropy_is_at_least_the_entropy_of_the_labels(seed):
    """Gibbs: the cross-entropy H(q, p) >= H(q), with equality at p = q."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.softmax(torch.randn(3, 5, generator=generator, dtype=torch.float64), dim=1)
    entropy = -(labels * labels.log()).sum(1)
    logits = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    assert (LF.softmax_cross_entropy(logits, labels, reduction="none") >= entropy - 1e-12).all()
    torch.testing.assert_close(LF.softmax_cross_entropy(labels.log(), labels, reduction="none"), entropy)


@SETTINGS
@given(seed=st.integers(0, 2**16), scale=st.floats(1e-2, 1e2))
def test_sigmoid_cross_entropy_symmetry(seed, scale):
    """Flipping every logit and every label leaves the unweighted loss unchanged."""
    generator = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(3, 4, generator=generator, dtype=torch.float64)
    labels = torch.rand(3, 4, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(
        LF.sigmoid_cross_entropy(-logits, 1 - labels, reduction="none"),
        LF.sigmoid_cross_entropy(logits, labels, reduction="none"),
    )


@SETTINGS
@given(seed=st.integers(0, 2**16))
def test_regression_losses_are_symmetric_and_zero_on_the_diagonal(seed):
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(2, 5, 3, generator=generator, dtype=torch.float64)
    for fn in (LF.mean_squared_error, LF.mean_absolute_error):
        torch.testing.assert_close(fn(x, y, reduction="none"), fn(y, x, reduction="none"))
        assert fn(x, x).item() == 0.0
    # the mean squared error is the squared residual norm over the element count
    assert math.isclose(LF.mean_squared_error(x, y).item(), ((x - y) ** 2).sum().item() / x.numel(), rel_tol=1e-12)
