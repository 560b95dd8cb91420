"""The advisor and the phase gate: diagnosis on synthetic curves (clean and seeded-noisy), proposals,
time estimates, every checklist item failing and passing on fake runs in the store with real
checkpoint folders and manifests (no model), the gate, and the two commands."""

import json
import math
import os
import random
import shutil
import stat
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core import cli, jobs, paths, store
from core import config as configs
from core.advisor import advise, checklist
from core.config import Config
from core.data.prompts import request
from core.errors import UserError
from core.training import checkpoints, plan
from core.training import estimate as timing

# ---- synthetic curves ---------------------------------------------------------------------------

TRAIN_STEPS = range(0, 1001, 10)  # 101 logged training losses
VAL_STEPS = range(50, 1001, 50)  # 20 validation losses

SHAPES = {  # scenario: (training loss, validation loss) as functions of the step
    1: (lambda s: 0.6 + 1.7 * math.exp(-s / 800), lambda s: 0.7 + 1.7 * math.exp(-s / 800)),
    2: (lambda s: 0.4 + 1.9 * math.exp(-s / 100), lambda s: 0.55 + 1.8 * math.exp(-s / 100)),
    3: (lambda s: 0.2 + 2.1 * math.exp(-s / 150), lambda s: 0.7 + 1.6 * math.exp(-s / 150) + 0.0004 * max(0, s - 400)),
    4: (lambda s: 2.3, lambda s: 2.35),
}


def curve(f, steps, noise=0.0, seed=0):
    """(step, f(step)) with multiplicative Gaussian noise of the given relative size."""
    rng = random.Random(seed)
    return [(s, f(s) * (1 + rng.gauss(0, noise))) for s in steps]


def curves(scenario, noise=0.0, seed=0, val_noise=None):
    train_f, val_f = SHAPES[scenario]
    return advise.Curves(
        curve(train_f, TRAIN_STEPS, noise, seed),
        curve(val_f, VAL_STEPS, noise / 3 if val_noise is None else val_noise, seed + 1000),
    )


GOOD = {
    "n": 12,
    "valid_rate": 0.95,
    "complete_rate": 0.95,
    "entity_f1": 0.8,
    "relation_f1": 0.6,
    "hallucination_rate": 0.05,
    "type_accuracy": 1.0,
}
BAD = {
    "n": 8,
    "valid_rate": 0.4,
    "complete_rate": 0.6,
    "entity_f1": 0.3,
    "relation_f1": 0.1,
    "hallucination_rate": 0.3,
    "type_accuracy": 0.5,
}
UNEVEN = {"per_type": {"class": GOOD, "sequence": BAD}}


# ---- diagnosis ----------------------------------------------------------------------------------


def test_fit_line_recovers_a_line_exactly():
    fit = advise.fit_line([(s, 2.0 - 0.001 * s) for s in range(0, 101, 10)], "loss", "whole")
    assert fit.slope == pytest.approx(-0.001) and fit.intercept == pytest.approx(2.0)
    assert fit.slope_se == pytest.approx(0, abs=1e-12) and fit.change_ci == pytest.approx(0, abs=1e-9)
    assert fit.level == pytest.approx(1.95) and fit.change == pytest.approx(-0.1 / 1.95)
    assert fit.at(50) == pytest.approx(1.95)


@pytest.mark.parametrize("scenario", [1, 2, 3, 4])
def test_each_curve_shape_gets_its_scenario(scenario):
    diagnosis = advise.diagnose(curves(scenario))
    assert diagnosis.scenario == scenario, diagnosis.message
    assert diagnosis.name == advise.SCENARIOS[scenario]
    json.dumps(diagnosis.to_dict())  # evidence is JSON-ready for --json and the studio
    recent = next(f for f in diagnosis.evidence["fits"] if f["window"] == "recent")
    assert recent["end"] == 1000 and recent["n"] == 33  # the last third of the 101 points


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("scenario", [1, 2, 3, 4])
def test_noisy_curves_keep_their_scenario(scenario, seed):
    """3% noise on every training loss, 2% on every validation loss."""
    diagnosis = advise.diagnose(curves(scenario, noise=0.03, seed=seed, val_noise=0.02))
    assert diagnosis.scenario == scenario, diagnosis.message


def test_evidence_of_a_decreasing_curve():
    evidence = advise.diagnose(curves(1)).evidence
    recent = advise.Fit(**next(f for f in evidence["fits"] if f["window"] == "recent"))
    assert recent.high < 0 and recent.change == pytest.approx(-0.2, abs=0.02)  # a 20% fall over the last third
    assert recent.at(1000) == pytest.approx(SHAPES[1][0](1000), rel=0.02)
    assert evidence["train_drop"] > 0.4


