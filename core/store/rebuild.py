"""Rebuild the store from the run folders: `umlstudio store check` and `umlstudio store rebuild`.

Every run folder holds what the store knows about its training, written as it trained:
`config.yaml` (the exact resolved config), TensorBoard events (every logged metric, a resume's purge
included), and per checkpoint `umlstudio.json` (run id, step, backend), `trainer_state.json` (the
logged values at full precision, epochs, max_steps) and `manifest.json` (whose sha256 the store
records). From them the runs, checkpoints and metrics tables are made again, in a new file beside
the store; the damaged file is then moved aside (`studio.duckdb.damaged-<time>`), never deleted.

What lived only in the store cannot come back: evaluations and their generations, the render cache,
acknowledgements (recorded backups, accepted items), a run's pre-continue checklist and job. The
rebuild names them.
"""

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import yaml

from core import paths
from core.errors import UserError
from core.store import damage

CONFIG_FILE = "config.yaml"  # core/training/train.py writes these names into every run folder
LOG_FILE = "train.log"
TENSORBOARD_DIR = "tensorboard"
INFO = "umlstudio.json"
MANIFEST = "manifest.json"
STATE = "trainer_state.json"
LOGGED = ("loss", "eval_loss", "learning_rate", "grad_norm")  # what trainer_state.json holds at full precision
ONLY_IN_STORE = ("evaluations", "generations", "renders", "acknowledgements", "chosen_model")


@dataclass
class RunOnDisk:
    """One run folder read back: its run row, complete checkpoints and metrics."""

    folder: Path
    row: dict
    checkpoints: list[dict] = field(default_factory=list)
    metrics: dict[tuple[int, str], dict] = field(default_factory=dict)  # (step, name) -> row


@dataclass
class Report:
    store: Path
    problem: str | None  # the damage sentence, None when the store opens
    runs: list[RunOnDisk]
    in_store: dict[str, int] | None  # rows per table of the old store, when it could be read
    moved_to: Path | None = None

    def lines(self) -> list[str]:
        state = "opens cleanly" if self.store.exists() else "does not exist yet"
        out = [f"the store {self.store} {state}" if self.problem is None else self.problem]
        for run in self.runs:
            out.append(
                f"  {run.folder}: run '{run.row['name']}' ({run.row['id']}), {run.row['status']}, "
                f"{len(run.checkpoints)} checkpoint(s), {len(run.metrics)} metric values"
            )
        if not self.runs:
            out.append(f"  no run folders found under {', '.join(str(r) for r in roots())}")
        return out

    def lost(self) -> str:
        if self.in_store:
            held = ", ".join(f"{self.in_store[t]} {t}" for t in ONLY_IN_STORE if self.in_store.get(t))
            return f"lost (they lived only in the store): {held or 'nothing'}"
        return (
            "lost (they lived only in the store, which could not be read): every evaluation and its "
            "generations, the render cache, the acknowledgements (recorded backups, accepted items) and the "
            "chosen model — "
            "evaluate the checkpoints again to get the evaluations back"
        )


def roots(extra=()) -> list[Path]:
    """Where run folders are looked for: the runs root, then the folders given."""
    return [paths.home(), *(Path(e).expanduser().resolve() for e in extra)]


def find_run_folders(extra=()) -> list[Path]:
    """Folders holding a config.yaml beside a train.log, TensorBoard events or checkpoints: run folders
    (a set-aside failed run under failed/ included). Exports, backups, models and caches are skipped."""
    found, skip = [], {"models", "cache", "backups", "exports", "jobs", "datasets", TENSORBOARD_DIR}
    for root in roots(extra):
        for here, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in skip and not d.startswith(("checkpoint-", ".")))
            if CONFIG_FILE in files and (
                LOG_FILE in files
                or TENSORBOARD_DIR in os.listdir(here)
                or any(d.startswith("checkpoint-") for d in os.listdir(here))
            ):
                found.append(Path(here).resolve())
    return list(dict.fromkeys(found))


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _stamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None)


def _checkpoints(folder: Path) -> list[Path]:
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith("checkpoint-") and p.name[11:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[11:]))


