"""Training runs as the studio and `umlstudio runs` see them: start a worker as a job, stop it,
list every run with what it actually did (steps, last losses, the learning rate it really used),
and hand the studio's pages what they show (`table` in lineage order with each run's best
checkpoint, `lineage`, `curves`, `saved`, `detail`, `active`, `progress`) so no page holds SQL.

A run row says `running` only while its worker lives: a worker killed hard (kill -9, a crash of the
machine) leaves the row at `running`, and the listing shows it as `interrupted` — resume it with
`training.resume_from_checkpoint: <output_dir>`. A run started in the background is a job of kind
"train" (core/supervisor.py) named in its row (`job`): the job says whether the worker lives, stops it and
keeps its exit code; its log is the run's `<output_dir>/train.log`.
"""

import os
import signal
from dataclasses import replace
from pathlib import Path

from core import config as cfg
from core import store, supervisor
from core.errors import UserError
from core.training import checkpoints, phases


def status_of(run: store.Run) -> str:
    """The stored status, except that a `running` run whose worker is gone is `interrupted`."""
    if run.status == "running" and not phases.worker_alive(run):
        return "interrupted"
    return run.status


def start_worker(config: cfg.Config, config_path=None, as_phase: bool = False) -> str:
    """Plan the phase (see core.training.train.prepare) and start its worker as a job of kind "train"
    (pages call `jobs.train`); return the run id.

    The job outlives the process that started it; the worker's output goes to `<output_dir>/train.log`."""
    from core.training import train

    run_id = train.prepare(config, config_path=config_path, as_phase=as_phase)
    run = store.runs.get(run_id)
    job = supervisor.start(
        "train", train.worker_argv(run_id)[1:], label=run.name, log=Path(run.output_dir) / train.LOG_FILE
    )
    store.runs.update(run_id, job=job.id)  # the worker writes it too; this covers its start-up
    return run_id


def job_of(run: store.Run) -> supervisor.Job | None:
    """The job a run's worker runs as; None for a run trained attached (`umlstudio train`) or whose job folder
    is gone."""
    return supervisor.find(run.job) if run.job else None


def log_tail(run: store.Run, chars: int = 3000) -> str:
    """The last `chars` characters of the run's worker log, `<output_dir>/train.log` (a training job writes its
    worker's stdout and stderr there too)."""
    from core.training.train import LOG_FILE

    log = Path(run.output_dir) / LOG_FILE
    return log.read_text(errors="replace")[-chars:] if log.is_file() else ""


def stop_worker(run_id: str) -> bool:
    """Ask the run's worker to stop (SIGTERM through its job; to its pid for a worker `umlstudio train` runs in a
    terminal): it saves a checkpoint at the next step and ends `stopped`. Returns False when no worker of that
    run is running."""
    run = store.runs.get(run_id)
    if run is None:
        raise UserError(f"run {run_id}: no such run — see `umlstudio runs`")
    if run.status not in ("created", "running") or not phases.worker_alive(run):
        return False
    if run.job:
        return supervisor.stop(run.job)
    os.kill(run.pid, signal.SIGTERM)
    return True


def list_runs() -> list[dict]:
    """Every run, newest first, with its last logged metrics."""
    rows = store.runs.all_newest_first()
    metrics: dict[str, dict] = {}
    for point in store.metrics.latest():
        metrics.setdefault(point.run_id, {})[point.name] = point.value
        if point.name == "loss":
            metrics[point.run_id]["steps"] = point.step
    names = {run.id: run.name for run in rows}
    out = []
    for run in rows:
        m = metrics.get(run.id, {})
        out.append(
            {
                "id": run.id,
                "name": run.name,
                "phase_kind": run.phase_kind,
                "kind": kind_in_words(run),
                "parent": names.get(run.parent_run, run.parent_run),
                "status": status_of(run),
                "steps": int(m.get("steps", 0)),
                "loss": m.get("loss"),
                "eval_loss": m.get("eval_loss"),
                "learning_rate_used": m.get("learning_rate"),
                "learning_rate_config": run.config["training"]["learning_rate"],
                "tokens_per_s": m.get("tokens_per_s"),
                "backend": run.backend,
                "output_dir": run.output_dir,
                "error": run.error,
            }
        )
    return out


def table() -> list[dict]:
    """Every run in lineage order — a continue phase right under the run it continues, oldest first —
    with its depth (0 for a first phase), its `list_runs` fields, when it was created and its best
    checkpoint (`checkpoints.best`: path and validation loss, or None)."""
    with store.session():  # five reads, one connection
        listed = {r["id"]: r for r in list_runs()}
        rows = store.runs.all_oldest_first()
        best = checkpoints.best_of(listed)
    children: dict[str | None, list[store.Run]] = {}
    for run in rows:
        children.setdefault(run.parent_run if run.parent_run in listed else None, []).append(run)
    out: list[dict] = []

    def walk(parent, depth):
        for run in children.get(parent, []):
            found = best.get(run.id)
            out.append(
                {
                    **listed[run.id],
                    "depth": depth,
                    "parent_run": run.parent_run,
                    "parent_checkpoint": run.parent_checkpoint,
                    "created_at": run.created_at,
                    "best_checkpoint": str(found[0]) if found else None,
                    "best_eval_loss": found[1] if found else None,
                }
            )
            walk(run.id, depth + 1)

    walk(None, 0)
    return out


