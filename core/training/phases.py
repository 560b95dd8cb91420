"""The phase rules, pure enough to read in one sitting: which checkpoint a resume restarts from,
whether a checkpoint can be continued with a config, what a resume may change, and which
output folders are free.

Three operations train a phase (see core/training/train.py for the recipe that uses these rules):

- fresh (a "new run" in the studio): a new run in a new, free output_dir;
- resume (`training.resume_from_checkpoint`): finish an interrupted run in its own folder from its
  latest complete checkpoint, with its own settings (`resume_changes` lists what would differ);
- continue (`phase.continue_from`, a "next phase" in the studio): a new phase in a new output_dir from a
  checkpoint's adapter weights (`continue_point` checks the adapter fits the config).

Nothing here writes; every refusal is a `UserError` naming the setting and the fix.
"""

import json
import os
import shutil
from pathlib import Path

from core import config as cfg
from core import paths, store, supervisor
from core.errors import UserError
from core.training import checkpoints, models

# Keys a resume may change: they decide what is logged, saved or shown, not what is trained.
RESUME_FREE = {
    "run_name",
    "training.resume_from_checkpoint",
    "training.output_dir",
    "training.backend",
    "training.save_steps",
    "training.eval_steps",
    "training.logging_steps",
    "data.eval_rows",
}
RESUME_FREE_SECTIONS = ("phase.", "evaluation.", "quality.")
# Keys that always differ between a phase and its parent, so they are no "change" worth listing.
LINEAGE_NOISE = {
    "run_name",
    "training.output_dir",
    "training.resume_from_checkpoint",
    "phase.continue_from",
    "phase.override_reason",
}
# What HF does with a changed key when resuming, for the refusal message.
RESUME_CONSEQUENCE = {
    "training.learning_rate": "the saved optimizer and scheduler come back with the old learning rate {old}; "
    "{new} would never be used",
    "training.lr_scheduler_type": "the saved scheduler state comes back; "
    "the new schedule would be applied to the old one's position",
    "training.warmup_ratio": "the saved scheduler state comes back; warm-up is already done or half done",
    "training.weight_decay": "the saved optimizer's parameter groups come back with weight decay {old}",
    "training.output_dir": "a resume finishes the run in its own folder; the run's state lives in {old}, not {new}",
}


# ---- configs as flat keys -----------------------------------------------------------------------


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def diff(old: dict, new: dict, ignore=()) -> dict:
    """{key: [old, new]} for every leaf that differs between two configs (as dicts)."""
    a, b = flatten(old), flatten(new)
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in ignore}


# Config keys in words, for the studio's tables of changes (the key itself stays beside them).
KEY_WORDS = {
    "run_name": "run name",
    "training.output_dir": "output folder",
    "phase.continue_from": "starts from checkpoint",
    "phase.override_reason": "override reason",
    "training.resume_from_checkpoint": "resumes from",
    "training.learning_rate": "learning rate",
    "training.num_train_epochs": "epochs",
    "training.max_steps": "step limit",
    "training.weight_decay": "weight decay",
    "training.warmup_ratio": "warm-up share",
    "training.lr_scheduler_type": "learning-rate schedule",
    "lora.r": "LoRA rank",
    "lora.lora_alpha": "LoRA alpha",
    "lora.lora_dropout": "LoRA dropout",
    "data.train_file": "training data file",
    "training.time_budget_minutes": "time budget (minutes)",
}


def value_in_words(key: str, value) -> str:
    """A config value as the studio shows it: no "None", no bare -1 for "no step limit"."""
    if key == "training.max_steps" and value is not None and value <= 0:
        return "none (counted in epochs)"
    if value is None:
        return "—"
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_in_words(config: dict) -> list[dict]:
    """A config as rows a person reads: {setting (the dotted key), value (`value_in_words`)}."""
    return [{"setting": key, "value": value_in_words(key, value)} for key, value in flatten(config).items()]


def changes_in_words(changes: dict) -> list[dict]:
    """A `diff` as rows a person reads: {setting (in words), now, next, key}."""
    return [
        {
            "setting": KEY_WORDS.get(key, key),
            "now": value_in_words(key, old),
            "next": value_in_words(key, new),
            "key": key,
        }
        for key, (old, new) in changes.items()
    ]


def resume_changes(saved: dict, config: dict) -> dict:
    """What a resume config changes against the checkpoint's own config, among the keys a resume
    may not change (RESUME_FREE and RESUME_FREE_SECTIONS may). A key added to the schema after the
    checkpoint was written counts as its default (what that run trained with); a renamed one is read
    under its new name (config.RENAMED)."""
    defaults, saved = cfg.Config().to_dict(), cfg.current_names(saved)
    saved = {
        **defaults,
        **{
            section: {**defaults[section], **values} if isinstance(defaults.get(section), dict) else values
            for section, values in saved.items()
        },
    }
    return {k: v for k, v in diff(saved, config, ignore=RESUME_FREE).items() if not k.startswith(RESUME_FREE_SECTIONS)}


