"""The `chosen_model` table: the checkpoint a person marked as the project's model (`umlstudio choose`,
the Quality page's button). One row at most; choosing again replaces it."""

from dataclasses import dataclass
from datetime import datetime

from core.store.db import connect, now, rows


@dataclass(frozen=True)
class Chosen:
    checkpoint: str  # a checkpoint folder, resolved
    chosen_at: datetime


def choose(checkpoint: str) -> Chosen:
    chosen = Chosen(checkpoint, now())
    with connect() as con:
        con.execute(
            "INSERT OR REPLACE INTO chosen_model (id, checkpoint, chosen_at) VALUES (1, ?, ?)",
            [chosen.checkpoint, chosen.chosen_at],
        )
    return chosen


def get() -> Chosen | None:
    found = rows("SELECT checkpoint, chosen_at FROM chosen_model WHERE id = 1")
    return Chosen(**found[0]) if found else None


def clear() -> Chosen | None:
    """Forget the chosen model; return the one that was chosen (None when none was)."""
    with connect() as con:
        found = con.execute("SELECT checkpoint, chosen_at FROM chosen_model WHERE id = 1").fetchall()
        con.execute("DELETE FROM chosen_model")
    return Chosen(*found[0]) if found else None
