"""The `renders` table: PlantUML's answer for a (source, format, options) key, so a render is made once."""

from dataclasses import dataclass
from datetime import datetime

from core.store.db import connect, now, rows


@dataclass(frozen=True)
class Render:
    key: str  # sha256 of (source, format, options)
    format: str
    plantuml_version: str
    ok: bool
    data: bytes | None
    error_line: int | None
    error_message: str | None
    created_at: datetime


def get(key: str) -> Render | None:
    found = rows(
        "SELECT key, format, plantuml_version, ok, data, error_line, error_message, created_at "
        "FROM renders WHERE key = ?",
        [key],
    )
    return Render(**found[0]) if found else None


def put(
    key: str,
    format: str,
    plantuml_version: str,
    ok: bool,
    data: bytes | None,
    error_line: int | None,
    error_message: str | None,
) -> None:
    """Store a render (a newer one of the same key replaces it)."""
    with connect() as con:
        con.execute(
            "INSERT OR REPLACE INTO renders (key, format, plantuml_version, ok, data, error_line, "
            "error_message, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [key, format, plantuml_version, ok, data, error_line, error_message, now()],
        )
