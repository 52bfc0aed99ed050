"""Signature -> ``torch.nn.Module`` class.

Each registered loss gets a real subclass of :class:`DerivedLoss` named after it
(``softmax_cross_entropy`` -> ``SoftmaxCrossEntropy``), living in ``lossfn.nn``
so it pickles. Its ``__init__`` takes the config's fields as keyword arguments and
its ``forward`` the loss's positional inputs, each with a real ``inspect.signature``.

A module never drifts from its config: the hyperparameters live in one place (plain
attributes, buffers, or parameters when given as ``nn.Parameter``), and
``module.config`` is read off them each time it is asked for. Assigning a
hyperparameter re-validates it through the config, and ``load_state_dict`` checks
the values it brings before they are copied in.
"""

from __future__ import annotations

import inspect
import math
import struct
import types
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec
import torch
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

from lossfn.registry import LossSpec, Reduction, check_reduction, functorch_level, register_deriver
from lossfn.schemas import WEIGHT, LossConfigError, alias_configs, decode_config, field_path

__all__ = ["DerivedLoss", "module_class", "plain_value", "stepping_aside"]

MODULE = "lossfn.nn"

#: Attributes that are the config's, besides the hyperparameters.
_CONTROL = frozenset({"weight", "reduction"})


# -- values without float32 noise ---------------------------------------------------------


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _f16(x: float) -> float:
    return struct.unpack("<e", struct.pack("<e", x))[0]


def _bf16(x: float) -> float:
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16  # round to nearest even
    return struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]


_ROUNDING = {torch.float32: (_f32, 9), torch.float16: (_f16, 5), torch.bfloat16: (_bf16, 4)}


def _shortest(value: float, dtype: torch.dtype) -> float:
    """The shortest decimal that is ``value`` at ``dtype``'s precision: 0.1, not 0.10000000149011612.

    A float64 value that float32 holds exactly is written at float32's precision too,
    so a module moved to float64 keeps reporting the numbers it was built with.
    """
    if not math.isfinite(value):
        return value
    if dtype == torch.float64:
        if _f32(value) != value:
            return value
        dtype = torch.float32
    rounding, digits = _ROUNDING.get(dtype, (None, 17))
    if rounding is None:
        return value
    for precision in range(1, digits + 1):
        candidate = float(f"{value:.{precision}g}")
        if rounding(candidate) == value:
            return candidate
    return value


def plain_value(value: Any) -> Any:
    """A hyperparameter as a config holds it: a tensor becomes numbers (without float32 noise)."""
    if not isinstance(value, Tensor):
        return value
    tensor = value.detach()
    numbers = tensor.tolist()  # a host sync: configs and reprs are read outside the hot path
    if not tensor.is_floating_point():
        return numbers

    def clean(item: Any) -> Any:
        return [clean(i) for i in item] if isinstance(item, list) else _shortest(item, tensor.dtype)

    return clean(numbers)


# -- when the host-syncing input check steps aside -----------------------------------------


_PLAIN = (Tensor, torch.nn.Parameter)


def stepping_aside(inputs: Sequence[Any]) -> bool:
    """Is this call being traced or transformed, so that reading tensor values cannot work?

    True under ``torch.compile`` and ``torch.export`` (Dynamo), ``torch.jit.trace``,
    inside a ``torch.func`` transform (``vmap``, ``grad``, ``jvp``, ...), and for meta
    or fake tensors. The label-range check of a module then steps aside by itself.
    """
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return True
    if functorch_level() is not None:
        return True
    for x in inputs:
        # a fake tensor is a Tensor subclass: only those are asked (is_fake takes microseconds)
        if isinstance(x, Tensor) and (x.is_meta or (type(x) not in _PLAIN and is_fake(x))):
            return True
        if x is not None and not isinstance(x, Tensor | int | float | bool):
            return True  # a proxy of a tracer
    return False


# -- the base class -------------------------------------------------------------------------


