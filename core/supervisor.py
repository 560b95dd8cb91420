"""Background jobs underneath: a job's folder, the supervisor process that runs its worker, its progress.

Pages and the CLI start jobs through the typed functions of core/jobs.py (one per kind of work) and
read them with `get` / `list_jobs`; this module is what those and the training code (a run's worker
is a job of kind "train") share, with nothing of training in it.

Each job is a folder `jobs/<id>/` under the runs root:

    command.json   what runs (argv, kind, label, when it started; `log` for a training job)
    output.txt     the worker's stdout as it writes it (generate streams its tokens here)
    log.txt        the worker's stderr (progress bars, warnings, errors)
                   (a training job writes stdout and stderr together to its run's <output_dir>/train.log instead)
    status.json    the supervisor's word: running (with pids), then finished / failed / stopped
    progress.json  the worker's count: done of total (prompts, rows, ...), how many were saved, its ETA
    result.json    what the worker wrote with `--out {job}/result.json`, if it writes one

A worker learns its folder from the environment (UMLSTUDIO_JOB) and reports with `Progress`; the
page shows `progress_text` ("prompt 17 of 120 · ~6 min left"). Library warnings stay in log.txt: the
pages show the log only when a job failed.

`start` launches a small supervisor (`python -m core.supervisor <folder>`) in its own session; the
supervisor runs the worker, waits for it and records its exit code, so the outcome is known even
when the studio that started it is gone. The folder is the only contract between them. `stop`
sends SIGTERM to the job's process group: the supervisor, the worker and what the worker started.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core import paths, store

RUNNING, FINISHED, FAILED, STOPPED, LOST = "running", "finished", "failed", "stopped", "lost"
DONE = (FINISHED, FAILED, STOPPED, LOST)
SUPERVISOR_START_S = 60  # a supervisor that has not written its pid by then never started
JOB_ENV = "UMLSTUDIO_JOB"  # the worker's job folder, set by the supervisor
STOP_WAIT_S = 10  # how long `stop` waits for a job that was just started to have a supervisor pid


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    label: str
    dir: Path
    status: str
    returncode: int | None
    started_at: float
    ended_at: float | None
    output_file: Path  # the worker's stdout
    log_file: Path  # the worker's stderr (the same file as output_file for a training job)

    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def seconds(self) -> float:
        return (self.ended_at or time.time()) - self.started_at

    def output(self, tail_chars: int = 20_000) -> str:
        """What the worker printed to stdout so far (the last `tail_chars` characters)."""
        return _tail(self.output_file, tail_chars)

    def log(self, tail_chars: int = 20_000) -> str:
        """What the worker printed to stderr so far (the last `tail_chars` characters)."""
        return _tail(self.log_file, tail_chars)

    def progress(self) -> dict:
        """The worker's progress.json (see `Progress`); {} before it wrote one."""
        return _read_json(self.dir / "progress.json")

    def result(self) -> dict | None:
        """The worker's result.json, once the job finished and wrote one."""
        path = self.dir / "result.json"
        if self.status != FINISHED or not path.is_file():
            return None
        return json.loads(path.read_text())


def _tail(path: Path, chars: int) -> str:
    if not path.is_file():
        return ""
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - chars * 4))  # at most 4 bytes a character in UTF-8
        return handle.read().decode("utf-8", errors="replace")[-chars:]


class Progress:
    """A worker's count of its work, written to its job's progress.json for the page (nothing outside a job).

    `start()` starts the clock once the work proper begins (after the model is loaded), so the
    time estimate is the measured time per finished item times the items left."""

    def __init__(self, total: int, unit: str = "prompt", *, stored: int = 0, folder: Path | None = None):
        folder = folder or (Path(os.environ[JOB_ENV]) if os.environ.get(JOB_ENV) else None)
        self.path = folder / "progress.json" if folder else None
        self.total, self.unit, self.stored = total, unit, stored
        self.done = self.saved = 0
        self.started: float | None = None
        self.note = ""
        self._write()

    def start(self, note: str = "") -> None:
        self.started, self.note = time.time(), note
        self._write()

    def advance(self, n: int = 1, note: str | None = None) -> None:
        self.done += n
        self.note = self.note if note is None else note
        self._write()

    def save(self, n: int) -> None:
        """`n` more finished items are safe (stored): a stopped job keeps them."""
        self.saved += n
        self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        eta = None
        if self.started and self.done:
            eta = (time.time() - self.started) / self.done * (self.total - self.done)
        _write_json(
            self.path,
            {
                "done": self.done,
                "total": self.total,
                "unit": self.unit,
                "stored": self.stored,
                "saved": self.saved,
                "started": self.started,
                "updated": time.time(),
                "eta_s": eta,
                "note": self.note,
            },
        )


def duration_text(seconds: float) -> str:
    """'40 s', '6 min', '1 h 20 min': a time for people, rounded."""
    if seconds < 60:
        return f"{max(1, round(seconds / 5) * 5 if seconds >= 10 else round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{int(seconds // 3600)} h {round(seconds % 3600 / 60)} min"


def time_left(fraction: float, seconds: float) -> str:
    """' · ~6 min left' from how far a job is (0..1) after `seconds`; '' until it has gone far enough to tell."""
    if not 0.02 <= fraction < 1:
        return ""
    return f" · ~{duration_text(seconds * (1 - fraction) / fraction)} left"


