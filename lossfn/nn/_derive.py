"""Signature -> ``torch.nn.Module`` class.

Each registered loss gets a real subclass of :class:`DerivedLoss` named after it
(``softmax_cross_entropy`` -> ``SoftmaxCrossEntropy``), living in ``lossfn.nn``
so it pickles. Its ``__init__`` takes the config's fields as keyword arguments
(with a real ``inspect.signature``), validates them through the config struct,
keeps tensor-valued ones as buffers, and ``forward`` calls the pure function.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec
import torch

from lossfn.registry import REDUCTIONS, LossSpec, Reduction, register_deriver
from lossfn.schemas import WEIGHT, LossConfigError, decode_config, field_path

__all__ = ["DerivedLoss", "module_class"]

MODULE = "lossfn.nn"


class DerivedLoss(torch.nn.Module):
    """Base of the generated loss modules; ``spec`` is set on each subclass."""

    spec: ClassVar[LossSpec]

    # -- construction -------------------------------------------------------
    def _setup(self, kwargs: dict[str, Any]) -> None:
        reduction = kwargs.pop("reduction", "mean")
        validate_inputs = kwargs.pop("validate_inputs", True)
        vocabulary = kwargs.pop("vocabulary", None)
        tensors = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
        plain = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
        try:
            config = msgspec.convert(plain, type=self.spec.config)
        except msgspec.ValidationError as exc:
            raise LossConfigError(f"{type(self).__name__}: {field_path(str(exc))}") from None
        self._setup_from_config(config, tensors, reduction, validate_inputs, vocabulary)

    def _setup_from_config(
        self,
        config: msgspec.Struct,
        tensors: dict[str, torch.Tensor],
        reduction: str,
        validate_inputs: bool,
        vocabulary: Sequence[str] | None = None,
    ) -> None:
        torch.nn.Module.__init__(self)
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"{self.spec.name}: reduction must be one of {', '.join(map(repr, REDUCTIONS))}; got {reduction!r}"
            )
        self.reduction = reduction
        self.validate_inputs = bool(validate_inputs)
        self.weight = config.weight
        self._config = config
        for param in self.spec.params:
            value = getattr(config, param.name)
            if param.tensor and isinstance(value, Mapping):
                value = self._by_vocabulary(param.name, value, vocabulary)
            if param.tensor:
                buffer = tensors.get(param.name)
                if buffer is None and value is not None:
                    buffer = torch.tensor(value, dtype=torch.get_default_dtype())
                elif buffer is not None:
                    buffer = buffer.detach().clone()
                    if not buffer.is_floating_point():
                        buffer = buffer.to(torch.get_default_dtype())
                self.register_buffer(param.name, buffer)
            else:
                setattr(self, param.name, value)

    def _by_vocabulary(self, name: str, mapping: Mapping[str, Any], vocabulary: Sequence[str] | None) -> list[Any]:
        """A ``{class name: value}`` parameter as a list in the vocabulary's order.

        As in Ludwig, the names must be exactly the vocabulary's.
        """
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
        return [mapping[c] for c in vocabulary]

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
        if not isinstance(config, msgspec.Struct):
            config = decode_config(config)
        if not isinstance(config, cls.spec.config):
            raise TypeError(
                f"{cls.__name__}.from_config takes a {cls.spec.config.__name__}; got {type(config).__name__}"
            )
        module = cls.__new__(cls)
        module._setup_from_config(config, {}, reduction, validate_inputs, vocabulary)
        return module

    @classmethod
    def get_schema_cls(cls) -> type[msgspec.Struct]:
        """The config class (Ludwig's name for this hook)."""
        return cls.spec.config

    # -- use ----------------------------------------------------------------
    @property
    def config(self) -> msgspec.Struct:
        """The validated config this module was built from."""
        return self._config

    def params(self) -> dict[str, Any]:
        """The keyword arguments passed to the pure function (buffers included)."""
        return {p.name: getattr(self, p.name) for p in self.spec.params}

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        params = self.params()
        if self.validate_inputs and self.spec.validate is not None:
            self.spec.validate(logits, labels, **params)
        return self.spec.fn(logits, labels, **params, reduction=self.reduction)

    def extra_repr(self) -> str:
        """The parameters that differ from their defaults, then ``reduction``."""
        fields = [
            f"{p.name}={getattr(self._config, p.name)!r}"
            for p in self.spec.params
            if getattr(self._config, p.name) != p.default
        ]
        fields.append(f"reduction={self.reduction!r}")
        if self._config.weight != 1.0:  # shown last: it is not a parameter of the loss
            fields.append(f"weight={self._config.weight!r}")
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


def _doc(spec: LossSpec) -> str:
    return (
        f"Module form of :func:`lossfn.functional.{spec.name}` (generated from its signature).\n\n"
        f"Keyword arguments are the config's fields plus ``reduction``, ``validate_inputs``\n"
        f"(label-range checks, a host sync, on by default) and ``vocabulary`` (class names in\n"
        f"index order, to resolve tensor parameters given as mappings). ``forward(logits,\n"
        f"labels)`` calls the function.\n\n{spec.doc}"
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

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{name}.__init__"
    cls = type(name, (DerivedLoss,), {"spec": spec, "__init__": __init__, "__doc__": _doc(spec), "__module__": MODULE})
    cls.__qualname__ = name
    return cls


register_deriver("module", module_class)
