# Two commands on a fresh clone: `make demo` (the main job) and `make test`.
# Each creates .venv and installs what it needs. torch is pinned to the CPU build
# that pip finds on this machine's disk, installed before the project (whose own
# requirement is a range) so that pip never reaches for a multi-GB CUDA build.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test schema bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[demo,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lossfn demo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

# regenerate what is derived from the registry and kept in the repository
schema: $(STAMP)
	$(PY) -m lossfn schema -o schemas/lossfn.schema.json
	$(PY) -m lossfn stubs -o lossfn/nn/__init__.pyi
	$(PY) -m lossfn._catalog > docs/catalog.md

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
