"""The store's database file: the connection, its lock and its migrations.

DuckDB lets one process hold a database file open for writing at a time. The studio, a training
worker and an evaluation all write here at once, so nobody keeps the file open: every operation
takes an exclusive `flock` on a sidecar lock file, opens a short-lived connection, does its work in
one transaction and closes it. The flock serialises processes and the studio's threads alike, and
the kernel releases it when a holder dies (even by kill -9). Without it, DuckDB's own lock races
with a closing process's checkpoint ("Could not read enough bytes"), seen with four processes.

The schema is an ordered list of small migrations, recorded in `schema_migrations`. Every SQL
statement of the project lives in this package: the modules beside this one hold one table (or a
pair of tables) each and answer with typed rows.
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
from core.store.damage import check_schema, from_error

LOCK_WAIT_S = 120.0

TABLES = (
    "runs",
    "metrics",
    "checkpoints",
    "evaluations",
    "generations",
    "renders",
    "acknowledgements",
    "chosen_model",
)


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


def m003_run_job(con):
    # the background job (core/jobs.py) a run's worker runs as; NULL for a worker `umlstudio train` runs attached
    con.execute("ALTER TABLE runs ADD COLUMN job TEXT")


def m004_chosen_model(con):
    # the project's chosen model (`umlstudio choose`): one row at most; generate, serve and the playground default to it
    con.execute(
        """
        CREATE TABLE chosen_model (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            checkpoint TEXT NOT NULL,          -- a checkpoint folder, resolved
            chosen_at TIMESTAMP NOT NULL
        )
        """
    )


def m005_run_imported(con):
    # a run trained elsewhere and adopted by `umlstudio import` (core/training/adopt.py): the folder it was read
    # from, the files read, the settings the folder did not tell; NULL for a run the studio trained
    con.execute("ALTER TABLE runs ADD COLUMN imported JSON")


MIGRATIONS = [m001_initial, m002_run_checklist, m003_run_job, m004_chosen_model, m005_run_imported]

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
        con.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            [version, migration.__name__, now()],
        )
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
        try:
            con = duckdb.connect(str(path))
        except duckdb.Error as exc:  # a damaged file: one line naming `umlstudio store rebuild` (core/store/damage.py)
            raise from_error(path, exc) or exc from None
        _held.connection = (path, con)
        try:
            if path not in _migrated:
                check_schema(con, path, MIGRATIONS)  # another program's DuckDB file is not migrated into
                migrate(con)
                _migrated.add(path)
            con.execute("BEGIN TRANSACTION")
            yield con
            con.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            damaged = from_error(path, exc) if isinstance(exc, duckdb.Error) else None
            if damaged is not None:
                raise damaged from None
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


def rows(sql: str, params=None) -> list[dict]:
    """Run a query on the store and return its rows as dicts (for this package's modules)."""
    with connect() as con:
        cur = con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def loads(text):
    """A JSON column's value as Python (None stays None)."""
    return None if text is None else json.loads(text)


def dumps(value):
    """A value for a JSON column (None stays NULL)."""
    return None if value is None else json.dumps(value)


def query_for_tests(sql: str, params=None) -> list[dict]:
    """Any read query, rows as dicts: for tests' assertions and diagnostics only. The product asks
    the named functions of this package's table modules."""
    return rows(sql, params)


def counts() -> dict[str, int]:
    """How many rows each table holds."""
    with connect() as con:
        return {table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}


def load_frames(frames: dict) -> None:
    """Bulk-load pandas DataFrames into their tables (table name -> frame whose columns are named like
    the table's), in one transaction: for seeding a large store (the studio benchmark)."""
    with connect() as con:
        for table, frame in frames.items():
            if table not in TABLES:
                raise ValueError(f"{table}: not a table of the store")
            con.register("frame", frame)
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM frame")
            con.unregister("frame")
