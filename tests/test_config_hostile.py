"""Hand-made hostile inputs for the config layer and ``lossfn validate`` / ``lossfn schema``.

Each test pins one behaviour of ``lossfn.schemas._io``, ``lossfn.compose`` and
``lossfn.cli``: files that are not files, documents that expand or nest without
bound, repeated keys, surrogates, control characters, non-finite numbers. The CLI
runs in-process (``main(argv)`` and ``capsys``) except where a pipe is the point;
anything that could block runs under ``signal.alarm`` or a subprocess ``timeout=``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time
import tracemalloc

import pytest

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

import lossfn
import lossfn.compose
from lossfn.cli import main
from lossfn.schemas import LossConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE_TREE = ROOT / "examples" / "multi_output.yaml"

posix_only = pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="needs signal.alarm (POSIX)")


# -- helpers ----------------------------------------------------------------------------


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging) if the block takes more than ``seconds`` (POSIX; elsewhere no guard)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise TimeoutError(f"took more than {seconds} s: lossfn blocked or ran away")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def validate(capsys, *argv: str) -> tuple[int, str, str]:
    """``lossfn validate ARGV``: (exit status, stdout, stderr)."""
    status = main(["validate", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def error_lines(err: str) -> list[str]:
    """stderr's lines, after checking that it holds no traceback and only UTF-8 text."""
    assert "Traceback" not in err
    err.encode("utf-8")  # a lone surrogate would raise here
    return err.splitlines()  # splits on \r, \x1c-\x1e, \x85, \u2028 too: stricter than "\n"


def refused(capsys, path: pathlib.Path | str, *options: str) -> list[str]:
    """Validate one file that must be refused: exit status 1, nothing on stdout; the error lines."""
    status, out, err = validate(capsys, *options, str(path))
    assert status == 1, (out, err)
    assert out == ""
    lines = error_lines(err)
    assert lines, "an invalid file must say why"
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    return lines


def one_error(capsys, path: pathlib.Path | str, *options: str) -> str:
    """The one error line (without the file name) of a file that must be refused."""
    lines = refused(capsys, path, *options)
    assert len(lines) == 1, lines
    return lines[0].removeprefix(f"{path}: ")


def write(directory: pathlib.Path, name: str, text: str | bytes) -> pathlib.Path:
    path = directory / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def padded(text: str, size: int) -> str:
    """A JSON document of exactly ``size`` bytes (trailing blanks are insignificant)."""
    assert len(text.encode()) <= size
    return text + " " * (size - len(text.encode()))


# -- 1. files that are not regular files; the size limit ---------------------------------