def test_evidence_of_overfitting_locates_the_validation_minimum():
    diagnosis = advise.diagnose(curves(3, noise=0.03, seed=1, val_noise=0.02))
    evidence = diagnosis.evidence
    assert 350 <= evidence["val_min_step"] <= 650  # the noiseless minimum is at step 500
    assert evidence["gap_now"] > evidence["gap_at_min"] > 0  # the train/validation gap widens
    after = next(f for f in evidence["fits"] if f["window"] == "after minimum")
    assert after["curve"] == "eval_loss" and after["start"] > evidence["val_min_step"]
    assert "don't add epochs" in diagnosis.message


def test_a_flat_loss_that_starts_to_fall_is_learning():
    late = advise.Curves(curve(lambda s: 2.3 if s < 800 else 2.3 - 0.003 * (s - 800), TRAIN_STEPS, 0.03, 0), [])
    assert advise.diagnose(late).scenario == 1


def test_flat_but_already_low_loss_is_a_plateau_not_a_failure_to_learn():
    low = advise.Curves(curve(lambda s: 0.3, TRAIN_STEPS, 0.02, 0), [])
    assert advise.diagnose(low).scenario == 2


def test_uneven_diagram_types_on_a_plateau():
    diagnosis = advise.diagnose(curves(2), UNEVEN)
    assert diagnosis.scenario == 5
    split = diagnosis.evidence["per_type"]
    assert split["weak_types"] == ["sequence"] and split["strong_types"] == ["class"]
    assert split["spread"]["valid_rate"] == pytest.approx(0.55)
    assert "hallucination_rate" in split["types"]["sequence"]["failing"]


def test_a_curve_still_falling_gets_more_epochs_even_with_weak_types():
    diagnosis = advise.diagnose(curves(1), UNEVEN)
    assert diagnosis.scenario == 1 and "sequence" in diagnosis.message


def test_types_with_too_few_rows_are_not_judged():
    few = {"per_type": {"class": GOOD, "sequence": {**BAD, "n": 2}}}
    diagnosis = advise.diagnose(curves(2), few)
    assert diagnosis.scenario == 2
    assert diagnosis.evidence["per_type"]["too_few_rows"] == ["sequence"]


def test_too_few_points_is_not_enough_data():
    short = advise.Curves([(s, 2.0 - s / 1000) for s in range(0, 60, 10)], [])
    diagnosis = advise.diagnose(short)
    assert diagnosis.scenario is None and diagnosis.name == "not enough data yet"
    assert "6 training-loss points, need 12" in diagnosis.message


def test_a_slope_within_noise_both_ways_is_not_enough_data():
    noisy = advise.Curves(curve(lambda s: 1.2 - 0.0005 * s, range(0, 150, 10), 0.2, 3), [])
    diagnosis = advise.diagnose(noisy)
    assert diagnosis.scenario is None, diagnosis.message
    assert "within noise" in diagnosis.message


def test_a_falling_validation_curve_shows_learning_that_a_noisy_training_curve_hides():
    """A quick test's shape: a batch of 2 makes every training loss ±20% noisy; the validation loss,
    measured on the same rows every 20 steps, still falls clearly."""
    train = curve(lambda s: 1.1 + 2.3 * math.exp(-s / 15), range(2, 101, 2), 0.2, 7)
    validation = [(s, 1.35 + 2.1 * math.exp(-s / 25)) for s in range(0, 101, 20)]
    assert advise.diagnose(advise.Curves(train, [])).scenario is None  # the training curve alone cannot tell
    diagnosis = advise.diagnose(advise.Curves(train, validation))
    assert diagnosis.scenario == 1, diagnosis.message
    assert (
        "steps 40–100: 1.77 → 1.39, -21.7%; noise alone puts them in this order 1 time in 24"
        in diagnosis.evidence["val_falling"]
    )
    assert diagnosis.evidence["val_falling"] in diagnosis.message
    validation[-1] = (100, validation[-2][1] + 0.01)  # the last evaluation did not improve: no longer in order
    assert advise.diagnose(advise.Curves(train, validation)).scenario is None


def test_a_flat_validation_curve_does_not_make_noise_a_decrease():
    train = curve(lambda s: 1.2 - 0.0005 * s, range(0, 150, 10), 0.2, 3)
    validation = curve(lambda s: 1.3, range(0, 150, 30), 0.01, 4)
    assert advise.diagnose(advise.Curves(train, validation)).scenario is None


def test_few_points_but_a_clear_type_split_is_scenario_5():
    short = advise.Curves([(s, 1.0) for s in range(0, 60, 10)], [])
    assert advise.diagnose(short, UNEVEN).scenario == 5


# ---- fake runs in the store, real checkpoint folders --------------------------------------------


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture
def dataset(tmp_path):
    """10 class rows and 5 sequence rows; each row is 63 + 77 = 140 characters (40 tokens at 3.5) as the
    trainer sees it: the request (which names the type) and the PlantUML."""
    folder = tmp_path / "dataset"
    rows = [
        {
            "prompt": "p" * (63 - len(request("", "class"))),
            "plantuml": "@startuml\n" + "c" * 59 + "\n@enduml",
            "diagram_type": "class",
            "source": f"c{i}",
        }
        for i in range(10)
    ] + [
        {
            "prompt": "q" * (63 - len(request("", "sequence"))),
            "plantuml": "@startuml\n" + "a" * 59 + "\n@enduml",
            "diagram_type": "sequence",
            "source": f"s{i}",
        }
        for i in range(5)
    ]
    for split in ("train", "validation", "test"):
        write_jsonl(folder / f"{split}.jsonl", rows)
    return folder


