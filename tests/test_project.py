"""What the repository ships stays true: the stored JSON Schema, the README's table and code."""

from __future__ import annotations

import json
import pathlib
import re

import lossfn
from lossfn.cli import loss_table

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_stored_schema_matches_the_code():
    stored = json.loads((ROOT / "schemas" / "lossfn.schema.json").read_text())
    assert stored == lossfn.json_schema(), "schemas/lossfn.schema.json drifted: run `make schema`"


def test_stored_stub_matches_the_registry():
    from lossfn.nn._stub import render_stub

    stub = (ROOT / "lossfn" / "nn" / "__init__.pyi").read_text()
    assert stub == render_stub(), "lossfn/nn/__init__.pyi drifted: run `make schema`"
    compile(stub, "__init__.pyi", "exec")  # valid Python syntax


def test_readme_loss_table_is_current():
    text = README.read_text()
    match = re.search(r"<!-- losses:begin -->\n(.*?)\n<!-- losses:end -->", text, re.S)
    assert match, "README.md lost its <!-- losses:begin/end --> markers"
    assert match.group(1).strip() == loss_table(markdown=True).strip(), (
        "README's loss table is stale: paste `lossfn list --format markdown` between the markers"
    )


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    """Every ```python block of the README runs, in order, in one namespace."""
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102


def test_readme_quick_start_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