def lineage(run_id: str) -> list[tuple[str, int]]:
    """The run and the phases it continues, oldest first, each with the step it starts at when the
    phases are laid end to end (a phase starts at the step of the checkpoint it continues from)."""
    chain = [store.runs.get(run_id)]
    while chain[0].parent_run and (parent := store.runs.get(chain[0].parent_run)):
        chain.insert(0, parent)
    offsets, at = [], 0
    for i, run in enumerate(chain):
        if i:
            at += checkpoints.step_of(run.parent_checkpoint or "") or 0
        offsets.append((run.id, at))
    return offsets


def curves(run_ids, names) -> list[store.metrics.Point]:
    """The runs' logged metrics of the given names (run_id, step, name, value), by step."""
    return store.metrics.curve(run_ids, names)


def saved(run_ids) -> list[store.checkpoints.OnCurve]:
    """The runs' recorded checkpoints, every one, by step (run_id, step, path, eval_loss, loss), with the
    validation loss logged at that step (None when none was) and the last training loss at or before it
    (so a chart can place each checkpoint on the curve)."""
    return store.checkpoints.on_curves(run_ids)


def detail(run_id: str) -> store.Run:
    """One run's row with its live status (see `status_of`), its pre-continue checklist ([] when none was stored)
    and, for an interrupted run, how its job saw the worker end as its error (see `how_it_ended`)."""
    run = store.runs.get(run_id)
    status = status_of(run)
    return replace(
        run,
        status=status,
        checklist=run.checklist or [],
        error=run.error or (how_it_ended(run) if status == "interrupted" else None),
    )


def how_it_ended(run: store.Run) -> str | None:
    """How the worker of a run that ended without saying so ended, from its job's exit code: killed by a signal
    (and how to go on), or an exit code; None without a job."""
    job = job_of(run)
    if job is None or job.returncode is None:
        return None
    if job.returncode < 0:
        from core.training.train import killed_message

        return killed_message(run, -job.returncode)
    return f"the training worker exited with code {job.returncode} without recording how it ended — see {job.log_file}"


def active() -> list[store.Run]:
    """Runs whose worker is starting or training, oldest first."""
    return [r for r in store.runs.with_status("created", "running") if status_of(r) in ("created", "running")]


def with_loss_curve() -> list[store.Run]:
    """Runs that logged a training loss, newest first: the ones a next phase can be judged for."""
    return store.runs.with_metric("loss")


def progress(run: store.Run) -> tuple[float | None, str]:
    """How far the run is (0..1, None when unknown) and "step n of N · ≈ 5 min left (4–6 min)": the time
    left is `estimate.estimate` of the run's config from where it is, the same estimate the pre-continue
    checklist gives before a phase starts."""
    from core.training import estimate  # the listing commands do not need it

    config = cfg.parse(run.config, where=f"run {run.name}")
    t = config.training
    step, epoch = store.metrics.last_step_and_epoch(run.id)
    if step is None:
        return None, "starting: loading the model and the data"
    if t.max_steps > 0:
        done = step / t.max_steps
        where = f"step {step} of {t.max_steps}"
    elif epoch:
        done = epoch / t.num_train_epochs
        where = f"step {step}, epoch {epoch:.2f} of {t.num_train_epochs:g}"
    else:
        return None, f"step {step}"
    done = min(done, 1.0)
    try:
        left = estimate.estimate(config, run, done)
    except UserError:  # its training data moved away since it started: no token count
        return done, where
    return done, f"{where} · {left.span()} left" if left.seconds is not None else where


def time_split(run_id: str) -> dict[str, float]:
    """Seconds the run spent training, evaluating and saving checkpoints so far (the cumulative
    `time/train_s`, `time/eval_s`, `time/checkpoint_s` it logs); empty when it logged none."""
    found = store.metrics.maxima(run_id, ("time/train_s", "time/eval_s", "time/checkpoint_s"))
    return {name.removeprefix("time/").removesuffix("_s"): value for name, value in found.items()}


KINDS = {"fresh": "new run", "continue": "next phase"}  # the store's phase_kind, in words


def kind_in_words(run: store.Run) -> str:
    """A run's kind as the studio says it: a new run, a next phase (from a checkpoint's adapter), a resume, or
    a run trained elsewhere (`umlstudio import`)."""
    if run.imported:
        return "imported run"
    if (run.config or {}).get("training", {}).get("resume_from_checkpoint"):
        return "resumed run"
    return KINDS.get(run.phase_kind, run.phase_kind)
