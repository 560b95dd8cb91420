"""Training runs as the studio and `umlstudio runs` see them: start a worker detached, stop it,
list every run with what it actually did (steps, last losses, the learning rate it really used),
and hand the studio's pages what they show (`table` in lineage order with each run's best
checkpoint, `lineage`, `curves`, `saved`, `detail`, `active`, `progress`) so no page holds SQL.

A run row says `running` only while its worker lives: a worker killed hard (kill -9, a crash of the
machine) leaves the row at `running`, and the listing shows it as `interrupted` — resume it with
`training.resume_from_checkpoint: <output_dir>`.
"""

import json
import os
import signal
import subprocess
from pathlib import Path

from core.training import checkpoints, phases
from core import paths, store
from core import config as cfg
from core.errors import UserError


def status_of(run: dict) -> str:
    """The stored status, except that a `running` run whose worker is gone is `interrupted`."""
    if run["status"] == "running" and not phases.worker_alive(run):
        return "interrupted"
    return run["status"]


def start_worker(config: cfg.Config, config_path=None, as_phase: bool = False) -> str:
    """Plan the phase (see core.training.train.prepare) and start its worker detached; return the run id.

    The worker gets its own session, so it outlives the process that started it; its output goes
    to `<output_dir>/train.log`."""
    from core.training import train

    run_id = train.prepare(config, config_path=config_path, as_phase=as_phase)
    run = store.get_run(run_id)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(Path(run["output_dir"]) / train.LOG_FILE, "ab") as log, open(os.devnull, "rb") as devnull:
        process = subprocess.Popen(train.worker_argv(run_id), cwd=paths.ROOT, env=env, stdin=devnull,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    store.update_run(run_id, pid=process.pid)  # the worker writes it too; this covers its start-up
    return run_id


def stop_worker(run_id: str) -> bool:
    """Ask the run's worker to stop (SIGTERM): it saves a checkpoint at the next step and ends
    `stopped`. Returns False when no worker of that run is running."""
    run = store.get_run(run_id)
    if run is None:
        raise UserError(f"run {run_id}: no such run — see `umlstudio runs`")
    if run["status"] not in ("created", "running") or not phases.worker_alive(run):
        return False
    os.kill(run["pid"], signal.SIGTERM)
    return True


def list_runs() -> list[dict]:
    """Every run, newest first, with its last logged metrics."""
    rows = store.query("SELECT * FROM runs ORDER BY created_at DESC")
    last = store.query(
        """SELECT run_id, name, arg_max(value, step) AS value, max(step) AS step
           FROM metrics GROUP BY run_id, name"""
    )
    metrics: dict[str, dict] = {}
    for row in last:
        metrics.setdefault(row["run_id"], {})[row["name"]] = row["value"]
        if row["name"] == "loss":
            metrics[row["run_id"]]["steps"] = row["step"]
    names = {row["id"]: row["name"] for row in rows}
    out = []
    for run in rows:
        config = json.loads(run["config"])
        m = metrics.get(run["id"], {})
        out.append({
            "id": run["id"], "name": run["name"], "phase_kind": run["phase_kind"], "kind": kind_in_words(run),
            "parent": names.get(run["parent_run"], run["parent_run"]), "status": status_of(run),
            "steps": int(m.get("steps", 0)), "loss": m.get("loss"), "eval_loss": m.get("eval_loss"),
            "learning_rate_used": m.get("learning_rate"), "learning_rate_config": config["training"]["learning_rate"],
            "tokens_per_s": m.get("tokens_per_s"), "backend": run["backend"], "output_dir": run["output_dir"],
            "error": run["error"],
        })
    return out


def table() -> list[dict]:
    """Every run in lineage order — a continue phase right under the run it continues, oldest first —
    with its depth (0 for a first phase), its `list_runs` fields, when it was created and its best
    checkpoint (`checkpoints.best`: path and validation loss, or None)."""
    with store.session():  # five reads, one connection
        listed = {r["id"]: r for r in list_runs()}
        rows = store.query("SELECT id, parent_run, parent_checkpoint, created_at FROM runs ORDER BY created_at")
        best = checkpoints.best_of(listed)
    children: dict[str | None, list[dict]] = {}
    for row in rows:
        children.setdefault(row["parent_run"] if row["parent_run"] in listed else None, []).append(row)
    out: list[dict] = []

    def walk(parent, depth):
        for row in children.get(parent, []):
            found = best.get(row["id"])
            out.append({**listed[row["id"]], "depth": depth, "parent_run": row["parent_run"],
                        "parent_checkpoint": row["parent_checkpoint"], "created_at": row["created_at"],
                        "best_checkpoint": str(found[0]) if found else None,
                        "best_eval_loss": found[1] if found else None})
            walk(row["id"], depth + 1)

    walk(None, 0)
    return out


def lineage(run_id: str) -> list[tuple[str, int]]:
    """The run and the phases it continues, oldest first, each with the step it starts at when the
    phases are laid end to end (a phase starts at the step of the checkpoint it continues from)."""
    chain = [store.get_run(run_id)]
    while chain[0]["parent_run"] and (parent := store.get_run(chain[0]["parent_run"])):
        chain.insert(0, parent)
    offsets, at = [], 0
    for i, run in enumerate(chain):
        if i:
            at += checkpoints.step_of(run["parent_checkpoint"] or "") or 0
        offsets.append((run["id"], at))
    return offsets


def curves(run_ids, names) -> list[dict]:
    """The runs' logged metrics of the given names: {run_id, step, name, value}, by step."""
    run_ids, names = list(run_ids), list(names)
    return store.query(f"SELECT run_id, step, name, value FROM metrics WHERE run_id IN ({', '.join('?' * len(run_ids))}) "
                       f"AND name IN ({', '.join('?' * len(names))}) ORDER BY step", [*run_ids, *names])


def saved(run_ids) -> list[dict]:
    """The runs' recorded checkpoints, every one, by step: {run_id, step, path, eval_loss, loss} with the
    validation loss logged at that step (None when none was) and the last training loss at or before it
    (so a chart can place each checkpoint on the curve)."""
    run_ids = list(run_ids)
    marks = ", ".join("?" * len(run_ids))
    return store.query(
        f"""WITH loss AS (SELECT run_id, step, value FROM metrics WHERE name = 'loss' AND run_id IN ({marks})),
                 val AS (SELECT run_id, step, value FROM metrics WHERE name = 'eval_loss' AND run_id IN ({marks}))
            SELECT c.run_id, c.step, c.path, val.value AS eval_loss, loss.value AS loss
            FROM checkpoints c
            ASOF LEFT JOIN loss ON c.run_id = loss.run_id AND c.step >= loss.step
            LEFT JOIN val ON val.run_id = c.run_id AND val.step = c.step
            WHERE c.run_id IN ({marks}) ORDER BY c.step""", run_ids * 3)


def detail(run_id: str) -> dict:
    """One run's row with its live status, its last logged step and its stored pre-continue checklist (parsed)."""
    run = store.get_run(run_id)
    steps = store.query("SELECT max(step) AS step FROM metrics WHERE run_id = ?", [run_id])[0]["step"]
    return {**run, "status": status_of(run), "steps": steps,
            "checklist": json.loads(run["checklist"]) if run["checklist"] else [], "config": json.loads(run["config"])}


def active() -> list[dict]:
    """Runs whose worker is starting or training, oldest first."""
    rows = store.query("SELECT * FROM runs WHERE status IN ('created', 'running') ORDER BY created_at")
    return [r for r in rows if status_of(r) in ("created", "running")]


def with_loss_curve() -> list[dict]:
    """Runs that logged a training loss, newest first: the ones a next phase can be judged for."""
    return store.query("SELECT r.* FROM runs r WHERE EXISTS (SELECT 1 FROM metrics m WHERE m.run_id = r.id "
                       "AND m.name = 'loss') ORDER BY r.created_at DESC")


def progress(run: dict) -> tuple[float | None, str]:
    """How far the run is (0..1, None when unknown) and "step n of N · ≈ 5 min left (4–6 min)": the time
    left is `advise.estimate` of the run's config from where it is, the same estimate the pre-continue
    checklist gives before a phase starts."""
    from core import advise  # the estimate; the listing commands do not need the advisor

    raw = run["config"] if isinstance(run["config"], dict) else json.loads(run["config"])  # a row, or `detail`
    config = cfg.parse(raw, where=f"run {run['name']}")
    t = config.training
    last = store.query("SELECT max(step) AS step, arg_max(epoch, step) AS epoch FROM metrics WHERE run_id = ?",
                       [run["id"]])[0]
    if last["step"] is None:
        return None, "starting: loading the model and the data"
    if t.max_steps > 0:
        done = last["step"] / t.max_steps
        where = f"step {last['step']} of {t.max_steps}"
    elif last["epoch"]:
        done = last["epoch"] / t.num_train_epochs
        where = f"step {last['step']}, epoch {last['epoch']:.2f} of {t.num_train_epochs:g}"
    else:
        return None, f"step {last['step']}"
    done = min(done, 1.0)
    try:
        left = advise.estimate(config, run, done)
    except UserError:  # its training data moved away since it started: no token count
        return done, where
    return done, f"{where} · {left.span()} left" if left.seconds is not None else where


def time_split(run_id: str) -> dict[str, float]:
    """Seconds the run spent training, evaluating and saving checkpoints so far (the cumulative
    `time/train_s`, `time/eval_s`, `time/checkpoint_s` it logs); empty when it logged none."""
    rows = store.query("SELECT name, max(value) AS value FROM metrics WHERE run_id = ? AND name IN "
                       "('time/train_s', 'time/eval_s', 'time/checkpoint_s') GROUP BY name", [run_id])
    return {r["name"].removeprefix("time/").removesuffix("_s"): r["value"] for r in rows}


KINDS = {"fresh": "new run", "continue": "next phase"}  # the store's phase_kind, in words


def kind_in_words(run: dict) -> str:
    """A run's kind as the studio says it: a new run, a next phase (from a checkpoint's adapter) or a resume."""
    config = run["config"] if isinstance(run.get("config"), dict) else json.loads(run.get("config") or "{}")
    if config.get("training", {}).get("resume_from_checkpoint"):
        return "resumed run"
    return KINDS.get(run["phase_kind"], run["phase_kind"])


def add_runs_args(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def runs_command(args) -> int:
    runs = list_runs()
    if args.json:
        print(json.dumps(runs, indent=1, default=str))
        return 0
    if not runs:
        print(f"no runs yet under {paths.home()} — start one with: umlstudio train --config config/quick_test.yaml")
        return 0
    header = f"{'name':<22} {'kind':<8} {'parent':<16} {'status':<11} {'steps':>6} {'loss':>7} {'eval':>7} {'lr used':>9} {'lr cfg':>9} {'tok/s':>6}  output_dir"
    print(header)
    for r in runs:
        print(f"{r['name'][:22]:<22} {r['phase_kind']:<8} {(r['parent'] or '-')[:16]:<16} {r['status']:<11} "
              f"{r['steps']:>6} {_fmt(r['loss'], '7.4f')} {_fmt(r['eval_loss'], '7.4f')} "
              f"{_fmt(r['learning_rate_used'], '9.2e')} {_fmt(r['learning_rate_config'], '9.2e')} "
              f"{_fmt(r['tokens_per_s'], '6.0f')}  {r['output_dir']}")
    return 0
