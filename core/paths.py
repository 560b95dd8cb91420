"""Where things live. UMLSTUDIO_HOME moves the runs root and the store (default ./runs)."""

import os
from pathlib import Path

from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
DATA_DIR = ROOT / "data"


def home() -> Path:
    """The runs root: runs, the store and the prepared model cache live here."""
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
    parent = path.parent.resolve()
    if str(value).strip() == "":
        raise UserError(f"{flag}: empty file name — name the file to write, e.g. {flag} diagram.svg")
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder — name a file inside it, e.g. {flag} {path / 'out'}{path.suffix}")
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: folder {parent} does not exist — create it first or pick another place")
    if parent.parts[1:2] in (("proc",), ("sys",), ("dev",)):
        raise UserError(f"{flag} {path}: {parent} is a system folder — write into a folder of yours")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{flag} {path}: not writable here — pick a folder you can write to")
    return path
