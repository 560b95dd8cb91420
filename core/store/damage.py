"""A store that can be lost: telling a damaged or foreign `studio.duckdb` from a working one.

Everything the store holds about training (runs, checkpoints, metrics) is also written in the run
folders, so a store that cannot be read is rebuilt from them (`umlstudio store rebuild`,
core/store/rebuild.py). This module only recognises the damage and says it in one line; the same
sentence ends a command (exit 2) and is shown by the studio.
"""

from pathlib import Path

import duckdb

from core.errors import UserError, no_space

# what DuckDB says about a file it cannot read as a database, by exception class and message
DAMAGE_CLASSES = (duckdb.IOException, duckdb.SerializationException, duckdb.InternalException, duckdb.FatalException)
DAMAGE_WORDS = (
    "not a valid duckdb database",
    "could not read enough bytes",
    "corrupt",
    "checksum",
    "failed to deserialize",
    "serializ",
    "invalid block",
    "unsupported version",
)


class StoreDamaged(UserError):
    """The store file cannot be used: unreadable, truncated, or another program's database."""

    def __init__(self, path: Path, why: str):
        self.path, self.why = Path(path), why
        super().__init__(message(path, why))


class StoreFull(UserError):
    """A store write that met a full disk: DuckDB rolled the transaction back, the file is as before."""

    def __init__(self, path: Path):
        self.path = Path(path)
        super().__init__(
            f"the store {path}: the disk is full (no space left on device) — the write was rolled "
            f"back and the store is as it was; free space on the disk of {self.path.parent}, then run "
            f"the command again"
        )


def message(path, why: str) -> str:
    """The one sentence: what is wrong, where, how to recover."""
    return (
        f"the store {path} is damaged ({why}) — rebuild runs, checkpoints and metrics from the run folders with "
        f"`umlstudio store rebuild` (the damaged file is kept beside it as {Path(path).name}.damaged-<time>)"
    )


def is_damage(exc: BaseException) -> bool:
    """Whether a DuckDB error means the file itself cannot be read (not a bad query or a busy lock)."""
    text = str(exc).lower()
    return isinstance(exc, DAMAGE_CLASSES) and any(word in text for word in DAMAGE_WORDS)


def why(exc: BaseException) -> str:
    """The DuckDB error in a few words, the file's path left out (the sentence names it)."""
    text = str(exc).lower()
    if "not a valid duckdb database" in text:
        return "not a DuckDB database file"
    if "could not read enough bytes" in text:
        return "the file is cut short"
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return first.split(": ", 1)[-1][:160]


def from_error(path: Path, exc: BaseException) -> UserError | None:
    """The one-line error a DuckDB error on opening, reading or writing the store means (StoreDamaged,
    StoreFull), or None when it is neither."""
    if isinstance(exc, (StoreDamaged, StoreFull)):
        return exc
    if isinstance(exc, duckdb.Error) and no_space(exc):
        return StoreFull(path)
    return StoreDamaged(path, why(exc)) if isinstance(exc, duckdb.Error) and is_damage(exc) else None


def check_schema(con, path: Path, migrations) -> None:
    """Refuse a DuckDB file that is not this project's store: tables but no `schema_migrations`, or
    migrations recorded under other names. Run once per process, before migrating (which would
    otherwise add our tables into another program's database)."""
    tables = {
        row[0]
        for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
    }
    if not tables:
        return  # a new, empty file: the migrations make it the store
    if "schema_migrations" not in tables:
        shown = ", ".join(sorted(tables)[:4]) + (", ..." if len(tables) > 4 else "")
        raise StoreDamaged(path, f"another program's DuckDB database: tables {shown}, no schema_migrations")
    try:
        done = dict(con.execute("SELECT version, name FROM schema_migrations").fetchall())
    except duckdb.Error as exc:
        raise StoreDamaged(path, f"its schema_migrations table is unreadable: {why(exc)}") from None
    for version, migration in enumerate(migrations, start=1):
        if version in done and done[version] != migration.__name__:
            raise StoreDamaged(
                path,
                f"another program's DuckDB database: migration {version} is "
                f"'{done[version]}', not '{migration.__name__}'",
            )


def read_all(con, path: Path) -> None:
    """Read every row of every table (DuckDB opens a cut file and fails only on the blocks it lacks):
    StoreDamaged naming the first table that cannot be read."""
    tables = [
        row[0]
        for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY table_name"
        ).fetchall()
    ]
    for table in tables:
        try:
            con.execute(f'SELECT count(*), sum(hash("{table}")) FROM "{table}"').fetchall()
        except duckdb.Error as exc:
            raise StoreDamaged(path, f"its table {table} cannot be read: {why(exc)}") from None