def _events(folder: Path) -> list[tuple[int, str, float, float]]:
    """(step, tag, value, wall time) of every scalar in the run's TensorBoard events, in the order
    written, a resume's purge applied (its START marker drops what was logged from that step on)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    files = sorted(
        (folder / TENSORBOARD_DIR).glob("events.out.tfevents.*"),
        key=lambda p: (int(p.name.split(".")[3]) if p.name.split(".")[3].isdigit() else 0, p.name),
    )
    scalars: list[tuple[int, str, float, float]] = []
    for path in files:
        try:
            for event in EventFileLoader(str(path)).Load():
                if event.HasField("session_log") and event.session_log.status == event.session_log.START:
                    scalars = [s for s in scalars if s[0] < event.step]
                for value in event.summary.value:
                    number = (
                        value.simple_value
                        if value.HasField("simple_value")
                        else (float(value.tensor.float_val[0]) if value.tensor.float_val else None)
                    )
                    if number is not None:
                        scalars.append((event.step, value.tag, float(number), event.wall_time))
        except Exception:  # a damaged events file: what was read before the damage is kept
            continue
    return scalars


def read_run(folder: Path) -> RunOnDisk | None:
    """A run folder as store rows; None when its config.yaml cannot be read."""
    try:
        config = yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(config, dict) or not isinstance(config.get("training"), dict):
        return None
    ckpts = _checkpoints(folder)
    complete = [c for c in ckpts if (c / MANIFEST).is_file()]
    infos = {c: _json(c / INFO) for c in complete}
    run_id = next((i["run_id"] for i in reversed(list(infos.values())) if i.get("run_id")), None)
    last_state = _json(complete[-1] / STATE) if complete else {}
    phase = config.get("phase") or {}
    parent_ckpt = phase.get("continue_from")
    parent_info = _json(Path(parent_ckpt) / INFO) if parent_ckpt else {}
    parent_run = parent_info.get("run_id")
    changes = {}
    if parent_info.get("config"):  # what this phase changed against its parent, as `umlstudio train` records it
        from core.training import phases

        changes = phases.diff(parent_info["config"], config, ignore=phases.LINEAGE_NOISE)
    started = min(
        (p.stat().st_mtime for p in [folder / CONFIG_FILE, *(folder / TENSORBOARD_DIR).glob("events.*")] if p.exists()),
        default=(folder / CONFIG_FILE).stat().st_mtime,
    )
    last_file = max(
        [folder / CONFIG_FILE, *complete, *(folder / TENSORBOARD_DIR).glob("events.*")], key=lambda p: p.stat().st_mtime
    )
    if complete and last_state.get("max_steps") and last_state.get("global_step", 0) >= last_state["max_steps"]:
        status, error = "finished", None
    elif complete:
        status, error = "stopped", None
    else:
        status, error = "failed", "rebuilt from its folder: it saved no complete checkpoint"
    training = config["training"]
    row = {
        "id": run_id or damage_free_id(),
        "output_dir": str(folder),
        "name": config.get("run_name") or Path(str(training.get("output_dir") or folder)).name,
        "phase_kind": "continue" if parent_ckpt else "fresh",
        "parent_run": parent_run,
        "parent_checkpoint": parent_ckpt,
        "changes": changes,
        "config": config,
        "config_path": None,
        "status": status,
        "backend": next((i.get("backend") for i in infos.values() if i.get("backend")), training.get("backend")),
        "base_model": (config.get("model") or {}).get("base"),
        "override_reason": phase.get("override_reason"),
        "pid": None,
        "created_at": _stamp(started),
        "started_at": _stamp(started),
        "finished_at": _stamp(last_file.stat().st_mtime) if status != "failed" else None,
        "error": error,
        "checklist": None,
        "job": None,
    }
    run = RunOnDisk(folder, row)
    for ckpt in complete:
        from core.training import checkpoints as ckpt_files  # sha256 the same way the trainer did

        run.checkpoints.append(
            {
                "path": str(ckpt),
                "run_id": row["id"],
                "step": int(ckpt.name[11:]),
                "manifest_sha256": ckpt_files.sha256_file(ckpt / MANIFEST),
                "created_at": _stamp((ckpt / MANIFEST).stat().st_mtime),
            }
        )
    # every scalar TensorBoard holds; the logged values at full precision from trainer_state.json
    for step, tag, value, wall in _events(folder):
        name = tag if tag.startswith("time/") else tag.split("/", 1)[-1]
        run.metrics[(step, name)] = {
            "run_id": row["id"],
            "step": step,
            "epoch": None,
            "name": name,
            "value": value,
            "time": _stamp(wall),
        }
    for entry in last_state.get("log_history", []):
        step = entry.get("step")
        for name in LOGGED:
            value = entry.get(name)
            if step is None or not isinstance(value, (int, float)) or math.isnan(value):
                continue
            known = run.metrics.get((step, name))
            run.metrics[(step, name)] = {
                "run_id": row["id"],
                "step": step,
                "epoch": entry.get("epoch"),
                "name": name,
                "value": float(value),
                "time": known["time"] if known else row["created_at"],
            }
    epochs = {e["step"]: e["epoch"] for e in last_state.get("log_history", []) if "step" in e and "epoch" in e}
    for metric in run.metrics.values():
        if metric["epoch"] is None:
            metric["epoch"] = epochs.get(metric["step"])
    return run


def damage_free_id() -> str:
    from core.store.db import new_id

    return new_id()


def read_old(path: Path) -> dict[str, int] | None:
    """Rows per table of the store as it is, when it can still be read (read-only); else None."""
    if not path.exists():
        return None
    try:
        con = duckdb.connect(str(path), read_only=True)
        try:
            tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            return {  # a store of an earlier version lacks the newer tables
                t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                for t in ("runs", "metrics", "checkpoints", *ONLY_IN_STORE)
                if t in tables
            }
        finally:
            con.close()
    except duckdb.Error:
        return None


_good: dict[str, tuple] = {}  # store path -> (size, mtime) of the file when it last opened cleanly


def problem(path=None) -> str | None:
    """The one sentence when the store cannot be used, else None: for the studio, which shows it
    instead of a traceback. Reads the whole store, but only when the file changed since it last read cleanly."""
    from core.store import db

    try:
        path = Path(path or paths.store_path())
        stat = os.stat(path) if path.exists() else None
        key = (stat.st_size, stat.st_mtime_ns) if stat else None
        if key is not None and _good.get(str(path)) == key:
            return None
        with db.connect(path) as con:
            damage.read_all(con, path)
        stat = os.stat(path)
        _good[str(path)] = (stat.st_size, stat.st_mtime_ns)
    except UserError as exc:
        return str(exc)
    return None


def check(extra=()) -> Report:
    """What the store is, and what a rebuild would make of the run folders; nothing written."""
    store_file = paths.store_path()
    found = problem(store_file) if store_file.exists() else None
    runs = [r for r in (read_run(f) for f in find_run_folders(extra)) if r is not None]
    return Report(store_file, found, runs, read_old(store_file) if found is None else None)


def rebuild(extra=(), force: bool = False) -> Report:
    """Make the store again from the run folders, in a new file beside it; move the old one aside."""
    from core.store import db

    report = check(extra)
    store_file = report.store
    if report.problem is None and store_file.exists() and not force:
        held = ", ".join(f"{n} {t}" for t, n in (report.in_store or {}).items() if n)
        raise UserError(
            f"the store {store_file} opens cleanly ({held or 'empty'}) — a rebuild would lose what "
            f"lived only in it; add --force to rebuild it anyway"
        )
    ids = [r.row["id"] for r in report.runs]
    if len(set(ids)) != len(ids):  # a run folder copied by hand: keep the first, newer copies get new ids
        seen: set[str] = set()
        for run in report.runs:
            if run.row["id"] in seen:
                run.row["id"] = damage_free_id()
                for item in (*run.checkpoints, *run.metrics.values()):
                    item["run_id"] = run.row["id"]
            seen.add(run.row["id"])
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    fresh = store_file.with_name(f"{store_file.name}.rebuild-{stamp}-{damage_free_id()}")
    try:
        with db.connect(fresh) as con:
            for run in report.runs:
                row = {
                    **run.row,
                    **{
                        k: json.dumps(run.row[k]) if run.row[k] is not None else None
                        for k in ("changes", "config", "checklist")
                    },
                }
                con.execute(
                    f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
                )
                for item in run.checkpoints:
                    con.execute(
                        f"INSERT OR REPLACE INTO checkpoints ({', '.join(item)}) VALUES ({', '.join('?' * len(item))})",
                        list(item.values()),
                    )
                metrics = list(run.metrics.values())
                if metrics:
                    con.executemany(
                        f"INSERT OR REPLACE INTO metrics ({', '.join(metrics[0])}) VALUES "
                        f"({', '.join('?' * len(metrics[0]))})",
                        [list(m.values()) for m in metrics],
                    )
    except BaseException:
        for leftover in (fresh, fresh.with_name(fresh.name + ".wal"), fresh.with_name(fresh.name + ".lock")):
            leftover.unlink(missing_ok=True)
        raise
    fresh.with_name(fresh.name + ".lock").unlink(missing_ok=True)
    db._migrated.discard(fresh)
    with db._exclusive(store_file):  # nobody opens the store while the files change places
        if store_file.exists():
            kind = "damaged" if report.problem else "replaced"
            report.moved_to = store_file.with_name(f"{store_file.name}.{kind}-{stamp}")
            n = 1
            while report.moved_to.exists():  # never over an earlier kept copy
                n += 1
                report.moved_to = store_file.with_name(f"{store_file.name}.{kind}-{stamp}-{n}")
            store_file.rename(report.moved_to)
            wal = store_file.with_name(store_file.name + ".wal")
            if wal.exists():
                wal.rename(report.moved_to.with_name(report.moved_to.name + ".wal"))
        fresh.rename(store_file)
        db._migrated.discard(store_file)
        _good.pop(str(store_file), None)
    return report
