"""Configs that cannot fool lossfn: generated from the published schema, mutated, and hostile.

Every registered loss is covered (the generator reads the schema, which the
registry derives). The hypothesis budget is fixed and the runs are derandomized,
so this file takes well under a minute; ``LOSSFN_FUZZ_EXAMPLES=5000`` runs a
longer fuzz (and ``scripts/fuzz_configs.py`` counts the outcomes).
"""

from __future__ import annotations

import json
import os

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lossfn
from lossfn.schemas import LossConfigError, inexpressible_checks

import config_fuzz as fuzz

EXAMPLES = int(os.environ.get("LOSSFN_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@FUZZ
@given(document=fuzz.schema_instances())
def test_schema_valid_configs_decode(document):
    assert fuzz.check_schema_valid(document) is None


@FUZZ
@given(document=fuzz.mutants())
def test_accepted_configs_are_schema_valid(document):
    assert fuzz.check_accepted_is_schema_valid(document) is None


@FUZZ
@given(document=fuzz.schema_instances(), seed=st.integers(0, 2**16))
def test_accepted_configs_round_trip_and_run_finite(document, seed):
    config, error, crash = fuzz.decode(document)
    assert crash is None, crash
    if config is None:
        assert fuzz.listed_exception(error), error
        return
    assert fuzz.check_round_trip(config) is None
    assert fuzz.check_module_runs(config, seed) is None


@FUZZ
@given(value=fuzz.json_values)
def test_any_json_value_is_a_config_or_a_clear_error(value):
    assert fuzz.decode(value)[2] is None
    assert fuzz.check_text(json.dumps(value), "json") is None


@FUZZ
@given(text=st.text(max_size=60) | st.binary(max_size=60).map(bytes), format=st.sampled_from(["json", "yaml", "toml"]))
def test_any_text_is_a_config_or_a_clear_error(text, format):
    assert fuzz.check_text(text, format) is None


@FUZZ
@given(document=fuzz.mutants(), format=st.sampled_from(["yaml", "toml"]))
def test_yaml_and_toml_decode_as_json_does(document, format):
    if not fuzz.finite_json(document) or (format == "toml" and _has_null(document)):
        return
    try:
        text = msgspec.yaml.encode(document) if format == "yaml" else msgspec.toml.encode(document)
    except (TypeError, ValueError, msgspec.EncodeError):
        return  # TOML has no null, no mixed arrays of tables, ...
    by_dict, by_text = fuzz.decode(document), fuzz.decode_format(text, format)
    assert by_text[2] is None, by_text[2]
    assert (by_dict[0] is None) == (by_text[0] is None), (by_dict[1], by_text[1])
    if by_dict[0] is not None:
        assert by_dict[0] == by_text[0]


def _has_null(value):
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    return False


def test_the_exceptions_the_schema_cannot_state_are_listed_and_few():
    """JSON Schema has no "as many rows as columns": the schema's description says so."""
    listed = inexpressible_checks()
    assert sorted({entry.split(": ", 1)[1] for entry in listed}) == [
        "a square matrix (C rows of C numbers)",
        "one row per class weight",
    ]
    description = lossfn.json_schema()["description"]
    for entry in listed:
        assert entry in description
    # and each is real: the schema accepts such a config, lossfn does not
    document = {"type": "softmax_cross_entropy", "class_similarities": [[1.0, 0.0]], "class_similarities_temperature": 1}
    assert fuzz.validator().is_valid(document)
    with pytest.raises(LossConfigError, match=r"a square matrix .* - at `\$\.class_similarities`"):
        lossfn.decode_config(document)
    document = {"type": "softmax_cross_entropy", "class_weights": [1, 2, 3], "class_similarities": [[1.0]]}
    assert fuzz.validator().is_valid(document)
    with pytest.raises(LossConfigError, match="one row per class weight"):
        lossfn.decode_config(document)


@pytest.mark.parametrize(
    "document,path",
    [
        ({"type": "softmax_cross_entropy", "class_weights": [0, 0]}, "$.class_weights"),
        ({"type": "softmax_cross_entropy", "class_weights": {"a": 0}}, "$.class_weights"),
        ({"type": "softmax_cross_entropy", "class_similarities_temperature": 1.0}, "$.class_similarities_temperature"),
        ({"type": "huber", "delta": 9e-16}, "$.delta"),
        ({"type": "huber", "weight": 2e15}, "$.weight"),
        ({"type": "bi_tempered_logistic_loss", "num_iters": 1001}, "$.num_iters"),
        ({"type": "softmax_cross_entropy", "ignore_index": 2**31}, "$.ignore_index"),
    ],
)
def test_the_checks_that_were_missing_from_the_schema_are_in_it(document, path):
    assert not fuzz.validator().is_valid(document)
    with pytest.raises(LossConfigError, match=rf"at `{path.replace('$', '[$]')}`"):
        lossfn.decode_config(document)
