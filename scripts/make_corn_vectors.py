"""Write ``tests/data/corn_reference.json``: CORN losses computed by ``coral_pytorch``.

The tests read only the JSON; this script documents where its numbers come from
and regenerates them. Run it in a separate environment that has coral_pytorch
(never the project's own venv), e.g.::

    python -m venv /tmp/coralvenv
    /tmp/coralvenv/bin/pip install torch==2.13.0    # or reuse an existing torch
    /tmp/coralvenv/bin/pip install --no-deps coral-pytorch
    /tmp/coralvenv/bin/python scripts/make_corn_vectors.py

``coral_pytorch.losses.corn_loss(logits, labels, num_classes)`` is the reference
implementation of Shi, Cao and Raschka (2021); Ludwig's ``corn_loss`` is a copy of
it, called with ``num_classes = logits.shape[1]``. The vectors use float64 inputs
so that the stored numbers are exact to ~1e-15.
"""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import sys

import torch
from coral_pytorch.losses import corn_loss

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "corn_reference.json"


def main() -> None:
    generator = torch.Generator().manual_seed(20211116)
    vectors = []
    # (batch, K): a binary case (one task), small and wide ones, and a batch whose
    # labels miss the top classes (tasks with no training example)
    for batch, num_classes, top in [(5, 2, 2), (8, 5, 5), (16, 7, 7), (6, 6, 2), (1, 4, 4), (12, 10, 10)]:
        logits = 3 * torch.randn(batch, num_classes, generator=generator, dtype=torch.float64)
        labels = torch.randint(0, top, (batch,), generator=generator)
        loss = corn_loss(logits, labels, num_classes=num_classes)
        vectors.append(
            {
                "logits": logits.tolist(),
                "labels": labels.tolist(),
                "num_classes": num_classes,
                "loss": float(loss),
            }
        )
    # the example of coral_pytorch's docstring: torch.manual_seed(123), Linear(99, 4), 8 examples
    torch.manual_seed(123)
    features = torch.rand(8, 99)
    net = torch.nn.Linear(99, 4)
    logits = net(features).detach()
    labels = torch.tensor([0, 1, 2, 2, 2, 3, 4, 4])
    # K = 5 classes, 4 tasks: lossfn takes [B, K] logits, so append an unused column
    padded = torch.cat([logits, torch.zeros(8, 1)], dim=1).double()
    vectors.append(
        {
            "logits": padded.tolist(),
            "labels": labels.tolist(),
            "num_classes": 5,
            "loss": float(corn_loss(logits.double(), labels, num_classes=5)),
            "note": "coral_pytorch docstring example (0.7127), last column appended, unused",
        }
    )
    document = {
        "source": (
            f"coral_pytorch.losses.corn_loss (coral-pytorch {importlib.metadata.version('coral-pytorch')}), "
            f"torch {torch.__version__}"
        ),
        "generator": "scripts/make_corn_vectors.py",
        "vectors": vectors,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {len(vectors)} vectors to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
