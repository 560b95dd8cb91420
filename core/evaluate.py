"""Evaluate a checkpoint on the test prompts, and compare 2-4 checkpoints prompt by prompt.

`evaluate` generates on `limit` rows of a split, taken in turn from each diagram type, checks every
output with PlantUML (one `syntax_check` call, then a render of each valid one), scores each row
(`metrics.score`), aggregates, adds the verdict, and stores the evaluation and every generation.

Each generation is stored under a settings key: sha256 of the prompt, the decoding settings and the
checkpoint's manifest sha256. A later evaluation with the same settings takes its outputs from the
store instead of generating them again (and does not load the model when every row is there): the
A/B viewer and `compare` rely on that. Scores are always recomputed from the outputs.

Bad input (missing checkpoint or dataset, limit < 1, checkpoints of different base models) is a
UserError raised before anything is generated or stored.
"""

import hashlib
import json
import sys
import time

from pydantic import ValidationError

from core import checkpoints, data, generate, metrics, models, store
from core.config import EvaluationConfig, QualityConfig
from core.errors import UserError
from core.render import render, syntax_check

SUMMARY_KEYS = ("n", "syntax_valid_rate", "render_rate", "type_accuracy", "entity_f1", "relation_f1",
                "hallucination_rate", "complete_rate")
MAX_COMPARED = 4


def label(ckpt) -> str:
    """How a checkpoint is named in the store: 'base' or its folder's absolute path."""
    return ckpt if ckpt == checkpoints.BASE else str(ckpt)


def short_name(ckpt) -> str:
    return ckpt if ckpt == checkpoints.BASE else f"{ckpt.parent.name}/{ckpt.name}"


def decoding_settings(base_resolved: str, config: EvaluationConfig) -> dict:
    """Everything besides prompt and weights that decides an output."""
    return {
        "decoding": "greedy", "seed": generate.SEED, "stop": generate.STOP, "max_new_tokens": config.max_new_tokens,
        "batch_size": config.batch_size, "base": base_resolved, "dtype": str(models.pick_dtype("auto")).removeprefix("torch."),
    }


