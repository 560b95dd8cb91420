"""A store that can be lost: a damaged or foreign `studio.duckdb` is one line (CLI and studio), and
`umlstudio store rebuild` makes runs, checkpoints and metrics again from the run folders, equal to
the store before the damage.

One runs root (`lab`) for the module: a fresh run and a continue phase train once on the tiny model;
each test damages the store its own way, rebuilds, and compares with the rows read before any damage.
"""

import json
import math
import os
import shutil

import duckdb
import pytest

from core import cli, store

ROW = {
    "prompt": "A Library has many Books.",
    "diagram_type": "class",
    "plantuml": "@startuml\nclass Library\nclass Book\nLibrary --> Book\n@enduml",
}
TRAINING = dict(
    backend="peft",
    max_steps=4,
    save_steps=2,
    eval_steps=2,
    logging_steps=1,
    max_seq_length=64,
    tokens_per_batch=128,
    learning_rate=5e-3,
    warmup_ratio=0.0,
)


def write_config(folder, name, tiny_model, training=None, phase=None):
    dataset = folder / "dataset"
    if not dataset.is_dir():
        dataset.mkdir(parents=True)
        rows = [ROW, {**ROW, "prompt": "A Shop has Orders."}]
        (dataset / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        (dataset / "validation.jsonl").write_text(json.dumps(ROW) + "\n")
    config = {
        "model": {"base": str(tiny_model)},
        "data": {"dataset": str(dataset), "eval_rows": 1},
        "training": {**TRAINING, "output_dir": name, **(training or {})},
        "lora": {"r": 4, "lora_alpha": 8},
        "phase": phase or {},
    }
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(config))
    return path


def rows() -> dict:
    """What a rebuild must give back: runs, checkpoints and metrics as comparable values."""
    runs = {
        r["id"]: {
            **{
                k: r[k]
                for k in (
                    "name",
                    "output_dir",
                    "phase_kind",
                    "parent_run",
                    "parent_checkpoint",
                    "status",
                    "backend",
                    "base_model",
                )
            },
            "config": json.loads(r["config"]),
            "changes": json.loads(r["changes"] or "{}"),
        }
        for r in store.query_for_tests("SELECT * FROM runs")
    }
    checkpoints = {
        r["path"]: (r["run_id"], r["step"], r["manifest_sha256"])
        for r in store.query_for_tests("SELECT * FROM checkpoints")
    }
    metrics = {
        (r["run_id"], r["step"], r["name"]): (r["value"], r["epoch"])
        for r in store.query_for_tests("SELECT * FROM metrics")
    }
    return {"runs": runs, "checkpoints": checkpoints, "metrics": metrics}


@pytest.fixture(scope="module")
def lab(tmp_path_factory, tiny_model):
    """The runs root with a finished run and a continue phase from its checkpoint-2; the rows before damage."""
    home = tmp_path_factory.mktemp("store-lab")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UMLSTUDIO_HOME", str(home))
        assert cli.main(["train", "--config", str(write_config(home, "first", tiny_model))]) == 0
        phase = {"continue_from": str(home / "first" / "checkpoint-2"), "override_reason": "a test"}
        second = write_config(home, "second", tiny_model, {"learning_rate": 1e-3}, phase)
        assert cli.main(["train", "--config", str(second)]) == 0
        before = rows()
    assert len(before["runs"]) == 2 and len(before["checkpoints"]) == 4 and before["metrics"]
    shutil.copy(home / "studio.duckdb", home / "healthy.duckdb")
    return home, before


def random_bytes(path):
    path.write_bytes(os.urandom(path.stat().st_size))


def truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def another_schema(path):
    path.unlink()
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE runs (id INTEGER, title TEXT)")  # a name of ours, another program's columns
    con.execute("CREATE TABLE invoices (id INTEGER, amount DOUBLE)")
    con.close()


DAMAGE = {"random bytes": random_bytes, "truncated": truncated, "another DuckDB schema": another_schema}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_store_is_one_line_and_rebuilds_as_it_was(how, lab, monkeypatch, capsys):
    home, before = lab
    monkeypatch.setenv("UMLSTUDIO_HOME", str(home))
    store_file = home / "studio.duckdb"
    shutil.copy(home / "healthy.duckdb", store_file)
    store.db._migrated.discard(store_file)
    DAMAGE[how](store_file)
    damaged_bytes = store_file.read_bytes()
    capsys.readouterr()

    code = cli.main(["runs"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: the store ") and "umlstudio store rebuild" in lines[0], lines
    assert store_file.read_bytes() == damaged_bytes  # refusing wrote nothing into it

    assert cli.main(["store", "check"]) == 1  # damaged: said, nothing written
    out = capsys.readouterr().out
    assert "damaged" in out and "lost" in out and store_file.read_bytes() == damaged_bytes

    assert cli.main(["store", "rebuild"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "evaluation" in out and "lost" in out  # what lived only in the store is named
    kept = [p for p in home.glob("studio.duckdb.damaged-*") if p.read_bytes() == damaged_bytes]
    assert kept, "the damaged file was not kept aside"
    after = rows()
    assert after["runs"] == before["runs"]
    assert after["checkpoints"] == before["checkpoints"]
    assert set(after["metrics"]) == set(before["metrics"])
    for key, (value, epoch) in before["metrics"].items():
        got, got_epoch = after["metrics"][key]
        assert math.isclose(got, value, rel_tol=1e-6, abs_tol=1e-9), (key, got, value)  # TensorBoard keeps float32
        assert got_epoch is None or math.isclose(got_epoch, epoch, rel_tol=1e-9), (key, got_epoch, epoch)
    assert cli.main(["runs"]) == 0
    for leftover in home.glob("studio.duckdb.damaged-*"):
        leftover.unlink()


def test_a_healthy_store_is_not_rebuilt_without_force(lab, monkeypatch, capsys):
    home, _ = lab
    monkeypatch.setenv("UMLSTUDIO_HOME", str(home))
    shutil.copy(home / "healthy.duckdb", home / "studio.duckdb")
    store.db._migrated.discard(home / "studio.duckdb")
    assert cli.main(["store", "check"]) == 0
    assert cli.main(["store", "rebuild"]) == 2
    assert "--force" in capsys.readouterr().err


def test_the_studio_shows_the_same_sentence(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("UMLSTUDIO_HOME", str(tmp_path))
    monkeypatch.setenv("UMLSTUDIO_ALLOW_REMOTE", "1")  # AppTest serves on no address at all
    from core.studio import warmup

    monkeypatch.setattr(warmup, "start", lambda: None)  # no PlantUML server for this test
    (tmp_path / "studio.duckdb").write_bytes(os.urandom(4096))
    at = AppTest.from_file(
        str(store.damage.__file__).replace("core/store/damage.py", "studio/navigation.py"), default_timeout=60
    ).run()
    assert not at.exception, at.exception
    assert len(at.error) == 1
    assert at.error[0].value.startswith(f"the store {tmp_path / 'studio.duckdb'} is damaged")
    assert "umlstudio store rebuild" in at.error[0].value
