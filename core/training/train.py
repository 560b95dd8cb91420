"""Train one LoRA phase: `umlstudio train --config FILE [--set key=value ...] [--as-phase]`.

One recipe, read top to bottom:

1. Plan (the parent process, no torch): `plan.plan` (core/training/plan.py) validates the config and
   decides, once, which of three operations it asks for, refusing anything that would silently do
   something else, with the rows it trains, its checklist and its time estimate:
   - fresh: a new run in a new output_dir;
   - resume (`training.resume_from_checkpoint`): finish an interrupted run exactly — same run row,
     same output_dir, optimizer / scheduler / RNG / data position restored. Only allowed with the
     checkpoint's own hyperparameters: HF would restore the old optimizer and scheduler over a new
     learning rate, and count epochs as a total, so a changed config would not do what it says;
   - continue (`phase.continue_from`): a new phase in a new output_dir whose adapter starts from a
     checkpoint's weights, with a fresh optimizer and scheduler at this phase's own learning rate
     for this phase's own epochs. Lineage (parent run, checkpoint, what changed) goes in the run row.
   `prepare` records it: the run row, the resolved `<output_dir>/config.yaml` and the plan,
   `<output_dir>/plan.json`: the only contract with the worker. The rules themselves (resume point,
   continue point, free folders) live in core/training/phases.py.
2. Worker (`python -m core.training.train --worker <output_dir>/plan.json`): setup (backend, model,
   rows, trainer) → train → cleanup (final checkpoint, status). SIGINT / SIGTERM stop it cleanly
   at the next optimizer step with a checkpoint.

The CLI runs the worker attached and streams its output; the studio starts the same worker as a
background job of kind "train" (`core.jobs.train`, `core.training.runs.start_worker`).
"""

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from core import config as cfg
from core import paths, quiet, store, supervisor
from core.errors import UserError
from core.training import checkpoints, distributed, fit, phases, plan

if TYPE_CHECKING:  # core.data is imported where rows are read
    from core.data import Row

CONFIG_FILE = "config.yaml"
LOG_FILE = "train.log"
TENSORBOARD_DIR = "tensorboard"
STOPPED_EXIT = 130
# cumulative seconds per run, logged as metrics: in optimizer steps, in evaluations, in checkpoint saves
TIME_METRICS = ("time/train_s", "time/eval_s", "time/checkpoint_s")


# ---- 1. plan -----------------------------------------------------------------------------------


def prepare(config: cfg.Config, config_path=None, as_phase: bool = False) -> str:
    """Plan one phase (core/training/plan.py) and record it: the run row (a resume reopens its own), and
    `<output_dir>/config.yaml` and `<output_dir>/plan.json` for the worker; return the run id.

    Nothing is written when the config is refused (UserError)."""
    missing = [name for name in config.training.report_to if not importlib.util.find_spec(cfg.TRACKERS[name][0])]
    if missing:
        raise UserError(
            f"{config_path or 'config'}: training.report_to: {missing[0]} is not installed here — "
            f"pip install {cfg.TRACKERS[missing[0]][1]}, or leave it out of report_to"
        )
    planned = plan.plan(config, as_phase=as_phase, where=str(config_path or "config"))
    config, output_dir = planned.config, planned.output_dir
    if planned.kind == "resume":  # the same run row and folder, pointed at its latest complete checkpoint
        cfg.save(config, output_dir / CONFIG_FILE)
        plan.save(planned, output_dir / plan.PLAN_FILE)
        store.runs.update(
            planned.run_id, status="created", pid=None, job=None, error=None, finished_at=None, config=config.to_dict()
        )
        return planned.run_id
    if planned.set_aside:
        failed = planned.set_aside
        print(
            f"{output_dir}: run '{failed.name}' ({failed.id}) failed there before its first checkpoint; "
            f"its files move to {phases.set_aside(failed)}",
            flush=True,
        )
    output_dir.mkdir(parents=True)
    cfg.save(config, output_dir / CONFIG_FILE)
    plan.save(planned, output_dir / plan.PLAN_FILE)
    try:
        return store.runs.create(
            name=config.name,
            output_dir=output_dir,
            phase_kind=planned.kind,
            config=config.to_dict(),
            config_path=str(config_path) if config_path else None,
            parent_run=planned.parent_run,
            parent_checkpoint=str(planned.parent_checkpoint) if planned.parent_checkpoint else None,
            changes=planned.changes,
            backend=config.training.backend,
            base_model=config.model.base,
            override_reason=config.phase.override_reason,
            checklist=[asdict(item) for item in planned.checklist] if planned.checklist is not None else None,
        )
    except BaseException:  # no run row (e.g. the store's disk is full): the folder made for it goes too
        shutil.rmtree(output_dir, ignore_errors=True)
        raise