def _symlink_to_dev_zero(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "z.json"
    path.symlink_to("/dev/zero")
    return path


def _fifo(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "x.json"
    os.mkfifo(path)  # nobody writes: reading it would block forever
    return path


def _directory(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "d.json"
    path.mkdir()
    return path


def _missing(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "missing.json"


@posix_only
@pytest.mark.skipif(not os.path.exists("/dev/zero") or not hasattr(os, "mkfifo"), reason="needs /dev/zero and FIFOs")
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_symlink_to_dev_zero, "not a regular file (a device, a FIFO or a socket); lossfn reads config files only"),
        (_fifo, "not a regular file (a device, a FIFO or a socket); lossfn reads config files only"),
        (_directory, "not a regular file (a directory); lossfn reads config files only"),
        (_missing, "cannot read: No such file or directory"),
    ],
    ids=["symlink-to-dev-zero", "fifo", "directory", "missing"],
)
def test_a_path_that_is_not_a_regular_file_is_refused_at_once(capsys, tmp_path, make, message):
    path = make(tmp_path)
    start = time.monotonic()
    with deadline(10):
        assert one_error(capsys, path) == message
        with pytest.raises(LossConfigError, match=r"^(not a regular file|cannot read)") as caught:
            lossfn.load_config(path)
    assert str(caught.value) == message
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("how", ["--max-bytes", "LOSSFN_MAX_CONFIG_BYTES"])
def test_a_file_over_the_size_limit_is_refused(capsys, tmp_path, monkeypatch, how):
    big = write(tmp_path, "big.json", padded('{"type": "huber", "delta": 1.0}', 200))
    small = write(tmp_path, "small.json", padded('{"type": "huber"}', 50))
    assert (big.stat().st_size, small.stat().st_size) == (200, 50)
    # without a limit of 100 bytes, both are valid configs
    assert validate(capsys, str(big), str(small)) == (0, f"{big}: ok (1 loss config)\n{small}: ok (1 loss config)\n", "")

    options: tuple[str, ...] = ("--max-bytes", "100") if how == "--max-bytes" else ()
    if how == "LOSSFN_MAX_CONFIG_BYTES":
        monkeypatch.setenv("LOSSFN_MAX_CONFIG_BYTES", "100")
    assert one_error(capsys, big, *options) == "file too large: 200 bytes, more than the limit of 100 (LOSSFN_MAX_CONFIG_BYTES)"
    assert validate(capsys, *options, str(small)) == (0, f"{small}: ok (1 loss config)\n", "")
    # both files at once: one error, one ok, exit status 1
    status, out, err = validate(capsys, *options, str(big), str(small))
    assert (status, out) == (1, f"{small}: ok (1 loss config)\n")
    assert len(error_lines(err)) == 1


def test_load_config_max_bytes(tmp_path, monkeypatch):
    big = write(tmp_path, "big.json", padded('{"type": "huber", "delta": 1.0}', 200))
    with pytest.raises(LossConfigError, match=r"^file too large: 200 bytes, more than the limit of 100 "):
        lossfn.load_config(big, max_bytes=100)
    assert lossfn.load_config(big, max_bytes=200).delta == 1.0
    with pytest.raises(LossConfigError, match=r"^file too large"):
        lossfn.compose.load_config(big, max_bytes=100)
    monkeypatch.setenv("LOSSFN_MAX_CONFIG_BYTES", "100")
    with pytest.raises(LossConfigError, match=r"^file too large: 200 bytes"):
        lossfn.load_config(big)
    assert lossfn.load_config(big, max_bytes=1000).delta == 1.0  # the argument wins over the variable


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "LOSSFN_MAX_CONFIG_BYTES must be a number of bytes; got 'abc'"),
        ("0", "LOSSFN_MAX_CONFIG_BYTES must be at least 1; got 0"),
    ],
)
def test_a_bad_size_limit_variable_is_one_line(capsys, tmp_path, monkeypatch, value, message):
    path = write(tmp_path, "ok.json", '{"type": "huber"}')
    monkeypatch.setenv("LOSSFN_MAX_CONFIG_BYTES", value)
    assert one_error(capsys, path) == message


def test_max_bytes_below_one_is_a_usage_error(capsys, tmp_path):
    path = write(tmp_path, "ok.json", '{"type": "huber"}')
    with pytest.raises(SystemExit) as caught:
        main(["validate", "--max-bytes", "0", str(path)])
    assert caught.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "lossfn validate: error: argument --max-bytes: expected a positive integer; got 0"


# -- 2. YAML aliases: a "billion laughs" ---------------------------------------------------


def _laughs() -> str:
    """~120 KB of YAML that expands to 20,000 x 20,000 = 400 million numbers."""
    return "- &a [" + ",".join(["1"] * 20_000) + "]\n- [" + ", ".join(["*a"] * 19_999) + "]\n"


@posix_only
def test_yaml_billion_laughs_is_refused_quickly_in_bounded_memory(capsys, tmp_path):
    text = _laughs()
    assert 110_000 < len(text) < 130_000
    path = write(tmp_path, "laughs.yaml", text)
    with deadline(30):
        start = time.monotonic()
        message = one_error(capsys, path)
        elapsed = time.monotonic() - start
        assert message.startswith("Document too large: more than ")
        assert message.endswith(" values once YAML aliases are expanded - at `$`")
        assert elapsed < 5.0

        tracemalloc.start()
        try:
            with pytest.raises(LossConfigError, match=r"^Document too large"):
                lossfn.decode_config(text, format="yaml")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 200 * 2**20


