"""Training on the tiny random Llama: fresh run, exact resume after a real kill -9, continue phase,
the refusals (overwrite, incompatible continue, seed-style resume), a clean SIGTERM stop; both backends.

The tests share one runs root (`lab`) in file order: the reference run trains once and the later
tests build on it. Each worker is a real `python -m core.training.train` process.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import cli, paths, store
from core import config as cfg
from core.errors import UserError
from core.training import checkpoints, runs, train

# Short rows: the tiny model's cost is its 49k-token vocabulary, so few tokens keep each step fast.
THINGS = [
    ("Library", "Book"),
    ("Shop", "Order"),
    ("Team", "Player"),
    ("Farm", "Cow"),
    ("School", "Pupil"),
    ("Garage", "Car"),
    ("Zoo", "Animal"),
    ("Bank", "Account"),
    ("Hotel", "Room"),
    ("Album", "Song"),
]
ROWS = [
    {
        "prompt": f"A {a} has many {b}s.",
        "plantuml": f'@startuml\nclass {a}\nclass {b}\n{a} "1" -- "*" {b}\n@enduml',
        "diagram_type": "class",
    }
    for a, b in THINGS
]
# micro-batches packed by tokens (rows are ~70 tokens: 2 a batch); the SIGTERM test sizes them by rows
SETTINGS = dict(
    max_steps=8,
    tokens_per_batch=160,
    gradient_accumulation_steps=2,
    save_steps=3,
    eval_steps=4,
    logging_steps=1,
    learning_rate=5e-3,
    warmup_ratio=0.0,
    max_seq_length=96,
)
# metrics that must match between runs exactly (tokens/s and elapsed time are wall-clock)
DETERMINISTIC = ("loss", "eval_loss", "learning_rate", "grad_norm")


def write_config(
    folder: Path, name: str, tiny_model, backend="peft", training=None, lora=None, phase=None, rows=ROWS, model=None
) -> Path:
    dataset = folder / "dataset"
    if not dataset.is_dir():
        dataset.mkdir(parents=True)
        (dataset / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (dataset / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    config = {
        "model": {"base": str(tiny_model), **(model or {})},
        "data": {"dataset": str(dataset), "eval_rows": 4},
        "training": {"backend": backend, "output_dir": name, **SETTINGS, **(training or {})},
        "lora": {"r": 4, "lora_alpha": 8, "lora_dropout": 0.1, **(lora or {})},
        "phase": phase or {},
    }
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def metrics(run_id: str) -> dict[tuple[int, str], float]:
    rows = store.query_for_tests("SELECT step, name, value FROM metrics WHERE run_id = ?", [run_id])
    return {(r["step"], r["name"]): r["value"] for r in rows}


def adapter(ckpt: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(ckpt / "adapter_model.safetensors")


def wait_for(condition, what: str, timeout_s: float = 600, process=None):  # generous: the test machine may be busy
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the worker exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return tmp_path_factory.mktemp("lab")


@pytest.fixture
def home(lab, monkeypatch):
    """This module's shared runs root (the autouse fixture gave each test its own)."""
    monkeypatch.setenv("UMLSTUDIO_HOME", str(lab / "home"))
    return lab / "home"


def run_id_of(name: str) -> str:
    return store.runs.for_output_dir(paths.resolve_output_dir(name)).id


