"""A hyperparameter sweep as one ``vmap`` against a Python loop over the same settings.

For each sweepable loss that is registered (softmax cross-entropy's label
smoothing, Huber's delta, the bi-tempered loss's t1 x t2, ...), the loss on one
batch is evaluated at 64 settings of the hyperparameter twice: by a Python loop
of 64 calls (with plain floats, as one would write it) and by a single
``torch.func.vmap`` over a 0-d-tensor grid. Both results are checked equal
first; then the script reports the median time of each and their ratio
(loop / vmap, higher is better), measured in the same run, interleaved, so that
load on the machine affects both alike. ``--grad`` times the sweep of the
gradient w.r.t. the logits (``vmap(grad(...))`` against a loop of ``grad``).

    python benchmarks/bench_vmap_sweep.py [--batch 256] [--settings 64] [--grad] [--device cuda]

The numbers depend on the machine; the test suite runs this script's checks
(``check()``), never its timings.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

import torch
from torch.func import grad, vmap

import lossfn


@dataclasses.dataclass(frozen=True)
class Sweep:
    """One loss, a batch of inputs, and a grid of settings of its hyperparameter(s)."""

    loss: str
    function: Callable[..., torch.Tensor]
    params: tuple[str, ...]
    grid: torch.Tensor  # [settings, len(params)]
    logits: torch.Tensor
    labels: torch.Tensor

    @property
    def label(self) -> str:
        return f"{self.loss}({' x '.join(self.params)})"

    def fn(self, logits: torch.Tensor, *values: torch.Tensor | float) -> torch.Tensor:
        return self.function(logits, self.labels, **dict(zip(self.params, values)))

    def loop(self, gradient: bool = False) -> torch.Tensor:
        """64 calls with Python floats, stacked."""
        fn = grad(self.fn) if gradient else self.fn
        return torch.stack([fn(self.logits, *row) for row in self.grid.tolist()])

    def vmapped(self, gradient: bool = False) -> Callable[[], torch.Tensor]:
        """One vmap over the grid (the transform is built once, as in a real sweep)."""
        fn = grad(self.fn) if gradient else self.fn
        sweep = vmap(fn, in_dims=(None, *([0] * len(self.params))))
        columns = self.grid.unbind(1)
        return lambda: sweep(self.logits, *columns)


def _grid(low: float, high: float, n: int) -> torch.Tensor:
    return torch.linspace(low, high, n)


def sweeps(batch: int = 256, classes: int = 10, settings: int = 64, seed: int = 0, device: str = "cpu") -> list[Sweep]:
    """The sweeps of the losses registered now (one grid of ``settings`` points each)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=g)
    labels = torch.randint(0, classes, (batch,), generator=g)
    predictions, targets = torch.randn(batch, 8, generator=g), torch.randn(batch, 8, generator=g)
    side = round(settings**0.5)
    t1, t2 = torch.meshgrid(_grid(0.5, 1.0, side), _grid(1.0, 2.0, side), indexing="ij")
    candidates = [
        ("softmax_cross_entropy", ("label_smoothing",), _grid(0.0, 0.5, settings)[:, None], logits, labels),
        ("huber", ("delta",), _grid(0.1, 3.0, settings)[:, None], predictions, targets),
        ("bi_tempered_logistic_loss", ("t1", "t2"), torch.stack([t1.flatten(), t2.flatten()], 1), logits, labels),
    ]
    registered = lossfn.registered()
    return [
        Sweep(name, registered[name].fn, params, *(t.to(device) for t in tensors))
        for name, params, *tensors in candidates
        if name in registered
    ]


def check(batch: int = 32, settings: int = 8) -> list[str]:
    """vmap equals the loop, for values and gradients, on every sweep; returns their labels."""
    for sweep in sweeps(batch=batch, settings=settings):
        for gradient in (False, True):
            torch.testing.assert_close(sweep.vmapped(gradient)(), sweep.loop(gradient), rtol=1e-5, atol=1e-6)
    return [s.label for s in sweeps(batch=batch, settings=settings)]


def _median_times(
    a: Callable[[], object], b: Callable[[], object], rounds: int, sync: Callable[[], None]
) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, timed alternately (after a warm-up)."""
    for _ in range(2):
        a(), b()
    times_a, times_b = [], []
    for _ in range(rounds):
        for fn, times in ((a, times_a), (b, times_b)):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--settings", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier numbers)")
    parser.add_argument("--grad", action="store_true", help="also sweep the gradient w.r.t. the logits")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None

    check()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} thread(s)"
    print(
        f"{args.settings} settings, batch {args.batch}, torch {torch.__version__}, {where}; "
        f"median of {args.rounds} interleaved rounds"
    )
    print(f"{'sweep':<48} {'loop ms':>9} {'vmap ms':>9} {'loop/vmap':>10}")
    for sweep in sweeps(args.batch, args.classes, args.settings, device=args.device):
        for gradient in (False, True) if args.grad else (False,):
            looped = lambda: sweep.loop(gradient)  # noqa: E731
            loop_s, vmap_s = _median_times(looped, sweep.vmapped(gradient), args.rounds, sync)
            label = ("grad " if gradient else "") + sweep.label
            print(f"{label:<48} {loop_s * 1e3:9.2f} {vmap_s * 1e3:9.2f} {loop_s / vmap_s:9.1f}x")


if __name__ == "__main__":
    main()
