"""`lossfn demo`: the command end to end (tiny settings), its data and its training loop.

The noise processes are checked against the geometry computed here from the
coordinates (radius, distance to the true boundary circle), not through the
demo's own `margin` helper.
"""

from __future__ import annotations

import json
import math
import struct
import sys

import pytest
import torch

import lossfn
from lossfn import demo
from lossfn.demo import data, train
from lossfn.demo.model import HIDDEN, Ensemble

TINY = ["--seeds", "1", "--epochs", "20"]


def boundary_radius() -> float:
    """The true boundary: the middle of the gap between the two rings."""
    return (data.RINGS.inner[1] + data.RINGS.outer[0]) / 2


def distance_to_boundary(x: torch.Tensor) -> torch.Tensor:
    return (torch.hypot(x[:, 0], x[:, 1]) - boundary_radius()).abs()


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The accuracy table: condition -> its cells (header under the key 'condition')."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("condition "))
    rows = {}
    for line in [lines[start], *lines[start + 2 : start + 2 + len(data.CONDITIONS)]]:
        cells = [cell.strip() for cell in line.split("  ") if cell.strip()]
        rows[cells[0]] = cells[1:]
    return rows


def assert_png(path) -> None:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    length, kind = struct.unpack(">I4s", raw[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", raw[16:24])
    assert width > 100 and height > 100
    assert raw.rstrip(b"\x00")[-8:-4] == b"IEND", "PNG is truncated"


# -- the command ---------------------------------------------------------------------


def test_default_run_prints_the_table_and_writes_the_png(tmp_path, capsys):
    threads = torch.get_num_threads()
    assert demo.main([*TINY, "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert torch.get_num_threads() == threads  # restored for the caller

    rows = table_rows(out)
    columns = ["logistic", "bi-tempered"]
    assert rows["condition"] == ["(t1, t2)", *columns]
    for condition, (t1, t2) in demo.TEMPERATURES.items():
        assert rows[condition][0] == f"({t1}, {t2})"  # the temperatures are printed
    for condition in data.CONDITIONS:
        cells = rows[condition][-len(columns) :]
        assert len(cells) == len(columns) and all("±" in cell for cell in cells), rows[condition]
        for cell in cells:
            assert 0.0 <= float(cell.split("±")[0]) <= 100.0

    png = tmp_path / "decision_boundaries.png"
    assert f"wrote {png}" in out
    assert_png(png)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [loss["label"] for loss in results["losses"]] == columns
    assert "Traceback" not in err


def test_loss_option_replaces_the_robust_loss_and_repeats(tmp_path, capsys):
    smoothed = '{"type": "softmax_cross_entropy", "label_smoothing": 0.1}'
    rate = '{"type": "softmax_cross_entropy", "label_smoothing": 0.2}'
    argv = [*TINY, "--no-plot", "--out", str(tmp_path), "--loss", smoothed, "--loss", rate]
    assert demo.main(argv) == 0
    out, _ = capsys.readouterr()
    assert table_rows(out)["condition"] == [
        "logistic",
        "softmax_cross_entropy(label_smoothing=0.1)",
        "softmax_cross_entropy(label_smoothing=0.2)",
    ]
    assert not (tmp_path / "decision_boundaries.png").exists()  # --no-plot


BAD_LOSSES = [
    ('{"type": "softmax_cross_entropy", "label_smoothing": 2}', "$.label_smoothing"),
    ('{"type": "softmax_cross_entropy", "temperature": 1}', "temperature"),  # unknown field
    ('{"type": "softmax_crossentropy"}', "$.type"),  # unknown loss, close match offered
    ('{"type": "huber"}', "$.type"),  # a regression loss: not for category features
    ('{"type": ', "Malformed JSON"),
    ('{"type": "softmax_cross_entropy", "class_weights": [1, 2, 3]}', "class_weights"),  # 3 weights, 2 classes
]
BAD_LOSSES.insert(0, ('{"type": "bi_tempered_logistic_loss", "t1": 2.0}', "$.t1"))


@pytest.mark.parametrize(("config", "expected"), BAD_LOSSES, ids=[e for _, e in BAD_LOSSES])
def test_bad_loss_config_is_one_line_and_exit_2(tmp_path, capsys, config, expected):
    assert demo.main([*TINY, "--out", str(tmp_path), "--loss", config]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # fails before any training
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lossfn demo: error: --loss") and expected in lines[0]
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv", [["--seeds", "0"], ["--epochs", "x"], ["--noise-rate", "0.9"], ["--bogus"]])
def test_bad_options_exit_2(capsys, argv):
    assert demo.main(argv) == 2
    assert "usage: lossfn demo" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert demo.main(["--help"]) == 0
    assert "--noise-rate" in capsys.readouterr().out


def test_missing_extras_give_a_hint_instead_of_a_crash(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert demo.main([*TINY, "--out", str(tmp_path), "--loss", '{"type": "softmax_cross_entropy"}']) == 0
    out, err = capsys.readouterr()
    hints = [line for line in err.splitlines() if "pip install 'lossfn[demo]'" in line]
    assert len(hints) == 2  # one line for tqdm, one for matplotlib
    assert "Traceback" not in err
    assert table_rows(out)["condition"] == ["logistic"]
    assert not (tmp_path / "decision_boundaries.png").exists()
    assert (tmp_path / "results.json").exists()


# -- data -----------------------------------------------------------------------------


def test_rings_follow_the_geometry():
    x, y = data.sample(1001, torch.Generator().manual_seed(0))
    assert x.shape == (1001, 2) and y.shape == (1001,) and y.dtype == torch.long
    radius = torch.hypot(x[:, 0], x[:, 1])
    (lo0, hi0), (lo1, hi1) = data.RINGS.inner, data.RINGS.outer
    eps = 1e-5
    assert int((y == 0).sum()) == 500 and int((y == 1).sum()) == 501
    assert bool(((radius[y == 0] >= lo0 - eps) & (radius[y == 0] <= hi0 + eps)).all())
    assert bool(((radius[y == 1] >= lo1 - eps) & (radius[y == 1] <= hi1 + eps)).all())
    assert torch.equal(y, (radius > boundary_radius()).long())  # true labels: which side of the circle
    again, _ = data.sample(1001, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)  # seeded


@pytest.mark.parametrize("rate", [0.05, 0.1, 1 / 3])
@pytest.mark.parametrize("condition", data.CONDITIONS)
def test_noise_flips_the_intended_fraction_at_the_intended_margins(condition, rate):
    n = 600
    x, y = data.sample(n, torch.Generator().manual_seed(1))
    noisy, flipped = data.corrupt(x, y, condition, rate, torch.Generator().manual_seed(2))

    # which labels are wrong, judged from the geometry alone
    wrong = noisy != (torch.hypot(x[:, 0], x[:, 1]) > boundary_radius()).long()
    assert torch.equal(wrong, flipped)
    k = 0 if condition == "clean" else round(rate * n)
    assert int(wrong.sum()) == k

    distance = distance_to_boundary(x)
    ranked = distance.sort().values
    region = min(n, data.POOL * k)
    if condition == "small-margin":  # all flips among the `region` points nearest the boundary
        assert bool((distance[wrong] <= ranked[region - 1]).all())
    elif condition == "large-margin":  # all flips among the `region` points farthest from it
        assert bool((distance[wrong] >= ranked[n - region]).all())
    elif condition == "random" and k > 0:  # flips on both sides of the median distance
        median = distance.median()
        assert bool((distance[wrong] < median).any()) and bool((distance[wrong] > median).any())


def test_margin_noise_leaves_the_region_mostly_right():
    n, rate = 900, 0.1
    x, y = data.sample(n, torch.Generator().manual_seed(3))
    for condition in ("small-margin", "large-margin"):
        _, flipped = data.corrupt(x, y, condition, rate, torch.Generator().manual_seed(4))
        order = distance_to_boundary(x).argsort(descending=condition == "large-margin")
        region = order[: data.POOL * round(rate * n)]
        assert int(flipped[region].sum()) == round(rate * n) == len(region) // data.POOL


def test_noise_rejects_bad_arguments():
    x, y = data.sample(10, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="unknown label condition"):
        data.corrupt(x, y, "adversarial", 0.1, torch.Generator())
    with pytest.raises(ValueError, match="noise rate"):
        data.corrupt(x, y, "random", 1.5, torch.Generator())


# -- model and training ------------------------------------------------------------------


def test_copies_are_independent_of_how_many_run_together():
    one, two = Ensemble([7]), Ensemble([7, 8])
    assert [tuple(w.shape[1:]) for w in one.weights] == [(2, HIDDEN[0]), (HIDDEN[0], HIDDEN[1]), (HIDDEN[1], 2)]
    for w1, w2 in zip(one.weights, two.weights):
        assert torch.equal(w1[0], w2[0]) and not torch.equal(w2[0], w2[1])

    g = torch.Generator().manual_seed(5)
    x, y = data.sample(64, g)
    other, _ = data.sample(64, g)
    loss = lossfn.build({"type": "softmax_cross_entropy"}, reduction="none")
    train.fit(one, x[None], y[None, None], [loss], epochs=5)
    train.fit(two, torch.stack([x, other]), torch.stack([y, 1 - y])[None], [loss], epochs=5)
    for w1, w2 in zip(one.weights, two.weights):  # no gradient crosses between copies
        torch.testing.assert_close(w1[0], w2[0])


def test_training_on_clean_labels_beats_chance_clearly():
    g = torch.Generator().manual_seed(0)
    x, y = data.sample(400, g)
    x_test, y_test = data.sample(1000, g)
    model = Ensemble([0])
    loss = lossfn.build({"type": "softmax_cross_entropy"}, reduction="none")
    final = train.fit(model, x[None], y[None, None], [loss], epochs=150, lr=0.01)
    assert final.shape == (1, 1) and float(final) < math.log(2)  # below the loss of a coin toss
    assert float(train.accuracy(model, x_test[None], y_test[None])) > 0.9  # chance is 0.5


def test_a_loss_without_per_example_values_is_refused():
    logits, labels = torch.zeros(2, 3, 2), torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="one loss per example"):
        train.per_copy_loss(lossfn.build({"type": "softmax_cross_entropy"}), logits, labels)  # reduction="mean"


def test_the_robust_loss_ships_with_lossfn():
    """The demo's second column is a registered loss, not an optional one."""
    assert demo.ROBUST in lossfn.registered()
