"""Bi-tempered logistic loss: forward + backward time against cross-entropy, same run.

For each shape (``[1024, 100]`` and ``[8192, 1000]``, float32, integer labels) and each
temperature setting, the median CPU time of ``loss(logits, labels).backward()`` and its
ratio to ``torch.nn.functional.cross_entropy`` measured in the same run (interleaved),
eager and under ``torch.compile(fullgraph=True)`` (the compiled rows are against
compiled cross-entropy). Settings at the default ``num_iters=5``:

* ``t1=0.8, t2=1.2``: fixed-point normalization (the paper's robust setting),
* ``t1=0.8, t2=0.9``: bisection (finite support),
* ``t1=0.8, t2=1.0``: exact softmax normalization, tempered log only,
* ``t1=t2=1``: the cross-entropy limit,
* ``t1=0.8, t2=1.2`` with tensor temperatures (all three normalizations run).

If the JAX reference (``jax-bitempered-loss``) is importable, its jitted
forward + backward on the CPU is timed too (one thread is not enforced there).

Run: ``.venv/bin/python benchmarks/bench_tempered.py`` (``--quick`` for fewer repeats,
``--threads N``, default 1).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lossfn.functional import bi_tempered_logistic_loss

SHAPES = [(1024, 100), (8192, 1000)]
SETTINGS = [
    ("t1=0.8 t2=1.2 (fixed point)", dict(t1=0.8, t2=1.2)),
    ("t1=0.8 t2=0.9 (bisection)", dict(t1=0.8, t2=0.9)),
    ("t1=0.8 t2=1.0 (exact softmax)", dict(t1=0.8, t2=1.0)),
    ("t1=t2=1 (cross-entropy limit)", dict(t1=1.0, t2=1.0)),
    ("t1=0.8 t2=1.2, 0-d tensor temperatures", dict(t1=torch.tensor(0.8), t2=torch.tensor(1.2))),
]


def paired_seconds(
    baseline: Callable[[], object], candidate: Callable[[], object], *, budget: float, repeat: int
) -> tuple[float, float]:
    """Median CPU seconds per call of both, their runs interleaved.

    CPU time of this process (one intra-op thread) rather than wall time, and the two
    sides alternate, so other work on a shared machine moves both alike. Each run is
    as many calls as fit in ``budget`` seconds.
    """
    for fn in (baseline, candidate, baseline, candidate):  # warm up (and compile)
        fn()
    numbers = []
    for fn in (baseline, candidate):
        start = time.process_time()
        fn()
        numbers.append(max(1, int(budget / max(time.process_time() - start, 1e-9))))
    runs: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, number, out in zip((baseline, candidate), numbers, runs):
            start = time.process_time()
            for _ in range(number):
                fn()
            out.append((time.process_time() - start) / number)
    return statistics.median(runs[0]), statistics.median(runs[1])


def forward_backward(loss_fn: Callable[..., torch.Tensor], logits: torch.Tensor, labels: torch.Tensor):
    def step() -> None:
        logits.grad = None
        loss_fn(logits, labels).backward()

    return step


def row(label: str, seconds: float, baseline: float) -> str:
    return f"  {label:<44} {seconds * 1e3:9.2f} ms  {baseline * 1e3:9.2f} ms  {seconds / baseline:6.2f}x"


def jax_reference(batch: int, classes: int, t1: float, t2: float) -> Callable[[], object] | None:
    """The reference's jitted forward + backward (mean loss), or None if not importable."""
    try:
        import jax
        import jax.numpy as jnp
        from jax_bitempered_loss import loss as ref
    except ImportError:
        return None
    key = jax.random.PRNGKey(0)
    logits = jax.random.normal(key, (batch, classes), dtype=jnp.float32)
    labels = jax.nn.one_hot(jax.random.randint(key, (batch,), 0, classes), classes)
    step = jax.jit(jax.value_and_grad(lambda x: jnp.mean(ref.bi_tempered_logistic_loss(x, labels, t1, t2))))
    return lambda: jax.block_until_ready(step(logits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budget, repeat = (0.2, 3) if args.quick else (0.5, 5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float32, forward + backward, num_iters=5")
    for batch, classes in SHAPES:
        generator = torch.Generator().manual_seed(0)
        logits = torch.randn(batch, classes, generator=generator).requires_grad_()
        labels = torch.randint(0, classes, (batch,), generator=generator)
        cross_entropy = forward_backward(F.cross_entropy, logits, labels)
        print(f"\n[{batch}, {classes}]{'':<38} time  cross-entropy   ratio")
        for label, params in SETTINGS:
            fn = lambda x, y, params=params: bi_tempered_logistic_loss(x, y, **params)  # noqa: E731
            base, seconds = paired_seconds(
                cross_entropy, forward_backward(fn, logits, labels), budget=budget, repeat=repeat
            )
            print(row(label + " (eager)", seconds, base))
        if not args.no_compile:
            torch._dynamo.reset()
            compiled_ce = forward_backward(torch.compile(F.cross_entropy, fullgraph=True), logits, labels)
            for label, params in SETTINGS[:3]:
                compiled = torch.compile(
                    lambda x, y, params=params: bi_tempered_logistic_loss(x, y, **params), fullgraph=True
                )
                base, seconds = paired_seconds(
                    compiled_ce, forward_backward(compiled, logits, labels), budget=budget, repeat=repeat
                )
                print(row(label + " (compiled, vs compiled CE)", seconds, base))
        reference = jax_reference(batch, classes, 0.8, 1.2)
        if reference is None:
            print("  (JAX reference not importable: skipped)")
        else:
            base, seconds = paired_seconds(cross_entropy, reference, budget=budget, repeat=repeat)
            print(row("JAX reference, jit, t1=0.8 t2=1.2", seconds, base))


if __name__ == "__main__":
    main()
