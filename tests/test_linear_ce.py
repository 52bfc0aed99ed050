"""``linear_cross_entropy`` against the naive form, and its module and head.

The reference is ``tests/cases/linear_ce.py::naive``: every logit made, then
``F.cross_entropy`` on them (the soft cap ``c·tanh(x / c)`` written on the logits,
PaLM's z-loss ``λ·logsumexp²`` added per kept token), differentiated by autograd.
Values and the gradients with respect to ``hidden``, ``weight`` and ``bias`` are
compared in float64 (1e-10 relative) and float32 (1e-5), for every reduction,
option, layout and several chunk sizes (each of the routes: the fused kernel, the
recomputing Function, the no-gradient pass); then the transforms torch's chunked
path lacks (``torch.func.grad``, ``vmap``, ``jacfwd``, ``hessian``,
``torch.compile``), tensor hyperparameters, errors, the module and the head.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, hessian, jacfwd, jacrev, vmap

import lossfn
import lossfn.functional as LF
from lossfn.nn._heads import LinearCrossEntropyHead

from cases.linear_ce import naive

WIDTH, VOCABULARY = 8, 50
OPTIONS = [
    {},
    {"label_smoothing": 0.2},
    {"z_loss": 0.05},
    {"softcap": 2.5},
    {"ignore_index": 3, "label_smoothing": 0.1, "z_loss": 0.01, "softcap": 4.0},
]
LAYOUTS = ["[N, H]", "[B, T, H]", "[B, T, H] shift", "[T, H] shift"]


def problem(layout="[N, H]", dtype=torch.float64, seed=0, bias=True, ignore_index=-100):
    """About 20 tokens of hidden states, a [50, 8] weight, labels with two ignored, a bias."""
    g = torch.Generator().manual_seed(seed)
    lead = {"[N, H]": (20,), "[T, H] shift": (21,)}.get(layout, (3, 7))
    hidden = torch.randn(*lead, WIDTH, generator=g, dtype=dtype)
    weight = torch.randn(VOCABULARY, WIDTH, generator=g, dtype=dtype)
    labels = torch.randint(0, VOCABULARY, lead, generator=g)
    flat = labels.view(-1)
    flat[1] = flat[5] = ignore_index
    b = torch.randn(VOCABULARY, generator=g, dtype=dtype) if bias else None
    return hidden, weight, labels, b, {"shift": layout.endswith("shift")}


def value_and_grads(fn, hidden, weight, labels, bias, upstream=None):
    leaves = [x.clone().requires_grad_() for x in (hidden, weight) + ((bias,) if bias is not None else ())]
    out = fn(*leaves[:2], labels, leaves[2] if bias is not None else None)
    total = out.sum() if upstream is None else (out * upstream).sum()
    return out.detach(), torch.autograd.grad(total, leaves)


def assert_close(actual, expected, rtol):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * max(1.0, expected.abs().max().item()) * 1e-2)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "defaults")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_value_and_gradients_equal_the_naive_form(options, layout, reduction, chunk_size):
    hidden, weight, labels, bias, shape_options = problem(layout, ignore_index=options.get("ignore_index", -100))
    params = {**options, **shape_options, "reduction": reduction}
    reference = lambda h, w, y, b: naive(h, w, y, b, **params)  # noqa: E731
    expected, expected_grads = value_and_grads(reference, hidden, weight, labels, bias)
    upstream = None
    if reduction == "none":  # a non-uniform upstream gradient per token
        upstream = torch.rand(expected.shape, generator=torch.Generator().manual_seed(1), dtype=hidden.dtype)
        expected, expected_grads = value_and_grads(reference, hidden, weight, labels, bias, upstream)
    fn = lambda h, w, y, b: LF.linear_cross_entropy(h, w, y, b, **params, chunk_size=chunk_size)  # noqa: E731
    actual, grads = value_and_grads(fn, hidden, weight, labels, bias, upstream)
    assert actual.shape == expected.shape and actual.dtype == hidden.dtype
    assert_close(actual, expected, 1e-10)
    for got, want in zip(grads, expected_grads):
        assert_close(got, want, 1e-10)
    with torch.no_grad():  # the pass without gradients
        assert_close(fn(hidden, weight, labels, bias), expected, 1e-10)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_float32_within_1e_5(reduction):
    hidden, weight, labels, bias, _ = problem(dtype=torch.float32)
    params = {"label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 5.0, "reduction": reduction}
    upstream = None if reduction != "none" else torch.rand(20, generator=torch.Generator().manual_seed(2))
    expected, expected_grads = value_and_grads(lambda *x: naive(*x, **params), hidden, weight, labels, bias, upstream)
    fn = lambda *x: LF.linear_cross_entropy(*x, **params, chunk_size=6)  # noqa: E731
    actual, grads = value_and_grads(fn, hidden, weight, labels, bias, upstream)
    assert_close(actual, expected, 1e-5)
    for got, want in zip(grads, expected_grads):
        assert_close(got, want, 1e-5)


def test_the_chunk_size_changes_nothing_but_the_rounding():
    hidden, weight, labels, bias, _ = problem()
    values = [
        LF.linear_cross_entropy(hidden, weight, labels, bias, chunk_size=c, reduction="none") for c in (1, 7, 20, 99)
    ]
    for other in values[1:]:
        torch.testing.assert_close(other, values[0], rtol=1e-13, atol=1e-13)


def test_only_the_inputs_that_need_a_gradient_get_one():
    hidden, weight, labels, bias, _ = problem()
    frozen = weight.clone().requires_grad_(False)
    leaf = hidden.clone().requires_grad_()
    LF.linear_cross_entropy(leaf, frozen, labels, bias).backward()
    expected = leaf.detach().clone().requires_grad_()
    naive(expected, weight, labels, bias).backward()
    assert frozen.grad is None and bias.grad is None
    torch.testing.assert_close(leaf.grad, expected.grad, rtol=1e-12, atol=1e-14)


def test_a_second_backward_and_create_graph_recompute():
    """The stored gradients are handed over once; retain_graph and create_graph recompute."""
    hidden, weight, labels, bias, _ = problem()
    leaf = hidden.clone().requires_grad_()
    loss = LF.linear_cross_entropy(leaf, weight, labels, bias, z_loss=0.1, softcap=3.0, chunk_size=6)
    first = torch.autograd.grad(loss, leaf, retain_graph=True)[0]
    second = torch.autograd.grad(loss, leaf)[0]
    torch.testing.assert_close(second, first, rtol=1e-13, atol=1e-15)
    fn = lambda x: LF.linear_cross_entropy(x, weight, labels, bias, z_loss=0.1, softcap=3.0, chunk_size=6)  # noqa: E731
    ref = lambda x: naive(x, weight, labels, bias, z_loss=0.1, softcap=3.0)  # noqa: E731
    vector = torch.randn(hidden.shape, generator=torch.Generator().manual_seed(3), dtype=hidden.dtype)
    hvp = torch.autograd.functional.hvp(fn, hidden, vector)[1]
    torch.testing.assert_close(hvp, torch.autograd.functional.hvp(ref, hidden, vector)[1], rtol=1e-10, atol=1e-12)


# -- transforms -------------------------------------------------------------------------------


PARAMS = {"label_smoothing": 0.1, "z_loss": 0.02, "softcap": 3.0, "chunk_size": 6}
REF = {k: v for k, v in PARAMS.items() if k != "chunk_size"}


def test_torch_func_grad_with_respect_to_hidden_weight_and_bias():
    hidden, weight, labels, bias, _ = problem()
    fn = lambda h, w, b: LF.linear_cross_entropy(h, w, labels, b, **PARAMS)  # noqa: E731
    got = grad(fn, argnums=(0, 1, 2))(hidden, weight, bias)
    expected = grad(lambda h, w, b: naive(h, w, labels, b, **REF), argnums=(0, 1, 2))(hidden, weight, bias)
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_vmap_over_independent_problems_and_per_problem_gradients():
    problems = [problem("[B, T, H]", seed=s) for s in range(3)]
    hidden, weight, labels, bias = (torch.stack([p[i] for p in problems]) for i in range(4))
    for reduction in ("mean", "none"):
        params = {**PARAMS, "shift": True, "reduction": reduction}
        fn = lambda h, w, y, b: LF.linear_cross_entropy(h, w, y, b, **params)  # noqa: E731
        expected = torch.stack([naive(*p[:4], **REF, shift=True, reduction=reduction) for p in problems])
        torch.testing.assert_close(vmap(fn)(hidden, weight, labels, bias), expected, rtol=1e-10, atol=1e-12)
    fn = lambda h, w, y, b: LF.linear_cross_entropy(h, w, y, b, **PARAMS)  # noqa: E731
    got = vmap(grad(fn, argnums=(0, 1)))(hidden, weight, labels, bias)
    for i, p in enumerate(problems):
        expected = grad(lambda h, w: naive(h, w, p[2], p[3], **REF), argnums=(0, 1))(p[0], p[1])
        for a, e in zip(got, expected):
            torch.testing.assert_close(a[i], e, rtol=1e-10, atol=1e-12)


def test_per_token_gradients_with_the_weight_shared():
    hidden, weight, labels, bias, _ = problem()
    one = lambda h, y: LF.linear_cross_entropy(h, weight, y, bias, **PARAMS)  # noqa: E731: one token [H], labels []
    got = vmap(grad(one))(hidden, labels)
    for i in (0, 1, 7):
        expected = grad(lambda h: naive(h[None], weight, labels[i : i + 1], bias, **REF))(hidden[i])
        torch.testing.assert_close(got[i], expected, rtol=1e-10, atol=1e-12)
    assert torch.all(got[1] == 0)  # label -100


def test_forward_mode_and_hessian():
    hidden, weight, labels, bias, _ = problem()
    hidden, labels = hidden[:4], labels[:4]
    fn = lambda h: LF.linear_cross_entropy(h, weight, labels, bias, **PARAMS, reduction="none")  # noqa: E731
    ref = lambda h: naive(h, weight, labels, bias, **REF, reduction="none")  # noqa: E731
    expected = jacrev(ref)(hidden)
    torch.testing.assert_close(jacfwd(fn)(hidden), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(jacrev(fn)(hidden), expected, rtol=1e-10, atol=1e-12)
    by_weight = jacfwd(lambda w: LF.linear_cross_entropy(hidden, w, labels, bias, **PARAMS))(weight)
    expected = jacrev(lambda w: naive(hidden, w, labels, bias, **REF))(weight)
    torch.testing.assert_close(by_weight, expected, rtol=1e-10, atol=1e-12)
    mean = lambda h: LF.linear_cross_entropy(h, weight, labels, bias, **PARAMS)  # noqa: E731
    torch.testing.assert_close(
        hessian(mean)(hidden), hessian(lambda h: naive(h, weight, labels, bias, **REF))(hidden), rtol=1e-10, atol=1e-12
    )


# Dynamo (torch 2.13, side_effects.track_object_new) builds the Function's context with
# torch.autograd.Function(), whose deprecation warning an "error" filter raises: torch's, not lossfn's.
@pytest.mark.filterwarnings("ignore:.*should not be instantiated:DeprecationWarning")
def test_torch_compile_fullgraph_forward_and_backward():
    hidden, weight, labels, bias, _ = problem("[B, T, H]", dtype=torch.float32)
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda h, w, y, b: LF.linear_cross_entropy(h, w, y, b, **PARAMS, shift=True), fullgraph=True
    )
    actual, grads = value_and_grads(compiled, hidden, weight, labels, bias)
    expected, expected_grads = value_and_grads(lambda *x: naive(*x, **REF, shift=True), hidden, weight, labels, bias)
    assert_close(actual, expected, 1e-5)
    for got, want in zip(grads, expected_grads):
        assert_close(got, want, 1e-5)


@pytest.mark.parametrize("name", ["label_smoothing", "z_loss", "softcap"])
def test_tensor_hyperparameters_take_a_gradient(name):
    hidden, weight, labels, bias, _ = problem()
    base = {"label_smoothing": 0.1, "z_loss": 0.02, "softcap": 3.0}
    for reduction in ("mean", "none"):
        value = torch.tensor(base[name], dtype=torch.float64, requires_grad=True)
        params = {**base, name: value, "reduction": reduction}
        loss = LF.linear_cross_entropy(hidden, weight, labels, bias, **params, chunk_size=6)
        got = torch.autograd.grad(loss.sum(), value)[0]
        expected = torch.autograd.grad(naive(hidden, weight, labels, bias, **params).sum(), value)[0]
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    values = torch.tensor([0.05, 0.3, 0.6], dtype=torch.float64)
    got = vmap(grad(lambda v: LF.linear_cross_entropy(hidden, weight, labels, bias, **{**base, name: v})))(values)
    reference = lambda v: naive(hidden, weight, labels, bias, **{**base, name: v})  # noqa: E731
    expected = torch.stack([grad(reference)(v) for v in values])
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_torch_linear_cross_entropy_gives_the_same_number():
    hidden, weight, labels, bias, _ = problem(dtype=torch.float32)
    options = torch.nn.LinearCrossEntropyOptions(acc_policy="compact", batch_chunk_size=6)
    for reduction in ("mean", "sum", "none"):
        expected = F.linear_cross_entropy(
            hidden, weight, labels, linear_bias=bias, reduction=reduction, options=options
        )
        torch.testing.assert_close(LF.linear_cross_entropy(hidden, weight, labels, bias, reduction=reduction), expected)


def test_half_precision_is_computed_in_float32():
    hidden, weight, labels, bias, _ = problem(dtype=torch.float32)
    reference = naive(hidden, weight, labels, bias, z_loss=1e-3, softcap=5.0)
    half = [x.to(torch.bfloat16) for x in (hidden, weight, bias)]
    leaf = half[0].requires_grad_()
    loss = LF.linear_cross_entropy(leaf, half[1], labels, half[2], z_loss=1e-3, softcap=5.0)
    loss.backward()
    assert loss.dtype == leaf.grad.dtype == torch.bfloat16 and torch.isfinite(leaf.grad).all()
    torch.testing.assert_close(loss.float(), reference, rtol=2e-2, atol=2e-2)


def test_shift_of_one_step_sequences_and_no_tokens():
    hidden, weight, labels, bias, _ = problem("[B, T, H]")
    one = LF.linear_cross_entropy(hidden[:, :1], weight, labels[:, :1], bias, shift=True, reduction="none")
    assert one.shape == (3, 0)
    leaf = hidden[:, :1].clone().requires_grad_()
    mean = LF.linear_cross_entropy(leaf, weight, labels[:, :1], bias, shift=True)
    mean.backward()
    assert mean.item() == 0.0 and torch.all(leaf.grad == 0)


ROUTES = {  # how each route is reached: the fused kernel, the recomputing Function, the no-gradient pass
    "fused": lambda fn, *x: value_and_grads(fn, *x),
    "recomputing": lambda fn, h, w, y, b: value_and_grads(fn, h, w, y, b, torch.ones(())),
    "torch.func.grad": lambda fn, h, w, y, b: (
        fn(h, w, y, b), grad(lambda *a: fn(*a[:2], y, a[2]).sum(), argnums=(0, 1, 2))(h, w, b)
    ),
}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_every_token_ignored_gives_0_and_zero_gradients(route, reduction):
    hidden, weight, labels, bias, _ = problem()
    ignored = torch.full_like(labels, -100)
    fn = lambda h, w, y, b: LF.linear_cross_entropy(h, w, y, b, **PARAMS, reduction=reduction)  # noqa: E731
    if route == "recomputing":  # a tensor hyperparameter that needs a gradient takes the recomputing Function
        eps = torch.tensor(0.1, dtype=hidden.dtype, requires_grad=True)
        fn = lambda h, w, y, b: LF.linear_cross_entropy(  # noqa: E731
            h, w, y, b, **{**PARAMS, "label_smoothing": eps}, reduction=reduction
        )
    value, grads = ROUTES[route](fn, hidden, weight, ignored, bias)
    assert torch.all(value == 0)  # torch's mean is nan here
    assert all(torch.all(g == 0) for g in grads)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_an_ignored_tokens_nan_hidden_state_reaches_no_gradient(bad, route, reduction):
    """A padded position's NaN hidden state: the loss and every gradient are those without that
    token (torch's twins give a NaN weight gradient); its own gradient is 0."""
    hidden, weight, labels, bias, _ = problem()
    kept = labels != -100
    poisoned = hidden.clone()
    poisoned[~kept] = bad
    fn = lambda h, w, y, b: LF.linear_cross_entropy(h, w, y, b, **PARAMS, reduction=reduction)  # noqa: E731
    if route == "recomputing":
        eps = torch.tensor(0.1, dtype=hidden.dtype, requires_grad=True)
        fn = lambda h, w, y, b: LF.linear_cross_entropy(  # noqa: E731
            h, w, y, b, **{**PARAMS, "label_smoothing": eps}, reduction=reduction
        )
    value, (gh, gw, gb) = ROUTES[route](fn, poisoned, weight, labels, bias)
    reference = lambda h, w, y, b: naive(h, w, y, b, **REF, reduction=reduction)  # noqa: E731
    expected, (eh, ew, eb) = value_and_grads(reference, hidden[kept], weight, labels[kept], bias)
    torch.testing.assert_close(value.detach()[kept] if reduction == "none" else value.detach(), expected)
    torch.testing.assert_close(gh[kept], eh)
    assert torch.all(gh[~kept] == 0)
    torch.testing.assert_close(gw, ew)
    torch.testing.assert_close(gb, eb)


# -- errors -------------------------------------------------------------------------------------


def test_bad_inputs_are_named_errors():
    hidden, weight, labels, bias, _ = problem()
    cases = [
        ((hidden, weight, labels[:-1], bias), {}, r"labels must be token indices of shape \[20\]"),
        ((hidden, weight[:, :-1], labels, bias), {}, r"weight must be of shape \[V, 8\]"),
        ((hidden, weight.float(), labels, bias), {}, r"weight must be of hidden's dtype"),
        ((hidden, weight, labels, bias[:-1]), {}, r"bias must be of shape \[50\]"),
        ((hidden, weight, labels.float(), bias), {}, r"labels must be integer token indices"),
        ((hidden[0], weight, labels[0], bias), {"shift": True}, r"labels must be a sequence"),
        ((hidden, weight, labels, bias), {"chunk_size": torch.tensor(4)}, r"chunk_size must be a Python int"),
        ((hidden, weight, labels, bias), {"chunk_size": 0}, r"chunk_size must be an integer >= 1"),
        ((hidden, weight, labels, bias), {"softcap": 0.0}, r"softcap must be a number > 0"),
    ]
    for inputs, params, message in cases:
        with pytest.raises(ValueError, match=rf"^linear_cross_entropy: {message}"):
            LF.linear_cross_entropy(*inputs, **params)


def test_the_module_checks_labels_against_the_vocabulary():
    hidden, weight, labels, bias, _ = problem()
    module = lossfn.nn.LinearCrossEntropy()
    torch.testing.assert_close(module(hidden, weight, labels, bias), naive(hidden, weight, labels, bias))
    for bad in (VOCABULARY, -1):
        wrong = labels.clone()
        wrong[0] = bad
        with pytest.raises(ValueError, match=r"^linear_cross_entropy: labels must be token indices in \[0, 49\]") as e:
            module(hidden, weight, wrong, bias)
        used = wrong[wrong != -100]  # the ignored -100 hides nothing and shows in no bound
        assert f"values in [{min(used.min().item(), 0)}, {used.max().item()}]" in str(e.value)
    shifted = lossfn.nn.LinearCrossEntropy(shift=True)
    first = labels.clone()
    first[0] = -7  # never scored with shift=True: not checked
    torch.testing.assert_close(shifted(hidden, weight, first, bias), naive(hidden, weight, labels, bias, shift=True))


def test_the_module_under_vmap_grad_with_its_check_on():
    hidden, weight, labels, bias, _ = problem()
    module = lossfn.build({"type": "linear_cross_entropy", "z_loss": 0.01})
    got = vmap(grad(lambda h, y: module(h, weight, y, bias)))(hidden, labels)
    expected = vmap(grad(lambda h, y: naive(h[None], weight, y[None], bias, z_loss=0.01)))(hidden, labels)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


# -- the head -------------------------------------------------------------------------------------


def test_the_head_replaces_lm_head_and_loss_in_a_training_loop():
    torch.manual_seed(0)
    lm_head = torch.nn.Linear(WIDTH, VOCABULARY, bias=True)
    head = LinearCrossEntropyHead(WIDTH, VOCABULARY, bias=True, shift=True, chunk_size=5)
    head.load_state_dict(lm_head.state_dict())
    assert set(head.state_dict()) == {"weight", "bias"}
    g = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, VOCABULARY, (20, 3, 7), generator=g)
    hidden = torch.randn(20, 3, 7, WIDTH, generator=g)
    trained = []
    for model in (lm_head, head):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        for x, y in zip(hidden, tokens):
            if model is lm_head:
                logits = model(x)
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCABULARY), y[:, 1:].reshape(-1))
            else:
                loss = model(x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        trained.append(loss.detach())
    torch.testing.assert_close(trained[1], trained[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head.weight, lm_head.weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head.logits(hidden[0]), lm_head(hidden[0]))


def test_the_head_shares_an_existing_layer_and_round_trips():
    embedding = torch.nn.Embedding(VOCABULARY, WIDTH)
    lm_head = torch.nn.Linear(WIDTH, VOCABULARY, bias=False)
    lm_head.weight = embedding.weight  # tied
    head = LinearCrossEntropyHead.from_linear(lm_head, softcap=3.0, reduction="sum")
    assert head.weight is embedding.weight and head.bias is None
    assert (head.in_features, head.vocab_size) == (WIDTH, VOCABULARY)
    assert (head.loss.softcap, head.loss.reduction) == (3.0, "sum")
    hidden, _, labels, _, _ = problem(dtype=torch.float32)
    expected = naive(hidden, embedding.weight, labels, softcap=3.0, reduction="sum")
    torch.testing.assert_close(head(hidden, labels), expected)
    torch.testing.assert_close(head.logits(hidden), 3.0 * torch.tanh(lm_head(hidden) / 3.0))
    for other in (pickle.loads(pickle.dumps(head)), copy.deepcopy(head)):
        torch.testing.assert_close(other(hidden, labels), expected)
    with pytest.raises(ValueError, match=r"^LinearCrossEntropy: Expected `float` >= 0.0 - at `\$.z_loss`"):
        LinearCrossEntropyHead(WIDTH, VOCABULARY, z_loss=-1.0)
    for placed in ({"device": "cpu"}, {"dtype": torch.float64}, {"device": "cpu", "dtype": torch.float16}):
        with pytest.raises(TypeError, match=r"^LinearCrossEntropyHead.from_linear: (device|dtype)"):
            LinearCrossEntropyHead.from_linear(lm_head, **placed)  # the linear's own stay: refused, not ignored


def test_the_head_docstring_example_runs():
    import doctest

    import lossfn.nn._heads as heads

    result = doctest.testmod(heads, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
