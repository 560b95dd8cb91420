"""The `runs` table: one row a training run (a phase), its exact config and where it stands."""

from dataclasses import dataclass, fields
from datetime import datetime

from core.store.db import connect, dumps, loads, new_id, now, rows


@dataclass(frozen=True)
class Run:
    id: str
    name: str
    output_dir: str
    phase_kind: str  # fresh | continue
    parent_run: str | None
    parent_checkpoint: str | None
    changes: dict  # what this phase changed against its parent
    config: dict  # the exact resolved config
    config_path: str | None
    status: str  # created | running | stopped | finished | failed
    backend: str | None
    base_model: str | None
    override_reason: str | None
    pid: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    checklist: list | None  # the pre-continue checklist as it stood when a continue phase started
    job: str | None  # the job (core/jobs.py) its worker runs as; None when `umlstudio train` runs it attached
    imported: dict | None  # a run trained elsewhere (core/training/adopt.py): where from, what was read, unknowns


FIELDS = [f.name for f in fields(Run)]
COLUMNS = ", ".join(FIELDS)
JSON_COLUMNS = ("changes", "config", "checklist", "imported")  # stored as JSON text, read back as Python values


def _run(row: dict) -> Run:
    return Run(
        **{
            **row,
            "changes": loads(row["changes"]) or {},
            "config": loads(row["config"]),
            "checklist": loads(row["checklist"]),
            "imported": loads(row["imported"]),
        }
    )


def _runs(sql: str, params=None) -> list[Run]:
    return [_run(row) for row in rows(f"SELECT {COLUMNS} FROM runs {sql}", params)]


def create(
    *,
    name,
    output_dir,
    phase_kind,
    config,
    config_path=None,
    parent_run=None,
    parent_checkpoint=None,
    changes=None,
    backend=None,
    base_model=None,
    override_reason=None,
    checklist=None,
    imported=None,
) -> str:
    """A new run row, status `created`; returns its id."""
    run_id = new_id()
    with connect() as con:
        con.execute(
            """INSERT INTO runs (id, name, output_dir, phase_kind, parent_run, parent_checkpoint, changes,
               config, config_path, status, backend, base_model, override_reason, checklist, imported,
               created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'created', ?, ?, ?, ?, ?, ?)""",
            [
                run_id,
                name,
                str(output_dir),
                phase_kind,
                parent_run,
                parent_checkpoint,
                dumps(changes or {}),
                dumps(config),
                config_path,
                backend,
                base_model,
                override_reason,
                dumps(checklist),
                dumps(imported),
                now(),
            ],
        )
    return run_id


def update(run_id: str, **columns) -> None:
    """Set some columns of a run (`config`, `changes` and `checklist` given as Python values)."""
    if not columns:
        return
    unknown = set(columns) - (set(FIELDS) - {"id"})
    if unknown:
        raise ValueError(f"runs.update: no such column to set: {', '.join(sorted(unknown))}")
    values = [dumps(value) if key in JSON_COLUMNS else value for key, value in columns.items()]
    with connect() as con:
        con.execute(f"UPDATE runs SET {', '.join(f'{key} = ?' for key in columns)} WHERE id = ?", [*values, run_id])


def get(run_id: str) -> Run | None:
    found = _runs("WHERE id = ?", [run_id])
    return found[0] if found else None


def for_output_dir(output_dir) -> Run | None:
    """The newest run that writes into `output_dir`."""
    found = _runs("WHERE output_dir = ? ORDER BY created_at DESC LIMIT 1", [str(output_dir)])
    return found[0] if found else None


def named(name: str) -> Run | None:
    """The newest run of that name."""
    found = _runs("WHERE name = ? ORDER BY created_at DESC LIMIT 1", [name])
    return found[0] if found else None


def all_newest_first() -> list[Run]:
    return _runs("ORDER BY created_at DESC")


def all_oldest_first() -> list[Run]:
    return _runs("ORDER BY created_at")


def with_status(*statuses: str) -> list[Run]:
    """Runs whose stored status is one of `statuses`, oldest first."""
    return _runs(f"WHERE status IN ({', '.join('?' * len(statuses))}) ORDER BY created_at", list(statuses))


def with_metric(name: str) -> list[Run]:
    """Runs that logged the metric `name`, newest first."""
    return _runs(
        "WHERE EXISTS (SELECT 1 FROM metrics m WHERE m.run_id = runs.id AND m.name = ?) ORDER BY created_at DESC",
        [name],
    )


def base_models() -> set[str]:
    """The base models any run trained on."""
    return {r["base_model"] for r in rows("SELECT DISTINCT base_model FROM runs WHERE base_model IS NOT NULL")}
