"""`umlstudio` (also `python -m core`): one subcommand per task, each implemented in its core module.

Modules are imported only for the command that runs, so `--help` and the light commands stay fast
and nothing imports torch unless it needs to.
"""

import argparse
import importlib
import sys

from core.errors import Stopped, UserError

# name, help, module, function adding the arguments, function running the command
COMMANDS = [
    ("prepare-model", "dequantise the embedded model once into a fast-loading folder", "core.training.models", "add_prepare_args", "prepare_command"),
    ("data", "show the dataset: rows per split and diagram type; build or filter it", "core.data", "add_data_args", "data_command"),
    ("train", "train one LoRA phase (fresh, resume or continue) from a YAML config", "core.training.train", "add_train_args", "train_command"),
    ("runs", "list training runs: phase, parent, status, steps, losses, learning rate used", "core.training.runs", "add_runs_args", "runs_command"),
    ("advise", "diagnose a run's curves (seed scenarios 1-5), propose the next phase as a YAML, estimate its time", "core.advisor.advise", "add_advise_args", "advise_command"),
    ("checklist", "check the seed's pre-continue list for a phase config (exit 1 when an item fails)", "core.advisor.checklist", "add_checklist_args", "checklist_command"),
    ("evaluate", "evaluate a checkpoint on test prompts: validity, rendering, entities, relations, verdict", "core.evaluation.evaluate", "add_evaluate_args", "evaluate_command"),
    ("compare", "compare 2-4 checkpoints prompt by prompt; write an HTML report with the diagrams side by side", "core.evaluation.evaluate", "add_compare_args", "compare_command"),
    ("render", "render a PlantUML file to SVG or PNG with the local sandboxed PlantUML", "core.inference.render", "add_render_args", "render_command"),
    ("generate", "generate PlantUML for one requirement with a checkpoint; print it, render it to a file", "core.inference.generate", "add_generate_args", "generate_command"),
    ("export", "export a checkpoint: the adapter merged into a transformers folder, or a GGUF file for llama.cpp / Ollama", "core.inference.export", "add_export_args", "export_command"),
]


class Parser(argparse.ArgumentParser):
    """argparse, except that a bad argument is one line on stderr and exit 2, without the usage dump."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} — see {self.prog} --help\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand is listed; only `command`'s module is imported to add its arguments."""
    parser = Parser(
        prog="umlstudio",
        description="Fine-tune a small model to write PlantUML, judge its checkpoints, and continue training honestly.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for name, help_text, module, add_args, run in COMMANDS:
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            getattr(importlib.import_module(module), add_args)(command_parser)
        command_parser.set_defaults(run=(module, run))
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    names = {name for name, *_ in COMMANDS}
    args = build_parser(next((arg for arg in argv if arg in names), None)).parse_args(argv)
    module, run = args.run
    try:
        return getattr(importlib.import_module(module), run)(args) or 0
    except UserError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Stopped):
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
