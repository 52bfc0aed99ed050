"""Linear cross-entropy, measured: ``bench_language_model.py`` runs it over its grid of sizes.

At ``N`` tokens, ``H`` hidden features and ``V`` classes (float32, CPU), three ways to
get ``loss`` and the gradients of ``hidden`` and ``weight``:

* naive (the baseline): ``F.cross_entropy(hidden @ weight.T, labels)``, which holds
  the ``[N, V]`` logits and their gradient;
* torch: ``F.linear_cross_entropy(..., options=LinearCrossEntropyOptions(acc_policy="compact"))``,
  torch's chunked path with its most memory-saving policy;
* lossfn: ``lossfn.functional.linear_cross_entropy`` with its defaults.

Memory: each variant runs once in a fresh subprocess; the figure is its peak resident
memory (``VmHWM``, reset through ``/proc/self/clear_refs`` once torch and lossfn are
imported) above the resident memory at that point (Linux only), so it counts the
inputs (at ``N = 8192, H = 1024, V = 32768``: ``hidden`` 32 MiB, ``weight`` 128 MiB),
their gradients (as much again) and whatever the loss holds on top. Time: interleaved
rounds in one process (load on a shared machine falls on both sides of a ratio).

Run alone: ``.venv/bin/python benchmarks/_linear_ce_bench.py --shape N H V``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

VARIANTS = ("naive", "torch", "lossfn")


def inputs(tokens: int, width: int, vocabulary: int):
    generator = torch.Generator().manual_seed(0)
    hidden = (torch.randn(tokens, width, generator=generator) / width**0.5).requires_grad_()
    weight = torch.randn(vocabulary, width, generator=generator).requires_grad_()
    labels = torch.randint(0, vocabulary, (tokens,), generator=generator)
    labels[::17] = -100  # some ignored positions
    return hidden, weight, labels


def loss_of(variant: str):
    if variant == "naive":
        return lambda hidden, weight, labels: F.cross_entropy(hidden @ weight.T, labels)
    if variant == "torch":
        options = torch.nn.LinearCrossEntropyOptions(acc_policy="compact")
        return lambda hidden, weight, labels: F.linear_cross_entropy(hidden, weight, labels, options=options)
    from lossfn.functional import linear_cross_entropy

    return linear_cross_entropy


def step(variant: str, hidden, weight, labels) -> float:
    hidden.grad = weight.grad = None
    loss = loss_of(variant)(hidden, weight, labels)
    loss.backward()
    return loss.item()


def status_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (the peak) of this process, from ``/proc/self/status``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(variant: str, shape: tuple[int, int, int]) -> None:
    """One forward + backward in this fresh process; prints its peak memory as JSON."""
    import lossfn.functional  # noqa: F401  (imported before the baseline, as torch is)

    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the memory in use now
    before = status_mib("VmRSS")
    hidden, weight, labels = inputs(*shape)
    value = step(variant, hidden, weight, labels)
    print(json.dumps({"variant": variant, "peak_mib": status_mib("VmHWM") - before, "loss": value}))


def peaks(shape: tuple[int, int, int], threads: int | None) -> dict[str, dict]:
    results = {}
    for variant in VARIANTS:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", variant, "--shape", *map(str, shape)]
        if threads:
            command += ["--threads", str(threads)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
    return results


def times(shape: tuple[int, int, int], rounds: int) -> dict[str, list[float]]:
    hidden, weight, labels = inputs(*shape)
    measured: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for variant in VARIANTS:
        step(variant, hidden, weight, labels)  # warm up
    for _ in range(rounds):
        for variant in VARIANTS:
            start = time.perf_counter()
            step(variant, hidden, weight, labels)
            measured[variant].append(time.perf_counter() - start)
    return measured


def check(shape: tuple[int, int, int]) -> None:
    """The three agree (value and gradients) before anything is timed."""
    hidden, weight, labels = inputs(*shape)
    results = []
    for variant in VARIANTS:
        value = step(variant, hidden, weight, labels)
        results.append((value, hidden.grad.clone(), weight.grad.clone()))
    for value, grad_hidden, grad_weight in results[1:]:
        assert abs(value - results[0][0]) <= 1e-5 * abs(results[0][0])
        torch.testing.assert_close(grad_hidden, results[0][1], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(grad_weight, results[0][2], rtol=1e-5, atol=1e-7)


def naive_bytes(shape: tuple[int, int, int]) -> int:
    """What the naive form holds at its peak, roughly: the logits, their softmax and their gradient."""
    tokens, width, vocabulary = shape
    return 3 * 4 * tokens * vocabulary + 4 * 4 * vocabulary * width


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def measure(shape: tuple[int, int, int], rounds: int, threads: int | None = None) -> dict[str, dict[str, float]]:
    """``variant -> {peak_mib, seconds, time_ratio}`` (the ratio: the median per-round ratio to naive)."""
    memory = peaks(shape, threads)
    measured = times(shape, rounds)
    base = measured["naive"]
    return {
        variant: {
            "peak_mib": memory[variant]["peak_mib"],
            "seconds": statistics.median(measured[variant]),
            "time_ratio": statistics.median(m / b for m, b in zip(measured[variant], base)),
            "time_ratio_to_torch": statistics.median(m / b for m, b in zip(measured[variant], measured["torch"])),
        }
        for variant in VARIANTS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=3, default=(8192, 1024, 32768))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, tuple(args.shape))
        return
    check((512, 64, 4096))
    print(json.dumps(measure(tuple(args.shape), args.rounds, args.threads), indent=1))


if __name__ == "__main__":
    main()
