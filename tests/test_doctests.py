"""The examples in the docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import lossfn

MODULES = sorted(
    {"lossfn.nn", "lossfn.compose"}
    | {f"lossfn.functional.{m.name}" for m in pkgutil.iter_modules(lossfn.functional.__path__)}
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0


def test_every_public_loss_documents_math_shapes_reductions_and_reference():
    for name, spec in lossfn.registered().items():
        doc = spec.doc
        for section in (".. math::", "Args:", "Returns:", "References:", "Examples:"):
            assert section in doc, f"{name}: docstring lacks {section!r}"
        assert '"none"' in doc or "``\"none\"``" in doc, f"{name}: docstring does not say what reduction='none' returns"