class DerivedLoss(torch.nn.Module):
    """Base of the generated loss modules; ``spec`` is set on each subclass."""

    spec: ClassVar[LossSpec]
    _hyperparameters: ClassVar[tuple[str, ...]] = ()
    _tensor_params: ClassVar[frozenset[str]] = frozenset()
    _forward_signature: ClassVar[inspect.Signature]

    # -- construction -------------------------------------------------------
    def _setup(self, kwargs: dict[str, Any]) -> None:
        reduction = kwargs.pop("reduction", "mean")
        validate_inputs = kwargs.pop("validate_inputs", True)
        vocabulary = kwargs.pop("vocabulary", None)
        weight = kwargs.pop("weight", 1.0)
        self._initialize(self.spec.config, kwargs, weight, reduction, validate_inputs, vocabulary)

    def _initialize(
        self,
        config_class: type[msgspec.Struct],
        values: Mapping[str, Any],
        weight: Any,
        reduction: str,
        validate_inputs: bool,
        vocabulary: Sequence[str] | None,
    ) -> None:
        torch.nn.Module.__init__(self)
        check_reduction(self.spec.name, reduction)
        config = self._validated({**{k: plain_value(v) for k, v in values.items()}, "weight": plain_value(weight)},
                                 config_class)
        state = self.__dict__
        state["_config_tag"] = config_class.__struct_config__.tag
        state["_vocabulary"] = None if vocabulary is None else tuple(vocabulary)
        state["_by_name"] = {}  # tensor parameters a config gave as {class name: value}: their keys
        state["reduction"] = reduction
        state["validate_inputs"] = bool(validate_inputs)
        state["weight"] = config.weight
        for param in self.spec.params:
            self._store(param.name, values.get(param.name, getattr(config, param.name)))
        state["_config"] = config

    def _validated(self, plain: Mapping[str, Any], config_class: type[msgspec.Struct] | None = None) -> msgspec.Struct:
        try:
            return msgspec.convert(dict(plain), type=config_class or self._config_class())
        except msgspec.ValidationError as exc:
            raise LossConfigError(f"{type(self).__name__}: {field_path(str(exc))}") from None

    def _config_class(self) -> type[msgspec.Struct]:
        tag = self.__dict__["_config_tag"]
        if tag == self.spec.name:
            return self.spec.config
        return next(cls for cls in alias_configs(self.spec) if cls.__struct_config__.tag == tag)

    def _store(self, name: str, value: Any) -> None:
        """Keep one hyperparameter: a plain attribute, a buffer, or a parameter (an ``nn.Parameter``)."""
        self._parameters.pop(name, None)
        self._buffers.pop(name, None)
        self._non_persistent_buffers_set.discard(name)
        self.__dict__.pop(name, None)
        tensor_valued = name in self._tensor_params
        if tensor_valued and isinstance(value, Mapping):
            self._by_name[name] = list(value)
            value = self._by_vocabulary(name, value)
        elif tensor_valued:
            self._by_name.pop(name, None)
        if isinstance(value, torch.nn.Parameter):
            self.register_parameter(name, value)  # a learnable hyperparameter stays learnable
        elif isinstance(value, Tensor):
            if tensor_valued and not value.is_floating_point():
                value = value.to(torch.get_default_dtype())
            self.register_buffer(name, value)  # the tensor itself, as torch's own losses keep `weight`
        elif tensor_valued:
            self.register_buffer(name, None if value is None else torch.tensor(value, dtype=torch.get_default_dtype()))
        else:
            self.__dict__[name] = value

    def _by_vocabulary(self, name: str, mapping: Mapping[str, Any]) -> list[Any]:
        """A ``{class name: value}`` parameter as a list in the vocabulary's order.

        As in Ludwig, the names must be exactly the vocabulary's.
        """
        vocabulary = self.__dict__["_vocabulary"]
        where = f" - at `$.{name}`"
        if vocabulary is None:
            raise LossConfigError(
                f"{type(self).__name__}: `{name}` maps class names to values; pass vocabulary=[...] "
                f"(the class names in index order) to resolve it{where}"
            )
        missing = [c for c in vocabulary if c not in mapping]
        extra = [c for c in mapping if c not in set(vocabulary)]
        if missing or extra:
            raise LossConfigError(
                f"{type(self).__name__}: the names of `{name}` must be the vocabulary's; "
                f"missing {missing}, not in the vocabulary {extra}{where}"
            )
        return [plain_value(mapping[c]) for c in vocabulary]

    @classmethod
    def from_config(
        cls,
        config: Any,
        *,
        reduction: Reduction = "mean",
        validate_inputs: bool = True,
        vocabulary: Sequence[str] | None = None,
    ) -> "DerivedLoss":
        """Build the module from a config instance (or anything ``decode_config`` takes).

        ``vocabulary`` (class names in index order) resolves tensor parameters
        written as mappings, e.g. ``class_weights: {"cat": 1.0, "dog": 2.0}``.
        """
        config = decode_config(config)  # a config instance is validated again
        if not isinstance(config, cls.spec.config):
            raise TypeError(
                f"{cls.__name__}.from_config takes a {cls.spec.config.__name__}; got {type(config).__name__}"
            )
        module = cls.__new__(cls)
        values = {p.name: getattr(config, p.name) for p in cls.spec.params}
        module._initialize(type(config), values, config.weight, reduction, validate_inputs, vocabulary)
        module.__dict__["_config"] = config
        return module

    @classmethod
    def get_schema_cls(cls) -> type[msgspec.Struct]:
        """The config class (Ludwig's name for this hook)."""
        return cls.spec.config

    # -- one source of truth ----------------------------------------------------
    def _plain_values(self) -> dict[str, Any]:
        values = {}
        for name in self._hyperparameters:
            value = plain_value(getattr(self, name))
            keys = self._by_name.get(name)
            if keys is not None and value is not None:  # back to the {class name: value} form it was given in
                order = {c: i for i, c in enumerate(self._vocabulary)}
                value = {key: value[order[key]] for key in keys}
            values[name] = value
        values["weight"] = self.weight
        return values

    @property
    def config(self) -> msgspec.Struct:
        """The config of the values ``forward`` uses now (re-read each time, so it cannot drift)."""
        config = self._validated(self._plain_values())
        cached = self.__dict__.get("_config")
        if cached is not None and cached == config:
            return cached  # the very instance it was built from, while nothing changed
        self.__dict__["_config"] = config
        return config

    def __setattr__(self, name: str, value: Any) -> None:
        if "_config_tag" not in self.__dict__ or (name not in self._hyperparameters and name not in _CONTROL):
            super().__setattr__(name, value)
            return
        if name == "reduction":
            check_reduction(self.spec.name, value)
            self.__dict__[name] = value
            return
        candidate = self._plain_values()
        candidate[name] = plain_value(value)
        config = self._validated(candidate)  # raises with the JSON path, changing nothing
        if name == "weight":
            self.__dict__["weight"] = config.weight
        else:
            self._store(name, value)

    def __delattr__(self, name: str) -> None:
        if "_config_tag" in self.__dict__ and (name in self._hyperparameters or name in _CONTROL):
            raise AttributeError(
                f"{type(self).__name__}: {name!r} is part of the config and cannot be deleted; assign a new value "
                f"(module.{name} = ...) or None where the config allows it"
            )
        super().__delattr__(name)

    def params(self) -> dict[str, Any]:
        """The keyword arguments passed to the pure function (buffers and parameters included).

        Read where ``_store`` keeps each one (``__dict__``, ``_buffers``, ``_parameters``),
        at every call: ``module.to(...)`` replaces buffers behind ``__setattr__``'s back,
        and a cached dict would hand the loss the old ones.
        """
        plain, buffers, parameters = self.__dict__, self._buffers, self._parameters
        values = {}
        for name in self._hyperparameters:
            if name in plain:
                values[name] = plain[name]
            elif name in buffers:
                values[name] = buffers[name]
            else:
                values[name] = parameters[name]
        return values

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Check the hyperparameters a state dict brings, then load them (a missing one is None under strict).

        A module built without an optional tensor hyperparameter (``class_weights=None``)
        takes one from the state dict, and a number becomes the tensor the state dict
        holds; values the config rejects are refused before anything is copied.
        """
        incoming = {name: state_dict[prefix + name] for name in self._hyperparameters if prefix + name in state_dict}
        absent = [
            name for name in self._tensor_params
            if strict and prefix + name not in state_dict and getattr(self, name) is not None
        ]
        if incoming or absent:
            candidate = self._plain_values()
            candidate.update({name: plain_value(value) for name, value in incoming.items()})
            candidate.update({name: None for name in absent})
            try:
                self._validated(candidate)
            except LossConfigError as exc:
                raise LossConfigError(f"cannot load the state dict at {prefix or 'the root'!r}: {exc}") from None
            for name, value in incoming.items():
                if not isinstance(getattr(self, name), Tensor):
                    self._store(name, value.detach().clone())
            for name in absent:
                self._store(name, None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state.pop("_config", None)  # a cache: msgspec objects would need allowlisting in torch.load
        return state

    # -- use ----------------------------------------------------------------
    def forward(self, *inputs: Any, **named: Any) -> Tensor:
        arity = len(self.spec.inputs)
        if named or len(inputs) != arity:
            try:
                bound = self._forward_signature.bind(self, *inputs, **named)
            except TypeError as exc:
                raise TypeError(f"{type(self).__name__}.forward(): {exc}") from None
            bound.apply_defaults()
            inputs = tuple(bound.arguments[name] for name in self.spec.inputs)
        params = self.params()
        if self.validate_inputs and self.spec.validate is not None and not stepping_aside(inputs):
            try:
                check = self.spec.validate(*inputs, **params)
                # the hook computed its facts without reading them; this is the one host sync
                error = None if check is None else check.verdict()
            except Exception:
                self._raise_clearer(inputs, params)
                raise
            if error is not None:
                self._raise_clearer(inputs, params)
                raise error
        return self.spec.unchecked(*inputs, **params, reduction=self.reduction)

    def _raise_clearer(self, inputs: Sequence[Any], params: Mapping[str, Any]) -> None:
        """The label check failed; if the inputs are also of the wrong kind or shape, say that.

        The function's own checks read metadata only, so they run on meta copies of the
        inputs at no cost; their ``ValueError`` (wrong shape, dtype, device) is the
        clearer message, as the function would give it. Only on this error path.
        """
        on_meta = [x.to("meta") if isinstance(x, Tensor) else x for x in inputs]
        try:
            self.spec.unchecked(*on_meta, **params, reduction=self.reduction)
        except ValueError as clearer:
            raise clearer from None
        except Exception:
            pass

    def extra_repr(self) -> str:
        """The parameters that differ from their defaults, then ``reduction``."""
        values = self._plain_values()
        fields = [
            f"{p.name}={values[p.name]!r}"
            for p in self.spec.params
            if isinstance(getattr(self, p.name), torch.nn.Parameter) or values[p.name] != p.default
        ]
        fields.append(f"reduction={self.reduction!r}")
        if self.weight != 1.0:  # shown last: it is not a parameter of the loss
            fields.append(f"weight={self.weight!r}")
        return ", ".join(fields)


def _init_signature(spec: LossSpec) -> inspect.Signature:
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [inspect.Parameter(p.name, keyword, default=p.default, annotation=p.annotation) for p in spec.params]
    parameters += [
        inspect.Parameter("weight", keyword, default=1.0, annotation=WEIGHT),
        inspect.Parameter("reduction", keyword, default="mean", annotation=Reduction),
        inspect.Parameter("validate_inputs", keyword, default=True, annotation=bool),
        inspect.Parameter("vocabulary", keyword, default=None, annotation=Sequence[str] | None),
    ]
    return inspect.Signature(parameters, return_annotation=None)


def _forward_signature(spec: LossSpec) -> inspect.Signature:
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter("self", positional)]
    for name in spec.inputs:
        optional = name in spec.optional_inputs
        parameters.append(
            inspect.Parameter(
                name, positional, default=None if optional else inspect.Parameter.empty,
                annotation=Tensor | None if optional else Tensor,
            )
        )
    return inspect.Signature(parameters, return_annotation=Tensor)


def _doc(spec: LossSpec) -> str:
    inputs = ", ".join(spec.inputs)
    return (
        f"Module form of :func:`lossfn.functional.{spec.name}` (generated from its signature).\n\n"
        f"Keyword arguments are the config's fields plus ``reduction``, ``validate_inputs``\n"
        f"(label-range checks, a host sync, on by default; they step aside under\n"
        f"``torch.compile``, ``torch.export`` and ``torch.func`` transforms) and ``vocabulary``\n"
        f"(class names in index order, to resolve tensor parameters given as mappings).\n"
        f"``forward({inputs})`` calls the function.\n\n{spec.doc}"
    )


def module_class(spec: LossSpec) -> type[DerivedLoss]:
    """Build the module class of ``spec`` (installed as the registry's ``module`` deriver)."""
    signature = _init_signature(spec)
    name = spec.class_name

    def __init__(self: DerivedLoss, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{name}(): {exc}") from None
        self._setup({k: v for k, v in bound.arguments.items() if k != "self"})

    # DerivedLoss.forward itself under this class's name and signature: a function of its own
    # (so the signature is this loss's), with no second frame per call
    base = DerivedLoss.forward
    forward = types.FunctionType(base.__code__, base.__globals__, "forward", base.__defaults__, base.__closure__)
    forward.__kwdefaults__ = base.__kwdefaults__
    forward.__annotations__ = dict(base.__annotations__)

    forward_signature = _forward_signature(spec)
    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{name}.__init__"
    forward.__signature__ = forward_signature  # type: ignore[attr-defined]
    forward.__qualname__ = f"{name}.forward"
    forward.__doc__ = f"``{spec.name}({', '.join(spec.inputs)}, **hyperparameters, reduction=self.reduction)``."
    namespace = {
        "spec": spec,
        "_hyperparameters": tuple(p.name for p in spec.params),
        "_tensor_params": frozenset(p.name for p in spec.params if p.tensor),
        "_forward_signature": forward_signature,
        "__init__": __init__,
        "forward": forward,
        "__doc__": _doc(spec),
        "__module__": MODULE,
    }
    cls = type(name, (DerivedLoss,), namespace)
    cls.__qualname__ = name
    return cls


register_deriver("module", module_class)
