"""Generated modules behave like hand-written ones in the places users rely on."""

from __future__ import annotations

import io
import multiprocessing

import torch

import lossfn


class Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 4)
        self.criterion = lossfn.nn.SoftmaxCrossEntropy(class_weights=[1.0, 2.0, 3.0, 4.0], label_smoothing=0.1)

    def forward(self, x, y):
        return self.criterion(self.linear(x), y)


def _loss_in_child(payload: bytes) -> float:
    module, logits, labels = torch.load(io.BytesIO(payload), weights_only=False)
    return float(module(logits, labels))


def test_torch_save_of_a_model_holding_a_loss():
    model = Model()
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x, y = torch.randn(5, 3), torch.randint(0, 4, (5,))
    assert type(loaded.criterion) is lossfn.nn.SoftmaxCrossEntropy
    torch.testing.assert_close(loaded(x, y), model(x, y), rtol=0, atol=0)
    assert "criterion.class_weights" in model.state_dict()


def test_module_crosses_a_spawned_process():
    module = lossfn.nn.SoftmaxCrossEntropy(class_weights=[1.0, 0.5, 2.0])
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    buffer = io.BytesIO()
    torch.save((module, logits, labels), buffer)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        (value,) = pool.map(_loss_in_child, [buffer.getvalue()])
    assert value == float(module(logits, labels))


def test_to_moves_buffers_and_the_loss_follows_the_input_dtype():
    module = lossfn.nn.SoftmaxCrossEntropy(class_weights=[1.0, 2.0]).to(torch.float64)
    logits = torch.randn(3, 2, dtype=torch.float64)
    labels = torch.tensor([0, 1, 1])
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert module.class_weights.dtype == torch.float64
    torch.testing.assert_close(module(logits, labels), expected)


def test_module_help_shows_the_signature_and_the_math():
    doc = lossfn.nn.SoftmaxCrossEntropy.__doc__
    assert "lossfn.functional.softmax_cross_entropy" in doc and ".. math::" in doc
    import inspect

    assert "label_smoothing" in str(inspect.signature(lossfn.nn.SoftmaxCrossEntropy))
