"""`umlstudio` (also `python -m core`): the whole command line, one subcommand per task.

Each command group has its module here (data, training, advisor, evaluation, inference): the flags,
and a small `run_*(args)` that calls core's functions by name and prints. Options that mirror a
config key take their default and help from the schema (core/cli/options.py). The module is
imported only for the command that runs, so `--help` and the light commands stay fast and nothing
imports torch unless it needs to.

Two hidden commands are the workers the studio starts: `train-worker` (`python -m core.training.train
--worker PLAN`) and `generate-worker` (`python -m core.inference.generate ...`).
"""

import argparse
import importlib
import sys

from core.errors import Stopped, UserError, no_space

# name, module in core/cli, function adding the arguments, function running it, help (None: a worker, not listed)
COMMANDS = [
    (
        "prepare-model",
        "training",
        "add_prepare_args",
        "run_prepare",
        "dequantise the embedded model once into a fast-loading folder",
    ),
    (
        "data",
        "data",
        "add_data_args",
        "run_data",
        "show the dataset: rows per split and diagram type; build or filter it",
    ),
    (
        "train",
        "training",
        "add_train_args",
        "run_train",
        "train one LoRA phase (fresh, resume or continue) from a YAML config",
    ),
    (
        "runs",
        "training",
        "add_runs_args",
        "run_runs",
        "list training runs: phase, parent, status, steps, losses, learning rate used",
    ),
    (
        "import",
        "adopt",
        "add_import_args",
        "run_import",
        "adopt a run trained elsewhere (Trainer, TRL, Unsloth, LLaMA-Factory, axolotl): its curves, checkpoints, "
        "base model and diagnosis",
    ),
    (
        "advise",
        "advisor",
        "add_advise_args",
        "run_advise",
        "diagnose a run's curves (seed scenarios 1-5), propose the next phase as a YAML, estimate its time",
    ),
    (
        "checklist",
        "advisor",
        "add_checklist_args",
        "run_checklist",
        "check the seed's pre-continue list for a phase config (exit 1 when an item fails)",
    ),
    (
        "evaluate",
        "evaluation",
        "add_evaluate_args",
        "run_evaluate",
        "evaluate a checkpoint on test prompts: validity, rendering, entities, relations, verdict",
    ),
    (
        "compare",
        "evaluation",
        "add_compare_args",
        "run_compare",
        "compare 2-4 checkpoints prompt by prompt; write an HTML report with the diagrams side by side",
    ),
    (
        "score",
        "evaluation",
        "add_score_args",
        "run_score",
        "score one PlantUML diagram against a reference diagram, with the evaluation's per-type scores",
    ),
    (
        "test-model",
        "evaluation",
        "add_test_model_args",
        "run_test_model",
        "quick PASS/FAIL check of one checkpoint on a few test prompts (scripts/test_model.py; exit 1 when a "
        "check fails)",
    ),
    (
        "render",
        "inference",
        "add_render_args",
        "run_render",
        "render a PlantUML file to SVG or PNG with the local sandboxed PlantUML",
    ),
    (
        "generate",
        "inference",
        "add_generate_args",
        "run_generate",
        "generate PlantUML for one requirement with a checkpoint; print it, render it to a file",
    ),
    (
        "choose",
        "inference",
        "add_choose_args",
        "run_choose",
        "mark a checkpoint as the chosen model: generate, serve and the playground use it by default",
    ),
    (
        "serve",
        "inference",
        "add_serve_args",
        "run_serve",
        "serve a checkpoint (default: the chosen model) as an OpenAI-compatible API on 127.0.0.1",
    ),
    (
        "samples",
        "inference",
        "add_samples_args",
        "run_samples",
        "one sample diagram per diagram type, as .puml and .svg, into a folder (scripts/generate_samples.py)",
    ),
    (
        "export",
        "inference",
        "add_export_args",
        "run_export",
        "export a checkpoint: the adapter merged into a transformers folder, or a GGUF file for llama.cpp / Ollama",
    ),
    (
        "store",
        "store",
        "add_store_args",
        "run_store",
        "check the store, or rebuild its runs, checkpoints and metrics from the run folders when it is damaged",
    ),
    ("train-worker", "training", "add_worker_args", "run_worker", None),
    ("generate-worker", "inference", "add_generate_worker_args", "run_generate_worker", None),
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
    for name, module, add_args, run, help_text in COMMANDS:
        listed: dict = {"help": help_text} if help_text else {}  # a parser added without help= is not listed
        command_parser = sub.add_parser(name, description=help_text, **listed)
        if name == command:
            getattr(importlib.import_module(f"core.cli.{module}"), add_args)(command_parser)
        command_parser.set_defaults(run=(f"core.cli.{module}", run))
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    names = {name for name, *_ in COMMANDS}
    args = build_parser(next((arg for arg in argv if arg in names), None)).parse_args(argv)
    module, run = args.run
    from core import quiet  # after parsing: `--help` imports nothing more

    try:
        code = getattr(importlib.import_module(module), run)(args) or 0
        quiet.release()  # the model stack's import-time warnings, held while the input was checked: to a log
        return code
    except UserError as exc:
        quiet.release(keep=False)  # bad input writes nothing, not even a log
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Stopped):
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if not no_space(exc):
            raise
        print(
            f"error: {exc.filename or 'a file'}: the disk is full ({exc.strerror}) — free space there, then run the "
            f"command again",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