def make_config(dataset, output_dir, **training) -> Config:
    return Config.model_validate(
        {"data": {"dataset": str(dataset)}, "training": {"output_dir": str(output_dir), "backend": "peft", **training}}
    )


def make_checkpoint(run_id: str, config: Config, step: int) -> Path:
    ckpt = Path(config.training.output_dir) / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_config.json").write_text(
        json.dumps(
            {
                "r": config.lora.r,
                "lora_alpha": config.lora.lora_alpha,
                "target_modules": config.lora.target_modules,
                "base_model_name_or_path": config.model.base,
            }
        )
    )
    save_file(
        {"base_model.model.lora_A.weight": np.full((config.lora.r, 8), step, np.float32)},
        str(ckpt / "adapter_model.safetensors"),
    )  # a real header: the plan reads it
    (ckpt / checkpoints.INFO).write_text(
        json.dumps({"run_id": run_id, "step": step, "backend": "peft", "config": config.to_dict()})
    )
    store.checkpoints.record(run_id, ckpt.resolve(), step, checkpoints.write_manifest(ckpt))
    return ckpt.resolve()


def make_run(dataset, name, run_curves, ckpt_steps=(1000,), tokens_per_s=(), **training):
    """A finished run: its row, its metrics and its checkpoint folders. Returns (run row, config, checkpoints)."""
    config = make_config(dataset, paths.resolve_output_dir(name), **training)
    run_id = store.runs.create(
        name=name,
        output_dir=config.training.output_dir,
        phase_kind="fresh",
        config=config.to_dict(),
        backend="peft",
        base_model=config.model.base,
    )
    rows = [[run_id, s, None, "loss", v, store.now()] for s, v in run_curves.train]
    rows += [[run_id, s, None, "eval_loss", v, store.now()] for s, v in run_curves.validation]
    rows += [[run_id, 10 * (i + 1), None, "tokens_per_s", v, store.now()] for i, v in enumerate(tokens_per_s)]
    with store.connect() as con:
        con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)", rows)
    ckpts = [make_checkpoint(run_id, config, step) for step in ckpt_steps]
    return store.runs.get(run_id), config, ckpts


def record_evaluation(checkpoint: Path, summary: dict, created_at=None) -> None:
    with store.connect() as con:
        con.execute(
            "INSERT INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?)",
            [store.new_id(), str(checkpoint), "test", "{}", 20, json.dumps(summary), created_at or store.now()],
        )


def set_ack_time(subject: str, when) -> None:
    with store.connect() as con:
        con.execute("UPDATE acknowledgements SET created_at = ? WHERE subject = ?", [when, subject])


@pytest.fixture
def plateau(dataset):
    """A plateaued run, evaluated, its checkpoints backed up; and the proposal for its next phase,
    which passes every item."""
    run, config, ckpts = make_run(dataset, "plateau", curves(2, 0.03, 0))
    record_evaluation(ckpts[-1], {"per_type": {"class": GOOD, "sequence": GOOD}})
    diagnosis = advise.diagnose(run.id)
    advise.backup_run(run)
    proposal, _ = advise.propose(run, diagnosis)
    return {"run": run, "config": config, "ckpts": ckpts, "diagnosis": diagnosis, "proposal": proposal}


def items(config) -> dict[str, checklist.Item]:
    return {item.key: item for item in checklist.check(config)}


def with_changes(config: Config, **changes) -> Config:
    """A copy of the config with dotted keys replaced, validated again."""
    tree = config.to_dict()
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        tree[section][key] = value
    return configs.parse(tree)


# ---- proposals ----------------------------------------------------------------------------------


def test_proposal_for_a_plateau_lowers_the_rate_3x_for_2_epochs(plateau):
    proposal, run = plateau["proposal"], plateau["run"]
    assert proposal.training.learning_rate == pytest.approx(3e-5)
    assert proposal.training.num_train_epochs == 2
    assert proposal.phase.continue_from == str(plateau["ckpts"][-1])
    assert proposal.training.resume_from_checkpoint is None
    assert Path(proposal.training.output_dir) == Path(run.output_dir).parent / "plateau_phase2"
    _, diff = advise.propose(run, plateau["diagnosis"])
    assert diff["training.learning_rate"] == [1e-4, 3e-5]
    assert diff["training.num_train_epochs"] == [3, 2]
    assert diff["phase.continue_from"] == [None, str(plateau["ckpts"][-1])]


def test_proposal_while_still_decreasing_keeps_the_rate(dataset):
    run, _, ckpts = make_run(dataset, "falling", curves(1))
    proposal, diff = advise.propose(run, advise.diagnose(run.id))
    assert proposal.training.learning_rate == 1e-4 and "training.learning_rate" not in diff
    assert proposal.training.num_train_epochs == 2 and proposal.phase.continue_from == str(ckpts[-1])


