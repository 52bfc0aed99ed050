"""Core overheads: a derived module vs a hand-written one, and decoding a config.

Ratios are against a baseline measured in the same run:

* the module that ``lossfn`` derives from ``softmax_cross_entropy``'s signature vs a
  hand-written ``nn.Module`` calling the same pure function (forward, and
  forward + backward), at a ``[32, 10]`` batch, with ``validate_inputs`` on and off;
* the pure function with its hyperparameter check (the wrapper ``register_loss``
  derives from the signature) vs the same function without it (``spec.unchecked``),
  and vs ``torch.nn.functional`` for scale;
* ``lossfn.decode_config`` of one JSON config vs ``msgspec.json.decode`` into the
  same config class directly.

Run: ``.venv/bin/python benchmarks/bench_core.py``.
"""

from __future__ import annotations

import msgspec
import torch

import lossfn
from lossfn.functional import softmax_cross_entropy

from _timing import per_call, row


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

    hand = HandWritten(weights, 0.1)
    derived = lossfn.nn.SoftmaxCrossEntropy(class_weights=weights, label_smoothing=0.1, validate_inputs=False)
    checked = lossfn.nn.SoftmaxCrossEntropy(class_weights=weights, label_smoothing=0.1)
    torch.testing.assert_close(derived(logits, labels), hand(logits, labels))

    print("module overhead, softmax_cross_entropy at [32, 10] (ratio vs hand-written)")
    base = per_call(lambda: hand(logits, labels))
    print(row("hand-written nn.Module, forward", base, base))
    print(row("derived module, forward", per_call(lambda: derived(logits, labels)), base))
    print(row("derived module + label range check, forward", per_call(lambda: checked(logits, labels)), base))
    weight_tensor = torch.tensor(weights)
    print(row("(for scale) F.cross_entropy, forward", per_call(
        lambda: torch.nn.functional.cross_entropy(logits, labels, weight=weight_tensor, label_smoothing=0.1)), base))
    base_bw = per_call(lambda: hand(logits, labels).backward(), number=1000)
    print(row("hand-written nn.Module, forward+backward", base_bw, base_bw))
    print(row("derived module, forward+backward", per_call(lambda: derived(logits, labels).backward(), number=1000), base_bw))

    print("\nthe hyperparameter check of the pure functions (ratio vs the same function unchecked)")
    x, y = torch.randn(32, 4, generator=generator), torch.randn(32, 4, generator=generator)
    huber = lossfn.get_loss("huber")
    base = per_call(lambda: huber.unchecked(x, y, delta=0.5))
    print(row("huber unchecked, delta=0.5", base, base))
    print(row("LF.huber(delta=0.5) (checks delta)", per_call(lambda: lossfn.functional.huber(x, y, delta=0.5)), base))
    print(row("(for scale) F.huber_loss(delta=0.5)", per_call(lambda: torch.nn.functional.huber_loss(x, y, delta=0.5)), base))
    softmax = lossfn.get_loss("softmax_cross_entropy")
    base = per_call(lambda: softmax.unchecked(logits, labels, class_weights=weight_tensor, label_smoothing=0.1))
    print(row("softmax_cross_entropy unchecked, tensor weights + smoothing", base, base))
    print(row("LF.softmax_cross_entropy, the same (checks smoothing)", per_call(
        lambda: softmax_cross_entropy(logits, labels, class_weights=weight_tensor, label_smoothing=0.1)), base))
    print(row("LF.softmax_cross_entropy, weights as a list (msgspec check)", per_call(
        lambda: softmax_cross_entropy(logits, labels, class_weights=weights, label_smoothing=0.1)), base))
    base = per_call(lambda: torch.nn.functional.cross_entropy(logits, labels).backward(), number=1000)
    print(row("F.cross_entropy, defaults, forward+backward", base, base))
    print(row("LF.softmax_cross_entropy, defaults, forward+backward", per_call(
        lambda: softmax_cross_entropy(logits, labels).backward(), number=1000), base))

    print("\nconfig decoding (ratio vs msgspec.json.decode into the class directly)")
    document = b'{"type": "softmax_cross_entropy", "class_weights": [1, 2, 3], "label_smoothing": 0.1}'
    cls = lossfn.get_loss("softmax_cross_entropy").config
    union = lossfn.config_type()
    base = per_call(lambda: msgspec.json.decode(document, type=cls), number=20000)
    print(row("msgspec.json.decode(doc, type=SoftmaxCrossEntropyConfig)", base, base))
    print(row("msgspec.json.decode(doc, type=LossConfig union)", per_call(lambda: msgspec.json.decode(document, type=union), number=20000), base))
    print(row("lossfn.decode_config(doc)", per_call(lambda: lossfn.decode_config(document), number=20000), base))
    as_dict = msgspec.json.decode(document)
    print(row("lossfn.decode_config(dict)", per_call(lambda: lossfn.decode_config(as_dict), number=20000), base))
    print(row("lossfn.build(doc) (decode + module)", per_call(lambda: lossfn.build(document), number=2000), base))


if __name__ == "__main__":
    main()