def settings_key(prompt: str, settings: dict, fingerprint: str) -> str:
    blob = json.dumps({"prompt": prompt, "settings": settings, "checkpoint": fingerprint}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _check_limit(limit) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UserError(f"--limit {limit}: must be a whole number of at least 1")


def _rows(dataset, split: str, limit: int) -> tuple[str, list[dict]]:
    source = dataset or data.default_dataset_dir()
    return str(source), data.in_turn(data.load_split(source, split), limit)


def _loss(ckpt) -> float | None:
    """The eval_loss the trainer logged for these weights: its run's last one at or before the step."""
    if ckpt == checkpoints.BASE:
        return None
    info = checkpoints.info(ckpt)
    run_id, step = info.get("run_id"), info.get("step", checkpoints.step_of(ckpt))
    if not run_id:
        known = store.query("SELECT run_id, step FROM checkpoints WHERE path = ?", [str(ckpt)])
        if not known:
            return None
        run_id, step = known[0]["run_id"], known[0]["step"]
    at_step = "" if step is None else " AND step <= ?"
    found = store.query(f"SELECT value FROM metrics WHERE run_id = ? AND name = 'eval_loss'{at_step} "
                        "ORDER BY step DESC LIMIT 1", [run_id] + ([] if step is None else [step]))
    return found[0]["value"] if found else None


def quality_for(ckpt) -> QualityConfig:
    """The quality thresholds the checkpoint was trained under (defaults for base)."""
    if ckpt == checkpoints.BASE:
        return QualityConfig()
    return QualityConfig(**checkpoints.info(ckpt).get("config", {}).get("quality", {}))


def _stored(ckpt_label: str, keys: list[str]) -> dict[str, dict]:
    if not keys:
        return {}
    found = store.query(
        "SELECT settings_key, output, tokens, latency_s, metrics FROM generations "
        "WHERE checkpoint = ? AND settings_key IN (SELECT unnest(?)) ORDER BY created_at",
        [ckpt_label, keys],
    )
    return {row["settings_key"]: row for row in found}  # the newest per key wins


def _generate(ckpt, prompts, config, base, ckpt_name, progress) -> list[generate.Generation]:
    from tqdm import tqdm

    engine = generate.engine_for([label(ckpt)], base)
    with tqdm(total=len(prompts), desc=f"generating {ckpt_name}", unit="row", disable=not progress,
              file=sys.stderr) as bar:
        return engine.generate(prompts, label(ckpt), max_new_tokens=config.max_new_tokens,
                               batch_size=config.batch_size, progress=bar.update)


def run(checkpoint, dataset=None, limit=None, split="test", *, base=None, config: EvaluationConfig | None = None,
        progress: bool = True, save: bool = True) -> tuple[dict, list[dict]]:
    """Evaluate one checkpoint; return (summary, rows), each row with its output and metrics.

    With save=False the caller stores it later with `save_evaluation(summary, rows)`."""
    config = config or EvaluationConfig()
    _check_limit(limit)
    ckpt = generate.resolve_checkpoint(checkpoint)
    base_resolved = generate.common_base([label(ckpt)], base)
    source, rows = _rows(dataset, split, limit or config.limit)
    started = time.perf_counter()

    settings = decoding_settings(base_resolved, config)
    fingerprint = generate.fingerprint(ckpt)
    keys = [settings_key(row["prompt"], settings, fingerprint) for row in rows]
    stored = _stored(label(ckpt), keys)
    missing = [i for i, key in enumerate(keys) if key not in stored]
    if stored and progress:
        print(f"{short_name(ckpt)}: {len(rows) - len(missing)} of {len(rows)} outputs from the store", file=sys.stderr)
    fresh = dict(zip(missing, _generate(ckpt, [rows[i]["prompt"] for i in missing], config, base_resolved,
                                        short_name(ckpt), progress))) if missing else {}

    outputs = []
    for i, key in enumerate(keys):
        if i in fresh:
            g = fresh[i]
            outputs.append({"output": g.output, "tokens": g.tokens, "latency_s": g.latency_s, "truncated": g.truncated})
        else:
            hit = stored[key]
            outputs.append({"output": hit["output"], "tokens": hit["tokens"], "latency_s": hit["latency_s"],
                            "truncated": json.loads(hit["metrics"])["truncated"]})

    checks = syntax_check([o["output"] for o in outputs])
    scored = []
    for row, out, check, key in zip(rows, outputs, checks, keys):
        renders = check.valid and render(out["output"], "svg").ok
        row_metrics = metrics.score(out["output"], row["plantuml"], row["prompt"], row["diagram_type"],
                                    syntax=check, renders=renders, truncated=out["truncated"],
                                    tokens=out["tokens"], latency_s=out["latency_s"])
        scored.append({**out, "prompt": row["prompt"], "reference": row["plantuml"],
                       "diagram_type": row["diagram_type"], "settings_key": key, "metrics": row_metrics,
                       "reused": key in stored})

    summary = metrics.aggregate([r["metrics"] for r in scored])
    loss = _loss(ckpt)
    examples = [{**r["metrics"], "id": i + 1} for i, r in enumerate(scored)]  # "id": the row's number
    summary["verdict"] = metrics.verdict(summary, loss, quality_for(ckpt), examples)
    summary.update({
        "evaluation_id": store.new_id(), "checkpoint": label(ckpt), "dataset": source, "split": split,
        "settings": settings, "loss": loss, "generated": len(missing), "reused": len(rows) - len(missing),
        "seconds": round(time.perf_counter() - started, 2),
    })
    if save:
        save_evaluation(summary, scored)
    return summary, scored


def save_evaluation(summary: dict, scored: list[dict]) -> None:
    """Store the evaluation and each of its generations, in one transaction."""
    stamp = store.now()
    with store.connect() as con:
        con.execute("INSERT INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [summary["evaluation_id"], summary["checkpoint"], summary["dataset"],
                     json.dumps({**summary["settings"], "split": summary["split"]}), summary["n"],
                     json.dumps(summary), stamp])
        con.executemany(
            "INSERT INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[store.new_id(), summary["evaluation_id"], summary["checkpoint"], r["settings_key"], r["prompt"], r["reference"],
              r["diagram_type"], r["output"], json.dumps({**r["metrics"], "truncated": r["truncated"]}),
              r["tokens"], r["latency_s"], stamp] for r in scored],
        )


def evaluate(checkpoint, dataset=None, limit=None, split="test", **options) -> dict:
    """Evaluate one checkpoint on `limit` rows of `split` (every diagram type in turn); return the summary (stored)."""
    return run(checkpoint, dataset, limit, split, **options)[0]


def _minus(a, b):
    return None if a is None or b is None else a - b


def compare(refs: list, dataset=None, limit=None, split="test", *, base=None,
            config: EvaluationConfig | None = None, progress: bool = True) -> dict:
    """Evaluate 2-4 checkpoints on the same prompts (stored outputs reused); per-prompt rows, largest
    regression against the first checkpoint first, and the aggregate deltas against it."""
    if not 2 <= len(refs) <= MAX_COMPARED:
        raise UserError(f"compare takes 2 to {MAX_COMPARED} checkpoints, got {len(refs)}")
    _check_limit(limit)
    ckpts = [generate.resolve_checkpoint(ref) for ref in refs]
    if len({label(c) for c in ckpts}) < len(ckpts):
        raise UserError("compare: the same checkpoint is named twice — pass different checkpoints")
    shared = generate.common_base([label(c) for c in ckpts], base)  # one base model for all ('base' too)
    runs = [run(label(c), dataset, limit, split, base=shared, config=config, progress=progress, save=False)
            for c in ckpts]
    for summary, scored in runs:  # stored only once every checkpoint went through
        save_evaluation(summary, scored)
    summaries = [summary for summary, _ in runs]
    deltas = [{key: _minus(s[key], summaries[0][key]) for key in SUMMARY_KEYS[1:]} for s in summaries[1:]]
    rows = []
    for i, first in enumerate(runs[0][1]):
        outputs = []
        for _, scored in runs:
            r = scored[i]
            outputs.append({key: r[key] for key in ("output", "tokens", "latency_s", "truncated", "metrics")}
                           | {"score": metrics.row_score(r["metrics"])})
        delta = min(o["score"] - outputs[0]["score"] for o in outputs[1:])
        rows.append({"index": i, "prompt": first["prompt"], "reference": first["reference"],
                     "diagram_type": first["diagram_type"], "outputs": outputs, "delta": delta})
    rows.sort(key=lambda r: (r["delta"], r["index"]))
    names = [short_name(c) for c in ckpts]
    return {
        "checkpoints": names if len(set(names)) == len(names) else [label(c) for c in ckpts],
        "paths": [label(c) for c in ckpts],
        "dataset": summaries[0]["dataset"], "split": split, "n": summaries[0]["n"],
        "settings": summaries[0]["settings"],
        "summaries": summaries, "deltas": deltas, "rows": rows,
    }


