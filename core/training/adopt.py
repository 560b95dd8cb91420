"""Adopt a run trained elsewhere (`umlstudio import DIR`, the Runs page's "Open a training folder").

DIR is a training output folder, or one `checkpoint-N` folder, written by transformers' `Trainer`, TRL's
`SFTTrainer`, Unsloth, LLaMA-Factory or axolotl (all save through `Trainer`). What is read:

- `trainer_state.json` of DIR and of every `checkpoint-N` in it: `log_history` (every numeric key of
  every entry; the newest file's value wins for a step), global_step, max_steps, num_train_epochs,
  logging / eval / save steps, train_batch_size, best_model_checkpoint. A state without the step
  settings (older transformers) has its logging_steps read from the spacing of its logged losses;
- `adapter_config.json` (base model, r, lora_alpha, lora_dropout, target_modules);
- LLaMA-Factory's `trainer_log.jsonl` and `training_args.yaml`;
- TensorBoard event files anywhere below DIR, with tensorboard's own reader, when the states hold no
  per-step training loss (a state saved with only the final summary);
- a YAML config in the studio's schema given with `--config` (the guide's `config/training_config.yaml`).

The run is reconstructed in the studio's schema (core/config.py) as far as these tell; a setting they
do not tell keeps the schema's default and is listed as unknown. Metrics go in the store under the
trainer's own names (loss, eval_loss, learning_rate, grad_norm: what the studio logs too), every other
numeric key under its own name; TensorBoard tags `train/x` become `x` and `eval/x` become `eval_x`.

Read-only and careful: nothing is written into DIR; `training_args.bin` is never opened (unpickling
runs code); a link that leads out of DIR, a JSON file over MAX_JSON_BYTES or not UTF-8, and a
`checkpoint-N` that is a file are each refused in one line before anything is stored. A checkpoint
without weights still brings its curve (marked "weights not present").

An imported checkpoint is recorded with the sha256 of the manifest `checkpoints.write_manifest` would
write for it (computed in memory, the folder is not touched), so a later change to its files shows.
Importing the same folder again updates its run in place (same id: its metrics and checkpoints replaced
by what the folder holds now; a checkpoint whose files did not change keeps its recorded time, so an
evaluation made since still counts for the pre-continue checklist); a folder the studio trained itself is refused.
"""

import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from core import config as configs
from core import paths, store
from core.advisor import advise
from core.errors import UserError
from core.training import checkpoints, phases

MAX_JSON_BYTES = 64 * 1024 * 1024
STATE = "trainer_state.json"
ADAPTER_CONFIG = "adapter_config.json"
LF_LOG = "trainer_log.jsonl"  # LLaMA-Factory
LF_ARGS = "training_args.yaml"  # LLaMA-Factory
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "pytorch_model.bin")
WEIGHT_SHARDS = ("model-*.safetensors", "pytorch_model-*.bin")
# bookkeeping keys of a log entry, not metrics
NOT_METRICS = {"step", "epoch", "current_steps", "total_steps", "percentage"}
# LLaMA-Factory's names for the trainer's keys
LF_NAMES = {"current_steps": "step", "lr": "learning_rate"}
# the settings an imported run is described by; those no source tells are listed as unknown
DESCRIBED = (
    "model.base",
    "data.dataset",
    "training.num_train_epochs",
    "training.learning_rate",
    "training.rows_per_micro_batch",
    "training.gradient_accumulation_steps",
    "training.weight_decay",
    "training.warmup_ratio",
    "training.lr_scheduler_type",
    "training.max_seq_length",
    "training.logging_steps",
    "training.eval_steps",
    "training.save_steps",
    "training.seed",
    "lora.r",
    "lora.lora_alpha",
    "lora.lora_dropout",
    "lora.target_modules",
)
# LLaMA-Factory's training_args.yaml keys in the studio's schema
LF_KEYS = {
    "model_name_or_path": "model.base",
    "num_train_epochs": "training.num_train_epochs",
    "learning_rate": "training.learning_rate",
    "per_device_train_batch_size": "training.rows_per_micro_batch",
    "gradient_accumulation_steps": "training.gradient_accumulation_steps",
    "weight_decay": "training.weight_decay",
    "warmup_ratio": "training.warmup_ratio",
    "lr_scheduler_type": "training.lr_scheduler_type",
    "cutoff_len": "training.max_seq_length",
    "seed": "training.seed",
    "lora_rank": "lora.r",
    "lora_alpha": "lora.lora_alpha",
    "lora_dropout": "lora.lora_dropout",
}
STATE_KEYS = {
    "logging_steps": "training.logging_steps",
    "eval_steps": "training.eval_steps",
    "save_steps": "training.save_steps",
    "train_batch_size": "training.rows_per_micro_batch",
    "num_train_epochs": "training.num_train_epochs",
}


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    weights: bool  # False: "weights not present" (a state without an adapter or model file)
    manifest_sha256: str  # of the manifest checkpoints.write_manifest would write (see the module docstring)


