"""Training in 2 processes (DDP, gloo on the CPU) on the tiny random Llama, against 1 process on the
same global batch: the same losses, one run row, metrics and checkpoint files written once; a rank
killed by SIGKILL leaves the run interrupted and the resume ends where the uninterrupted run ended;
SIGTERM stops every rank with a final checkpoint.

Tolerance: the 2-process loss is the 1-process loss summed in another order (each rank's token
losses, all-reduced), so they agree to float32 rounding; 1e-4 relative is far above that (measured
~1e-7) and far below what one different row in a batch would change.

The tests share one runs root in file order: the 2-process reference run trains once.
"""

import json
import os
import signal
import time
from pathlib import Path

import pytest
from test_train import metrics
from test_train import write_config as train_config

from core import cli, store
from core import config as cfg
from core.training import checkpoints, distributed, phases, runs, train

# 16 short rows: 2 optimizer steps an epoch at a global batch of 8 (the tiny model's cost is its vocabulary)
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
    ("City", "Street"),
    ("Ship", "Cabin"),
    ("Band", "Gig"),
    ("Court", "Case"),
    ("Park", "Tree"),
    ("Club", "Member"),
]
ROWS = [
    {
        "prompt": f"A {a} has many {b}s.",
        "plantuml": f'@startuml\nclass {a}\nclass {b}\n{a} "1" -- "*" {b}\n@enduml',
        "diagram_type": "class",
    }
    for a, b in THINGS
]
# a global batch of 8 rows: 1 process x 4 micro-batches of 2 rows, or 2 processes x 2 micro-batches of 2 rows each
SETTINGS = dict(
    max_steps=6,
    rows_per_micro_batch=2,
    save_steps=3,
    eval_steps=3,
    logging_steps=1,
    learning_rate=5e-3,
    warmup_ratio=0.0,
    max_seq_length=96,
)
DETERMINISTIC = ("loss", "eval_loss", "learning_rate", "grad_norm")

two_cores = pytest.mark.skipif(distributed.cores() < 2, reason="2 processes need 2 CPU cores")


def write_config(folder: Path, name: str, tiny_model, processes: int, backend="peft", training=None) -> Path:
    """test_train's config on these 16 rows, in `processes` processes at the same global batch, without
    dropout (1 and 2 processes draw their masks differently), in float32 on every host (the tolerance
    below is float32 rounding; a CPU with native bf16 would pick bf16)."""
    return train_config(
        folder,
        name,
        tiny_model,
        backend,
        rows=ROWS,
        lora={"lora_dropout": 0.0},
        model={"dtype": "float32"},
        training={
            "tokens_per_batch": None,
            "processes": processes,
            "gradient_accumulation_steps": 4 // processes,
            **SETTINGS,
            **(training or {}),
        },
    )


def run_named(name: str) -> dict:
    return store.query_for_tests("SELECT * FROM runs WHERE name = ?", [name])[0]


def wait_for(condition, what: str, timeout_s: float = 300):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def ranks_of(launcher_pid: int) -> dict[int, int]:
    """{rank: pid} of the launcher's children."""
    children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split()
    out = {}
    for pid in map(int, children):
        env = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
        if "RANK" in env:
            out[int(env["RANK"])] = pid
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return tmp_path_factory.mktemp("ddp")


@pytest.fixture
def home(lab, monkeypatch):
    monkeypatch.setenv("UMLSTUDIO_HOME", str(lab / "home"))
    return lab / "home"


