"""Where things live. UMLSTUDIO_HOME moves the runs root and the store (default ./runs)."""

import os
from pathlib import Path

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
