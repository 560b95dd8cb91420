"""The advisor: read a run's curves, say which of the seed's five scenarios it is in, propose the
next phase as a concrete config (its time: core/training/estimate.py). (The pre-continue checklist and the
gate that read these live in core/advisor/checklist.py; the phase rules in core/training/phases.py.)

Diagnosis (`diagnose`) fits least-squares lines over windows of the loss curves and judges slopes by
their uncertainty, never by eye:

- every window's change is its fitted slope times its span, relative to the loss level there, with a
  95% confidence interval (Student's t on the slope's standard error);
- 1 still decreasing: the recent training window falls, significantly and by more than MIN_DROP, or,
  when that window is within noise, the last validation losses fall in order by more than MIN_DROP
  (checked before 4: a loss that was flat and has started to fall is learning);
- 2 plateaued: the recent window cannot have fallen by more than PLATEAU_TOL;
- 3 overfitting: validation loss rises significantly past its minimum while training loss does not rise;
- 4 not learning: the whole training curve stays within ±FLAT_TOL and above `quality.bad_loss`;
- 5 uneven diagram types: the latest evaluation has types that meet the quality thresholds and types
  that fail them (checked after 3, 1 and 4: a run still learning just gets more epochs);
- None, "not enough data yet": too few points, or a slope within noise both ways.

Proposal (`propose`) follows the seed's LR table and its Phase 1 -> 2 -> 3 progression, always into a new
output_dir and always with `phase.continue_from` (a new phase), never `resume_from_checkpoint`
(which reloads the old optimizer and scheduler over the new settings and counts epochs as a total).
"""

import hashlib
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from core import config as configs
from core import data, paths, store
from core.config import Config, QualityConfig
from core.errors import UserError
from core.evaluation.metrics import judge_types
from core.training import checkpoints, phases
from core.training.estimate import Estimate

# ---- thresholds ---------------------------------------------------------------------------------

MIN_TRAIN_POINTS = 12  # logged training losses before any verdict (two windows of MIN_WINDOW)
MIN_WINDOW = 6  # points in the recent window (it is the last third of the curve, at least this many)
MIN_VAL_POINTS = 4  # validation losses before their recent slope, or overfitting, can be judged
MIN_DROP = 0.02  # "still decreasing": the recent window fell by more than 2% of the loss level
PLATEAU_TOL = 0.10  # "plateaued": the recent window cannot have fallen by more than 10%
FLAT_TOL = 0.10  # "not learning": the whole curve stays within +-10% of its level
OVERFIT_RISE = 0.03  # "overfitting": validation rose more than 3% above its minimum
MIN_TYPE_ROWS = 3  # a diagram type needs this many evaluated rows to count as good or bad
REPLAY_SHARE = 0.2  # scenario 5: share of the other types' rows kept beside the weak types' (against forgetting)
LR_BAND = 1.5  # the checklist accepts a learning rate within 1.5x of the table's value

# Two-sided 95% Student's t critical values for 1..30 degrees of freedom; 2.0 beyond (2.02 at 40, 1.98 at 120).
_T95 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)

SCENARIOS = {
    1: "still decreasing",
    2: "plateaued",
    3: "overfitting",
    4: "not learning",
    5: "uneven diagram types",
    None: "not enough data yet",
}

# Each diagnosis in one plain sentence, what it means and what to do: the studio leads with it and
# keeps the numbers (`Diagnosis.message`, the fits) one click away.
PLAIN = {
    1: "The loss is still decreasing: 2 more epochs at the same learning rate should still help.",
    2: "The loss has levelled off: polish with a 3× lower learning rate for 2 more epochs.",
    3: "The model is overfitting — validation loss rises while training loss does not: at most one short "
    "regularised epoch from the best checkpoint.",
    4: "The model is not learning — the loss stayed flat from the start: start over with twice the learning "
    "rate and twice the LoRA rank.",
    5: "Some diagram types are good and others weak: continue on the weak types, with some of the others "
    "replayed against forgetting.",
    None: "Not enough data yet to tell: train longer, or log the loss more often.",
}

