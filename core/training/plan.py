"""The plan of one phase: everything decided from its config, once, before anything is written (no torch).

`plan(config)` resolves, refusing anything that would silently do something else:

- the start: fresh (a new run in a new output_dir), resume (`training.resume_from_checkpoint`: finish
  an interrupted run in its own folder from its latest complete checkpoint, with its own settings) or
  continue (`phase.continue_from`: a new phase from a checkpoint's adapter, with a fresh optimizer) —
  the rules themselves live in core/training/phases.py;
- the output folder: free, or held by a run that failed before its first checkpoint (set aside when
  the phase is recorded);
- the rows it trains on, mixed by type exactly as the worker trains them (`data.training_rows`), and
  how they are packed into micro-batches;
- the pre-continue checklist of a continue phase (core/advisor/checklist.py): every item passes, or
  `phase.override_reason` says why not;
- the time estimate (core/training/estimate.py), counted on those same mixed rows.

`train.prepare` records the plan (the run row, `<output_dir>/config.yaml` and `<output_dir>/plan.json`);
the worker reads it back with `load`.
"""

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from core import config as cfg
from core import data, paths, store
from core.advisor import checklist
from core.advisor.checklist import Item
from core.errors import UserError
from core.training import checkpoints, distributed, estimate, fit, models, phases

PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class Plan:
    """One phase as decided before it starts; `to_dict` is what `<output_dir>/plan.json` holds."""

    kind: str  # fresh | resume | continue
    config: cfg.Config  # as the worker trains it: output_dir absolute, the checkpoint it starts from resolved
    output_dir: Path
    micro_batch: str  # what one packed micro-batch (one trainer sample) holds, in words
    train_rows: int  # after the type mix
    eval_rows: int  # scored at each evaluation
    estimate: estimate.Estimate
    parent_checkpoint: Path | None = None  # continue: the checkpoint whose adapter it starts from
    parent_run: str | None = None  # continue: the run that wrote it (None when the store does not know it)
    changes: dict = field(default_factory=dict)  # continue: {key: [parent's, this phase's]}
    checklist: list[Item] | None = None  # continue: the pre-continue checklist as it stood
    resume_from: Path | None = None  # resume: the checkpoint it restarts from
    run_id: str | None = None  # resume: the run it finishes
    set_aside: store.Run | None = (
        None  # a run that failed in output_dir before its first checkpoint: `prepare` moves it
    )

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "config": self.config.to_dict(),
            "output_dir": str(self.output_dir),
            "micro_batch": self.micro_batch,
            "train_rows": self.train_rows,
            "eval_rows": self.eval_rows,
            "estimate": asdict(self.estimate),
            "parent_checkpoint": str(self.parent_checkpoint) if self.parent_checkpoint else None,
            "parent_run": self.parent_run,
            "changes": self.changes,
            "checklist": [asdict(item) for item in self.checklist] if self.checklist is not None else None,
            "resume_from": str(self.resume_from) if self.resume_from else None,
            "run_id": self.run_id,
        }


def save(planned: Plan, path: Path) -> None:
    path.write_text(json.dumps(planned.to_dict(), indent=1))


def load(path: Path) -> Plan:
    """A plan as `train.prepare` wrote it (`<output_dir>/plan.json`)."""
    if not path.is_file():
        raise UserError(f"{path}: no plan — start training with `umlstudio train`")
    raw = json.loads(path.read_text())
    items = raw["checklist"]
    return Plan(
        kind=raw["kind"],
        config=cfg.parse(raw["config"], where=str(path)),
        output_dir=Path(raw["output_dir"]),
        micro_batch=raw["micro_batch"],
        train_rows=raw["train_rows"],
        eval_rows=raw["eval_rows"],
        estimate=estimate.Estimate(**raw["estimate"]),
        parent_checkpoint=Path(raw["parent_checkpoint"]) if raw["parent_checkpoint"] else None,
        parent_run=raw["parent_run"],
        changes=raw["changes"],
        checklist=[Item(**item) for item in items] if items is not None else None,
        resume_from=Path(raw["resume_from"]) if raw["resume_from"] else None,
        run_id=raw["run_id"],
    )


def micro_batch(tokens_per_batch: int | None, rows_per_micro_batch: int) -> str:
    return f"up to {tokens_per_batch} tokens" if tokens_per_batch else f"{rows_per_micro_batch} rows"


