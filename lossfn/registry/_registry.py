"""The registry: loss names (and aliases) -> `LossSpec`, and the look-ups."""

from __future__ import annotations

import contextlib
import difflib
import inspect
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from ._checks import checked_function, guarded
from ._feature import DEFAULT_LOSS, Feature
from ._spec import DEFAULT_KIND, InputCheck, LossSpec, camel_case, check_name, parse_features, read_signature

__all__ = [
    "DuplicateLossError",
    "LossRedefinedWarning",
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
_WRITING = threading.RLock()


class UnknownLossError(KeyError, LookupError):
    """No loss is registered under that name or alias."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the sentence
        return str(self.args[0]) if self.args else ""


class DuplicateLossError(ValueError):
    """A name or alias is registered twice, or two names give one class name."""


class LossRedefinedWarning(UserWarning):
    """A loss was registered again from the same source (a re-run notebook cell): it replaces the old one."""


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
    validate: Callable[..., InputCheck | None] | None = None,
    kind: str = DEFAULT_KIND,
    predict: Callable[[Any], Any] | None = None,
) -> Callable[[F], F]:
    """Register a pure loss function under ``name`` for the given feature types.

    The decorator returns a thin wrapper with the function's signature, name and
    docstring that checks the hyperparameters a call passes as Python numbers
    against the bounds of their annotations (``ValueError`` naming the loss, the
    argument and the bound; see ``_checks.py``) and then calls the function, so
    it still works under every ``torch.func`` transform and ``torch.compile``.
    The signature is checked against the function contract (see ``DESIGN.md``)
    here, at registration, so a mistake fails at import and not in a training run.

    Registering a name again from the same source (the same module and qualified
    name: a notebook cell run twice) replaces the loss with a
    :class:`LossRedefinedWarning`; any other repeat is a :class:`DuplicateLossError`.

    Args:
        name: snake_case registry key; the module class is its CamelCase form.
        features: output-feature types the loss serves.
        aliases: other names that look up the same loss (and decode as configs).
        validate: optional ``validate(*inputs, **params) -> InputCheck | None`` for
            checks of tensor values (label ranges): it computes its facts with tensor
            ops, and the module reads them (the pure function never calls it).
        kind: what model output the loss consumes, as Ludwig's
            ``get_loss_inputs()``: ``"logits"`` (the default) or ``"anomaly_score"``.
        predict: optional ``predict(output) -> class indices``, the loss's prediction
            rule (Ludwig's per-feature predictions): how the output of a model trained
            with this loss is decoded into classes, e.g. by ``lossfn demo`` to score
            accuracy. Stored as ``LossSpec.predict``. ``None`` (the default) means
            argmax over the class dimension (1 of ``[B, C, *]``, 0 of ``[C]``) for a
            loss that serves category features, and no rule for the others; the
            effective rule is ``LossSpec.prediction_rule``. A loss whose output is
            not one score per class gives its own (``corn``: the count of tasks whose
            cumulative probability exceeds 0.5).
    """

    def decorate(fn: F) -> F:
        spec = spec_for(name, fn, features, tuple(aliases), validate, kind, predict)
        _add(spec)
        return spec.fn  # type: ignore[return-value]

    return decorate


def spec_for(
    name: str,
    fn: Callable[..., Any],
    features: Any,
    aliases: tuple[str, ...],
    validate: Callable[..., InputCheck | None] | None,
    kind: str = DEFAULT_KIND,
    predict: Callable[[Any], Any] | None = None,
) -> LossSpec:
    """The spec of ``fn``: its signature read and checked, its checked wrapper built."""
    check_name("name", name)
    for alias in aliases:
        check_name("alias", alias)
    check_name("kind", kind)
    if predict is not None and not callable(predict):
        raise TypeError(f"loss {name!r}: predict must be a function output -> class indices, or None; "
                        f"got {type(predict).__name__}")
    signature = read_signature(name, fn)
    return LossSpec(
        name=name,
        # one frame each around the function: float32 under autocast, as torch's losses, and index
        # errors named (see _checks.py); the pure function also checks the hyperparameters it is given
        fn=checked_function(name, fn, signature),
        features=parse_features(name, features),
        aliases=tuple(aliases),
        inputs=signature.inputs,
        optional_inputs=signature.optional_inputs,
        params=signature.params,
        kind=kind,
        validate=validate,
        unchecked=guarded(name, fn),
        predict=predict,
    )


def _source(spec: LossSpec) -> str:
    """Where a loss was written: ``module.qualname`` of the function (or what it wraps)."""
    fn = inspect.unwrap(spec.unchecked or spec.fn)
    source = getattr(fn, "__lossfn_source__", None)
    return source or f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _add(spec: LossSpec) -> None:
    global _GENERATION
    with _WRITING:
        keys = (spec.name, *spec.aliases)
        if len(set(keys)) != len(keys):
            raise DuplicateLossError(f"loss {spec.name!r}: aliases repeat a name")
        old = _SPECS.get(spec.name)
        replacing = old is not None and _source(old) == _source(spec)
        for key in keys:
            owner = _NAMES.get(key)
            if owner is not None and not (replacing and owner == spec.name):
                what = "name" if key == owner else f"alias of {owner!r}"
                raise DuplicateLossError(f"loss {key!r} is already registered (as a {what})")
        # the generated classes are found by name (lossfn.nn.<Name>, lossfn.schemas.<Name>Config):
        # two keys with one CamelCase form would shadow each other
        classes = {camel_case(key): key for other in _SPECS.values() if other.name != spec.name
                   for key in (other.name, *other.aliases)}
        for key in keys:
            clash = classes.get(camel_case(key))
            if clash is not None:
                raise DuplicateLossError(
                    f"loss {key!r}: its class name {camel_case(key)!r} is already that of {clash!r}; choose another name"
                )
        if replacing:
            warnings.warn(
                f"loss {spec.name!r} is registered again from {_source(spec)}; the new definition replaces the old",
                LossRedefinedWarning,
                stacklevel=3,
            )
            for key in (old.name, *old.aliases):
                del _NAMES[key]
        _SPECS[spec.name] = spec
        for key in keys:
            _NAMES[key] = spec.name
        _GENERATION += 1


def unregister_loss(name: str) -> LossSpec:
    """Remove a loss (and its aliases); returns its spec. Meant for tests and notebooks."""
    global _GENERATION
    with _WRITING:
        spec = get_loss(name)
        del _SPECS[spec.name]
        for key in (spec.name, *spec.aliases):
            del _NAMES[key]
        _GENERATION += 1
    return spec


@contextlib.contextmanager
def temporary_registry() -> Iterator[None]:
    """The registry as it was is restored when the block ends (losses added, replaced
    or removed inside it are undone)."""
    global _GENERATION
    with _WRITING:
        specs, names = dict(_SPECS), dict(_NAMES)
    try:
        yield
    finally:
        with _WRITING:
            if specs != _SPECS or names != _NAMES:
                _SPECS.clear()
                _SPECS.update(specs)
                _NAMES.clear()
                _NAMES.update(names)
                _GENERATION += 1


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


_PLUGINS_LOADED = False  # set once the plugin imports finished (or were skipped), never before
_PLUGINS_LOCK = threading.RLock()
_PLUGINS_LOADING = False  # True while the thread holding _PLUGINS_LOCK imports the plugins


def _load_plugins() -> None:
    """Import the modules named in the entry-point group ``lossfn.losses`` (once).

    The first reader imports them while readers in other threads wait on the lock, so
    none sees the registry without the plugin losses. A plugin that reads the registry
    while it is imported re-enters here in the same thread and returns at once. Unless
    ``LOSSFN_DISABLE_PLUGIN_AUTOLOAD`` is set (read now): then nothing is imported.
    """
    global _PLUGINS_LOADED, _PLUGINS_LOADING
    if _PLUGINS_LOADED:  # the fast path: one global read, no lock
        return
    with _PLUGINS_LOCK:
        # only the thread holding the lock can see _PLUGINS_LOADING true: then this is a
        # plugin reading the registry during its own import
        if _PLUGINS_LOADED or _PLUGINS_LOADING:
            return
        from ._plugins import autoload_disabled, load_entry_points

        _PLUGINS_LOADING = True
        try:
            if not autoload_disabled():
                load_entry_points()
        finally:
            # attempted once, as before: a failure (a PluginWarning turned into an error)
            # is not retried on every read
            _PLUGINS_LOADING = False
            _PLUGINS_LOADED = True
