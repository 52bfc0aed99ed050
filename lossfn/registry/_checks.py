"""The hyperparameter check every registered loss gets, derived from its signature.

``register_loss`` returns a thin wrapper around the loss with the same signature,
name and docstring. The wrapper checks the hyperparameters a call passes as Python
values against the bounds written in their ``Annotated[..., Meta(...)]``
annotations (and their ``Check`` markers), and raises a ``ValueError`` naming the
loss, the argument and the bound, as ``torch.nn.functional.huber_loss(delta=-1)``
does. It reads no tensor values, so it costs no host sync:

- a hyperparameter given as a tensor is not checked against its bounds (that would
  read the tensor); a scalar one must be 0-d (metadata only);
- numbers are checked with plain comparisons, which ``torch.compile`` traces as
  constants; list- and mapping-valued hyperparameters go through ``msgspec``, which
  ``torch.compile`` cannot trace, so under compilation they are left to the module
  and the config (which checked them when they were set);
- defaults are not checked per call: they are checked once, here, at registration.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import reprlib
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import torch

from ._bounds import FLOAT_TINY, TINY_EXPECTED
from ._spec import REDUCTIONS, REPRESENTABLE, Check, LossContractError, Param, Signature

__all__ = ["check_reduction", "checked_function", "fail", "float32_under_autocast", "named_index_errors"]

Checker = Callable[[Any, Mapping[str, Any]], None]

_SYMBOLS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def fail(loss: str, arg: str, expected: str, got: str) -> ValueError:
    """The one error message form of lossfn: ``loss: argument must be ...; got ...``."""
    return ValueError(f"{loss}: {arg} must be {expected}; got {got}")


def check_reduction(loss: str, value: Any) -> None:
    """``reduction`` is one of ``"none"``, ``"mean"``, ``"sum"`` (the same error everywhere)."""
    if not isinstance(value, str) or value not in REDUCTIONS:
        raise fail(loss, "reduction", f"one of {', '.join(map(repr, REDUCTIONS))}", repr(value))


def _scalar_info(param: Param) -> tuple[Any, bool] | None:
    """``(FloatType | IntType | BoolType, optional)`` for a scalar hyperparameter, else None."""
    info = msgspec.inspect.type_info(param.annotation)
    while isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    optional = False
    if isinstance(info, msgspec.inspect.UnionType):
        others = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(others) != 1 or len(others) == len(info.types):
            return None
        optional, info = True, others[0]
        while isinstance(info, msgspec.inspect.Metadata):
            info = info.type
    scalar = (msgspec.inspect.FloatType, msgspec.inspect.IntType, msgspec.inspect.BoolType)
    return (info, optional) if isinstance(info, scalar) else None


def _number(value: Any) -> str:
    """``0.5``, ``-100``, ``1e+15`` (not ``1000000000000000.0``)."""
    return f"{value:g}" if isinstance(value, float) and abs(value) >= 1e6 else str(value)


def _bounds_text(info: Any) -> str:
    return " and ".join(
        f"{symbol} {_number(getattr(info, key))}" for key, symbol in _SYMBOLS if getattr(info, key) is not None
    )


def _scalar_checker(loss: str, param: Param, info: Any, optional: bool) -> Checker:
    """A check of a number (or a 0-d tensor) against ``info``'s bounds, in plain Python."""
    arg = param.name
    if isinstance(info, msgspec.inspect.BoolType):
        kind = "True or False"
    elif isinstance(info, msgspec.inspect.IntType):
        kind = "an integer"
    else:
        kind = "a number"
    is_bool = isinstance(info, msgspec.inspect.BoolType)
    is_int = isinstance(info, msgspec.inspect.IntType)
    bounds = "" if is_bool else _bounds_text(info)
    expected = f"{kind} {bounds}".strip() + (" or None" if optional else "")
    gt, ge, lt, le = (None if is_bool else getattr(info, key) for key in ("gt", "ge", "lt", "le"))

    def check(value: Any, _: Mapping[str, Any]) -> None:
        if value is None and optional:
            return
        if isinstance(value, torch.Tensor):
            if value.ndim != 0:  # metadata: no host sync (and per example under vmap)
                raise fail(loss, arg, f"{kind} or a 0-d tensor", f"a tensor of shape {list(value.shape)}")
            return
        if is_bool:
            if not isinstance(value, bool):
                raise fail(loss, arg, expected, repr(value))
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if is_int else numbers.Real):
            raise fail(loss, arg, f"{expected}, or a 0-d tensor", f"{value!r} ({type(value).__name__})")
        # `not (value > bound)`: a NaN fails every bound
        if (
            (gt is not None and not value > gt)
            or (ge is not None and not value >= ge)
            or (lt is not None and not value < lt)
            or (le is not None and not value <= le)
        ):
            raise fail(loss, arg, expected, repr(value))
        if value != 0 and abs(value) < FLOAT_TINY:  # the REPRESENTABLE check, inline (it is per call)
            raise fail(loss, arg, TINY_EXPECTED, repr(value))

    return check


