"""The registry: loss names (and aliases) -> `LossSpec`, and the look-ups."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from ._feature import DEFAULT_LOSS, Feature
from ._spec import LossSpec, spec_for

__all__ = [
    "DuplicateLossError",
    "UnknownLossError",
    "default_loss",
    "generation",
    "get_loss",
    "losses_for",
    "register_loss",
    "registered",
    "temporary_registry",
    "unregister_loss",
]

F = TypeVar("F", bound=Callable[..., Any])

_SPECS: dict[str, LossSpec] = {}
_NAMES: dict[str, str] = {}  # name or alias -> name
_GENERATION = 0


class UnknownLossError(KeyError, LookupError):
    """No loss is registered under that name or alias."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the sentence
        return str(self.args[0]) if self.args else ""


class DuplicateLossError(ValueError):
    """A name or alias is registered twice."""


def generation() -> int:
    """A counter that changes whenever a loss is registered or removed.

    The derived layers key their caches (the config union, the JSON Schema) on it,
    so a loss registered at run time joins them at once.
    """
    _load_plugins()
    return _GENERATION


def register_loss(
    name: str,
    features: Iterable[Feature | str] | Feature | str,
    *,
    aliases: Iterable[str] = (),
    validate: Callable[..., None] | None = None,
) -> Callable[[F], F]:
    """Register a pure loss function under ``name`` for the given feature types.

    The decorator returns the function unchanged, so it still works under every
    ``torch.func`` transform. The signature is checked against the function
    contract (see ``DESIGN.md``) here, at registration, so a mistake fails at
    import and not in a training run.

    Args:
        name: snake_case registry key; the module class is its CamelCase form.
        features: output-feature types the loss serves.
        aliases: other names that look up the same loss (and decode as configs).
        validate: optional ``validate(logits, labels, **params)`` for checks that
            need a host sync (label ranges). Modules and the CLI call it; the pure
            function never does.
    """

    def decorate(fn: F) -> F:
        _add(spec_for(name, fn, features, tuple(aliases), validate))
        return fn

    return decorate


def _add(spec: LossSpec) -> None:
    global _GENERATION
    for key in (spec.name, *spec.aliases):
        if key in _NAMES:
            owner = _NAMES[key]
            what = "name" if key == owner else f"alias of {owner!r}"
            raise DuplicateLossError(f"loss {key!r} is already registered (as a {what})")
    if len(set((spec.name, *spec.aliases))) != 1 + len(spec.aliases):
        raise DuplicateLossError(f"loss {spec.name!r}: aliases repeat a name")
    _SPECS[spec.name] = spec
    for key in (spec.name, *spec.aliases):
        _NAMES[key] = spec.name
    _GENERATION += 1


def unregister_loss(name: str) -> LossSpec:
    """Remove a loss (and its aliases); returns its spec. Meant for tests and notebooks."""
    global _GENERATION
    spec = get_loss(name)
    del _SPECS[spec.name]
    for key in (spec.name, *spec.aliases):
        del _NAMES[key]
    _GENERATION += 1
    return spec


@contextlib.contextmanager
def temporary_registry() -> Iterator[None]:
    """Losses registered inside the block are removed when it ends."""
    before = set(_SPECS)
    try:
        yield
    finally:
        for name in set(_SPECS) - before:
            unregister_loss(name)


def get_loss(name: str) -> LossSpec:
    """The spec registered under ``name`` or one of its aliases.

    Raises:
        UnknownLossError: (a ``KeyError``) naming the closest registered names.
    """
    _load_plugins()
    try:
        return _SPECS[_NAMES[name]]
    except (KeyError, TypeError):
        raise UnknownLossError(unknown_message(name, _NAMES)) from None


def unknown_message(name: Any, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return f"unknown loss {name!r}{hint} (registered: {', '.join(known)})"


def registered() -> dict[str, LossSpec]:
    """Every registered loss, ``{name: spec}``, sorted by name."""
    _load_plugins()
    return dict(sorted(_SPECS.items()))


def losses_for(feature: Feature | str) -> dict[str, LossSpec]:
    """The losses that serve one output-feature type, ``{name: spec}``."""
    feature = Feature.parse(feature)
    return {name: spec for name, spec in registered().items() if feature in spec.features}


def default_loss(feature: Feature | str) -> LossSpec:
    """The loss a feature type uses by default (Ludwig's choice)."""
    feature = Feature.parse(feature)
    return get_loss(DEFAULT_LOSS[feature])


_PLUGINS_LOADED = False


def _load_plugins() -> None:
    """Import the modules named in the entry-point group ``lossfn.losses`` (once)."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from ._plugins import load_entry_points

    load_entry_points()