# -- 3. depth ------------------------------------------------------------------------------

DEEP_LIST = "[" * 100_000 + "]" * 100_000


def _nested_dicts(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("deep.json", DEEP_LIST, "Malformed JSON: nested too deeply for the parser (lossfn reads at most 64 levels) - at `$`"),
        ("deep.toml", "a = " + DEEP_LIST, "Malformed TOML: nested too deeply for the parser (lossfn reads at most 64 levels) - at `$`"),
        ("deep.yaml", DEEP_LIST, "Malformed YAML: nested too deeply for the parser (lossfn reads at most 64 levels) - at `$`"),
        ("dict70.json", _nested_dicts(70), "Document nested too deeply (at most 64 levels) - at `$.a.a.a"),
    ],
    ids=["json-list", "toml-list", "yaml-flow-list", "json-dict-70"],
)
def test_a_document_nested_too_deeply_is_one_line(capsys, tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with deadline(20):
        assert one_error(capsys, path).startswith(message)
        fmt = name.rsplit(".", 1)[1]
        with pytest.raises(LossConfigError, match="nested too deeply") as caught:
            lossfn.decode_config(text, format=fmt)
    assert caught.value.path.startswith("$.a.a" if name.startswith("dict") else "$")


def test_the_depth_limit_is_64_mappings():
    with pytest.raises(LossConfigError) as within:
        lossfn.decode_config(_nested_dicts(64))
    assert "nested too deeply" not in str(within.value)  # deep, but allowed: the error is the missing `type`
    assert "missing required field `type`" in str(within.value)
    with pytest.raises(LossConfigError, match="nested too deeply"):
        lossfn.decode_config(_nested_dicts(65))
    with pytest.raises(LossConfigError, match="nested too deeply"):
        lossfn.decode_config(json.loads(_nested_dicts(65)))  # a Python dict too


# -- 4. lone surrogates --------------------------------------------------------------------


def test_a_lone_surrogate_is_one_line_not_a_unicode_error(capsys, tmp_path):
    text = json.dumps({"type": "\ud800"}, ensure_ascii=True)
    assert text == '{"type": "\\ud800"}'  # valid JSON text; the string it decodes to is not Unicode
    path = write(tmp_path, "surrogate.json", text)
    assert one_error(capsys, path) == "Invalid string: surrogates not allowed (a lone UTF-16 surrogate?) - at `$.type`"
    for data in (text, text.encode(), {"type": "\ud800"}):
        with pytest.raises(LossConfigError, match=r"^Invalid string") as caught:
            lossfn.decode_config(data)
        assert caught.value.path == "$.type"
        str(caught.value).encode("utf-8")


def test_a_lone_surrogate_in_a_key_is_refused(capsys, tmp_path):
    path = write(tmp_path, "key.json", json.dumps({"type": "huber", "\udc00": 1}))
    assert one_error(capsys, path).startswith("Invalid string: surrogates not allowed")


# -- 5. repeated keys ----------------------------------------------------------------------

DUP_JSON = '{"type": "huber", "delta": -1, "delta": 2}'
DUP_YAML = "type: huber\ndelta: 1\ndelta: 2\n"
DUP_TOML = 'type = "huber"\ndelta = 1.0\ndelta = 2.0\n'


@pytest.mark.parametrize(("text", "fmt"), [(DUP_JSON, "json"), (DUP_YAML, "yaml")])
def test_a_repeated_key_is_refused_by_decode_config(text, fmt):
    with pytest.raises(LossConfigError) as caught:
        lossfn.decode_config(text, format=fmt)
    assert str(caught.value) == "Object contains the key `delta` more than once - at `$`"
    assert caught.value.path == "$"
    with pytest.raises(LossConfigError, match="more than once"):
        lossfn.decode_config(text.encode(), format=fmt)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("dup.json", DUP_JSON, "Object contains the key `delta` more than once - at `$`"),
        ("dup.yaml", DUP_YAML, "Object contains the key `delta` more than once - at `$`"),
        ("type.json", '{"type": "huber", "type": "huber"}', "Object contains the key `type` more than once - at `$`"),
        ("type.yaml", "type: huber\ntype: mean_squared_error\n", "Object contains the key `type` more than once - at `$`"),
        (
            "nested.yaml",
            "type: softmax_cross_entropy\nclass_weights: {a: 1, a: 2}\n",
            "Object contains the key `a` more than once - at `$.class_weights`",
        ),
        ("list.json", '[{"type": "huber"}, {"type": "huber", "delta": 1, "delta": 1}]', "Object contains the key `delta` more than once - at `$[1]`"),
        ("tree.yaml", "outputs: {a: {type: huber}, a: {type: huber}}\n", "Object contains the key `a` more than once - at `$.outputs`"),
        ("leaf.yaml", "outputs:\n  a: {type: huber, delta: 1, delta: 2}\n", "Object contains the key `delta` more than once - at `$.outputs.a`"),
    ],
)
def test_a_repeated_key_is_refused_in_a_file_with_its_path(capsys, tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    assert one_error(capsys, path) == message
    load = lossfn.compose.load_config if "outputs" in text else lossfn.load_config
    with pytest.raises(LossConfigError) as caught:
        load(path)
    assert str(caught.value) == message


def test_toml_refuses_a_repeated_key_itself(capsys, tmp_path):
    path = write(tmp_path, "dup.toml", DUP_TOML)
    message = one_error(capsys, path)
    assert message.startswith("Malformed TOML: Cannot overwrite a value")
    assert message.endswith(" - at `$`")
    for decode in (lambda: lossfn.load_config(path), lambda: lossfn.decode_config(DUP_TOML, format="toml")):
        with pytest.raises(LossConfigError, match=r"^Malformed TOML: Cannot overwrite a value"):
            decode()


# -- 6. messages ---------------------------------------------------------------------------


def test_an_unknown_field_in_a_list_names_the_item_and_the_close_name(capsys, tmp_path):
    path = write(tmp_path, "list.json", '[{"type": "huber"}, {"type": "softmax_cross_entropy", "label_smothing": 0.1}]')
    assert one_error(capsys, path) == "Object contains unknown field `label_smothing`; did you mean 'label_smoothing'? - at `$[1]`"
    with pytest.raises(LossConfigError, match="did you mean 'label_smoothing'") as caught:
        lossfn.load_config(path)
    assert caught.value.path == "$[1]"


TEN_MILLION = "x" * 10_000_000


@pytest.mark.parametrize(
    ("data", "start", "path"),
    [
        ({"type": TEN_MILLION}, "Unknown loss 'xxx", "$.type"),
        ({"type": "huber", TEN_MILLION: 1}, "Object contains unknown field `xxx", "$"),
        ({"type": "huber", "delta": TEN_MILLION}, "Expected `float`, got `str`", "$.delta"),
    ],
    ids=["type", "key", "value"],
)
def test_a_ten_million_character_string_gives_a_short_message(capsys, tmp_path, data, start, path):
    file = write(tmp_path, "long.json", json.dumps(data))
    assert file.stat().st_size > 10_000_000
    with deadline(20):
        status, out, err = validate(capsys, "--max-bytes", "20000000", str(file))
    assert (status, out) == (1, "")
    assert len(err) < 5_000
    (line,) = error_lines(err)
    assert line.startswith(f"{file}: {start}")
    assert line.endswith(f" - at `{path}`")
    with pytest.raises(LossConfigError) as caught:
        lossfn.decode_config(data)
    assert len(str(caught.value)) < 5_000
    assert caught.value.path == path


HOSTILE_KEY = "a\nb\x1b]0;evil\x07\r\u2028\x85c"


def test_control_characters_in_a_key_are_escaped_on_one_line(capsys, tmp_path):
    path = write(tmp_path, "esc.json", json.dumps({"type": "huber", HOSTILE_KEY: 1}))
    message = one_error(capsys, path)
    assert "\x1b" not in message and "\x07" not in message
    assert message == "Object contains unknown field `a\\nb\\x1b]0;evil\\x07\\r\\u2028\\x85c` - at `$`"


def test_control_characters_in_a_file_name_are_escaped(capsys, tmp_path):
    path = write(tmp_path, "bad\n\x1b]0;evil\x07.json", '{"type": "nope"}')
    status, out, err = validate(capsys, str(path))
    assert (status, out) == (1, "")
    (line,) = error_lines(err)
    assert "\x1b" not in line and "\x07" not in line
    assert line.startswith(f"{tmp_path}/bad\\n\\x1b]0;evil\\x07.json: Unknown loss 'nope'")


@pytest.mark.parametrize("text", ['"just a string"\n', "hello\n", "'1.0'\n"])
def test_a_yaml_string_document_says_so(capsys, tmp_path, text):
    path = write(tmp_path, "string.yaml", text)
    message = one_error(capsys, path)
    assert message == "Expected a loss config (an object), got a string - at `$`"
    assert "Malformed JSON" not in message


@pytest.mark.parametrize(
    ("name", "text"),
    [("bom.json", '{"type": "huber"}'), ("bom.toml", 'type = "huber"\n'), ("bom.yaml", "type: huber\n")],
)
def test_a_utf8_byte_order_mark_is_accepted(capsys, tmp_path, name, text):
    path = write(tmp_path, name, b"\xef\xbb\xbf" + text.encode())
    assert validate(capsys, str(path)) == (0, f"{path}: ok (1 loss config)\n", "")
    assert type(lossfn.load_config(path)).__name__ == "HuberConfig"
    assert type(lossfn.decode_config("\ufeff" + text, format=name.rsplit(".", 1)[1])).__name__ == "HuberConfig"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.json", "", "Empty JSON document: expected a loss config - at `$`"),
        ("empty.yaml", "", "Empty YAML document: expected a loss config - at `$`"),
        ("empty.toml", "", "Empty TOML document: expected a loss config - at `$`"),
        ("blank.yaml", "  \n\n", "Empty YAML document: expected a loss config - at `$`"),
        ("list.json", "[]", "Expected at least one loss config, got an empty list - at `$`"),
        ("list.yaml", "[]\n", "Expected at least one loss config, got an empty list - at `$`"),
        ("loss.toml", "loss = []\n", "Expected at least one loss config, got an empty list - at `$.loss`"),
    ],
)
def test_an_empty_document_is_an_error_not_zero_configs(capsys, tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    status, out, err = validate(capsys, str(path))
    assert "ok" not in out
    assert (status, out) == (1, "")
    assert error_lines(err) == [f"{path}: {message}"]
    with pytest.raises(LossConfigError):
        lossfn.load_config(path)


# -- 7. every error ------------------------------------------------------------------------


def test_validate_reports_every_bad_item_of_a_list(capsys, tmp_path):
    path = write(
        tmp_path,
        "three.json",
        json.dumps([{"type": "nope"}, {"type": "huber", "delta": -1}, {"type": "huber"}, {"typo": 1}]),
    )
    lines = refused(capsys, path)
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"{path}: Unknown loss 'nope'")
    assert lines[0].endswith(" - at `$[0].type`")
    assert lines[1] == f"{path}: Expected `float` > 0.0 - at `$[1].delta`"
    assert lines[2].startswith(f"{path}: Object missing required field `type`")
    assert lines[2].endswith(" - at `$[3]`")