def worker_argv(run_id: str) -> list[str]:
    run = store.runs.get(run_id)
    return [sys.executable, "-m", "core.training.train", "--worker", str(Path(run.output_dir) / plan.PLAN_FILE)]


def run_attached(run_id: str) -> int:
    """Run the worker in the foreground, its output streamed here and into <output_dir>/train.log."""
    run = store.runs.get(run_id)
    kind = "resuming" if run.config["training"]["resume_from_checkpoint"] else run.phase_kind
    print(
        f"{run.name}: {kind} run {run_id} in {run.output_dir} (log: {LOG_FILE}; Ctrl-C stops it with a checkpoint)",
        flush=True,
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(Path(run.output_dir) / LOG_FILE, "ab") as log:
        worker = subprocess.Popen(
            worker_argv(run_id),
            cwd=paths.ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

        def forward(signum, frame):  # Ctrl-C or a TERM to this process: the worker stops with a checkpoint
            worker.send_signal(signal.SIGTERM)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while chunk := os.read(worker.stdout.fileno(), 4096):
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                log.write(chunk)
                log.flush()
            code = worker.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    if code < 0:  # killed by a signal: it could not say so itself
        print(f"error: {killed_message(run, -code)}", file=sys.stderr, flush=True)
        return 128 - code
    return code


def killed_message(run: store.Run, signum: int) -> str:
    """What happened to a worker killed by a signal, and how to go on from there."""
    name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else f"signal {signum}"
    why = " (the system may have run out of memory)" if signum == signal.SIGKILL else ""
    saved = [c for c in checkpoints.list_checkpoints(run.output_dir) if phases.is_complete(c)]
    if saved:
        return (
            f"the training worker was killed by {name}{why}; its latest checkpoint is {saved[-1].name} — resume "
            f"with `umlstudio train --config {Path(run.output_dir) / CONFIG_FILE} --set "
            f"training.resume_from_checkpoint={run.output_dir}`"
        )
    return (
        f"the training worker was killed by {name}{why} before its first checkpoint — start the run again "
        f"with the same config (its folder {run.output_dir} can be reused)"
    )


# ---- 2. worker: setup → train → cleanup ------------------------------------------------------


def encode_rows(tokenizer, rows: "list[Row]", max_len: int, what: str = "rows") -> list[dict]:
    """Chat-template each row (user = requirement, assistant = PlantUML); labels only on the answer.
    Rows longer than max_len are cut (their answer's end is not learnt); rows whose prompt alone fills
    it are dropped. Both are counted and said, never silent."""
    from core.data.prompts import chat_prompt, request

    encoded, cut, dropped = [], 0, 0
    for row in rows:
        message = request(row["prompt"], row.get("diagram_type"))
        prompt = chat_prompt(tokenizer, message)
        full = tokenizer.apply_chat_template(
            [{"role": "user", "content": message}, {"role": "assistant", "content": row["plantuml"]}],
            tokenize=False,
        )
        if not full.startswith(prompt):
            raise UserError(
                "model.base: its chat template does not put the answer after the generation prompt — "
                "use a model whose template does"
            )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
        if len(prompt_ids) >= max_len:
            dropped += 1  # no answer token would fit: nothing to learn from this row
            continue
        cut += len(prompt_ids) + len(answer_ids) > max_len
        ids = (prompt_ids + answer_ids)[:max_len]
        labels = ([-100] * len(prompt_ids) + answer_ids)[:max_len]
        encoded.append({"input_ids": ids, "labels": labels})
    if cut or dropped:
        print(
            f"{what}: {cut} of {len(rows)} cut to training.max_seq_length {max_len} (the end of their answer is not "
            f"learnt), {dropped} dropped (the prompt alone fills it)",
            flush=True,
        )
    if rows and not encoded:
        raise UserError(
            f"training.max_seq_length {max_len}: every one of the {len(rows)} {what} has a prompt that fills it "
            f"— raise training.max_seq_length or use shorter rows"
        )
    return encoded


def pack(rows: list[dict], tokens_per_batch: int | None, rows_per_batch: int, seed: int | None = None) -> list[dict]:
    """Micro-batches of encoded rows, end to end: each filled with rows up to `tokens_per_batch` tokens
    (or `rows_per_batch` rows when that is None), the rows in a seeded random order (their own order
    when `seed` is None). Made once per run, so a resume sees the same batches; the trainer shuffles the
    batches each epoch. One batch is one item: {"input_ids": [ids of row 1, ...], "labels": [...]}."""
    import random

    order = random.Random(seed).sample(rows, len(rows)) if seed is not None else rows
    batches: list[list[dict]] = []
    current: list[dict] = []
    size = 0
    for row in order:
        n = len(row["input_ids"])
        full = size + n > tokens_per_batch if tokens_per_batch else len(current) == rows_per_batch
        if current and full:
            batches.append(current)
            current, size = [], 0
        current.append(row)
        size += n
    if current:
        batches.append(current)
    return [{"input_ids": [r["input_ids"] for r in b], "labels": [r["labels"] for r in b]} for b in batches]


class Flatten:
    """The collator: a micro-batch's rows as one sequence (transformers' DataCollatorWithFlattening):
    position_ids restart at 0 for each row, so attention stays inside it (backends.PACKED_ATTENTION),
    and no pad is computed; the labels keep only answer tokens.

    `answer_logits_only` (the peft backend's transformers Trainer): the output layer (49k wide for
    SmolLM2, a fifth of the model's FLOPs) and the cross-entropy run only at the positions whose next
    token is an answer token (`logits_to_keep` with those positions, `shift_labels` their targets), not
    at the prompt's (about half of each row). The loss and the gradients are the same; a step is faster
    (BENCHMARKS.md). TRL's SFTTrainer (the unsloth backend) does the same with its own fused LM head."""

    def __init__(self, answer_logits_only: bool = False):
        from transformers import DataCollatorWithFlattening

        self.flatten = DataCollatorWithFlattening(return_position_ids=True)
        self.answer_logits_only = answer_logits_only

    def __call__(self, batches: list[dict]) -> dict:
        import torch

        batch = self.flatten(
            [
                {"input_ids": ids, "labels": labels}
                for micro in batches
                for ids, labels in zip(micro["input_ids"], micro["labels"])
            ]
        )
        if not self.answer_logits_only:
            return batch
        following = torch.nn.functional.pad(batch["labels"][:, 1:], (0, 1), value=-100)  # one sequence: (1, tokens)
        keep = (following[0] != -100).nonzero().flatten()
        return {**batch, "logits_to_keep": keep, "shift_labels": following[:, keep]}


def make_callbacks(run_id: str, output_dir: Path, config: cfg.Config, backend_name: str, stop: list, resume_step: int):
    """The worker's view of training, one callback each: the checkpoint manifest, the stop, the metrics
    sink and the progress bar, and early stopping when training.early_stopping_patience asks for it.
    Under N processes rank 0 alone writes the store, TensorBoard and the checkpoint files."""
    import importlib.metadata

    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm
    from transformers import EarlyStoppingCallback, TrainerCallback

    main = distributed.is_main()

    def before(name: str) -> float:  # a resume goes on from the value logged at its checkpoint
        prior = store.metrics.value_at(run_id, name, resume_step)
        return prior if prior is not None else 0.0

    elapsed0, started = before("elapsed_s"), time.perf_counter()

    def elapsed() -> float:  # wall-clock seconds of the run, its earlier attempts included
        return elapsed0 + time.perf_counter() - started

    class Manifest(TrainerCallback):
        """umlstudio.json (run, step, the exact config, library versions) and the manifest into each
        checkpoint, recorded in the store: the manifest, written last, marks the checkpoint complete."""

        versions = {
            p: importlib.metadata.version(p)
            for p in ("torch", "transformers", "peft", "trl", "unsloth")
            if importlib.util.find_spec(p.replace("-", "_"))
        }

        def on_save(self, args, state, control, **kwargs):
            distributed.barrier()  # every rank's files are saved before the manifest marks the checkpoint complete
            if not main:
                return
            ckpt = output_dir / f"checkpoint-{state.global_step}"
            (ckpt / checkpoints.INFO).write_text(
                json.dumps(
                    {
                        "run_id": run_id,
                        "step": state.global_step,
                        "epoch": state.epoch,
                        "backend": backend_name,
                        "config": config.to_dict(),
                        "versions": self.versions,
                    },
                    indent=1,
                )
            )
            store.checkpoints.record(run_id, ckpt, state.global_step, checkpoints.write_manifest(ckpt))

    class Stop(TrainerCallback):
        """Training stops with a checkpoint after the step in which SIGINT / SIGTERM came (`stop`) or
        training.time_budget_minutes ran out; the ranks stop together; the last steps' loss is logged."""

        budget_s = config.training.time_budget_minutes * 60 if config.training.time_budget_minutes else None

        def on_step_end(self, args, state, control, **kwargs):
            over = self.budget_s is not None and elapsed() >= self.budget_s
            if distributed.any_rank(bool(stop) or over) and not (stop or over):
                stop.append("another rank")  # ranks stop together, after the same step
            if over and not control.should_training_stop:
                tqdm.write(
                    f"time budget of {self.budget_s / 60:g} min reached at step {state.global_step}: "
                    "stopping with a checkpoint"
                )
                control.should_training_stop = control.should_save = True
            if stop or over or state.global_step >= state.max_steps:
                control.should_log = True  # the last steps' loss is logged, not lost
            if stop:
                control.should_save = True
                control.should_training_stop = True

    class Replan(TrainerCallback):
        """training.time_budget_minutes trained to its end: `budget_steps` priced a step from four timed
        micro-batches before training; after each step the phase is priced again from what this attempt
        measured: Metrics' time in steps since its first one (which still warms kernels and caches up), and
        in evaluations and saves, over how many of each. When that moves its length by more than 2%,
        max_steps and the learning-rate schedule take the new length (`steps_for_budget`,
        `stretch_schedule`): the phase fills its budget and the schedule still ends at its last step. A
        resume keeps the length its checkpoint's trainer_state.json recorded and goes on from there."""

        budget_s = (config.training.time_budget_minutes or 0.0) * 60

        def __init__(self, metrics, progress):
            self.metrics, self.progress = metrics, progress
            self.cap = self.warmup = self.first = 0
            self.counted = {"eval": 0, "save": 0}
            self.begun: dict[str, float] = {}  # Metrics' times as this attempt began
            self.stepped: float | None = None  # its time in steps when its first step ended

        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            batches, accumulate = len(train_dataloader), args.gradient_accumulation_steps
            per_epoch = max(batches // accumulate + int(batches % accumulate > 0), 1)
            self.cap = -(-state.max_steps // per_epoch) * per_epoch  # what the planned epochs hold
            self.warmup = args.get_warmup_steps(state.max_steps)
            self.begun = dict(self.metrics.time)

        def on_evaluate(self, args, state, control, **kwargs):
            self.counted["eval"] += 1

        def on_save(self, args, state, control, **kwargs):
            self.counted["save"] += 1

        def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
            if self.stepped is None:
                self.first, self.stepped = state.global_step, self.metrics.time["time/train_s"]
                return
            done, now = state.global_step - self.first, elapsed()
            # a stop request, or Stop ends the phase on its budget; every rank asks the others, so all agree
            if done < 2 or distributed.any_rank(bool(stop) or now >= self.budget_s):
                return
            spent = {name: self.metrics.time[name] - self.begun[name] for name in TIME_METRICS}
            evals, saves = self.counted["eval"], self.counted["save"]
            costs = {
                "step": ((self.metrics.time["time/train_s"] - self.stepped) / done, 1),
                "eval": (spent["time/eval_s"] / evals if evals else 0.0, args.eval_steps),
                "save": (spent["time/checkpoint_s"] / saves if saves else 0.0, args.save_steps),
            }
            steps = distributed.smallest(steps_for_budget(state.global_step, costs, self.budget_s - now, self.cap))
            if abs(steps - state.max_steps) <= max(1, state.max_steps // 50):
                return
            tqdm.write(
                f"time budget: {now / 60:.1f} of {self.budget_s / 60:g} min spent at step {state.global_step}, a step "
                f"takes {costs['step'][0]:.1f} s and an evaluation {costs['eval'][0]:.1f} s here: "
                f"max_steps {state.max_steps} -> {steps}, the learning-rate schedule with it"
            )
            state.max_steps = steps
            control.should_training_stop = False  # set by the trainer when the old length was reached here
            stretch_schedule(lr_scheduler, config.training.lr_scheduler_type, self.warmup, steps)
            if self.progress.bar is not None:
                self.progress.bar.total = steps
                self.progress.bar.refresh()

    class EarlyStop(EarlyStoppingCallback):
        """transformers' early stopping on eval_loss (training.early_stopping_patience evaluations in a row
        without a loss lower than the best by more than training.early_stopping_threshold), plus a checkpoint
        at each new best evaluation, so the best is kept whatever save_steps says, and the stop recorded:
        an `early_stopped` metric at the last step, valued the best evaluation's step (what the advisor reads)."""

        def on_evaluate(self, args, state, control, metrics, **kwargs):
            value, best = metrics.get("eval_loss"), state.best_metric  # best: before this evaluation
            super().on_evaluate(args, state, control, metrics, **kwargs)
            better = value is not None and (best is None or value < best)
            if better and state.global_step > 0:  # (step 0 is the base model: nothing to save)
                control.should_save = True
            if control.should_training_stop and self.early_stopping_patience_counter >= self.early_stopping_patience:
                # this evaluation may still be the best (better, by less than the threshold): the trainer marks
                # it after the callbacks
                best_step, best = (state.global_step, value) if better else (state.best_global_step or 0, best)
                control.should_log = True  # the steps since the last log are logged, not lost
                if main:
                    store.metrics.log(run_id, state.global_step, state.epoch, {"early_stopped": float(best_step)})
                    tqdm.write(
                        f"early stopping at step {state.global_step}: {self.early_stopping_patience} evaluations "
                        f"without a validation loss below {best:.4f} by more than {self.early_stopping_threshold:g} "
                        f"(the best: step {best_step}, its checkpoint kept)",
                        file=sys.stderr,
                    )

    class Metrics(TrainerCallback):
        """The metrics sink: the trainer's logs to the store and TensorBoard, with tokens/s over training
        time only (evaluations and saves excluded), elapsed_s, and where the time goes, cumulative over
        the run (a resume goes on from its checkpoint's values): time/train_s in optimizer steps,
        time/eval_s in evaluations, time/checkpoint_s in saves (it follows Manifest)."""

        kept = ("loss", "eval_loss", "learning_rate", "grad_norm")

        def __init__(self):
            # a resumed run's purge_step drops the killed attempt's events after the checkpoint
            self.tb = (
                SummaryWriter(str(output_dir / TENSORBOARD_DIR), purge_step=resume_step + 1 if resume_step else None)
                if main and "tensorboard" in config.training.report_to
                else None
            )
            self.time = {name: before(name) for name in TIME_METRICS}
            self.mark = time.perf_counter()  # the end of the last stretch of time counted
            self.window = (0, 0.0)  # tokens seen, training seconds at the last log
            self.last: dict = {}  # the values logged last, for the progress bar

        def count(self, name: str) -> None:
            now = time.perf_counter()
            self.time[name] += now - self.mark
            self.mark = now

        def on_train_begin(self, args, state, control, **kwargs):
            self.mark = time.perf_counter()
            self.window = (state.num_input_tokens_seen, self.time["time/train_s"])

        def on_step_begin(self, args, state, control, **kwargs):
            self.mark = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.count("time/train_s")

        def on_log(self, args, state, control, logs=None, **kwargs):
            values = {k: float(v) for k, v in (logs or {}).items() if k in self.kept}
            if "eval_loss" in values:  # logged as the evaluation ends
                self.count("time/eval_s")
            if "loss" in values:
                values.update(self.time)
                tokens, seconds = state.num_input_tokens_seen, self.time["time/train_s"]
                if seconds > self.window[1]:
                    values["tokens_per_s"] = (tokens - self.window[0]) / (seconds - self.window[1])
                self.window = (tokens, seconds)
                values["elapsed_s"] = elapsed()
            self.last = values
            if values and main:
                self.record(state, values)

        def on_save(self, args, state, control, **kwargs):
            self.count("time/checkpoint_s")

        def record(self, state, values: dict) -> None:
            store.metrics.log(run_id, state.global_step, state.epoch, values)
            if self.tb is None:
                return
            for name, value in values.items():
                tag = name if name.startswith("time/") else f"{'eval' if name == 'eval_loss' else 'train'}/{name}"
                self.tb.add_scalar(tag, value, state.global_step)
            self.tb.flush()

        def on_train_end(self, args, state, control, **kwargs):
            if not main:
                return
            self.record(state, self.time)  # the totals, the last save included
            share = self.time["time/train_s"] / max(sum(self.time.values()), 1e-9)
            print(
                f"time: {self.time['time/train_s']:.0f} s in training steps ({share:.0%}), "
                f"{self.time['time/eval_s']:.0f} s in "
                f"evaluations, {self.time['time/checkpoint_s']:.0f} s saving checkpoints",
                flush=True,
            )
            if self.tb is not None:
                self.tb.close()

    class Progress(TrainerCallback):
        """The progress bar on stderr: steps, the last loss and tokens/s; and a line for each logged loss
        and each evaluation's loss, so `tail -f <output_dir>/train.log | grep loss` follows the run."""

        def __init__(self, metrics: Metrics):
            self.metrics, self.bar = metrics, None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = tqdm(
                total=state.max_steps,
                initial=state.global_step,
                desc=config.name,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
            )

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            values = self.metrics.last
            if self.bar is None:
                return
            if "loss" in values:
                self.bar.set_postfix(
                    loss=f"{values['loss']:.3f}", tok_s=f"{values.get('tokens_per_s', 0):.0f}", refresh=False
                )
                if main:
                    rate = f", learning_rate {values['learning_rate']:.3g}" if "learning_rate" in values else ""
                    self.bar.write(f"step {state.global_step}: loss {values['loss']:.4f}{rate}")
            if "eval_loss" in values and main:
                self.bar.write(f"step {state.global_step}: eval_loss {values['eval_loss']:.4f}")

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    metrics = Metrics()
    early = config.training.early_stopping_patience
    stopping = [EarlyStop(early, config.training.early_stopping_threshold)] if early else []
    progress = Progress(metrics)
    budgeted = bool(config.training.time_budget_minutes) and config.training.max_steps == -1
    return [Manifest(), Stop(), *stopping, metrics, progress, *([Replan(metrics, progress)] if budgeted else [])]


def batch_tokens(batches: list[dict]) -> int:
    return sum(len(ids) for batch in batches for ids in batch["input_ids"])


def budget_steps(model, collator, batches: list[dict], eval_batches: list[dict], config: cfg.Config, dtype) -> int:
    """Optimizer steps that fit training.time_budget_minutes on this machine: forward and backward of
    three real micro-batches timed (after one to warm up), the median seconds per token priced for the
    phase's average micro-batch, evaluations priced at the median forward seconds per token, 5% kept
    for the optimizer, logging and checkpoints. The median: the first timed batch can still run ~30%
    slow while allocations settle (BENCHMARKS.md), and a mean of two planned a 20-minute phase that
    ended after 14."""
    import torch

    t = config.training
    device = next(model.parameters()).device
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    forward_per_token, total_per_token = [], []
    for i in range(4):
        batch = collator([batches[i % len(batches)]])
        batch = {k: v.to(device) for k, v in batch.items()}
        started = time.perf_counter()
        with autocast:
            loss = model(**batch).loss
        forwarded = time.perf_counter()
        loss.backward()
        if i:  # the first one warms up kernels and caches
            tokens = batch["input_ids"].numel()
            forward_per_token.append((forwarded - started) / tokens)
            total_per_token.append((time.perf_counter() - started) / tokens)
    model.zero_grad(set_to_none=True)
    # priced per token: the timed batches may be shorter or longer than the phase's average one
    step_s = (
        statistics.median(total_per_token) * batch_tokens(batches) / len(batches) * t.gradient_accumulation_steps * 1.05
    )
    eval_s = statistics.median(forward_per_token) * batch_tokens(eval_batches)
    budget_s = t.time_budget_minutes * 60
    # budget = steps * step_s + (steps / eval_steps + 1) * eval_s  (an evaluation at step 0, then every eval_steps)
    steps = distributed.smallest(int((budget_s - eval_s) / (step_s + eval_s / t.eval_steps)))  # ranks: the slowest's
    if steps < 1:
        raise UserError(
            f"training.time_budget_minutes {t.time_budget_minutes:g}: one step takes {step_s:.1f} s and an "
            f"evaluation {eval_s:.1f} s here — give a larger budget or fewer data.eval_rows"
        )
    print(
        f"time budget {t.time_budget_minutes:g} min: a step takes {step_s:.2f} s and an evaluation {eval_s:.1f} s "
        f"here (measured), so this phase trains {steps} steps",
        flush=True,
    )
    return steps


def steps_for_budget(global_step: int, costs: dict[str, tuple[float, int]], left_s: float, cap: int) -> int:
    """A time-budgeted phase's length, priced again while it trains: the steps done plus those the time
    left holds, at least one more, at most `cap` (the steps its planned epochs hold). `costs`: the
    measured seconds of a step, an evaluation and a checkpoint save, each with how many steps apart it
    comes ({"step": (s, 1), "eval": (s, eval_steps), "save": (s, save_steps)}); the last save is kept
    inside the budget."""
    per_step = sum(seconds / every for seconds, every in costs.values())
    more = int(max(left_s - costs["save"][0], 0.0) / per_step)
    return max(global_step + 1, min(cap, global_step + more))


def stretch_schedule(scheduler, name: str, warmup_steps: int, total_steps: int) -> None:
    """Give a running learning-rate schedule a new length: its factors rebuilt by transformers for
    `total_steps` (same kind, same warmup), each parameter group's rate set for the step it is at.
    LambdaLR keeps its step count, so the rate goes on from where it is and reaches the schedule's end
    at the new last step."""
    import torch
    from transformers import get_scheduler

    scheduler = getattr(scheduler, "scheduler", scheduler)  # accelerate's wrapper holds the torch one
    probe = get_scheduler(
        name,
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
        num_warmup_steps=warmup_steps,
        num_training_steps=total_steps,
    )
    groups = scheduler.optimizer.param_groups
    scheduler.lr_lambdas = [probe.lr_lambdas[0]] * len(groups)
    for group, base, factor in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in groups]


def train(planned: plan.Plan, run_id: str, stop: list) -> str:
    """The recipe. Returns the final status: finished or stopped."""
    config, t = planned.config, planned.config.training
    memory = fit.estimate(config)  # what core/training/fit.py checked before the run was recorded, said in the log
    if memory is not None and distributed.is_main():
        print(memory.line(fit.available_gb(memory.device)), flush=True)
    # -- setup: the backend first (unsloth must be imported before transformers) --------------
    from core.training import backends

    choice, notice = distributed.backend_for(t.backend, t.processes)
    if notice:
        print(notice, flush=True)
    with quiet.stderr_to(planned.output_dir / LOG_FILE):  # the stack's import-time warnings: to the log only
        backend = backends.select(choice)  # unsloth, when chosen, before transformers
        quiet.import_libraries()
    if backend.notice:
        print(backend.notice, flush=True)
    from datasets import Dataset
    from transformers import PrinterCallback, set_seed

    from core import data

    output_dir, resume = planned.output_dir, planned.resume_from
    resume_step = checkpoints.step_of(resume) if resume else 0
    if distributed.is_main():
        store.runs.update(run_id, backend=backend.name)
    set_seed(t.seed)
    model, tokenizer = backend.load(config)
    if planned.parent_checkpoint:  # a continue phase: the adapter starts from the parent's weights
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        loaded = set_peft_model_state_dict(model, load_file(planned.parent_checkpoint / checkpoints.ADAPTER_FILE))
        if loaded.unexpected_keys:
            raise UserError(
                f"phase.continue_from: {planned.parent_checkpoint} holds weights this adapter lacks "
                f"({loaded.unexpected_keys[0]}, ...)"
            )

    # the rows the plan checked and estimated, mixed by type the same way; the same validation rows at every evaluation
    max_len, seed = t.max_seq_length, t.seed
    train_rows = encode_rows(
        tokenizer,
        data.training_rows(config.data.train_source, config.data.train_mix, seed, config.data.columns),
        max_len,
        "training rows",
    )
    eval_rows = encode_rows(
        tokenizer,
        data.validation_rows(
            config.data.validation_source, config.data.type_weights, seed, config.data.eval_rows, config.data.columns
        ),
        max_len,
        "validation rows",
    )
    # Packed micro-batches: rows end to end, up to training.tokens_per_batch tokens (or
    # training.rows_per_micro_batch rows); a trainer "sample" is one whole micro-batch, so steps, epochs
    # and the ETA count packed batches. Evaluation packs its fixed rows the same way, in their order.
    batches = pack(train_rows, t.tokens_per_batch, t.rows_per_micro_batch, seed)
    eval_batches = pack(eval_rows, t.tokens_per_batch, t.rows_per_micro_batch)
    print(
        f"{backend.name} backend, {backend.dtype}, {len(train_rows)} training rows, {len(eval_rows)} eval rows, "
        f"{batch_tokens(batches)} tokens per epoch in {len(batches)} packed micro-batches of {planned.micro_batch} "
        f"(mean {batch_tokens(batches) / len(batches):.0f} tokens), {len(eval_batches)} for evaluation",
        flush=True,
    )
    collator = Flatten(answer_logits_only=backend.answer_logits_only)
    max_steps = t.max_steps
    if t.time_budget_minutes and max_steps == -1:  # a resume keeps the steps its first attempt measured
        max_steps = (
            phases.trainer_state(resume)["max_steps"]
            if resume
            else budget_steps(model, collator, batches, eval_batches, config, backend.dtype)
        )
    # the trackers' local stores live under the runs root, unless their own variables say otherwise
    if "mlflow" in t.report_to:  # a folder (`mlflow ui --backend-store-uri <runs root>/mlruns`): no database to set up
        os.environ.setdefault("MLFLOW_TRACKING_URI", (paths.home() / "mlruns").as_uri())
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for the folder store by name
    if "wandb" in t.report_to:
        os.environ.setdefault("WANDB_DIR", str(output_dir))
    args = dict(
        output_dir=str(output_dir),
        run_name=config.name,  # what the trackers call the run
        num_train_epochs=t.num_train_epochs,
        max_steps=max_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of the total steps
        weight_decay=t.weight_decay,
        per_device_train_batch_size=1,
        per_device_eval_batch_size=1,  # one packed batch
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        optim="adamw_torch_fused",
        seed=t.seed,  # fused AdamW has CPU kernels; foreach is slow over LoRA's many tensors
        logging_steps=t.logging_steps,
        eval_strategy="steps",
        eval_steps=t.eval_steps,
        eval_on_start=resume is None,  # eval_loss at step 0: the floor the phase starts from
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=None,  # never delete a checkpoint
        include_num_input_tokens_seen=True,  # padding-free batches: every token counted is a real one
        prediction_loss_only=True,  # evaluation keeps eval_loss, not 49k-wide logits per token
        remove_unused_columns=False,
        # the worker writes TensorBoard itself (with tokens/s and the time split); the other trackers are transformers'
        report_to=[name for name in t.report_to if name != "tensorboard"] or "none",
        # the best checkpoint by eval_loss (trainer_state.json's best_model_checkpoint); early stopping reads it
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        ddp_find_unused_parameters=False,  # N processes: every LoRA weight gets a gradient at each step
    )
    callbacks = make_callbacks(run_id, output_dir, config, backend.name, stop, resume_step)
    trainer = backend.trainer(
        model, tokenizer, args, Dataset.from_list(batches), Dataset.from_list(eval_batches), collator, callbacks
    )
    trainer.remove_callback(PrinterCallback)  # the progress bar and the store report instead

    # -- train ----------------------------------------------------------------------------------
    if resume and distributed.is_main():
        # what the interrupted attempt logged or half-saved after its last complete checkpoint goes
        store.metrics.delete_after(run_id, resume_step)
        for ckpt in checkpoints.list_checkpoints(output_dir):
            if checkpoints.step_of(ckpt) > resume_step and not phases.is_complete(ckpt):
                shutil.rmtree(ckpt)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    # -- cleanup: the last step is always saved (HF saves at max_steps, the stop callback on a stop)
    return "stopped" if stop else "finished"


def worker(plan_path: Path) -> int:
    planned = plan.load(plan_path)
    config = planned.config
    run = store.runs.for_output_dir(planned.output_dir)
    if run is None:
        raise UserError(f"{plan_path}: no run row for {planned.output_dir} — start training with `umlstudio train`")
    if config.training.processes > 1 and not distributed.launched():
        return launch(run, plan_path, config.training.processes)
    distributed.setup_rank(planned.output_dir)
    main = distributed.is_main()
    stop: list = []

    def request_stop(signum, frame):
        if not stop:
            print(
                f"\n{signal.Signals(signum).name}: stopping after this step with a checkpoint",
                file=sys.stderr,
                flush=True,
            )
        stop.append(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if not distributed.launched():  # under N processes the launcher is the run's process
        store.runs.update(
            run.id,
            status="running",
            pid=os.getpid(),
            job=supervisor.current(),
            started_at=store.now(),
            finished_at=None,
            error=None,
        )
    try:
        status = train(planned, run.id, stop)
    except BaseException as exc:
        full = checkpoints.disk_full(exc, planned.output_dir)  # a full disk in a save or a store write: one line
        if full:
            if main:
                with contextlib.suppress(Exception):  # the store may sit on the same full disk
                    store.runs.update(run.id, status="failed", error=full, finished_at=store.now())
            print(f"error: {full}", file=sys.stderr, flush=True)
            return 2
        if isinstance(exc, UserError):
            if main:
                store.runs.update(run.id, status="failed", error=str(exc), finished_at=store.now())
            for line in str(exc).splitlines():
                print(f"error: {line}", file=sys.stderr)
            return 2
        if not distributed.launched():  # a rank's failure may be a peer's death: the launcher tells which
            store.runs.update(run.id, status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=store.now())
        raise
    if main:
        store.runs.update(run.id, status=status, finished_at=store.now())
        print(f"{config.name}: {status} — checkpoints in {config.training.output_dir}", flush=True)
    return 0 if status == "finished" or distributed.launched() else STOPPED_EXIT  # the launcher reads the status


def launch(run: store.Run, plan_path: Path, processes: int) -> int:
    """This worker as the launcher of `processes` ranks (core.training.distributed); how they ended, for the run row."""
    store.runs.update(
        run.id,
        status="running",
        pid=os.getpid(),
        job=supervisor.current(),
        started_at=store.now(),
        finished_at=None,
        error=None,
    )
    print(
        f"{processes} processes: one rank per {'GPU' if distributed.gpu_count() else 'CPU core'}; ranks 1.. write "
        f"their output to {distributed.rank_log(run.output_dir, 1).name} and on",
        flush=True,
    )
    failed = distributed.launch(
        [sys.executable, "-m", "core.training.train", "--worker", str(plan_path)], processes, run.id
    )
    status = store.runs.get(run.id).status
    # a rank killed from outside (kill -9, out of memory) makes the others fail or be stopped by the launcher
    killed = {rank: -code for rank, code in failed.items() if code < 0 and -code != signal.SIGTERM}
    errors = {rank: code for rank, code in failed.items() if code > 0}
    if killed or (
        failed and not errors
    ):  # the row stays `running` with this launcher's pid: `interrupted` once it exits
        rank, signum = min(killed.items()) if killed else (min(failed), signal.SIGTERM)
        print(f"error: rank {rank}: {killed_message(run, signum)}", file=sys.stderr, flush=True)
        return 128 + signum
    if errors and status == "running":
        rank, code = min(errors.items())
        where = LOG_FILE if rank == 0 else distributed.rank_log(run.output_dir, rank).name
        store.runs.update(
            run.id, status="failed", error=f"rank {rank} exited with code {code} — see {where}", finished_at=store.now()
        )
        print(
            f"error: rank {rank} exited with code {code} — see {Path(run.output_dir) / where}",
            file=sys.stderr,
            flush=True,
        )
        return code
    return {"finished": 0, "stopped": STOPPED_EXIT}.get(status, 2 if status == "failed" else 1)


if __name__ == "__main__":  # the worker's command line (`worker_argv`); its flags are core/cli/training.py's
    from core.cli import main

    sys.exit(main(["train-worker", *sys.argv[1:]]))
