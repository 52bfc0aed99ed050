"""Write ``tests/data/bitempered_reference.json`` from the authors' reference implementation.

The reference is the JAX version of google/bi-tempered-loss, published on PyPI as
``jax-bitempered-loss``. It is *not* a dependency of lossfn or of its tests: run this
script in a separate environment, and the tests read only the JSON it writes::

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install jax jaxlib jax-bitempered-loss
    /tmp/refvenv/bin/python scripts/make_bitempered_vectors.py

Everything runs in float64 (``jax_enable_x64``). What is stored:

- ``loss``: ``bi_tempered_logistic_loss`` per-example values and the gradient of their
  sum with respect to the logits (the reference's custom VJP), over temperatures with
  ``t2 > 1``, ``t2 < 1``, ``t2 = 1``, ``t1 = 1``, ``t2 < t1``; with and without label
  smoothing; class-index labels (given to the reference one-hot) and probability
  labels; ``num_iters`` 5 and 30.
- ``binary``: the same for ``bi_tempered_binary_logistic_loss``.
- ``loss_beyond_support``, ``binary_beyond_support``: the same with logits spread so a
  ``t2 < 1`` softmax gives classes with positive target probability exactly 0, at the
  temperatures where the reference's gradient is finite there (``t1 = t2``: ``p - y``;
  ``t2 > t1``: 0).
- ``tempered_softmax``, ``tempered_sigmoid``, ``log_t``, ``exp_t``: values only. (The
  reference differentiates ``tempered_softmax`` by autodiff through the normalization
  steps, which is not its derivative for the bisection; lossfn's gradient is checked
  against finite differences instead.)
- ``published``: the cases of the reference's own test file
  (``jax_bitempered_loss/loss_test.py`` in the package, ``jax/loss_test.py`` in
  google/bi-tempered-loss), with the expected numbers and tolerances written there,
  and the reference's value recomputed here. Two of its tests draw their inputs with
  ``jax.random.PRNGKey(1335)``; those inputs are drawn here the same way and stored.

Known differences of the reference that the tests allow for (all far below 1e-6):
it adds 1e-10 to the labels inside ``log_t`` (lossfn uses ``0 log_t 0 = 0`` exactly);
its bisection computes the upper bracket in float32 even under x64; and its label
smoothing coefficient ``K / (K - 1) * a`` is float32 too (the class count is an int32
array, which JAX divides in float32). Measured: values within 2.5e-8, gradients
within 1.6e-8 (``num_iters=5``) and 1.0e-8 (``num_iters=30``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import pathlib

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.random as random  # noqa: E402
import numpy as np  # noqa: E402
from jax_bitempered_loss import loss as ref  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "bitempered_reference.json"

#: (t1, t2): t2 > 1, t2 < 1, t2 = 1, t1 = 1, t2 < t1, and the plain cross-entropy.
TEMPERATURES = [
    (0.5, 1.5),
    (0.8, 1.2),
    (0.2, 1.1),
    (0.9, 4.0),
    (0.7, 0.8),
    (0.8, 0.6),
    (0.6, 1.0),
    (1.0, 1.5),
    (1.0, 0.8),
    (1.0, 1.0),
]
SMOOTHING = [0.0, 0.15]
ITERATIONS = [5, 30]


def floats(a) -> list:
    return np.asarray(a, dtype=np.float64).tolist()


def loss_and_grad(fn, logits, labels, t1, t2, smoothing, num_iters):
    value = fn(logits, labels, t1, t2, smoothing, num_iters)
    gradient = jax.grad(lambda x: jnp.sum(fn(x, labels, t1, t2, smoothing, num_iters)))(logits)
    return np.asarray(value), np.asarray(gradient)


def finite_in_support(logits: np.ndarray, t2: float) -> np.ndarray:
    """Logits scaled so every class stays in the support of a t2 < 1 softmax.

    Outside it the reference's gradient is NaN (for t2 < t1) and its t1 = 1 loss is
    infinite; lossfn's behaviour there is tested on its own (finite by design).
    """
    if t2 >= 1.0:
        return logits
    spread = logits.max(-1, keepdims=True) - logits.min(-1, keepdims=True)
    return logits * np.minimum(1.0, 0.4 / ((1.0 - t2) * spread))


def multiclass_cases(rng: np.random.Generator) -> list[dict]:
    num_classes = 5
    base = rng.normal(scale=1.5, size=(4, num_classes))
    indices = rng.integers(0, num_classes, size=4)
    probabilities = rng.dirichlet(np.ones(num_classes), size=4)
    probabilities[1, 2] = 0.0  # a class of zero target probability
    probabilities[1] /= probabilities[1].sum()
    cases = []
    for t1, t2 in TEMPERATURES:
        logits = finite_in_support(base, t2)
        for smoothing in SMOOTHING:
            for num_iters in ITERATIONS:
                for kind, labels, dense in (
                    ("indices", indices, np.eye(num_classes)[indices]),
                    ("probabilities", probabilities, probabilities),
                ):
                    value, gradient = loss_and_grad(
                        ref.bi_tempered_logistic_loss,
                        jnp.asarray(logits),
                        jnp.asarray(dense),
                        t1,
                        t2,
                        smoothing,
                        num_iters,
                    )
                    assert np.isfinite(value).all() and np.isfinite(gradient).all(), (t1, t2, kind)
                    cases.append(
                        dict(
                            t1=t1,
                            t2=t2,
                            label_smoothing=smoothing,
                            num_iters=num_iters,
                            labels_kind=kind,
                            logits=floats(logits),
                            labels=labels.tolist() if kind == "indices" else floats(labels),
                            value=floats(value),
                            grad=floats(gradient),
                        )
                    )
    return cases


def binary_cases(rng: np.random.Generator) -> list[dict]:
    base = rng.normal(scale=2.0, size=6)
    hard = rng.integers(0, 2, size=6)
    soft = rng.uniform(size=6)
    cases = []
    for t1, t2 in [(0.5, 1.5), (0.8, 0.6), (0.7, 0.8), (1.0, 1.0), (0.6, 1.0), (1.0, 1.3)]:
        # two classes (0, x): well inside the support of a t2 < 1 softmax
        logits = base if t2 >= 1.0 else base * min(1.0, 0.4 / ((1.0 - t2) * np.abs(base).max()))
        for smoothing in SMOOTHING:
            for num_iters in ITERATIONS:
                for kind, labels in (("hard", hard), ("probabilities", soft)):
                    value, gradient = loss_and_grad(
                        ref.bi_tempered_binary_logistic_loss,
                        jnp.asarray(logits),
                        jnp.asarray(labels, dtype=jnp.float64),
                        t1,
                        t2,
                        smoothing,
                        num_iters,
                    )
                    assert np.isfinite(value).all() and np.isfinite(gradient).all(), (t1, t2, kind)
                    cases.append(
                        dict(
                            t1=t1,
                            t2=t2,
                            label_smoothing=smoothing,
                            num_iters=num_iters,
                            labels_kind=kind,
                            logits=floats(logits),
                            labels=labels.tolist() if kind == "hard" else floats(labels),
                            value=floats(value),
                            grad=floats(gradient),
                        )
                    )
    return cases


#: (t1, t2) with t2 < 1 at which the reference's gradient outside the support is finite:
#: t1 = t2 (its forget factor p^(t2 - t1) is 1 there: p - y) and t2 > t1 (it is 0 there).
BEYOND_SUPPORT = [(0.5, 0.5), (0.8, 0.8), (0.3, 0.3), (0.5, 0.7), (0.3, 0.9)]


def beyond_support_cases(rng: np.random.Generator) -> dict[str, list[dict]]:
    """Logits spread so a t2 < 1 softmax gives some classes probability 0, labels on them.

    Every case is asserted to put target mass on a class of probability 0, so these
    vectors test the gradient the other cases keep away from.
    """
    num_classes = 5
    logits = rng.normal(scale=1.0, size=(4, num_classes))
    logits[:, 0] += 8.0  # class 0 far on top: the lowest classes fall outside the support
    logits[:, 4] -= 8.0
    indices = np.array([4, 0, 3, 4])
    probabilities = rng.dirichlet(np.ones(num_classes), size=4)
    single = np.array([-12.0, -4.0, 0.0, 0.5, 4.0, 12.0])  # two classes (0, x): x far off
    hard = np.array([1, 1, 0, 1, 0, 0])
    soft = rng.uniform(size=single.shape)
    multiclass, binary = [], []
    for t1, t2 in BEYOND_SUPPORT:
        p = np.asarray(ref.tempered_softmax(jnp.asarray(logits), t2, 30))
        assert (p[np.arange(4), indices] == 0).sum() >= 2, (t1, t2)
        for smoothing in SMOOTHING:
            for num_iters in ITERATIONS:
                for kind, labels, dense in (
                    ("indices", indices, np.eye(num_classes)[indices]),
                    ("probabilities", probabilities, probabilities),
                ):
                    value, gradient = loss_and_grad(
                        ref.bi_tempered_logistic_loss, jnp.asarray(logits), jnp.asarray(dense),
                        t1, t2, smoothing, num_iters,
                    )
                    assert np.isfinite(value).all() and np.isfinite(gradient).all(), (t1, t2, kind)
                    multiclass.append(
                        dict(t1=t1, t2=t2, label_smoothing=smoothing, num_iters=num_iters, labels_kind=kind,
                             logits=floats(logits),
                             labels=labels.tolist() if kind == "indices" else floats(labels),
                             value=floats(value), grad=floats(gradient))
                    )
                for kind, labels in (("hard", hard), ("probabilities", soft)):
                    value, gradient = loss_and_grad(
                        ref.bi_tempered_binary_logistic_loss, jnp.asarray(single),
                        jnp.asarray(labels, dtype=jnp.float64), t1, t2, smoothing, num_iters,
                    )
                    assert np.isfinite(value).all() and np.isfinite(gradient).all(), (t1, t2, kind)
                    binary.append(
                        dict(t1=t1, t2=t2, label_smoothing=smoothing, num_iters=num_iters, labels_kind=kind,
                             logits=floats(single),
                             labels=labels.tolist() if kind == "hard" else floats(labels),
                             value=floats(value), grad=floats(gradient))
                    )
    return dict(loss_beyond_support=multiclass, binary_beyond_support=binary)


def activation_cases(rng: np.random.Generator) -> dict[str, list[dict]]:
    logits = rng.normal(scale=2.0, size=(3, 6))
    single = rng.normal(scale=3.0, size=7)
    u_log = np.array([0.0, 1e-3, 0.3, 1.0, 2.5, 40.0])
    u_exp = np.array([-8.0, -1.5, -0.2, 0.0, 0.4, 0.9])
    softmax, sigmoid, log_t, exp_t = [], [], [], []
    for t in [0.3, 0.8, 0.99, 1.0, 1.01, 1.5, 4.0]:
        for num_iters in ITERATIONS:
            softmax.append(
                dict(t=t, num_iters=num_iters, logits=floats(logits),
                     value=floats(ref.tempered_softmax(jnp.asarray(logits), t, num_iters)))
            )
            sigmoid.append(
                dict(t=t, num_iters=num_iters, logits=floats(single),
                     value=floats(ref.tempered_sigmoid(jnp.asarray(single), t, num_iters)))
            )
        log_t.append(dict(t=t, u=floats(u_log), value=floats(ref.log_t(jnp.asarray(u_log), t))))
        # the reference's exp_t is inf past the pole 1/(t-1) for t > 1: keep below it
        u = u_exp if t <= 1.0 else np.minimum(u_exp, 0.5 / (t - 1.0))
        exp_t.append(dict(t=t, u=floats(u), value=floats(ref.exp_t(jnp.asarray(u), t))))
    return dict(tempered_softmax=softmax, tempered_sigmoid=sigmoid, log_t=log_t, exp_t=exp_t)


def published_cases() -> list[dict]:
    """The reference's test file (loss_test.py): inputs, expected numbers, tolerances."""
    activations = [[-0.5, 0.1, 2.0], [0.1, 1.5, -5.0], [4.0, -3.0, -6.0]]
    soft = [[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.2, 0.8, 0.0]]
    one_hot = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    cases = [
        dict(test="test_loss_value", function="bi_tempered_logistic_loss", logits=activations, labels=soft,
             params=dict(t1=0.5, t2=1.5), expected=[0.02301914, 0.18972909, 0.93874922], atol=1e-4),
        dict(test="test_loss_value", function="bi_tempered_logistic_loss", logits=activations, labels=soft,
             params=dict(t1=0.5, t2=0.8, num_iters=20), expected=[0.21646356, 0.41836615, 1.33997854], atol=1e-4),
        dict(test="test_label_smoothing", function="bi_tempered_logistic_loss", logits=activations, labels=one_hot,
             params=dict(t1=0.5, t2=1.5, label_smoothing=0.1), expected=[0.76652711, 0.08627685, 1.35443510],
             atol=1e-5),
        dict(test="test_binary_logistic_loss", function="bi_tempered_binary_logistic_loss", logits=[0.0, 0.0],
             labels=[1.0, 0.0], params=dict(t1=1.0, t2=1.0), expected=[0.69314718, 0.69314718], atol=1e-5),
        dict(test="test_tempered_softmax", function="tempered_softmax", logits=activations, params=dict(t=4.0),
             expected=[[0.3205458, 0.32714278, 0.3523402], [0.3430056, 0.36491093, 0.29220778],
                       [0.41369352, 0.30534995, 0.28299212]], atol=1e-6),
        dict(test="test_tempered_sigmoid", function="tempered_sigmoid", logits=[0.0, 3.0, 6.0], params=dict(t=4.0),
             expected=[0.5, 0.58516014, 0.6421035], atol=1e-6),
    ]
    for t1, t2, expected in [(1.0, 1.0, 0.628705), (0.9, 1.1, 0.45677936), (0.8, 1.2, 0.34298314),
                             (0.7, 1.3, 0.26295574)]:
        cases.append(dict(test="test_dynamic_temperatures", function="bi_tempered_logistic_loss",
                          logits=[[-0.5, 0.1, 2.0]], labels=[[0.2, 0.5, 0.3]], params=dict(t1=t1, t2=t2),
                          expected=[expected], atol=1e-5))
    # test_limit_case_logistic_loss: t1 = t2 = 1 is the logistic loss, on PRNGKey(1335) inputs
    drawn = random.normal(random.PRNGKey(seed=1335), shape=[3, 3])
    cases.append(dict(test="test_limit_case_logistic_loss", function="bi_tempered_logistic_loss",
                      logits=floats(drawn), labels=one_hot, params=dict(t1=1.0, t2=1.0),
                      expected=floats(ref._cross_entropy_loss(drawn, jnp.asarray(one_hot))), atol=1e-7))
    # test_constant_shift: adding a per-example constant to the logits changes nothing
    key, use_key = random.split(random.PRNGKey(seed=1335))
    shift_labels = [[0.2, 0.3, 0.5], [0.4, 0.4, 0.2], [0.7, 0.2, 0.1]]
    drawn = random.normal(use_key, shape=[3, 3])
    bias = random.normal(key, shape=[3, 1])
    for t2 in (0.8, 1.2):
        expected = ref.bi_tempered_logistic_loss(drawn, jnp.asarray(shift_labels), 0.5, t2)
        cases.append(dict(test="test_constant_shift", function="bi_tempered_logistic_loss",
                          logits=floats(drawn + bias), labels=shift_labels, params=dict(t1=0.5, t2=t2),
                          expected=floats(expected), atol=1e-6))
    for case in cases:  # the reference's own number for each, next to the published one
        case["reference"] = floats(_call_reference(case))
    return cases