def test_validate_reports_every_bad_field_of_one_config(capsys, tmp_path):
    config = {"type": "softmax_cross_entropy", "robust_lambda": 2, "label_smothing": 0.1, "class_weights": [-1]}
    path = write(tmp_path, "three.json", json.dumps(config))
    assert refused(capsys, path) == [
        f"{path}: Expected `float` <= 1.0 - at `$.robust_lambda`",
        f"{path}: Object contains unknown field `label_smothing`; did you mean 'label_smoothing'? - at `$`",
        f"{path}: Expected `float` >= 0.0 - at `$.class_weights[0]`",
    ]
    with pytest.raises(LossConfigError):  # decode_config raises the first of them
        lossfn.decode_config(config)


def test_validate_goes_on_after_a_bad_file(capsys, tmp_path):
    bad = write(tmp_path, "bad.json", '{"type": "huber", "delta": 0}')
    good = write(tmp_path, "good.yaml", "type: huber\n")
    missing = tmp_path / "missing.toml"
    status, out, err = validate(capsys, str(bad), str(missing), str(good))
    assert (status, out) == (1, f"{good}: ok (1 loss config)\n")
    assert error_lines(err) == [
        f"{bad}: Expected `float` > 0.0 - at `$.delta`",
        f"{missing}: cannot read: No such file or directory",
    ]