# Quality metrics a per-type summary may hold: +1 when higher is better, -1 when lower is better.
TYPE_METRICS = {
    "valid_rate": 1,
    "complete_rate": 1,
    "entity_f1": 1,
    "relation_f1": 1,
    "hallucination_rate": -1,
    "type_accuracy": 1,
}


def t95(df: int) -> float:
    return _T95[df - 1] if df <= len(_T95) else 2.0


# ---- fits ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """A least-squares line over one window of a curve; `change` is relative to the window's level."""

    curve: str  # "loss" or "eval_loss"
    window: str  # "recent", "whole", "after minimum"
    start: int  # first step in the window
    end: int  # last step in the window
    n: int
    slope: float  # per step
    slope_se: float
    intercept: float
    level: float  # mean value over the window
    change: float  # slope x span / level: the fitted relative change across the window
    change_ci: float  # half-width of its 95% interval

    def at(self, step: float) -> float:
        return self.intercept + self.slope * step

    @property
    def low(self) -> float:
        return self.change - self.change_ci

    @property
    def high(self) -> float:
        return self.change + self.change_ci

    def describe(self) -> str:
        return (
            f"{self.curve} {self.window} (steps {self.start}–{self.end}, {self.n} points): "
            f"{self.change:+.1%} ± {self.change_ci:.1%} of {self.level:.3g}"
        )


def fit_line(points, curve: str, window: str) -> Fit:
    """Ordinary least squares over (step, value) points (at least 3, two distinct steps)."""
    xs = [float(s) for s, _ in points]
    ys = [float(v) for _, v in points]
    n = len(xs)
    xm, ym = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - xm) ** 2 for x in xs)
    slope = sum((x - xm) * (y - ym) for x, y in zip(xs, ys)) / sxx
    intercept = ym - slope * xm
    residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    se = math.sqrt(residual / (n - 2) / sxx)
    span = xs[-1] - xs[0]
    level = abs(ym) or 1.0
    return Fit(
        curve,
        window,
        int(xs[0]),
        int(xs[-1]),
        n,
        slope,
        se,
        intercept,
        ym,
        slope * span / level,
        t95(n - 2) * se * span / level,
    )


def _clean(points) -> list[tuple[int, float]]:
    """Sorted by step, one value per step (the last), non-finite values dropped."""
    by_step = {int(s): float(v) for s, v in points if v is not None and math.isfinite(float(v))}
    return sorted(by_step.items())


def _level_near(points, step: int, k: int = MIN_WINDOW) -> float:
    """Mean of the k points closest in step: a training-loss level with its noise averaged out."""
    nearest = sorted(points, key=lambda p: abs(p[0] - step))[:k]
    return statistics.fmean(v for _, v in nearest)


# ---- diagnosis ----------------------------------------------------------------------------------


@dataclass
class Diagnosis:
    scenario: int | None  # 1..5, or None: not enough data yet
    name: str
    evidence: dict  # JSON-ready; evidence["fits"] are the windows to plot (see Fit)
    message: str
    why_not: str | None = None  # a curve that cannot be judged: why, in one plain sentence (never a guessed scenario)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def plain(self) -> str:
        """The diagnosis in one plain sentence (PLAIN, or why the curve cannot be judged)."""
        return self.why_not or PLAIN[self.scenario]

    @property
    def numbers(self) -> str:
        """The message without its leading scenario name: the measured reasons and the rule applied."""
        return self.message.removeprefix(f"{self.name}: ")


