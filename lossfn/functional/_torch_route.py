"""Ludwig's second route: register an existing ``torch.nn.functional`` loss in one line.

The wrapper follows the function contract: ``(logits, labels, *, params...,
reduction="mean")``. Torch's legacy ``size_average``/``reduce`` arguments are
hidden; the torch function's numeric keyword arguments (``delta``, ``beta``, ...)
become the loss's hyperparameters, typed by their defaults. The elementwise loss
(``reduction="none"`` in torch) is averaged over all but the batch dimension to
give per-example losses, then reduced by the shared helper.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

import msgspec
from torch import Tensor

from lossfn.registry import Feature, Reduction, register_loss

from ._common import check_floating, check_same_shape, mean_over_features, reduce_loss

__all__ = ["register_torch_loss"]

_HIDDEN = frozenset({"size_average", "reduce", "reduction"})


def register_torch_loss(
    name: str,
    features: Iterable[Feature | str] | Feature | str,
    torch_fn: Callable[..., Tensor],
    *,
    aliases: Iterable[str] = (),
    constraints: Mapping[str, msgspec.Meta] | None = None,
    doc: str | None = None,
    same_shape: bool = True,
) -> Callable[..., Tensor]:
    """Register ``torch_fn`` (a ``torch.nn.functional`` loss) as the lossfn loss ``name``.

    Args:
        name: registry key.
        features: output-feature types it serves.
        torch_fn: a function ``(input, target, ..., reduction=...)`` of torch.
        aliases: other names.
        constraints: ``{parameter: msgspec.Meta(...)}`` bounds for its
            hyperparameters (e.g. ``{"delta": Meta(gt=0)}``).
        doc: the docstring (math, shapes, reference); a generated one otherwise.
        same_shape: labels must have the logits' shape (elementwise losses);
            torch would broadcast them with only a warning.

    Returns:
        The registered wrapper, a pure function of the lossfn contract.
    """
    constraints = dict(constraints or {})
    torch_params = list(inspect.signature(torch_fn).parameters.values())
    if "reduction" not in {p.name for p in torch_params}:
        raise TypeError(f"{torch_fn.__name__} takes no 'reduction' argument; it is no torch loss")
    keyword = [
        p
        for p in torch_params[2:]
        if p.name not in _HIDDEN and type(p.default) in (bool, int, float)
    ]
    unknown = set(constraints) - {p.name for p in keyword}
    if unknown:
        raise TypeError(f"loss {name!r}: constraints for unknown parameters {sorted(unknown)}")
    source = f"torch.nn.functional.{torch_fn.__name__}"

    def loss(logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean", **params: Any) -> Tensor:
        check_floating(name, "logits", logits)
        if same_shape:
            check_same_shape(name, logits, labels)
        elementwise = torch_fn(logits, labels, reduction="none", **params)
        return reduce_loss(mean_over_features(elementwise), reduction, name=name)

    parameters = [
        inspect.Parameter("logits", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Tensor),
        inspect.Parameter("labels", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Tensor),
    ]
    for p in keyword:
        meta = constraints.get(p.name)
        bounds = {} if meta is None else {
            k: getattr(meta, k) for k in ("gt", "ge", "lt", "le") if getattr(meta, k) is not None
        }
        description = (meta.description if meta is not None else None) or f"`{p.name}` of {source}"
        annotation = Annotated[type(p.default), msgspec.Meta(**bounds, description=description)]
        parameters.append(
            inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default, annotation=annotation)
        )
    parameters.append(
        inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="mean", annotation=Reduction)
    )
    loss.__signature__ = inspect.Signature(parameters, return_annotation=Tensor)  # type: ignore[attr-defined]
    loss.__name__ = loss.__qualname__ = name
    loss.__module__ = "lossfn.functional"
    loss.__doc__ = doc or (
        f"``{source}`` as a lossfn loss (the torch route).\n\n"
        f"Per-example losses are torch's elementwise losses averaged over all but the\n"
        f"batch dimension; ``\"mean\"`` equals torch's mean.\n\n"
        f"References:\n    Checked against ``{source}``."
    )
    return register_loss(name, features, aliases=aliases)(loss)
