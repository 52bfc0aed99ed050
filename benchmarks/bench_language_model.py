"""Language-model cross-entropy: time and peak memory of forward + backward against ``F.cross_entropy``.

The baseline is ``torch.nn.functional.cross_entropy`` with ``ignore_index`` on the
already-shifted, flattened tokens (for the next-token loss: ``logits[:, :-1]`` made
contiguous *before* the clock starts, a leaf of its own), measured in the same run:

* ``sequence_softmax_cross_entropy`` and ``next_token_softmax_cross_entropy`` with
  their default options at ``[8, 256, 8000]`` and ``[4, 1024, 32000]`` float32 (the
  issue's target: at most 1.10x in time and in peak memory), then with the options
  that need passes of their own (label smoothing, class weights, the robust mixture,
  the confidence penalty, ``z_loss``): those may cost more, and the table says how much;
* ``softmax_cross_entropy`` at ``[4096, 1000]`` and at ``[32, 10]``, where the Python
  around the math dominates; and at ``[32, 10]`` the module
  ``lossfn.nn.SoftmaxCrossEntropy()`` (its default label check on) against a
  hand-written ``nn.Module`` that calls ``F.cross_entropy`` (target: at most 1.3x).

Time: median of per-round ratios over interleaved rounds (load on a shared machine
falls on both sides of a ratio), with ``torch.set_num_threads(1)`` and with torch's
default thread count. Memory: each variant runs once in a fresh subprocess; the row is
its peak resident memory (``VmHWM``, reset through ``/proc/self/clear_refs`` once the
inputs exist) above the resident memory at that point, so it is what the loss, its
graph and the gradient add on top of the inputs (Linux only).

Run: ``.venv/bin/python benchmarks/bench_language_model.py`` (``--quick``: the
smaller sequence size only, fewer rounds; ``--no-memory``; ``--rounds N``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import lossfn
import lossfn.functional as LF

SEQUENCE_SIZES = ((8, 256, 8000), (4, 1024, 32000))
SEQUENCE_PAD = 2  # sequence_softmax_cross_entropy's default padding_index (Ludwig's <PAD>)
NEXT_PAD = -100  # next_token_softmax_cross_entropy's default (Hugging Face's ignored label)
#: z_loss rows only where the losses have it (so the script also measures a tree from before it)
HAS_Z = "z_loss" in inspect.signature(LF.softmax_cross_entropy).parameters


def tokens(shape: tuple[int, int, int], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch, steps, vocabulary = shape
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, steps, vocabulary, generator=generator).requires_grad_()
    labels = torch.randint(3, vocabulary, (batch, steps), generator=generator)
    for b in range(batch):  # ragged sequences: a padded tail, longer for later rows
        labels[b, steps - (b * steps) // (2 * batch) - 1:] = pad
    return logits, labels


def variants(kind: str, shape: tuple[int, int, int]) -> dict[str, Callable[[], torch.Tensor]]:
    """name -> a closure running one forward (the caller adds ``.backward()``); the first is the baseline."""
    vocabulary = shape[2]
    if kind == "sequence":
        logits, labels = tokens(shape, SEQUENCE_PAD)
        flat, flat_labels = logits.view(-1, vocabulary), labels.view(-1)
        loss, pad = LF.sequence_softmax_cross_entropy, SEQUENCE_PAD
        base = {"F.cross_entropy, ignore_index=2 (baseline)": lambda: F.cross_entropy(
            flat, flat_labels, ignore_index=SEQUENCE_PAD)}
    else:
        logits, labels = tokens(shape, NEXT_PAD)
        shifted = logits.detach()[:, :-1].contiguous().requires_grad_()  # shifted before the clock starts
        flat, flat_labels = shifted.view(-1, vocabulary), labels[:, 1:].reshape(-1)
        loss, pad = LF.next_token_softmax_cross_entropy, NEXT_PAD
        base = {"F.cross_entropy on shifted tokens (baseline)": lambda: F.cross_entropy(
            flat, flat_labels, ignore_index=NEXT_PAD)}
    weights = torch.linspace(0.5, 1.5, vocabulary)
    options = {
        "": {},
        "z_loss=1e-4": {"z_loss": 1e-4},
        "label_smoothing=0.1": {"label_smoothing": 0.1},
        "class_weights": {"class_weights": weights},
        "robust_lambda=0.1": {"robust_lambda": 0.1},
        "confidence_penalty=0.1": {"confidence_penalty": 0.1},
    }
    name = loss.__name__
    out = dict(base)
    for label, kwargs in options.items():
        if "z_loss" in kwargs and not HAS_Z:
            continue
        out[f"{name}({label})"] = lambda kwargs=kwargs: loss(logits, labels, **kwargs)
    del pad
    return out


def step(fn: Callable[[], torch.Tensor]) -> None:
    fn().backward()


def child(kind: str, shape: tuple[int, int, int], label: str, threads: int | None) -> None:
    """One forward + backward of one variant in this fresh process; prints its peak memory as JSON."""
    if threads:
        torch.set_num_threads(threads)
    fn = variants(kind, shape)[label]
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) is reset to the memory in use now
    before = status_mib("VmRSS")
    step(fn)
    print(json.dumps({"peak_mib": status_mib("VmHWM") - before}))


def status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak(kind: str, shape: tuple[int, int, int], label: str) -> float:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, label, *map(str, shape)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def interleaved(functions: dict[str, Callable[[], object]], rounds: int, number: int = 1) -> dict[str, tuple[float, float]]:
    """label -> (median seconds per call, median per-round ratio to the first label)."""
    for fn in functions.values():
        fn()  # warm up
    times: dict[str, list[float]] = {label: [] for label in functions}
    for _ in range(rounds):
        for label, fn in functions.items():
            if number == 1:
                start = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - start)
            else:
                times[label].append(timeit.timeit(fn, number=number) / number)
    base = times[next(iter(functions))]
    return {
        label: (statistics.median(t), statistics.median(m / b for m, b in zip(t, base)))
        for label, t in times.items()
    }


def table(title: str, results: dict[str, tuple[float, float]], memory: dict[str, float] | None = None) -> None:
    print(f"\n{title}")
    head = f"| {'variant':<58} | {'time':>11} | {'time ratio':>10} |"
    print(head + (f" {'peak MiB':>9} | {'mem ratio':>9} |" if memory else ""))
    print("|" + "-" * 60 + "|" + "-" * 13 + "|" + "-" * 12 + "|" + ("-" * 11 + "|" + "-" * 11 + "|" if memory else ""))
    base_memory = next(iter(memory.values())) if memory else None
    for label, (seconds, ratio) in results.items():
        line = f"| {label:<58} | {seconds * 1e3:8.2f} ms | {ratio:9.2f}x |"
        if memory:
            line += f" {memory[label]:9.1f} | {memory[label] / base_memory:8.2f}x |"
        print(line)


class HandWritten(torch.nn.Module):
    """What one writes by hand: a module whose forward calls ``F.cross_entropy``."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)


