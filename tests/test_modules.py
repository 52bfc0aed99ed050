"""Generated modules behave like hand-written ones in the places users rely on."""

from __future__ import annotations

import io
import multiprocessing

import pytest
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


# -- modules never drift from their config ---------------------------------------------------


def test_assignment_revalidates_and_the_config_follows():
    module = lossfn.nn.SoftmaxCrossEntropy(label_smoothing=0.1)
    module.label_smoothing = 0.2
    assert module.config.label_smoothing == 0.2 and "label_smoothing=0.2" in repr(module)
    assert lossfn.encode_config(module.config, format="dict")["label_smoothing"] == 0.2
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(module(logits, labels), torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.2))
    with pytest.raises(lossfn.LossConfigError, match=r"^SoftmaxCrossEntropy: Expected `float` < 1.0 - at `\$.label_smoothing`$"):
        module.label_smoothing = 1.5
    assert module.label_smoothing == 0.2  # a refused value changes nothing
    module.class_weights = [1.0, 2.0, 3.0]  # a tensor parameter: becomes a buffer
    assert module.class_weights.tolist() == [1.0, 2.0, 3.0] and "class_weights" in module.state_dict()
    assert module.config.class_weights == [1.0, 2.0, 3.0]
    with pytest.raises(lossfn.LossConfigError, match=r"at `\$.class_weights\[1\]`"):
        module.class_weights = [1.0, -2.0, 3.0]
    module.class_weights = None
    assert module.class_weights is None and "class_weights" not in module.state_dict()
    with pytest.raises(lossfn.LossConfigError, match=r"at `\$.weight`"):
        module.weight = -1.0
    module.weight = 0.5
    assert module.config.weight == 0.5 and "weight=0.5" in repr(module)
    with pytest.raises(ValueError, match="reduction must be one of"):
        module.reduction = "batchmean"
    with pytest.raises(AttributeError, match="part of the config"):
        del module.label_smoothing


def test_cross_field_checks_hold_on_assignment():
    module = lossfn.nn.SoftmaxCrossEntropy()
    with pytest.raises(lossfn.LossConfigError, match=r"Expected 0 unless class_similarities are given, got 0.5 - at `\$.class_similarities_temperature`"):
        module.class_similarities_temperature = 0.5


def test_in_place_changes_of_a_buffer_show_in_the_config():
    module = lossfn.nn.SoftmaxCrossEntropy(class_weights=[0.1, 0.2, 0.3])
    with torch.no_grad():
        module.class_weights[0] = 0.7
    assert module.config.class_weights == [0.7, 0.2, 0.3]  # read off the buffer each time, without float32 noise


def test_load_state_dict_updates_the_config_and_checks_the_values():
    source = lossfn.nn.SoftmaxCrossEntropy(class_weights=[0.1, 0.2, 0.3])
    target = lossfn.nn.SoftmaxCrossEntropy(class_weights=[1.0, 1.0, 1.0])
    target.load_state_dict(source.state_dict())
    assert target.config.class_weights == [0.1, 0.2, 0.3]
    assert "class_weights=[0.1, 0.2, 0.3]" in repr(target)
    bad = {"class_weights": torch.tensor([1.0, -1.0, 1.0])}
    with pytest.raises(lossfn.LossConfigError, match=r"cannot load the state dict.*at `\$.class_weights\[1\]`"):
        target.load_state_dict(bad)
    assert target.config.class_weights == [0.1, 0.2, 0.3]  # refused before anything was copied


def test_a_module_without_an_optional_tensor_loads_one_and_the_reverse():
    with_weights = lossfn.nn.SoftmaxCrossEntropy(class_weights=[0.5, 1.0, 2.0])
    without = lossfn.nn.SoftmaxCrossEntropy()
    without.load_state_dict(with_weights.state_dict())
    assert without.config == with_weights.config
    logits, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 2, 1])
    torch.testing.assert_close(without(logits, labels), with_weights(logits, labels))
    # a state dict saved without weights means no weights (strict): the config says so
    with_weights.load_state_dict(lossfn.nn.SoftmaxCrossEntropy().state_dict())
    assert with_weights.class_weights is None and with_weights.config.class_weights is None
    # a hyperparameter the state dict holds as a tensor (a learnt delta) is taken as that tensor
    learnt = lossfn.nn.Huber(delta=torch.nn.Parameter(torch.tensor(0.3)))
    plain = lossfn.nn.Huber()
    plain.load_state_dict(learnt.state_dict())
    assert plain.config.delta == 0.3 and isinstance(plain.delta, torch.Tensor)