@pytest.mark.ddp
@two_cores
def test_two_processes_train_like_one_on_the_same_global_batch(lab, home, tiny_model, capsys):
    assert cli.main(["train", "--config", str(write_config(lab, "one", tiny_model, 1))]) == 0
    # unsloth asked for: 2 processes train with peft, and say so in one line
    assert (
        cli.main(
            [
                "train",
                "--config",
                str(write_config(lab, "two", tiny_model, 2, backend="unsloth", training={"processes": 1})),
                "--processes",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "training.processes 2: unsloth's open-source build trains on one GPU; training with peft" in out
    one, two = run_named("one"), run_named("two")
    assert (
        store.query_for_tests("SELECT count(*) AS n FROM runs")[0]["n"] == 2
    )  # one row per run, whatever the processes
    assert (two["status"], two["backend"], json.loads(two["config"])["training"]["processes"]) == (
        "finished",
        "peft",
        2,
    )

    expected, got = metrics(one["id"]), metrics(two["id"])
    assert set(expected) == set(got) and (6, "loss") in got  # every (step, name) logged once, by rank 0
    for key in expected:
        if key[1] in DETERMINISTIC:
            assert got[key] == pytest.approx(expected[key], rel=1e-4), key
    assert got[(6, "loss")] < got[(1, "loss")]  # and it learns

    out_dir = Path(two["output_dir"])
    recorded = store.query_for_tests("SELECT step FROM checkpoints WHERE run_id = ? ORDER BY step", [two["id"]])
    assert [r["step"] for r in recorded] == [3, 6]
    for ckpt in checkpoints.list_checkpoints(out_dir):
        assert checkpoints.verify(ckpt) == []  # the manifest lists every rank's files
        assert {"rng_state_0.pth", "rng_state_1.pth", "optimizer.pt"} <= set(
            json.loads((ckpt / checkpoints.MANIFEST).read_text())
        )
    assert len(list((out_dir / train.TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 1
    log = (out_dir / train.LOG_FILE).read_text()
    assert log.count("peft backend, torch.float32, 16 training rows") == 1  # rank 1 wrote to its own log
    assert "peft backend" in distributed.rank_log(out_dir, 1).read_text()
    from safetensors.torch import load_file

    a, b = (load_file(Path(r["output_dir"]) / "checkpoint-6" / "adapter_model.safetensors") for r in (one, two))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


@pytest.mark.ddp
@two_cores
def test_a_rank_killed_by_sigkill_leaves_the_run_interrupted_and_resume_finishes_it(lab, home, tiny_model, capsys):
    """The studio's path: a detached launcher; kill -9 of rank 1 after a checkpoint and a later step."""
    path = write_config(lab, "killed", tiny_model, 2, training={"save_steps": 2})
    run_id = runs.start_worker(cfg.load(path), path)

    def saved_then_stepped():
        ckpt = store.query_for_tests("SELECT max(step) AS s FROM checkpoints WHERE run_id = ?", [run_id])[0]["s"]
        step = store.query_for_tests("SELECT max(step) AS s FROM metrics WHERE run_id = ? AND name = 'loss'", [run_id])[
            0
        ]["s"]
        return ckpt and step and step > ckpt and step < 6

    wait_for(saved_then_stepped, "a checkpoint and a later step")
    launcher = store.runs.get(run_id).pid
    os.kill(ranks_of(launcher)[1], signal.SIGKILL)
    wait_for(lambda: not phases.worker_alive(store.runs.get(run_id)), "the launcher to end", timeout_s=120)
    assert {r["id"]: r for r in runs.list_runs()}[run_id]["status"] == "interrupted"
    log = (Path(store.runs.get(run_id).output_dir) / train.LOG_FILE).read_text()
    assert (
        "error: rank 1: the training worker was killed by SIGKILL" in log and "training.resume_from_checkpoint=" in log
    )

    assert cli.main(["train", "--config", str(path), "--set", "training.resume_from_checkpoint=killed"]) == 0
    capsys.readouterr()
    run = store.runs.get(run_id)
    assert run.status == "finished"
    expected, got = metrics(run_named("two")["id"]), metrics(run_id)
    assert set(expected) == set(got)  # nothing lost, nothing doubled
    for key in expected:
        if key[1] in DETERMINISTIC:
            assert got[key] == pytest.approx(expected[key], rel=1e-4), key
    assert all(checkpoints.verify(c) == [] for c in checkpoints.list_checkpoints(run.output_dir))


@pytest.mark.ddp
@two_cores
def test_a_resume_keeps_the_number_of_processes(lab, home, tiny_model, capsys):
    path = write_config(lab, "killed", tiny_model, 2, training={"save_steps": 2})
    argv = ["train", "--config", str(path), "--set", "training.resume_from_checkpoint=killed", "--processes", "1"]
    assert cli.main(argv) == 2
    assert "training.processes" in capsys.readouterr().err


@pytest.mark.ddp
@two_cores
def test_sigterm_stops_every_rank_with_a_final_checkpoint(lab, home, tiny_model):
    """The studio's Stop: SIGTERM to the run's process (the launcher) reaches both ranks, which stop after the
    same step."""
    path = write_config(
        lab, "stopped", tiny_model, 2, training={"max_steps": 500, "save_steps": 100, "eval_steps": 100}
    )
    run_id = runs.start_worker(cfg.load(path), path)
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
    wait_for(lambda: not phases.worker_alive(store.runs.get(run_id)), "the launcher to end", timeout_s=120)
    run = store.runs.get(run_id)
    assert run.status == "stopped"
    last = max(s for s, name in metrics(run_id) if name == "loss")
    ckpts = checkpoints.list_checkpoints(run.output_dir)
    assert ckpts and checkpoints.step_of(ckpts[-1]) == last < 500
    assert checkpoints.verify(ckpts[-1]) == [] and (ckpts[-1] / "rng_state_1.pth").is_file()
    assert "SIGTERM: stopping" in distributed.rank_log(run.output_dir, 1).read_text()


def test_a_checkpoint_older_than_the_processes_key_resumes_as_one_process():
    now = cfg.Config().to_dict()
    older = json.loads(json.dumps(now))
    del older["training"]["processes"]
    assert phases.resume_changes(older, now) == {}
    now["training"]["processes"] = 2
    assert phases.resume_changes(older, now) == {"training.processes": [1, 2]}


def test_unsloth_is_swapped_for_peft_only_for_several_processes():
    assert distributed.backend_for("unsloth", 1) == ("unsloth", None)
    assert distributed.backend_for("peft", 4) == ("peft", None)
    choice, notice = distributed.backend_for("auto", 2)
    assert choice == "peft" and "unsloth's open-source build trains on one GPU" in notice
