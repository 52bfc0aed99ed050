"""Core overheads, each as a ratio to a baseline timed in the same interleaved rounds:

* the module that ``lossfn`` derives from ``softmax_cross_entropy``'s signature vs a
  hand-written ``nn.Module`` calling the same pure function (forward, and
  forward + backward), at a ``[32, 10]`` batch, with ``validate_inputs`` on and off;
* the pure functions with their hyperparameter check (the wrapper ``register_loss``
  derives from the signature) vs the same functions without it (``spec.unchecked``),
  and vs ``torch.nn.functional`` for scale;
* ``lossfn.decode_config`` of one JSON config vs ``msgspec.json.decode`` into the
  same config class directly.

Run: ``.venv/bin/python benchmarks/bench_core.py``.
"""

from __future__ import annotations

import msgspec
import torch
import torch.nn.functional as F

import lossfn
from lossfn.functional import huber, softmax_cross_entropy

from _timing import compare


class HandWritten(torch.nn.Module):
    """What one would write by hand: a buffer and a one-line forward."""

    def __init__(self, class_weights: list[float], label_smoothing: float) -> None:
        super().__init__()
        self.register_buffer("class_weights", torch.tensor(class_weights))
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return softmax_cross_entropy(
            logits, labels, class_weights=self.class_weights, label_smoothing=self.label_smoothing
        )


def main() -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 10, generator=generator, requires_grad=True)
    labels = torch.randint(0, 10, (32,), generator=generator)
    weights = [1.0 + i / 10 for i in range(10)]
    weight_tensor = torch.tensor(weights)

    hand = HandWritten(weights, 0.1)
    derived = lossfn.nn.SoftmaxCrossEntropy(class_weights=weights, label_smoothing=0.1, validate_inputs=False)
    checked = lossfn.nn.SoftmaxCrossEntropy(class_weights=weights, label_smoothing=0.1)
    torch.testing.assert_close(derived(logits, labels), hand(logits, labels))

    print("module overhead, softmax_cross_entropy at [32, 10] (ratio vs hand-written)")
    for line in compare(("hand-written nn.Module, forward", lambda: hand(logits, labels)), {
        "derived module, forward": lambda: derived(logits, labels),
        "derived module + label range check, forward": lambda: checked(logits, labels),
        "(for scale) F.cross_entropy, forward": lambda: F.cross_entropy(
            logits, labels, weight=weight_tensor, label_smoothing=0.1),
    }):
        print(line)
    for line in compare(("hand-written nn.Module, forward+backward", lambda: hand(logits, labels).backward()), {
        "derived module, forward+backward": lambda: derived(logits, labels).backward(),
    }, number=200):
        print(line)

    print("\nthe hyperparameter check of the pure functions (ratio vs the same function unchecked)")
    x, y = torch.randn(32, 4, generator=generator), torch.randn(32, 4, generator=generator)
    unchecked_huber = lossfn.get_loss("huber").unchecked
    for line in compare(("huber unchecked, delta=0.5", lambda: unchecked_huber(x, y, delta=0.5)), {
        "LF.huber(delta=0.5) (checks delta)": lambda: huber(x, y, delta=0.5),
        "(for scale) F.huber_loss(delta=0.5)": lambda: F.huber_loss(x, y, delta=0.5),
    }):
        print(line)
    unchecked = lossfn.get_loss("softmax_cross_entropy").unchecked
    base = lambda: unchecked(logits, labels, class_weights=weight_tensor, label_smoothing=0.1)  # noqa: E731
    for line in compare(("softmax_cross_entropy unchecked, tensor weights + smoothing", base), {
        "LF.softmax_cross_entropy, the same (checks the smoothing)": lambda: softmax_cross_entropy(
            logits, labels, class_weights=weight_tensor, label_smoothing=0.1),
        "LF.softmax_cross_entropy, weights as a list (msgspec check)": lambda: softmax_cross_entropy(
            logits, labels, class_weights=weights, label_smoothing=0.1),
    }):
        print(line)

    print("\nthe pure function at its defaults (ratio vs torch.nn.functional.cross_entropy)")
    for line in compare(("F.cross_entropy, forward", lambda: F.cross_entropy(logits, labels)), {
        "LF.softmax_cross_entropy, forward": lambda: softmax_cross_entropy(logits, labels),
    }):
        print(line)
    for line in compare(("F.cross_entropy, forward+backward", lambda: F.cross_entropy(logits, labels).backward()), {
        "LF.softmax_cross_entropy, forward+backward": lambda: softmax_cross_entropy(logits, labels).backward(),
    }, number=200):
        print(line)

    print("\nconfig decoding (ratio vs msgspec.json.decode into the class directly)")
    document = b'{"type": "softmax_cross_entropy", "class_weights": [1, 2, 3], "label_smoothing": 0.1}'
    cls = lossfn.get_loss("softmax_cross_entropy").config
    union = lossfn.config_type()
    as_dict = msgspec.json.decode(document)
    for line in compare(("msgspec.json.decode(doc, type=SoftmaxCrossEntropyConfig)",
                         lambda: msgspec.json.decode(document, type=cls)), {
        "msgspec.json.decode(doc, type=LossConfig union)": lambda: msgspec.json.decode(document, type=union),
        "lossfn.decode_config(doc)": lambda: lossfn.decode_config(document),
        "lossfn.decode_config(dict)": lambda: lossfn.decode_config(as_dict),
        "lossfn.build(doc) (decode + module)": lambda: lossfn.build(document),
    }, number=2000):
        print(line)


if __name__ == "__main__":
    main()
