"""Count what the generated-config checks find on many documents (the figures of a closing note).

    .venv/bin/python scripts/fuzz_configs.py [--examples 3000] [--seed 0]

Runs the checks of ``tests/config_fuzz.py`` (the ones ``tests/test_config_robustness.py``
asserts on a small budget) on documents generated from the published JSON Schema
and on mutants of them, and prints: cases tried, schema-valid but rejected (outside
the exceptions the schema lists), schema-invalid but accepted, round-trip failures,
non-finite module runs, and crashes (an exception other than LossConfigError).
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re
import sys
import time

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

import config_fuzz as fuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--examples", type=int, default=3000, help="documents of each kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts: collections.Counter[str] = collections.Counter()
    samples: dict[str, str] = {}

    def note(kind: str, problem: str | None) -> None:
        counts[kind + " tried"] += 1
        if problem:
            label = kind + ": " + re.split(r" from |: | \(", problem, maxsplit=1)[0]
            counts[label] += 1
            samples.setdefault(label, problem[:300])

    budget = settings(
        max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )

    @seed(args.seed)
    @budget
    @given(document=fuzz.schema_instances(), run_seed=st.integers(0, 2**16))
    def schema_valid(document, run_seed):
        note("schema-valid", fuzz.check_schema_valid(document))
        config, error, _ = fuzz.decode(document)
        if error is not None:
            counts["schema-valid rejected by a listed exception"] += 1
        if config is not None:
            note("round trip", fuzz.check_round_trip(config))
            note("module run", fuzz.check_module_runs(config, run_seed))

    @seed(args.seed)
    @budget
    @given(document=fuzz.mutants())
    def mutated(document):
        note("mutant", fuzz.check_accepted_is_schema_valid(document))
        if fuzz.decode(document)[0] is not None:
            counts["mutant accepted"] += 1

    @seed(args.seed)
    @budget
    @given(text=st.text(max_size=80) | st.binary(max_size=80), format=st.sampled_from(["json", "yaml", "toml"]))
    def texts(text, format):
        note("text", fuzz.check_text(text, format))

    start = time.perf_counter()
    for run in (schema_valid, mutated, texts):
        run()
    print(f"{sum(v for k, v in counts.items() if k.endswith('tried'))} checks in {time.perf_counter() - start:.0f} s")
    for key in sorted(counts):
        print(f"  {key}: {counts[key]}")
    for label, sample in samples.items():
        print(f"  e.g. {label}: {sample}")
    return 1 if samples else 0


if __name__ == "__main__":
    sys.exit(main())