def test_a_learnable_hyperparameter_stays_a_parameter_and_learns():
    delta = torch.nn.Parameter(torch.tensor(0.5))
    module = lossfn.nn.Huber(delta=delta)
    assert module.delta is delta and [p for p in module.parameters()] == [delta]
    assert module.config.delta == 0.5 and repr(module) == "Huber(delta=0.5, reduction='mean')"
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    x, y = torch.tensor([0.0, 3.0]), torch.tensor([0.0, 0.0])
    module(x, y).backward()
    # d/dδ of δ(|e| - δ/2) is |e| - δ = 2.5 for the linear element, 0 for the other; mean over 2
    assert delta.grad.item() == pytest.approx(1.25)
    optimizer.step()
    assert module.config.delta == pytest.approx(0.375)  # the config reports what forward uses
    with pytest.raises(lossfn.LossConfigError, match=r"at `\$.delta`"):
        lossfn.nn.Huber(delta=torch.nn.Parameter(torch.tensor(-1.0)))


def test_values_are_shown_without_float32_noise():
    module = lossfn.nn.Huber(delta=torch.tensor(0.1))
    assert repr(module) == "Huber(delta=0.1, reduction='mean')" and module.config.delta == 0.1
    weights = lossfn.nn.SoftmaxCrossEntropy(class_weights=[0.1, 0.7, 1.3]).to(torch.float64)
    assert weights.config.class_weights == [0.1, 0.7, 1.3]
    half = lossfn.nn.SoftmaxCrossEntropy(class_weights=torch.tensor([0.1, 0.7], dtype=torch.bfloat16))
    assert half.config.class_weights == [0.1, 0.7]


class Heads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 4)
        self.criterion = lossfn.nn.SoftmaxCrossEntropy(class_weights=[1.0, 2.0, 3.0, 4.0], label_smoothing=0.1)
        self.huber = lossfn.nn.Huber(delta=torch.nn.Parameter(torch.tensor(0.5)))
        self.aliased = lossfn.build({"type": "tempered_softmax_cross_entropy", "t1": 0.8})


def test_torch_load_with_weights_only_after_one_call(tmp_path):
    """torch's safe default loads a model holding lossfn modules once their classes are allowed
    (as for any nn.Module class, torch.nn.Linear included); nothing else needs allowing."""
    model = Heads()
    path = tmp_path / "model.pt"
    torch.save(model, path)
    with pytest.raises(Exception, match="weights_only"):
        torch.load(path)  # the safe default refuses classes nobody allowed
    with torch.serialization.safe_globals([Heads, torch.nn.Linear, *lossfn.nn.safe_globals()]):
        loaded = torch.load(path)  # weights_only=True
    assert loaded.criterion.config == model.criterion.config and loaded.huber.config.delta == 0.5
    assert isinstance(loaded.huber.delta, torch.nn.Parameter)
    assert type(loaded.aliased.config).__name__ == "TemperedSoftmaxCrossEntropyConfig"
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    torch.testing.assert_close(loaded.criterion(x, y), model.criterion(x, y))


def test_module_steps_aside_on_meta_and_fake_tensors_and_checks_real_ones():
    from torch._subclasses.fake_tensor import FakeTensorMode

    module = lossfn.nn.SoftmaxCrossEntropy()
    meta = module(torch.empty(4, 3, device="meta"), torch.empty(4, dtype=torch.long, device="meta"))
    assert meta.device.type == "meta"
    with FakeTensorMode():
        fake = module(torch.empty(4, 3), torch.zeros(4, dtype=torch.long))
    assert fake.shape == ()
    with pytest.raises(ValueError, match="class indices in"):
        module(torch.zeros(4, 3), torch.tensor([0, 1, 2, 3]))


def test_forward_takes_inputs_by_name_and_says_what_is_missing():
    module = lossfn.nn.MeanSquaredError()
    x = torch.randn(3)
    assert module(predictions=x, labels=x).item() == 0.0
    with pytest.raises(TypeError, match=r"MeanSquaredError.forward\(\): missing a required argument: 'labels'"):
        module(x)