def progress_text(progress: dict) -> tuple[float, str]:
    """How far a job is (0..1) and what to show: 'prompt 17 of 120 · ~6 min left'."""
    total, done = progress.get("total"), progress.get("done", 0)
    if not total:
        return 0.0, "starting …"
    if not progress.get("started"):
        return 0.0, f"loading the model … ({total} {progress.get('unit', 'item')}s to do)"
    eta = progress.get("eta_s")
    left = f" · ~{duration_text(eta)} left" if eta is not None and done < total else ""
    current = min(done + 1, total) if done < total else total
    note = f" · {progress['note']}" if progress.get("note") else ""
    return done / total, f"{progress.get('unit', 'item')} {current} of {total}{left}{note}"


def jobs_dir() -> Path:
    return paths.home() / "jobs"


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def start(
    kind: str, args: list, *, label: str = "", files: dict[str, str] | None = None, log: Path | None = None
) -> Job:
    """Run `python <args>` as a detached worker; '{job}' inside an argument becomes the job folder.

    `files` are written into the job folder first (e.g. the prompt a generation reads). With `log`, the
    worker's stdout and stderr both go to that file (appended) instead of output.txt and log.txt.
    Pages call the typed functions of core/jobs.py, not this."""
    if "-" in kind:
        raise ValueError(f"job kind {kind!r}: use a word without '-'")
    job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{store.new_id()[:6]}"
    folder = jobs_dir() / job_id
    folder.mkdir(parents=True)
    for name, text in (files or {}).items():
        (folder / name).write_text(text)
    argv = [sys.executable, *(str(a).replace("{job}", str(folder)) for a in args)]
    command = {"argv": argv, "kind": kind, "label": label, "started_at": time.time()}
    if log is not None:
        command["log"] = str(Path(log).resolve())
    _write_json(folder / "command.json", command)
    _write_json(folder / "status.json", {"status": RUNNING})  # the supervisor adds its pid when it runs
    subprocess.Popen(
        [sys.executable, "-m", "core.supervisor", str(folder)],
        cwd=paths.ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return get(job_id)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that exited: reap it
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find(job_id: str) -> Job | None:
    """The job, or None when its folder is gone (deleted with the runs root's jobs/)."""
    try:
        return get(job_id)
    except FileNotFoundError:
        return None


def get(job_id: str) -> Job:
    folder = jobs_dir() / job_id
    command = _read_json(folder / "command.json")
    if not command:
        raise FileNotFoundError(f"{folder}: no such job")
    state = _read_json(folder / "status.json")
    status, ended = state.get("status", RUNNING), state.get("ended_at")
    if status == RUNNING:
        pid = state.get("supervisor_pid")
        if pid and not _alive(pid):
            state = _read_json(folder / "status.json")  # it may have finished between the two reads
            status, ended = state.get("status", RUNNING), state.get("ended_at")
            if status == RUNNING:
                status, ended = LOST, time.time()
        elif not pid and time.time() - command["started_at"] > SUPERVISOR_START_S:
            status, ended = LOST, time.time()
    log = Path(command["log"]) if command.get("log") else None
    return Job(
        id=job_id,
        kind=command["kind"],
        label=command.get("label", ""),
        dir=folder,
        status=status,
        returncode=state.get("returncode"),
        started_at=command["started_at"],
        ended_at=ended,
        output_file=log or folder / "output.txt",
        log_file=log or folder / "log.txt",
    )


def list_jobs(kind: str | None = None, limit: int = 50) -> list[Job]:
    """The newest jobs first, optionally of one kind."""
    root = jobs_dir()
    if not root.is_dir():
        return []
    names = sorted((p.name for p in root.iterdir() if (p / "command.json").is_file()), reverse=True)
    if kind:
        names = [n for n in names if n.split("-")[2] == kind]  # ids are <date>-<time>-<kind>-<random>
    return [get(name) for name in names[:limit]]


def stop(job_id: str) -> bool:
    """Ask the job's worker to stop (SIGTERM to the job's own process group); False when it is not running.

    A job started a moment ago is waited for until its supervisor has said its pid (a few seconds at most)."""
    folder = jobs_dir() / job_id
    deadline = time.monotonic() + STOP_WAIT_S
    while (state := _read_json(folder / "status.json")).get("status") == RUNNING and not state.get("supervisor_pid"):
        if time.monotonic() > deadline or get(job_id).done:
            return False
        time.sleep(0.05)
    if state.get("status") != RUNNING:
        return False
    try:
        os.killpg(state["supervisor_pid"], signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def supervise(folder: Path) -> int:
    """The supervisor: run the worker with its output in output.txt and log.txt, then record how it ended."""
    command = _read_json(folder / "command.json")
    stopping = []  # stop() signals the whole process group: the worker gets SIGTERM too
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    merged = Path(command["log"]) if command.get("log") else None  # a training job: one log, in its run's folder
    with open(merged or folder / "output.txt", "ab") as out, open(merged or folder / "log.txt", "ab") as log:
        worker = subprocess.Popen(
            command["argv"],
            cwd=paths.ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if merged else log,
            env={**os.environ, JOB_ENV: str(folder)},
        )
        _write_json(
            folder / "status.json", {"status": RUNNING, "supervisor_pid": os.getpid(), "worker_pid": worker.pid}
        )
        returncode = worker.wait()
    status = STOPPED if stopping else FINISHED if returncode == 0 else FAILED
    _write_json(folder / "status.json", {"status": status, "returncode": returncode, "ended_at": time.time()})
    return 0


def current() -> str | None:
    """The id of the job this process runs as (from the environment its supervisor set), None outside a job."""
    folder = os.environ.get(JOB_ENV)
    return Path(folder).name if folder else None


if __name__ == "__main__":
    sys.exit(supervise(Path(sys.argv[1])))