def small(rounds: int) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 10, generator=generator, requires_grad=True)
    labels = torch.randint(0, 10, (32,), generator=generator)
    hand, derived = HandWritten(), lossfn.nn.SoftmaxCrossEntropy()
    torch.testing.assert_close(derived(logits, labels), hand(logits, labels))
    number = 300
    functions = {
        "F.cross_entropy": lambda: F.cross_entropy(logits, labels).backward(),
        "LF.softmax_cross_entropy": lambda: LF.softmax_cross_entropy(logits, labels).backward(),
    }
    if HAS_Z:
        functions["LF.softmax_cross_entropy(z_loss=1e-4)"] = lambda: LF.softmax_cross_entropy(
            logits, labels, z_loss=1e-4).backward()
    table("[32, 10] pure function, forward+backward (ratio vs F.cross_entropy)", interleaved(functions, rounds, number))
    table("[32, 10] pure function, forward (ratio vs F.cross_entropy)", interleaved({
        "F.cross_entropy": lambda: F.cross_entropy(logits, labels),
        "LF.softmax_cross_entropy": lambda: LF.softmax_cross_entropy(logits, labels),
    }, rounds, number))
    table("[32, 10] module, forward+backward (ratio vs a hand-written module calling F.cross_entropy)", interleaved({
        "hand-written module": lambda: hand(logits, labels).backward(),
        "lossfn.nn.SoftmaxCrossEntropy() (label check on)": lambda: derived(logits, labels).backward(),
    }, rounds, number))
    table("[32, 10] module, forward (ratio vs a hand-written module calling F.cross_entropy)", interleaved({
        "hand-written module": lambda: hand(logits, labels),
        "lossfn.nn.SoftmaxCrossEntropy() (label check on)": lambda: derived(logits, labels),
    }, rounds, number))


def classification(rounds: int) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4096, 1000, generator=generator, requires_grad=True)
    labels = torch.randint(0, 1000, (4096,), generator=generator)
    functions = {
        "F.cross_entropy": lambda: step(lambda: F.cross_entropy(logits, labels)),
        "LF.softmax_cross_entropy": lambda: step(lambda: LF.softmax_cross_entropy(logits, labels)),
    }
    if HAS_Z:
        functions["LF.softmax_cross_entropy(z_loss=1e-4)"] = lambda: step(
            lambda: LF.softmax_cross_entropy(logits, labels, z_loss=1e-4))
    table("[4096, 1000] softmax_cross_entropy, forward+backward (ratio vs F.cross_entropy)",
          interleaved(functions, rounds))


def sequences(sizes, rounds: int, memory: bool, all_options: bool) -> None:
    for shape in sizes:
        for kind in ("sequence", "next_token"):
            functions = variants(kind, shape)
            if not all_options and shape != sizes[0]:
                functions = dict(list(functions.items())[:3])  # baseline, defaults, z_loss
            values = {label: fn().item() for label, fn in list(functions.items())[:2]}
            first, second = values.values()
            assert abs(first - second) <= 1e-5 * abs(first), values  # the defaults are torch's number
            results = interleaved({label: (lambda fn=fn: step(fn)) for label, fn in functions.items()}, rounds)
            peaks = {label: peak(kind, shape, label) for label in functions} if memory else None
            table(f"{list(shape)} {kind}, forward+backward, {torch.get_num_threads()} thread(s)", results, peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="[8, 256, 8000] only, 3 rounds")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, label, *dims = args.child
        child(kind, tuple(map(int, dims)), label, None)
        return
    sizes = SEQUENCE_SIZES[:1] if args.quick else SEQUENCE_SIZES
    rounds = args.rounds or (3 if args.quick else 5)
    default_threads = torch.get_num_threads()
    for threads in (1, default_threads):
        torch.set_num_threads(threads)
        print(f"\n===== torch.set_num_threads({threads}) =====")
        small(max(rounds, 15))
        classification(rounds)
        # memory does not depend on the thread count much: measured once, with the default threads
        sequences(sizes, rounds, memory=not args.no_memory and threads == default_threads, all_options=False)
        if threads == default_threads == 1:
            break


if __name__ == "__main__":
    main()
