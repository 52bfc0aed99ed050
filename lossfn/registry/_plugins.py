"""Third-party losses: packages register through the entry-point group ``lossfn.losses``.

A plugin declares, in its ``pyproject.toml``::

    [project.entry-points."lossfn.losses"]
    my_losses = "my_package.losses"

and ``my_package.losses`` registers its losses with ``@lossfn.register_loss`` when
imported. lossfn imports every such module the first time the registry is read
(once per process; a reader in another thread waits until the imports finished).

To run without them, set the environment variable ``LOSSFN_DISABLE_PLUGIN_AUTOLOAD``
(as pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``) to any non-empty value other than
``0``, ``false`` or ``no``::

    LOSSFN_DISABLE_PLUGIN_AUTOLOAD=1 python train.py

It is read at the first registry read, not when lossfn is imported, so a test can set
it before then. It affects only the entry points: lossfn's own losses register when
lossfn is imported.
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings

GROUP = "lossfn.losses"

DISABLE_ENV = "LOSSFN_DISABLE_PLUGIN_AUTOLOAD"
"""The environment variable that turns the import of the entry points off."""

_NOT_SET = frozenset({"", "0", "false", "no"})


class PluginWarning(UserWarning):
    """A plugin named in ``lossfn.losses`` failed to load; its losses are missing."""


def autoload_disabled() -> bool:
    """Whether ``LOSSFN_DISABLE_PLUGIN_AUTOLOAD`` is set (to a value other than 0/false/no), read now."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in _NOT_SET


def load_entry_points() -> list[str]:
    """Load every entry point of the group; return the names that loaded."""
    loaded = []
    for entry in importlib.metadata.entry_points(group=GROUP):
        try:
            entry.load()
        except Exception as exc:  # a broken plugin must not break lossfn itself
            warnings.warn(
                f"lossfn plugin {entry.name!r} ({entry.value}) failed to load: {exc}",
                PluginWarning,
                stacklevel=2,
            )
        else:
            loaded.append(entry.name)
    return loaded
