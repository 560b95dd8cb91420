"""Where things live. UMLSTUDIO_HOME moves the runs root and the store (default ./runs)."""

import os
import tempfile
from pathlib import Path

from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
DATA_DIR = ROOT / "data"


# Folders of the operating system: nothing of ours is written below them.
SYSTEM_FOLDERS = (
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/boot",
    "/proc",
    "/sys",
    "/dev",
    "/var/lib",
)


def system_folder(path) -> str | None:
    """The system folder `path` lies in once resolved (relative to the working folder, links followed), or None."""
    parts = Path(path).expanduser().resolve().parts
    for folder in SYSTEM_FOLDERS:
        wanted = folder.strip("/").split("/")
        top = parts[1 : 1 + len(wanted)]
        if list(top) == wanted:
            return "/" + "/".join(top)
    return None


def check_not_system(path, what: str, fix: str) -> None:
    """The one check every output place goes through (training.output_dir, --out, export, backups, the
    runs root): UserError when `path`, resolved, lies in a system folder."""
    found = system_folder(path)
    if found:
        resolved = Path(path).expanduser().resolve()
        shown = f"{path} (that is {resolved})" if str(resolved) != str(path) else str(path)
        raise UserError(f"{what} {shown}: {found} is a system folder — {fix}")


def home() -> Path:
    """The runs root: runs, the store, the prepared model cache and counted token lengths (cache/) live here.

    UserError (one line) when it is a file, a system folder, or cannot be created or written."""
    chosen = os.environ.get("UMLSTUDIO_HOME")
    what = "UMLSTUDIO_HOME" if chosen else "the runs root"
    fix = "point UMLSTUDIO_HOME at a folder of yours that you can write to (it is created when missing)"
    path = Path(chosen or ROOT / "runs").expanduser().resolve()
    check_not_system(path, what, fix)
    try:
        if path.exists() and not path.is_dir():
            raise UserError(f"{what} {path} is a file, not a folder — {fix}")
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent that is a file, a read-only mount, a folder this user may not enter
        raise UserError(f"{what} {path}: cannot be created or reached ({exc.strerror}) — {fix}") from None
    if not os.access(path, os.W_OK | os.X_OK):  # EROFS too: a read-only mount is refused even for root
        why = "on a read-only mount" if _read_only_mount(path) else "not writable"
        raise UserError(f"{what} {path}: {why} — {fix}")
    return path


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


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
    check_not_system(path, flag, "write into a folder of yours")
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: the folder {parent} does not exist — create it first or pick another place")
    try:  # the only sure test of a place (permissions, read-only mounts, root) is writing there; removed at once
        with tempfile.TemporaryFile(dir=parent):
            pass
        if path.exists():
            with path.open("ab"):
                pass
    except OSError as exc:
        raise UserError(
            f"{flag} {path}: cannot write there ({exc.strerror}) — pick a folder you can write to"
        ) from None
    return path
