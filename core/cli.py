"""`umlstudio` (also `python -m core`): one subcommand per task, each implemented in its core module.

Modules are imported only for the command that runs, so `--help` and the light commands stay fast
and nothing imports torch unless it needs to.
"""

import argparse
import importlib
import sys

from core.errors import UserError

# name, help, module, function adding the arguments, function running the command
COMMANDS = [
    ("prepare-model", "dequantise the embedded model once into a fast-loading folder", "core.models", "add_prepare_args", "prepare_command"),
    ("data", "show the dataset: rows per split and diagram type; build or filter it", "core.data", "add_data_args", "data_command"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="umlstudio",
        description="Fine-tune a small model to write PlantUML, judge its checkpoints, and continue training honestly.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text, module, add_args, run in COMMANDS:
        command = sub.add_parser(name, help=help_text, description=help_text)
        getattr(importlib.import_module(module), add_args)(command)
        command.set_defaults(run=(module, run))
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    module, run = args.run
    try:
        return getattr(importlib.import_module(module), run)(args) or 0
    except UserError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