def _compound_checker(loss: str, param: Param) -> Checker:
    """A list- or mapping-valued hyperparameter: validated by msgspec (not under compile)."""
    arg = param.name
    # msgspec keys its cache of converters by type: hashing an `Annotated` type is slow
    # (about 20 us for class weights), hashing a Struct class is not
    holder = msgspec.defstruct(f"_{arg}", [(arg, param.annotation)])

    def check(value: Any, _: Mapping[str, Any]) -> None:
        if value is None or isinstance(value, torch.Tensor) or torch.compiler.is_compiling():
            return
        try:
            msgspec.convert({arg: value}, type=holder)
        except msgspec.ValidationError as exc:
            raise ValueError(f"{loss}: {arg} is invalid: {exc}") from None

    return check


def _with_whole_value_checks(
    loss: str, param: Param, base: Checker, defaults: Mapping[str, Any], markers: tuple[Check, ...]
) -> Checker:
    """``base``, then the ``Check`` markers on Python values (a tensor is never read)."""
    if not markers:
        return base
    arg = param.name

    def check(value: Any, given: Mapping[str, Any]) -> None:
        base(value, given)
        if value is None or isinstance(value, torch.Tensor) or torch.compiler.is_compiling():
            return
        for marker in markers:
            others = [given.get(name, defaults[name]) for name in marker.uses]
            if any(isinstance(other, torch.Tensor) for other in others):
                continue
            try:
                ok = bool(marker.predicate(value, *others))
            except Exception:  # a predicate that cannot read the value rejects it
                ok = False
            if not ok:
                raise fail(loss, arg, marker.expected, reprlib.repr(value))

    return check


def _choices(param: Param) -> tuple[Any, ...] | None:
    """The values of a ``Literal[...]`` hyperparameter (``loss_type``), else None."""
    info = msgspec.inspect.type_info(param.annotation)
    while isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    return tuple(info.values) if isinstance(info, msgspec.inspect.LiteralType) else None


def _choice_checker(loss: str, param: Param, choices: tuple[Any, ...]) -> Checker:
    """One of a ``Literal``'s values, in the one message form (``must be one of ...; got ...``)."""
    arg, expected = param.name, f"one of {', '.join(map(repr, choices))}"

    def check(value: Any, _: Mapping[str, Any]) -> None:
        if isinstance(value, bool) or value not in choices:
            raise fail(loss, arg, expected, reprlib.repr(value))

    return check


def _checker(loss: str, param: Param, defaults: Mapping[str, Any]) -> Checker:
    scalar = None if param.tensor else _scalar_info(param)
    choices = None if scalar or param.tensor else _choices(param)
    if choices is not None:
        base = _choice_checker(loss, param, choices)
    else:
        base = _scalar_checker(loss, param, *scalar) if scalar else _compound_checker(loss, param)
    # a scalar's checker tests the float32 floor itself
    markers = tuple(c for c in param.checks if not (scalar and c is REPRESENTABLE))
    return _with_whole_value_checks(loss, param, base, defaults, markers)