def plan(config: cfg.Config, as_phase: bool = False, where: str = "config") -> Plan:
    """Everything one phase's config decides (see the module's docstring); UserError when it is refused.

    `as_phase`: a resume config that changes hyperparameters becomes a continue phase from that
    checkpoint, in a new output_dir (`umlstudio train --as-phase`). Nothing is written."""
    config = config.model_copy(deep=True)
    t = config.training
    distributed.check(t.processes)
    _check_base(config.model.base)
    if config.model.load_in_4bit:  # QLoRA: where this machine runs it, with which backend
        notice = models.check_4bit(config, distributed.gpu_count(), fit.shape(config.model.base))
        if notice:
            print(notice, flush=True)
    rows = data.training_rows(config.data.train_source, config.data.train_mix, t.seed, config.data.columns)
    validation = data.load_split(config.data.validation_source, "validation", config.data.columns)
    _check_lengths(rows, t.max_seq_length, models.base_dir(config.model.base))
    fit.check(
        config
    )  # LoRA against the model's shape, the estimated peak memory against this machine's: no model loaded

    def planned(kind: str, **found) -> Plan:
        return Plan(
            kind=kind,
            config=config,
            output_dir=Path(t.output_dir),
            micro_batch=micro_batch(t.tokens_per_batch, t.rows_per_micro_batch),
            train_rows=len(rows),
            eval_rows=min(config.data.eval_rows, len(validation)),
            estimate=estimate.estimate(config, rows=rows),
            **found,
        )

    output_dir = paths.resolve_output_dir(t.output_dir)
    if t.resume_from_checkpoint:
        ckpt = phases.resume_point(t.resume_from_checkpoint)
        changes = phases.resume_changes(_saved_config(ckpt), config.to_dict())
        if output_dir != ckpt.parent:
            changes["training.output_dir"] = [str(ckpt.parent), str(output_dir)]
        if not changes:
            run = _resumable_run(ckpt)
            t.output_dir, t.resume_from_checkpoint = str(ckpt.parent), str(ckpt)
            return planned("resume", resume_from=ckpt, run_id=run.id)
        if output_dir == ckpt.parent or store.runs.for_output_dir(output_dir):
            output_dir = phases.next_phase_dir(ckpt.parent)
        if not as_phase:
            raise UserError(phases.resume_refusal(where, ckpt, changes, str(output_dir)))
        done = phases.trainer_state(ckpt).get("epoch", 0.0)
        config.phase.continue_from, t.resume_from_checkpoint = str(ckpt), None
        print(
            f"--as-phase: a continue phase from {ckpt} into {output_dir}: {t.num_train_epochs:g} epoch(s) "
            f"counted from 0 at learning rate {t.learning_rate:g} with a fresh optimizer "
            f"(the parent had trained {done:g} epochs)",
            flush=True,
        )

    failed = phases.check_free(output_dir)
    t.output_dir = str(output_dir)
    if not config.phase.continue_from:
        return planned("fresh", set_aside=failed)
    parent_ckpt, _ = phases.continue_point(config.phase.continue_from, config.lora, config.model.base)
    config.phase.continue_from = str(parent_ckpt)
    parent_run, parent_config = checkpoints.lineage(parent_ckpt)  # an imported checkpoint's too
    changes = phases.diff(cfg.current_names(parent_config), config.to_dict(), ignore=phases.LINEAGE_NOISE)
    continued = planned(
        "continue", parent_checkpoint=parent_ckpt, parent_run=parent_run, changes=changes, set_aside=failed
    )
    # the pre-continue checklist on what was resolved here: every item passes, or phase.override_reason says why not
    start = checklist.continuing(parent_ckpt, output_dir, failed)
    return replace(continued, checklist=checklist.gate(config, start, continued.estimate))


def _check_base(base: str) -> None:
    """The base model can be found (UserError naming the install step when it cannot)."""
    if base == models.EMBEDDED:
        if not (models.embedded_dir() / "config.json").is_file():
            models.gguf_path()
    else:
        models.resolve_base(base)


def _check_lengths(rows: list[data.Row], max_seq_length: int, folder: Path) -> None:
    """Some row's answer fits after its prompt, counted with the base model's tokenizer when it is on disk."""
    if not (folder / "tokenizer.json").is_file():
        return
    long = data.long_rows(rows, max_seq_length, folder, keep=False)  # a refusal writes nothing
    if long["prompt_only"] == long["rows"]:
        raise UserError(
            f"training.max_seq_length {max_seq_length}: the prompt of every one of the {long['rows']} "
            f"training rows fills it ({long['how']}) — raise training.max_seq_length or use shorter rows"
        )


def _saved_config(ckpt: Path) -> dict:
    saved = checkpoints.info(ckpt).get("config")
    if not saved:
        raise UserError(
            f"training.resume_from_checkpoint: {ckpt} has no {checkpoints.INFO} — it was not written by "
            f"this trainer; start a phase from it with phase.continue_from"
        )
    return saved


def _resumable_run(ckpt: Path) -> store.Run:
    """The run a resume finishes: the one that wrote `ckpt`, not training now, not finished."""
    run = store.runs.for_output_dir(ckpt.parent)
    if not run or run.id != checkpoints.info(ckpt).get("run_id"):
        raise UserError(
            f"training.resume_from_checkpoint: {ckpt} belongs to no run of this store — start a phase "
            f"from it with phase.continue_from"
        )
    if phases.worker_alive(run):
        raise UserError(
            f"run '{run.name}' ({run.id}) is still training (pid {run.pid}) — stop it first: umlstudio "
            f"runs, or kill -TERM {run.pid}"
        )
    state = phases.trainer_state(ckpt)
    if state.get("max_steps") and state.get("global_step", 0) >= state["max_steps"]:
        raise UserError(
            f"run '{run.name}' finished at {ckpt.name}: nothing to resume — to train more start a phase "
            f"with phase.continue_from: {ckpt}"
        )
    return run
