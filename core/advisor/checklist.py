"""The seed's pre-continue checklist and the gate in front of a continue phase.

Seven items, each checked by the program against the config it is about to run (`check`):
the parent checkpoint was evaluated after it was written; the diagnosis of the parent run's final
loss curve says something (its scenario and evidence are shown; a person's acknowledgement from
the studio is noted on top); a verified backup copy of the checkpoint exists and where; the
learning rate follows the seed's table for that scenario; the phase continues (not resumes) with
an adapter that fits; the output folder is new; and how long the phase will take.

`gate` runs before a continue phase is recorded: every item passes, or `phase.override_reason`
says why not (stored with the run); otherwise one line per failing item.
"""

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from core import paths, store
from core.advisor import advise
from core.advisor.advise import Diagnosis
from core.config import Config
from core.errors import UserError
from core.training import checkpoints, estimate, phases

TITLES = {  # the seed's words, but for the continue item (a continue phase loads the adapter; it does not resume)
    "evaluated": "Evaluated current model quality",
    "loss_curve": "Checked loss curve (still decreasing?)",
    "backed_up": "Backed up current checkpoints",
    "learning_rate": "Decided on learning rate",
    "continue_from": "Continues from the checkpoint's adapter (a new phase, not a resume)",
    "output_dir": "Changed output_dir (don't overwrite!)",
    "epochs": "Know how many more epochs needed",
}


@dataclass
class Item:
    key: str
    title: str
    passed: bool
    why: str  # what was found; when it fails, also how to fix it


def _item(key: str, passed: bool, why: str) -> Item:
    return Item(key, TITLES[key], passed, why)


@dataclass
class Start:
    """What a config starts from — nothing (fresh), a checkpoint to continue from, or one to resume — and
    where it writes, found once: by `check` from the config, or handed over by the phase's plan
    (core/training/plan.py), which has resolved all of it already (`continuing`)."""

    kind: str  # fresh | continue | resume
    output_dir: Path  # resolved
    output_problem: str | None = None  # why output_dir cannot be written to
    set_aside: store.Run | None = None  # a run that failed in output_dir before its first checkpoint
    checkpoint: Path | None = None
    problem: str | None = None  # why the checkpoint could not be used
    misfit: str | None = None  # continue: why its adapter does not fit this config's base model and LoRA
    run: store.Run | None = None  # the run that wrote it
    run_training: bool = False  # that run is still training
    written: datetime | None = None  # when it was written
    config: dict = field(default_factory=dict)  # the config it was trained with (see `continuing`)
    diagnosis: Diagnosis | None = None  # of the run that wrote it (its final curve)


def _file_time(ckpt: Path | str) -> datetime:
    """When a checkpoint the store does not know was written: its manifest's time, naive UTC like the store's."""
    ckpt = Path(ckpt)
    stamp = (ckpt / checkpoints.MANIFEST if (ckpt / checkpoints.MANIFEST).is_file() else ckpt).stat().st_mtime
    return datetime.fromtimestamp(stamp, timezone.utc).replace(tzinfo=None)


def continuing(ckpt: Path, output_dir: Path, set_aside: store.Run | None) -> Start:
    """A continue phase's start as its plan resolved it: the parent checkpoint (its adapter fits), the run
    and config it was trained with (`checkpoints.lineage`: an imported one's too), the free output folder and
    the failed run set aside there, if any."""
    known = store.checkpoints.get(ckpt)
    run_id, trained_with = checkpoints.lineage(ckpt)
    run = store.runs.get(known.run_id if known else run_id) if (known or run_id) else None
    return Start(
        "continue",
        output_dir,
        set_aside=set_aside,
        checkpoint=ckpt,
        run=run,
        run_training=bool(run and run.status in ("created", "running") and phases.worker_alive(run)),
        written=known.created_at if known else _file_time(ckpt),
        config=trained_with,
        diagnosis=advise.diagnose(run) if run else None,
    )


