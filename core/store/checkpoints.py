"""The `checkpoints` table: each checkpoint a run saved, with the sha256 of its manifest."""

from dataclasses import dataclass
from datetime import datetime

from core.store.db import connect, now, rows


@dataclass(frozen=True)
class Checkpoint:
    path: str
    run_id: str
    step: int
    manifest_sha256: str  # sha256 of the manifest file listing every file's sha256
    created_at: datetime


@dataclass(frozen=True)
class OnCurve:
    """A saved checkpoint placed on its run's curves: the validation loss logged at its step (None when
    none was) and the last training loss at or before it."""

    run_id: str
    step: int
    path: str
    eval_loss: float | None
    loss: float | None


COLUMNS = "path, run_id, step, manifest_sha256, created_at"


def _marks(values) -> str:
    return ", ".join("?" * len(values))


def record(run_id: str, path, step: int, manifest_sha256: str) -> None:
    with connect() as con:
        con.execute(
            f"INSERT OR REPLACE INTO checkpoints ({COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            [str(path), run_id, int(step), manifest_sha256, now()],
        )


def forget_run(run_id: str) -> None:
    """Drop the run's checkpoint rows (an imported run read again records what its folder holds now)."""
    with connect() as con:
        con.execute("DELETE FROM checkpoints WHERE run_id = ?", [run_id])


def get(path) -> Checkpoint | None:
    found = rows(f"SELECT {COLUMNS} FROM checkpoints WHERE path = ?", [str(path)])
    return Checkpoint(**found[0]) if found else None


def newest() -> Checkpoint | None:
    found = rows(f"SELECT {COLUMNS} FROM checkpoints ORDER BY created_at DESC LIMIT 1")
    return Checkpoint(**found[0]) if found else None


def with_run_names() -> list[tuple[Checkpoint, str]]:
    """Every checkpoint, newest first, with its run's name (its run id when the run row is gone)."""
    found = rows(
        "SELECT c.path, c.run_id, c.step, c.manifest_sha256, c.created_at, coalesce(r.name, c.run_id) AS run "
        "FROM checkpoints c LEFT JOIN runs r ON r.id = c.run_id ORDER BY c.created_at DESC"
    )
    return [(Checkpoint(**{k: v for k, v in row.items() if k != "run"}), row["run"]) for row in found]


def of_runs(run_ids) -> list[Checkpoint]:
    """The runs' checkpoints, by step."""
    run_ids = list(run_ids)
    if not run_ids:
        return []
    return [
        Checkpoint(**row)
        for row in rows(f"SELECT {COLUMNS} FROM checkpoints WHERE run_id IN ({_marks(run_ids)}) ORDER BY step", run_ids)
    ]


def run_ids() -> list[str]:
    """The runs that saved a checkpoint."""
    return [row["run_id"] for row in rows("SELECT DISTINCT run_id FROM checkpoints")]


def on_curves(run_ids) -> list[OnCurve]:
    """The runs' checkpoints, by step, each with the validation loss logged at its step and the last
    training loss at or before it (see OnCurve)."""
    run_ids = list(run_ids)
    if not run_ids:
        return []
    marks = _marks(run_ids)
    found = rows(
        f"""WITH loss AS (SELECT run_id, step, value FROM metrics WHERE name = 'loss' AND run_id IN ({marks})),
                 val AS (SELECT run_id, step, value FROM metrics WHERE name = 'eval_loss' AND run_id IN ({marks}))
            SELECT c.run_id, c.step, c.path, val.value AS eval_loss, loss.value AS loss
            FROM checkpoints c
            ASOF LEFT JOIN loss ON c.run_id = loss.run_id AND c.step >= loss.step
            LEFT JOIN val ON val.run_id = c.run_id AND val.step = c.step
            WHERE c.run_id IN ({marks}) ORDER BY c.step""",
        run_ids * 3,
    )
    return [OnCurve(**row) for row in found]