# -- 8. loss trees -------------------------------------------------------------------------

BAD_TREE = 'outputs:\n  a.b: {type: huber}\n  "": {type: huber}\n  forward: {type: huber}\n  fine: {type: huber}\n'
BAD_NAMES = [
    ("a.b", "An output name may not contain '.' ('a.b': it names a submodule path) - at `$.outputs[\"a.b\"]`"),
    ("", "An output name may not be empty - at `$.outputs[\"\"]`"),
    ("forward", "An output may not be named 'forward': the loss tree's module has an attribute of that name - at `$.outputs.forward`"),
]


def test_the_example_loss_tree_validates(capsys):
    assert EXAMPLE_TREE.is_file()
    assert validate(capsys, str(EXAMPLE_TREE)) == (0, f"{EXAMPLE_TREE}: ok (loss tree of 2 outputs)\n", "")
    tree = lossfn.compose.load_config(EXAMPLE_TREE)
    assert isinstance(tree, lossfn.compose.LossTree)
    assert {name: term.name for name, term in tree.terms.items()} == {"price": "huber", "label": "softmax_cross_entropy"}
    assert tree.weights == {"price": 0.5, "label": 1.0}


def test_bad_output_names_are_each_reported(capsys, tmp_path):
    path = write(tmp_path, "tree.yaml", BAD_TREE)
    assert refused(capsys, path) == [f"{path}: {message}" for _, message in BAD_NAMES]
    with pytest.raises(LossConfigError) as caught:
        lossfn.compose.load_config(path)
    assert str(caught.value) == BAD_NAMES[0][1]
    assert caught.value.path == '$.outputs["a.b"]'