@dataclass
class Folder:
    """What a training folder tells (`read`), before anything is stored."""

    run_dir: Path  # the output folder (DIR, or the parent of the checkpoint-N folder given)
    given: Path  # DIR as given, resolved
    name: str
    config: configs.Config  # in the studio's schema; unknown settings keep the schema's defaults
    origin: dict[str, str]  # setting -> where it was read
    unknown: list[str]  # settings no source told
    points: dict[tuple[int, str], float]  # (step, metric) -> value
    epochs: dict[int, float]  # step -> epoch
    checkpoints: list[Checkpoint]
    state: dict  # global_step, max_steps, epoch, num_train_epochs, best_model_checkpoint, ... (what was found)
    read: list[str]  # files read, relative to run_dir
    notes: list[str] = field(default_factory=list)
    resume: dict | None = None  # the --config's resume_from_checkpoint and num_train_epochs, when it has one
    name_given: bool = False  # named by the user (--name): a name taken is refused, not made unique

    @property
    def curves(self) -> list[str]:
        """The metrics found, with their number of points."""
        counts: dict[str, int] = {}
        for _, name in self.points:
            counts[name] = counts.get(name, 0) + 1
        return [f"{name} ({n})" for name, n in sorted(counts.items())]


@dataclass(frozen=True)
class Adopted:
    """An imported run: its row, whether the import was new, what was read, and the advisor's diagnosis."""

    run: store.Run
    new: bool
    folder: Folder
    diagnosis: advise.Diagnosis
    resume_line: str | None


# ---- reading, safely ----------------------------------------------------------------------------


def _inside(path: Path, root: Path, what: str) -> Path:
    """`path` resolved, once sure it stays inside `root` (a link out of it is refused)."""
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise UserError(
            f"{path}: {what} is a link to {resolved}, outside {root} — import reads only the folder itself: "
            "copy the file into it instead of linking"
        )
    return resolved


def _text(path: Path, root: Path, what: str) -> str:
    real = _inside(path, root, what)
    if not real.is_file():
        raise UserError(f"{path}: {what} is not a file — remove it or replace it with the file the trainer wrote")
    size = real.stat().st_size
    if size > MAX_JSON_BYTES:
        raise UserError(
            f"{path}: {what} is {size / 2**20:.0f} MB, over the {MAX_JSON_BYTES // 2**20} MB a trainer writes — "
            "it is not a trainer's file: remove it from the folder"
        )
    try:
        return real.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: {what} is not UTF-8 text (byte {exc.start}) — it is damaged: restore it or remove it"
        ) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror}) — check its permissions") from None


def _json(path: Path, root: Path, what: str) -> dict:
    try:
        value = json.loads(_text(path, root, what))
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path}:{exc.lineno}: {what} is not valid JSON ({exc.msg}) — restore it or remove it"
        ) from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: {what} holds no JSON object — restore it or remove it")
    return value


def _jsonl(path: Path, root: Path, what: str) -> list[dict]:
    entries = []
    for number, line in enumerate(_text(path, root, what).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path}:{number}: {what} is not valid JSON ({exc.msg}) — restore it or remove it"
            ) from None
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _yaml(path: Path, root: Path, what: str) -> dict:
    try:
        value = yaml.safe_load(_text(path, root, what))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: {what} is not valid YAML ({str(exc).splitlines()[0][:120]})") from None
    return value if isinstance(value, dict) else {}