@pytest.mark.e2e
def test_a_fresh_run_learns_and_records_everything(lab, home, tiny_model, capsys):
    path = write_config(lab, "ref", tiny_model)
    assert cli.main(["train", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ref: finished" in out and "eval_loss" in out
    assert "packed micro-batches of up to 160 tokens" in out and "s in training steps" in out
    run = store.runs.get(run_id_of("ref"))
    assert (run.status, run.phase_kind, run.backend) == ("finished", "fresh", "peft")
    m = metrics(run.id)
    # loss falls on a small set: validation at the end below step 0, training loss below its start
    assert m[(8, "eval_loss")] < m[(0, "eval_loss")] - 0.05
    assert m[(8, "loss")] < m[(1, "loss")]
    for step in range(1, 9):
        for name in ("loss", "learning_rate", "grad_norm", "tokens_per_s", "elapsed_s", *train.TIME_METRICS):
            assert (step, name) in m, (step, name)
    # where the time went, cumulative: steps, 3 evaluations, 3 saves; the totals at the end hold the last save
    for name in train.TIME_METRICS:
        assert 0 < m[(1, name) if name != "time/checkpoint_s" else (4, name)] <= m[(8, name)], name
    assert (
        sum(m[(7, name)] for name in train.TIME_METRICS) <= m[(7, "elapsed_s")]
    )  # logged together: nothing counted twice
    assert sorted(s for s, name in m if name == "eval_loss") == [0, 4, 8]
    assert m[(1, "learning_rate")] == pytest.approx(5e-3)
    out_dir = Path(run.output_dir)
    assert [c.name for c in checkpoints.list_checkpoints(out_dir)] == ["checkpoint-3", "checkpoint-6", "checkpoint-8"]
    final = out_dir / "checkpoint-8"
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "trainer_state.json",
        checkpoints.INFO,
        checkpoints.MANIFEST,
    ):
        assert (final / name).is_file(), name
    assert checkpoints.verify(final) == []
    info = checkpoints.info(final)
    assert info["run_id"] == run.id and info["step"] == 8 and info["backend"] == "peft"
    assert info["config"] == cfg.load(out_dir / train.CONFIG_FILE).to_dict() and "transformers" in info["versions"]
    recorded = store.query_for_tests("SELECT step FROM checkpoints WHERE run_id = ? ORDER BY step", [run.id])
    assert [r["step"] for r in recorded] == [3, 6, 8]
    assert list((out_dir / train.TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    log = (out_dir / train.LOG_FILE).read_text()
    assert log.count("eval_loss") >= 3
    # `tail -f train.log | grep loss`: a line for each logged step's loss, with its learning rate
    logged = [line for line in log.splitlines() if line.startswith("step ") and ": loss " in line]
    assert [int(line.split()[1].rstrip(":")) for line in logged] == list(range(1, 9))
    assert f"step 1: loss {m[(1, 'loss')]:.4f}, learning_rate 0.005" in logged


@pytest.mark.e2e
def test_resume_after_kill_9_equals_the_uninterrupted_run(lab, home, tiny_model, capsys):
    path = write_config(lab, "killed", tiny_model)
    run_id = train.prepare(cfg.load(path), path)
    with open(lab / "killed.log", "wb") as log:
        worker = subprocess.Popen(train.worker_argv(run_id), cwd=paths.ROOT, stdout=log, stderr=subprocess.STDOUT)

    def saved_then_stepped():
        ckpt = store.query_for_tests("SELECT max(step) AS s FROM checkpoints WHERE run_id = ?", [run_id])[0]["s"]
        step = store.query_for_tests("SELECT max(step) AS s FROM metrics WHERE run_id = ? AND name = 'loss'", [run_id])[
            0
        ]["s"]
        return ckpt and step and step > ckpt

    wait_for(saved_then_stepped, "a checkpoint and a later step", process=worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    listed = {r["id"]: r for r in runs.list_runs()}[run_id]
    assert listed["status"] == "interrupted"  # the row still says running; its worker is gone

    assert cli.main(["train", "--config", str(path), "--set", "training.resume_from_checkpoint=killed"]) == 0
    capsys.readouterr()
    run = store.runs.get(run_id)
    assert run.status == "finished" and store.runs.for_output_dir(run.output_dir).id == run_id
    reference = store.runs.get(run_id_of("ref"))
    a = adapter(Path(reference.output_dir) / "checkpoint-8")
    b = adapter(Path(run.output_dir) / "checkpoint-8")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max().item() < 1e-5, key
    expected, got = metrics(reference.id), metrics(run_id)
    assert set(expected) == set(got)  # every (step, name) once: nothing lost, nothing doubled
    for key in expected:
        if key[1] in DETERMINISTIC:
            assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
    assert all(checkpoints.verify(c) == [] for c in checkpoints.list_checkpoints(run.output_dir))


@pytest.mark.e2e
def test_continue_phase_uses_its_own_learning_rate(lab, home, tiny_model, capsys):
    """Unsloth backend, starting from the peft run's adapter: both write standard PEFT adapters."""
    path = write_config(
        lab,
        "lower",
        tiny_model,
        backend="unsloth",
        training={"learning_rate": 1e-3, "max_steps": 4},
        lora={"lora_dropout": 0.0},
        phase={"continue_from": "ref", "override_reason": "test: checklist not in scope"},
    )
    assert cli.main(["train", "--config", str(path)]) == 0
    capsys.readouterr()
    run = store.runs.get(run_id_of("lower"))
    parent = store.runs.get(run_id_of("ref"))
    assert (run.status, run.phase_kind, run.backend) == ("finished", "continue", "unsloth")
    checklist = run.checklist  # stored with the run, beside the override reason
    assert len(checklist) == 7 and {"key", "title", "passed", "why"} <= set(checklist[0])
    assert run.parent_run == parent.id
    assert run.parent_checkpoint == str(Path(parent.output_dir) / "checkpoint-8")
    changes = run.changes
    assert changes["training.learning_rate"] == [5e-3, 1e-3] and changes["lora.lora_dropout"] == [0.1, 0.0]
    m = metrics(run.id)
    used = [m[(s, "learning_rate")] for s in range(1, 5)]
    assert used[0] == pytest.approx(1e-3) and max(used) == pytest.approx(1e-3)  # the new LR, from step 1
    assert (4, "loss") in m
    # step 0 evaluates the parent's weights: the phase starts where the parent ended
    assert m[(0, "eval_loss")] == pytest.approx(metrics(parent.id)[(8, "eval_loss")], rel=1e-3)
    assert [c.name for c in checkpoints.list_checkpoints(run.output_dir)] == ["checkpoint-3", "checkpoint-4"]
    assert checkpoints.info(Path(run.output_dir) / "checkpoint-4")["backend"] == "unsloth"


@pytest.mark.e2e
def test_refusals_name_the_problem_and_write_nothing(lab, home, tiny_model, capsys):
    before = store.query_for_tests("SELECT count(*) AS n FROM runs")[0]["n"]
    # another run's output_dir
    path = write_config(lab, "ref", tiny_model, training={"learning_rate": 1e-3})
    assert cli.main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "holds run 'ref'" in err and "new training.output_dir" in err
    # continue with another rank: refused with the reason
    path = write_config(
        lab, "wider", tiny_model, lora={"r": 8}, phase={"continue_from": "ref", "override_reason": "test"}
    )
    assert cli.main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "lora.r 8 vs the checkpoint's 4" in err and "fresh run" in err
    assert not (home / "wider").exists()
    # a compatible continue phase still needs the pre-continue checklist (or an override reason)
    path = write_config(lab, "unchecked", tiny_model, phase={"continue_from": "ref"})
    assert cli.main(["train", "--config", str(path)]) == 2
    assert "pre-continue checks fail" in capsys.readouterr().err
    assert not (home / "unchecked").exists()
    assert store.query_for_tests("SELECT count(*) AS n FROM runs")[0]["n"] == before


@pytest.mark.e2e
def test_seed_style_resume_with_a_new_lr_is_refused_with_the_fix_or_run_as_a_phase(lab, home, tiny_model, capsys):
    path = write_config(
        lab, "ref", tiny_model, training={"learning_rate": 5e-4, "max_steps": 12, "resume_from_checkpoint": "ref"}
    )
    before = store.query_for_tests("SELECT count(*) AS n FROM runs")[0]["n"]
    assert cli.main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "training.learning_rate: 0.005 -> 0.0005" in err and "old learning rate 0.005" in err
    assert "training.max_steps: 8 -> 12" in err and "steps are a total" in err
    assert "phase: {continue_from:" in err and "ref_phase2" in err and "--as-phase" in err
    assert store.query_for_tests("SELECT count(*) AS n FROM runs")[0]["n"] == before
    assert not (home / "ref_phase2").exists()

    # the seed's "continue" example: same settings, resume_from_checkpoint and a new output_dir
    assert (
        cli.main(
            [
                "train",
                "--config",
                str(path),
                "--set",
                "training.learning_rate=5e-3",
                "--set",
                "training.max_steps=8",
                "--set",
                "training.output_dir=ref_extended",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        "training.output_dir" in err
        and "its own folder" in err
        and f"training.output_dir: {home / 'ref_extended'}" in err
    )
    assert not (home / "ref_extended").exists()

    config = cfg.load(path, ["phase.override_reason=test"])
    run_id = train.prepare(config, path, as_phase=True)
    run = store.runs.get(run_id)
    ref = store.runs.get(run_id_of("ref"))
    assert run.phase_kind == "continue" and run.output_dir == str(home / "ref_phase2")
    assert run.parent_run == ref.id and run.parent_checkpoint == str(Path(ref.output_dir) / "checkpoint-8")
    assert run.changes["training.learning_rate"] == [5e-3, 5e-4]
    written = cfg.load(home / "ref_phase2" / train.CONFIG_FILE)
    assert written.training.resume_from_checkpoint is None and written.phase.continue_from == run.parent_checkpoint
    assert "--as-phase: a continue phase" in capsys.readouterr().out


@pytest.mark.e2e
def test_sigterm_stops_with_a_final_checkpoint(lab, home, tiny_model, capsys):
    """The studio's path: a detached worker, stopped through core.training.runs."""
    path = write_config(
        lab,
        "stopped",
        tiny_model,
        training={
            "max_steps": 500,
            "save_steps": 100,
            "eval_steps": 100,
            "tokens_per_batch": None,
            "rows_per_micro_batch": 2,
        },
    )
    run_id = runs.start_worker(cfg.load(path), path)
    run = store.runs.get(run_id)
    wait_for(
        lambda: (
            store.query_for_tests("SELECT count(*) AS n FROM metrics WHERE run_id = ? AND name = 'loss'", [run_id])[0][
                "n"
            ]
            >= 2
        ),
        "two logged steps",
    )
    assert runs.stop_worker(run_id)
    wait_for(lambda: store.runs.get(run_id).status != "running", "the worker to stop")
    run = store.runs.get(run_id)
    assert run.status == "stopped"
    last = max(s for s, name in metrics(run_id) if name == "loss")
    ckpts = checkpoints.list_checkpoints(run.output_dir)
    assert ckpts and checkpoints.step_of(ckpts[-1]) == last < 500
    assert checkpoints.verify(ckpts[-1]) == []
    assert "SIGTERM: stopping" in (Path(run.output_dir) / train.LOG_FILE).read_text()
    assert not runs.stop_worker(run_id)  # nothing left to stop
    listed = {r["id"]: r for r in runs.list_runs()}[run_id]
    assert (listed["status"], listed["steps"], listed["learning_rate_config"]) == ("stopped", last, 5e-3)
    assert cli.main(["runs", "--json"]) == 0
    assert run_id in capsys.readouterr().out


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["peft", "unsloth"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_both_backends_train_in_both_cpu_dtypes(lab, home, tiny_model, capsys, backend, dtype):
    """bf16 is forced whatever the host computes natively (emulated bf16 is slow, the tiny model is small), so a
    CPU without AMX / AVX512-BF16 still runs the path that such a CPU's `dtype: auto` picks."""
    name = f"matrix_{backend}_{dtype}"
    path = write_config(
        lab,
        name,
        tiny_model,
        backend=backend,
        training={"max_steps": 2, "save_steps": 2, "eval_steps": 2},
        lora={"lora_dropout": 0.0},
    )
    assert cli.main(["train", "--config", str(path), "--set", f"model.dtype={dtype}"]) == 0
    out = capsys.readouterr().out
    assert f"{backend} backend, torch.{dtype}" in out
    run = store.runs.get(run_id_of(name))
    assert (run.status, run.backend) == ("finished", backend)
    m = metrics(run.id)
    assert all(v == v and abs(v) < 1e4 for (_, key), v in m.items() if key in ("loss", "eval_loss"))  # finite
    assert checkpoints.verify(Path(run.output_dir) / "checkpoint-2") == []


@pytest.mark.e2e
def test_early_stopping_ends_the_phase_with_its_best_checkpoint_kept_and_says_so(lab, home, tiny_model, capsys):
    # a threshold no evaluation can beat: after the first one of the phase's own (step 2; step 0's is the starting
    # point, not a candidate), every evaluation counts against the patience, so the phase stops at the second one
    # after it (step 6 of 40); every new best is saved (save_steps saves none)
    training = {"max_steps": 40, "eval_steps": 2, "save_steps": 1000}
    early = {"early_stopping_patience": 2, "early_stopping_threshold": 100.0}
    path = write_config(lab, "early", tiny_model, training={**training, **early})
    assert cli.main(["train", "--config", str(path)]) == 0
    run = store.runs.get(run_id_of("early"))
    assert run.status == "finished"
    m = metrics(run.id)
    assert max(s for s, name in m if name == "loss") == 6
    assert sorted(s for s, name in m if name == "eval_loss") == [0, 2, 4, 6]
    best_step = min((2, 4, 6), key=lambda s: m[(s, "eval_loss")])
    assert m[(6, "early_stopped")] == best_step  # the end, recorded for the advisor: the best evaluation's step
    best, value = checkpoints.best(run)
    assert best.name == f"checkpoint-{best_step}" and value == m[(best_step, "eval_loss")]
    assert checkpoints.verify(best) == []
    state = json.loads((best / "trainer_state.json").read_text())
    assert state["best_global_step"] == best_step  # transformers marks the same one
    out = capsys.readouterr().out
    assert "early stopping at step 6: 2 evaluations without a validation loss below" in out
    assert f"by more than 100 (the best: step {best_step}, its checkpoint kept)" in out


@pytest.mark.e2e
def test_mlflow_records_the_run_in_a_local_file_store_offline(lab, home, tiny_model, capsys, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow-skinny is in the test extra: pip install -e '.[test]'")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default: a file store under the runs root
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # for the test's own client (the worker sets it too)
    path = write_config(lab, "tracked", tiny_model, training={"max_steps": 2, "report_to": ["tensorboard", "mlflow"]})
    assert cli.main(["train", "--config", str(path)]) == 0
    run = store.runs.get(run_id_of("tracked"))
    client = MlflowClient(tracking_uri=(home / "mlruns").as_uri())
    [tracked] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert tracked.info.run_name == "tracked" and tracked.info.status == "FINISHED"
    logged = {p.step: p.value for p in client.get_metric_history(tracked.info.run_id, "loss")}
    assert logged == pytest.approx({s: v for (s, name), v in metrics(run.id).items() if name == "loss"})
    assert list((Path(run.output_dir) / train.TENSORBOARD_DIR).glob("events.out.tfevents.*"))  # tensorboard too


@pytest.mark.e2e
def test_wandb_runs_offline_where_installed_and_is_refused_in_one_line_where_not(lab, home, tiny_model, monkeypatch):
    import importlib.util

    path = write_config(lab, "wandb", tiny_model, training={"max_steps": 2, "report_to": ["wandb"]})
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(UserError, match=r"training.report_to: wandb is not installed here — pip install wandb"):
            train.prepare(cfg.load(path), path)
        assert not paths.resolve_output_dir("wandb").exists() and store.runs.named("wandb") is None
    else:
        monkeypatch.setenv("WANDB_MODE", "offline")  # nothing leaves the machine
        assert cli.main(["train", "--config", str(path)]) == 0
        assert list((paths.resolve_output_dir("wandb") / "wandb").glob("offline-run-*"))
    with pytest.raises(UserError, match="report_to: unknown tracker 'neptune'"):
        cfg.parse({"training": {"report_to": ["neptune"]}})


@pytest.mark.e2e
def test_a_time_budget_becomes_measured_steps_and_a_stop(lab, home, tiny_model, capsys):
    budget_min = 0.2
    path = write_config(
        lab,
        "budget",
        tiny_model,
        training={
            "max_steps": -1,
            "num_train_epochs": 100,
            "eval_steps": 5,
            "save_steps": 1000,
            "time_budget_minutes": budget_min,
        },
    )
    # float32 on every host: emulated bf16 on a loaded CPU without it can take longer than the whole budget
    # for one step (the dtype matrix is test_both_backends_train_in_both_cpu_dtypes' job)
    assert cli.main(["train", "--config", str(path), "--set", "model.dtype=float32"]) == 0
    out = capsys.readouterr().out
    assert "time budget 0.2 min: a step takes" in out and "so this phase trains" in out
    planned = int(out.split("so this phase trains ")[1].split()[0])
    # priced again at each evaluation at the phase's own pace: "max_steps 40 -> 52, the learning-rate schedule with it"
    replans = [
        line.split("max_steps ")[1].split(",")[0].split(" -> ") for line in out.splitlines() if "max_steps " in line
    ]
    length = planned
    for before, after in replans:
        assert int(before) == length  # each replan starts from the length the one before set
        length = int(after)
    run = store.runs.get(run_id_of("budget"))
    assert run.status == "finished"
    m = metrics(run.id)
    last = max(s for s, name in m if name == "loss")
    assert 1 <= last <= length <= 250  # 100 epochs of 10 rows would be 250 steps: the budget decided
    assert m[(last, "elapsed_s")] <= budget_min * 60 + 20  # the stop holds the budget (one step and a save of slack)
    if last == length:  # ended by its steps, not the budget's stop: the schedule ended there too
        # the schedule given the new length: the rate of the last step (logged before its decay) is the
        # smallest, a fraction of the peak, not where the first plan's schedule would have been
        rates = [value for (step, name), value in m.items() if name == "learning_rate"]
        assert m[(last, "learning_rate")] == min(rates) <= 0.25 * max(rates)
    ckpts = checkpoints.list_checkpoints(run.output_dir)
    assert ckpts and checkpoints.step_of(ckpts[-1]) == last


@pytest.mark.e2e
def test_a_worker_killed_by_a_signal_is_explained_with_how_to_resume(lab, home, tiny_model):
    """`umlstudio train` attached: the worker dies of SIGKILL (as the out-of-memory killer does it)."""
    path = write_config(lab, "oom", tiny_model, training={"max_steps": 500, "save_steps": 2, "eval_steps": 100})
    cli_process = subprocess.Popen(
        [sys.executable, "-m", "core", "train", "--config", str(path)],
        cwd=paths.ROOT,
        env={**os.environ, "UMLSTUDIO_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(
        lambda: (
            store.runs.for_output_dir(paths.resolve_output_dir("oom")) is not None
            and store.query_for_tests("SELECT count(*) AS n FROM checkpoints WHERE run_id = ?", [run_id_of("oom")])[0][
                "n"
            ]
            >= 1
        ),
        "a first checkpoint",
        process=cli_process,
    )
    os.kill(store.runs.get(run_id_of("oom")).pid, signal.SIGKILL)
    out, err = cli_process.communicate(timeout=120)
    assert cli_process.returncode == 128 + signal.SIGKILL
    assert "error: the training worker was killed by SIGKILL" in err and "out of memory" in err
    assert "training.resume_from_checkpoint=" in err and "its latest checkpoint is checkpoint-" in err
    assert "Traceback" not in err


def test_packing_fills_micro_batches_by_tokens_or_rows():
    rows = [{"input_ids": [i] * n, "labels": [-100] * n} for i, n in enumerate([30, 50, 20, 60, 10, 40, 90, 5])]
    batches = train.pack(rows, tokens_per_batch=100, rows_per_batch=4, seed=3)
    assert train.pack(rows, 100, 4, seed=3) == batches  # seeded: a resume packs the same batches
    sizes = [sum(len(ids) for ids in b["input_ids"]) for b in batches]
    assert max(sizes) <= 100 and sum(sizes) == 305
    assert sorted(ids[0] for b in batches for ids in b["input_ids"]) == list(range(8))  # every row once
    by_rows = train.pack(rows, None, 3)  # no token budget: 3 rows a batch, in the rows' own order
    assert [[ids[0] for ids in b["input_ids"]] for b in by_rows] == [[0, 1, 2], [3, 4, 5], [6, 7]]


def test_a_packed_batch_has_the_loss_and_gradients_of_its_rows_alone(tiny_model):
    """Rows end to end with restarting position_ids (backends.PACKED_ATTENTION), logits only where an
    answer token is predicted: those logits are each row's run alone, the loss is the mean answer-token
    loss of the rows run one at a time (all logits), and so are the gradients (fp32, 1e-4). The same
    rows as one causal sequence (attention across rows) give other logits: the check can fail."""
    import torch
    from transformers import AutoModelForCausalLM

    from core.training import backends, models

    tokenizer = models.load_tokenizer(str(tiny_model))
    rows = train.encode_rows(
        tokenizer, [{**r, "prompt": r["prompt"] * (1 + i % 3)} for i, r in enumerate(ROWS[:6])], 96
    )
    [batch] = train.pack(rows, tokens_per_batch=4096, rows_per_batch=1)
    packed = train.Flatten(answer_logits_only=True)([batch])
    assert packed["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows)) and "attention_mask" not in packed

    model = AutoModelForCausalLM.from_pretrained(
        tiny_model, dtype=torch.float32, attn_implementation=backends.register_packed_attention()
    )
    model.config.use_cache = False  # as in training
    out = model(**packed)
    out.loss.backward()
    grad = model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    model.zero_grad()

    total, count, logits = 0.0, 0, []
    for row in rows:  # one row at a time, no packing: summed token losses over all answer tokens
        labels = torch.tensor([row["labels"]])
        n = int((labels[:, 1:] != -100).sum())
        alone = model(input_ids=torch.tensor([row["input_ids"]]), labels=labels)
        (alone.loss * n).backward()
        total, count = total + alone.loss.item() * n, count + n
        logits.append(alone.logits.detach())
    logits = torch.cat(logits, dim=1)
    alone_grad = model.model.layers[0].self_attn.q_proj.weight.grad / count
    keep = packed["logits_to_keep"]  # logits only where the next token is an answer token: one per target
    assert out.logits.shape[1] == len(keep) == count < packed["input_ids"].shape[1]
    assert (out.logits.detach() - logits[:, keep]).abs().max().item() < 1e-4
    assert abs(out.loss.item() - total / count) < 1e-4
    assert (grad - alone_grad).abs().max().item() < 1e-4 * alone_grad.abs().max().item() + 1e-7

    # transformers' own sdpa builds a dense block-causal mask from the same position_ids (no cache):
    # the same logits, at the cost of the whole packed length squared
    dense = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa")
    with torch.no_grad():
        assert (dense(**packed, use_cache=False).logits - logits[:, keep]).abs().max().item() < 1e-4
        across = dense(input_ids=packed["input_ids"], use_cache=False).logits  # one causal sequence
    assert (across - logits).abs().max().item() > 1e-2


def test_a_micro_batch_smaller_than_a_row_is_refused():
    with pytest.raises(UserError, match="tokens_per_batch 256 is below max_seq_length 512"):
        cfg.parse({"training": {"tokens_per_batch": 256, "max_seq_length": 512}})