def test_proposal_for_overfitting_regularises_from_the_validation_best_checkpoint(dataset):
    run, _, ckpts = make_run(dataset, "overfit", curves(3), ckpt_steps=(300, 450, 600, 1000))
    diagnosis = advise.diagnose(run.id)
    assert diagnosis.evidence["val_min_step"] == 500
    proposal, diff = advise.propose(run, diagnosis)
    assert proposal.phase.continue_from == str(ckpts[1])  # step 450: closest to 500 and not after it
    assert proposal.lora.lora_dropout == 0.05 and proposal.training.weight_decay == 0.01
    assert proposal.training.num_train_epochs == 1 and proposal.training.learning_rate == pytest.approx(5e-5)
    assert diff["lora.lora_dropout"] == [0.0, 0.05]


def test_proposal_for_a_flat_loss_starts_over_with_more_capacity(dataset):
    run, _, _ = make_run(dataset, "flat", curves(4))
    proposal, diff = advise.propose(run, advise.diagnose(run.id))
    assert proposal.phase.continue_from is None and proposal.training.resume_from_checkpoint is None
    assert (proposal.lora.r, proposal.lora.lora_alpha) == (128, 256)
    assert proposal.training.learning_rate == pytest.approx(2e-4)
    assert proposal.training.num_train_epochs == 3  # the budget of the run it replaces
    assert diff["lora.r"] == [64, 128]


def test_proposal_for_uneven_types_trains_on_the_weak_types_plus_replay(dataset):
    run, config, ckpts = make_run(dataset, "uneven", curves(2))
    record_evaluation(ckpts[-1], UNEVEN)
    diagnosis = advise.diagnose(run.id)
    assert diagnosis.scenario == 5
    proposal, diff = advise.propose(run, diagnosis)
    assert proposal.training.learning_rate == pytest.approx(3e-5) and proposal.training.num_train_epochs == 2
    focus = Path(proposal.data.train_file)
    assert focus.parent == paths.home() / "datasets"
    rows = [json.loads(line) for line in focus.read_text().splitlines()]
    types = [row["diagram_type"] for row in rows]
    assert types.count("sequence") == 5 and types.count("class") == 2  # all weak rows + 20% of 10 others
    again, _ = advise.propose(run, diagnosis)  # the same proposal reuses the same file
    assert again.data.train_file == proposal.data.train_file
    assert diff["data.train_file"] == [None, str(focus)]


def test_each_proposal_gets_a_new_output_dir(plateau):
    first = Path(plateau["proposal"].training.output_dir)
    first.mkdir(parents=True)
    (first / "config.yaml").write_text("taken")
    second, _ = advise.propose(plateau["run"], plateau["diagnosis"])
    assert Path(second.training.output_dir).name == "plateau_phase3"


def test_an_early_stopped_run_is_not_told_to_add_epochs_at_the_same_rate(dataset):
    train_f, val_f = SHAPES[1]
    # training loss still falling; validation loss no better after step 700 (within 1%, not overfitting)
    stopped = advise.Curves(
        curve(train_f, TRAIN_STEPS), curve(lambda s: val_f(min(s, 700)) + 2e-5 * max(0, s - 700), VAL_STEPS)
    )
    assert advise.diagnose(stopped).scenario == 1  # the curves alone: still decreasing, add epochs
    run, _, ckpts = make_run(dataset, "early", stopped, ckpt_steps=(700, 1000))
    store.metrics.log(run.id, 1000, None, {"early_stopped": 700.0})  # as the worker records the end
    diagnosis = advise.diagnose(run.id)
    assert diagnosis.scenario == 2 and diagnosis.evidence["early_stopped"] == {"step": 1000, "best_step": 700}
    assert diagnosis.message.startswith(
        "plateaued: early stopping ended it at step 1000: no better validation loss since step 700, though the "
        "training loss still falls (loss recent"
    )
    proposal, _ = advise.propose(run, diagnosis)
    assert proposal.phase.continue_from == str(ckpts[0])  # the best checkpoint, not the patience's last one
    assert proposal.training.learning_rate == pytest.approx(3e-5) and proposal.training.num_train_epochs == 2


def test_where_the_guide_disagrees_with_itself_the_proposal_says_which_number_and_why():
    for which, why in advise.GUIDE_NOTES.values():
        assert which.count(". ") == why.count(". ") == 0 and which.endswith(".") and why.endswith(".")  # a sentence
    assert "0.00003" in advise.GUIDE_NOTES[2][0] and "not scenario 2's 0.00005" in advise.GUIDE_NOTES[2][0]
    assert advise.table_lr(2, 1e-4) == pytest.approx(3e-5)  # the number the sentence names is the one proposed
    assert "don't add more epochs" in advise.GUIDE_NOTES[3][0] and advise.table_lr(3, 1e-4) == pytest.approx(5e-5)


