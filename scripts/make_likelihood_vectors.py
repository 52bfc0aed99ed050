"""Write ``tests/data/likelihood_optax.json`` from ``optax.losses.safe_softmax_cross_entropy``.

optax is *not* a dependency of lossfn or of its tests: run this script in a separate
environment with jax and optax (the one of ``scripts/make_poly_vectors.py`` will do),
and the tests read only the JSON it writes::

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install jax jaxlib optax
    /tmp/refvenv/bin/python scripts/make_likelihood_vectors.py

Everything runs in float64 (``jax_enable_x64``). The vectors check lossfn's
``softmax_cross_entropy`` with class-probability labels where some logits are ``-inf``
(a masked class) and the labels put no mass there (optax issue 896): optax's
``safe_softmax_cross_entropy`` takes ``0 · log 0 = 0`` there, while its
``softmax_cross_entropy`` (like ``F.cross_entropy``) gives NaN. JSON has no ``-inf``:
each case stores the logits with the masked entries written as 0 and a ``masked`` list
of ``[row, class]`` pairs, which the test sets to ``-inf``. Stored per case: the
logits, the masked entries, the probability labels, the per-example values, the
gradient of their sum with respect to the logits (``jax.grad``), and whether
``optax.losses.softmax_cross_entropy`` is NaN for some example.
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

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "likelihood_optax.json"


def floats(a) -> list:
    return np.asarray(a, dtype=np.float64).tolist()


def case(label: str, logits: np.ndarray, masked: list[tuple[int, int]], labels: np.ndarray) -> dict:
    x = np.array(logits, dtype=np.float64)
    for row, column in masked:
        assert labels[row, column] == 0, (label, row, column)
        x[row, column] = -np.inf
    x = jnp.asarray(x)
    target = jnp.asarray(labels)
    value = optax.losses.safe_softmax_cross_entropy(x, target)
    gradient = jax.grad(lambda v: jnp.sum(optax.losses.safe_softmax_cross_entropy(v, target)))(x)
    assert np.isfinite(value).all() and np.isfinite(gradient).all(), label
    plain = optax.losses.softmax_cross_entropy(x, target)
    stored = np.array(logits, dtype=np.float64)
    for row, column in masked:
        stored[row, column] = 0.0
    return dict(
        label=label,
        logits=floats(stored),
        masked=[list(m) for m in masked],
        labels=floats(labels),
        value=floats(value),
        gradient=floats(gradient),
        softmax_cross_entropy_is_nan=bool(np.isnan(plain).any()),
    )


def probabilities(rng: np.random.Generator, shape: tuple[int, int], masked: list[tuple[int, int]]) -> np.ndarray:
    """Random distributions over the classes, with no mass on the masked entries."""
    weights = rng.uniform(0.1, 1.0, size=shape)
    for row, column in masked:
        weights[row, column] = 0.0
    return weights / weights.sum(1, keepdims=True)


def main() -> None:
    rng = np.random.default_rng(896)
    cases = []
    masked = [(0, 4), (1, 4), (2, 4), (2, 0), (3, 1)]
    logits = 2 * rng.standard_normal((4, 5))
    cases.append(case("[4, 5] soft labels, masked classes", logits, masked, probabilities(rng, (4, 5), masked)))
    one_hot = np.eye(5)[[1, 0, 3, 2]]
    cases.append(case("[4, 5] one-hot labels, masked classes", 2 * rng.standard_normal((4, 5)), masked, one_hot))
    big = [(0, 2), (1, 0), (1, 1), (4, 3)]
    large = 30 * rng.standard_normal((6, 4))
    cases.append(case("[6, 4] logits at scale 30", large, big, probabilities(rng, (6, 4), big)))
    cases.append(case("[3, 5] nothing masked", rng.standard_normal((3, 5)), [], probabilities(rng, (3, 5), [])))
    document = {
        "source": "optax.losses.safe_softmax_cross_entropy, scripts/make_likelihood_vectors.py",
        "versions": {name: importlib.metadata.version(name) for name in ("jax", "optax")},
        "cases": cases,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