def _number(value) -> float | None:
    """A logged value as a float (NaN and infinities kept: the advisor says why it cannot judge them)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _has_weights(ckpt: Path) -> bool:
    return any((ckpt / name).is_file() for name in WEIGHTS) or any(
        next(ckpt.glob(pattern), None) for pattern in WEIGHT_SHARDS
    )


def _manifest_sha256(ckpt: Path, root: Path) -> str:
    """The sha256 of the manifest `checkpoints.write_manifest` would write for `ckpt`, computed in memory."""
    import hashlib

    for path in ckpt.rglob("*"):
        _inside(path, root, "a checkpoint file")  # no link out of the folder is followed
    return hashlib.sha256(checkpoints.manifest_text(checkpoints.computed_manifest(ckpt)).encode()).hexdigest()


def _log_entries(entries: list[dict], points: dict, epochs: dict, rename: dict | None = None) -> int:
    """Every numeric key of every log entry into `points`; returns the entries without a step."""
    stepless = 0
    for raw in entries:
        entry = {(rename or {}).get(k, k): v for k, v in raw.items()}
        step = entry.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            stepless += 1
            continue
        if _number(entry.get("epoch")) is not None:
            epochs[step] = float(entry["epoch"])
        for key, value in entry.items():
            number = _number(value)
            if number is not None and key not in NOT_METRICS:
                points[(step, key)] = number
    return stepless


def _tensorboard(run_dir: Path, points: dict) -> list[str]:
    """Scalars of every TensorBoard event file below `run_dir` (links not followed); the files read."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    read = []
    for here, dirs, files in os.walk(run_dir):
        dirs.sort()
        for name in sorted(f for f in files if f.startswith("events.out.tfevents")):
            path = Path(here) / name
            if path.is_symlink():
                _inside(path, run_dir, "a TensorBoard event file")
            events = EventAccumulator(str(path), size_guidance={SCALARS: 0})
            events.Reload()
            for tag in events.Tags()[SCALARS]:
                section, _, metric = tag.rpartition("/")
                key = f"eval_{metric}" if section == "eval" else metric if section in ("train", "") else tag
                if key in NOT_METRICS:
                    continue
                for event in events.Scalars(tag):
                    points.setdefault((int(event.step), key), float(event.value))
            read.append(str(path.relative_to(run_dir)))
    return read


# ---- the folder in the studio's schema ----------------------------------------------------------


def _set(raw: dict, key: str, value) -> None:
    section, name = key.split(".")
    raw[section][name] = value


def _valid(key: str, value) -> bool:
    """Whether `value` is one the schema takes for `key` (a float eval_steps < 1 is a ratio, not steps)."""
    trial = configs.Config().to_dict()
    _set(trial, key, value)
    try:
        configs.Config.model_validate(trial)
    except ValueError:
        return False
    return True


