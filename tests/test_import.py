"""`umlstudio import`: runs trained by other code than the studio's trainer are read, stored and diagnosed.

A table of trainer_state shapes written from the documented formats (transformers' TrainerState, older
states without the step settings, LLaMA-Factory's trainer_log.jsonl) with the scenario a careful reader
gives, or the sentence saying why the curve cannot be judged; hostile folders refused in one line; a real
run made with plain transformers `Trainer` + PEFT on the tiny model, imported, its checkpoints evaluated and
compared, and continued as a new phase; and real runs made by TRL's `SFTTrainer` (alone, and with Unsloth)."""

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file
from streamlit.testing.v1 import AppTest
from test_train import ROWS as TRAIN_ROWS

from core import cli, paths, store
from core import config as configs
from core.advisor import advise, checklist
from core.training import adopt, checkpoints, phases, runs

STEPS = range(10, 1001, 10)
EVALS = range(50, 1001, 50)


def falling(s):
    return 0.5 + 2.5 * math.exp(-s / 400)


def levelled(s):
    return 0.8 + 2.0 * math.exp(-s / 50)


def overfit_eval(s):
    return 1.0 + 0.5 * math.exp(-s / 150) + (0.0006 * (s - 500) if s > 500 else 0.0)


def history(train, evals=(), old=False):
    entries = [
        {"epoch": s / 1000, "grad_norm": 0.9, "learning_rate": 1e-4 * (1 - s / 1001), "loss": v, "step": s}
        for s, v in train
    ] + [{"epoch": s / 1000, "eval_loss": v, "eval_runtime": 1.5, "step": s} for s, v in evals]
    entries.sort(key=lambda e: (e["step"], "eval_loss" in e))
    if old:  # transformers 4.x before the step settings were saved: total_flos on every entry
        for entry in entries:
            entry["total_flos"] = 1.0e12
    return entries


def state(entries, old=False, **top):
    last = max((e["step"] for e in entries), default=0)
    written = {"epoch": 1.0, "global_step": last, "max_steps": last, "num_train_epochs": 1, "log_history": entries}
    if not old:
        written.update(logging_steps=10, eval_steps=50, save_steps=500, train_batch_size=4)
    return {**written, **top}


def write_state(folder: Path, value, step: int = 1000) -> Path:
    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps(value))
    return ckpt