@pytest.mark.parametrize(("name", "message"), [*BAD_NAMES, ("training", None)], ids=["dot", "empty", "forward", "training"])
def test_from_config_refuses_a_bad_output_name_at_decode(name, message):
    with pytest.raises(LossConfigError) as caught:
        lossfn.compose.from_config({"outputs": {name: {"type": "huber"}}})  # not later, in .module()
    if message is not None:
        assert str(caught.value) == message
    assert caught.value.path.startswith("$.outputs")


def test_errors_inside_a_tree_carry_the_output_path(capsys, tmp_path):
    path = write(tmp_path, "tree.json", json.dumps({"outputs": {"p": {"type": "huber", "delta": -1}, "q": {"type": "nope"}}}))
    lines = refused(capsys, path)
    assert len(lines) == 2
    assert lines[0] == f"{path}: Expected `float` > 0.0 - at `$.outputs.p.delta`"
    assert lines[1].endswith(" - at `$.outputs.q.type`")


# -- 9. YAML 1.2 floats --------------------------------------------------------------------


@pytest.mark.parametrize(("literal", "value"), [("1e-3", 0.001), ("1E-3", 0.001), ("+1e-3", 0.001), ("1.5e2", 150.0), (".5e1", 5.0)])
def test_yaml_exponent_floats_are_numbers(capsys, tmp_path, literal, value):
    text = f"type: huber\ndelta: {literal}\n"
    path = write(tmp_path, "delta.yaml", text)
    assert validate(capsys, str(path)) == (0, f"{path}: ok (1 loss config)\n", "")
    assert lossfn.load_config(path).delta == value
    assert lossfn.decode_config(text, format="yaml").delta == value
    tree_path = write(tmp_path, "tree.yaml", f"outputs:\n  p:\n    type: huber\n    delta: {literal}\n")
    assert validate(capsys, str(tree_path)) == (0, f"{tree_path}: ok (loss tree of 1 output)\n", "")
    assert lossfn.compose.load_config(tree_path).terms["p"].params["delta"] == value