def base_identity(base: str) -> str:
    """One spelling per base model, without preparing it: the embedded name and its folder agree."""
    if base == models.EMBEDDED:
        return str(models.embedded_dir().resolve())
    path = Path(base).expanduser()
    return str(path.resolve()) if path.exists() else base


# ---- checkpoints as phase starting points -------------------------------------------------------


def trainer_state(ckpt: Path) -> dict:
    path = ckpt / "trainer_state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def is_complete(ckpt: Path) -> bool:
    """A checkpoint is complete once its manifest is written: the trainer writes it last."""
    return (ckpt / checkpoints.MANIFEST).is_file()


def resume_point(ref: str) -> Path:
    """The checkpoint a resume restarts from: the run's latest complete one."""
    path = Path(ref).expanduser()
    if not path.is_absolute() and not path.exists():
        path = paths.home() / ref
    if not path.is_dir():
        raise UserError(
            f"training.resume_from_checkpoint: {ref} not found — "
            "name a run folder or one of its checkpoint-<step> folders"
        )
    run_dir = path.parent if checkpoints.step_of(path) is not None else path
    complete = [c for c in checkpoints.list_checkpoints(run_dir) if is_complete(c)]
    if not complete:
        raise UserError(
            f"training.resume_from_checkpoint: {run_dir} has no complete checkpoint "
            f"(one with {checkpoints.MANIFEST}) — start the run again without resume_from_checkpoint"
        )
    latest = complete[-1]
    if checkpoints.step_of(path) is not None and not is_complete(path):
        raise UserError(
            f"training.resume_from_checkpoint: {path} is incomplete (no {checkpoints.MANIFEST}: the worker "
            f"stopped while saving it) — resume from the run folder {run_dir}, "
            f"whose latest complete one is {latest.name}"
        )
    if checkpoints.step_of(path) is not None and path.resolve() != latest.resolve():
        raise UserError(
            f"training.resume_from_checkpoint: {path.name} is not the run's latest checkpoint "
            f"({latest.name}); resuming "
            f"from it would overwrite {latest.name} — resume from {run_dir}, or start a new phase from it with "
            f"phase.continue_from: {path} and a new training.output_dir"
        )
    return latest.resolve()


def resume_refusal(where: str, ckpt: Path, changes: dict, suggested_dir: str) -> str:
    """Why a resume that changes settings is refused: one line per change, then the fix."""
    state = trainer_state(ckpt)
    done_epochs, done_steps = state.get("epoch", 0.0), state.get("global_step", 0)
    lines = [
        f"{where}: training.resume_from_checkpoint only finishes an interrupted run with its own settings, "
        f"but this config changes them against {ckpt / checkpoints.INFO}:"
    ]
    for key, (old, new) in changes.items():
        if key == "training.num_train_epochs":
            if new is not None and old is not None and new <= done_epochs:
                why = f"epochs are a total and the checkpoint has done {done_epochs:g}, so {new:g} would train 0 steps"
            else:
                why = (
                    f"epochs are a total (the checkpoint has done {done_epochs:g} of {old:g}), so {new:g} would train "
                    f"{(new or 0) - done_epochs:g} more on a stretched schedule of the old learning rate"
                )
        elif key == "training.max_steps":
            why = f"steps are a total and the checkpoint has done {done_steps}"
        else:
            why = RESUME_CONSEQUENCE.get(
                key, "a resume restores the saved state; this change would not be applied cleanly"
            ).format(old=old, new=new)
        lines.append(f"  {key}: {old} -> {new} — {why}")
    lines.append(
        f"fix: to train a new phase from this checkpoint, replace training.resume_from_checkpoint with "
        f"`phase: {{continue_from: {ckpt}}}` and set training.output_dir: {suggested_dir} — "
        f"or run the same command with --as-phase"
    )
    return "\n".join(lines)


