"""The ``lossfn`` command line: list, show, schema, validate, demo.

Every page is read off the registry, so a loss registered by a plugin shows up
here with nothing else written. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import textwrap
from collections.abc import Sequence

import msgspec

import lossfn
from lossfn.registry import LIMITS, TINY_EXPECTED, Feature, LossSpec, UnknownLossError, get_loss, losses_for, registered
from lossfn.registry._bounds import is_limit
from lossfn.schemas import (
    LossConfigError,
    config_problems,
    document_configs,
    encode_config,
    json_schema,
    python_type,
    read_document,
)
from lossfn.demo import _positive_int as positive_int  # one parser of counts for both commands
from lossfn.schemas._io import clean

__all__ = ["loss_page", "loss_table", "main"]


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _constraint(param_meta: Sequence[msgspec.Meta]) -> str:
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    parts = [
        f"{symbols[k]} {getattr(m, k)}"
        for m in param_meta
        for k in symbols
        if getattr(m, k) is not None and not is_limit(k, getattr(m, k))  # lossfn's limits: said once, below
    ]
    return ", ".join(parts)


def _parameters(spec: LossSpec) -> str:
    return ", ".join(f"{p.name}={p.default!r}" for p in spec.params) or "–"


def _inputs(spec: LossSpec) -> str:
    """``logits, labels`` (an optional input as ``mask=None``)."""
    return ", ".join(f"{n}=None" if n in spec.optional_inputs else n for n in spec.inputs)


def loss_table(feature: Feature | str | None = None, *, markdown: bool = False) -> str:
    """The table of ``lossfn list``: name, aliases, feature types, inputs, parameters."""
    specs = registered() if feature is None else losses_for(feature)
    header = ("name", "aliases", "feature types", "inputs", "parameters (defaults)")
    rows = [
        (
            spec.name,
            ", ".join(spec.aliases) or "–",
            ", ".join(sorted(f.value for f in spec.features)),
            _inputs(spec),
            _parameters(spec),
        )
        for spec in specs.values()
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += [_md_row(row) for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return "\n".join(fmt.format(*row).rstrip() for row in (header, *rows))


def _md_row(row: Sequence[str]) -> str:
    name, aliases, features, inputs, params = row
    aliases = ", ".join(f"`{a}`" for a in aliases.split(", ")) if aliases != "–" else "–"
    params = params if params == "–" else f"`{params}`"
    return f"| `{name}` | {aliases} | {features} | `{inputs}` | {params} |"


def loss_page(name: str) -> str:
    """The page of ``lossfn show NAME``."""
    spec = get_loss(name)
    params = [f"{p.name}: {python_type(p.annotation)} = {p.default!r}" for p in spec.params]
    arguments = ", ".join([_inputs(spec), "*", *params, "reduction='mean'"])
    signature = f"{spec.name}({arguments})"
    lines = [spec.name, "=" * len(spec.name), "", signature, ""]
    if spec.aliases:
        lines.append(f"aliases:       {', '.join(spec.aliases)}")
    lines.append(f"feature types: {', '.join(sorted(f.value for f in spec.features))}")
    lines.append(f"inputs:        {_inputs(spec)}")
    lines.append(f"kind:          {spec.kind} (the model output it consumes, as Ludwig's get_loss_inputs())")
    lines.append(f"module:        lossfn.nn.{spec.class_name}, forward({_inputs(spec)})")
    lines.append(f"config:        lossfn.schemas.{spec.config.__name__}")
    lines += ["", "Parameters:"]
    for p in spec.params:
        bounds = _constraint(p.meta)
        checks = [c.expected for c in p.checks if c.expected != TINY_EXPECTED]
        extra = [f"default {p.default!r}", *([bounds] if bounds else []), *checks]
        lines.append(f"  {p.name} ({python_type(p.annotation)}; {'; '.join(extra)})")
        lines.append(f"      {p.description}")
    lines.append("  weight (float; default 1.0; >= 0.0)")
    lines.append("      weight of this loss in a multi-output total")
    lines.append("  reduction ('none' | 'mean' | 'sum'; default 'mean')")
    lines.append(f"  Limits: {LIMITS}.")
    lines += ["", textwrap.indent(spec.doc, ""), "", "Example config:", ""]
    example = encode_config(spec.config(), format="dict")
    lines.append(json.dumps(example, indent=2))
    return "\n".join(lines)


def _cmd_list(args: argparse.Namespace) -> int:
    print(loss_table(args.feature, markdown=args.format == "markdown"))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    print(loss_page(args.name))
    return 0


def _emit(text: str, output: str | None) -> int:
    """Write a generated document to ``output`` (saying so on stderr), or to stdout."""
    if output:
        try:
            pathlib.Path(output).write_text(text)
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
        print(f"wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    text = json.dumps(json_schema(args.feature), indent=2, sort_keys=True) + "\n"
    return _emit(text, args.output)


def file_problems(
    path: str, *, feature: str | None = None, max_bytes: int | None = None
) -> tuple[str, int, list[LossConfigError]]:
    """What ``lossfn validate`` finds in one file: ``(what it holds, how many, every fault)``.

    A file holds a loss config, a list of them (TOML: ``[[loss]]`` tables), or a
    loss tree (``outputs:``, see :func:`lossfn.compose.from_config`).
    """
    from lossfn import compose

    try:
        data = read_document(path, max_bytes=max_bytes)
        if compose.is_tree_document(data):
            problems = compose.tree_problems(data)
            outputs = data["outputs"]
            return "loss tree", len(outputs) if isinstance(outputs, dict) else 0, problems
        items = document_configs(data)
    except LossConfigError as exc:
        return "loss config", 0, [exc]
    problems = [p.under(where) for where, item in items for p in config_problems(item, feature=feature)]
    return "loss config", len(items), problems


def _cmd_validate(args: argparse.Namespace) -> int:
    failures = 0
    for path in args.files:
        what, count, problems = file_problems(path, feature=args.feature, max_bytes=args.max_bytes)
        shown = clean(path, limit=300, echo=300)  # a path is shown whole up to 300 characters
        for problem in problems:
            print(f"{shown}: {problem}", file=sys.stderr)
        if problems:
            failures += 1
        elif what == "loss tree":
            print(f"{shown}: ok (loss tree of {count} output{'s' if count != 1 else ''})")
        else:
            print(f"{shown}: ok ({count} loss config{'s' if count != 1 else ''})")
    return 1 if failures else 0


def _cmd_stubs(args: argparse.Namespace) -> int:
    from lossfn.nn._stub import render_stub

    text = render_stub()
    return _emit(text, args.output)


def _parser() -> argparse.ArgumentParser:
    features = [f.value for f in Feature]
    parser = argparse.ArgumentParser(prog="lossfn", description="Loss functions for PyTorch: list, show, validate, export.")
    parser.add_argument("--version", action="version", version=f"lossfn {lossfn.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("list", help="table of the registered losses")
    p.add_argument("--feature", choices=features, help="only losses for this output-feature type")
    p.add_argument("--format", choices=["table", "markdown"], default="table")
    p.set_defaults(run=_cmd_list)

    p = commands.add_parser("show", help="signature, parameters, docstring and an example config of a loss")
    p.add_argument("name", help="loss name or alias")
    p.set_defaults(run=_cmd_show)

    p = commands.add_parser("schema", help="the JSON Schema of the loss configs")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.add_argument("--feature", choices=features, help="only the losses of this feature type")
    p.set_defaults(run=_cmd_schema)

    p = commands.add_parser("validate", help="validate config files (JSON, YAML, TOML)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--feature", choices=features, help="only accept losses of this feature type")
    p.add_argument(
        "--max-bytes",
        type=positive_int,
        default=None,
        help="largest file to read (default: $LOSSFN_MAX_CONFIG_BYTES, else 4 MiB)",
    )
    p.set_defaults(run=_cmd_validate)

    p = commands.add_parser("stubs", help="the typed stub of lossfn.nn's generated classes (for IDEs)")
    p.add_argument("-o", "--output", help="write to this file (lossfn/nn/__init__.pyi) instead of stdout")
    p.set_defaults(run=_cmd_stubs)

    # listed for --help; main() hands `lossfn demo ...` to lossfn.demo.main before parsing
    commands.add_parser("demo", help="train small models on noisy labels: why robust losses exist", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lossfn`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:  # the demo parses its own options (argparse.REMAINDER drops "--x")
        from lossfn import demo

        return demo.main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (UnknownLossError, LossConfigError, CommandError) as exc:
        print(f"lossfn: error: {clean(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `lossfn list | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
