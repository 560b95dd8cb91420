"""The `evaluations` and `generations` tables: a checkpoint's evaluation summary, and every output
a model generated (with or without an evaluation), keyed by the settings that produced it."""

from dataclasses import astuple, dataclass, fields
from datetime import datetime

from core.store.db import connect, dumps, loads, rows


@dataclass(frozen=True)
class Evaluation:
    id: str
    checkpoint: str  # a checkpoint path, or 'base'
    dataset: str
    settings: dict | None
    n: int
    summary: dict
    created_at: datetime


@dataclass(frozen=True)
class Generation:
    id: str
    evaluation_id: str | None
    checkpoint: str
    settings_key: str  # sha256 of (prompt, decoding settings): same key, same output
    prompt: str
    reference: str | None
    diagram_type: str | None
    output: str
    metrics: dict | None
    tokens: int | None
    latency_s: float | None
    created_at: datetime


@dataclass(frozen=True)
class NewestOutput:
    """A checkpoint's newest output for a prompt."""

    checkpoint: str
    prompt: str
    output: str
    metrics: dict


EVALUATION_COLUMNS = ", ".join(f.name for f in fields(Evaluation))
GENERATION_COLUMNS = ", ".join(f.name for f in fields(Generation))


def _evaluation(row: dict) -> Evaluation:
    return Evaluation(**{**row, "settings": loads(row["settings"]), "summary": loads(row["summary"])})


def _generation(row: dict) -> Generation:
    return Generation(**{**row, "metrics": loads(row["metrics"])})


def _generation_values(g: Generation) -> list:
    values = list(astuple(g))
    values[8] = dumps(g.metrics)
    return values


def _insert_generations(con, generations: list[Generation]) -> None:
    if generations:
        con.executemany(
            f"INSERT INTO generations ({GENERATION_COLUMNS}) VALUES ({', '.join('?' * 12)})",
            [_generation_values(g) for g in generations],
        )


def add_generations(generations: list[Generation]) -> None:
    with connect() as con:
        _insert_generations(con, generations)


def add(evaluation: Evaluation, linked: list[str], generations: list[Generation]) -> None:
    """Store an evaluation, link the stored generations `linked` (ids) to it and store `generations`,
    in one transaction."""
    with connect() as con:
        con.execute(
            f"INSERT INTO evaluations ({EVALUATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                evaluation.id,
                evaluation.checkpoint,
                evaluation.dataset,
                dumps(evaluation.settings),
                evaluation.n,
                dumps(evaluation.summary),
                evaluation.created_at,
            ],
        )
        if linked:
            con.execute(
                "UPDATE generations SET evaluation_id = ? WHERE id IN (SELECT unnest(?))", [evaluation.id, linked]
            )
        _insert_generations(con, generations)


def generations_for_keys(checkpoint: str, keys: list[str]) -> list[Generation]:
    """The checkpoint's stored generations of these settings keys, oldest first."""
    if not keys:
        return []
    found = rows(
        f"SELECT {GENERATION_COLUMNS} FROM generations WHERE checkpoint = ? AND settings_key IN "
        "(SELECT unnest(?)) ORDER BY created_at",
        [checkpoint, keys],
    )
    return [_generation(row) for row in found]


def generations_of(evaluation_id: str) -> list[Generation]:
    """The generations of one evaluation, by id."""
    found = rows(f"SELECT {GENERATION_COLUMNS} FROM generations WHERE evaluation_id = ? ORDER BY id", [evaluation_id])
    return [_generation(row) for row in found]


