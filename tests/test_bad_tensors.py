"""The bad-tensor grid: a wrong input is a ValueError naming the loss and the argument.

Over every registered loss, its function and its module: a model output of the
wrong rank or dtype, or not a tensor; labels of the wrong shape, not a tensor, on
another device, or complex (unsigned class indices: tests/test_conformance.py). For a loss whose labels have a valid range
(a ``validate=`` hook), its module also refuses labels out of range and NaN labels.
Never a number, never an unnamed error.
"""

from __future__ import annotations

import math

import pytest
import torch

import lossfn

from cases import all_cases

CASES = all_cases()
NAMES = [name for name in lossfn.registered() if name in CASES]


def _variants(inputs):
    x, y, *rest = inputs
    yield "output of rank + 2", (x[None, None], y, *rest)
    yield "output of integers", (x.long(), y, *rest)
    yield "output of booleans", (x > 0, y, *rest)
    yield "output as a list", (x.tolist(), y, *rest)
    yield "labels not a tensor", (x, y.tolist(), *rest)
    yield "labels of another shape", (x, y[..., None, None], *rest)
    yield "labels on the meta device", (x, y.to("meta"), *rest)
    yield "complex labels", (x, y.to(torch.complex64), *rest)


CELLS = [
    pytest.param(name, how, label, id=f"{name}-{how}-{label}")
    for name in NAMES
    for how in ("function", "module")
    for label, _ in _variants(CASES[name].make(4, torch.float32, torch.Generator().manual_seed(0)))
]


@pytest.mark.parametrize("name,how,label", CELLS)
def test_a_bad_tensor_is_a_named_error(name, how, label):
    spec = lossfn.get_loss(name)
    inputs = CASES[name].make(4, torch.float32, torch.Generator().manual_seed(0))
    args = next(a for l, a in _variants(inputs) if l == label)
    loss = spec.fn if how == "function" else spec.module()
    # the input at fault, or the one it disagrees with (a shape mismatch names either)
    with pytest.raises(ValueError, match=rf"^{name}: ({'|'.join(spec.inputs)}) "):
        loss(*args)


CHECKED = [
    name for name in NAMES
    if lossfn.get_loss(name).validate is not None and CASES[name].labels_bounded and "labels" in lossfn.get_loss(name).inputs
]


@pytest.mark.parametrize("name", CHECKED)
@pytest.mark.parametrize("bad", ["above", "below", "nan"])
def test_the_module_refuses_labels_out_of_range(name, bad):
    spec = lossfn.get_loss(name)
    inputs = list(CASES[name].make(4, torch.float32, torch.Generator().manual_seed(0)))
    at = spec.inputs.index("labels")  # not always the second input (margin_ranking: x1, x2, labels)
    y = inputs[at].float() if bad == "nan" else inputs[at].clone()  # integer labels cannot hold NaN
    flat = y.view(-1)
    flat[0] = {"above": 1000, "below": -1000, "nan": math.nan}[bad]
    inputs[at] = y
    with pytest.raises(ValueError, match=rf"^{name}: labels "):
        spec.module()(*inputs)