def _start(config: Config) -> Start:
    """What `config` starts from and where it writes, each problem kept for the item it fails."""
    out = paths.resolve_output_dir(config.training.output_dir)
    try:
        failed, out_problem = phases.check_free(out), None
    except UserError as exc:
        failed, out_problem = None, str(exc)
    if config.phase.continue_from:
        kind, ref = "continue", config.phase.continue_from
    elif config.training.resume_from_checkpoint:
        kind, ref = "resume", config.training.resume_from_checkpoint
    else:
        return Start("fresh", out, out_problem, failed)
    try:
        ckpt = checkpoints.resolve(ref) if kind == "continue" else phases.resume_point(ref)
    except UserError as exc:
        return Start(kind, out, out_problem, failed, problem=str(exc))
    if ckpt == checkpoints.BASE:
        return Start(
            kind,
            out,
            out_problem,
            failed,
            problem="phase.continue_from: base — a phase from the base model is a fresh run: "
            "remove phase.continue_from",
        )
    found = replace(continuing(Path(ckpt), out, failed), kind=kind, output_problem=out_problem)
    if kind == "resume":  # only this trainer's own settings (umlstudio.json) can be resumed with
        found.config = checkpoints.info(ckpt).get("config") or {}
    if kind == "continue":
        try:
            phases.continue_point(ref, config.lora, config.model.base)
        except UserError as exc:
            found.misfit = str(exc)
    return found


def _needs_parent(key: str) -> Item:
    return _item(key, False, f"needs a usable parent checkpoint (see '{TITLES['continue_from']}')")


def _check_evaluated(start: Start) -> Item:
    if start.kind != "continue":
        return _item("evaluated", True, f"{start.kind} run: no parent checkpoint to evaluate")
    if start.checkpoint is None:
        return _needs_parent("evaluated")
    ckpt = start.checkpoint
    fix = f"evaluate it: umlstudio evaluate --checkpoint {ckpt}"
    latest = store.evaluations.latest_of(str(ckpt))
    if latest is None:
        return _item("evaluated", False, f"no evaluation of {ckpt} — {fix}")
    if latest.created_at <= start.written:
        return _item(
            "evaluated",
            False,
            f"the latest evaluation of {ckpt} ({latest.created_at:%Y-%m-%d %H:%M}) is "
            f"older than the checkpoint ({start.written:%Y-%m-%d %H:%M}) — {fix}",
        )
    return _item("evaluated", True, f"{ckpt.name} evaluated on {latest.n} rows at {latest.created_at:%Y-%m-%d %H:%M}")


def acknowledge(run_id: str, diagnosis: Diagnosis) -> None:
    """A person looked at the run's loss curve in the studio: recorded with the diagnosis it showed."""
    store.acknowledgements.add(
        run_id,
        "loss_curve",
        json.dumps({"scenario": diagnosis.scenario, "name": diagnosis.name, "message": diagnosis.message}),
    )


def acknowledgement(run_id: str) -> dict | None:
    """The latest acknowledgement of the run's loss curve: {'diagnosis': {...}, 'created_at': ...}, or None."""
    found = store.acknowledgements.get(run_id, "loss_curve")
    if found is None:
        return None
    return {"diagnosis": json.loads(found.note or "{}"), "created_at": found.created_at}


def _check_loss_curve(start: Start) -> Item:
    if start.kind != "continue":
        return _item("loss_curve", True, f"{start.kind} run: no parent loss curve to check")
    if start.checkpoint is None:
        return _needs_parent("loss_curve")
    if start.run is None:
        return _item(
            "loss_curve",
            False,
            f"{start.checkpoint} belongs to no run of the store: there is no loss curve "
            f"to diagnose — look at its trainer_state.json, then set phase.override_reason",
        )
    run, diagnosis = start.run, start.diagnosis
    if start.run_training:
        return _item(
            "loss_curve",
            False,
            f"run '{run.name}' is still training: its loss curve is not final — "
            f"wait for it to finish, or stop it (umlstudio runs; the Train page's Stop)",
        )
    points = diagnosis.evidence.get("train_points", 0)
    if diagnosis.scenario is None:
        return _item(
            "loss_curve",
            False,
            f"the diagnosis of '{run.name}''s final curve ({points} loss points) could "
            f"not tell: {diagnosis.message} — train longer, or set phase.override_reason",
        )
    fits = "; ".join(advise.Fit(**f).describe() for f in diagnosis.evidence.get("fits", [])[:2])
    ack = acknowledgement(run.id)
    seen = (
        f"; a person acknowledged it at {ack['created_at']:%Y-%m-%d %H:%M}"
        if ack and ack["created_at"] > start.written
        else "; not yet acknowledged in the studio"
    )
    return _item(
        "loss_curve",
        True,
        f"scenario {diagnosis.scenario} ({diagnosis.name}) on the final curve of "
        f"'{run.name}' ({points} loss points): {fits}{seen}",
    )