# -- 10. a feature's default loss ----------------------------------------------------------


def test_a_config_without_type_gets_the_feature_default(capsys, tmp_path):
    config = lossfn.decode_config({"class_weights": [1, 2]}, feature="category")
    assert type(config).__name__ == "SoftmaxCrossEntropyConfig"
    assert config.class_weights == [1.0, 2.0]

    path = write(tmp_path, "untyped.json", '{"class_weights": [1, 2]}')
    assert validate(capsys, "--feature", "category", str(path)) == (0, f"{path}: ok (1 loss config)\n", "")
    message = one_error(capsys, path)
    assert message.startswith("Object missing required field `type`")
    assert message.endswith(" - at `$`")
    with pytest.raises(LossConfigError, match="`type`"):
        lossfn.decode_config({"class_weights": [1, 2]})


def test_schema_of_a_feature_and_its_default_loss(capsys):
    assert main(["schema", "--feature", "category_distribution"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    schema = json.loads(out)
    assert isinstance(schema, dict) and schema
    assert "SoftmaxCrossEntropyConfig" in json.dumps(schema)
    assert lossfn.default_loss("category_distribution").name == "softmax_cross_entropy"


# -- 11. lossfn schema -o into nowhere -----------------------------------------------------


@pytest.mark.parametrize("where", ["missing-dir", "directory"])
def test_schema_output_that_cannot_be_written_is_one_line(capsys, tmp_path, where):
    target = "/nonexistent/dir/x.json" if where == "missing-dir" else str(tmp_path)
    assert main(["schema", "-o", target]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = error_lines(err)
    assert line.startswith("lossfn: error: ")
    assert line.startswith(f"lossfn: error: cannot write {target}: ")


def test_schema_output_to_a_file_works(capsys, tmp_path):
    target = tmp_path / "schema.json"
    assert main(["schema", "-o", str(target)]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"wrote {target}\n")
    assert json.loads(target.read_text())


# -- 12. non-finite and out-of-range numbers -----------------------------------------------

HUGE_CASES = [
    ("yaml", "type: huber\ndelta: .inf\n", "$.delta"),
    ("yaml", "type: huber\ndelta: .nan\n", "$.delta"),
    ("yaml", "type: huber\ndelta: -.inf\n", "$.delta"),
    ("toml", 'type = "huber"\ndelta = inf\n', "$.delta"),
    ("toml", 'type = "huber"\ndelta = nan\n', "$.delta"),
    ("json", '{"type": "huber", "delta": 1e400}', "$.delta"),
    ("json", '{"type": "huber", "delta": NaN}', "$.delta"),
    ("yaml", "type: binary_weighted_cross_entropy\npositive_class_weight: .inf\n", "$.positive_class_weight"),
    ("toml", 'type = "binary_weighted_cross_entropy"\npositive_class_weight = nan\n', "$.positive_class_weight"),
    ("json", '{"type": "binary_weighted_cross_entropy", "positive_class_weight": 1e400}', "$.positive_class_weight"),
    ("yaml", "type: softmax_cross_entropy\nclass_similarities: [[1, .inf], [0, 1]]\n", "$.class_similarities[0][1]"),
    ("toml", 'type = "softmax_cross_entropy"\nclass_similarities = [[1, 0], [nan, 1]]\n', "$.class_similarities[1][0]"),
    ("json", '{"type": "softmax_cross_entropy", "class_similarities": [[1, 0], [0, 1e400]]}', "$.class_similarities[1][1]"),
    ("json", '{"type": "bi_tempered_logistic_loss", "num_iters": 1000000000000}', "$.num_iters"),
    ("json", '{"type": "sequence_softmax_cross_entropy", "padding_index": 18446744073709551615}', "$.padding_index"),
    ("yaml", "type: sequence_softmax_cross_entropy\npadding_index: 18446744073709551615\n", "$.padding_index"),
    ("json", '{"type": "softmax_cross_entropy", "class_weights": [1e-50, 1e-50, 1e-50]}', "$.class_weights"),
]


@pytest.mark.parametrize(("fmt", "text", "path"), HUGE_CASES)
def test_non_finite_and_out_of_range_numbers_are_refused(capsys, tmp_path, fmt, text, path):
    with pytest.raises(LossConfigError) as caught:
        lossfn.decode_config(text, format=fmt)
    assert caught.value.path == path
    assert str(caught.value).endswith(f" - at `{path}`")
    file = write(tmp_path, f"number.{fmt}", text)
    assert one_error(capsys, file).endswith(f" - at `{path}`")


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"type": "huber", "delta": math.inf}, "$.delta"),
        ({"type": "huber", "delta": math.nan}, "$.delta"),
        ({"type": "binary_weighted_cross_entropy", "positive_class_weight": math.inf}, "$.positive_class_weight"),
        ({"type": "softmax_cross_entropy", "class_similarities": [[1, 0], [0, -math.inf]]}, "$.class_similarities[1][1]"),
        ({"type": "softmax_cross_entropy", "class_weights": [1e-50, 1e-50, 1e-50]}, "$.class_weights"),
    ],
)
def test_non_finite_numbers_in_a_python_dict_are_refused(data, path):
    with pytest.raises(LossConfigError) as caught:
        lossfn.decode_config(data)
    assert caught.value.path == path