def read(folder, config_path=None, name: str | None = None) -> Folder:
    """What a training folder tells, checked and parsed; nothing is stored or written. UserError (one line)
    for a folder that is not one, a link out of it, an oversized or non-UTF-8 JSON, a checkpoint that is a file."""
    given_path = Path(folder).expanduser()
    if not given_path.exists():
        raise UserError(f"{folder}: no such folder — pass a training output folder or one of its checkpoint-N folders")
    if not given_path.is_dir():
        raise UserError(f"{folder}: is a file — pass the training output folder (or a checkpoint-N folder) holding it")
    given = given_path.resolve()
    single = checkpoints.step_of(given) is not None
    run_dir = given.parent if single else given
    root = given  # nothing outside what was given is read
    for entry in sorted(given.iterdir()):
        if checkpoints.step_of(entry) is not None and not entry.is_dir():
            raise UserError(
                f"{entry}: a checkpoint named like a folder is a file — remove it or restore the checkpoint folder"
            )
        if entry.is_symlink():
            _inside(entry, root, "an entry of the folder")
    ckpt_dirs = [given] if single else checkpoints.list_checkpoints(given)
    for ckpt in ckpt_dirs:
        _inside(ckpt, root, "a checkpoint folder")
    read_files: list[str] = []
    notes: list[str] = []

    # trainer states: each checkpoint's, then the folder's own (trainer.save_state at the end), oldest first
    states: list[tuple[Path, dict]] = []
    for where in [*ckpt_dirs, *([] if single else [given])]:
        if (where / STATE).exists() or (where / STATE).is_symlink():
            states.append((where, _json(where / STATE, root, STATE)))
            read_files.append(str((where / STATE).relative_to(run_dir)))
    states.sort(key=lambda s: s[1]["global_step"] if isinstance(s[1].get("global_step"), int) else -1)
    points: dict[tuple[int, str], float] = {}
    epochs: dict[int, float] = {}
    stepless = 0
    for _, state in states:
        history = state.get("log_history")
        stepless += _log_entries(history if isinstance(history, list) else [], points, epochs)
    if stepless:
        notes.append(f"{stepless} log entries without a step were left out")
    last = states[-1][1] if states else {}

    raw = configs.Config().to_dict()
    origin: dict[str, str] = {}

    def take(key: str, value, where: str) -> None:
        if value is None or not _valid(key, value):
            if value is not None:
                notes.append(f"{key}: {value!r} from {where} is not a value the studio's schema takes — left unknown")
            return
        _set(raw, key, value)
        origin[key] = where

    lf_args_path = given / LF_ARGS
    if lf_args_path.exists():
        lf_args = _yaml(lf_args_path, root, LF_ARGS)
        read_files.append(str(lf_args_path.relative_to(run_dir)))
        for lf_key, key in LF_KEYS.items():
            take(key, lf_args.get(lf_key), LF_ARGS)
        if isinstance(lf_args.get("lora_target"), str) and lf_args["lora_target"] != "all":
            take("lora.target_modules", [t.strip() for t in lf_args["lora_target"].split(",")], LF_ARGS)
    lf_log = given / LF_LOG
    if lf_log.exists():
        before = len(points)
        found: dict[tuple[int, str], float] = {}
        _log_entries(_jsonl(lf_log, root, LF_LOG), found, epochs, LF_NAMES)
        for point, value in found.items():
            points.setdefault(point, value)  # trainer_state.json holds the same values at full precision
        read_files.append(str(lf_log.relative_to(run_dir)))
        if len(points) == before and found:
            notes.append(f"{LF_LOG}: every value is also in {STATE}")

    resume = None
    if config_path is not None:
        path = Path(config_path).expanduser()
        if not path.is_file():
            raise UserError(f"--config {config_path}: no such file — pass the YAML your run was trained with")
        text = configs.read_text(path, "the config")
        yours = configs.loads(text, str(path))  # the schema's one-line errors
        given_keys = phases.flatten(yaml.safe_load(text) or {})
        for key in given_keys:
            if key in DESCRIBED:
                take(key, phases.flatten(yours.to_dict())[key], f"--config {path.name}")
        if yours.training.resume_from_checkpoint:
            resume = {
                "resume_from_checkpoint": yours.training.resume_from_checkpoint,
                "num_train_epochs": yours.training.num_train_epochs,
                "learning_rate": yours.training.learning_rate,
            }

    # what the folder tells of the run itself wins over what a config meant
    for state_key, key in STATE_KEYS.items():
        take(key, last.get(state_key), STATE)
    adapter_file = next(
        (c / ADAPTER_CONFIG for c in reversed(ckpt_dirs) if (c / ADAPTER_CONFIG).exists()),
        given / ADAPTER_CONFIG if (given / ADAPTER_CONFIG).exists() else None,
    )
    if adapter_file is not None:
        adapter = _json(adapter_file, root, ADAPTER_CONFIG)
        read_files.append(str(adapter_file.relative_to(run_dir)))
        take("model.base", adapter.get("base_model_name_or_path"), ADAPTER_CONFIG)
        take("lora.r", adapter.get("r"), ADAPTER_CONFIG)
        take("lora.lora_alpha", adapter.get("lora_alpha"), ADAPTER_CONFIG)
        take("lora.lora_dropout", adapter.get("lora_dropout"), ADAPTER_CONFIG)
        targets = adapter.get("target_modules")
        take("lora.target_modules", [targets] if isinstance(targets, str) else targets, ADAPTER_CONFIG)
    if "training.logging_steps" not in origin:
        steps = sorted({step for step, key in points if key == "loss"})
        gaps = [b - a for a, b in zip(steps, steps[1:])]
        if gaps:
            take("training.logging_steps", int(statistics.median(gaps)), "the spacing of the logged losses")
    if "training.learning_rate" not in origin:
        rates = [v for (_, key), v in points.items() if key == "learning_rate" and math.isfinite(v) and v > 0]
        if rates:
            take("training.learning_rate", max(rates), "the highest logged learning rate")

    if not any(key == "loss" for _, key in points):
        events = _tensorboard(given, points)
        read_files += [str((given / e).relative_to(run_dir)) for e in events]
        if events and not any(key == "loss" for _, key in points):
            notes.append("the TensorBoard events hold no training loss either")
    if not states and not points:
        raise UserError(
            f"{folder}: no {STATE}, {LF_LOG} or TensorBoard events — this is not a training output folder: pass the "
            "folder your trainer wrote (its output_dir) or one of its checkpoint-N folders"
        )

    _set(raw, "training.output_dir", str(run_dir))
    _set(raw, "training.max_steps", -1)  # the run is described by its epochs; its steps are in `state`
    raw["run_name"] = name or run_dir.name
    config = configs.parse(raw, where=f"{given} read as a run")
    ckpts = [Checkpoint(c, checkpoints.step_of(c) or 0, _has_weights(c), "") for c in ckpt_dirs]
    if not any(c.weights for c in ckpts) and ckpts:
        notes.append("weights not present in any checkpoint: the curve is imported, the checkpoints cannot be used")
    state = {
        key: last.get(key)
        for key in ("global_step", "max_steps", "epoch", "num_train_epochs", "best_model_checkpoint", "best_metric")
        if last.get(key) is not None
    }
    if "global_step" not in state and points:
        state["global_step"] = max(step for step, _ in points)
    return Folder(
        run_dir=run_dir,
        given=given,
        name=config.name,
        config=config,
        origin=origin,
        unknown=[key for key in DESCRIBED if key not in origin],
        points=points,
        epochs=epochs,
        checkpoints=ckpts,
        state=state,
        read=list(dict.fromkeys(read_files)),
        notes=notes,
        resume=resume,
        name_given=name is not None,
    )