def test_no_proposal_without_a_diagnosis(dataset):
    run, _, _ = make_run(dataset, "short", advise.Curves([(0, 2.0), (10, 1.9)], []))
    with pytest.raises(UserError, match="nothing to propose yet"):
        advise.propose(run, advise.diagnose(run.id))


# ---- time estimates -----------------------------------------------------------------------------


def test_estimate_from_measured_throughput(dataset, tmp_path):
    make_run(dataset, "measured", curves(1), tokens_per_s=(100.0, 200.0, 400.0))
    config = make_config(dataset, tmp_path / "next", num_train_epochs=2)
    estimate = timing.estimate(config)
    assert estimate.tokens == 15 * 40 * 2  # 15 rows of 140 characters = 40 tokens, twice
    assert estimate.seconds == pytest.approx(1200 / 200)  # at the median
    assert estimate.low == pytest.approx(1200 / 360) and estimate.high == pytest.approx(1200 / 120)  # 90th, 10th pct
    assert "3 throughput measurements" in estimate.describe() and "characters / 3.5" in estimate.basis


def test_estimate_counts_the_mixed_rows_the_worker_trains(dataset, tmp_path):
    """data.type_weights decide which rows a phase trains: the estimate counts those, not the split as written."""
    from core import data

    rows = data.load_split(dataset, "train")
    write_jsonl(
        tmp_path / "long" / "train.jsonl",
        [{**r, "plantuml": r["plantuml"] * 2} if r["diagram_type"] == "sequence" else r for r in rows],
    )
    config = Config.model_validate(
        {
            "data": {"dataset": str(tmp_path / "long"), "type_weights": {"class": 1.0}},
            "training": {"output_dir": str(tmp_path / "next"), "num_train_epochs": 1},
        }
    )
    trained = data.training_rows(config.data.train_source, config.data.train_mix, config.training.seed)
    assert {r["diagram_type"] for r in trained} == {"class"} and len(trained) == 15
    assert (
        timing.estimate(config).tokens == 15 * 40
    )  # 15 class rows of 40 tokens; the longer sequence rows are not trained
    as_written = config.model_copy(
        update={"data": config.data.model_copy(update={"train_file": str(tmp_path / "long" / "train.jsonl")})}
    )
    assert timing.estimate(as_written).tokens > 15 * 40  # a train_file keeps the mix it was made with


def test_estimate_counts_max_steps_when_set(dataset, tmp_path):
    make_run(dataset, "measured", curves(1), tokens_per_s=(200.0,))
    config = make_config(dataset, tmp_path / "next", max_steps=10)  # 10 steps x 16 rows x 40 tokens
    assert timing.estimate(config).seconds == pytest.approx(6400 / 200)


def test_estimate_without_measurements(dataset, tmp_path):
    make_run(dataset, "elsewhere", curves(1), tokens_per_s=(200.0,))
    config = make_config(dataset, tmp_path / "next", backend="unsloth")  # only peft was measured
    estimate = timing.estimate(config)
    assert estimate.seconds is None and estimate.basis.startswith("no measurement yet")


def test_one_estimate_before_and_during_a_phase(dataset, tmp_path):
    """The pre-continue estimate and a running phase's time left come from `estimate.estimate`: before the
    phase, earlier runs' throughput; once the phase logs its own, that; the part done is not counted;
    evaluations and saves are added as measured (elapsed over training time); a time budget caps it."""
    make_run(dataset, "earlier", curves(1), tokens_per_s=(200.0,))
    config = make_config(dataset, tmp_path / "next", max_steps=10)  # 6,400 tokens
    before = timing.estimate(config)
    assert before.seconds == pytest.approx(6400 / 200) and before.span() == "≈ 32 s"
    running, _, _ = make_run(dataset, "running", curves(1), tokens_per_s=(400.0, 400.0), max_steps=10)
    assert timing.estimate(config, running, done=0.5).seconds == pytest.approx(3200 / 400)  # its own throughput
    with store.connect() as con:  # 30 s on the clock for 20 s of training: evaluations and saves add half
        con.executemany(
            "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)",
            [
                [running.id, 20, None, "elapsed_s", 30.0, store.now()],
                [running.id, 20, None, "time/train_s", 20.0, store.now()],
            ],
        )
    during = timing.estimate(config, running, done=0.5)
    assert during.seconds == pytest.approx(3200 / 400 * 1.5) and "add 50% as measured" in during.basis
    budget = make_config(dataset, tmp_path / "capped", max_steps=10, time_budget_minutes=0.5)
    assert timing.estimate(budget, running, done=0.5).seconds == pytest.approx(0.0)  # 30 s of a 30 s budget spent