def lf_folder(folder: Path, train) -> None:
    """LLaMA-Factory's output: trainer_log.jsonl (current_steps, lr) and training_args.yaml, no trainer_state.json."""
    folder.mkdir(parents=True)
    lines = [
        {"current_steps": s, "total_steps": 1000, "loss": v, "lr": 5e-5, "epoch": s / 1000, "percentage": s / 10}
        for s, v in train
    ]
    (folder / "trainer_log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = {"model_name_or_path": "Qwen/Qwen2.5-1.5B", "learning_rate": 5e-5, "lora_rank": 8, "lora_target": "all"}
    (folder / "training_args.yaml").write_text(yaml.safe_dump(args))


CASES = {
    "new log_history, still falling": (lambda f: write_state(f, state(history(
        [(s, falling(s)) for s in STEPS], [(s, falling(s) + 0.1) for s in EVALS]))), 1),
    "old log_history, still falling": (lambda f: write_state(f, state(history(
        [(s, falling(s)) for s in STEPS], [(s, falling(s) + 0.1) for s in EVALS], old=True), old=True)), 1),
    "LLaMA-Factory trainer_log.jsonl, plateau": (lambda f: lf_folder(f, [(s, levelled(s)) for s in STEPS]), 2),
    "eval falling then rising": (lambda f: write_state(f, state(history(
        [(s, falling(s)) for s in STEPS], [(s, overfit_eval(s)) for s in EVALS]))), 3),
    "plateau": (lambda f: write_state(f, state(history(
        [(s, levelled(s)) for s in STEPS], [(s, levelled(s) + 0.2) for s in EVALS]))), 2),
    "flat from the start": (lambda f: write_state(f, state(history(
        [(s, 2.3) for s in STEPS], [(s, 2.4) for s in EVALS]))), 4),
    "summary only": (lambda f: write_state(f, state([{
        "epoch": 1.0, "step": 100, "total_flos": 1e12, "train_loss": 1.23, "train_runtime": 60.0}])),
        "Only the final summary was logged"),
    "logging_steps larger than max_steps": (lambda f: write_state(f, state([
        {"epoch": 1.0, "loss": 1.4, "learning_rate": 1e-6, "step": 100},
        {"epoch": 1.0, "step": 100, "train_loss": 1.9, "train_runtime": 60.0}], logging_steps=500)),
        "logging_steps 500 is larger than the run's 100 steps"),
    "all-zero losses": (lambda f: write_state(f, state(history([(s, 0.0) for s in STEPS]))),
        "training losses logged are 0"),
    "NaN": (lambda f: write_state(f, state(history(
        [(s, falling(s) if s < 600 else float("nan")) for s in STEPS]))), "NaN or infinite at 41 of 100"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_a_trainer_state_shape_gets_the_careful_readers_diagnosis(case, tmp_path):
    make, expected = CASES[case]
    folder = tmp_path / "outputs"
    make(folder)
    adopted = adopt.adopt(folder)
    diagnosis = adopted.diagnosis
    if isinstance(expected, int):
        assert diagnosis.scenario == expected, diagnosis.message
        assert diagnosis.why_not is None
    else:
        assert diagnosis.scenario is None and expected in diagnosis.plain, diagnosis.plain
        assert "\n" not in diagnosis.plain
    assert advise.diagnose(adopted.run.name).plain == diagnosis.plain  # `umlstudio advise --run NAME` agrees


def test_tensorboard_events_give_the_curve_a_summary_only_state_lacks(tmp_path):
    """transformers' default logging_dir, <output_dir>/runs/<date_host>/, holds train/loss and eval/loss."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    folder = tmp_path / "outputs"
    CASES["summary only"][0](folder)
    writer = EventFileWriter(str(folder / "runs" / "Dec07_host"))
    for tag, points in (("train/loss", [(s, falling(s)) for s in STEPS]), ("eval/loss", [(s, 2.0) for s in EVALS])):
        for step, value in points:
            value_pb = summary_pb2.Summary.Value(tag=tag, simple_value=value)
            writer.add_event(event_pb2.Event(step=step, wall_time=1.0, summary=summary_pb2.Summary(value=[value_pb])))
    writer.close()
    adopted = adopt.adopt(folder)
    assert any(name.startswith("runs/Dec07_host/events.out.tfevents") for name in adopted.folder.read)
    assert len(store.metrics.curve([adopted.run.id], ["loss"])) == 100
    assert len(store.metrics.curve([adopted.run.id], ["eval_loss"])) == 20
    assert adopted.diagnosis.scenario == 1, adopted.diagnosis.message


def test_an_old_state_has_its_logging_steps_read_from_the_logged_steps(tmp_path):
    CASES["old log_history, still falling"][0](tmp_path / "old")
    found = adopt.read(tmp_path / "old")
    assert found.config.training.logging_steps == 10 and "spacing" in found.origin["training.logging_steps"]
    assert "training.eval_steps" in found.unknown and "model.base" in found.unknown


def test_llama_factory_settings_and_curves_are_read(tmp_path):
    lf_folder(tmp_path / "lf", [(s, levelled(s)) for s in STEPS])
    found = adopt.read(tmp_path / "lf")
    assert found.config.model.base == "Qwen/Qwen2.5-1.5B" and found.config.lora.r == 8
    assert found.config.training.learning_rate == 5e-5
    assert len([k for k in found.points if k[1] == "loss"]) == 100
    assert {k[1] for k in found.points} == {"loss", "learning_rate"}  # total_steps and percentage are bookkeeping


def test_importing_a_folder_again_updates_its_run_in_place(tmp_path):
    folder = tmp_path / "outputs"
    ckpt = CASES["plateau"][0](folder)
    first = adopt.adopt(folder)
    assert first.new and first.run.imported["from"] == str(folder.resolve())
    assert first.folder.checkpoints[0].weights is False  # a state without weights: the curve only
    counts = store.counts()
    again = adopt.adopt(folder)
    assert not again.new and again.run.id == first.run.id and store.counts() == counts
    (ckpt / "trainer_state.json").write_text(json.dumps(state(history([(s, 2.0) for s in range(10, 201, 10)]))))
    adopt.adopt(folder)
    assert len(store.metrics.curve([first.run.id], ["loss"])) == 20  # what the folder holds now


def test_importing_again_keeps_the_time_of_an_unchanged_checkpoint(tmp_path):
    """The checklist's "evaluated" item compares an evaluation's time with the checkpoint's recorded time: reading
    the folder again (`import --as-phase` after `evaluate`) must not make an unchanged checkpoint look newer."""
    folder = tmp_path / "outputs"
    older = write_state(folder, state(history([(s, falling(s)) for s in range(10, 501, 10)])), 500)
    newer = write_state(folder, state(history([(s, falling(s)) for s in STEPS])), 1000)
    for ckpt in (older, newer):
        adapter_checkpoint(ckpt, "Qwen/Qwen2.5-0.5B")
    run = adopt.adopt(folder).run
    recorded = {c.path: c for c in store.checkpoints.of_runs([run.id])}
    adopt.adopt(folder)
    assert {c.path: c for c in store.checkpoints.of_runs([run.id])} == recorded  # same rows, same times
    (newer / "adapter_config.json").write_text("{}")  # their script changed it: recorded again, a new manifest
    adopt.adopt(folder)
    again = {c.path: c for c in store.checkpoints.of_runs([run.id])}
    assert again[str(older)] == recorded[str(older)]
    assert again[str(newer)].manifest_sha256 != recorded[str(newer)].manifest_sha256
    assert again[str(newer)].created_at >= recorded[str(newer)].created_at
    shutil.rmtree(older)  # a checkpoint gone from the folder is gone from the run
    adopt.adopt(folder)
    assert [c.path for c in store.checkpoints.of_runs([run.id])] == [str(newer)]


def test_two_folders_of_the_same_name_get_two_runs_and_a_taken_name_is_refused(tmp_path, capsys):
    for parent in ("a", "b"):
        CASES["plateau"][0](tmp_path / parent / "outputs")
    assert adopt.adopt(tmp_path / "a" / "outputs").run.name == "outputs"
    second = adopt.adopt(tmp_path / "b" / "outputs")
    assert second.run.name == "outputs-2" and second.run.config["run_name"] == "outputs-2"
    assert adopt.adopt(tmp_path / "b" / "outputs").run.name == "outputs-2"  # read again: same run, same name
    counts = store.counts()
    assert cli.main(["import", str(tmp_path / "b" / "outputs"), "--name", "outputs"]) == 2
    assert "run name 'outputs' is taken" in capsys.readouterr().err and store.counts() == counts


def adapter_checkpoint(ckpt: Path, base: str) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    adapter = {"base_model_name_or_path": base, "r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
               "target_modules": ["q_proj", "v_proj"], "peft_type": "LORA"}  # fmt: skip
    (ckpt / "adapter_config.json").write_text(json.dumps(adapter))
    save_file({"base_model.model.layers.0.q_proj.lora_A.weight": np.zeros((8, 16), np.float32)},
              str(ckpt / "adapter_model.safetensors"))  # fmt: skip


def test_the_guides_config_as_written_becomes_a_phase_that_trains_two_more_epochs(tmp_path, capsys):
    """The guide: `num_train_epochs: 5` and `resume_from_checkpoint: ./outputs/checkpoint-3264` after 3 epochs."""
    folder = tmp_path / "outputs"
    train = [(s, falling(s / 3.264)) for s in range(32, 3265, 32)]
    ckpt = write_state(folder, state(history(train), epoch=3.0, num_train_epochs=3), 3264)
    adapter_checkpoint(ckpt, "Qwen/Qwen2.5-0.5B")
    guide = tmp_path / "training_config.yaml"
    guide.write_text(
        "training:\n  num_train_epochs: 5\n  learning_rate: 0.0001\n"
        "  resume_from_checkpoint: ./outputs/checkpoint-3264\n"
    )
    assert cli.main(["import", str(folder), "--config", str(guide), "--as-phase"]) == 0
    out = capsys.readouterr().out
    assert "num_train_epochs 5 after 3 done trains 2 more" in out and "learning_rate 0.0001 is not applied" in out
    written = Path(out.split("wrote ")[1].split(" — ")[0])
    phase = configs.load(written)
    assert phase.training.num_train_epochs == 2 and phase.training.resume_from_checkpoint is None
    assert phase.phase.continue_from == str(ckpt.resolve()) and phase.training.learning_rate == 1e-4
    assert phase.model.base == "Qwen/Qwen2.5-0.5B" and phase.lora.r == 8  # their base model and adapter shape
    start, _ = phases.continue_point(phase.phase.continue_from, phase.lora, phase.model.base)
    assert start == ckpt.resolve()
    stored = store.checkpoints.get(ckpt.resolve())
    assert stored is not None and store.runs.get(stored.run_id).name == "outputs"  # the checklist finds its run
    assert not any(p.name == checkpoints.MANIFEST for p in folder.rglob("*"))  # nothing written into the folder
    capsys.readouterr()
    assert cli.main(["advise", "--run", "outputs", "--out", str(tmp_path / "next.yaml")]) == 0
    assert "scenario 1, still decreasing" in capsys.readouterr().out
    proposed = configs.load(tmp_path / "next.yaml")
    assert proposed.phase.continue_from == str(ckpt.resolve())
    assert Path(proposed.training.output_dir).parent == paths.home()  # their folder's parent is theirs, not ours
    assert runs.kind_in_words(store.runs.get(stored.run_id)) == "imported run"


def test_an_imported_checkpoint_is_backed_up_and_verified_without_writing_into_its_folder(tmp_path, capsys):
    """No manifest.json is written into a folder trained elsewhere: its checkpoint is checked against the
    manifest its files had when it was imported (the sha256 the store recorded), its copy against that too."""
    folder = tmp_path / "outputs"
    ckpt = write_state(folder, state(history([(s, falling(s / 3.264)) for s in range(32, 3265, 32)])), 3264)
    adapter_checkpoint(ckpt, "Qwen/Qwen2.5-0.5B")
    assert cli.main(["import", str(folder)]) == 0
    modes = {p: p.stat().st_mode for p in folder.rglob("*")}
    assert checkpoints.verify(ckpt) == []
    assert cli.main(["advise", "--run", "outputs", "--backup", "--out", str(tmp_path / "next.yaml")]) == 0
    copy, problems = checkpoints.backup_of(ckpt.resolve())
    assert copy is not None and problems == [] and (copy / "adapter_model.safetensors").is_file()
    items = {item.key: item for item in checklist.check(configs.load(tmp_path / "next.yaml"))}
    assert items["backed_up"].passed, items["backed_up"].why
    assert {p: p.stat().st_mode for p in folder.rglob("*")} == modes  # not made read-only: it is theirs
    assert not any(p.name == checkpoints.MANIFEST for p in folder.rglob("*"))
    (ckpt / "adapter_config.json").write_text("{}")  # their script changed it after the import
    assert "changed since `umlstudio import` read them" in checkpoints.verify(ckpt)[0]
    items = {item.key: item for item in checklist.check(configs.load(tmp_path / "next.yaml"))}
    assert not items["backed_up"].passed


# ---- hostile folders ----------------------------------------------------------------------------


def listing(folder: Path) -> dict:
    return {str(p): (p.is_symlink() or p.stat().st_size) for p in sorted(folder.rglob("*"))}


def link_to_system_file(folder: Path) -> None:
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "trainer_state.json").symlink_to("/etc/passwd")


def huge_state(folder: Path) -> None:
    with open(write_state(folder, {}) / "trainer_state.json", "w") as handle:
        handle.truncate(adopt.MAX_JSON_BYTES + 1)  # sparse: no 64 MB written


def not_utf8_state(folder: Path) -> None:
    (write_state(folder, {}) / "trainer_state.json").write_bytes(b'{"log_history": [], "x": "\xff\xfe"}')


def checkpoint_that_is_a_file(folder: Path) -> None:
    write_state(folder, state(history([(10, 1.0)])), 10)
    (folder / "checkpoint-20").write_text("not a folder")


def linked_checkpoint_outside(folder: Path) -> None:
    outside = folder.parent / "elsewhere"
    write_state(outside, state(history([(10, 1.0)])), 10)
    (folder / "checkpoint-10").symlink_to(outside / "checkpoint-10")


HOSTILE = {
    "a link to a system file": (link_to_system_file, "outside"),
    "a huge trainer_state.json": (huge_state, "MB, over the 64 MB"),
    "a trainer_state.json that is not UTF-8": (not_utf8_state, "is not UTF-8"),
    "a checkpoint folder that is a file": (checkpoint_that_is_a_file, "is a file"),
    "a checkpoint linked from outside": (linked_checkpoint_outside, "outside"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_folder_is_refused_in_one_line(case, tmp_path, capsys):
    make, expected = HOSTILE[case]
    folder = tmp_path / "outputs"
    folder.mkdir()
    make(folder)
    before, counts = listing(folder), store.counts()
    assert cli.main(["import", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert listing(folder) == before and store.counts() == counts


class WouldWrite:
    """Unpickling this object opens (creates) a file: the code a training_args.bin could run."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_training_args_bin_is_never_unpickled(tmp_path):
    folder = tmp_path / "outputs"
    ckpt = CASES["plateau"][0](folder)
    marker = tmp_path / "unpickled"
    (ckpt / "training_args.bin").write_bytes(pickle.dumps(WouldWrite(marker)))
    assert cli.main(["import", str(folder), "--json"]) == 0
    assert not marker.exists()


def test_a_folder_without_any_training_record_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["import", str(tmp_path / "empty")]) == 2
    assert "not a training output folder" in capsys.readouterr().err


# ---- a run made by plain transformers Trainer + PEFT --------------------------------------------


def train_with_transformers(tiny_model: Path, out: Path, targets=("q_proj", "v_proj"), learning_rate=5e-3) -> None:
    """Plain transformers Trainer + PEFT, not the studio's trainer: 24 steps, eval every 4, a checkpoint every 8."""
    import datasets
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    texts = [f"@startuml\nclass Shop{i}\nShop{i} --> Order\n@enduml" for i in range(32)]
    rows = datasets.Dataset.from_dict({"text": texts}).map(
        lambda batch: tokenizer(batch["text"]), batched=True, remove_columns=["text"]
    )
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), task_type="CAUSAL_LM")
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=24,
        per_device_train_batch_size=4,
        learning_rate=learning_rate,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=4,
        save_steps=8,
        report_to=[],
        use_cpu=True,
    )
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), lora)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    Trainer(
        model=model, args=args, train_dataset=rows, eval_dataset=rows.select(range(8)), data_collator=collator
    ).train()


