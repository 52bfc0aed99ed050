"""Third-party losses: packages register through the entry-point group ``lossfn.losses``.

A plugin declares, in its ``pyproject.toml``::

    [project.entry-points."lossfn.losses"]
    my_losses = "my_package.losses"

and ``my_package.losses`` registers its losses with ``@lossfn.register_loss`` when
imported. lossfn imports every such module the first time the registry is read.
"""

from __future__ import annotations

import importlib.metadata
import warnings

GROUP = "lossfn.losses"


class PluginWarning(UserWarning):
    """A plugin named in ``lossfn.losses`` failed to load; its losses are missing."""


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