def test_estimate_counts_with_the_base_models_tokenizer_when_on_disk(dataset, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    base = tmp_path / "base-model"
    base.mkdir()
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(base / "tokenizer.json"))
    (base / "chat_template.jinja").write_text(
        "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
    )
    config = Config.model_validate(
        {"model": {"base": str(base)}, "data": {"dataset": str(dataset)}, "training": {"num_train_epochs": 1}}
    )
    # "<user> ppp… <assistant> @startuml ccc… @enduml" is 6 words per row
    assert timing.count_tokens(config, [{"prompt": "p" * 63, "plantuml": "@startuml\nc\n@enduml"}])[0] == [6]
    # a row with its type is counted as the trainer sees it: the request names the type first (8 words more)
    typed = {"prompt": "p" * 63, "plantuml": "@startuml\nc\n@enduml", "diagram_type": "class"}
    assert timing.count_tokens(config, [typed])[0] == [14]
    assert timing.estimate(config).tokens == 15 * 14
    assert "base-model's tokenizer" in timing.estimate(config).basis


# ---- the checklist: every item passing, then each failing ---------------------------------------


def test_a_well_prepared_continue_phase_passes_every_item(plateau):
    found = checklist.check(plateau["proposal"])
    assert [item.title for item in found] == list(checklist.TITLES.values())
    assert all(item.passed for item in found), [f"{i.key}: {i.why}" for i in found if not i.passed]
    assert plan.plan(plateau["proposal"]).checklist == found  # the gate in front of the phase: the same items


def test_evaluated_fails_without_an_evaluation(dataset):
    run, _, ckpts = make_run(dataset, "plain", curves(2))
    proposal, _ = advise.propose(run, advise.diagnose(run.id))
    item = items(proposal)["evaluated"]
    assert not item.passed and "umlstudio evaluate --checkpoint" in item.why


def test_evaluated_fails_when_the_evaluation_is_older_than_the_checkpoint(plateau):
    with store.connect() as con:
        con.execute("DELETE FROM evaluations")
    record_evaluation(plateau["ckpts"][-1], {}, created_at=store.now() - timedelta(hours=1))
    item = items(plateau["proposal"])["evaluated"]
    assert not item.passed and "older than the checkpoint" in item.why


def test_loss_curve_passes_on_the_diagnosis_of_the_final_curve_with_its_evidence(plateau):
    item = items(plateau["proposal"])["loss_curve"]
    assert item.passed and item.why.startswith(
        "scenario 2 (plateaued) on the final curve of 'plateau' (101 loss points)"
    )
    assert "loss recent (steps" in item.why and "not yet acknowledged" in item.why
    assert not store.query_for_tests(
        "SELECT * FROM acknowledgements WHERE item = 'loss_curve'"
    )  # nobody ticked anything


def test_a_persons_acknowledgement_is_noted_on_top_when_newer_than_the_checkpoint(plateau):
    checklist.acknowledge(plateau["run"].id, plateau["diagnosis"])
    assert "a person acknowledged it at" in items(plateau["proposal"])["loss_curve"].why
    set_ack_time(plateau["run"].id, store.now() - timedelta(days=1))
    item = items(plateau["proposal"])["loss_curve"]
    assert item.passed and "not yet acknowledged" in item.why


def test_loss_curve_fails_when_the_diagnosis_could_not_tell(dataset):
    run, _, ckpts = make_run(dataset, "young", advise.Curves([(s, 2.0 - s / 1000) for s in range(0, 50, 10)], []))
    config = make_config(dataset, paths.resolve_output_dir("young_phase2"))
    config.phase.continue_from = str(ckpts[-1])
    item = items(config)["loss_curve"]
    assert not item.passed and "could not tell" in item.why and "5 loss points" in item.why


def test_loss_curve_fails_while_the_parent_still_trains(plateau):
    # a running job of kind "train" (a stand-in worker) named in the run row stands for the parent's training worker
    worker = jobs.start("train", ["-c", "import time; time.sleep(60)"], label=plateau["run"].name)
    try:
        store.runs.update(plateau["run"].id, status="running", job=worker.id)
        item = items(plateau["proposal"])["loss_curve"]
        assert not item.passed and "is still training: its loss curve is not final" in item.why
    finally:
        jobs.stop(worker.id)
    while not jobs.get(worker.id).done:
        time.sleep(0.1)
    assert items(plateau["proposal"])["loss_curve"].passed  # the worker is gone: the curve is final


def test_backed_up_fails_after_the_copy_is_deleted_and_passes_after_advise_backup(plateau, capsys):
    ckpt = plateau["ckpts"][-1]
    item = items(plateau["proposal"])["backed_up"]
    copy = checkpoints.backup_target(ckpt, paths.home() / "backups")
    assert item.passed and str(copy) in item.why and copy.is_dir()
    assert not checkpoints.verify(copy, checkpoints.manifest_of(ckpt))
    shutil.rmtree(copy)
    item = items(plateau["proposal"])["backed_up"]
    assert not item.passed and f"{copy}: gone" in item.why and "umlstudio advise --run plateau --backup" in item.why
    assert cli.main(["advise", "--run", "plateau", "--backup"]) == 0
    assert f"{ckpt}: verified copy at {copy}" in capsys.readouterr().out
    assert items(plateau["proposal"])["backed_up"].passed


