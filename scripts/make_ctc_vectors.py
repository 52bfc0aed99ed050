"""Write ``tests/data/ctc_optax.json`` from ``optax.losses.ctc_loss``.

optax is *not* a dependency of lossfn or of its tests: run this script in a separate
environment (jax and optax installed), and the tests read only the JSON it writes::

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install jax jaxlib optax
    /tmp/refvenv/bin/python scripts/make_ctc_vectors.py

Everything runs in float64 (``jax_enable_x64``). optax takes batch-first logits
``[B, T, K]`` (log-softmax inside, as lossfn), ``logit_paddings`` ``[B, T]`` (1.0 on a
frame past the input's length), ``labels`` ``[B, N]`` and ``label_paddings`` ``[B, N]``
(1.0 past the label's length, right-padded), and returns the per-sequence loss. What
is stored, for each case: the logits, the labels (padded with 0), the lengths the
paddings encode, ``blank_id``, the per-sequence values and the gradient of their sum
with respect to the logits (``jax.grad``). Only alignments that exist are stored:
optax gives an impossible one a finite loss near ``-log_epsilon = 1e5``, where lossfn
and torch give ``inf``. The cases: small random batches (label lengths 0 to S, some
inputs shorter than T, a repeat-heavy one), blank 0 and blank K - 1, confident logits
(scale 10), ``[2, 50, 20]`` with labels of up to 10, and optax issue 1771's confident
two-frame example, whose true loss is :math:`-\\log(1 - p^2) \\approx 1.7 \\cdot 10^{-15}`.
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

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "ctc_optax.json"


def floats(a) -> list:
    return np.asarray(a, dtype=np.float64).tolist()


def case(label: str, logits, labels, input_lengths, label_lengths, blank: int) -> dict:
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    batch, steps, _ = logits.shape
    logit_paddings = (np.arange(steps)[None, :] >= np.asarray(input_lengths)[:, None]).astype(np.float64)
    label_paddings = (np.arange(labels.shape[1])[None, :] >= np.asarray(label_lengths)[:, None]).astype(np.float64)
    labels = np.where(label_paddings > 0, 0, labels)  # what optax gets past a label's length

    def per_sequence(x):
        return optax.losses.ctc_loss(x, logit_paddings, labels, label_paddings, blank_id=blank)

    value = per_sequence(jnp.asarray(logits))
    gradient = jax.grad(lambda v: jnp.sum(per_sequence(v)))(jnp.asarray(logits))
    assert np.isfinite(value).all() and (np.asarray(value) < 1e4).all() and np.isfinite(gradient).all(), label
    return dict(
        label=label,
        blank=blank,
        logits=floats(logits),
        labels=labels.tolist(),
        input_lengths=[int(n) for n in input_lengths],
        label_lengths=[int(n) for n in label_lengths],
        value=floats(value),
        grad=floats(gradient),
    )


def fitting(rng, batch, steps, classes, width, *, low, high):
    """Random labels in ``[low, high]``, lengths 0..width, input lengths that fit them."""
    labels = rng.integers(low, high + 1, size=(batch, width))
    label_lengths = rng.integers(0, width + 1, size=batch)
    label_lengths[0] = width  # one full row
    within = np.arange(width)[None, :] < label_lengths[:, None]
    repeats = ((labels[:, 1:] == labels[:, :-1]) & within[:, 1:]).sum(1)
    fewest = label_lengths + repeats
    input_lengths = np.array([rng.integers(f, steps + 1) for f in fewest])
    input_lengths[-1] = steps
    return labels, input_lengths, label_lengths


def main() -> None:
    rng = np.random.default_rng(1771)
    cases = []
    for blank in (0, 4):
        labels, inputs, lengths = fitting(rng, 6, 8, 5, 3, low=1, high=3)
        cases.append(case(f"[6, 8, 5] scale 2, blank={blank}", 2.0 * rng.normal(size=(6, 8, 5)),
                          labels, inputs, lengths, blank))
    labels, inputs, lengths = fitting(rng, 4, 12, 4, 5, low=1, high=2)
    cases.append(case("[4, 12, 4] repeats", 2.0 * rng.normal(size=(4, 12, 4)), labels, inputs, lengths, 0))
    labels, inputs, lengths = fitting(rng, 5, 8, 5, 3, low=1, high=4)
    cases.append(case("[5, 8, 5] scale 10 (confident, some wrong)", 10.0 * rng.normal(size=(5, 8, 5)),
                      labels, inputs, lengths, 0))
    labels, inputs, lengths = fitting(rng, 2, 50, 20, 10, low=0, high=18)
    cases.append(case("[2, 50, 20] S=10, blank=19", 2.0 * rng.normal(size=(2, 50, 20)), labels, inputs, lengths, 19))
    cases.append(case("optax issue 1771: two confident frames", [[[0.0, 17.0], [0.0, 17.0]]], [[1]], [2], [1], 0))
    document = {
        "source": f"optax {importlib.metadata.version('optax')}, jax {jax.__version__}: "
        "optax.losses.ctc_loss(logits, logit_paddings, labels, label_paddings, blank_id=...) in float64",
        "cases": cases,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {OUT} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
