"""`umlstudio evaluate` and `umlstudio compare` (core/evaluation/evaluate.py does the work)."""

import json
import signal
import sys

from core.cli.options import config_option
from core.errors import UserError


def _dataset_args(parser) -> None:
    config_option(parser, "--dataset", "data.dataset", overrides=True)
    parser.add_argument("--split", default="test", help="which split of a dataset folder (default: test)")
    config_option(parser, "--limit", "evaluation.limit")
    config_option(
        parser,
        "--base",
        "model.base",
        overrides=True,
        lead="the base model behind 'base': ",
        default_text="the checkpoints' base, else smollm2-135m",
    )
    config_option(parser, "--max-new-tokens", "evaluation.max_new_tokens")
    config_option(parser, "--batch-size", "evaluation.batch_size")


def _config(args):
    """The decoding options as an EvaluationConfig; a value the schema refuses is a UserError naming the flag."""
    from pydantic import ValidationError

    from core.config import EvaluationConfig

    try:
        return EvaluationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    except ValidationError as exc:
        problem = exc.errors()[0]
        flag = "--" + str(problem["loc"][0]).replace("_", "-")
        raise UserError(f"{flag} {problem['input']}: {problem['msg'].lower()}") from None


def _stop_on_sigterm() -> None:
    """The studio's Cancel (SIGTERM) ends the worker between two steps, so a store write in flight
    finishes or rolls back; what was stored stays."""

    def stop(signum, frame):
        print("stopped: the outputs made so far are stored", file=sys.stderr, flush=True)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def add_evaluate_args(parser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, help="a checkpoint folder, a run folder (its latest checkpoint) or 'base'"
    )
    _dataset_args(parser)
    parser.add_argument(
        "--repair",
        action="store_true",
        help="repair outputs PlantUML rejects (a second attempt given the error); scores the repaired "
        "outputs and reports the raw and repaired valid rates side by side",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run_evaluate(args) -> int:
    from core.evaluation import evaluate

    _stop_on_sigterm()
    summary = evaluate.evaluate(
        args.checkpoint, args.dataset, args.limit, args.split, base=args.base, config=_config(args), repair=args.repair
    )
    print(json.dumps(summary, default=str) if args.json else evaluate.format_summary(summary))
    return 0


def add_compare_args(parser) -> None:
    parser.add_argument("--model1", required=True, help="the reference checkpoint (or 'base'); deltas are against it")
    parser.add_argument("--model2", required=True, help="a checkpoint to compare with it")
    parser.add_argument("--model3", help="optional third checkpoint")
    parser.add_argument("--model4", help="optional fourth checkpoint")
    _dataset_args(parser)
    parser.add_argument("--out", default="compare.html", help="the HTML report to write (default: compare.html)")


def run_compare(args) -> int:
    from core import paths
    from core.evaluation import evaluate
    from core.evaluation.report import write_compare

    _stop_on_sigterm()
    refs = [ref for ref in (args.model1, args.model2, args.model3, args.model4) if ref]
    paths.out_file(args.out)  # checked before the long comparison, not after it
    result = evaluate.compare(refs, args.dataset, args.limit, args.split, base=args.base, config=_config(args))
    print(evaluate.format_compare(result))
    path = write_compare(result, args.out)
    print(f"wrote {path}")
    return 0


def add_test_model_args(parser) -> None:
    parser.add_argument(
        "--checkpoint", help="a checkpoint folder, a run folder or 'base' (default: the newest checkpoint)"
    )
    parser.add_argument("--limit", type=int, default=5, help="test prompts to generate (default 5)")
    parser.add_argument("--dataset", help="a dataset folder or file (default: data/default)")


def run_test_model(args) -> int:
    """The seed's quick sanity check of one checkpoint: a few test prompts, one line per check (PASS/FAIL),
    exit 1 when a check fails. Checks: it loads and generates; outputs are complete, valid PlantUML,
    render, and have the right diagram type, each at the checkpoint's quality thresholds; and greedy
    decoding gives the same output twice."""
    import contextlib
    import io

    from core import store
    from core.cli import main
    from core.evaluation import evaluate
    from core.inference import generate

    newest = store.checkpoints.newest()
    checkpoint = args.checkpoint or (newest.path if newest else None)
    if checkpoint is None:
        raise UserError("no checkpoint in the store yet — train one, or pass --checkpoint (e.g. base)")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            [
                "evaluate",
                "--checkpoint",
                checkpoint,
                "--limit",
                str(args.limit),
                "--json",
                *(["--dataset", args.dataset] if args.dataset else []),
            ]
        )
    if code:
        return code
    summary = json.loads(printed.getvalue())
    quality = evaluate.quality_for(generate.resolve_checkpoint(checkpoint))
    checks = [
        ("loads and generates", summary["n"], None, summary["n"] > 0),
        (
            "complete (@startuml..@enduml, not cut off)",
            summary["complete_rate"],
            quality.complete_rate,
            summary["complete_rate"] >= quality.complete_rate,
        ),
        (
            "valid PlantUML",
            summary["syntax_valid_rate"],
            quality.valid_rate,
            summary["syntax_valid_rate"] >= quality.valid_rate,
        ),
        ("renders", summary["render_rate"], quality.valid_rate, summary["render_rate"] >= quality.valid_rate),
        (
            "right diagram type",
            summary["type_accuracy"],
            quality.type_accuracy,
            summary["type_accuracy"] >= quality.type_accuracy,
        ),
    ]
    prompt = "A customer places orders; each order has order lines."
    engine = generate.engine_for([checkpoint])
    twice = [engine.generate([prompt], checkpoint, max_new_tokens=64)[0].output for _ in range(2)]
    checks.append(("same output twice (greedy)", None, None, twice[0] == twice[1]))

    print(f"checkpoint {summary['checkpoint']} on {summary['n']} prompts of {summary['dataset']}")
    for name, value, threshold, passed in checks:
        needs = f" (needs {threshold:.3g})" if threshold is not None else ""
        measured = "" if value is None else f"  {value:.3g}{needs}"
        print(f"{'PASS' if passed else 'FAIL'}  {name}{measured}")
    failed = sum(not passed for *_, passed in checks)
    print(f"{len(checks) - failed} of {len(checks)} checks passed")
    return 1 if failed else 0
