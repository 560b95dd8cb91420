"""The `metrics` table: what a run logged, one row per (run, step, name).

A step logged again (after a resume) replaces its rows instead of doubling them."""

from dataclasses import dataclass

from core.store.db import connect, now, rows


@dataclass(frozen=True)
class Point:
    """One logged value of a run's metric at a step."""

    run_id: str
    step: int
    name: str
    value: float | None


@dataclass(frozen=True)
class Sample:
    """One logged value and the run that logged it."""

    value: float
    run_id: str
    run_name: str


def _marks(values) -> str:
    return ", ".join("?" * len(values))


def log(run_id: str, step: int, epoch: float | None, values: dict[str, float]) -> None:
    """Record one step's metrics; a step logged again (after a resume) replaces its rows."""
    stamp = now()
    logged = [
        [run_id, int(step), epoch, name, float(value), stamp] for name, value in values.items() if value is not None
    ]
    if not logged:
        return
    with connect() as con:
        con.executemany(
            "INSERT OR REPLACE INTO metrics (run_id, step, epoch, name, value, time) VALUES (?, ?, ?, ?, ?, ?)", logged
        )


def delete_after(run_id: str, step: int) -> None:
    """A resume restarts from a checkpoint: rows logged after it by the interrupted attempt go."""
    with connect() as con:
        con.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", [run_id, int(step)])


def curve(run_ids, names) -> list[Point]:
    """The runs' logged values of the metrics `names`, by step."""
    run_ids, names = list(run_ids), list(names)
    if not (run_ids and names):
        return []
    found = rows(
        f"SELECT run_id, step, name, value FROM metrics WHERE run_id IN ({_marks(run_ids)}) "
        f"AND name IN ({_marks(names)}) ORDER BY step",
        [*run_ids, *names],
    )
    return [Point(**row) for row in found]


def latest() -> list[Point]:
    """Every run's every metric at its last logged step."""
    found = rows(
        "SELECT run_id, max(step) AS step, name, arg_max(value, step) AS value FROM metrics GROUP BY run_id, name"
    )
    return [Point(**row) for row in found]


def last_step(run_id: str) -> int | None:
    """The last step the run logged anything at; None when it logged nothing."""
    return rows("SELECT max(step) AS step FROM metrics WHERE run_id = ?", [run_id])[0]["step"]


def last_step_and_epoch(run_id: str) -> tuple[int | None, float | None]:
    """The last step the run logged and the epoch logged with it."""
    found = rows("SELECT max(step) AS step, arg_max(epoch, step) AS epoch FROM metrics WHERE run_id = ?", [run_id])[0]
    return found["step"], found["epoch"]


def value_at(run_id: str, name: str, step: int | None = None) -> float | None:
    """The run's last logged value of `name` at or before `step` (any step when None); None when none."""
    at_step = "" if step is None else " AND step <= ?"
    found = rows(
        f"SELECT value FROM metrics WHERE run_id = ? AND name = ?{at_step} ORDER BY step DESC LIMIT 1",
        [run_id, name] + ([] if step is None else [step]),
    )
    return found[0]["value"] if found else None


def maxima(run_id: str, names) -> dict[str, float]:
    """The largest value the run logged of each of the metrics `names` (absent when never logged)."""
    names = list(names)
    found = rows(
        f"SELECT name, max(value) AS value FROM metrics WHERE run_id = ? AND name IN ({_marks(names)}) GROUP BY name",
        [run_id, *names],
    )
    return {row["name"]: row["value"] for row in found}


def maxima_of_runs(run_ids, names) -> dict[str, dict[str, float | None]]:
    """run id -> {name: the largest value it logged, None when never} for each of the metrics `names`."""
    run_ids, names = list(run_ids), list(names)
    if not run_ids:
        return {}
    columns = ", ".join(f"max(value) FILTER (WHERE name = ?) AS m{i}" for i in range(len(names)))
    found = rows(
        f"SELECT run_id, {columns} FROM metrics WHERE run_id IN ({_marks(run_ids)}) GROUP BY run_id", [*names, *run_ids]
    )
    return {row["run_id"]: {name: row[f"m{i}"] for i, name in enumerate(names)} for row in found}


def positive_samples(
    name: str,
    *,
    run_id: str | None = None,
    base_model: str | None = None,
    backend: str | None = None,
    except_run: str | None = None,
) -> list[Sample]:
    """Values above zero of the metric `name` with the run that logged them: the run `run_id`'s, or
    those of runs on `base_model` and `backend` ('auto': any backend) other than `except_run`."""
    sql = (
        "SELECT m.value, r.id AS run_id, r.name AS run_name FROM metrics m JOIN runs r ON r.id = m.run_id "
        "WHERE m.name = ? AND m.value > 0"
    )
    params: list = [name]
    if run_id is not None:
        sql += " AND m.run_id = ?"
        params.append(run_id)
    else:
        sql += " AND r.base_model = ? AND (? = 'auto' OR r.backend = ?) AND r.id IS DISTINCT FROM ?"
        params += [base_model, backend, backend, except_run]
    return [Sample(**row) for row in rows(sql, params)]
