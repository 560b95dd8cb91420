import json
import os
import subprocess
import sys
import textwrap
import threading

import duckdb

from core import paths, store

TABLES = {"runs", "metrics", "checkpoints", "evaluations", "generations", "renders", "acknowledgements"}


def test_migrations_on_an_empty_database(tmp_path):
    con = duckdb.connect(str(tmp_path / "empty.duckdb"))
    applied = store.migrate(con)
    assert applied == [m.__name__ for m in store.MIGRATIONS]
    tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert TABLES | {"schema_migrations"} <= tables
    assert store.migrate(con) == []  # idempotent: nothing applied twice
    con.close()


def test_store_lives_under_umlstudio_home(tmp_path, monkeypatch):
    monkeypatch.setenv("UMLSTUDIO_HOME", str(tmp_path / "elsewhere"))
    assert paths.store_path() == tmp_path / "elsewhere" / "studio.duckdb"
    store.create_run(name="r", output_dir=tmp_path / "r", phase_kind="fresh", config={})
    assert (tmp_path / "elsewhere" / "studio.duckdb").is_file()


def test_a_step_logged_again_replaces_its_rows():
    run = store.create_run(name="r", output_dir="/x", phase_kind="fresh", config={"a": 1})
    store.log_metrics(run, 10, 0.5, {"loss": 2.0, "learning_rate": 1e-4})
    store.log_metrics(run, 10, 0.5, {"loss": 1.5})
    rows = store.query("SELECT name, value FROM metrics WHERE run_id = ? ORDER BY name", [run])
    assert rows == [{"name": "learning_rate", "value": 1e-4}, {"name": "loss", "value": 1.5}]
    store.log_metrics(run, 20, 1.0, {"loss": 1.0})
    store.delete_metrics_after(run, 10)
    assert store.query("SELECT max(step) AS s FROM metrics WHERE run_id = ?", [run]) == [{"s": 10}]


def test_run_rows_round_trip():
    run = store.create_run(name="p2", output_dir="/o", phase_kind="continue", config={"lr": 3e-5},
                           parent_run="abc", parent_checkpoint="/o1/checkpoint-5", changes={"lr": [1e-4, 3e-5]})
    store.update_run(run, status="running", pid=123)
    row = store.get_run(run)
    assert row["status"] == "running" and row["pid"] == 123 and row["parent_checkpoint"] == "/o1/checkpoint-5"
    assert json.loads(row["changes"]) == {"lr": [1e-4, 3e-5]}
    assert store.run_for_output_dir("/o")["id"] == run


def test_a_session_opens_the_store_once_and_shares_its_transaction(monkeypatch):
    """In a `session` block every store call of the thread uses one connection: the reads in it open the
    store once, a write in it commits or rolls back with the block, and another thread waits."""
    run = store.create_run(name="r", output_dir="/o", phase_kind="fresh", config={})
    opened = []
    real = store.duckdb.connect
    monkeypatch.setattr(store.duckdb, "connect", lambda *a, **k: opened.append(a) or real(*a, **k))
    with store.session():
        for _ in range(3):
            store.get_run(run)
        store.query_df("SELECT * FROM runs")
        with store.connect() as one, store.connect() as other:
            assert one is other
    assert len(opened) == 1
    store.get_run(run)
    assert len(opened) == 2  # outside a block, one connection a read again

    try:
        with store.session():
            store.update_run(run, status="running")
            assert store.get_run(run)["status"] == "running"  # the block sees its own write
            raise KeyError("the page failed")
    except KeyError:
        pass
    assert store.get_run(run)["status"] == "created"  # rolled back with the block

    seen = []
    with store.session():
        store.update_run(run, status="finished")
        other = threading.Thread(target=lambda: seen.append(store.get_run(run)["status"]))
        other.start()
        other.join(timeout=0.5)
        assert other.is_alive()  # another thread waits for the block's lock
    other.join(timeout=60)
    assert seen == ["finished"]


WRITER = textwrap.dedent(
    """
    import sys
    from core import store
    run, n = sys.argv[1], int(sys.argv[2])
    for step in range(n):
        store.log_metrics(run, step, step / n, {"loss": 1.0 / (step + 1), "tokens_per_s": 100.0})
    """
)
READER = textwrap.dedent(
    """
    import sys
    from core import store
    for _ in range(int(sys.argv[1])):
        store.query("SELECT count(*) FROM metrics")
        store.query_df("SELECT * FROM runs")
    """
)


def test_concurrent_processes_lose_no_row_and_hit_no_lock_error():
    """A studio (reader), two trainers and an evaluation writing at once: real processes, one file."""
    runs = [store.create_run(name=f"r{i}", output_dir=f"/o{i}", phase_kind="fresh", config={}) for i in range(3)]
    env = {**os.environ}
    steps = 150
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, run, str(steps)], env=env, stderr=subprocess.PIPE)
             for run in runs]
    procs.append(subprocess.Popen([sys.executable, "-c", READER, "60"], env=env, stderr=subprocess.PIPE))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
    counts = store.query("SELECT run_id, count(*) AS n, count(DISTINCT step) AS steps FROM metrics GROUP BY run_id")
    assert sorted((r["n"], r["steps"]) for r in counts) == [(2 * steps, steps)] * 3
