"""Ludwig's second route: register an existing ``torch.nn.functional`` loss in one line.

``register_torch_loss(name, features, F.margin_ranking_loss)`` reads the torch
function's signature and builds a loss on lossfn's contract from it:

- every positional parameter without a default is a positional input (``input1``,
  ``input2``, ``target``; ``log_probs``, ``targets``, ``input_lengths``, ...), in
  torch's order; tensor parameters that default to ``None`` (``weight``,
  ``pos_weight``) are optional inputs after them;
- every other parameter with a number, bool or string default is a keyword-only
  hyperparameter, typed as torch annotates it (``margin: float = 0`` is a float, so a
  config may say ``margin: 0.5``); torch's legacy ``size_average``/``reduce`` are
  hidden, and parameters a config cannot hold (a callable) stay at torch's default;
- ``reduction`` is passed to torch: every reduction gives torch's own number (the
  ``"mean"`` of ``cross_entropy`` with ``ignore_index``, of ``kl_div``, of ``ctc_loss``),
  except the mean of an empty batch, which is 0 here as in every lossfn loss;
- ``elementwise_mean=True`` says torch's ``"mean"`` is the plain mean of its ``"none"``
  output (``l1_loss``, ``mse_loss``; not ``ctc_loss`` or a class-weighted
  ``cross_entropy``). Only then can :func:`lossfn.distributed.mean` take the loss:
  inside that call the mean is computed from ``"none"`` by the shared ``reduce_loss``,
  which hands it the sum and the count.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any

import msgspec
from torch import Tensor

from lossfn.registry import DEFAULT_KIND, Feature, InputCheck, Reduction, check_reduction, register_loss

from ._common import MEANS, check_floating, check_same_shape, reduce_loss

__all__ = ["register_torch_loss"]

_LEGACY = frozenset({"size_average", "reduce"})
_CONFIG_TYPES = (bool, int, float, str)


def _annotation_types(parameter: inspect.Parameter) -> tuple[Any, ...]:
    """The types a parameter's annotation admits (``None`` left out); its default's type if unannotated."""
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return () if parameter.default in (None, inspect.Parameter.empty) else (type(parameter.default),)
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    members = typing.get_args(annotation) if union else (annotation,)
    return tuple(t for t in members if t is not type(None))


def _takes_tensor(parameter: inspect.Parameter) -> bool:
    return any(isinstance(t, type) and issubclass(t, Tensor) for t in _annotation_types(parameter))


def _hyperparameter_type(parameter: inspect.Parameter) -> type | None:
    """``float`` / ``int`` / ``bool`` / ``str`` for a hyperparameter a config can hold, else None."""
    if parameter.default is None or parameter.default is inspect.Parameter.empty:
        return None
    types = [t for t in _annotation_types(parameter) if t in _CONFIG_TYPES]
    if float in types:  # `margin: float = 0`: a float, whatever the default's type
        return float
    if len(types) == 1:
        return types[0]
    return type(parameter.default) if type(parameter.default) in _CONFIG_TYPES else None


def _bounds(meta: msgspec.Meta | None) -> dict[str, Any]:
    if meta is None:
        return {}
    return {k: getattr(meta, k) for k in ("gt", "ge", "lt", "le") if getattr(meta, k) is not None}


def register_torch_loss(
    name: str,
    features: Iterable[Feature | str] | Feature | str,
    torch_fn: Callable[..., Tensor],
    *,
    aliases: Iterable[str] = (),
    inputs: Sequence[str] | None = None,
    constraints: Mapping[str, msgspec.Meta] | None = None,
    same_shape: bool | Iterable[str] = False,
    doc: str | None = None,
    kind: str = DEFAULT_KIND,
    validate: Callable[..., InputCheck | None] | None = None,
    elementwise_mean: bool = False,
) -> Callable[..., Tensor]:
    """Register ``torch_fn`` (a ``torch.nn.functional`` loss) as the lossfn loss ``name``.

    Args:
        name: registry key.
        features: output-feature types it serves.
        torch_fn: a function of torch's form ``(input, target, ..., reduction=...)``.
        aliases: other names.
        inputs: lossfn's names for torch's inputs, in torch's order (e.g.
            ``("predictions", "labels")`` for ``l1_loss``'s ``input, target``); at
            least the required ones. Optional tensor inputs not named here are not
            exposed (torch's ``None`` is used). Default: torch's own names, all exposed.
        constraints: ``{parameter: msgspec.Meta(...)}`` bounds for its
            hyperparameters (e.g. ``{"delta": Meta(gt=0)}``), checked by the pure
            function, the module and the config alike.
        same_shape: ``True``: every required input has the first input's shape
            (elementwise losses, which torch would broadcast with only a warning);
            or the names of the inputs that must. Default: no check beyond torch's.
        doc: the docstring (math, shapes, reference); a generated one otherwise.
        kind: what model output the loss consumes (``"logits"``).
        validate: a ``validate(*inputs, **params) -> InputCheck | None`` hook (see
            :func:`lossfn.register_loss`).
        elementwise_mean: torch's ``"mean"`` is the mean of its ``"none"`` output
            (checked for every registered loss by the conformance suite), so
            :func:`lossfn.distributed.mean` can take the loss.

    Returns:
        The registered loss, a pure function of the lossfn contract.
    """
    constraints = dict(constraints or {})
    source = f"torch.nn.functional.{torch_fn.__name__}"
    try:
        torch_params = list(inspect.signature(torch_fn, eval_str=True).parameters.values())
    except (NameError, TypeError, ValueError):
        torch_params = list(inspect.signature(torch_fn).parameters.values())
    if "reduction" not in {p.name for p in torch_params}:
        raise TypeError(f"{source} takes no 'reduction' argument; it is no torch loss")

    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in torch_params if p.kind in positional and p.default is inspect.Parameter.empty]
    optional = [p for p in torch_params if p.default is None and _takes_tensor(p) and p.name not in _LEGACY]
    if not required:
        raise TypeError(f"loss {name!r}: {source} has no required input")
    hidden, keyword = [], []
    for p in torch_params:
        if p in required or p in optional or p.name in _LEGACY or p.name == "reduction":
            continue
        kind_of = _hyperparameter_type(p)
        (keyword if kind_of is not None else hidden).append(p)
    unknown = set(constraints) - {p.name for p in keyword}
    if unknown:
        raise TypeError(f"loss {name!r}: constraints for unknown parameters {sorted(unknown)}")

    torch_names = [p.name for p in (*required, *optional)]
    names = list(torch_names if inputs is None else inputs)
    if not len(required) <= len(names) <= len(torch_names):
        raise TypeError(
            f"loss {name!r}: inputs names {len(names)} of {source}'s inputs {torch_names}; "
            f"name at least the {len(required)} required ones"
        )
    exposed_optional = [p.name for p in optional][: len(names) - len(required)]
    renamed = dict(zip(torch_names, names))
    if same_shape is True:
        shaped = names[1 : len(required)]
    else:
        shaped = list(same_shape or ())
        if set(shaped) - set(names):
            raise TypeError(f"loss {name!r}: same_shape names unknown inputs {sorted(set(shaped) - set(names))}")
    first = names[0]
    count = len(required)
    positions = {n: i for i, n in enumerate(names)}

    def loss(*args: Any, **kwargs: Any) -> Tensor:
        reduction = kwargs.pop("reduction", "mean")
        if any(key in positions for key in kwargs):  # inputs given by name
            given = list(args) + [None] * (len(names) - len(args))
            for key in [key for key in kwargs if key in positions]:
                given[positions[key]] = kwargs.pop(key)
            args = tuple(given)
        if len(args) < count or any(a is None for a in args[:count]):
            missing = [n for n, a in zip(names[:count], [*args, *[None] * count]) if a is None]
            raise TypeError(f"{name}() missing required inputs: {', '.join(missing)}")
        tensors = args[:count]
        check_floating(name, first, tensors[0])
        for arg in shaped:
            check_same_shape(name, tensors[0], args[positions[arg]], names=(first, arg))
        extra = dict(zip(exposed_optional, args[count:]))
        check_reduction(name, reduction)
        if reduction == "mean" and elementwise_mean and MEANS:  # lossfn.distributed.mean is listening
            return reduce_loss(torch_fn(*tensors, **extra, **kwargs, reduction="none"), "mean", name=name)
        if reduction == "mean" and any(isinstance(t, Tensor) and t.numel() == 0 for t in tensors):
            return torch_fn(*tensors, **extra, **kwargs, reduction="sum")  # nothing to average: 0, not nan
        return torch_fn(*tensors, **extra, **kwargs, reduction=reduction)

    parameters = [
        inspect.Parameter(renamed[p.name], inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Tensor)
        for p in required
    ]
    parameters += [
        inspect.Parameter(renamed[n], inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=Tensor | None)
        for n in exposed_optional
    ]
    for p in keyword:
        kind_of = _hyperparameter_type(p)
        meta = constraints.get(p.name)
        description = (meta.description if meta is not None else None) or f"`{p.name}` of {source}"
        annotation = Annotated[kind_of, msgspec.Meta(**_bounds(meta), description=description)]
        parameters.append(
            inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=kind_of(p.default), annotation=annotation)
        )
    parameters.append(
        inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="mean", annotation=Reduction)
    )
    loss.__signature__ = inspect.Signature(parameters, return_annotation=Tensor)  # type: ignore[attr-defined]
    loss.__name__ = loss.__qualname__ = name
    loss.__module__ = "lossfn.functional"
    # what makes a second registration of this torch function under this name a re-run, not a clash
    loss.__lossfn_source__ = f"{torch_fn.__module__}.{torch_fn.__qualname__} as {name}"  # type: ignore[attr-defined]
    loss.__doc__ = doc or _generated_doc(source, names, count, keyword, hidden)
    return register_loss(name, features, aliases=aliases, validate=validate, kind=kind)(loss)


def _generated_doc(
    source: str, names: list[str], count: int, keyword: list[inspect.Parameter], hidden: list[inspect.Parameter]
) -> str:
    args = [f"    {n}: torch's {'required' if i < count else 'optional'} input {i + 1}." for i, n in enumerate(names)]
    args += [f"    {p.name}: torch's ``{p.name}`` (default {p.default!r})." for p in keyword]
    args.append('    reduction: ``"none"`` | ``"mean"`` | ``"sum"``, passed to torch.')
    left = (
        f"\n\nLeft at torch's default (a config cannot hold them): {', '.join(p.name for p in hidden)}."
        if hidden else ""
    )
    return (
        f"``{source}`` as a lossfn loss (registered through the torch route).\n\n"
        f"The inputs go to torch unchanged and ``reduction`` is torch's own, so each\n"
        f"reduction is torch's number; the mean of an empty batch is 0 (torch: nan).{left}\n\n"
        "Args:\n" + "\n".join(args) + "\n\n"
        f"Returns:\n    What ``{source}`` returns for the reduction.\n\n"
        f"References:\n    ``{source}``, which this wrapper calls."
    )
