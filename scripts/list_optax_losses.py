"""Print the public names of ``optax.losses``, the list kept in ``lossfn/_catalog.py``.

Run with the reference environment, which has jax and optax (lossfn does not depend on
optax, and its tests never import it)::

    /tmp/refvenv/bin/python scripts/list_optax_losses.py          # the tuple to paste
    /tmp/refvenv/bin/python scripts/list_optax_losses.py --check  # exit 1 if the stored list differs

The check reads ``OPTAX_LOSSES`` and ``OPTAX_VERSION`` out of ``lossfn/_catalog.py``
without importing lossfn (the reference environment has no torch). After a change,
paste the new tuple and the version, add a row to ``OPTAX_ROWS`` for each new name, and
regenerate ``docs/catalog.md`` (``python -m lossfn._catalog > docs/catalog.md``).
"""

from __future__ import annotations

import ast
import pathlib
import sys

import optax
import optax.losses

CATALOG = pathlib.Path(__file__).resolve().parents[1] / "lossfn" / "_catalog.py"


def public_names() -> list[str]:
    """Every public callable of ``optax.losses``, sorted."""
    return sorted(n for n in dir(optax.losses) if not n.startswith("_") and callable(getattr(optax.losses, n)))


def stored() -> tuple[str, tuple[str, ...]]:
    """``(OPTAX_VERSION, OPTAX_LOSSES)`` as ``lossfn/_catalog.py`` writes them."""
    values = {}
    for node in ast.parse(CATALOG.read_text()).body:
        if isinstance(node, ast.AnnAssign):
            target = node.target
        elif isinstance(node, ast.Assign):
            target = node.targets[0]
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("OPTAX_VERSION", "OPTAX_LOSSES"):
            values[target.id] = ast.literal_eval(node.value)
    return values["OPTAX_VERSION"], tuple(values["OPTAX_LOSSES"])


def main(argv: list[str]) -> int:
    names = public_names()
    if "--check" not in argv:
        print(f'OPTAX_VERSION = "{optax.__version__}"')
        print("OPTAX_LOSSES: tuple[str, ...] = (")
        for name in names:
            print(f'    "{name}",')
        print(")")
        return 0
    version, losses = stored()
    added, removed = sorted(set(names) - set(losses)), sorted(set(losses) - set(names))
    if version != optax.__version__:
        print(f"lossfn/_catalog.py lists optax {version}; this optax is {optax.__version__}")
    for name in added:
        print(f"new in optax.losses, not in OPTAX_LOSSES: {name}")
    for name in removed:
        print(f"in OPTAX_LOSSES, gone from optax.losses: {name}")
    ok = not added and not removed and version == optax.__version__
    print(f"OPTAX_LOSSES matches optax {optax.__version__}: {len(names)} names" if ok else "OPTAX_LOSSES is stale")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