# -- pipes (a subprocess is the point) -----------------------------------------------------


def _lossfn(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lossfn", *argv], capture_output=True, text=True, timeout=60, cwd=ROOT, **kwargs)


@pytest.mark.skipif(not os.path.exists("/dev/stdin"), reason="needs /dev/stdin")
def test_a_config_symlinked_to_a_silent_pipe_does_not_block(tmp_path):
    link = tmp_path / "stdin.json"
    link.symlink_to("/dev/stdin")
    # stdin is a pipe whose writer never writes nor closes: reading it would hang
    reader, writer = os.pipe()
    try:
        result = _lossfn("validate", str(link), stdin=reader)
    finally:
        os.close(reader)
        os.close(writer)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"{link}: not a regular file (a device, a FIFO or a socket); lossfn reads config files only"]


@pytest.mark.skipif(fcntl is None or not hasattr(fcntl, "F_SETPIPE_SZ"), reason="needs Linux's F_SETPIPE_SZ")
def test_validate_into_a_closed_pipe_exits_quietly(tmp_path):
    config = write(tmp_path, "ok.json", '{"type": "huber"}')
    reader, writer = os.pipe()
    fcntl.fcntl(writer, fcntl.F_SETPIPE_SZ, 4096)  # far less than the 3,000 lines: printing must hit the closed end
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "lossfn", "validate", *[str(config)] * 3000],
            stdout=writer,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
    finally:
        os.close(writer)
    with open(reader, "rb", buffering=0) as stdout:
        assert stdout.read(len(str(config))) == str(config).encode()
    # the reader has gone away, as with `lossfn validate ... | head -n 1`
    try:
        _, err_bytes = process.communicate(timeout=60)
    finally:
        process.kill()
    err = err_bytes.decode()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
