"""Write ``tests/data/overlap_optax.json`` from optax's segmentation losses.

optax is *not* a dependency of lossfn or of its tests: run this script in a separate
environment (the one of ``scripts/make_poly_vectors.py`` will do), and the tests read
only the JSON it writes::

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install jax jaxlib optax
    /tmp/refvenv/bin/python scripts/make_overlap_vectors.py

Everything runs in float64 (``jax_enable_x64``). lossfn takes the classes on dimension
1 (``[B, C, d1, ...]``) and integer labels ``[B, d1, ...]``; optax takes the classes last
and one-hot targets, so the script moves the class axis last for optax and moves the
gradients back: the stored logits and gradients are channels-first, as lossfn takes them.

Two groups, each a list of inputs with a list of ``results``, one per setting:

- ``dice_loss``: ``optax.losses.dice_loss(logits, one_hot, alpha=, beta=, smooth=)``
  (its default ``reduction="mean"`` over the classes: one value per example) and the
  gradient of their sum, at five ``(alpha, beta, smooth)``; lossfn's ``tversky`` at
  ``gamma=1``, ``reduction="none"``.
- ``generalized_dice``: ``optax.losses.multiclass_generalized_dice_loss`` called on each
  example alone (``per_example``, with ``grad`` the gradient of their sum) and on the
  whole batch (``batch``, optax's own number, whose class weights come from the whole
  batch), at ``smooth`` None (optax's default, 1), 0 and 2.5. In the inputs marked
  ``every_class`` each example holds every class; in the one marked ``empty_class``
  the last class is absent from example 0 (optax's weight 1/1e-7 there).

Shapes ``[3, 4, 5, 6]``, ``[4, 3, 7]`` and ``[2, 3, 2, 3, 4]`` (channels-first), logits
normal at scale 2, seed 2017.
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

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "overlap_optax.json"


def floats(a) -> list:
    return np.asarray(a, dtype=np.float64).tolist()


def last(x):
    """Channels-first ``[B, C, ...]`` to optax's channels-last ``[B, ..., C]``."""
    return jnp.moveaxis(jnp.asarray(x), 1, -1)


def one_hot(labels: np.ndarray, classes: int):
    return jnp.asarray(np.eye(classes)[labels])


def inputs(rng, shape, *, every_class=False, absent=False):
    """Logits ``[B, C, *spatial]`` (normal, scale 2) and labels ``[B, *spatial]``."""
    batch, classes, *spatial = shape
    logits = 2.0 * rng.normal(size=shape)
    labels = rng.integers(0, classes, size=(batch, *spatial))
    flat = labels.reshape(batch, -1)
    if every_class:
        flat[:, :classes] = np.arange(classes)
    if absent:
        flat[0] = flat[0] % (classes - 1)  # the last class is absent from example 0
    return logits, flat.reshape(labels.shape)


def dice_case(label, logits, labels, settings) -> dict:
    """One input, optax's per-example values and gradients at each ``(alpha, beta, smooth)``."""
    classes = logits.shape[1]
    targets = one_hot(labels, classes)
    x = jnp.asarray(logits)
    results = []
    for alpha, beta, smooth in settings:

        def per_example(v, alpha=alpha, beta=beta, smooth=smooth):
            return optax.losses.dice_loss(last(v), targets, alpha=alpha, beta=beta, smooth=smooth)

        value = per_example(x)
        gradient = jax.grad(lambda v: jnp.sum(per_example(v)))(x)
        assert value.shape == (logits.shape[0],) and np.isfinite(value).all() and np.isfinite(gradient).all()
        results.append(dict(alpha=alpha, beta=beta, smooth=smooth, value=floats(value), grad=floats(gradient)))
    return dict(label=label, logits=floats(logits), labels=np.asarray(labels).tolist(), results=results)


def generalized_case(label, logits, labels, smooths, **flags) -> dict:
    """One input; at each smooth (None: optax's default) optax on each example alone and on the batch."""
    classes = logits.shape[1]
    targets = one_hot(labels, classes)
    x = jnp.asarray(logits)
    results = []
    for smooth in smooths:
        kwargs = {} if smooth is None else {"smooth": smooth}

        def one(v, n, kwargs=kwargs):
            return optax.losses.multiclass_generalized_dice_loss(last(v[n : n + 1]), targets[n : n + 1], **kwargs)

        per_example = jnp.stack([one(x, n) for n in range(x.shape[0])])
        gradient = jax.grad(lambda v: sum(one(v, n) for n in range(v.shape[0])))(x)
        batch = optax.losses.multiclass_generalized_dice_loss(last(x), targets, **kwargs)
        assert np.isfinite(per_example).all() and np.isfinite(gradient).all() and np.isfinite(batch)
        results.append(dict(smooth=smooth, per_example=floats(per_example), grad=floats(gradient), batch=float(batch)))
    return dict(label=label, **flags, logits=floats(logits), labels=np.asarray(labels).tolist(), results=results)


def main() -> None:
    rng = np.random.default_rng(2017)
    settings = [(0.5, 0.5, 1.0), (0.3, 0.7, 1.0), (0.7, 0.3, 0.0), (1.0, 1.0, 2.5), (0.5, 0.5, 0.0)]
    shapes = [(3, 4, 5, 6), (4, 3, 7), (2, 3, 2, 3, 4)]
    dice = [dice_case(str(list(shape)), *inputs(rng, shape), settings) for shape in shapes]
    generalized = [
        generalized_case(f"{list(shape)} every class", *inputs(rng, shape, every_class=True), [None, 0.0, 2.5],
                         every_class=True, empty_class=False)
        for shape in shapes
    ]
    logits, labels = inputs(rng, (3, 4, 5, 6), every_class=True, absent=True)
    generalized.append(
        generalized_case("[3, 4, 5, 6], class 3 absent from example 0", logits, labels, [None, 0.0],
                         every_class=False, empty_class=True)
    )
    document = {
        "source": f"optax {importlib.metadata.version('optax')}, jax {jax.__version__}, float64: "
        "optax.losses.dice_loss and optax.losses.multiclass_generalized_dice_loss on one_hot(labels), "
        "classes moved last; logits and gradients stored channels-first",
        "dice_loss": dice,
        "generalized_dice": generalized,
    }
    OUT.write_text(json.dumps(document) + "\n")
    print(f"wrote {len(dice)} dice_loss and {len(generalized)} generalized_dice inputs to {OUT}")


if __name__ == "__main__":
    main()
