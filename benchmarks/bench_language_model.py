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

* ``linear_cross_entropy`` (the loss from hidden states) against the naive form
  ``F.cross_entropy(hidden @ weight.T)`` and torch's ``F.linear_cross_entropy`` with
  ``acc_policy="compact"``, at ``N`` in {2048, 8192} tokens and ``V`` in {32768, 131072}
  (``H = 1024``), time and peak memory (the issue's targets at ``N = 8192, V = 32768``:
  at most 0.25x the naive peak and no more than torch's; at most 1.15x the naive time
  and no slower than torch's); a size whose naive form would not fit in the memory
  available is skipped with a message. The figures go to a PNG of memory and time
  against ``N`` (``out/bench/language_model.png``).

Time: median of per-round ratios over interleaved rounds (load on a shared machine
falls on both sides of a ratio), with ``torch.set_num_threads(1)`` and with torch's
default thread count. Memory: each variant runs once in a fresh subprocess; the row is
its peak resident memory (``VmHWM``, reset through ``/proc/self/clear_refs`` once the
inputs exist) above the resident memory at that point, so it is what the loss, its
graph and the gradient add on top of the inputs (Linux only).

Run: ``.venv/bin/python benchmarks/bench_language_model.py`` (``make bench`` runs it;
``--quick``: the smaller sizes only, fewer rounds; ``--no-memory``; ``--rounds N``;
``--only sequence|linear``; ``--png PATH``).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _linear_ce_bench as linear_ce  # noqa: E402  (the script's own folder)

SEQUENCE_SIZES = ((8, 256, 8000), (4, 1024, 32000))
LINEAR_TOKENS, LINEAR_VOCABULARIES, LINEAR_WIDTH = (2048, 8192), (32768, 131072), 1024
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


def linear(tokens: tuple[int, ...], vocabularies: tuple[int, ...], rounds: int, png: Path | None) -> None:
    linear_ce.check((512, 64, 4096))  # the three agree (value and gradients) before anything is timed
    names = {
        "naive": "naive F.cross_entropy(hidden @ weight.T) (baseline)",
        "torch": 'torch F.linear_cross_entropy(acc_policy="compact")',
        "lossfn": "lossfn linear_cross_entropy",
    }
    results: dict[tuple[int, int], dict[str, dict[str, float]]] = {}
    print(f"\nlinear_cross_entropy, H = {LINEAR_WIDTH}, float32, {torch.get_num_threads()} thread(s), "
          f"forward+backward; ratios to the naive form (and lossfn's to torch's), same run")
    print(f"| {'N':>5} | {'V':>6} | {'variant':<52} | {'peak MiB':>8} | {'mem ratio':>9} | {'time s':>7} |"
          f" {'time ratio':>10} |")
    print("|" + "|".join("-" * w for w in (7, 8, 54, 10, 11, 9, 12)) + "|")
    for vocabulary in vocabularies:
        for n in tokens:
            shape = (n, LINEAR_WIDTH, vocabulary)
            need, have = linear_ce.naive_bytes(shape), linear_ce.available_bytes()
            if need > 0.8 * have:
                print(f"| {n:>5} | {vocabulary:>6} | skipped: the naive form needs about {need / 2**30:.1f} GiB, "
                      f"{have / 2**30:.1f} GiB are available |")
                continue
            # past 2^28 logits a step takes tens of seconds (torch's compact path two minutes): a round fewer
            measured = linear_ce.measure(shape, rounds if n * vocabulary <= 2**28 else max(1, rounds - 1))
            results[(n, vocabulary)] = measured
            base = measured["naive"]["peak_mib"]
            for variant, row in measured.items():
                print(f"| {n:>5} | {vocabulary:>6} | {names[variant]:<52} | {row['peak_mib']:8.0f} |"
                      f" {row['peak_mib'] / base:8.3f}x | {row['seconds']:7.2f} | {row['time_ratio']:9.3f}x |")
            ours, theirs = measured["lossfn"], measured["torch"]
            print(f"| {n:>5} | {vocabulary:>6} | {'lossfn / torch':<52} | {'':>8} |"
                  f" {ours['peak_mib'] / theirs['peak_mib']:8.3f}x | {'':>7} | {ours['time_ratio_to_torch']:9.3f}x |")
    if png is not None and results:
        plot(results, names, png)


def plot(results: dict[tuple[int, int], dict[str, dict[str, float]]], names: dict[str, str], png: Path) -> None:
    """Peak memory and time against N, a line per variant and vocabulary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (memory, time_) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"naive": "o-", "torch": "s--", "lossfn": "^-"}
    for vocabulary in sorted({v for _, v in results}):
        points = sorted((n, row) for (n, v), row in results.items() if v == vocabulary)
        for variant in linear_ce.VARIANTS:
            ns = [n for n, _ in points]
            label = f"{names[variant].split(' (')[0]}, V={vocabulary}"
            memory.plot(ns, [row[variant]["peak_mib"] for _, row in points], styles[variant], label=label)
            time_.plot(ns, [row[variant]["seconds"] for _, row in points], styles[variant], label=label)
    for axis, title, unit in ((memory, "peak memory, forward+backward", "MiB above the process at rest"),
                              (time_, "time, forward+backward", "seconds")):
        axis.set(title=title, xlabel="N (tokens)", ylabel=unit, xscale="log", yscale="log")
        axis.grid(True, which="both", alpha=0.3)
    handles, labels = memory.get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    figure.suptitle(f"linear cross-entropy, H = {LINEAR_WIDTH}, float32, CPU, {torch.get_num_threads()} thread(s)")
    figure.tight_layout(rect=(0, 0.06 + 0.03 * len({v for _, v in results}), 1, 1))
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=120)
    print(f"wrote {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="[8, 256, 8000] only, 3 rounds")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--only", choices=("sequence", "linear"), default=None)
    parser.add_argument("--png", type=Path, default=Path("out/bench/language_model.png"))
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, label, *dims = args.child
        child(kind, tuple(map(int, dims)), label, None)
        return
    sizes = SEQUENCE_SIZES[:1] if args.quick else SEQUENCE_SIZES
    rounds = args.rounds or (3 if args.quick else 5)
    default_threads = torch.get_num_threads()
    if args.only != "linear":
        for threads in (1, default_threads):
            torch.set_num_threads(threads)
            print(f"\n===== torch.set_num_threads({threads}) =====")
            small(max(rounds, 15))
            classification(rounds)
            # memory does not depend on the thread count much: measured once, with the default threads
            sequences(sizes, rounds, memory=not args.no_memory and threads == default_threads, all_options=False)
            if threads == default_threads == 1:
                break
    if args.only != "sequence":
        torch.set_num_threads(default_threads)
        tokens, vocabularies = (LINEAR_TOKENS[:1], LINEAR_VOCABULARIES[:1]) if args.quick else (
            LINEAR_TOKENS, LINEAR_VOCABULARIES)
        linear(tokens, vocabularies, rounds=2 if args.quick else 3, png=args.png)


if __name__ == "__main__":
    main()
