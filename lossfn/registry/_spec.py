"""`LossSpec`: the record the registry keeps for each loss, read off its signature.

The registry derives nothing but the hyperparameter check: a spec holds the
function and what its signature says (the positional inputs, the keyword-only
hyperparameters, their annotations and defaults). Configs and modules are derived
by the layers above, which install themselves here as *derivers*; a spec's
``.config`` and ``.module`` ask them, once, under a lock, and keep the answer.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import threading
import typing
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from ._bounds import TINY_EXPECTED, bounded, has_floats, representable
from ._feature import Feature

__all__ = [
    "AsTensor",
    "Check",
    "InputCheck",
    "LossContractError",
    "LossSpec",
    "Param",
    "Reduction",
    "REDUCTIONS",
    "REPRESENTABLE",
    "camel_case",
    "register_deriver",
]

#: The ``reduction`` argument every loss takes.
Reduction = Literal["none", "mean", "sum"]
REDUCTIONS: tuple[str, ...] = typing.get_args(Reduction)

#: Names a loss parameter may not take: the config and module use them.
RESERVED = frozenset({"type", "weight", "validate_inputs", "vocabulary", "config", "self"})

#: What a loss consumes when its registration names nothing else (Ludwig's ``get_loss_inputs()``).
DEFAULT_KIND = "logits"

_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


class AsTensor:
    """Marks a tensor-valued hyperparameter inside ``Annotated[...]``.

    The config holds it as a (nested) list of numbers; the generated module keeps
    it as a buffer, so ``.to(device)`` and ``state_dict`` carry it; the function
    accepts the list or a tensor.
    """

    def __repr__(self) -> str:
        return "AsTensor()"


@dataclasses.dataclass(frozen=True)
class Check:
    """A whole-value constraint that ``msgspec.Meta`` cannot express, inside ``Annotated``.

    ``Check(lambda w: sum(w) > 0, "weights that sum to more than 0")``: the
    derived config rejects a value (other than ``None``) for which the predicate
    is false, with a validation error at the field's path saying ``expected``;
    the pure function rejects it too, when the value is a Python one (not a tensor).

    A check that spans several fields names them in ``uses``; the predicate then
    gets their values after its own: ``Check(lambda s, w: w is None or len(s) ==
    len(w), "C rows for C class weights", uses=("class_weights",))``.

    A check may say what it means in JSON Schema, so the published schema rejects
    what the config rejects: ``schema`` is a fragment (a dict) or a function of
    the field's name and the names in ``uses`` that returns one. Without ``uses``
    the fragment applies to the field's value, with ``uses`` to the whole config
    (``if``/``then`` over several fields). ``None`` says JSON Schema cannot express
    it (a square matrix of any size): the schema's description lists it.
    """

    predicate: Callable[..., bool]
    expected: str
    uses: tuple[str, ...] = ()
    schema: dict[str, Any] | Callable[..., dict[str, Any]] | None = None

    def json_schema(self, field: str) -> dict[str, Any] | None:
        """The JSON Schema fragment of this check on ``field`` (None: not expressible)."""
        if callable(self.schema):
            return self.schema(field, *self.uses)
        return self.schema


@dataclasses.dataclass(frozen=True)
class InputCheck:
    """What a ``validate=`` hook returns: facts about the inputs, and the judge that reads them.

    A hook may not read tensor values itself: that host sync would break under
    ``torch.func`` and ``torch.compile``, and the hook lives beside the pure function.
    It computes ``facts``, a tensor or a tuple of 0-d tensors (``torch.aminmax`` of the
    labels as it comes: stacking the pair would cost an op of its own), with tensor
    operations only, and ``judge(numbers)`` turns the facts' values, a list, into the
    error to raise, or ``None``. The module reads the facts (:meth:`verdict`), the one
    host sync, outside any transform (see ``lossfn.nn.stepping_aside``).
    """

    facts: Any
    judge: Callable[[Any], Exception | None]

    def values(self) -> list[Any]:
        """The facts as Python numbers: one host sync (a tuple's later reads wait on nothing)."""
        if isinstance(self.facts, tuple):
            return [fact.item() for fact in self.facts]
        return self.facts.tolist()

    def verdict(self) -> Exception | None:
        """The judge's answer on the facts' values: the error to raise, or None."""
        return self.judge(self.values())


#: The check every hyperparameter holding floats gets; its JSON Schema is on each float.
REPRESENTABLE = Check(representable, TINY_EXPECTED, schema={})


class LossContractError(TypeError):
    """A function registered as a loss does not follow the function contract."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One keyword-only hyperparameter of a loss, as its signature declares it."""

    name: str
    annotation: Any
    default: Any
    description: str
    tensor: bool
    checks: tuple[Check, ...] = ()

    @property
    def meta(self) -> tuple[msgspec.Meta, ...]:
        """The ``msgspec.Meta`` constraints written on the parameter."""
        return tuple(m for m in _metadata(self.annotation) if isinstance(m, msgspec.Meta))


def _metadata(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is typing.Annotated:
        return tuple(annotation.__metadata__)
    return ()


def _argmax_classes(output: Any) -> Any:
    """The default prediction rule of a category loss: argmax over the class dimension.

    The class dimension is the one the losses take: dimension 1 of ``[B, C, *]``,
    dimension 0 of one example's ``[C]``.
    """
    return output.argmax(dim=1 if output.ndim >= 2 else 0)


def camel_case(name: str) -> str:
    """``softmax_cross_entropy`` -> ``SoftmaxCrossEntropy``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


_DERIVERS: dict[str, Callable[["LossSpec"], Any]] = {}
#: One lock for every derivation: deriving a module derives its config first (re-entrant).
_DERIVING = threading.RLock()


def register_deriver(kind: str, derive: Callable[["LossSpec"], Any]) -> None:
    """Install the function that derives ``spec.<kind>`` (called by upper layers)."""
    _DERIVERS[kind] = derive


@dataclasses.dataclass(frozen=True, eq=False)
class LossSpec:
    """A registered loss: its function, its inputs, the feature types it serves, its parameters.

    Attributes:
        name: the registry key.
        fn: the public pure function (it checks Python-number hyperparameters).
        features: the output-feature types it serves.
        aliases: other names of the loss.
        inputs: the names of its positional tensor inputs, model output first.
        optional_inputs: those of ``inputs`` that default to ``None``.
        params: its keyword-only hyperparameters (``reduction`` aside).
        kind: what model output it consumes (``"logits"``, ``"anomaly_score"``).
        validate: ``validate(*inputs, **params) -> InputCheck | None``, the value
            check (label ranges) that modules run, or None.
        predict: ``predict(output) -> class indices``, the loss's prediction rule
            (how a model trained with it is decoded), or None for the default:
            see :attr:`prediction_rule`.
        unchecked: the function without the hyperparameter check (modules call it:
            their values are validated when they are set); as ``fn``, it computes in
            float32 under autocast (``inspect.unwrap`` gives the function as written).
    """

    name: str
    fn: Callable[..., Any]
    features: frozenset[Feature]
    aliases: tuple[str, ...]
    inputs: tuple[str, ...]
    params: tuple[Param, ...]
    optional_inputs: tuple[str, ...] = ()
    kind: str = DEFAULT_KIND
    validate: Callable[..., InputCheck | None] | None = None
    unchecked: Callable[..., Any] | None = None
    predict: Callable[[Any], Any] | None = None
    _derived: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def class_name(self) -> str:
        """CamelCase name of the generated module (``SoftmaxCrossEntropy``)."""
        return camel_case(self.name)

    @property
    def doc(self) -> str:
        """The function's docstring, dedented."""
        return inspect.cleandoc(self.fn.__doc__ or "")

    @property
    def summary(self) -> str:
        """First line of the docstring."""
        return self.doc.split("\n", 1)[0]

    @property
    def defaults(self) -> dict[str, Any]:
        """``{parameter: default}`` for every keyword-only hyperparameter."""
        return {p.name: p.default for p in self.params}

    @property
    def required_inputs(self) -> tuple[str, ...]:
        """The inputs without a default, in order."""
        return tuple(name for name in self.inputs if name not in self.optional_inputs)

    @property
    def prediction_rule(self) -> Callable[[Any], Any] | None:
        """The effective prediction rule: ``output -> class indices``.

        The rule registered with the loss (``register_loss(..., predict=fn)``);
        without one, argmax over the class dimension (1 of ``[B, C, *]``, 0 of
        ``[C]``) for a loss that serves category features, and None for the
        others (a regression loss predicts its output itself: no class to decode).
        """
        if self.predict is not None:
            return self.predict
        if Feature.CATEGORY in self.features:
            return _argmax_classes
        return None

    @property
    def config(self) -> type:
        """The frozen ``msgspec.Struct`` config class derived from the signature."""
        return self._derive("config")

    @property
    def module(self) -> type:
        """The ``torch.nn.Module`` class derived from the signature."""
        return self._derive("module")

    def _derive(self, kind: str) -> Any:
        try:
            return self._derived[kind]
        except KeyError:
            pass
        try:
            derive = _DERIVERS[kind]
        except KeyError:
            raise RuntimeError(f"no deriver for {kind!r}: import lossfn (not lossfn.registry alone)") from None
        # Two threads using a loss for the first time must not derive two classes:
        # every later build would then compare a config against the other class.
        with _DERIVING:
            if kind not in self._derived:
                self._derived[kind] = derive(self)
            return self._derived[kind]


@dataclasses.dataclass(frozen=True)
class Signature:
    """What :func:`read_signature` finds: the inputs and the hyperparameters."""

    inputs: tuple[str, ...]
    optional_inputs: tuple[str, ...]
    params: tuple[Param, ...]
    signature: inspect.Signature


def read_signature(name: str, fn: Callable[..., Any]) -> Signature:
    """Check ``fn`` against the function contract and return its inputs and hyperparameters.

    The contract: one or more positional parameters (the tensor inputs, model
    output first; an optional input defaults to ``None`` and follows the required
    ones), then keyword-only parameters, each with a default and an
    ``Annotated[type, msgspec.Meta(description=...)]`` annotation, and
    ``reduction`` among them with the default ``"mean"``. No ``*args``/``**kwargs``.
    """

    def broken(why: str) -> LossContractError:
        return LossContractError(f"loss {name!r} ({getattr(fn, '__qualname__', fn)}): {why}")

    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, ValueError) as exc:
        raise broken(f"cannot read the signature: {exc}") from exc
    parameters = list(signature.parameters.values())
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional or parameters[: len(positional)] != positional:
        raise broken("takes one or more positional inputs (model output first), then keyword-only parameters")
    optional = []
    for p in positional:
        if p.default is not p.empty:
            if p.default is not None:
                raise broken(f"input {p.name!r} may only default to None (an optional input); got {p.default!r}")
            optional.append(p.name)
        if p.name == "self":  # the module's forward(self, *inputs)
            raise broken("an input may not be named 'self'")
    params = []
    seen_reduction = False
    for p in parameters[len(positional):]:
        if p.kind is not p.KEYWORD_ONLY:
            raise broken(f"parameter {p.name!r} must be keyword-only (no *args or **kwargs)")
        if p.default is p.empty:
            raise broken(f"keyword-only parameter {p.name!r} needs a default")
        if p.name == "reduction":
            if p.default != "mean":
                raise broken("'reduction' must default to 'mean'")
            seen_reduction = True
            continue
        if p.name in RESERVED:
            raise broken(f"parameter name {p.name!r} is reserved (one of {sorted(RESERVED)})")
        metadata = _metadata(p.annotation)
        metas = [m for m in metadata if isinstance(m, msgspec.Meta)]
        description = next((m.description for m in metas if m.description), None)
        if not description:
            raise broken(f"parameter {p.name!r} needs Annotated[..., msgspec.Meta(description=...)]")
        try:  # the annotation must be a type msgspec can validate: fail at import, not at decode
            msgspec.inspect.type_info(p.annotation)
        except (TypeError, ValueError) as exc:
            raise broken(f"parameter {p.name!r} has an annotation msgspec cannot use: {exc}") from None
        tensor = any(isinstance(m, AsTensor) or m is AsTensor for m in metadata)
        checks = tuple(m for m in metadata if isinstance(m, Check))
        if has_floats(p.annotation):  # the float32 floor of every number (see _bounds.py)
            checks = (REPRESENTABLE, *checks)
        params.append(Param(p.name, bounded(p.annotation), p.default, description, tensor, checks))
    if not seen_reduction:
        raise broken('needs a keyword-only parameter reduction: Reduction = "mean"')
    names = {p.name for p in params}
    for p in params:
        for check in p.checks:
            unknown = set(check.uses) - names
            if unknown:
                raise broken(f"a Check on {p.name!r} uses unknown parameters {sorted(unknown)}")
    return Signature(tuple(p.name for p in positional), tuple(optional), tuple(params), signature)


def parse_features(name: str, features: Any) -> frozenset[Feature]:
    if isinstance(features, (str, Feature)):
        features = [features]
    try:
        parsed = frozenset(Feature.parse(f) for f in features)
    except ValueError as exc:
        raise ValueError(f"loss {name!r}: {exc}") from None
    if not parsed:
        raise ValueError(f"loss {name!r}: give at least one feature type")
    return parsed


def check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _SNAKE.match(name):
        raise ValueError(f"loss {kind} {name!r} must be snake_case (e.g. 'softmax_cross_entropy')")
