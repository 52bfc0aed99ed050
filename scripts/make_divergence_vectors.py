"""Write ``tests/data/divergence_optax.json`` from ``optax.losses.kl_divergence`` and
``optax.losses.kl_divergence_with_log_targets``.

optax is *not* a dependency of lossfn or of its tests: run this script in a separate
environment (the one of ``scripts/make_poly_vectors.py`` will do), and the tests read
only the JSON it writes::

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install jax jaxlib optax
    /tmp/refvenv/bin/python scripts/make_divergence_vectors.py

Everything runs in float64 (``jax_enable_x64``). optax takes log-predictions, so it is
given ``jax.nn.log_softmax(logits)`` over the last axis; its per-example values are
``"none"`` of ``lossfn.functional.kl_divergence`` (whose classes are on dimension 1: the
per-position case is stored classes last, as optax takes it, and the test moves them).
What is stored, for each case: the function, the logits, the targets (probabilities, or
log-probabilities for ``kl_divergence_with_log_targets``), the per-example values, the
gradient of their sum with respect to the logits, and with respect to the targets where
it is finite. Where a target probability is 0, optax's gradient with respect to it is
NaN (the ``jnp.where`` around ``jnp.log``: optax PR 1786): the script records that as
``optax_target_grad_nan_at_zeros`` (JSON holds no NaN) and stores no target gradient.
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

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "divergence_optax.json"
FUNCTIONS = {
    "kl_divergence": optax.losses.kl_divergence,
    "kl_divergence_with_log_targets": optax.losses.kl_divergence_with_log_targets,
}


def floats(a) -> list:
    return np.asarray(a, dtype=np.float64).tolist()


def case(label: str, function: str, logits: np.ndarray, targets: np.ndarray) -> dict:
    fn = FUNCTIONS[function]

    def total(x, y):
        return jnp.sum(fn(jax.nn.log_softmax(x, axis=-1), y))

    x, y = jnp.asarray(logits), jnp.asarray(targets)
    value = fn(jax.nn.log_softmax(x, axis=-1), y)
    grad_logits, grad_targets = jax.grad(total, argnums=(0, 1))(x, y)
    assert np.isfinite(value).all() and np.isfinite(grad_logits).all(), label
    nan_at_zeros = bool(np.isnan(grad_targets).any())
    if nan_at_zeros:
        zeros = np.asarray(targets) == 0
        assert zeros.any() and np.isnan(np.asarray(grad_targets)[zeros]).all(), label
    return dict(
        label=label,
        function=function,
        logits=floats(logits),
        targets=floats(targets),
        value=floats(value),
        grad_logits=floats(grad_logits),
        grad_targets=None if nan_at_zeros else floats(grad_targets),
        optax_target_grad_nan_at_zeros=nan_at_zeros,
    )


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def main() -> None:
    rng = np.random.default_rng(1951)
    base = rng.normal(size=(6, 5))
    targets = softmax(2.0 * rng.normal(size=(6, 5)))
    with_zeros = targets.copy()
    with_zeros[np.arange(6), rng.integers(0, 5, size=6)] = 0.0
    with_zeros[0] = [0.0, 0.0, 1.0, 0.0, 0.0]  # one-hot
    with_zeros /= with_zeros.sum(-1, keepdims=True)
    per_position = rng.normal(scale=2.0, size=(2, 3, 5))
    per_position_targets = softmax(rng.normal(size=(2, 3, 5)))
    log_targets = np.log(softmax(2.0 * rng.normal(size=(6, 5))))
    cases = [
        case("[6, 5] scale 2", "kl_divergence", 2.0 * base, targets),
        case("[6, 5] scale 30", "kl_divergence", 30.0 * base, targets),
        case("[6, 5] targets with zeros", "kl_divergence", 2.0 * base, with_zeros),
        case("[5] one example", "kl_divergence", 2.0 * base[1], targets[1]),
        case("[2, 3, 5] per position, classes last", "kl_divergence", per_position, per_position_targets),
        case("[6, 5] log targets", "kl_divergence_with_log_targets", 2.0 * base, log_targets),
        case("[6, 5] log targets scale 30", "kl_divergence_with_log_targets", 30.0 * base, log_targets),
        case("[5] one example, log targets", "kl_divergence_with_log_targets", 2.0 * base[2], log_targets[2]),
    ]
    document = {
        "source": f"optax {importlib.metadata.version('optax')}, jax {jax.__version__}: "
        "optax.losses.kl_divergence(jax.nn.log_softmax(logits), targets) and "
        "kl_divergence_with_log_targets(jax.nn.log_softmax(logits), log_targets) in float64",
        "cases": cases,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