def continue_point(ref: str, lora: cfg.LoraConfig, base: str) -> tuple[Path, dict]:
    """Resolve phase.continue_from (`ref`) and check its adapter can be continued with this `lora` shape
    on this `base` model; the checkpoint and its umlstudio.json."""
    ckpt = checkpoints.resolve(ref)
    if ckpt == checkpoints.BASE:
        raise UserError(
            "phase.continue_from: base — a phase starting from the base model is a fresh run: "
            "remove phase.continue_from"
        )
    adapter = checkpoints.read_adapter(ckpt, "phase.continue_from")
    info = checkpoints.info(ckpt)
    parent_base = info.get("config", {}).get("model", {}).get("base") or adapter.get("base_model_name_or_path", "")
    problems = []
    if adapter.get("r") != lora.r:
        problems.append(f"lora.r {lora.r} vs the checkpoint's {adapter.get('r')}")
    if adapter.get("lora_alpha") != lora.lora_alpha:
        problems.append(f"lora.lora_alpha {lora.lora_alpha} vs the checkpoint's {adapter.get('lora_alpha')}")
    if set(adapter.get("target_modules") or []) != set(lora.target_modules):
        problems.append(
            f"lora.target_modules {sorted(lora.target_modules)} "
            f"vs the checkpoint's {sorted(adapter.get('target_modules') or [])}"
        )
    if base_identity(parent_base) != base_identity(base):
        problems.append(f"model.base {base} vs the checkpoint's {parent_base}")
    if problems:
        raise UserError(
            f"phase.continue_from {ckpt}: cannot continue this adapter — {'; '.join(problems)}. A continue phase keeps "
            f"the adapter's shape and base model; for more capacity start a fresh run (remove phase.continue_from, "
            f"new training.output_dir, see config/restart_more_capacity.yaml)"
        )
    return ckpt, info


# ---- output folders -----------------------------------------------------------------------------


def next_phase_dir(run_dir: Path) -> Path:
    """`<run>_phase<n>` beside the run: the first n from 2 whose folder and run row are both free."""
    stem = run_dir.name.rsplit("_phase", 1)[0]
    n = 2
    while (run_dir.parent / f"{stem}_phase{n}").exists() or store.runs.for_output_dir(
        run_dir.parent / f"{stem}_phase{n}"
    ):
        n += 1
    return run_dir.parent / f"{stem}_phase{n}"


def check_writable(output_dir: Path) -> None:
    """`output_dir` can be made a run folder: not a file, not a system folder, in a writable place."""
    where = f"training.output_dir {output_dir}"
    paths.check_not_system(
        output_dir,
        "training.output_dir",
        f"set training.output_dir to a folder of yours (a relative one lives under {paths.home()})",
    )
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"{where} is a file — set training.output_dir to a new folder")
    existing = next(p for p in (output_dir, *output_dir.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(
            f"{where}: {existing} is a file, so no folder can be made below it — set another training.output_dir"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{where}: {existing} is not writable — set training.output_dir to a folder you can write to")


def failed_before_a_checkpoint(run: store.Run) -> bool:
    """The run ended (failed, or its worker died) without one complete checkpoint: nothing in its folder
    can be resumed, so a new run may take the folder over."""
    ended = run.status == "failed" or (
        run.status in ("created", "running") and (run.pid or run.job) and not worker_alive(run)
    )
    return bool(ended) and not any(is_complete(c) for c in checkpoints.list_checkpoints(Path(run.output_dir)))


def set_aside_dir(run: store.Run) -> Path:
    """Where `set_aside` moves a failed run's folder: `<runs root>/failed/<folder>-<run id>`."""
    return paths.home() / "failed" / f"{Path(run.output_dir).name}-{run.id}"


def set_aside(run: store.Run) -> Path:
    """Move a run that failed before its first checkpoint out of its folder (its log and config kept,
    the run row pointed at the new place), so the folder is free for a new run."""
    target = set_aside_dir(run)
    target.parent.mkdir(parents=True, exist_ok=True)
    if Path(run.output_dir).exists():
        shutil.move(run.output_dir, target)
    store.runs.update(run.id, output_dir=str(target))
    return target


def check_free(output_dir: Path) -> store.Run | None:
    """A new run may write into `output_dir`: it can be written, no run holds it and it is empty or
    absent. Returns the run to `set_aside` first when the folder belongs to one that failed before
    its first checkpoint; None otherwise."""
    check_writable(output_dir)
    run = store.runs.for_output_dir(output_dir)
    if run and failed_before_a_checkpoint(run):
        return run
    if run:
        raise UserError(
            f"training.output_dir {output_dir} holds run '{run.name}' ({run.id}, {run.status}) — "
            "set a new training.output_dir; "
            f"to finish that run instead set training.resume_from_checkpoint: {output_dir}"
        )
    if output_dir.exists() and any(output_dir.iterdir()):
        raise UserError(
            f"training.output_dir {output_dir} is not empty and holds no run — set a new training.output_dir"
        )
    return None


# ---- workers ------------------------------------------------------------------------------------


def worker_alive(run: store.Run) -> bool:
    """Whether the run's training worker is still running: its job has not ended (core/supervisor.py), or, for a
    worker `umlstudio train` runs attached in a terminal (no job), its process lives (a zombie or a reused
    pid is not)."""
    if run.job:  # a deleted job folder: nothing supervises a worker any more
        job = supervisor.find(run.job)
        return job is not None and not job.done
    pid = run.pid
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and b"core.training.train" in cmdline