def newest_outputs(
    checkpoints: list[str], prompts: list[str], max_new_tokens: int | None = None, repetition: str = "none"
) -> list[NewestOutput]:
    """Each checkpoint's newest greedy output for each prompt with that `repetition` control, made without
    repair (and, with `max_new_tokens`, with that token budget: the generation's own record of it, else its
    evaluation's)."""
    if not (checkpoints and prompts):
        return []
    budget = (
        "coalesce(TRY_CAST(g.metrics->>'max_new_tokens' AS INTEGER), TRY_CAST(e.settings->>'max_new_tokens' "
        "AS INTEGER)) = ? AND "
        if max_new_tokens
        else ""
    )
    found = rows(
        f"""SELECT g.checkpoint, g.prompt, arg_max(g.output, g.created_at) AS output,
                   arg_max(g.metrics, g.created_at) AS metrics
            FROM generations g LEFT JOIN evaluations e ON e.id = g.evaluation_id
            WHERE g.checkpoint IN ({", ".join("?" * len(checkpoints))}) AND g.prompt IN (SELECT unnest(?))
            AND {budget}NOT coalesce(TRY_CAST(g.metrics->>'repair' AS BOOLEAN),
                                     TRY_CAST(e.settings->>'repair' AS BOOLEAN), false)
            AND coalesce(TRY_CAST(g.metrics->>'greedy' AS BOOLEAN), true)
            AND coalesce(g.metrics->>'repetition', 'none') = ?
            GROUP BY g.checkpoint, g.prompt""",
        [*checkpoints, list(prompts), *([max_new_tokens] if max_new_tokens else []), repetition],
    )
    return [NewestOutput(**{**row, "metrics": loads(row["metrics"])}) for row in found]


def mean_output_tokens(checkpoints: list[str], max_new_tokens: int) -> dict[str, float]:
    """checkpoint -> the mean length of its stored outputs in tokens, at most `max_new_tokens` each and
    an output cut off by its budget counted at `max_new_tokens`; checkpoints with none are absent."""
    if not checkpoints:
        return {}
    found = rows(
        f"""SELECT checkpoint,
                   avg(CASE WHEN TRY_CAST(metrics->>'truncated' AS BOOLEAN) THEN ? ELSE least(tokens, ?) END) AS tokens
            FROM generations WHERE checkpoint IN ({", ".join("?" * len(checkpoints))}) GROUP BY checkpoint""",
        [max_new_tokens, max_new_tokens, *checkpoints],
    )
    return {row["checkpoint"]: float(row["tokens"]) for row in found}


def generation_speeds(limit: int = 20) -> list[tuple[float, int]]:
    """(seconds spent generating, tokens generated) of the newest `limit` evaluations that generated something."""
    found = rows(
        "SELECT summary->>'generation_s' AS s, summary->>'generated_tokens' AS t FROM evaluations "
        "WHERE TRY_CAST(summary->>'generation_s' AS DOUBLE) > 0 ORDER BY created_at DESC LIMIT ?",
        [limit],
    )
    return [(float(row["s"]), int(row["t"])) for row in found]


def latest_per_checkpoint() -> list[Evaluation]:
    """Each checkpoint's newest evaluation."""
    found = rows(
        f"SELECT {EVALUATION_COLUMNS} FROM evaluations QUALIFY row_number() OVER "
        "(PARTITION BY checkpoint ORDER BY created_at DESC) = 1"
    )
    return [_evaluation(row) for row in found]


def of_checkpoint(checkpoint: str) -> list[Evaluation]:
    """The checkpoint's evaluations, newest first."""
    found = rows(
        f"SELECT {EVALUATION_COLUMNS} FROM evaluations WHERE checkpoint = ? ORDER BY created_at DESC",
        [str(checkpoint)],
    )
    return [_evaluation(row) for row in found]


def latest_of(checkpoint: str) -> Evaluation | None:
    """The checkpoint's newest evaluation."""
    found = rows(
        f"SELECT {EVALUATION_COLUMNS} FROM evaluations WHERE checkpoint = ? ORDER BY created_at DESC LIMIT 1",
        [str(checkpoint)],
    )
    return _evaluation(found[0]) if found else None


def latest_of_run(run_id: str, output_dir: str) -> Evaluation | None:
    """The newest evaluation of any checkpoint the run recorded or of any folder inside its `output_dir`."""
    found = rows(
        f"SELECT {EVALUATION_COLUMNS} FROM evaluations WHERE checkpoint IN "
        "(SELECT path FROM checkpoints WHERE run_id = ?) OR starts_with(checkpoint, ?) "
        "ORDER BY created_at DESC LIMIT 1",
        [run_id, str(output_dir) + "/"],
    )
    return _evaluation(found[0]) if found else None
