"""The example notebooks run top to bottom, and the repository keeps them with their outputs.

The notebooks are stored executed, so that a reader on GitHub sees their results and figures
(inline PNGs): every code cell has run, in order, without an error. Each notebook in ``examples/``
is also executed afresh with nbclient in a kernel that runs this interpreter (``sys.executable``,
the project's environment): the test writes its own kernelspec under a temporary ``JUPYTER_PATH``,
so no kernel installed on the machine (another Python without lossfn) is picked by accident. The
kernel works in ``examples/`` (as a reader's would); the notebooks write no files.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

import nbclient  # noqa: E402  (declared in the test extra: a missing one is an error, not a skip)
import nbformat  # noqa: E402

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
KERNEL = "lossfn-test-python"
#: stderr lines that are no fault of a notebook (a fresh machine's first matplotlib import)
BENIGN_STDERR = ("Matplotlib is building the font cache",)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernelspec for this interpreter, found through ``JUPYTER_PATH``; its name."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(root))
        patch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's future default; no warning
        patch.setenv("MPLBACKEND", "Agg")
        yield KERNEL


def git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--ignored", "--", "."],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        check=True,  # without git the "no files left behind" check could not fail
    ).stdout


def test_there_are_three_notebooks_at_least():
    names = [path.name for path in NOTEBOOKS]
    assert {"01_tour.ipynb", "02_transforms.ipynb", "03_multi_output.ipynb"} <= set(names), names


#: notebooks whose stored outputs must include a figure
PLOTS = {"02_transforms", "03_multi_output"}


def images(notebook) -> list[int]:
    """The indices of the cells whose outputs include a PNG."""
    return [
        i
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and any("image/png" in output.get("data", {}) for output in cell.outputs)
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_with_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [(i, cell) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    counts = [cell.execution_count for _, cell in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: execution counts {counts}; store it run top to bottom"
    assert any(cell.outputs for _, cell in code), f"{path.name}: no outputs stored; store it executed"
    errors = [i for i, cell in code for output in cell.outputs if output.output_type == "error"]
    assert not errors, f"{path.name}: cells {errors} store an error"
    stderr = [i for i, cell in code for output in cell.outputs if output.get("name") == "stderr"]
    assert not stderr, f"{path.name}: cells {stderr} store output on stderr (a warning?)"
    assert path.stat().st_size < 300_000, f"{path.name}: {path.stat().st_size} bytes; make its figures smaller"
    if path.stem in PLOTS:
        assert images(notebook), f"{path.name}: no figure stored inline"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, kernel):
    before = git_status()
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, kernel_name=kernel, timeout=120, resources={"metadata": {"path": str(EXAMPLES)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and the traceback, on any error

    stderr = [
        (i, line)
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stderr"
        for line in output.text.splitlines()
        if line.strip() and not line.startswith(BENIGN_STDERR)
    ]
    assert not stderr, f"{path.name} wrote to stderr (a warning?): {stderr}"
    assert git_status() == before, "running the notebook left files in the repository"
    if path.stem in PLOTS:
        assert images(notebook), f"{path.name} showed no figure inline"
