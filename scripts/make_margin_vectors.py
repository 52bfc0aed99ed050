"""Write ``tests/data/margin_optax.json`` from optax's margin losses.

optax is *not* a dependency of lossfn or of its tests: run this script in a separate
environment, and the tests (``tests/test_margin.py``) read only the JSON it writes::

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install jax jaxlib optax
    /tmp/refvenv/bin/python scripts/make_margin_vectors.py

Everything runs in float64 (``jax_enable_x64``). The losses and how they are called:

- ``hinge``: ``optax.losses.hinge_loss(logits, 2 * labels - 1)`` (optax takes ±1 targets,
  lossfn 0/1 labels);
- ``perceptron``: ``optax.losses.perceptron_loss(logits, 2 * labels - 1)``;
- ``binary_sparsemax``: ``optax.losses.sparsemax_loss(logits, labels)`` (0/1 labels);
- ``multiclass_hinge``: ``optax.losses.multiclass_hinge_loss(logits, labels)``;
- ``multiclass_perceptron``: ``optax.losses.multiclass_perceptron_loss(logits, labels)``.

optax takes the classes on the last axis: the per-position case is stored that way,
``[B, d, C]`` (lossfn takes ``[B, C, d]``; the test moves the axis). What is stored, for
each case: the loss, a label, the logits, the labels (0/1 or class indices), the
unreduced values and the gradient of their sum with respect to the logits
(``jax.grad``). The binary cases avoid the kinks of the hinge (``t x = 1``) and the
perceptron (``x = 0``), where ``jax.numpy.maximum`` takes half the slope and lossfn 0;
the multiclass ones include exact ties, where both share the maximum's gradient
equally among the tied classes.
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

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "margin_optax.json"
CLASSES = 5

BINARY = {
    "hinge": lambda x, y: optax.losses.hinge_loss(x, 2 * y - 1),
    "perceptron": lambda x, y: optax.losses.perceptron_loss(x, 2 * y - 1),
    "binary_sparsemax": lambda x, y: optax.losses.sparsemax_loss(x, y),
}
MULTICLASS = {
    "multiclass_hinge": optax.losses.multiclass_hinge_loss,
    "multiclass_perceptron": optax.losses.multiclass_perceptron_loss,
}


def floats(a) -> list | float:
    return np.asarray(a, dtype=np.float64).tolist()


def case(loss: str, label: str, fn, logits: np.ndarray, labels: np.ndarray) -> dict:
    x, y = jnp.asarray(logits), jnp.asarray(labels)
    value = fn(x, y)
    gradient = jax.grad(lambda v: jnp.sum(fn(v, y)))(x)
    assert value.shape == (x.shape if loss in BINARY else x.shape[:-1]), (loss, label)
    assert np.isfinite(value).all() and np.isfinite(gradient).all(), (loss, label)
    return dict(
        loss=loss,
        label=label,
        logits=floats(logits),
        labels=np.asarray(labels).tolist(),
        value=floats(value),
        grad=floats(gradient),
    )


def away_from_kinks(x: np.ndarray) -> np.ndarray:
    """No logit within 1e-3 of 0 or ±1 (the kinks of the hinge and the perceptron)."""
    near = np.minimum(np.abs(x), np.abs(np.abs(x) - 1)) < 1e-3
    return np.where(near, x + 0.01, x)


def main() -> None:
    rng = np.random.default_rng(1212)
    cases = []
    binary_inputs = [
        ("[8] scale 2", away_from_kinks(2.0 * rng.normal(size=8)), rng.integers(0, 2, size=8)),
        ("[3, 4] scale 1", away_from_kinks(rng.normal(size=(3, 4))), rng.integers(0, 2, size=(3, 4))),
        ("[6] scale 30", away_from_kinks(30.0 * rng.normal(size=6)), rng.integers(0, 2, size=6)),
        ("[] one logit", np.asarray(0.3), np.asarray(1)),
        ("[8] fixed points", np.array([-3.0, -1.5, -0.5, 0.25, 0.75, 1.5, 3.0, -0.25]),
         np.array([1, 0, 1, 0, 1, 0, 1, 1])),
    ]
    for loss, fn in BINARY.items():
        for label, logits, labels in binary_inputs:
            cases.append(case(loss, label, fn, logits, labels))
    base = rng.normal(size=(6, CLASSES))
    indices = rng.integers(0, CLASSES, size=6)
    multiclass_inputs = [
        ("[6, 5] scale 2", 2.0 * base, indices),
        ("[6, 5] scale 30", 30.0 * base, indices),
        ("[5] one example", 2.0 * base[0], indices[0]),
        ("[2, 3, 5] per position, classes last", rng.normal(scale=2.0, size=(2, 3, CLASSES)),
         rng.integers(0, CLASSES, size=(2, 3))),
        ("[4, 3] ties", np.array([[1.0, 1.0, 0.0], [2.0, 2.0, 2.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]),
         np.array([2, 0, 0, 1])),
    ]
    for loss, fn in MULTICLASS.items():
        for label, logits, labels in multiclass_inputs:
            cases.append(case(loss, label, fn, logits, labels))
    document = {
        "source": f"optax {importlib.metadata.version('optax')}, jax {jax.__version__}, float64: "
        "hinge_loss and perceptron_loss with targets 2 * labels - 1, sparsemax_loss, "
        "multiclass_hinge_loss, multiclass_perceptron_loss (classes on the last axis)",
        "cases": cases,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