_LOW_PRECISION = (torch.float16, torch.bfloat16)
#: True when autocast is on for some device (a private C call; a stand-in that says so otherwise)
any_autocast = getattr(torch._C, "_is_any_autocast_enabled", lambda: True)
_AUTOCAST_DEVICES = frozenset({"cpu", "cuda", "xpu", "mps", "hpu", "xla", "mtia", "maia", "ipu"})


def float32_under_autocast(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` computed in float32 when autocast is on for its inputs' device, as torch's losses are.

    Autocast lists ``cross_entropy``, ``mse_loss``, ``binary_cross_entropy_with_logits``
    and the other losses among the ops it runs in float32: their half-precision
    inputs are cast up and the loss comes back as float32. Every lossfn loss does
    the same, so a loss and its torch twin agree in dtype under autocast, and no
    loss is summed in bfloat16. Outside autocast nothing changes (a float16 input
    gives a float16 loss, computed as the loss's docstring says).
    """

    @functools.wraps(fn)
    def loss(*inputs: Any, **params: Any) -> Any:
        first = inputs[0] if inputs else None
        # one C call answers "no autocast anywhere" (the common case) before any per-device question
        if any_autocast() and isinstance(first, torch.Tensor):
            device = first.device.type
            # autocast knows a few device types (asking about "meta" raises)
            if device in _AUTOCAST_DEVICES and torch.is_autocast_enabled(device):
                cast = tuple(
                    x.float() if isinstance(x, torch.Tensor) and x.dtype in _LOW_PRECISION else x for x in inputs
                )
                with torch.autocast(device, enabled=False):
                    return fn(*cast, **params)
        return fn(*inputs, **params)

    return loss


def named_index_errors(loss: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` whose index errors (torch's "Target 7 is out of bounds") name the loss and its labels.

    The pure function reads no label values (that is a host sync; the module checks
    them), so an out-of-range class index reaches torch's kernels, which raise an
    unnamed ``IndexError``. It becomes a ``ValueError`` saying which loss and which
    argument, with torch's words kept. Nothing runs unless the error happens (and
    nothing at all under ``torch.compile``).
    """

    @functools.wraps(fn)
    def loss_function(*inputs: Any, **params: Any) -> Any:
        if torch.compiler.is_compiling():
            return fn(*inputs, **params)
        try:
            return fn(*inputs, **params)
        except (IndexError, RuntimeError) as exc:
            # gather's words are a RuntimeError: "index 7 is out of bounds for dimension 1 with size 3"
            if isinstance(exc, RuntimeError) and "out of bounds" not in str(exc):
                raise
            raise fail(loss, "labels", "class or token indices in range of the model output's classes", str(exc)) from exc

    return loss_function


def checked_function(loss: str, fn: Callable[..., Any], signature: Signature) -> Callable[..., Any]:
    """``fn`` behind a check of the hyperparameters a call passes (see the module docstring)."""
    defaults = {p.name: p.default for p in signature.params}
    checks = {p.name: _checker(loss, p, defaults) for p in signature.params}
    for param in signature.params:  # the defaults are valid values, checked once here
        try:
            checks[param.name](param.default, {})
        except ValueError as exc:
            raise LossContractError(f"loss {loss!r}: the default of {param.name!r} is invalid: {exc}") from None

    @functools.wraps(fn)
    def loss_function(*inputs: Any, **hyperparameters: Any) -> Any:
        if hyperparameters:
            for key, value in hyperparameters.items():
                check = checks.get(key)
                if check is not None:
                    check(value, hyperparameters)
                elif key == "reduction":
                    check_reduction(loss, value)
        return fn(*inputs, **hyperparameters)

    loss_function.__signature__ = signature.signature  # type: ignore[attr-defined]
    loss_function.__wrapped__ = inspect.unwrap(fn)  # type: ignore[attr-defined]  # the function as written
    return loss_function