# ---- CLI --------------------------------------------------------------------------------------


def _dataset_args(parser) -> None:
    parser.add_argument("--dataset", help="a dataset folder or a .jsonl/.csv file (default: data/default)")
    parser.add_argument("--split", default="test", help="which split of a dataset folder (default: test)")
    parser.add_argument("--limit", type=int, help=f"evaluate N rows, taken in turn from each diagram type (default: {EvaluationConfig().limit})")
    parser.add_argument("--base", help="the base model behind 'base' (default: the checkpoints' base, else smollm2-135m)")
    defaults = EvaluationConfig()
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                        help=f"tokens generated at most per output (default: {defaults.max_new_tokens})")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help=f"prompts generated together (default: {defaults.batch_size})")


def _config(args) -> EvaluationConfig:
    try:
        return EvaluationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise UserError(f"--{problem['loc'][0].replace('_', '-')} {problem['input']}: {problem['msg'].lower()}") from None


def add_evaluate_args(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint folder, a run folder (its latest checkpoint) or 'base'")
    _dataset_args(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _fmt(value, width: int, signed: bool = False) -> str:
    """A metric for a table: 3 decimals, '-' when it was not measured."""
    if value is None:
        return f"{'-':>{width}}"
    if isinstance(value, float):
        return f"{value:>+{width}.3f}" if signed else f"{value:>{width}.3f}"
    return f"{value:>{width}}"


def format_summary(summary: dict) -> str:
    lines = [f"checkpoint  {summary['checkpoint']}",
             f"dataset     {summary['dataset']} ({summary['split']}): {summary['n']} rows, "
             f"{summary['generated']} generated, {summary['reused']} from the store",
             f"eval_loss   {summary['loss']:.4f}" if summary["loss"] is not None else "eval_loss   unknown", ""]
    lines += [f"{key:<20}{_fmt(summary[key], 8)}" for key in SUMMARY_KEYS[1:]]
    types = summary.get("per_type") or {}
    if types:
        cols = ["n", *SUMMARY_KEYS[1:]]
        heads = ["n", "valid", "render", "type", "entity_f1", "relation_f1", "halluc.", "complete"]
        lines += ["", "per type".ljust(12) + "".join(f"{h:>12}" for h in heads)]
        for name, values in sorted(types.items()):
            lines.append(f"{name:<12}" + "".join(_fmt(values.get(c), 12) for c in cols))
    verdict = summary["verdict"]
    lines += ["", f"verdict: {verdict['label']}", *(f"  - {reason}" for reason in verdict.get("reasons", []))]
    return "\n".join(lines)


def evaluate_command(args) -> int:
    summary = evaluate(args.checkpoint, args.dataset, args.limit, args.split, base=args.base, config=_config(args))
    print(json.dumps(summary, default=str) if args.json else format_summary(summary))
    return 0


def add_compare_args(parser) -> None:
    parser.add_argument("--model1", required=True, help="the reference checkpoint (or 'base'); deltas are against it")
    parser.add_argument("--model2", required=True, help="a checkpoint to compare with it")
    parser.add_argument("--model3", help="optional third checkpoint")
    parser.add_argument("--model4", help="optional fourth checkpoint")
    _dataset_args(parser)
    parser.add_argument("--out", default="compare.html", help="the HTML report to write (default: compare.html)")


def compare_command(args) -> int:
    from core.report import write_compare

    refs = [ref for ref in (args.model1, args.model2, args.model3, args.model4) if ref]
    result = compare(refs, args.dataset, args.limit, args.split, base=args.base, config=_config(args))
    names = result["checkpoints"]
    width = max(len(key) for key in SUMMARY_KEYS)
    print(f"{'':<{width}}" + "".join(f"{n[-24:]:>26}" for n in names) + "".join(f"{'Δ' + str(i):>10}" for i in range(2, len(names) + 1)))
    for key in SUMMARY_KEYS[1:]:
        values = "".join(_fmt(s[key], 26) for s in result["summaries"])
        deltas = "".join(_fmt(d[key], 10, signed=True) for d in result["deltas"])
        print(f"{key:<{width}}{values}   {deltas}")
    path = write_compare(result, args.out)
    print(f"wrote {path}")
    return 0
