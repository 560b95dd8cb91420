"""The DuckDB store: runs, metrics, checkpoints, evaluations, generations, renders.

DuckDB lets one process hold a database file open for writing at a time. The studio, a training
worker and an evaluation all write here at once, so nobody keeps the file open: every operation
takes an exclusive `flock` on a sidecar lock file, opens a short-lived connection, does its work in
one transaction and closes it. The flock serialises processes and the studio's threads alike, and
the kernel releases it when a holder dies (even by kill -9). Without it, DuckDB's own lock races
with a closing process's checkpoint ("Could not read enough bytes"), seen with four processes. Metric rows are keyed by
(run, step, name) so a resumed run that re-logs a step replaces the row instead of doubling it.

The schema is an ordered list of small migrations, recorded in `schema_migrations`.
"""

import contextlib
import fcntl
import json
import random
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from core import paths

LOCK_WAIT_S = 120.0


def m001_initial(con):
    con.execute(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            output_dir TEXT NOT NULL,
            phase_kind TEXT NOT NULL,          -- fresh | continue
            parent_run TEXT,
            parent_checkpoint TEXT,
            changes JSON,                      -- what this phase changed against its parent
            config JSON NOT NULL,              -- the exact resolved config
            config_path TEXT,
            status TEXT NOT NULL,              -- created | running | stopped | finished | failed
            backend TEXT,
            base_model TEXT,
            override_reason TEXT,
            pid INTEGER,
            created_at TIMESTAMP NOT NULL,
            started_at TIMESTAMP,
            finished_at TIMESTAMP,
            error TEXT
        )
        """
    )
    con.execute(
        """
        CREATE TABLE metrics (
            run_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            epoch DOUBLE,
            name TEXT NOT NULL,
            value DOUBLE,
            time TIMESTAMP NOT NULL,
            PRIMARY KEY (run_id, step, name)
        )
        """
    )
    con.execute(
        """
        CREATE TABLE checkpoints (
            path TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            manifest_sha256 TEXT NOT NULL,     -- sha256 of the manifest file listing every file's sha256
            created_at TIMESTAMP NOT NULL
        )
        """
    )
    con.execute(
        """
        CREATE TABLE evaluations (
            id TEXT PRIMARY KEY,
            checkpoint TEXT NOT NULL,          -- a checkpoint path, or 'base'
            dataset TEXT NOT NULL,
            settings JSON,
            n INTEGER NOT NULL,
            summary JSON NOT NULL,
            created_at TIMESTAMP NOT NULL
        )
        """
    )
    con.execute(
        """
        CREATE TABLE generations (
            id TEXT PRIMARY KEY,
            evaluation_id TEXT,
            checkpoint TEXT NOT NULL,
            settings_key TEXT NOT NULL,        -- sha256 of (prompt, decoding settings): same key, same output
            prompt TEXT NOT NULL,
            reference TEXT,
            diagram_type TEXT,
            output TEXT NOT NULL,
            metrics JSON,
            tokens INTEGER,
            latency_s DOUBLE,
            created_at TIMESTAMP NOT NULL
        )
        """
    )
    con.execute("CREATE INDEX generations_lookup ON generations (checkpoint, settings_key)")
    con.execute(
        """
        CREATE TABLE renders (
            key TEXT PRIMARY KEY,              -- sha256 of (source, format, options)
            format TEXT NOT NULL,
            plantuml_version TEXT NOT NULL,
            ok BOOLEAN NOT NULL,
            data BLOB,
            error_line INTEGER,
            error_message TEXT,
            created_at TIMESTAMP NOT NULL
        )
        """
    )
    con.execute(
        """
        CREATE TABLE acknowledgements (
            subject TEXT NOT NULL,             -- a run id or a config path
            item TEXT NOT NULL,                -- e.g. 'loss_curve'
            note TEXT,
            created_at TIMESTAMP NOT NULL,
            PRIMARY KEY (subject, item)
        )
        """
    )


def m002_run_checklist(con):
    # the pre-continue checklist as it stood when a continue phase started: each item, passed, why
    con.execute("ALTER TABLE runs ADD COLUMN checklist JSON")


MIGRATIONS = [m001_initial, m002_run_checklist]

_migrated: set[Path] = set()
_held = threading.local()  # the connection a thread's `connect` block holds: (path, connection)


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold the store's sidecar lock; wait (with jitter) up to LOCK_WAIT_S for it."""
    deadline = time.monotonic() + LOCK_WAIT_S
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path}: store busy for {LOCK_WAIT_S:.0f} s") from None
                time.sleep(random.uniform(0.002, 0.02))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrate(con) -> list[str]:
    """Apply the migrations this database has not seen yet, in order; return their names."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TIMESTAMP)"
    )
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, migration in enumerate(MIGRATIONS, start=1):
        if version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        migration(con)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, migration.__name__, now()])
        con.execute("COMMIT")
        applied.append(migration.__name__)
    return applied


@contextlib.contextmanager
def connect(path: Path | None = None):
    """A short-lived connection to the store, migrated, inside one transaction; closed on exit.

    Inside another `connect` block of the same thread on the same store, it is that block's connection
    and transaction (see `session`)."""
    path = Path(path or paths.store_path())
    outer = getattr(_held, "connection", None)
    if outer is not None and outer[0] == path:
        yield outer[1]
        return
    with _exclusive(path):
        con = duckdb.connect(str(path))
        _held.connection = (path, con)
        try:
            if path not in _migrated:
                migrate(con)
                _migrated.add(path)
            con.execute("BEGIN TRANSACTION")
            yield con
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
        finally:
            _held.connection = outer
            con.close()


@contextlib.contextmanager
def session():
    """Every store call of this thread in the block shares one connection and transaction: for a page or
    a core function that reads many times. Opening the store costs ~25 ms, and the Runs page's view
    makes 13 calls. The lock is held for the whole block, so keep slow work (rendering, generating)
    out of it."""
    with connect():
        yield


def query(sql: str, params=None) -> list[dict]:
    """Run a read query and return rows as dicts."""
    with connect() as con:
        cur = con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def query_df(sql: str, params=None):
    """Run a read query and return a pandas DataFrame (for the studio's charts and tables)."""
    with connect() as con:
        return con.execute(sql, params or []).df()


# ---- runs -------------------------------------------------------------------------------------


def create_run(*, name, output_dir, phase_kind, config, config_path=None, parent_run=None,
               parent_checkpoint=None, changes=None, backend=None, base_model=None,
               override_reason=None, checklist=None) -> str:
    run_id = new_id()
    with connect() as con:
        con.execute(
            """INSERT INTO runs (id, name, output_dir, phase_kind, parent_run, parent_checkpoint, changes,
               config, config_path, status, backend, base_model, override_reason, checklist, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'created', ?, ?, ?, ?, ?)""",
            [run_id, name, str(output_dir), phase_kind, parent_run, parent_checkpoint,
             json.dumps(changes or {}), json.dumps(config), config_path, backend, base_model,
             override_reason, json.dumps(checklist) if checklist is not None else None, now()],
        )
    return run_id


def update_run(run_id: str, **fields) -> None:
    if not fields:
        return
    cols = ", ".join(f"{key} = ?" for key in fields)
    with connect() as con:
        con.execute(f"UPDATE runs SET {cols} WHERE id = ?", [*fields.values(), run_id])


def get_run(run_id: str) -> dict | None:
    rows = query("SELECT * FROM runs WHERE id = ?", [run_id])
    return rows[0] if rows else None


def run_for_output_dir(output_dir) -> dict | None:
    rows = query("SELECT * FROM runs WHERE output_dir = ? ORDER BY created_at DESC LIMIT 1", [str(output_dir)])
    return rows[0] if rows else None


# ---- metrics and checkpoints ------------------------------------------------------------------


def log_metrics(run_id: str, step: int, epoch: float | None, values: dict[str, float]) -> None:
    """Record one step's metrics; a step logged again (after a resume) replaces its rows."""
    stamp = now()
    rows = [[run_id, int(step), epoch, name, float(value), stamp] for name, value in values.items()
            if value is not None]
    if not rows:
        return
    with connect() as con:
        con.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?, ?)", rows)


def delete_metrics_after(run_id: str, step: int) -> None:
    """A resume restarts from a checkpoint: rows logged after it by the interrupted attempt go."""
    with connect() as con:
        con.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", [run_id, int(step)])


def record_checkpoint(run_id: str, path, step: int, manifest_sha256: str) -> None:
    with connect() as con:
        con.execute(
            "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?)",
            [str(path), run_id, int(step), manifest_sha256, now()],
        )


def acknowledge(subject: str, item: str, note: str | None = None) -> None:
    with connect() as con:
        con.execute("INSERT OR REPLACE INTO acknowledgements VALUES (?, ?, ?, ?)", [subject, item, note, now()])
