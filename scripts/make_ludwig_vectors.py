"""Write ``tests/data/ludwig_reference.json``: losses computed by Ludwig's own loss modules.

The tests read only the JSON; this script documents where its numbers come from
and regenerates them. Run it in a separate environment with Ludwig (never the
project's own venv). Ludwig's loss modules need only a part of its dependencies::

    python -m venv /tmp/ludwigvenv
    /tmp/ludwigvenv/bin/pip install torch==2.13.0    # or reuse an existing torch
    /tmp/ludwigvenv/bin/pip install --no-deps ludwig
    /tmp/ludwigvenv/bin/pip install torchmetrics marshmallow marshmallow-dataclass \\
        marshmallow-jsonschema pandas pyarrow scikit-learn h5py dataclasses-json transformers ...
    /tmp/ludwigvenv/bin/python scripts/make_ludwig_vectors.py

(install what ``import ludwig.schema; import ludwig.modules.loss_modules`` asks for).
Each module is built from a plain namespace holding the config fields it reads, so
values Ludwig's schema would refuse (a float ``robust_lambda``) can be given too.

Every vector says how lossfn relates to Ludwig's number (``kind``):

- ``"same"``: lossfn with the same parameters gives the same number.
- ``"ludwig_ignores"``: Ludwig's module ignores the parameters listed in
  ``ignored``; its number is lossfn's without them (lossfn applies them).
- ``"drops_first_example"``: Ludwig's sequence loss slices the batch axis
  (``preds[1:]``); its number is lossfn's on the batch without example 0.
- ``"batch_max_penalty"``: Ludwig's binary confidence penalty, the largest
  ``-p log p`` over the batch; the test rebuilds it from Ludwig's formula.
"""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import sys
import types

import torch

import ludwig.schema  # noqa: F401  (import order: ludwig.modules.loss_modules alone is circular)
from ludwig.modules import loss_modules as L

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "ludwig_reference.json"

LUDWIG_DEFAULTS = {
    "positive_class_weight": None,
    "robust_lambda": 0,
    "confidence_penalty": 0,
    "class_weights": None,
    "class_similarities": None,
    "class_similarities_temperature": 0,
    "unique": False,
    "delta": 1.0,
}


def ludwig_value(module: str, config: dict, logits: torch.Tensor, labels: torch.Tensor) -> float:
    cfg = types.SimpleNamespace(**{**LUDWIG_DEFAULTS, **config})
    loss = getattr(L, module)(cfg)
    with torch.no_grad():
        return float(loss(logits, labels))


