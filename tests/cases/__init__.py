"""The catalog the conformance suite is parametrized over: one `Case` per registered loss.

Each family keeps its cases in its own module here (``cases/classification.py``,
``cases/tempered.py``, ...) as a module-level ``CASES`` list; this package collects
them. Every registered loss needs a case: the conformance suite fails for a loss
without one, so a new loss cannot skip the checks.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

Inputs = tuple[Tensor | None, ...]


def reduce_like_torch(per: Tensor, reduction: str) -> Tensor:
    """A reference's unreduced losses reduced as torch's elementwise losses do: ``"none"`` as is,
    their sum, or their plain mean (0 for no element, lossfn's answer where torch gives nan)."""
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" or per.numel() == 0 else per.mean()


def per_example(*inputs: Tensor) -> tuple[int, ...]:
    """``reduction="none"`` has one value per example: ``[B]``."""
    return tuple(inputs[0].shape[:1])


def elementwise(*inputs: Tensor) -> tuple[int, ...]:
    """``reduction="none"`` has one value per element of the model output (its shape)."""
    return tuple(inputs[0].shape)


@dataclasses.dataclass(frozen=True)
class Twin:
    """A ``torch.nn.functional`` call the loss must equal, for every reduction.

    Attributes:
        label: what this twin exercises (the test id).
        make: ``make(dtype, generator) -> inputs``: inputs of a shape torch accepts.
        torch: ``torch(*inputs, reduction=...)``: torch's number.
        params: the loss's keyword arguments for this call.
    """

    label: str
    make: Callable[[torch.dtype, torch.Generator], Inputs]
    torch: Callable[..., Tensor]
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Case:
    """How to exercise one loss.

    Attributes:
        name: the registry name.
        make: ``make(batch, dtype, generator) -> inputs``: a sample batch, one
            tensor per input of the loss in its order (the model output first;
            labels on the same device, integer or float as the loss takes them).
        params: hyperparameter settings to check, each a dict of keyword
            arguments to the function (and the module); ``{}`` means defaults.
        reference: ``reference(*inputs, reduction=..., **params)`` from an
            independent source (torch.nn.functional, a closed form), or None.
        twice_differentiable: the hessian is checked against autograd's.
        extreme: the scale of the logits in the extreme-input check.
        tolerance: (rtol, atol) for comparisons in float32.
        none_shape: ``none_shape(*inputs)``, the shape of ``reduction="none"``:
            :func:`per_example` (the default, ``[B]``), :func:`elementwise` (the
            model output's shape), ``[B, T]`` for per-token losses.
        mean_weights: ``mean_weights(*inputs, **params)``: the weights of
            the weighted mean (``"mean" == (none).sum() / weights.sum()``), or
            None for a plain mean over the ``"none"`` output.
        twins: the ``torch.nn.functional`` calls the loss equals (see :class:`Twin`).
        kind: the model output the loss consumes, as Ludwig's ``get_loss_inputs()``
            says (``"logits"``; ``"anomaly_score"`` for the anomaly losses).
        classes: ``classes(C)`` is a ``make`` for ``C`` classes, for a loss with a
            per-class hyperparameter (``class_weights``): a config with ``C`` weights
            runs on inputs with ``C`` classes (``tests/test_config_robustness.py``).
        classes_needed: ``classes_needed(**params)``: the class count a setting's
            class-index hyperparameters need (``background_class + 1``), or None; a
            config fuzzed with a larger index runs on ``classes(n)`` inputs.
        labels_bounded: the labels have a valid range that the module's ``validate=``
            hook checks (class indices, targets in [0, 1]); False for real-valued
            targets whose hook checks another input (``gaussian_nll``'s variance).
        nonnegative: the loss is never negative; False for a negative log-likelihood
            whose constant terms are dropped (torch's ``poisson_nll_loss``, too).
        skip: ``{check: reason}`` for generic checks that do not apply to this
            loss. A key is a test of ``tests/test_conformance.py`` without its
            ``test_`` prefix (``"per_example_gradients"`` for a batch-coupled loss:
            the whole test is skipped), or one of its partial checks
            (``"reduction_consistency"`` for a loss whose mean is not a mean of
            per-example values, ``"compile"``, ``"tensor_hyperparameters"``: the
            test's earlier checks still run). The reason is shown in the test report.
    """

    name: str
    make: Callable[[int, torch.dtype, torch.Generator], Inputs]
    params: tuple[dict[str, Any], ...] = ({},)
    reference: Callable[..., Tensor] | None = None
    twice_differentiable: bool = True
    extreme: float = 1e4
    tolerance: tuple[float, float] = (1e-5, 1e-6)
    none_shape: Callable[..., tuple[int, ...]] = per_example
    mean_weights: Callable[..., Tensor | None] = lambda *inputs, **params: None
    skip: Mapping[str, str] = dataclasses.field(default_factory=dict)
    twins: tuple[Twin, ...] = ()
    kind: str = "logits"
    classes: Callable[[int], Callable[[int, torch.dtype, torch.Generator], Inputs]] | None = None
    labels_bounded: bool = True
    classes_needed: Callable[..., int | None] = lambda **params: None
    nonnegative: bool = True


def class_logits(num_classes: int) -> Callable[[int, torch.dtype, torch.Generator], Inputs]:
    """``[B, C]`` normal logits and integer labels in ``[0, C)``."""

    def make(batch: int, dtype: torch.dtype, generator: torch.Generator) -> Inputs:
        logits = torch.randn(batch, num_classes, generator=generator).to(dtype)
        labels = torch.randint(0, num_classes, (batch,), generator=generator)
        return logits, labels

    return make


def regression(*features: int) -> Callable[[int, torch.dtype, torch.Generator], Inputs]:
    """Predictions and targets of shape ``[B, *features]``."""

    def make(batch: int, dtype: torch.dtype, generator: torch.Generator) -> Inputs:
        shape = (batch, *features)
        return (
            torch.randn(shape, generator=generator).to(dtype),
            torch.randn(shape, generator=generator).to(dtype),
        )

    return make


def all_cases() -> dict[str, Case]:
    """Every case of every module in this package, ``{loss name: case}``."""
    cases: dict[str, Case] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for case in getattr(module, "CASES", ()):
            if case.name in cases:
                raise ValueError(f"two cases for loss {case.name!r}")
            cases[case.name] = case
    return cases