def per_type_split(per_type: dict | None, quality: QualityConfig) -> dict:
    """Which diagram types meet the quality thresholds and which fail them, with each metric's spread.

    `per_type` maps a diagram type to its metrics (names as in TYPE_METRICS) and `n`, its evaluated
    rows (a type without `n` counts as having enough). A type fails when any metric misses its
    threshold in `quality`; types with fewer than MIN_TYPE_ROWS rows are listed but not judged.
    An evaluation's per-type summary carries 95% intervals: then a type is weak only when a whole
    interval misses its threshold, and "too few rows" when no interval decides (`metrics.judge_types`)."""
    if not per_type:
        return {}
    judged = judge_types(per_type, quality) if all("intervals" in m for m in per_type.values()) else None
    types: dict[str, dict] = {}
    weak: list[str] = []
    strong: list[str] = []
    short: list[str] = []
    for name, metrics in sorted(per_type.items()):
        values = {k: float(metrics[k]) for k in TYPE_METRICS if metrics.get(k) is not None}
        failing = [
            k
            for k, v in values.items()
            if (v < getattr(quality, k) if TYPE_METRICS[k] > 0 else v > getattr(quality, k))
        ]
        n = int(metrics.get("n", MIN_TYPE_ROWS))
        if judged is not None:
            failing = judged["failing"][name]
            types[name] = {"n": n, **values, "failing": failing}
            (weak if name in judged["weak"] else strong if name in judged["strong"] else short).append(name)
            continue
        types[name] = {"n": n, **values, "failing": failing}
        if n < MIN_TYPE_ROWS or not values:
            short.append(name)
        else:
            (weak if failing else strong).append(name)
    metrics_seen = sorted({k for t in types.values() for k in t if k in TYPE_METRICS})
    spread = {}
    for key in metrics_seen:
        judged_values = [t[key] for name, t in types.items() if key in t and name not in short]
        if judged_values:
            spread[key] = max(judged_values) - min(judged_values)
    return {"types": types, "weak_types": weak, "strong_types": strong, "too_few_rows": short, "spread": spread}


