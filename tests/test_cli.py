"""The ``lossfn`` command line: pages read off the registry, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

import lossfn
from lossfn.cli import main


def run(*args: str) -> subprocess.CompletedProcess:
    """``python -m lossfn ...`` in a subprocess, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "lossfn", *args], capture_output=True, text=True, timeout=120)


def test_list_shows_every_loss(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "aliases", "feature", "types", "inputs", "parameters", "(defaults)"]
    for name, spec in lossfn.registered().items():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert all(f.value in line for f in spec.features)
        # the inputs in order, an optional one shown with its default (labels=None)
        inputs = [n if n in spec.required_inputs else f"{n}=None" for n in spec.inputs]
        assert ", ".join(inputs) in line
        assert all(f"{p.name}={p.default!r}" in line for p in spec.params)


def test_list_by_feature(capsys):
    assert main(["list", "--feature", "set"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == sorted(lossfn.losses_for("set"))


def test_show_page(capsys):
    assert main(["show", "softmax_cross_entropy"]) == 0
    page = capsys.readouterr().out
    assert "label_smoothing (float; default 0.0; >= 0.0, < 1.0)" in page
    assert "lossfn.nn.SoftmaxCrossEntropy" in page and ".. math::" in page
    example = json.loads(page[page.index("Example config:") + len("Example config:"):])
    assert lossfn.decode_config(example) == lossfn.get_loss("softmax_cross_entropy").config()


def test_schema_to_stdout_and_file(tmp_path, capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == lossfn.json_schema()
    target = tmp_path / "schema.json"
    assert main(["schema", "-o", str(target), "--feature", "number"]) == 0
    schema = json.loads(target.read_text())
    jsonschema.validate({"type": "mean_squared_error"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "softmax_cross_entropy"}, schema)


GOOD = {
    "one.json": '{"type": "softmax_cross_entropy", "class_weights": [1, 2]}',
    "many.yaml": "- type: mean_squared_error\n- type: sigmoid_cross_entropy\n  weight: 0.5\n",
    "one.toml": 'type = "softmax_cross_entropy"\nlabel_smoothing = 0.1\n',
    "many.toml": '[[loss]]\ntype = "mean_absolute_error"\n\n[[loss]]\ntype = "mean_squared_error"\n',
}

BAD = {
    "range.json": ('{"type": "softmax_cross_entropy", "label_smoothing": 1.5}', "at `$.label_smoothing`"),
    "unknown_field.yaml": ("type: mean_squared_error\ndelta: 1\n", "unknown field `delta`"),
    "unknown_type.json": ('{"type": "softmax_cross_entropi"}', "did you mean 'softmax_cross_entropy'"),
    "missing_type.json": ('{"weight": 1}', "missing required field `type`"),
    "wrong_type.toml": ('type = "mean_squared_error"\nweight = "heavy"\n', "at `$.weight`"),
    "in_list.yaml": ("- type: mean_squared_error\n- type: mean_squared_error\n  weight: -1\n", "at `$[1].weight`"),
    "malformed.json": ('{"type": ', "Malformed JSON"),
    "malformed.yaml": ("type: [unclosed\n", "Malformed YAML"),
    "format.ini": ("type=mse\n", "unknown config format '.ini'"),
}


def test_validate_good_files(tmp_path, capsys):
    paths = []
    for name, text in GOOD.items():
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    assert main(["validate", *paths]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok") == len(GOOD) and "(2 loss configs)" in out


@pytest.mark.parametrize("name", BAD)
def test_validate_bad_files_name_file_and_path(tmp_path, name):
    text, expected = BAD[name]
    path = tmp_path / name
    path.write_text(text)
    result = run("validate", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith(f"{path}: ") and expected in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_validate_names_a_long_path_whole(tmp_path):
    """A path longer than the 80 characters a value is echoed with is still shown whole."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "unknown_field.yaml"
    path.write_text(BAD["unknown_field.yaml"][0])
    result = run("validate", str(path))
    assert result.returncode == 1 and result.stderr.startswith(f"{path}: ")


def test_validate_reports_every_file(tmp_path):
    (tmp_path / "a.json").write_text(BAD["range.json"][0])
    (tmp_path / "b.json").write_text(GOOD["one.json"])
    result = run("validate", str(tmp_path / "a.json"), str(tmp_path / "b.json"), str(tmp_path / "missing.json"))
    assert result.returncode == 1
    assert "b.json: ok" in result.stdout
    assert "a.json" in result.stderr and "missing.json: cannot read" in result.stderr


def test_validate_wrong_feature(tmp_path):
    (tmp_path / "c.json").write_text('{"type": "softmax_cross_entropy"}')
    result = run("validate", "--feature", "number", str(tmp_path / "c.json"))
    assert result.returncode == 1 and "for number features" in result.stderr and "mean_squared_error" in result.stderr


def test_unknown_loss_is_one_line_exit_2():
    result = run("show", "no_such_loss")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("lossfn: error: unknown loss 'no_such_loss'") and "Traceback" not in result.stderr


def test_console_script_and_module_agree():
    assert run("list").stdout == subprocess.run(
        [sys.executable, "-c", "import sys; from lossfn.cli import main; sys.exit(main(['list']))"],
        capture_output=True, text=True, timeout=120,
    ).stdout
