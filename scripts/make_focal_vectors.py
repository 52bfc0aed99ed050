"""Write ``tests/data/focal_optax.json`` from ``optax.losses.sigmoid_focal_loss``.

optax is *not* a dependency of lossfn or of its tests: run this script in a separate
environment, and the tests read only the JSON it writes::

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install jax jaxlib optax
    /tmp/refvenv/bin/python scripts/make_focal_vectors.py

Everything runs in float64 (``jax_enable_x64``). These vectors check ``focal`` on a
``set`` output: ``[B, C]`` logits, one independent sigmoid per class, with ``[B, C]``
multi-hot (0/1) or probability labels. optax's conventions, as stored: ``alpha`` is
``null`` for a call that leaves optax's default ``alpha=None`` in place (no weighting:
every element weight 1, which is twice lossfn's ``alpha=0.5``); a given ``alpha``
weights positives by ``alpha`` and negatives by ``1 - alpha``, as lossfn does.
``gamma`` is ``null`` for optax's default, 2.0. For each case: the logits, the labels,
``alpha``, ``gamma``, the elementwise values ``[B, C]``, the gradient of their sum with
respect to the logits (``jax.grad``), and for the probability-label cases the gradient
with respect to the labels too (at labels exactly 0 or 1 that one is not the
derivative: ``jax.scipy.special.logsumexp`` drops the terms whose ``b`` is 0, and their
derivatives with them; the tests compare it only at labels inside (0, 1)). The cases:
``[6, 4]`` multi-hot at scale 2; ``[6, 4]`` multi-hot with logits ±30 (confident, right
and wrong), ±8 and 0; ``[5, 3]`` probability labels with some exactly 0 and 1;
``[2, 3, 4]`` multi-hot.
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

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "focal_optax.json"
#: (alpha, gamma); None leaves optax's default in place (alpha: no weighting; gamma: 2)
SETTINGS = [(None, None), (0.25, None), (0.25, 2.0), (0.6, 0.5), (1.0, 0.0), (0.0, 1.5), (None, 3.0), (0.9, 1e-3)]


def floats(a) -> list:
    return np.asarray(a, dtype=np.float64).tolist()


def case(label: str, logits: np.ndarray, labels: np.ndarray, alpha, gamma, *, label_grad: bool = False) -> dict:
    kwargs = {}
    if alpha is not None:
        kwargs["alpha"] = alpha
    if gamma is not None:
        kwargs["gamma"] = gamma

    def elementwise(x, y):
        return optax.losses.sigmoid_focal_loss(x, y, **kwargs)

    x, y = jnp.asarray(logits), jnp.asarray(labels, dtype=jnp.float64)
    value = elementwise(x, y)
    by_logits, by_labels = jax.grad(lambda u, v: jnp.sum(elementwise(u, v)), argnums=(0, 1))(x, y)
    assert np.isfinite(value).all() and np.isfinite(by_logits).all(), label
    entry = dict(
        label=label,
        alpha=alpha,
        gamma=gamma,
        logits=floats(logits),
        labels=floats(labels),
        value=floats(value),
        grad=floats(by_logits),
    )
    if label_grad:
        assert np.isfinite(by_labels).all(), label
        entry["label_grad"] = floats(by_labels)
    return entry


def main() -> None:
    rng = np.random.default_rng(1708)
    base = 2.0 * rng.normal(size=(6, 4))
    multi_hot = rng.integers(0, 2, size=(6, 4))
    # confident right (+30 on a 1, -30 on a 0) and confident wrong (the reverse), ±8, and 0 on either label
    extreme = np.array(
        [[30.0, -30.0, 30.0, -30.0], [-30.0, 30.0, 8.0, -8.0], [0.0, 0.0, 30.0, -30.0],
         [8.0, -8.0, 0.5, -0.5], [30.0, 30.0, -30.0, -30.0], [-2.0, 3.0, 0.0, 30.0]]
    )
    extreme_labels = np.array([[1, 0, 0, 1], [1, 0, 1, 0], [1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0], [0, 1, 1, 0]])
    soft_logits = 2.0 * rng.normal(size=(5, 3))
    soft_logits[0] = [30.0, -30.0, 0.0]
    soft = rng.uniform(size=(5, 3))
    soft[0] = [1.0, 0.0, 1.0]
    soft[1, 0], soft[2, 2] = 0.0, 1.0
    rank3 = 2.0 * rng.normal(size=(2, 3, 4))
    rank3_labels = rng.integers(0, 2, size=(2, 3, 4))
    cases = []
    for alpha, gamma in SETTINGS:
        cases.append(case("[6, 4] multi-hot scale 2", base, multi_hot, alpha, gamma))
        cases.append(case("[6, 4] multi-hot, logits ±30, ±8, 0", extreme, extreme_labels, alpha, gamma))
    for alpha, gamma in [(None, None), (0.25, 2.0), (0.6, 0.5), (0.3, 3.0)]:
        cases.append(case("[5, 3] probability labels, some exactly 0 and 1", soft_logits, soft, alpha, gamma,
                          label_grad=True))
    cases.append(case("[2, 3, 4] multi-hot", rank3, rank3_labels, 0.4, 2.5))
    document = {
        "source": f"optax {importlib.metadata.version('optax')}, jax {jax.__version__}: "
        "optax.losses.sigmoid_focal_loss(logits, labels, alpha=..., gamma=...) in float64",
        "cases": cases,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