def diagnose_curves(
    train, validation=(), per_type: dict | None = None, quality: QualityConfig | None = None
) -> Diagnosis:
    """The scenario of a run from its curves: lists of (step, value) for loss and eval_loss, and the
    latest evaluation's per-type metrics. Pure: no store, no files."""
    quality = quality or QualityConfig()
    unjudgeable = cannot_judge(train, validation)
    train, validation = _clean(train), _clean(validation)
    evidence: dict = {"train_points": len(train), "validation_points": len(validation), "fits": []}
    if unjudgeable:
        return Diagnosis(None, SCENARIOS[None], evidence, f"cannot be judged: {unjudgeable}", unjudgeable)
    split = per_type_split(per_type, quality)
    if split:
        evidence["per_type"] = split
    uneven = bool(split and split["weak_types"] and split["strong_types"])

    def verdict(scenario, message, why_not=None):
        evidence["fits"] = [asdict(f) for f in fits]
        return Diagnosis(scenario, SCENARIOS[scenario], evidence, message, why_not)

    fits: list[Fit] = []
    if len(train) < MIN_TRAIN_POINTS:
        if uneven:
            return verdict(5, _uneven_message(split, f"only {len(train)} loss points, so the curve cannot tell"))
        return verdict(None, f"not enough data yet: {len(train)} training-loss points, need {MIN_TRAIN_POINTS}")

    recent = fit_line(train[-max(MIN_WINDOW, len(train) // 3) :], "loss", "recent")
    whole = fit_line(train, "loss", "whole")
    fits += [recent, whole]
    first = statistics.fmean(v for _, v in train[:MIN_WINDOW])
    last = statistics.fmean(v for _, v in train[-MIN_WINDOW:])
    evidence["train_drop"] = (first - last) / first if first else 0.0
    evidence["train_level"] = last

    train_falls = recent.high < 0 and recent.change < -MIN_DROP
    train_tells = train_falls or recent.low > -PLATEAU_TOL  # else its slope is within noise both ways
    falling = [recent.describe()] if train_falls else []
    if len(validation) >= MIN_VAL_POINTS:
        # When the training window cannot tell (a small batch's losses are noisy), the validation loss,
        # measured on the same rows every time, may: its few points curve too much for a line, so a rank
        # test instead — the last MIN_VAL_POINTS values fall in order by chance once in MIN_VAL_POINTS! (24).
        tail = validation[-MIN_VAL_POINTS:]
        drop = (tail[0][1] - tail[-1][1]) / tail[0][1]
        if not train_tells and all(b < a for (_, a), (_, b) in zip(tail, tail[1:])) and drop > MIN_DROP:
            evidence["val_falling"] = (
                f"eval_loss falls at each of the last {len(tail)} evaluations (steps "
                f"{tail[0][0]}–{tail[-1][0]}: {tail[0][1]:.3g} → {tail[-1][1]:.3g}, {-drop:+.1%}; "
                f"noise alone puts them in this order 1 time in {math.factorial(len(tail))})"
            )
            falling.append(evidence["val_falling"])
        i_min = min(range(len(validation)), key=lambda i: validation[i][1])
        min_step, min_value = validation[i_min]
        evidence["val_min_step"], evidence["val_min"] = min_step, min_value
        evidence["gap_at_min"] = min_value - _level_near(train, min_step)
        evidence["gap_now"] = validation[-1][1] - _level_near(train, validation[-1][0])
        if len(validation) - i_min > 3:
            # Fitted over the points after the minimum, not from it: the minimum of noisy points is
            # biased low, and as the first point of a fit it would tilt the line up out of noise.
            after = fit_line(validation[i_min + 1 :], "eval_loss", "after minimum")
            fits.append(after)
            evidence["val_rise"] = after.change
            if after.low > 0 and after.change > OVERFIT_RISE and recent.low <= 0:
                return verdict(
                    3,
                    (
                        f"overfitting: validation loss rose {after.change:.1%} ± {after.change_ci:.1%} past its "
                        f"minimum at step {min_step} "
                        f"while training loss did not rise ({recent.change:+.1%}); add dropout 0.05 and weight "
                        f"decay 0.01 and don't add epochs: at most one short regularised epoch from the "
                        f"validation-best checkpoint (or get more training data)"
                    ),
                )
    else:
        evidence["validation_note"] = (
            f"{len(validation)} validation points: overfitting not judged (need {MIN_VAL_POINTS})"
        )

    if falling:
        return verdict(
            1,
            (
                f"still decreasing: {'; '.join(falling)}; add 2 more epochs at the same learning rate"
                + (
                    f" (weak diagram types: {', '.join(split['weak_types'])}; they may still catch up)"
                    if uneven
                    else ""
                )
            ),
        )
    if whole.high < FLAT_TOL and whole.low > -FLAT_TOL and last >= quality.bad_loss:
        return verdict(
            4,
            (
                f"not learning: the loss stayed flat from the start ({whole.change:+.1%} ± {whole.change_ci:.1%} "
                f"over steps {whole.start}–{whole.end}) at {last:.3g}, above {quality.bad_loss}: start over with "
                f"twice the learning rate and twice the LoRA rank, no resume"
            ),
        )
    if uneven:
        return verdict(5, _uneven_message(split, f"the loss is no longer clearly falling ({recent.change:+.1%})"))
    if recent.low > -PLATEAU_TOL:
        return verdict(
            2,
            (
                f"plateaued: {recent.describe()} after a {evidence['train_drop']:.0%} drop since the start; "
                f"lower the learning rate 3x (polish) for 2 more epochs"
            ),
        )
    return verdict(
        None,
        (
            f"not enough data yet: the recent slope is within noise both ways ({recent.describe()}); "
            f"train longer or log more often"
        ),
        None
        if validation
        else "The training loss is too noisy to tell whether it still falls, and there is no validation loss to "
        "decide: evaluate during training (an eval_loss every few hundred steps) to judge this run.",
    )


def cannot_judge(train, validation=()) -> str | None:
    """Why a curve cannot be judged at all, in one plain sentence; None when it can be: a NaN or infinite
    loss (the run diverged), or training losses that are all zero (no loss was computed)."""
    for curve, points in (("training loss", list(train)), ("validation loss", list(validation))):
        bad = [int(s) for s, v in points if v is not None and not math.isfinite(float(v))]
        if bad:
            return (
                f"The {curve} is NaN or infinite at {len(bad)} of {len(points)} logged steps (first at step "
                f"{bad[0]}): the run diverged, and such a curve cannot be judged — lower the learning rate or "
                f"leave fp16 before training on from it."
            )
    values = [float(v) for _, v in train if v is not None]
    if values and all(v == 0 for v in values):
        return (
            f"All {len(values)} training losses logged are 0: the trainer computed no loss (every label masked, "
            f"or no answer tokens), so there is nothing to judge — check the labels of its data."
        )
    return None


def _too_few_why(run: store.Run, points: int) -> str | None:
    """Why a run logged too few training losses to judge, when the run tells: only the final summary, or a
    logging_steps above the steps it trained."""
    summary = store.metrics.value_at(run.id, "train_loss")
    steps = (run.imported or {}).get("state", {}).get("global_step") or store.metrics.last_step(run.id) or 0
    if points == 0 and summary is not None:
        return (
            f"Only the final summary was logged (mean training loss {summary:.3g} over {steps} steps), not the loss "
            f"step by step, so its shape cannot be judged — train with logging_steps well below the run's steps, "
            f"or keep its TensorBoard events."
        )
    logging_steps = run_config(run).training.logging_steps
    if steps and logging_steps > steps:
        return (
            f"logging_steps {logging_steps} is larger than the run's {steps} steps, so the trainer logged {points} "
            f"training losses, too few to judge (need {MIN_TRAIN_POINTS}) — log every {max(1, steps // 20)} steps."
        )
    return None


def _uneven_message(split: dict, curve_note: str) -> str:
    spread = ", ".join(f"{k} {v:.2f}" for k, v in split["spread"].items())
    return (
        f"some diagram types good, others bad: weak {', '.join(split['weak_types'])}; good "
        f"{', '.join(split['strong_types'])} (spread {spread}); {curve_note}. Continue on a dataset "
        f"filtered to the weak types plus {REPLAY_SHARE:.0%} replay of the others, learning rate 3e-5, 2 epochs"
    )


# ---- runs in the store --------------------------------------------------------------------------


@dataclass
class Curves:
    """A run's curves as (step, value) lists: training loss and validation loss."""

    train: list = field(default_factory=list)
    validation: list = field(default_factory=list)


def find_run(ref) -> store.Run:
    """A run row by id, name (the latest of that name) or output folder; UserError when unknown."""
    ref = str(ref)
    row = store.runs.get(ref) or store.runs.named(ref)
    if row:
        return row
    for folder in (paths.resolve_output_dir(ref), Path(ref).expanduser().resolve()):
        row = store.runs.for_output_dir(folder)
        if row:
            return row
    raise UserError(
        f"run '{ref}' not found in the store {paths.store_path()} — pass a run id, a run name or its output folder"
    )


def run_config(run: store.Run) -> Config:
    return configs.parse(run.config, where=f"run '{run.name}' ({run.id}) config in the store")


def load_curves(run_id: str) -> Curves:
    points = store.metrics.curve([run_id], ["loss", "eval_loss"])
    return Curves(
        train=[(p.step, p.value) for p in points if p.name == "loss"],
        validation=[(p.step, p.value) for p in points if p.name == "eval_loss"],
    )


def latest_evaluation(run: store.Run) -> store.evaluations.Evaluation | None:
    """The newest evaluation of any of the run's checkpoints."""
    return store.evaluations.latest_of_run(run.id, str(Path(run.output_dir)))


def diagnose(source, evaluation: dict | None = None, quality: QualityConfig | None = None) -> Diagnosis:
    """The scenario of a run (its row, id, name or folder: curves and latest evaluation from the store,
    the run's own quality thresholds) or of `Curves` with an optional evaluation summary (`per_type`)."""
    if isinstance(source, Curves):
        return diagnose_curves(source.train, source.validation, (evaluation or {}).get("per_type"), quality)
    run = source if isinstance(source, store.Run) else find_run(source)
    curves = load_curves(run.id)
    found = latest_evaluation(run) if evaluation is None else None
    summary = found.summary if found else (evaluation or {})
    result = diagnose_curves(
        curves.train, curves.validation, summary.get("per_type"), quality or run_config(run).quality
    )
    result.evidence["run"] = {"id": run.id, "name": run.name, "output_dir": run.output_dir}
    _read_early_stop(run, result)
    if result.scenario is None and result.why_not is None and len(curves.train) < MIN_TRAIN_POINTS:
        result.why_not = _too_few_why(run, result.evidence["train_points"])
    if found:
        result.evidence["evaluation"] = {
            "id": found.id,
            "checkpoint": found.checkpoint,
            "created_at": str(found.created_at),
        }
    return result


def _read_early_stop(run: store.Run, result: Diagnosis) -> None:
    """A run that early stopping ended (the worker's `early_stopped` metric: its value is the best evaluation's
    step): its validation loss had stopped improving, so a training loss still falling is no reason to add
    epochs at the same rate: "still decreasing" becomes "plateaued", polished from the best checkpoint."""
    ended = store.metrics.curve([run.id], ["early_stopped"])
    if not ended:
        return
    step, best = ended[-1].step, int(ended[-1].value)
    result.evidence["early_stopped"] = {"step": step, "best_step": best}
    said = f"early stopping ended it at step {step}: no better validation loss since step {best}"
    if result.scenario == 1:
        falling = result.numbers.split(";")[0]
        result.scenario, result.name = 2, SCENARIOS[2]
        result.message = (
            f"plateaued: {said}, though the training loss still falls ({falling}); "
            f"lower the learning rate 3x (polish) for 2 more epochs from the best checkpoint"
        )
    else:
        result.message += f" ({said})"


# ---- proposal -----------------------------------------------------------------------------------

# Where the seed guide disagrees with itself, the number the proposal follows and why: one sentence each.
GUIDE_NOTES = {
    2: (
        "The learning rate follows the guide's table (0.0001 → 0.00003, “3x lower for polish”), not scenario "
        "2's 0.00005 “5x lower”.",
        "The table, the guide's Phase 3 and its “Fine-tune with Lower LR” example all say 0.00003, and 0.00005 "
        "is only 2x lower than 0.0001, so the scenario's own “5x” contradicts its number.",
    ),
    3: (
        "Scenario 3's “don't add more epochs” is followed as “no more than one”: one short epoch from the "
        "validation-best checkpoint, at the table's overfitting rate (0.0001 → 0.00005).",
        "The added dropout and weight decay act only while training, so a regularised phase needs at least one "
        "epoch, and starting from the best checkpoint adds none on top of the overfit ones.",
    ),
}


# The seed's learning-rate table, relative to the parent's rate (its 0.0001 column), with its reasons.
LR_TABLE = {
    1: (lambda lr: lr, "keep same"),
    2: (lambda lr: lr / 3, "3x lower for polish"),
    3: (lambda lr: lr / 2, "lower + regularization"),
    4: (lambda lr: lr * 2, "2x higher to learn"),
    5: (lambda lr: min(lr, 3e-5), "lower LR for fine-tuning"),
}


def table_lr(scenario: int, lr: float) -> float:
    """The next phase's learning rate for a scenario; a changed rate is rounded to one digit as the
    seed writes it (0.0001 / 3 -> 0.00003)."""
    new = LR_TABLE[scenario][0](lr)
    return new if new == lr else float(f"{new:.1g}")


def propose(run, diagnosis: Diagnosis) -> tuple[Config, dict]:
    """The next phase for a run (row or reference) as a concrete config, and its diff
    {key: [old, new]} against the run's config. Scenario 5 writes its filtered training set."""
    run = run if isinstance(run, store.Run) else find_run(run)
    scenario = diagnosis.scenario
    if scenario is None:
        raise UserError(f"run '{run.name}': {diagnosis.message} — nothing to propose yet")
    current = run_config(run)
    nxt = current.to_dict()
    t, lora, phase = nxt["training"], nxt["lora"], nxt["phase"]
    parent_dir = Path(run.output_dir)
    ckpts = checkpoints.list_checkpoints(parent_dir)
    if scenario != 4 and not ckpts:
        raise UserError(
            f"run '{run.name}': {parent_dir} has no checkpoint to continue from — "
            "let it save one (training.save_steps) first"
        )
    # beside the parent run; a run trained elsewhere is left alone in its folder: its next phase is under the runs root
    new_dir = phases.next_phase_dir(paths.home() / run.name if run.imported else parent_dir)
    t["output_dir"] = str(new_dir)
    nxt["run_name"] = new_dir.name if current.run_name else None
    t["resume_from_checkpoint"] = None  # never: a new phase is continue_from, with its own optimizer
    phase["override_reason"] = None
    phase["continue_from"] = str(ckpts[-1]) if ckpts else None
    if "early_stopped" in diagnosis.evidence:  # the checkpoints after the best one were the patience's
        best = checkpoints.best(run)
        phase["continue_from"] = str(best[0]) if best else phase["continue_from"]
    t["learning_rate"] = table_lr(scenario, t["learning_rate"])
    if scenario != 4:
        t["max_steps"] = -1  # the phase is counted in epochs
        t["num_train_epochs"] = 2
    if scenario == 3:
        t["num_train_epochs"] = 1  # one short regularised phase, no more: the model already overfits
        t["weight_decay"] = max(t["weight_decay"], 0.01)
        lora["lora_dropout"] = max(lora["lora_dropout"], 0.05)
        best = checkpoints.best(run)  # the validation-best checkpoint, before the overfitting
        phase["continue_from"] = str(best[0] if best else ckpts[-1])
    elif scenario == 4:
        lora["r"], lora["lora_alpha"] = lora["r"] * 2, lora["lora_alpha"] * 2
        phase["continue_from"] = None  # start over: the flat adapter is worth nothing to continue from
    elif scenario == 5:
        nxt["data"]["train_file"] = str(_write_focus_set(current, diagnosis, new_dir.name))
    proposal = configs.parse(nxt, where="proposal")
    return proposal, phases.diff(current.to_dict(), proposal.to_dict())


def _write_focus_set(current: Config, diagnosis: Diagnosis, name: str) -> Path:
    """Scenario 5: the weak diagram types' rows plus a replay share of the others, under `<runs root>/datasets/`."""
    rows = data.load_split(current.data.train_source, "train", current.data.columns)
    weak = diagnosis.evidence["per_type"]["weak_types"]
    focus = data.filter_rows(rows, weak, REPLAY_SHARE, current.training.seed)
    # named by content: proposing the same phase again reuses the file (write_rows never overwrites)
    digest = hashlib.sha256(json.dumps(focus, sort_keys=True).encode()).hexdigest()[:10]
    path = paths.home() / "datasets" / f"{name}-train-{digest}.jsonl"
    if not path.is_file():
        data.write_rows(focus, path)
    return path


# ---- the proposal file and backups (`umlstudio advise`: core/cli/advisor.py) -------------------


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def write_proposal(
    proposal: Config, diff: dict, diagnosis: Diagnosis, run: store.Run, how_long: Estimate, path: Path
) -> None:
    """The proposed config as YAML, headed by the commands that check and run it and why it looks so."""
    header = [
        f"# umlstudio checklist --config {path}",
        f"# umlstudio train --config {path}",
        "#",
        f"# The next phase after run '{run.name}' ({run.id}), proposed by `umlstudio advise`:",
        f"# scenario {diagnosis.scenario} ({diagnosis.name}): {diagnosis.message}",
        f"# Changes against {run.output_dir}:",
        *[f"#   {key}: {_shown(old)} -> {_shown(new)}" for key, (old, new) in diff.items()],
        *[f"# {sentence}" for sentence in GUIDE_NOTES.get(diagnosis.scenario or 0, ())],
        f"# Time: {how_long.describe()}",
    ]
    path.write_text("\n".join(header) + "\n" + yaml.safe_dump(proposal.to_dict(), sort_keys=False))


def backup_run(run: store.Run, root: Path | None = None) -> list[str]:
    """Copy the run's latest and best checkpoints (those a next phase starts from) to the backup
    folder, verified; one line each."""
    ckpts = checkpoints.list_checkpoints(Path(run.output_dir))
    best = checkpoints.best(run)
    chosen = list(dict.fromkeys(c.resolve() for c in ckpts[-1:] + ([best[0]] if best else [])))
    if not chosen:
        return [f"{run.output_dir}: no checkpoint to back up"]
    return [f"{ckpt}: verified copy at {checkpoints.backup(ckpt, root)}" for ckpt in chosen]