def _check_backed_up(start: Start) -> Item:
    if start.kind == "fresh":
        return _item("backed_up", True, "fresh run: no checkpoint it starts from")
    if start.checkpoint is None:
        return _needs_parent("backed_up")
    ckpt = start.checkpoint
    problems = checkpoints.verify(ckpt)
    if problems:
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        return _item(
            "backed_up",
            False,
            f"{ckpt} does not match its manifest ({problems[0]}{more}) — it changed "
            f"since it was written: start from another checkpoint",
        )
    fix = f"umlstudio advise --run {start.run.name} --backup" if start.run else "umlstudio advise --backup"
    copy, problems = checkpoints.backup_of(ckpt)
    if copy is None:
        return _item(
            "backed_up",
            False,
            f"no backup copy of {ckpt} — copy it: `{fix}` (to {checkpoints.backup_root()}, or --backup-dir DIR)",
        )
    if problems:
        return _item(
            "backed_up", False, f"the backup copy at {copy} does not verify ({problems[0]}) — copy it again: `{fix}`"
        )
    return _item("backed_up", True, f"a copy of {ckpt.name} at {copy}: every file matches the manifest")


def _check_learning_rate(config: Config, start: Start) -> Item:
    lr = config.training.learning_rate
    if start.kind != "continue":
        return _item("learning_rate", True, f"{lr:g} ({start.kind} run: no parent phase to compare with)")
    diagnosis, parent_lr = start.diagnosis, start.config.get("training", {}).get("learning_rate")
    if diagnosis is None or diagnosis.scenario is None or parent_lr is None:
        return _item("learning_rate", True, f"{lr:g}; no diagnosis of the parent run to check it against")
    scenario = diagnosis.scenario
    wanted = advise.table_lr(scenario, parent_lr)
    rule = (
        f"the table for scenario {scenario} ({diagnosis.name}) says {parent_lr:g} → {wanted:g}, "
        f"{advise.LR_TABLE[scenario][1]}"
    )
    if wanted / advise.LR_BAND <= lr <= wanted * advise.LR_BAND:
        return _item("learning_rate", True, f"{lr:g}: {rule}")
    return _item(
        "learning_rate",
        False,
        f"{lr:g} contradicts {rule} — set training.learning_rate: {wanted:g}, or give phase.override_reason",
    )


def _check_continue(config: Config, start: Start) -> Item:
    if start.kind == "fresh":
        return _item(
            "continue_from",
            True,
            f"fresh run from {config.model.base}: neither resume_from_checkpoint nor continue_from",
        )
    if start.checkpoint is None:
        return _item("continue_from", False, start.problem)
    ckpt = start.checkpoint
    if start.kind == "resume":
        if not start.config:
            return _item(
                "continue_from",
                False,
                f"{ckpt} has no {checkpoints.INFO}: cannot tell its settings — start a "
                f"new phase from it with phase.continue_from instead",
            )
        changes = phases.resume_changes(start.config, config.to_dict())
        if changes:
            listed = ", ".join(f"{k} {old} → {new}" for k, (old, new) in changes.items())
            return _item(
                "continue_from",
                False,
                (
                    f"resume_from_checkpoint with changed hyperparameters ({listed}): "
                    "a resume restores the saved optimizer "
                    "and learning-rate schedule and counts epochs as a total, "
                    "so they would not apply as written — start "
                    f"a new phase instead: phase.continue_from: {ckpt} and a new training.output_dir"
                ),
            )
        return _item("continue_from", True, f"resumes the interrupted run at {ckpt} with its own settings")
    if start.misfit:
        return _item("continue_from", False, start.misfit)
    if start.diagnosis and start.diagnosis.scenario == 4:
        return _item(
            "continue_from",
            False,
            f"the parent run is not learning ({start.diagnosis.message.split(':')[0]}): "
            f"start over instead — remove phase.continue_from",
        )
    return _item(
        "continue_from",
        True,
        f"a new phase from {ckpt} (same base model and LoRA shape; fresh optimizer "
        f"and schedule at this config's learning rate)",
    )


def _check_output_dir(config: Config, start: Start) -> Item:
    out = start.output_dir
    if start.kind == "resume":
        if start.checkpoint is None:
            return _needs_parent("output_dir")
        if out != start.checkpoint.parent:
            return _item(
                "output_dir",
                False,
                "a resume writes on in the interrupted run's folder — "
                f"set training.output_dir: {start.checkpoint.parent}",
            )
        return _item("output_dir", True, f"{out}: a resume writes on in the interrupted run's own folder")
    if start.checkpoint is not None and out == start.checkpoint.parent:
        return _item(
            "output_dir",
            False,
            f"{out} is the parent run's folder: the new phase would write among its "
            f"checkpoints — set training.output_dir: {phases.next_phase_dir(out)}",
        )
    if start.output_problem:
        return _item("output_dir", False, start.output_problem)
    failed = start.set_aside
    if failed:
        return _item(
            "output_dir",
            True,
            f"{out}: run '{failed.name}' failed there before its first checkpoint; "
            f"its files move to {phases.set_aside_dir(failed)} when the phase starts",
        )
    return _item("output_dir", True, f"{out}: {'empty' if out.exists() else 'new'}")


