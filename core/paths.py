"""Where things live. UMLSTUDIO_HOME moves the runs root and the store (default ./runs)."""

import os
import tempfile
from pathlib import Path

from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
DATA_DIR = ROOT / "data"


def home() -> Path:
    """The runs root: runs, the store, the prepared model cache and counted token lengths (cache/) live here."""
    path = Path(os.environ.get("UMLSTUDIO_HOME") or ROOT / "runs").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_path() -> Path:
    return home() / "studio.duckdb"


def models_dir() -> Path:
    return home() / "models"


def resolve_output_dir(output_dir: str) -> Path:
    """A relative output_dir lives under the runs root; an absolute one stays where it is."""
    path = Path(output_dir).expanduser()
    return (path if path.is_absolute() else home() / path).resolve()


def out_file(value, flag: str = "--out") -> Path:
    """Check, before any work, that a file can be written at `value`; UserError naming the fix when not."""
    path = Path(value).expanduser()
    if str(value).strip() == "":
        raise UserError(f"{flag}: empty file name — name the file to write")
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder — name a file inside it")
    parent = path.parent.resolve()
    if parent.parts[1:2] in (("proc",), ("sys",), ("dev",)):
        raise UserError(f"{flag} {path}: {parent} is a system folder — write into a folder of yours")
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: the folder {parent} does not exist — create it first or pick another place")
    try:  # the only sure test of a place (permissions, read-only mounts, root) is writing there; removed at once
        with tempfile.TemporaryFile(dir=parent):
            pass
        if path.exists():
            with path.open("ab"):
                pass
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write there ({exc.strerror}) — pick a folder you can write to") from None
    return path
