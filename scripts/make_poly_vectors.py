"""Write ``tests/data/poly_reference.json`` from ``optax.losses.poly_loss_cross_entropy``.

optax is *not* a dependency of lossfn or of its tests: run this script in a separate
environment (the one of ``scripts/make_bitempered_vectors.py`` will do), and the tests
read only the JSON it writes::

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install jax jaxlib optax
    /tmp/refvenv/bin/python scripts/make_poly_vectors.py

Everything runs in float64 (``jax_enable_x64``). optax takes the labels as class
probabilities over the last axis, so class indices are given to it one-hot and the
per-pixel case has its classes last (lossfn takes them on dimension 1). What is stored,
for each case: the logits, the class indices, ``epsilon`` (``null`` for a call that
leaves optax's default, 2.0, in place), the per-example values and the gradient of
their sum with respect to the logits (``jax.grad``). The cases: ``[6, 5]`` logits at
scale 2 and at scale 30 (confident predictions, some wrong) for several epsilons, one
example ``[5]``, and per-pixel ``[2, 3, 4, 5]`` (classes last).
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

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "poly_reference.json"
CLASSES = 5
EPSILONS = [None, 0.0, 0.5, 1.0, 2.0, 5.0]


def floats(a) -> list:
    return np.asarray(a, dtype=np.float64).tolist()


def case(label: str, logits: np.ndarray, indices: np.ndarray, epsilon: float | None) -> dict:
    one_hot = jnp.asarray(np.eye(CLASSES)[indices])
    kwargs = {} if epsilon is None else {"epsilon": epsilon}

    def per_example(x):
        return optax.losses.poly_loss_cross_entropy(x, one_hot, **kwargs)

    x = jnp.asarray(logits)
    value = per_example(x)
    gradient = jax.grad(lambda v: jnp.sum(per_example(v)))(x)
    assert np.isfinite(value).all() and np.isfinite(gradient).all(), label
    return dict(
        label=label,
        epsilon=epsilon,
        logits=floats(logits),
        labels=np.asarray(indices).tolist(),
        value=floats(value),
        grad=floats(gradient),
    )


def main() -> None:
    rng = np.random.default_rng(2022)
    base = rng.normal(size=(6, CLASSES))
    indices = rng.integers(0, CLASSES, size=6)
    cases = []
    for epsilon in EPSILONS:
        cases.append(case("[6, 5] scale 2", 2.0 * base, indices, epsilon))
        cases.append(case("[6, 5] scale 30", 30.0 * base, indices, epsilon))
    cases.append(case("[5] one example", 2.0 * base[0], indices[0], 1.0))
    pixels = rng.normal(scale=2.0, size=(2, 3, 4, CLASSES))
    pixel_labels = rng.integers(0, CLASSES, size=(2, 3, 4))
    cases.append(case("[2, 3, 4, 5] per pixel, classes last", pixels, pixel_labels, 1.5))
    document = {
        "source": f"optax {importlib.metadata.version('optax')}, jax {jax.__version__}: "
        "optax.losses.poly_loss_cross_entropy(logits, one_hot(labels), epsilon=...) in float64",
        "cases": cases,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
