"""`lossfn demo | head`: when stdout's reader goes away the demo still writes its results."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

TINY = ["--seeds", "1", "--epochs", "20"]


def test_a_closed_stdout_still_writes_the_results(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lossfn", "demo", *TINY, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()  # as `head -1`: one line, then the reader is gone
        proc.stdout.close()
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first.startswith("Two rings")
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert proc.returncode == 0, stderr
    results = json.loads((out / "results.json").read_text())
    assert [loss["label"] for loss in results["losses"]] == ["logistic", "bi-tempered"]
    if importlib.util.find_spec("matplotlib") is not None:  # (without it the demo draws no PNG)
        assert (out / "decision_boundaries.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_closed_stdout_and_stderr_still_write_the_results(tmp_path):
    """`lossfn demo 2>&1 | head`: the progress bar on stderr meets the closed pipe too."""
    out = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lossfn", "demo", *TINY, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        proc.stdout.readline()
        proc.stdout.close()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert json.loads((out / "results.json").read_text())["losses"]
