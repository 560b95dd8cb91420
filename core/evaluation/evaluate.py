"""Evaluate a checkpoint on the test prompts, and compare 2-4 checkpoints prompt by prompt.

`evaluate` generates on a sample of `limit` rows of a split (`sample_rows`: seeded and stratified,
every diagram type in turn, within a type its origins (real prose, generated) in turn, within an
origin its sources in turn), asking for the row's diagram type (`prompts.request`). It checks every
output with PlantUML (one `syntax_check` call, then a render of each valid one), scores each row
(`metrics.score`), aggregates with 95% intervals, overall, per type and per origin, adds the
verdict, and stores the evaluation and every generation (its `prompt` is the message the model got).

`compare` runs the same sample for 2-4 checkpoints and tests each delta against the first
checkpoint with the sign test on the same prompts: better, worse or within noise.

Each generation is stored under a settings key: sha256 of the message, the decoding settings and the
checkpoint's manifest sha256. A later evaluation with the same settings takes its outputs from the
store instead of generating them again (and does not load the model when every row is there): the
A/B viewer and `compare` rely on that. Scores are always recomputed from the outputs. With
`evaluation.samples` k > 1 (sampling), the other k - 1 samples of each prompt are stored under their
own keys and the summary adds pass@k for valid PlantUML with its 95% interval.

Missing outputs are generated a batch at a time, the checkpoints in turn, and each batch is scored
and stored as soon as it ends (its generations first belong to no evaluation; the evaluation links
them when it is saved). So the A/B viewer fills in its rows while a job runs, a cancelled job
(SIGTERM, the studio's Cancel) keeps what it made, and the job's progress.json (`jobs.Progress`)
counts the outputs with the time left. `estimate` says how long the missing ones will take before a
job starts, from the measured generation speed and each checkpoint's stored output lengths.

Bad input (missing checkpoint or dataset, limit < 1, checkpoints of different base models) is a
UserError raised before anything is generated or stored.
"""

import hashlib
import json
import random
import sys
import time
from dataclasses import dataclass, field

from core import data, jobs, store
from core.config import EvaluationConfig, QualityConfig
from core.data import prompts
from core.errors import UserError
from core.evaluation import metrics, stats
from core.inference import generate
from core.inference.render import SyntaxResult, render, syntax_check
from core.training import checkpoints, models

MAX_COMPARED = 4
SAMPLE_SEED = 0


def label(ckpt) -> str:
    """How a checkpoint is named in the store: 'base' or its folder's absolute path."""
    return ckpt if ckpt == checkpoints.BASE else str(ckpt)


def short_name(ckpt) -> str:
    return ckpt if ckpt == checkpoints.BASE else f"{ckpt.parent.name}/{ckpt.name}"


def decoding_settings(base_resolved: str, config: EvaluationConfig) -> dict:
    """Everything besides prompt and weights that decides an output."""
    return {
        **generate.Decoding.of(config).settings(),
        "stop": generate.STOP,
        "max_new_tokens": config.max_new_tokens,
        "batch_size": config.batch_size,
        "base": base_resolved,
        "dtype": str(models.pick_dtype("auto")).removeprefix("torch."),
    }


