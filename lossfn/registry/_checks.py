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

__all__ = ["check_reduction", "checked_function", "fail", "functorch_level", "guarded"]

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


def guarded(
    loss: str, fn: Callable[..., Any], check: Callable[[Mapping[str, Any]], None] | None = None
) -> Callable[..., Any]:
    """``fn`` as every registered loss runs it: float32 under autocast, index errors named.

    One frame around the loss (it runs on every call, so it is one, not three), which
    first hands the hyperparameters a call passes to ``check`` when one is given (the
    pure function's bounds check, :func:`checked_function`; the module's calls skip it,
    its config checked them when they were set):

    - **float32 under autocast**, as torch's losses: autocast lists ``cross_entropy``,
      ``mse_loss``, ``binary_cross_entropy_with_logits`` and the other losses among the
      ops it runs in float32, so their half-precision inputs are cast up and the loss
      comes back as float32. Every lossfn loss does the same, so a loss and its torch
      twin agree in dtype under autocast, and no loss is summed in bfloat16. Outside
      autocast nothing changes (a float16 input gives a float16 loss, computed as the
      loss's docstring says); one C call answers "no autocast anywhere".
    - **named index errors**: the pure function reads no label values (that is a host
      sync; the module checks them), so an out-of-range class index reaches torch's
      kernels, which raise an unnamed ``IndexError`` ("Target 7 is out of bounds"). It
      becomes a ``ValueError`` saying which loss and which argument, with torch's words
      kept. Nothing runs unless the error happens (and nothing at all under
      ``torch.compile``, which traces no ``try``).
    """

    @functools.wraps(fn)
    def loss_function(*inputs: Any, **params: Any) -> Any:
        if check is not None and params:
            check(params)
        if any_autocast() and inputs and isinstance(inputs[0], torch.Tensor):
            device = inputs[0].device.type
            # autocast knows a few device types (asking about "meta" raises)
            if device in _AUTOCAST_DEVICES and torch.is_autocast_enabled(device):
                inputs = tuple(
                    x.float() if isinstance(x, torch.Tensor) and x.dtype in _LOW_PRECISION else x for x in inputs
                )
                with torch.autocast(device, enabled=False):  # the call again, with autocast off
                    return unchecked(*inputs, **params)
        if _is_compiling():
            return fn(*inputs, **params)
        try:
            return fn(*inputs, **params)
        except (IndexError, RuntimeError) as exc:
            if not _out_of_bounds(exc):
                raise
            raise _index_error(loss, exc) from exc

    unchecked = loss_function if check is None else guarded(loss, fn)
    return loss_function


_is_compiling = torch.compiler.is_compiling

#: The innermost ``torch.func`` transform's level, ``None`` outside every one: where a loss's fast
#: path (torch's reduced kernel has no batching rule) and the module's host-syncing label check
#: step aside. Looked up once: it is asked on every call.
functorch_level = getattr(torch._C._functorch, "maybe_current_level", lambda: None)


def _out_of_bounds(exc: Exception) -> bool:
    """An index error of torch's (gather's words are a RuntimeError: "index 7 is out of bounds ...")."""
    return isinstance(exc, IndexError) or "out of bounds" in str(exc)


def _index_error(loss: str, exc: Exception) -> ValueError:
    """torch's index error as lossfn's ``ValueError``, torch's words kept."""
    return fail(loss, "labels", "class or token indices in range of the model output's classes", str(exc))


def checked_function(loss: str, fn: Callable[..., Any], signature: Signature) -> Callable[..., Any]:
    """``fn`` guarded (:func:`guarded`), behind a check of the hyperparameters a call passes (see the
    module docstring): the pure function ``lossfn.functional`` exports."""
    defaults = {p.name: p.default for p in signature.params}
    checks = {p.name: _checker(loss, p, defaults) for p in signature.params}
    for param in signature.params:  # the defaults are valid values, checked once here
        try:
            checks[param.name](param.default, {})
        except ValueError as exc:
            raise LossContractError(f"loss {loss!r}: the default of {param.name!r} is invalid: {exc}") from None

    def check(hyperparameters: Mapping[str, Any]) -> None:
        for key, value in hyperparameters.items():
            checker = checks.get(key)
            if checker is not None:
                checker(value, hyperparameters)
            elif key == "reduction":
                check_reduction(loss, value)

    loss_function = guarded(loss, fn, check)
    loss_function.__signature__ = signature.signature  # type: ignore[attr-defined]
    loss_function.__wrapped__ = inspect.unwrap(fn)  # type: ignore[attr-defined]  # the function as written
    return loss_function
