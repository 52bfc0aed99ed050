"""Write ``tests/data/regression_optax.json`` from ``optax.losses.log_cosh``.

optax is *not* a dependency of lossfn or of its tests: run this script in a separate
environment (the one of ``scripts/make_poly_vectors.py`` will do), and the tests read
only the JSON it writes::

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install jax jaxlib optax
    /tmp/refvenv/bin/python scripts/make_regression_vectors.py

Everything runs in float64 (``jax_enable_x64``). What is stored, for each case: the
predictions, the targets (``null`` for a call that leaves optax's ``targets=None``, a
target of zeros), optax's elementwise values and the gradient of their sum with respect
to the predictions (``jax.grad``). The cases: ``[6]`` and ``[4, 3]`` normal errors,
errors at scale 30 and at scale 1e4 (where ``cosh`` itself overflows float32), small
errors around 1e-2, a scalar, and a call without targets.
"""

from __future__ import annotations

import importlib.metadata
import json
import pathlib

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "regression_optax.json"


def floats(a) -> list | float:
    return np.asarray(a, dtype=np.float64).tolist()


def case(label: str, predictions: np.ndarray, targets: np.ndarray | None) -> dict:
    t = None if targets is None else jnp.asarray(targets)

    def elementwise(x):
        return optax.losses.log_cosh(x, t)

    x = jnp.asarray(predictions)
    value = elementwise(x)
    gradient = jax.grad(lambda v: jnp.sum(elementwise(v)))(x)
    assert np.isfinite(value).all() and np.isfinite(gradient).all(), label
    return dict(
        label=label,
        predictions=floats(predictions),
        targets=None if targets is None else floats(targets),
        value=floats(value),
        grad=floats(gradient),
    )


def main() -> None:
    rng = np.random.default_rng(2019)
    cases = [
        case("[6] normal", rng.normal(size=6), rng.normal(size=6)),
        case("[4, 3] normal, scale 2", 2 * rng.normal(size=(4, 3)), rng.normal(size=(4, 3))),
        case("[4, 3] errors at scale 30", 30 * rng.normal(size=(4, 3)), rng.normal(size=(4, 3))),
        case("[5] errors at scale 1e4", 1e4 * rng.normal(size=5), rng.normal(size=5)),
        case("[6] small errors, scale 1e-2", 1e-2 * rng.normal(size=6), np.zeros(6)),
        case("[] scalar", np.asarray(0.75), np.asarray(-0.5)),
        case("[2, 3] targets=None", rng.normal(size=(2, 3)), None),
    ]
    document = {
        "source": f"optax {importlib.metadata.version('optax')}, jax {jax.__version__}: "
        "optax.losses.log_cosh(predictions, targets) in float64 (elementwise), and jax.grad of its sum",
        "cases": cases,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
