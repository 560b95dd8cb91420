"""`umlstudio render`, `generate`, `choose`, `serve` and `export`, and the studio's generation worker
(`generate-worker`, also started as `python -m core.inference.generate`). core/inference/ does the work."""

import math
import signal
import sys
import time
from pathlib import Path

from core.cli.options import config_option, decoding_options, evaluation_config
from core.errors import Stopped, UserError

MAX_TIMEOUT_S = 600.0


# ---- render ---------------------------------------------------------------------------------------


def timeout_arg(text: str) -> float:
    """`--timeout`: seconds, a finite number in (0, 600]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value <= MAX_TIMEOUT_S):  # also false for nan
        raise UserError(f"--timeout {text[:40]!r}: give seconds between 0 and {MAX_TIMEOUT_S:g}, e.g. --timeout 10")
    return value


def add_render_args(parser) -> None:
    from core.inference.render import DEFAULT_TIMEOUT_S

    parser.add_argument("file", help="a PlantUML source file (.puml)")
    parser.add_argument("--out", required=True, help="the image to write: a .svg or .png file")
    parser.add_argument(
        "--timeout",
        default=str(DEFAULT_TIMEOUT_S),
        help=f"seconds the whole render may take, PlantUML's start included (default {DEFAULT_TIMEOUT_S:g})",
    )


def run_render(args) -> int:
    """`umlstudio render FILE.puml --out FILE.svg|png`: answers within --timeout, start-up included."""
    from core import paths
    from core.inference.render import FORMATS, render

    started = time.monotonic()
    timeout_s = timeout_arg(args.timeout)
    source_path, out = Path(args.file), paths.out_file(args.out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UserError(f"--out {out}: unknown image type '{out.suffix or '(none)'}' — end the name in .svg or .png")
    if not source_path.is_file():
        raise UserError(f"{source_path}: file not found — pass an existing PlantUML file")
    try:
        source = source_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{source_path}: not UTF-8 text (byte {exc.start}) — save it as UTF-8") from None
    result = render(source, fmt, timeout_s=timeout_s, deadline=started + timeout_s)
    if result.status == "error":
        where = f"{source_path}:{result.error_line}" if result.error_line else str(source_path)
        raise UserError(
            f"{where}: PlantUML error: {str(result.error_message)[:200]} — fix that line; {out} not written"
        )
    if not result.ok:
        raise UserError(f"{source_path}: {result.error_message}; {out} not written")
    out.write_bytes(result.data)
    print(f"wrote {out} ({len(result.data):,} bytes, PlantUML {result.plantuml_version})")
    return 0


# ---- generate -------------------------------------------------------------------------------------


def add_generate_args(parser) -> None:
    from core.data.prompts import TYPE_NAMES

    parser.add_argument(
        "--checkpoint",
        help="a checkpoint folder, a run folder (its latest checkpoint) or 'base' "
        "(default: the chosen model, see umlstudio choose)",
    )
    parser.add_argument("--prompt", required=True, help="the requirement to turn into PlantUML")
    parser.add_argument(
        "--type",
        type=str.lower,  # types are case-insensitive for people: --type Class
        help=f"the wanted diagram type, stated in the prompt: {', '.join(TYPE_NAMES)} "
        "(default: none stated, the model picks)",
    )
    parser.add_argument("--out", help="also write the diagram to FILE.svg, FILE.png or FILE.puml")
    config_option(parser, "--base", "model.base", overrides=True, lead="the base model for --checkpoint base: ")
    config_option(parser, "--max-new-tokens", "evaluation.max_new_tokens")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="check the output with PlantUML and repair it when rejected (the raw output is reported too)",
    )
    decoding_options(parser)


def run_generate(args) -> int:
    from core import quiet
    from core.data import prompts
    from core.inference import chosen, generate

    out = Path(args.out) if args.out else None
    if out is not None:
        generate.check_out(out)
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens {args.max_new_tokens}: must be at least 1")
    if not args.prompt.strip():
        raise UserError("--prompt is empty — pass the requirement to turn into PlantUML")
    generate.check_type(args.type)
    decoding = generate.Decoding.of(evaluation_config(args))
    checkpoint, used = chosen.checkpoint_or_chosen(args.checkpoint)
    quiet.import_stack("generate")
    if used:
        print(f"-- {used.line()}", file=sys.stderr)
    engine = generate.engine_for([checkpoint], args.base)
    message = prompts.request(args.prompt, args.type)
    row = engine.generate(
        [message], checkpoint, max_new_tokens=args.max_new_tokens, repair=args.repair, decoding=decoding
    )[0]
    print(row.output)
    note = (" (cut off at --max-new-tokens)" if row.truncated else "") + (
        f" (stopped: {row.loop})" if row.looped else ""
    )
    print(f"-- {row.tokens} tokens in {row.latency_s:.2f} s{note}", file=sys.stderr)
    if row.repaired:
        print("-- repaired: " + "; ".join(row.repair), file=sys.stderr)
    elif args.repair and not row.valid:
        print("-- PlantUML rejects it and no repair helped", file=sys.stderr)
    if out is None:
        return 0
    fmt = generate.OUT_FORMATS[out.suffix.lower()]
    if fmt is None:
        out.write_text(row.output + "\n")
    else:
        from core.inference.render import render

        result = render(row.output, fmt=fmt)
        if not result.ok:
            print(
                f"error: the output does not render (line {result.error_line}: {result.error_message}); "
                f"{out} not written",
                file=sys.stderr,
            )
            return 1
        out.write_bytes(result.data)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def add_generate_worker_args(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint folder, a run folder or 'base'")
    parser.add_argument("--prompt-file", required=True, type=Path, help="the requirement")
    parser.add_argument("--type", type=str.lower, help="the wanted diagram type")
    parser.add_argument("--out", required=True, type=Path, help="result JSON")
    config_option(parser, "--base", "model.base", overrides=True, lead="the base model behind 'base': ")
    config_option(parser, "--max-new-tokens", "evaluation.max_new_tokens")
    parser.add_argument("--repair", action="store_true", help="repair an output PlantUML rejects")
    decoding_options(parser)


def run_generate_worker(args) -> int:
    from core.inference import generate

    return generate.work(
        args.checkpoint,
        args.prompt_file,
        args.out,
        args.type,
        base=args.base,
        max_new_tokens=args.max_new_tokens,
        repair=args.repair,
        decoding=generate.Decoding.of(evaluation_config(args)),
    )


# ---- choose and serve: use the new model ---------------------------------------------------------


def add_choose_args(parser) -> None:
    parser.add_argument(
        "checkpoint", nargs="?", help="the checkpoint to choose: a checkpoint folder or a run folder (its latest)"
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--show", action="store_true", help="say which model is chosen")
    what.add_argument("--clear", action="store_true", help="forget the chosen model")


def run_choose(args) -> int:
    """`umlstudio choose CHECKPOINT | --show | --clear`."""
    from core.inference import chosen

    if args.checkpoint and (args.show or args.clear):
        raise UserError("give a CHECKPOINT to choose, or --show, or --clear — not both")
    if args.show:
        found = chosen.current()
        print(found.line() if found else "no chosen model — choose one: umlstudio choose CHECKPOINT")
    elif args.clear:
        found = chosen.clear()
        print(f"forgot the {found.line()}" if found else "no model was chosen")
    elif args.checkpoint:
        print(chosen.choose(args.checkpoint).line())
        print("umlstudio generate, umlstudio serve and the playground use it when no checkpoint is given")
    else:
        raise UserError("give a CHECKPOINT to choose, or --show, or --clear")
    return 0


def add_serve_args(parser) -> None:
    parser.add_argument(
        "--checkpoint",
        help="a checkpoint folder, a run folder (its latest checkpoint) or 'base' "
        "(default: the chosen model, see umlstudio choose)",
    )
    parser.add_argument("--port", type=int, default=8000, help="the port on 127.0.0.1 (default: 8000; 0: any free)")
    parser.add_argument(
        "--repair", action="store_true", help="check each output with PlantUML and repair it when rejected"
    )
    config_option(parser, "--base", "model.base", overrides=True, lead="the base model for --checkpoint base: ")
    config_option(parser, "--max-new-tokens", "evaluation.max_new_tokens", lead="for a request without max_tokens: ")
    config_option(parser, "--batch-size", "evaluation.batch_size", lead="requests decoded together at most: ")


def run_serve(args) -> int:
    """`umlstudio serve`: an OpenAI-compatible API on 127.0.0.1 (core/inference/serve.py)."""
    from core.inference import chosen, generate, serve

    if args.max_new_tokens < 1 or args.batch_size < 1:
        raise UserError("--max-new-tokens and --batch-size must be at least 1")
    ref, used = chosen.checkpoint_or_chosen(args.checkpoint)
    checkpoint = str(generate.resolve_checkpoint(ref))
    sock = serve.listen(args.port)
    engine = generate.engine_for([checkpoint], args.base)
    engine.prepare(checkpoint)
    batcher = serve.Batcher(engine, checkpoint, repair=args.repair, slots=args.batch_size)
    port = sock.getsockname()[1]
    print(used.line() if used else f"model: {checkpoint}")
    print(
        f"serving {serve.model_id(checkpoint)} on http://{serve.HOST}:{port}/v1 "
        f"(OpenAI-compatible; any api key){' with repair' if args.repair else ''} — Ctrl-C stops",
        flush=True,
    )
    serve.run(sock, batcher, args.max_new_tokens)
    return 0


# ---- export ---------------------------------------------------------------------------------------


def add_export_args(parser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, help="a checkpoint folder, a run folder (its latest checkpoint) or 'base'"
    )
    parser.add_argument("--out", required=True, help="a new (or empty) folder to write the export into")
    parser.add_argument(
        "--format",
        default="hf",
        help="hf: a merged transformers folder (default); gguf: a GGUF file for llama.cpp / Ollama",
    )
    parser.add_argument("--gguf-type", default="f16", help="with --format gguf: f16 (default) or q8_0 (half the size)")


def _stop(signum, frame):
    raise Stopped  # unwinds through export.run(), which removes its partial folder


def run_export(args) -> int:
    from core import quiet
    from core.inference import export

    plan = export.check(args.checkpoint, args.out, args.format, args.gguf_type)
    quiet.import_stack("export")
    signal.signal(signal.SIGTERM, _stop)  # the studio's Stop button
    info = export.run(plan)
    print(f"exported {plan.checkpoint} ({plan.format}) to {plan.out}: {', '.join(info['files'])}")
    if export.MODELFILE in info["files"]:
        print(f"Ollama: cd {plan.out} && ollama create plantuml -f {export.MODELFILE}")
    return 0


# ---- samples (scripts/generate_samples.py) -------------------------------------------------------


def add_samples_args(parser) -> None:
    parser.add_argument("--checkpoint", default="base", help="a checkpoint folder, a run folder or 'base' (default)")
    parser.add_argument("--out", default="samples", help="the folder to write into (default: samples)")
    parser.add_argument("--dataset", help="where the prompts come from (default: data/default, test split)")
    config_option(parser, "--base", "model.base", overrides=True, lead="the base model behind 'base': ")


def run_samples(args) -> int:
    """One sample diagram per diagram type: the first test prompt of each type through `umlstudio generate`,
    saved as <type>.puml and, when it renders, as <type>.svg."""
    import contextlib
    import io

    from core import data
    from core.cli import main

    rows = data.load_split(args.dataset or data.default_dataset_dir(), "test")
    first: dict[str, data.Row] = {}
    for row in rows:
        first.setdefault(row["diagram_type"], row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rendered = 0
    for diagram_type in (t for t in data.DIAGRAM_TYPES if t in first):
        prompt = first[diagram_type]["prompt"]
        argv = [
            "generate",
            "--checkpoint",
            args.checkpoint,
            "--prompt",
            prompt,
            "--out",
            str(out / f"{diagram_type}.svg"),
        ]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(argv + (["--base", args.base] if args.base else []))
        if code == 2:
            return 2  # bad input: the error line is already printed
        (out / f"{diagram_type}.puml").write_text(printed.getvalue())
        rendered += code == 0
        verdict = "rendered" if code == 0 else "does not render"
        print(f"{diagram_type:<10} {verdict:<16} {' '.join(prompt.split())[:70]}")
    print(f"{rendered} of {len(first)} samples rendered into {out}/")
    return 0