def settings_key(prompt: str, settings: dict, fingerprint: str) -> str:
    blob = json.dumps({"prompt": prompt, "settings": settings, "checkpoint": fingerprint}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _check_limit(limit) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UserError(f"--limit {limit}: must be a whole number of at least 1")


def _in_turn(groups: list[list]) -> list:
    """One item of each group in turn, then the next of each, until every group is used up."""
    return [group[i] for i in range(max(map(len, groups), default=0)) for group in groups if i < len(group)]


def sample_rows(rows: list[data.Row], limit: int, seed: int = SAMPLE_SEED) -> list[data.Row]:
    """A seeded, stratified random sample of `limit` rows: every diagram type in turn; within a type,
    its origins ("real", "generated") in turn; within an origin, its sources (a PlantUCD model, a
    US2SD project, a generated domain, ...) in turn, in a seeded random order; rows of a source in a
    seeded random order. A larger limit keeps the smaller one's rows (the store serves them again)."""
    rng = random.Random(seed)
    by_type: dict = {}
    for row in rows:
        origins = by_type.setdefault(row.get("diagram_type") or "unknown", {})
        origins.setdefault(row.get("origin") or "unknown", {}).setdefault(row.get("source") or "", []).append(row)
    ordered_types = []
    for diagram_type in sorted(by_type):
        ordered_origins = []
        for origin in sorted(by_type[diagram_type]):
            sources = by_type[diagram_type][origin]
            names = sorted(sources)
            rng.shuffle(names)
            for name in names:
                rng.shuffle(sources[name])
            ordered_origins.append(_in_turn([sources[name] for name in names]))
        ordered_types.append(_in_turn(ordered_origins))
    return _in_turn(ordered_types)[:limit]


def message(row: data.Row) -> str:
    """What the model is asked for a dataset row: its requirement with the wanted diagram type."""
    return prompts.request(row["prompt"], row.get("diagram_type"))


def _rows(dataset, split: str, limit: int) -> tuple[str, list[data.Row]]:
    source = dataset or data.default_dataset_dir()
    return str(source), sample_rows(data.load_split(source, split), limit)


def _loss(ckpt) -> float | None:
    """The eval_loss the trainer logged for these weights: its run's last one at or before the step."""
    if ckpt == checkpoints.BASE:
        return None
    info = checkpoints.info(ckpt)
    run_id, step = info.get("run_id"), info.get("step", checkpoints.step_of(ckpt))
    if not run_id:
        known = store.checkpoints.get(ckpt)
        if known is None:
            return None
        run_id, step = known.run_id, known.step
    return store.metrics.value_at(run_id, "eval_loss", step)


def quality_for(ckpt) -> QualityConfig:
    """The quality thresholds the checkpoint was trained under (defaults for base)."""
    if ckpt == checkpoints.BASE:
        return QualityConfig()
    return QualityConfig(**checkpoints.info(ckpt).get("config", {}).get("quality", {}))


def _stored(ckpt_label: str, keys: list[str]) -> dict[str, store.evaluations.Generation]:
    found = store.evaluations.generations_for_keys(ckpt_label, keys)
    return {g.settings_key: g for g in found}  # the newest per key wins


def _output(g: generate.Generation, repair: bool) -> dict:
    return {
        "output": g.output,
        "tokens": g.tokens,
        "latency_s": g.latency_s,
        "truncated": g.truncated,
        "looped": g.looped,
        "raw_output": g.raw_output,
        "raw_syntax_valid": g.raw_valid if repair else None,
        "repaired": g.repaired if repair else None,
    }


def _stored_output(hit: store.evaluations.Generation) -> dict:
    stored_metrics = hit.metrics
    return {
        "output": hit.output,
        "tokens": hit.tokens,
        "latency_s": hit.latency_s,
        "truncated": stored_metrics["truncated"],
        "looped": stored_metrics.get("looped", False),
        "raw_output": stored_metrics.get("raw_output", hit.output),
        "raw_syntax_valid": stored_metrics.get("raw_syntax_valid"),
        "repaired": stored_metrics.get("repaired"),
    }


def _scored(
    rows: list[data.Row], messages: list[str], outputs: list[dict], keys: list[str], reused: bool
) -> list[dict]:
    """Outputs checked by PlantUML (one syntax_check call, then a render of each valid one) and scored."""
    checks = syntax_check([o["output"] for o in outputs])
    scored = []
    for row, text, out, check, key in zip(rows, messages, outputs, checks, keys):
        renders = check.valid and render(out["output"], "svg").ok
        row_metrics = metrics.score(
            out["output"],
            row["plantuml"],
            row["prompt"],
            row["diagram_type"],
            syntax=check,
            renders=renders,
            truncated=out["truncated"],
            looped=out["looped"],
            tokens=out["tokens"],
            latency_s=out["latency_s"],
            origin=row.get("origin"),
        )
        row_metrics |= {"raw_syntax_valid": out["raw_syntax_valid"], "repaired": out["repaired"]}
        scored.append(
            {
                **out,
                "prompt": text,
                "requirement": row["prompt"],
                "reference": row["plantuml"],
                "diagram_type": row["diagram_type"],
                "origin": row.get("origin"),
                "settings_key": key,
                "metrics": row_metrics,
                "reused": reused,
            }
        )
    return scored


def _generation_row(
    ckpt_label: str, r: dict, settings: dict, evaluation_id: str | None, stamp
) -> store.evaluations.Generation:
    decoding = {
        "max_new_tokens": settings["max_new_tokens"],
        "repair": bool(settings.get("repair")),
        # the A/B viewer shows greedy outputs, of the repetition control it is asked for
        "greedy": settings["decoding"] == "greedy",
        "repetition": settings.get("repetition", "none"),
    }
    return store.evaluations.Generation(
        id=r.get("generation_id") or store.new_id(),
        evaluation_id=evaluation_id,
        checkpoint=ckpt_label,
        settings_key=r["settings_key"],
        prompt=r["prompt"],
        reference=r["reference"],
        diagram_type=r["diagram_type"],
        output=r["output"],
        metrics={
            **r["metrics"],
            "truncated": r["truncated"],
            "requirement": r["requirement"],
            **decoding,
            **({"raw_output": r["raw_output"]} if r["raw_output"] != r["output"] else {}),
        },
        tokens=r["tokens"],
        latency_s=r["latency_s"],
        created_at=stamp,
    )


def _save_generations(ckpt_label: str, scored: list[dict], settings: dict) -> None:
    """Fresh outputs go into the store as soon as they are scored, before their evaluation is saved: a
    stopped job keeps them, a later run serves them again, and the A/B viewer shows them at once."""
    for r in scored:
        r["generation_id"] = store.new_id()
    stamp = store.now()
    store.evaluations.add_generations([_generation_row(ckpt_label, r, settings, None, stamp) for r in scored])


@dataclass
class _Plan:
    """One checkpoint's share of an evaluation: its keys, what the store has, what is left to generate."""

    ckpt: object
    keys: list[str]
    stored: dict[str, store.evaluations.Generation]
    missing: list[int]
    fresh: dict[int, dict] = field(default_factory=dict)  # row index -> scored row
    seconds: float = 0.0  # spent generating
    tokens: int = 0  # generated
    repair_s: float = 0.0  # spent checking outputs with PlantUML and repairing them (with repair)


def _evaluate(
    ckpts: list,
    rows: list[data.Row],
    config: EvaluationConfig,
    base_resolved: str,
    progress: bool,
    repair: bool,
    sample: int = 0,
) -> list[tuple[dict, list[dict]]]:
    """Every checkpoint on the same rows: stored outputs reused; the missing ones generated a batch at
    a time, each checkpoint in turn (so side-by-side rows fill in early), scored and stored as each
    batch ends; the job's progress.json counts them. Returns (summary without verdict, scored rows)
    per checkpoint. `sample` > 0: another of each prompt's samples (stored under its own key)."""
    from tqdm import tqdm

    settings = (
        decoding_settings(base_resolved, config)
        | ({"repair": True} if repair else {})
        | ({"sample": sample} if sample else {})
    )
    messages = [message(row) for row in rows]
    plans = []
    for ckpt in ckpts:
        fp = generate.fingerprint(ckpt)
        keys = [settings_key(m, settings, fp) for m in messages]
        stored = _stored(label(ckpt), keys)
        plans.append(_Plan(ckpt, keys, stored, [i for i, key in enumerate(keys) if key not in stored]))
        if stored and progress:
            print(
                f"{short_name(ckpt)}: {len(rows) - len(plans[-1].missing)} of {len(rows)} outputs from the store",
                file=sys.stderr,
            )
    todo = sum(len(p.missing) for p in plans)
    report = jobs.Progress(todo, "prompt", stored=len(ckpts) * len(rows) - todo)
    if todo:
        engine = generate.engine_for([label(c) for c in ckpts], base_resolved)
        report.start()
        with tqdm(total=todo, desc="generating", unit="row", disable=not progress, file=sys.stderr) as bar:
            for at in range(0, max(len(p.missing) for p in plans), config.batch_size):
                for plan in plans:
                    batch = plan.missing[at : at + config.batch_size]
                    if not batch:
                        continue
                    report.note = f"now {short_name(plan.ckpt)}" if len(plans) > 1 else ""

                    def advance(n):
                        bar.update(n)
                        report.advance(n)

                    started = time.perf_counter()
                    made = engine.generate(
                        [messages[i] for i in batch],
                        label(plan.ckpt),
                        max_new_tokens=config.max_new_tokens,
                        batch_size=config.batch_size,
                        progress=advance,
                        repair=repair,
                        decoding=generate.Decoding.of(config),
                        sample=sample,
                    )
                    repaired_s = sum(g.repair_s for g in made)  # each row carries its share of its batch's
                    plan.repair_s += repaired_s
                    plan.seconds += time.perf_counter() - started - repaired_s
                    plan.tokens += sum(g.tokens for g in made)
                    scored = _scored(
                        [rows[i] for i in batch],
                        [messages[i] for i in batch],
                        [_output(g, repair) for g in made],
                        [plan.keys[i] for i in batch],
                        False,
                    )
                    _save_generations(label(plan.ckpt), scored, settings)
                    report.save(len(batch))
                    plan.fresh.update(zip(batch, scored))
    results = []
    for plan in plans:
        kept = [i for i in range(len(rows)) if i not in plan.fresh]
        reused = (
            dict(
                zip(
                    kept,
                    _scored(
                        [rows[i] for i in kept],
                        [messages[i] for i in kept],
                        [_stored_output(plan.stored[plan.keys[i]]) for i in kept],
                        [plan.keys[i] for i in kept],
                        True,
                    ),
                )
            )
            if kept
            else {}
        )
        scored = [plan.fresh.get(i) or reused[i] for i in range(len(rows))]
        summary = metrics.aggregate([r["metrics"] for r in scored])
        summary.update(
            {
                "checkpoint": label(plan.ckpt),
                "settings": settings,
                "generated": len(plan.missing),
                "reused": len(rows) - len(plan.missing),
                "generation_s": round(plan.seconds, 2),
                "generated_tokens": plan.tokens,
            }
            | ({"repair_s": round(plan.repair_s, 2)} if repair else {})
        )
        results.append((summary, scored))
    return results


def _finish(summary: dict, scored: list[dict], ckpt, source: str, split: str, limit: int, started: float) -> dict:
    """The summary's verdict and where it came from."""
    loss = _loss(ckpt)
    examples = [{**r["metrics"], "id": i + 1} for i, r in enumerate(scored)]  # "id": the row's number
    summary["verdict"] = metrics.verdict(summary, loss, quality_for(ckpt), examples)
    summary.update(
        {
            "evaluation_id": store.new_id(),
            "dataset": source,
            "split": split,
            "sample": {"limit": limit, "seed": SAMPLE_SEED},
            "loss": loss,
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
    return summary


def run(
    checkpoint,
    dataset=None,
    limit=None,
    split="test",
    *,
    base=None,
    config: EvaluationConfig | None = None,
    progress: bool = True,
    save: bool = True,
    repair: bool = False,
) -> tuple[dict, list[dict]]:
    """Evaluate one checkpoint; return (summary, rows), each row with its output and metrics.

    With `repair`, outputs PlantUML rejects are repaired by the generation engine; the scores are
    the repaired outputs', and "raw_valid_rate" / "repaired_rate" say how many the model itself
    got valid and how many were repaired. Fresh outputs are stored as they are made; with
    save=False the caller stores the evaluation later with `save_evaluation(summary, rows)`."""
    config = config or EvaluationConfig()
    _check_limit(limit)
    if config.samples > 1 and repair:
        raise UserError("--samples with --repair: pass@k counts the model's own outputs — leave out --repair")
    ckpt = generate.resolve_checkpoint(checkpoint)
    source, rows = _rows(dataset, split, limit or config.limit)  # before the base model is prepared or loaded
    base_resolved = generate.common_base([label(ckpt)], base)
    started = time.perf_counter()
    [(summary, scored)] = _evaluate([ckpt], rows, config, base_resolved, progress, repair)
    if config.samples > 1:
        summary["pass_at_k"] = _pass_at_k(ckpt, rows, scored, config, base_resolved, progress)
    _finish(summary, scored, ckpt, source, split, limit or config.limit, started)
    if save:
        save_evaluation(summary, scored)
    return summary, scored


def _pass_at_k(ckpt, rows: list[data.Row], scored: list[dict], config: EvaluationConfig, base_resolved, progress):
    """pass@k for valid PlantUML: the share of prompts with a valid output among their k samples (the
    scored rows are sample 0; samples 1..k-1 are generated or served from the store), with its 95%
    Wilson interval, overall and per diagram type."""
    valid = [bool(r["metrics"]["syntax_valid"]) for r in scored]
    for sample in range(1, config.samples):
        [(_, more)] = _evaluate([ckpt], rows, config, base_resolved, progress, False, sample)
        valid = [v or bool(r["metrics"]["syntax_valid"]) for v, r in zip(valid, more)]
    found = {"k": config.samples, **stats.estimate(valid)}
    types = sorted({row["diagram_type"] for row in rows})
    found["per_type"] = {
        t: stats.estimate([v for v, row in zip(valid, rows) if row["diagram_type"] == t]) for t in types
    }
    return found


def save_evaluation(summary: dict, scored: list[dict]) -> None:
    """Store the evaluation and link each of its generations to it (the fresh ones are stored
    already; a reused one is stored again under this evaluation), in one transaction."""
    stamp = store.now()
    evaluation = store.evaluations.Evaluation(
        id=summary["evaluation_id"],
        checkpoint=summary["checkpoint"],
        dataset=summary["dataset"],
        settings={**summary["settings"], "split": summary["split"]},
        n=summary["n"],
        summary=summary,
        created_at=stamp,
    )
    fresh = [r["generation_id"] for r in scored if r.get("generation_id")]
    again = [
        _generation_row(summary["checkpoint"], r, summary["settings"], summary["evaluation_id"], stamp)
        for r in scored
        if not r.get("generation_id")
    ]
    store.evaluations.add(evaluation, fresh, again)


def evaluate(checkpoint, dataset=None, limit=None, split="test", **options) -> dict:
    """Evaluate one checkpoint on a sample of `limit` rows of `split` (see `sample_rows`); return the summary
    (stored)."""
    return run(checkpoint, dataset, limit, split, **options)[0]


def paired_tests(first: list[dict], second: list[dict]) -> dict[str, dict]:
    """`metrics.paired` over all rows and within each origin: the second checkpoint's `score` rows
    against the first's, on the same prompts in the same order."""
    tests = {"all": metrics.paired(first, second)}
    for origin in sorted({row.get("origin") for row in first} - {None}):
        keep = [i for i, row in enumerate(first) if row.get("origin") == origin]
        tests[origin] = metrics.paired([first[i] for i in keep], [second[i] for i in keep])
    return tests


def compare(
    refs: list,
    dataset=None,
    limit=None,
    split="test",
    *,
    base=None,
    config: EvaluationConfig | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate 2-4 checkpoints on the same prompts (stored outputs reused); per-prompt rows, largest
    regression against the first checkpoint first, and each checkpoint's paired tests against it
    ("tests": one per later checkpoint, by group "all" / "generated" / "real", by summary key)."""
    if not 2 <= len(refs) <= MAX_COMPARED:
        raise UserError(f"compare takes 2 to {MAX_COMPARED} checkpoints, got {len(refs)}")
    _check_limit(limit)
    ckpts = [generate.resolve_checkpoint(ref) for ref in refs]
    if len({label(c) for c in ckpts}) < len(ckpts):
        raise UserError("compare: the same checkpoint is named twice — pass different checkpoints")
    config = config or EvaluationConfig()
    source, rows = _rows(dataset, split, limit or config.limit)  # bad data refused before any model work
    shared = generate.common_base([label(c) for c in ckpts], base)  # one base model for all ('base' too)
    started = time.perf_counter()
    runs = _evaluate(ckpts, rows, config, shared, progress, repair=False)
    for ckpt, (summary, scored) in zip(ckpts, runs):  # evaluations stored only once every checkpoint went through
        save_evaluation(_finish(summary, scored, ckpt, source, split, limit or config.limit, started), scored)
    summaries = [summary for summary, _ in runs]
    first_rows = [r["metrics"] for r in runs[0][1]]
    tests = [paired_tests(first_rows, [r["metrics"] for r in scored]) for _, scored in runs[1:]]
    compared = []
    for i, first in enumerate(runs[0][1]):
        outputs = []
        for _, scored in runs:
            r = scored[i]
            outputs.append(
                {key: r[key] for key in ("output", "tokens", "latency_s", "truncated", "metrics")}
                | {"score": metrics.row_score(r["metrics"])}
            )
        changes = [o["score"] - outputs[0]["score"] for o in outputs[1:]]
        compared.append(
            {
                "index": i,
                "prompt": first["requirement"],
                "reference": first["reference"],
                "diagram_type": first["diagram_type"],
                "origin": first["origin"],
                "outputs": outputs,
                "delta": min(changes),
                "gain": max(changes),
            }
        )
    compared.sort(key=lambda r: (r["delta"], r["index"]))
    names = [short_name(c) for c in ckpts]
    return {
        "checkpoints": names if len(set(names)) == len(names) else [label(c) for c in ckpts],
        "paths": [label(c) for c in ckpts],
        "dataset": summaries[0]["dataset"],
        "split": split,
        "n": summaries[0]["n"],
        "settings": summaries[0]["settings"],
        "summaries": summaries,
        "tests": tests,
        "rows": compared,
    }


# ---- what the studio pages read -------------------------------------------------------------------


def rescore(output: str, stored_metrics: dict, row: data.Row | dict) -> dict:
    """A stored output scored again with today's metrics against a dataset row (PlantUML's stored
    verdicts kept: no PlantUML call)."""
    valid = stored_metrics.get("syntax_valid")
    return metrics.score(
        output,
        row["plantuml"],
        row["prompt"],
        row["diagram_type"],
        syntax=None if valid is None else SyntaxResult(valid, None, None, None),
        renders=stored_metrics.get("renders"),
        truncated=stored_metrics.get("truncated", False),
        looped=stored_metrics.get("looped", False),
        tokens=stored_metrics.get("tokens", 0),
        latency_s=stored_metrics.get("latency_s", 0.0),
        origin=row.get("origin"),
    )


def stored_outputs(
    ckpts: list[str], rows: list[data.Row], max_new_tokens: int | None = None, repetition: str = "none"
) -> dict[tuple[str, int], dict]:
    """(checkpoint, row index) -> {"output", "metrics"}: the newest stored output of each checkpoint
    for each row's message (greedy with that `repetition` control, without repair; with `max_new_tokens`,
    only outputs made with that token budget), scored again (`rescore`); pairs never generated are absent."""
    wanted = {message(row): i for i, row in enumerate(rows)}
    outputs = {}
    for hit in store.evaluations.newest_outputs(ckpts, list(wanted), max_new_tokens, repetition):
        i = wanted[hit.prompt]
        outputs[(hit.checkpoint, i)] = {"output": hit.output, "metrics": rescore(hit.output, hit.metrics, rows[i])}
    return outputs


DEFAULT_TOKENS_PER_S = 10.0  # generated tokens a second when this machine has measured none (2 CPU cores, batch 8)


def speed() -> tuple[float, bool]:
    """Generated tokens a second, measured over the last evaluations that generated something, and
    whether it was measured (else DEFAULT_TOKENS_PER_S)."""
    found = store.evaluations.generation_speeds(20)
    seconds = sum(s for s, _ in found)
    tokens = sum(t for _, t in found)
    return (tokens / seconds, True) if seconds and tokens else (DEFAULT_TOKENS_PER_S, False)


def estimate(ckpts: list[str], rows: list[data.Row], max_new_tokens: int, repetition: str = "none") -> dict:
    """How long generating the missing outputs of `ckpts` on `rows` will take, before starting:
    per checkpoint, how many rows are stored and how many tokens its outputs run to (the mean of its
    stored outputs, those cut off at an earlier budget counted at this one; the budget when it has
    none: a base model writes prose to the limit), times the measured speed (`speed`)."""
    with store.session():  # three reads, one connection
        stored = stored_outputs(ckpts, rows, max_new_tokens, repetition)
        lengths = store.evaluations.mean_output_tokens(ckpts, max_new_tokens)
        tokens_per_s, measured = speed()
    per = []
    for ckpt in ckpts:
        missing = sum((ckpt, i) not in stored for i in range(len(rows)))
        tokens = lengths[ckpt] if ckpt in lengths else float(max_new_tokens)
        per.append(
            {
                "checkpoint": ckpt,
                "stored": len(rows) - missing,
                "missing": missing,
                "tokens_per_row": tokens,
                "seconds": missing * tokens / tokens_per_s,
                "measured_length": ckpt in lengths,
            }
        )
    return {
        "rows": len(rows),
        "per_checkpoint": per,
        "stored": sum(p["stored"] for p in per),
        "missing": sum(p["missing"] for p in per),
        "seconds": sum(p["seconds"] for p in per),
        "tokens_per_s": tokens_per_s,
        "measured_speed": measured,
    }


def latest_evaluations() -> dict[str, store.evaluations.Evaluation]:
    """checkpoint -> its newest stored evaluation."""
    return {e.checkpoint: e for e in store.evaluations.latest_per_checkpoint()}


def evaluations_of(checkpoint: str) -> list[store.evaluations.Evaluation]:
    """Every stored evaluation of a checkpoint, newest first (the Quality page lets a person pick one)."""
    return store.evaluations.of_checkpoint(checkpoint)


def evaluation_rows(evaluation_id: str) -> list[dict]:
    """The generations of one stored evaluation: id, prompt (the message), requirement, reference,
    diagram_type, output, and metrics scored again with today's metrics."""
    rows = []
    for g in store.evaluations.generations_of(evaluation_id):
        stored_metrics = g.metrics
        row = {
            "prompt": stored_metrics.get("requirement", g.prompt),
            "plantuml": g.reference,
            "diagram_type": g.diagram_type,
            "origin": stored_metrics.get("origin"),
        }
        rows.append(
            {
                "id": g.id,
                "prompt": g.prompt,
                "reference": g.reference,
                "diagram_type": g.diagram_type,
                "output": g.output,
                "requirement": row["prompt"],
                "metrics": rescore(g.output, stored_metrics, row),
            }
        )
    return rows


# ---- text for the terminal (core/cli/evaluation.py prints it) -------------------------------


def _table(head: list[str], lines: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *lines]]


def format_summary(summary: dict) -> str:
    sample = summary.get("sample", {})
    lines = [
        f"checkpoint  {summary['checkpoint']}",
        f"dataset     {summary['dataset']} ({summary['split']}): {summary['n']} rows sampled (seed "
        f"{sample.get('seed')}), {summary['generated']} generated, {summary['reused']} from the store",
        f"eval_loss   {summary['loss']:.4f}" if summary["loss"] is not None else "eval_loss   unknown",
        *(
            [
                f"repair      PlantUML's check and the repairs took {summary['repair_s']:.1f} s, "
                f"{summary['repair_s'] / summary['generation_s']:.2f}x the generation's {summary['generation_s']:.1f} s"
            ]
            if summary.get("repair_s") is not None and summary.get("generation_s")
            else []
        ),
        *(
            [
                "pass@{k}      {value:.3f} ({low:.2f}–{high:.2f}, n {n}): prompts with valid PlantUML among "
                "their {k} samples".format(**summary["pass_at_k"])
            ]
            if summary.get("pass_at_k")
            else []
        ),
        "",
        "each value: mean (95% interval, n rows measured); real = people's prose, generated = template rows",
        "",
    ]
    by_group = metrics.groups(summary)
    lines += _table(
        ["metric", *by_group],
        [
            [heading, *(metrics.estimate_text(g, key) for g in by_group.values())]
            for key, heading in metrics.SHOWN
            if summary.get(key) is not None
        ],
    )
    types = summary.get("per_type") or {}
    if types:
        keys = ["syntax_valid_rate", "type_accuracy", "entity_f1", "relation_f1", "complete_rate"]
        head = ["per type", "rows", *(dict(metrics.SHOWN)[k] for k in keys)]
        body = []
        for name, values in sorted(types.items()):
            for origin, group in {
                name: values,
                **{f"  {o}": g for o, g in values.get("by_origin", {}).items()},
            }.items():
                body.append([origin, str(group["n"]), *(metrics.estimate_text(group, k) for k in keys)])
        lines += ["", *_table(head, body)]
    verdict = summary["verdict"]
    lines += ["", f"verdict: {verdict['label']}", *(f"  - {reason}" for reason in verdict.get("reasons", []))]
    return "\n".join(lines)


def format_compare(result: dict) -> str:
    """Each checkpoint's scores and each delta against the first with its sign-test verdict, for
    all rows and per origin."""
    names = result["checkpoints"]
    lines = [
        f"{result['n']} prompts of {result['dataset']} ({result['split']}); deltas against {names[0]}, "
        "sign test on the same prompts (p < 0.05: better / worse, else within noise)"
    ]
    for group in metrics.groups(result["summaries"][0]):
        summaries = [metrics.groups(s).get(group) for s in result["summaries"]]
        head = [f"{group} ({summaries[0]['n']} rows)", *names, *(f"Δ {n}" for n in names[1:])]
        body = [
            [
                heading,
                *(metrics.estimate_text(s, key) if s else "-" for s in summaries),
                *(metrics.delta_text(t[group][key]) for t in result["tests"]),
            ]
            for key, heading in metrics.SHOWN
            if summaries[0].get(key) is not None
        ]
        lines += ["", *_table(head, body)]
    return "\n".join(lines)