def _call_reference(case: dict):
    params = dict(case["params"])
    logits = jnp.asarray(case["logits"], dtype=jnp.float64)
    if case["function"] in ("tempered_softmax", "tempered_sigmoid"):
        return getattr(ref, case["function"])(logits, params["t"], params.get("num_iters", 5))
    labels = jnp.asarray(case["labels"], dtype=jnp.float64)
    return getattr(ref, case["function"])(
        logits, labels, params["t1"], params["t2"], params.get("label_smoothing", 0.0), params.get("num_iters", 5)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    rng = np.random.default_rng(20190603)
    document = dict(
        source=dict(
            package="jax-bitempered-loss",
            version=importlib.metadata.version("jax-bitempered-loss"),
            jax=jax.__version__,
            repository="https://github.com/google/bi-tempered-loss",
            paper="https://arxiv.org/abs/1906.03361",
            dtype="float64",
            generator="scripts/make_bitempered_vectors.py",
            gradients="jax.grad of the sum of the per-example losses (the reference's custom VJP)",
        ),
        loss=multiclass_cases(rng),
        binary=binary_cases(rng),
        **activation_cases(rng),
        published=published_cases(),
        # a generator of its own, so the cases above are the same as before they were added
        **beyond_support_cases(np.random.default_rng(20260602)),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {args.out} ({sum(len(v) for v in document.values() if isinstance(v, list))} cases)")


if __name__ == "__main__":
    main()