def test_backed_up_fails_without_a_copy_and_when_the_copy_changed(plateau, tmp_path):
    with store.connect() as con:
        con.execute("DELETE FROM acknowledgements WHERE item = 'backup'")
    item = items(plateau["proposal"])["backed_up"]
    assert not item.passed and "no backup copy of" in item.why and "--backup" in item.why
    copy = checkpoints.backup(plateau["ckpts"][-1], tmp_path / "other-disk")  # configurable: another folder
    assert copy.is_relative_to(tmp_path / "other-disk") and str(copy) in items(plateau["proposal"])["backed_up"].why
    weights = copy / "adapter_model.safetensors"
    os.chmod(weights, stat.S_IRUSR | stat.S_IWUSR)
    weights.write_bytes(b"bit rot")
    item = items(plateau["proposal"])["backed_up"]
    assert not item.passed and "does not verify" in item.why and "changed since the checkpoint was written" in item.why
    assert checkpoints.backup(plateau["ckpts"][-1], tmp_path / "other-disk") == copy  # a bad copy is replaced
    assert items(plateau["proposal"])["backed_up"].passed


def test_backup_refuses_a_checkpoint_that_changed_and_a_backup_folder_that_is_a_file(plateau, tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        checkpoints.backup(plateau["ckpts"][-1], tmp_path / "a-file")
    weights = plateau["ckpts"][-1] / "adapter_model.safetensors"
    os.chmod(weights, stat.S_IRUSR | stat.S_IWUSR)
    weights.write_bytes(b"overwritten")
    with pytest.raises(UserError, match="does not match its manifest"):
        checkpoints.backup(plateau["ckpts"][-1], tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


def test_backed_up_fails_when_a_file_changed(plateau):
    weights = plateau["ckpts"][-1] / "adapter_model.safetensors"
    os.chmod(weights, stat.S_IRUSR | stat.S_IWUSR)
    weights.write_bytes(b"overwritten")
    os.chmod(weights, stat.S_IRUSR)
    item = items(plateau["proposal"])["backed_up"]
    assert not item.passed and "changed since the checkpoint was written" in item.why


def test_learning_rate_fails_when_it_contradicts_the_table(plateau):
    item = items(with_changes(plateau["proposal"], training__learning_rate=1e-4))["learning_rate"]
    assert not item.passed
    assert "0.0001 → 3e-05, 3x lower for polish" in item.why and "training.learning_rate: 3e-05" in item.why
    assert items(with_changes(plateau["proposal"], training__learning_rate=4e-5))["learning_rate"].passed


def test_continue_from_fails_for_a_missing_checkpoint(plateau, tmp_path):
    found = items(with_changes(plateau["proposal"], phase__continue_from=str(tmp_path / "nowhere")))
    assert not found["continue_from"].passed and "not found" in found["continue_from"].why
    assert not found["evaluated"].passed and "parent checkpoint" in found["evaluated"].why


def test_continue_from_fails_for_another_lora_shape(plateau):
    item = items(with_changes(plateau["proposal"], lora__r=32))["continue_from"]
    assert not item.passed and "lora.r 32 vs the checkpoint's 64" in item.why


def test_continue_from_fails_when_the_parent_is_not_learning(dataset):
    run, _, ckpts = make_run(dataset, "flat", curves(4))
    config = make_config(dataset, paths.resolve_output_dir("flat_more"))
    config.phase.continue_from = str(ckpts[-1])
    item = items(config)["continue_from"]
    assert not item.passed and "start over" in item.why


def test_resume_with_changed_hyperparameters_fails_with_the_reason(plateau):
    parent = plateau["config"]
    resume = with_changes(
        parent, training__resume_from_checkpoint=str(plateau["ckpts"][-1]), training__learning_rate=3e-5
    )
    item = items(resume)["continue_from"]
    assert not item.passed
    assert "training.learning_rate 0.0001 → 3e-05" in item.why and "phase.continue_from" in item.why
    unchanged = items(with_changes(parent, training__resume_from_checkpoint=str(plateau["ckpts"][-1])))
    assert unchanged["continue_from"].passed and unchanged["output_dir"].passed


def test_output_dir_fails_for_the_parents_folder_and_for_a_used_one(plateau, tmp_path):
    same = items(with_changes(plateau["proposal"], training__output_dir=plateau["run"].output_dir))["output_dir"]
    assert not same.passed and "the parent run's folder" in same.why and "plateau_phase2" in same.why
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("x")
    item = items(with_changes(plateau["proposal"], training__output_dir=str(used)))["output_dir"]
    assert not item.passed and "not empty" in item.why


def test_epochs_fail_when_adding_epochs_to_an_overfitting_run(dataset):
    run, _, _ = make_run(dataset, "overfit", curves(3))
    diagnosis = advise.diagnose(run.id)
    proposal, _ = advise.propose(run, diagnosis)
    assert items(proposal)["epochs"].passed
    item = items(with_changes(proposal, training__num_train_epochs=2))["epochs"]
    assert not item.passed and "overfitting: don't add epochs" in item.why


def test_epochs_fail_when_the_training_data_cannot_be_read(plateau, tmp_path):
    item = items(with_changes(plateau["proposal"], data__dataset=str(tmp_path / "missing")))["epochs"]
    assert not item.passed and "no such dataset" in item.why


def test_epochs_say_the_estimate(plateau):
    make_run(Path(plateau["config"].data.dataset), "measured", curves(1), tokens_per_s=(300.0,))
    item = items(plateau["proposal"])["epochs"]
    assert item.passed and item.why.startswith("2 epoch(s) for this phase alone, ≈ 4 s — 1,200 tokens")  # at 300/s


# ---- the gate -----------------------------------------------------------------------------------


def test_the_gate_lets_fresh_runs_through(dataset, tmp_path):
    assert plan.plan(make_config(dataset, tmp_path / "fresh")).checklist is None


def test_the_gate_refuses_with_one_line_per_failing_item(plateau):
    risky = with_changes(plateau["proposal"], training__learning_rate=1e-4)
    shutil.rmtree(checkpoints.backup_root())  # and its backup copy gone
    with pytest.raises(UserError) as caught:
        plan.plan(risky)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("Backed up current checkpoints: the backup copy at ") and "gone" in lines[0]
    assert lines[1].startswith("Decided on learning rate: 0.0001 contradicts")
    assert lines[2].startswith("2 of 7 pre-continue checks fail") and "phase.override_reason" in lines[2]


def test_the_gate_with_an_override_reason_returns_the_items(plateau):
    risky = with_changes(plateau["proposal"], training__learning_rate=1e-4, phase__override_reason="testing a hunch")
    found = plan.plan(risky).checklist
    assert [item.key for item in found if not item.passed] == ["learning_rate"]


# ---- the commands -------------------------------------------------------------------------------


def test_advise_writes_the_proposal_and_backs_up(dataset, capsys):
    run, _, ckpts = make_run(dataset, "phase1", curves(1), ckpt_steps=(500, 1000), tokens_per_s=(250.0,))
    record_evaluation(ckpts[-1], {"per_type": {"class": GOOD}})
    assert not checkpoints.is_read_only(ckpts[-1])
    assert cli.main(["advise", "--run", "phase1", "--backup"]) == 0
    out = capsys.readouterr().out
    assert "scenario 1, still decreasing" in out and "training.num_train_epochs: 3 -> 2" in out
    path = paths.home() / "phase1_phase2.yaml"
    text = path.read_text()
    assert text.splitlines()[0] == f"# umlstudio checklist --config {path}"
    assert f"# umlstudio train --config {path}" in text
    proposal = configs.load(path)
    assert proposal.phase.continue_from == str(ckpts[-1]) and proposal.training.num_train_epochs == 2
    assert checkpoints.is_read_only(ckpts[-1])
    copy, problems = checkpoints.backup_of(ckpts[-1])
    assert copy.is_dir() and not problems and f"{ckpts[-1]}: verified copy at {copy}" in out
    assert not store.query_for_tests(
        "SELECT * FROM acknowledgements WHERE item = 'loss_curve'"
    )  # running advise is no check
    assert cli.main(["checklist", "--config", str(path)]) == 0  # the proposal passes its own checklist
    assert "[x] Evaluated current model quality" in capsys.readouterr().out


def test_advise_json_and_out(dataset, tmp_path, capsys):
    make_run(dataset, "phase1", curves(2))
    target = tmp_path / "next.yaml"
    assert cli.main(["advise", "--run", str(paths.resolve_output_dir("phase1")), "--json", "--out", str(target)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["diagnosis"]["scenario"] == 2 and report["proposal"]["config_path"] == str(target)
    assert report["proposal"]["diff"]["training.learning_rate"] == [1e-4, 3e-5]
    assert report["proposal"]["estimate"]["seconds"] is None  # nothing measured
    header = [line for line in target.read_text().splitlines() if line.startswith("#")]
    assert [f"# {sentence}" for sentence in advise.GUIDE_NOTES[2]] <= header  # which number, and why


def test_advise_with_not_enough_data_proposes_nothing(dataset, capsys):
    make_run(dataset, "young", advise.Curves([(0, 2.3), (10, 2.2)], []))
    assert cli.main(["advise", "--run", "young"]) == 0
    assert "not enough data yet" in capsys.readouterr().out
    assert not list(paths.home().glob("*.yaml"))


def test_checklist_exits_1_when_an_item_fails(plateau, tmp_path, capsys):
    path = tmp_path / "next.yaml"
    configs.save(with_changes(plateau["proposal"], training__learning_rate=1e-4), path)
    assert cli.main(["checklist", "--config", str(path), "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert [item["key"] for item in found if not item["passed"]] == ["learning_rate"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["advise", "--run", "nosuchrun"], "run 'nosuchrun' not found in the store"),
        (["checklist", "--config", "nosuch.yaml"], "nosuch.yaml: config file not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
