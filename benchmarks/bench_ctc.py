"""CTC: forward + backward time of ``lossfn.functional.ctc`` against ``F.ctc_loss``, same run.

At ``B=8, T=50, C=20, S=10`` (float32, CPU, one intra-op thread; label lengths 5 to
10, input lengths 40 to 50), the median time of ``loss(logits, ...).backward()`` and
its ratio to ``torch.nn.functional.ctc_loss(logits.log_softmax(-1).transpose(0, 1),
...)`` (torch's fused C++ kernel with its hand-written backward), timed in
interleaved rounds (``_timing.compare``). Rows:

* lossfn eager: the fixed-shape log-space forward algorithm (one Python loop over T,
  autograd for the backward);
* lossfn under ``torch.compile(fullgraph=True)`` (the loop unrolled and fused);
* lossfn ``vmap(grad)``: per-example gradients in one call, which ``F.ctc_loss``
  cannot give (it has no ``vmap`` rule; the baseline row's loss gives only the sum).

Run: ``.venv/bin/python benchmarks/bench_ctc.py`` (``--quick`` for fewer rounds).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from lossfn.functional import ctc

from _timing import compare

BATCH, STEPS, CLASSES, WIDTH = 8, 50, 20, 10


def inputs() -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(BATCH, STEPS, CLASSES, generator=generator)
    labels = torch.randint(1, CLASSES, (BATCH, WIDTH), generator=generator)
    input_lengths = torch.randint(40, STEPS + 1, (BATCH,), generator=generator)
    label_lengths = torch.randint(5, WIDTH + 1, (BATCH,), generator=generator)
    return logits, labels, input_lengths, label_lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logits, labels, input_lengths, label_lengths = inputs()
    rest = (labels, input_lengths, label_lengths)
    compiled = torch.compile(ctc, fullgraph=True)

    def backward(fn):
        def run() -> None:
            leaf = logits.clone().requires_grad_()
            fn(leaf).backward()

        return run

    def torch_ctc(x):
        return F.ctc_loss(x.log_softmax(-1).transpose(0, 1), *rest)

    per_example = vmap(grad(lambda *row: ctc(*(x.unsqueeze(0) for x in row))))
    for label, fn in (("eager", ctc), ("compiled", compiled)):  # the same number, checked once
        torch.testing.assert_close(fn(logits, *rest), torch_ctc(logits), rtol=1e-5, atol=1e-5)
    candidates = {
        "lossfn ctc, eager": backward(lambda x: ctc(x, *rest)),
        "lossfn ctc, torch.compile(fullgraph=True)": backward(lambda x: compiled(x, *rest)),
        "lossfn ctc, vmap(grad): per-example gradients": lambda: per_example(logits, *rest),
    }
    rounds, number = (5, 20) if args.quick else (15, 50)
    print(f"[{BATCH}, {STEPS}, {CLASSES}] logits, labels [{BATCH}, {WIDTH}], float32, {args.threads} thread(s), "
          f"forward + backward; ratio to F.ctc_loss")
    for line in compare(("F.ctc_loss (baseline)", backward(torch_ctc)), candidates, number=number, rounds=rounds):
        print(line)


if __name__ == "__main__":
    main()