@pytest.mark.e2e
def test_a_run_of_transformers_trainer_is_imported_diagnosed_and_continued(tiny_model, tmp_path, capsys):
    out = tmp_path / "outputs"
    train_with_transformers(tiny_model, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()  # the trainer's own progress lines
    assert cli.main(["import", str(out), "--name", "theirs", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["step"] for c in report["checkpoints"]] == [8, 16, 24] and all(
        c["weights"] for c in report["checkpoints"]
    )
    assert report["base_model"] == str(tiny_model)
    run = advise.find_run("theirs")
    assert len(store.metrics.curve([run.id], ["loss"])) == 24
    assert len(store.metrics.curve([run.id], ["eval_loss"])) == 6
    assert len(store.metrics.curve([run.id], ["learning_rate"])) == 24
    for ckpt in store.checkpoints.of_runs([run.id]):  # the manifest write_manifest would write, on a copy
        copy = shutil.copytree(ckpt.path, tmp_path / "copy" / Path(ckpt.path).name)
        assert checkpoints.write_manifest(copy) == ckpt.manifest_sha256
    diagnosis = advise.diagnose("theirs")
    assert diagnosis.scenario is not None or diagnosis.why_not, diagnosis.message
    config = advise.run_config(run)
    start, _ = phases.continue_point(str(out / "checkpoint-24"), config.lora, config.model.base)
    assert start == (out / "checkpoint-24").resolve()

    # their checkpoints evaluated and compared on the studio's data, on their base model (the tiny model folder)
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    for split, rows in (("train", TRAIN_ROWS), ("validation", TRAIN_ROWS[:4]), ("test", TRAIN_ROWS)):
        (dataset / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    first, last = str((out / "checkpoint-8").resolve()), str(start)
    fast = ["--dataset", str(dataset), "--limit", "2", "--max-new-tokens", "16"]
    assert cli.main(["evaluate", "--checkpoint", last, *fast, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 2 and summary["generated"] == 2
    assert summary["settings"]["base"] == str(tiny_model.resolve())
    html = tmp_path / "compare.html"
    assert cli.main(["compare", "--model1", first, "--model2", last, *fast, "--out", str(html)]) == 0
    assert "sign test" in capsys.readouterr().out and "checkpoint-24" in html.read_text()
    evaluations = store.query_for_tests("SELECT checkpoint, n, summary FROM evaluations ORDER BY created_at")
    assert [(e["checkpoint"], e["n"]) for e in evaluations] == [(last, 2), (first, 2), (last, 2)]
    made = [(json.loads(e["summary"])["generated"], json.loads(e["summary"])["reused"]) for e in evaluations]
    assert made == [(2, 0), (2, 0), (0, 2)]  # compare served checkpoint-24's outputs from the store
    assert len(store.query_for_tests("SELECT id FROM generations")) == 6

    # a continue phase from their last checkpoint, written by `import --as-phase`, trains on their base model
    assert cli.main(["import", str(out), "--name", "theirs", "--as-phase"]) == 0
    printed = capsys.readouterr().out
    assert "read again (updated in place)" in printed
    written = Path(printed.split("wrote ")[1].split(" — ")[0])
    assert cli.main(["advise", "--run", "theirs", "--backup", "--out", str(tmp_path / "advised.yaml")]) == 0
    overrides = [
        f"data.dataset={dataset}",
        "training.backend=peft",
        "training.max_steps=2",
        "training.gradient_accumulation_steps=1",
        "training.eval_steps=2",
    ]
    items = {item.key: item for item in checklist.check(configs.load(written, overrides))}
    failing = {key: item.why for key, item in items.items() if not item.passed}
    # evaluated before `import --as-phase` read the folder again, backed up by `advise --backup`: only the
    # diagnosis stands in the way (the tiny model's 24 steps barely move its loss: "not learning"), and the
    # learning rate is checked against their run's (the imported config's) by the table for that scenario
    assert failing.keys() == {"continue_from", "learning_rate"}, failing
    assert "not learning" in failing["continue_from"] and "scenario 4 (not learning)" in failing["learning_rate"]
    reason = "phase.override_reason=a continue phase from their run, two steps"
    argv = ["train", "--config", str(written), *(a for o in [*overrides, reason] for a in ("--set", o))]
    assert cli.main(argv) == 0
    assert f"{written.stem}: finished" in capsys.readouterr().out
    phase = store.runs.for_output_dir(paths.resolve_output_dir(configs.load(written).training.output_dir))
    assert phase is not None and (phase.status, phase.phase_kind, phase.backend) == ("finished", "continue", "peft")
    assert phase.parent_checkpoint == last and phase.parent_run == store.runs.named("theirs").id  # its lineage
    assert "lora.r" not in phase.changes  # diffed against the imported run's config: the same adapter shape
    assert phase.override_reason == reason.split("=", 1)[1] and phase.checklist is not None
    assert phase.base_model == str(tiny_model)  # their base model, read from adapter_config.json
    assert [p.step for p in store.metrics.curve([phase.id], ["loss"])] == [1, 2]
    saved = store.checkpoints.of_runs([phase.id])
    assert [c.step for c in saved] == [2] and Path(saved[0].path).parent == Path(phase.output_dir)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # read only, through all of it


# ---- a run made by TRL SFTTrainer (plain, and as Unsloth users run it) ----------------------------

# The script a TRL user runs, in a process of its own: `import unsloth` patches transformers, TRL and PEFT for
# the whole process, so this test process never imports it (the studio imports it only in its training worker).
TRL_SCRIPT = """
import sys

if sys.argv[3] == "unsloth":
    import unsloth  # noqa: F401  (first, as Unsloth's guides say: it patches TRL's SFTTrainer)
import datasets
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

tiny, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
texts = [f"@startuml\\nA{i} -> B\\n@enduml" for i in range(16)]  # 14 tokens a row: the vocabulary is the cost
rows = datasets.Dataset.from_dict({"text": texts})
args = SFTConfig(
    output_dir=out, max_steps=4, per_device_train_batch_size=1, per_device_eval_batch_size=2, learning_rate=5e-3,
    logging_steps=1, eval_strategy="steps", eval_steps=2, save_steps=2, report_to=[], bf16=False, fp16=False,
    use_cpu=not torch.cuda.is_available(),
)
lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
SFTTrainer(
    model=AutoModelForCausalLM.from_pretrained(tiny), args=args, train_dataset=rows, eval_dataset=rows.select(range(2)),
    processing_class=AutoTokenizer.from_pretrained(tiny), peft_config=lora,
).train()
print("trained by", SFTTrainer.__module__, "with unsloth" if "unsloth" in sys.modules else "alone")
"""


def train_with_trl(tiny_model: Path, out: Path, flavour: str) -> str:
    """TRL `SFTTrainer` + PEFT LoRA on the tiny model, 4 steps, eval loss and a checkpoint every 2: `flavour` "trl"
    (TRL alone) or "unsloth" (Unsloth imported first). Returns the script's last line.

    TRL 1.15 alone computes every loss, in training and in evaluation, through its fused LM head
    (`SFTTrainer.compute_loss` always calls `model(..., fused_lm_head=True)`, whatever SFTConfig says:
    use_cpu, bf16/fp16, packing, padding_free, use_liger_kernel, completion_only_loss, loss_type), a Triton
    kernel (`trl.kernels.chunked_logprob.ChunkedLogProbFunction`). Without a GPU, Triton has no driver to launch
    it on and the first step fails with `RuntimeError: 0 active drivers ([]). There should only be one.`; so on a
    CPU the kernel runs in Triton's own interpreter (TRITON_INTERPRET=1: TRL's kernel code itself, slowly, hence
    the short rows). Unsloth replaces that kernel with its own, which runs on a CPU."""
    import torch

    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    if flavour == "trl" and not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", TRL_SCRIPT, str(tiny_model), str(out), flavour],
        cwd=out.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.e2e
@pytest.mark.parametrize("flavour", ["trl", "unsloth"])
def test_a_run_of_trl_sft_trainer_is_imported_with_its_own_metrics(flavour, tiny_model, tmp_path, capsys):
    out = tmp_path / "outputs"
    last = train_with_trl(tiny_model, out, flavour)
    assert last == f"trained by trl.trainer.sft_trainer {'with unsloth' if flavour == 'unsloth' else 'alone'}", last
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert cli.main(["import", str(out), "--name", f"sft-{flavour}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(c["step"], c["weights"]) for c in report["checkpoints"]] == [(2, True), (4, True)]
    assert report["base_model"] == str(tiny_model)
    imported = report["imported"]
    assert imported["origin"]["training.logging_steps"] == adopt.STATE == imported["origin"]["training.eval_steps"]
    assert imported["origin"]["lora.r"] == adopt.ADAPTER_CONFIG and imported["state"]["global_step"] == 4
    run = advise.find_run(f"sft-{flavour}")
    config = advise.run_config(run)
    assert (config.lora.r, config.lora.lora_alpha, sorted(config.lora.target_modules)) == (4, 8, ["q_proj", "v_proj"])
    curve = {name: len(store.metrics.curve([run.id], [name])) for name in ("loss", "eval_loss", "learning_rate")}
    assert curve == {"loss": 4, "eval_loss": 2, "learning_rate": 4}
    # TRL's own metrics come along under their names: entropy, token accuracy, tokens seen
    for name, points in (("mean_token_accuracy", 4), ("entropy", 4), ("num_tokens", 4), ("eval_entropy", 2)):
        assert len(store.metrics.curve([run.id], [name])) == points, name
    assert [c.step for c in store.checkpoints.of_runs([run.id])] == [2, 4]
    diagnosis = report["diagnosis"]  # four points: too few to judge, said so, never a guessed scenario
    assert diagnosis["scenario"] is None and "4 training-loss points, need" in diagnosis["message"], diagnosis
    start, _ = phases.continue_point(str(out / "checkpoint-4"), config.lora, config.model.base)
    assert start == (out / "checkpoint-4").resolve()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # read only


# ---- the Runs page's "Open a training folder" ----------------------------------------------------

RUNS_PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "runs.py")


def open_folder(folder) -> AppTest:
    page = AppTest.from_file(RUNS_PAGE, default_timeout=60).run()
    page.text_input(key="import_folder").input(str(folder)).run()  # the button is enabled once a folder is typed
    page.button(key="import_open").click()
    return page.run()


def test_the_runs_page_opens_a_training_folder(tmp_path):
    CASES["eval falling then rising"][0](tmp_path / "outputs")
    page = open_folder(tmp_path / "outputs")
    assert not page.exception and not page.error
    assert "Run 'outputs' imported: 1000 steps, 1 checkpoint(s)" in page.success[0].value
    assert advise.PLAIN[3] in [m.value for m in page.markdown]
    assert any("Weights not present in checkpoint-1000" in c.value for c in page.caption)
    assert list(page.dataframe[0].value["run"]) == ["outputs"]  # the table above already lists it


def test_the_runs_page_shows_a_bad_folder_in_one_line(tmp_path):
    (tmp_path / "outputs").mkdir()
    link_to_system_file(tmp_path / "outputs")
    page = open_folder(tmp_path / "outputs")
    assert not page.exception and len(page.error) == 1 and "outside" in page.error[0].value
    assert store.counts()["runs"] == 0