def _check_epochs(config: Config, start: Start, how_long: estimate.Estimate | None) -> Item:
    t = config.training
    amount = f"{t.max_steps} steps" if t.max_steps > 0 else f"{t.num_train_epochs:g} epoch(s)"
    if start.kind == "continue":
        amount += " for this phase alone"
        if start.diagnosis and start.diagnosis.scenario == 3 and t.max_steps <= 0 and t.num_train_epochs > 1:
            return _item(
                "epochs",
                False,
                f"{amount}, but the parent run is overfitting: don't add epochs — at most one "
                f"short regularised epoch (training.num_train_epochs: 1)",
            )
    try:
        how_long = how_long or estimate.estimate(config)
    except UserError as exc:
        return _item("epochs", False, f"{amount}, but no time estimate: {exc}")
    if how_long.seconds is None:
        return _item("epochs", True, f"{amount}: {how_long.basis}")
    return _item("epochs", True, f"{amount}, {how_long.span()} — {how_long.tokens:,} tokens; {how_long.basis}")


def check(config: Config) -> list[Item]:
    """The seed's seven pre-continue items for a phase config, each checked by the program."""
    return _items(config, _start(config), None)


def _items(config: Config, start: Start, how_long: estimate.Estimate | None) -> list[Item]:
    return [
        _check_evaluated(start),
        _check_loss_curve(start),
        _check_backed_up(start),
        _check_learning_rate(config, start),
        _check_continue(config, start),
        _check_output_dir(config, start),
        _check_epochs(config, start, how_long),
    ]


def gate(config: Config, start: Start, how_long: estimate.Estimate) -> list[Item]:
    """Before a continue phase starts: the checklist must pass, or `phase.override_reason` say why not.
    The phase's plan (core/training/plan.py) hands over what it resolved: where the phase starts and
    writes (`continuing`) and its time estimate.

    Returns the items (for the caller to store with the override reason); raises UserError with one
    line per failing item otherwise."""
    items = _items(config, start, how_long)
    failing = [item for item in items if not item.passed]
    if failing and not config.phase.override_reason:
        lines = [f"{item.title}: {item.why}" for item in failing]
        lines.append(
            f"{len(failing)} of {len(items)} pre-continue checks fail — fix them, or set "
            f"phase.override_reason to start anyway (the reason is stored with the run)"
        )
        raise UserError("\n".join(lines))
    return items


# ---- the studio's review of a run ---------------------------------------------------------------


@dataclass
class Review:
    """Everything the pre-continue page shows for one run, from one call."""

    run: store.Run
    diagnosis: Diagnosis  # of its curve as it stands
    curves: advise.Curves
    acknowledged: dict | None  # a person's latest acknowledgement of the curve (see `acknowledgement`)
    proposal: Config | None  # the next phase, or None (see `problem`)
    diff: dict  # {key: [now, next]}
    problem: str | None  # why there is no proposal
    items: list[Item]  # the checklist of the proposal
    path: Path  # where the proposal is saved

    @property
    def acknowledged_as_shown(self) -> bool:
        """Whether the latest acknowledgement was of the diagnosis shown now."""
        d = self.diagnosis
        return bool(self.acknowledged) and self.acknowledged["diagnosis"] == {
            "scenario": d.scenario,
            "name": d.name,
            "message": d.message,
        }


def review(run: store.Run) -> Review:
    """Diagnose a run, propose its next phase and check that proposal: the pre-continue page's data."""
    diagnosis = advise.diagnose(run)
    proposal, problem, items = None, None, []
    diff: dict = {}
    if diagnosis.scenario is None:
        problem = "nothing to propose until the curve says something"
    else:
        try:
            proposal, diff = advise.propose(run, diagnosis)
        except UserError as exc:
            problem = str(exc)
        else:
            items = check(proposal)
    name = proposal.name if proposal else run.name
    return Review(
        run,
        diagnosis,
        advise.load_curves(run.id),
        acknowledgement(run.id),
        proposal,
        diff,
        problem,
        items,
        paths.home() / f"{name}.yaml",
    )


def save(review: Review, override_reason: str | None = None) -> Path:
    """Write the review's proposal (with the override reason, if any) where the Train page lists proposals."""
    review.proposal.phase.override_reason = override_reason or None
    advise.write_proposal(
        review.proposal, review.diff, review.diagnosis, review.run, estimate.estimate(review.proposal), review.path
    )
    return review.path