# ---- the store ----------------------------------------------------------------------------------


def register(found: Folder) -> tuple[store.Run, bool]:
    """Record the folder as a run (a new one, or the one imported from it before, updated in place): its
    metrics and checkpoints. Returns the run and whether it is new."""
    hashed = [
        Checkpoint(c.path, c.step, c.weights, _manifest_sha256(c.path, found.given)) for c in found.checkpoints
    ]  # hashed after every check passed: the long part comes last
    found.checkpoints[:] = hashed
    imported = {
        "from": str(found.given),
        "read": found.read,
        "unknown": found.unknown,
        "origin": found.origin,
        "state": found.state,
        "notes": found.notes,
        "weights_missing": [str(c.path) for c in hashed if not c.weights],
    }
    with store.session():
        earlier = store.runs.for_output_dir(found.run_dir)
        if earlier is not None and earlier.imported is None:
            raise UserError(
                f"{found.run_dir} is the folder of run '{earlier.name}' ({earlier.id}), trained by the studio — "
                f"it is in the store already: `umlstudio advise --run {earlier.name}`"
            )
        if not found.name_given:  # the folder's name, made unique: outputs, outputs-2, ...
            stem = found.name = earlier.name if earlier else found.name  # read again: it keeps its name
            n = 1
            while (taken := store.runs.named(found.name)) is not None and (earlier is None or taken.id != earlier.id):
                n += 1
                found.name = f"{stem}-{n}"
            found.config.run_name = found.name
        named = store.runs.named(found.name)
        if named is not None and (earlier is None or named.id != earlier.id):
            raise UserError(
                f"run name '{found.name}' is taken by run {named.id} ({named.output_dir}) — pass another with --name"
            )
        steps = found.state.get("global_step") or 0
        done = bool(found.state.get("max_steps")) and steps >= found.state["max_steps"]
        columns = dict(
            name=found.name,
            config=found.config.to_dict(),
            base_model=found.config.model.base,
            imported=imported,
            status="finished" if done else "stopped",
        )
        # a checkpoint read again unchanged keeps its row, and so its time: an evaluation made since stays current
        known: dict[str, tuple[int, str]] = {}
        if earlier is None:
            run_id = store.runs.create(
                output_dir=found.run_dir, phase_kind="fresh", config=columns["config"], name=found.name
            )
        else:
            run_id = earlier.id
            store.metrics.delete_after(run_id, -1)
            known = {c.path: (c.step, c.manifest_sha256) for c in store.checkpoints.of_runs([run_id])}
            if not known.keys() <= {str(c.path) for c in hashed}:  # one is gone: record what the folder holds now
                store.checkpoints.forget_run(run_id)
                known = {}
        store.runs.update(run_id, **columns, started_at=store.now(), finished_at=store.now())
        by_step: dict[int, dict[str, float]] = {}
        for (step, key), value in found.points.items():
            by_step.setdefault(step, {})[key] = value
        for step in sorted(by_step):
            store.metrics.log(run_id, step, found.epochs.get(step), by_step[step])
        for ckpt in hashed:
            if known.get(str(ckpt.path)) != (ckpt.step, ckpt.manifest_sha256):  # new, or its files changed
                store.checkpoints.record(run_id, ckpt.path, ckpt.step, ckpt.manifest_sha256)
        run = store.runs.get(run_id)
    assert run is not None
    return run, earlier is None


