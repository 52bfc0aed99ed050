"""The recipes of ``docs/recipes.md`` run, and the sweep benchmark's checks pass.

Each ```python block of the page is a complete program that checks itself against
the loop or closed form it replaces (per-example gradients against a loop of
``backward()``, a vmapped sweep against a loop of calls, a hypergradient against a
finite difference, a Hessian against its closed form); this file runs every block
in a fresh namespace.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys

import pytest
import torch

import lossfn

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECIPES = ROOT / "docs" / "recipes.md"
BENCHMARK = ROOT / "benchmarks" / "bench_vmap_sweep.py"


def blocks(path: pathlib.Path) -> list[tuple[str, str]]:
    """``(id, code)`` for each ```python block, the id from the section it is in."""
    text = path.read_text()
    found, heading, count = [], "top", {}
    for match in re.finditer(r"^## ([^\n]+)$|^```python\n(.*?)^```$", text, re.M | re.S):
        if match.group(1):
            heading = re.sub(r"\W+", "-", match.group(1).lower()).strip("-")
            continue
        count[heading] = count.get(heading, 0) + 1
        # pad with blank lines so that a traceback points at the page's own line
        line = text.count("\n", 0, match.start(2))
        found.append((f"{heading}-{count[heading]}", "\n" * line + match.group(2)))
    return found


BLOCKS = blocks(RECIPES)


def test_the_page_has_its_recipes():
    sections = {name.rsplit("-", 1)[0] for name, _ in BLOCKS}
    assert len(BLOCKS) >= 8, [name for name, _ in BLOCKS]
    assert {"per-example-gradients-vmap-grad-loss", "hyperparameter-sweeps-one-vmap-over-a-grid"} <= sections


@pytest.mark.parametrize("code", [pytest.param(code, id=name) for name, code in BLOCKS])
def test_recipe_runs(code):
    torch.manual_seed(0)
    exec(compile(code, str(RECIPES), "exec"), {"__name__": "__recipe__"})  # noqa: S102


def test_benchmark_sweeps_equal_their_loops(monkeypatch):
    """The benchmark compares like with like: vmap and loop agree on every sweep it times."""
    spec = importlib.util.spec_from_file_location("bench_vmap_sweep", BENCHMARK)
    benchmark = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, benchmark)  # dataclasses look their module up
    spec.loader.exec_module(benchmark)
    labels = benchmark.check(batch=16, settings=4)
    assert "softmax_cross_entropy(label_smoothing)" in labels
    expected = {"huber": "huber(delta)", "bi_tempered_logistic_loss": "bi_tempered_logistic_loss(t1 x t2)"}
    assert set(expected) <= set(lossfn.registered())  # they ship with lossfn
    assert set(expected.values()) <= set(labels)
