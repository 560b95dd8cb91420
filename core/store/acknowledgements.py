"""The `acknowledgements` table: a person (or a backup) ticked an item about a subject, with a note.

A subject is a run id or a checkpoint path; an item is e.g. 'loss_curve' or 'backup'. One row per
(subject, item): a newer one replaces it."""

from dataclasses import dataclass
from datetime import datetime

from core.store.db import connect, now, rows


@dataclass(frozen=True)
class Acknowledgement:
    subject: str
    item: str
    note: str | None
    created_at: datetime


def add(subject: str, item: str, note: str | None = None) -> None:
    with connect() as con:
        con.execute(
            "INSERT OR REPLACE INTO acknowledgements (subject, item, note, created_at) VALUES (?, ?, ?, ?)",
            [subject, item, note, now()],
        )


def get(subject: str, item: str) -> Acknowledgement | None:
    found = rows(
        "SELECT subject, item, note, created_at FROM acknowledgements WHERE subject = ? AND item = ?", [subject, item]
    )
    return Acknowledgement(**found[0]) if found else None