def main() -> None:
    g = torch.Generator().manual_seed(1905)

    def normal(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=g)

    def ints(high: int, *shape: int) -> torch.Tensor:
        return torch.randint(0, high, shape, generator=g)

    vectors = []

    def add(loss: str, module: str, config: dict, logits, labels, kind: str = "same", **extra) -> None:
        vectors.append(
            {
                "loss": loss,
                "ludwig_module": module,
                "config": config,
                "kind": kind,
                "logits": logits.tolist(),
                "labels": labels.tolist(),
                "labels_dtype": "float" if labels.is_floating_point() else "int",
                "value": ludwig_value(module, config, logits, labels),
                **extra,
            }
        )

    # regression: [B] (number) and [B, D] (vector, timeseries)
    for shape in [(9,), (6, 4)]:
        x, y = normal(*shape), normal(*shape, scale=2.0)
        add("mean_squared_error", "MSELoss", {}, x, y)
        add("mean_absolute_error", "MAELoss", {}, x, y)
        add("huber", "HuberLoss", {"delta": 1.0}, x, y)
        add("huber", "HuberLoss", {"delta": 0.3}, x, y)
        y0 = y.clone()
        y0.view(-1)[::4] = 0.0  # zero targets: torchmetrics' epsilon and Ludwig's rmspe guard
        add("mean_absolute_percentage_error", "MAPELoss", {}, x, y)
        add("mean_absolute_percentage_error", "MAPELoss", {}, x, y0)
    x, y = normal(9), normal(9, scale=2.0)
    y0 = y.clone()
    y0[::3] = 0.0
    add("root_mean_squared_error", "RMSELoss", {}, x, y)
    add("root_mean_squared_percentage_error", "RMSPELoss", {}, x, y)
    add("root_mean_squared_percentage_error", "RMSPELoss", {}, x, y0)

    # binary
    x = normal(10, scale=2.0)
    y = ints(2, 10).float()
    add("binary_weighted_cross_entropy", "BWCEWLoss", {}, x, y)
    add("binary_weighted_cross_entropy", "BWCEWLoss", {"positive_class_weight": 2.5}, x, y)
    add("binary_weighted_cross_entropy", "BWCEWLoss", {"robust_lambda": 1}, x, y)
    add("binary_weighted_cross_entropy", "BWCEWLoss", {"robust_lambda": 0.3, "positive_class_weight": 0.5}, x, y)
    add("binary_weighted_cross_entropy", "BWCEWLoss", {"confidence_penalty": 0.2}, x, y, kind="batch_max_penalty")

    # category, vector and image: class indices, probabilities, segmentation
    x, y = normal(8, 5, scale=2.0), ints(5, 8)
    weights = [1.0, 2.0, 0.5, 3.0, 1.5]
    add("softmax_cross_entropy", "SoftmaxCrossEntropyLoss", {}, x, y)
    add("softmax_cross_entropy", "SoftmaxCrossEntropyLoss", {"class_weights": weights}, x, y)
    similarities = (torch.eye(5) + 0.5 * torch.rand(5, 5, generator=g)).tolist()
    add(
        "softmax_cross_entropy",
        "SoftmaxCrossEntropyLoss",
        {
            "class_weights": weights,
            "robust_lambda": 0.2,
            "confidence_penalty": 0.1,
            "class_similarities": similarities,
            "class_similarities_temperature": 0.5,
        },
        x,
        y,
        kind="ludwig_ignores",
        ignored=["robust_lambda", "confidence_penalty", "class_similarities", "class_similarities_temperature"],
    )
    probabilities = torch.softmax(normal(8, 5), dim=1)
    add("softmax_cross_entropy", "SoftmaxCrossEntropyLoss", {}, x, probabilities)
    add("softmax_cross_entropy", "SoftmaxCrossEntropyLoss", {"class_weights": weights}, x, probabilities)
    xs, ys = normal(2, 4, 3, 3, scale=2.0), ints(4, 2, 3, 3)
    add("softmax_cross_entropy", "SoftmaxCrossEntropyLoss", {}, xs, ys)
    add("softmax_cross_entropy", "SoftmaxCrossEntropyLoss", {"class_weights": [0.5, 1.0, 2.0, 1.0]}, xs, ys)

    # set
    x, y = normal(6, 4, scale=2.0), ints(2, 6, 4)
    add("sigmoid_cross_entropy", "SigmoidCrossEntropyLoss", {}, x, y)
    add("sigmoid_cross_entropy", "SigmoidCrossEntropyLoss", {"class_weights": [1.0, 3.0, 0.5, 2.0]}, x, y)

    # sequence and text: [B, T, V] with <PAD> = 2 at the end of some sequences
    x, y = normal(4, 6, 7, scale=2.0), ints(7, 4, 6)
    y[1, 4:] = 2
    y[3, 2:] = 2
    seq_weights = [1.0, 0.5, 1.0, 2.0, 1.0, 3.0, 0.25]
    add("sequence_softmax_cross_entropy", "SequenceSoftmaxCrossEntropyLoss", {}, x, y, kind="drops_first_example")
    add(
        "sequence_softmax_cross_entropy",
        "SequenceSoftmaxCrossEntropyLoss",
        {"class_weights": seq_weights},
        x,
        y,
        kind="drops_first_example",
    )
    add("next_token_softmax_cross_entropy", "NextTokenSoftmaxCrossEntropyLoss", {}, x, y)
    add(
        "next_token_softmax_cross_entropy",
        "NextTokenSoftmaxCrossEntropyLoss",
        {"class_weights": seq_weights},
        x,
        y,
        kind="ludwig_ignores",
        ignored=["class_weights"],
    )

    # ordinal category: [B, K] logits, the first K - 1 columns are the tasks
    x, y = normal(10, 6, scale=2.0), ints(6, 10)
    add("corn", "CORNLoss", {}, x, y)

    document = {
        "source": (
            f"ludwig.modules.loss_modules (ludwig {importlib.metadata.version('ludwig')}, "
            f"torchmetrics {importlib.metadata.version('torchmetrics')}), torch {torch.__version__}"
        ),
        "generator": "scripts/make_ludwig_vectors.py",
        "vectors": vectors,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {len(vectors)} vectors to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
