"""Write ``tests/data/pairs_optax.json`` from optax's cosine distance, triplet margin and ranking softmax losses.

optax is *not* a dependency of lossfn or of its tests: run this script in a separate
environment (jax 0.10.2 and optax 0.2.8 made the stored file), and the tests read
only the JSON it writes::

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install jax jaxlib optax
    /tmp/refvenv/bin/python scripts/make_pairs_vectors.py

Everything runs in float64 (``jax_enable_x64``). Stored per case: the inputs, the
hyperparameters, optax's unreduced values and the gradients (``jax.grad``) of a
reduced value with respect to every floating-point input:

- ``cosine_distance``: ``optax.losses.cosine_distance(predictions, targets, epsilon=...)``,
  per vector, and the gradient of its sum; some rows are short (norm below 1) so the
  ``epsilon`` floor is active.
- ``triplet_margin``: ``optax.losses.triplet_margin_loss`` with ``eps=0`` and even
  ``norm_degree`` (where optax's distance, ``(Σ (a - b)^p + eps)^(1/p)``, is torch's
  ``||a - b + eps||_p``), per triplet, and the gradient of its sum.
- ``ranking_softmax``: ``optax.losses.ranking_softmax_loss`` with ``reduce_fn=None``
  (per list), ``jnp.mean`` and ``jnp.sum``, with and without ``where``, and the
  gradients of the mean with respect to the scores and the labels.
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

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "pairs_optax.json"
RNG = np.random.default_rng(12)


def floats(a) -> list:
    return np.asarray(a, dtype=np.float64).tolist()


def finite(label: str, *arrays) -> None:
    for a in arrays:
        assert np.isfinite(np.asarray(a)).all(), label


def cosine_case(label: str, shape: tuple[int, ...], epsilon: float | None, short: bool = False) -> dict:
    x, y = RNG.normal(size=shape), RNG.normal(size=shape)
    if short:  # rows of norm below 1: the epsilon floor of the squared norm is active
        x = x * RNG.uniform(0.05, 0.6, size=shape[:-1] + (1,))
    kwargs = {} if epsilon is None else {"epsilon": epsilon}

    def loss(p, t):
        return optax.losses.cosine_distance(p, t, **kwargs)

    value = loss(jnp.asarray(x), jnp.asarray(y))
    grad_x, grad_y = jax.grad(lambda p, t: jnp.sum(loss(p, t)), argnums=(0, 1))(jnp.asarray(x), jnp.asarray(y))
    finite(label, value, grad_x, grad_y)
    return dict(label=label, epsilon=epsilon, logits=floats(x), labels=floats(y), value=floats(value),
                grad_logits=floats(grad_x), grad_labels=floats(grad_y))


def triplet_case(label: str, shape: tuple[int, ...], degree: int, margin: float) -> dict:
    a, p, n = (RNG.normal(size=shape) for _ in range(3))

    def loss(a, p, n):
        return optax.losses.triplet_margin_loss(a, p, n, norm_degree=degree, margin=margin, eps=0.0)

    args = tuple(jnp.asarray(v) for v in (a, p, n))
    value = loss(*args)
    grads = jax.grad(lambda *v: jnp.sum(loss(*v)), argnums=(0, 1, 2))(*args)
    finite(label, value, *grads)
    return dict(label=label, p=float(degree), margin=margin, anchor=floats(a), positive=floats(p), negative=floats(n),
                value=floats(value), grad_anchor=floats(grads[0]), grad_positive=floats(grads[1]),
                grad_negative=floats(grads[2]))


def ranking_case(label: str, shape: tuple[int, ...], graded: bool, masked: bool) -> dict:
    scores = RNG.normal(size=shape) * 2
    labels = RNG.integers(0, 4, size=shape).astype(np.float64) if graded else RNG.uniform(0, 1, size=shape)
    labels = labels * (RNG.uniform(size=shape) < 0.7)  # some items irrelevant
    where = None
    if masked:
        where = RNG.uniform(size=shape) < 0.75
        if len(shape) > 1:
            where[(1,) * (len(shape) - 1)] = False  # one list with nothing kept
    kwargs = {} if where is None else {"where": jnp.asarray(where)}

    def loss(s, y, reduce_fn):
        return optax.losses.ranking_softmax_loss(s, y, reduce_fn=reduce_fn, **kwargs)

    s, y = jnp.asarray(scores), jnp.asarray(labels)
    none, mean, total = loss(s, y, None), loss(s, y, jnp.mean), loss(s, y, jnp.sum)
    grad_s, grad_y = jax.grad(lambda s, y: loss(s, y, jnp.mean), argnums=(0, 1))(s, y)
    finite(label, none, mean, total, grad_s, grad_y)
    return dict(label=label, logits=floats(scores), labels=floats(labels),
                where=None if where is None else np.asarray(where).tolist(),
                none=floats(none), mean=float(mean), sum=float(total),
                grad_logits=floats(grad_s), grad_labels=floats(grad_y))


def main() -> None:
    cosine = [
        cosine_case("[6, 5] default epsilon", (6, 5), None),
        cosine_case("[6, 5] epsilon 0.5, short rows", (6, 5), 0.5, short=True),
        cosine_case("[6, 5] epsilon 0.1, short rows", (6, 5), 0.1, short=True),
        cosine_case("[8, 3] epsilon 0", (8, 3), 0.0),
        cosine_case("[5] one vector", (5,), None),
        cosine_case("[2, 3, 4] leading dimensions, epsilon 0.2", (2, 3, 4), 0.2, short=True),
    ]
    triplet = [
        triplet_case("[8, 5] p 2 margin 1", (8, 5), 2, 1.0),
        triplet_case("[8, 5] p 2 margin 0.3", (8, 5), 2, 0.3),
        triplet_case("[8, 4] p 4 margin 1", (8, 4), 4, 1.0),
        triplet_case("[6] one triplet p 2", (6,), 2, 2.0),
    ]
    ranking = [
        ranking_case("[4, 6] graded", (4, 6), graded=True, masked=False),
        ranking_case("[5, 7] graded, where", (5, 7), graded=True, masked=True),
        ranking_case("[4, 6] fractional, where", (4, 6), graded=False, masked=True),
        ranking_case("[6] one list", (6,), graded=True, masked=False),
        ranking_case("[2, 3, 5] leading dimensions, where", (2, 3, 5), graded=True, masked=True),
    ]
    document = {
        "source": f"optax {importlib.metadata.version('optax')}, jax {jax.__version__}, float64",
        "script": "scripts/make_pairs_vectors.py",
        "cosine_distance": cosine,
        "triplet_margin": triplet,
        "ranking_softmax": ranking,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {OUT} ({len(cosine) + len(triplet) + len(ranking)} cases)")


if __name__ == "__main__":
    main()