def resume_line(found: Folder) -> str | None:
    """The guide's config as written (`resume_from_checkpoint` + a total `num_train_epochs`) in one line: what a
    resume would do to the learning rate and the epochs, and the continue phase that does what it means."""
    if not found.resume:
        return None
    done = float(found.state.get("epoch") or found.config.training.num_train_epochs)
    total = float(found.resume["num_train_epochs"])
    rates = [v for (s, k), v in sorted(found.points.items()) if k == "learning_rate"]
    at = f"{rates[-1]:.2g}" if rates else "where the old schedule ended"
    epochs = (
        f"epochs count from the start, so num_train_epochs {total:g} after {done:g} done trains {total - done:g} more"
        if total > done
        else f"epochs count from the start, so num_train_epochs {total:g} after {done:g} done trains 0 steps"
    )
    return (
        f"resume_from_checkpoint {found.resume['resume_from_checkpoint']}: a resume restores the old optimizer and "
        f"scheduler, so the learning rate goes on from {at} (learning_rate {found.resume['learning_rate']:g} is "
        f"not applied) and {epochs} on the old, stretched schedule — `umlstudio import ... --as-phase` writes a "
        f"continue phase instead"
    )


def continue_phase(run: store.Run, found: Folder) -> configs.Config:
    """The continue phase from the imported run's latest checkpoint with weights: its own optimizer and
    schedule, `num_train_epochs` = the epochs still wanted (the --config's total minus the epochs done, or 2),
    the --config's learning rate, a new output_dir under the runs root."""
    usable = [c for c in found.checkpoints if c.weights]
    if not usable:
        raise UserError(
            f"{found.given}: no checkpoint with weights — nothing to continue from; import a folder whose checkpoints "
            "hold adapter_model.safetensors"
        )
    start = usable[-1].path
    if found.resume:
        wanted = Path(str(found.resume["resume_from_checkpoint"])).name
        start = next((c.path for c in usable if c.path.name == wanted), start)
    done = float(found.state.get("epoch") or 0.0)
    more = 2.0
    if found.resume and float(found.resume["num_train_epochs"]) > done:
        more = float(found.resume["num_train_epochs"]) - done
    nxt = found.config.to_dict()
    nxt["training"].update(
        output_dir=str(phases.next_phase_dir(paths.home() / run.name)),
        num_train_epochs=round(more, 4),
        max_steps=-1,
        resume_from_checkpoint=None,
    )
    if found.resume:
        nxt["training"]["learning_rate"] = found.resume["learning_rate"]
    nxt["phase"].update(continue_from=str(start), override_reason=None)
    nxt["run_name"] = Path(nxt["training"]["output_dir"]).name
    return configs.parse(nxt, where="the continue phase of an imported run")


def write_phase(config: configs.Config, run: store.Run, found: Folder) -> Path:
    """The continue phase as YAML under the runs root, headed by the commands that check and run it."""
    path = paths.home() / f"{config.name}.yaml"
    unknown = ", ".join(found.unknown) or "none"
    header = [
        f"# umlstudio checklist --config {path}",
        f"# umlstudio train --config {path}",
        "#",
        f"# A continue phase from run '{run.name}', imported from {found.given}: a fresh optimizer and schedule,",
        f"# {config.training.num_train_epochs:g} more epoch(s) at learning rate {config.training.learning_rate:g}.",
        f"# Not told by the folder (the studio's defaults, check them): {unknown}",
    ]
    path.write_text("\n".join(header) + "\n" + yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


def adopt(folder, name: str | None = None, config_path=None) -> Adopted:
    """Read a training folder (`read`), record it as a run (`register`) and diagnose its curves: the one call
    behind `umlstudio import` and the Runs page's "Open a training folder"."""
    found = read(folder, config_path, name)
    run, new = register(found)
    return Adopted(run, new, found, advise.diagnose(run), resume_line(found))
