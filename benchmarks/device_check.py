"""One prepared accelerator check: every registered loss on CUDA against float64 on the CPU.

For each loss of the test catalog (``tests/cases``) and each of its parameter
settings it measures, on the accelerator:

* float32 values (every reduction) and gradients vs the CPU float64 function;
* the generated module moved with ``.to(device)`` vs the function;
* bfloat16 inputs: finite loss and gradient, and their error vs float64;
* logits of magnitude ``Case.extreme`` (1e4): finite loss and gradient;
* labels left on the CPU with the logits on the accelerator: lossfn's clear error;
* ``torch.compile(fullgraph=True)`` of the function and of the module (label check
  on), and ``torch.export`` of the module, vs eager (time-capped);

then times forward+backward of the tempered loss against ``cross_entropy`` in the
same run (ratios). Writes ``$OUT/device_check.json`` (or ``out/device_check.json``).

Run: ``python benchmarks/device_check.py [--device cuda] [--compile-budget 150]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import lossfn  # noqa: E402
from cases import all_cases  # noqa: E402


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    diff = (actual - expected).abs()
    scale = expected.abs().clamp_min(1e-6)
    return float(diff.max()), float((diff / scale).max())


def value_and_grad(fn, inputs, params, reduction="mean"):
    """The loss and its gradient with respect to the first input (the model output)."""
    first = inputs[0].detach().requires_grad_()
    loss = fn(first, *inputs[1:], **params, reduction=reduction)
    (gradient,) = torch.autograd.grad(loss.sum(), first)
    return loss.detach(), gradient


def cast(inputs, dtype=None, device=None):
    """Floating-point inputs to ``dtype``; every tensor to ``device``."""
    out = []
    for x in inputs:
        if isinstance(x, torch.Tensor):
            x = x.to(device=device, dtype=dtype if dtype is not None and x.is_floating_point() else x.dtype)
        out.append(x)
    return tuple(out)


def check_loss(name, case, device, results):
    spec = lossfn.get_loss(name)
    fn = spec.fn
    for index, params in enumerate(case.params):
        row = {"loss": name, "setting": index}
        inputs64 = tuple(case.make(64, torch.float64, torch.Generator().manual_seed(index)))
        inputs32 = cast(inputs64, torch.float32, device)
        worst_value = worst_grad = 0.0
        for reduction in ("none", "mean", "sum"):
            ref_v, ref_g = value_and_grad(fn, inputs64, params, reduction)
            v, g = value_and_grad(fn, inputs32, params, reduction)
            worst_value = max(worst_value, max_error(v, ref_v)[1])
            worst_grad = max(worst_grad, max_error(g, ref_g)[0])
        row["float32_value_rel_err"] = worst_value
        row["float32_grad_abs_err"] = worst_grad
        module = spec.module(**params).to(device)
        row["module_equal"] = bool(torch.equal(module(*inputs32), fn(*inputs32, **params)))
        ref_v, _ = value_and_grad(fn, inputs64, params)
        v, g = value_and_grad(fn, cast(inputs32, torch.bfloat16), params)
        row["bf16_finite"] = bool(torch.isfinite(v).all() and torch.isfinite(g).all())
        row["bf16_value_rel_err"] = max_error(v, ref_v)[1]
        extreme = (inputs32[0].sign() * case.extreme, *inputs32[1:])
        v, g = value_and_grad(fn, extreme, params)
        row["extreme_finite"] = bool(torch.isfinite(v).all() and torch.isfinite(g).all())
        if device.type != "cpu" and index == 0:  # labels left on the CPU: a clear error, not a kernel's
            try:
                fn(inputs32[0], *cast(inputs32[1:], device="cpu"), **params)
                row["cpu_labels_error"] = "none raised"
            except ValueError as exc:
                row["cpu_labels_error"] = str(exc)[:160]
            except Exception as exc:  # noqa: BLE001 - reported
                row["cpu_labels_error"] = f"{type(exc).__name__} (not lossfn's): {exc}"[:160]
        results.append(row)


def check_compile(names, cases, device, budget):
    """torch.compile(fullgraph=True) of the function and of the module (its label check on), and export."""
    rows, spent = [], 0.0
    for name in names:
        if spent > budget:
            rows.append({"loss": name, "compiled": "skipped (time budget)"})
            continue
        case, spec = cases[name], lossfn.get_loss(name)
        params = case.params[-1]
        inputs = cast(case.make(256, torch.float32, torch.Generator().manual_seed(0)), device=device)
        module = spec.module(**params, reduction="none").to(device)
        torch._dynamo.reset()
        both = torch.compile(lambda *xs: (spec.fn(*xs, **params, reduction="none"), module(*xs)), fullgraph=True)
        start = time.perf_counter()
        try:
            out_fn, out_module = both(*inputs)
            eager = spec.fn(*inputs, **params, reduction="none")
            exported = torch.export.export(module, inputs).module()(*inputs)
            rows.append({
                "loss": name, "compiled": True, "rel_err": max_error(out_fn, eager)[1],
                "module_rel_err": max_error(out_module, eager)[1], "export_rel_err": max_error(exported, eager)[1],
                "compile_s": time.perf_counter() - start,
            })
        except Exception as exc:  # report, don't stop the check
            rows.append({"loss": name, "compiled": False, "error": f"{type(exc).__name__}: {exc}"[:300]})
        spent += time.perf_counter() - start
    return rows


def timed(fn, device, repeat=50):
    for _ in range(5):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeat):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / repeat / 1e3
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def bench(device):
    rows = []
    if "bi_tempered_logistic_loss" not in lossfn.registered():
        return rows
    tempered = lossfn.functional.bi_tempered_logistic_loss
    for batch, classes in ((1024, 100), (8192, 1000)):
        logits = torch.randn(batch, classes, device=device, requires_grad=True)
        labels = torch.randint(0, classes, (batch,), device=device)
        losses = {
            "cross_entropy": lambda x: torch.nn.functional.cross_entropy(x, labels),
            "bi_tempered t1=0.8 t2=1.2": lambda x: tempered(x, labels, t1=0.8, t2=1.2),
            "bi_tempered t1=0.8 t2=0.8": lambda x: tempered(x, labels, t1=0.8, t2=0.8),
        }
        for mode in ("eager", "compiled"):
            base = None
            for label, loss in losses.items():
                step = loss if mode == "eager" else torch.compile(loss)
                seconds = timed(lambda: torch.autograd.grad(step(logits), logits), device)
                base = base or seconds
                rows.append({"shape": [batch, classes], "mode": mode, "loss": label, "ms": seconds * 1e3, "ratio": seconds / base})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile-budget", type=float, default=150.0)
    parser.add_argument("--only", nargs="*", help="loss names (default: every loss with a case)")
    args = parser.parse_args()
    device = torch.device(args.device)
    cases = all_cases()
    names = [n for n in (args.only or lossfn.registered()) if n in cases]
    info = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}
    print(info, flush=True)
    values: list[dict] = []
    for name in names:
        check_loss(name, cases[name], device, values)
    for row in values:
        print(json.dumps(row), flush=True)
    compiled = check_compile(names, cases, device, args.compile_budget)
    for row in compiled:
        print(json.dumps(row), flush=True)
    timings = bench(device)
    for row in timings:
        print(json.dumps(row), flush=True)
    out = pathlib.Path(os.environ.get("OUT", ROOT / "out")) / "device_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"info": info, "values": values, "compile": compiled, "bench": timings}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
