"""`umlstudio evaluate`, `compare` and `score` (core/evaluation/evaluate.py and metrics.py do the work)."""

import json
import signal
import sys

from core.cli.options import config_option, decoding_options, evaluation_config
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
    decoding_options(parser)


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
    config_option(parser, "--samples", "evaluation.samples")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run_evaluate(args) -> int:
    from core import quiet
    from core.evaluation import evaluate

    _stop_on_sigterm()
    quiet.import_stack("evaluate")  # the model stack's import-time warnings: to a log
    summary = evaluate.evaluate(
        args.checkpoint,
        args.dataset,
        args.limit,
        args.split,
        base=args.base,
        config=evaluation_config(args),
        repair=args.repair,
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
    from core import paths, quiet
    from core.evaluation import evaluate
    from core.evaluation.report import write_compare

    _stop_on_sigterm()
    quiet.import_stack("compare")
    refs = [ref for ref in (args.model1, args.model2, args.model3, args.model4) if ref]
    paths.out_file(args.out)  # checked before the long comparison, not after it
    result = evaluate.compare(
        refs, args.dataset, args.limit, args.split, base=args.base, config=evaluation_config(args)
    )
    print(evaluate.format_compare(result))
    path = write_compare(result, args.out)
    print(f"wrote {path}")
    return 0


def add_score_args(parser) -> None:
    from core.data.prompts import TYPE_NAMES

    parser.add_argument("output", help="the PlantUML file to score (.puml; made anywhere)")
    parser.add_argument("--reference", required=True, help="the PlantUML file it is scored against")
    parser.add_argument(
        "--type",
        type=str.lower,  # types are case-insensitive for people: --type Class
        help=f"the diagram type to score as: {', '.join(TYPE_NAMES)} (default: the reference's)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _puml(name: str, flag: str = "") -> str:
    from pathlib import Path

    path = Path(name)
    if not path.is_file():
        raise UserError(f"{flag}{path}: file not found — pass an existing PlantUML file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{flag}{path}: not UTF-8 text (byte {exc.start}) — save it as UTF-8") from None


def run_score(args) -> int:
    """`umlstudio score OUTPUT.puml --reference REF.puml`: the per-type scores of one diagram against another."""
    from core.evaluation import metrics
    from core.inference.generate import check_type

    check_type(args.type)
    output, reference = _puml(args.output), _puml(args.reference, "--reference ")
    try:
        found = metrics.score_diagram(output, reference, args.type)
    except ValueError:
        raise UserError(
            f"--reference {args.reference}: no PlantUML diagram in it — pass a file with @startuml … @enduml"
        ) from None
    found = {k: v for k, v in found.items() if k not in ("origin", "renders", "tokens", "latency_s")}
    if args.json:
        print(json.dumps(found))
        return 0
    kind = found["diagram_type"]

    def shown(value) -> str:
        if value is None:
            return "— (the reference has none)"
        return ("yes" if value else "no") if isinstance(value, bool) else f"{value:.2f}"

    def f1(key: str) -> str:
        if found[f"{key}_f1"] is None:
            return shown(None)
        return f"{shown(found[f'{key}_f1'])} ({shown(found[f'{key}_precision'])}, {shown(found[f'{key}_recall'])})"

    relation = metrics.RELATIONS.get(kind, "relations by kind and direction")
    lines = [
        ("valid PlantUML", shown(found["syntax_valid"])),
        ("diagram type", f"{found['output_type']} ({'right' if found['type_match'] else f'wanted {kind}'})"),
        ("complete", shown(found["complete"])),
        ("entity F1 (precision, recall)", f1("entity")),
        (f"relation F1: {relation} (precision, recall)", f1("relation")),
    ]
    if kind in ("class", "er"):
        lines += [("attribute F1", shown(found["attribute_f1"])), ("cardinality F1", shown(found["cardinality_f1"]))]
    if kind == "activity":
        lines.append(("branches", shown(found["branch_score"])))
    lines.append(("not in the reference", ", ".join(found["hallucinated_entities"]) or "none"))
    print(f"{args.output} against {args.reference}, scored as a {kind} diagram")
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"  {name:<{width}}  {value}")
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
