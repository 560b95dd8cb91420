import os
import subprocess
import sys
import textwrap
import threading

import duckdb
import pytest

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
    store.runs.create(name="r", output_dir=tmp_path / "r", phase_kind="fresh", config={})
    assert (tmp_path / "elsewhere" / "studio.duckdb").is_file()


def test_a_step_logged_again_replaces_its_rows():
    run = store.runs.create(name="r", output_dir="/x", phase_kind="fresh", config={"a": 1})
    store.metrics.log(run, 10, 0.5, {"loss": 2.0, "learning_rate": 1e-4})
    store.metrics.log(run, 10, 0.5, {"loss": 1.5})
    rows = store.query_for_tests("SELECT name, value FROM metrics WHERE run_id = ? ORDER BY name", [run])
    assert rows == [{"name": "learning_rate", "value": 1e-4}, {"name": "loss", "value": 1.5}]
    store.metrics.log(run, 20, 1.0, {"loss": 1.0})
    store.metrics.delete_after(run, 10)
    assert store.query_for_tests("SELECT max(step) AS s FROM metrics WHERE run_id = ?", [run]) == [{"s": 10}]


def test_run_rows_round_trip():
    run = store.runs.create(
        name="p2",
        output_dir="/o",
        phase_kind="continue",
        config={"lr": 3e-5},
        parent_run="abc",
        parent_checkpoint="/o1/checkpoint-5",
        changes={"lr": [1e-4, 3e-5]},
    )
    store.runs.update(run, status="running", pid=123)
    row = store.runs.get(run)
    assert row.status == "running" and row.pid == 123 and row.parent_checkpoint == "/o1/checkpoint-5"
    assert row.changes == {"lr": [1e-4, 3e-5]} and row.config == {"lr": 3e-5} and row.checklist is None
    assert store.runs.for_output_dir("/o").id == run and store.runs.named("p2").id == run
    store.runs.update(run, config={"lr": 1e-5}, checklist=[{"key": "evaluated", "passed": True}])
    assert store.runs.get(run).config == {"lr": 1e-5} and store.runs.get(run).checklist[0]["passed"] is True
    try:
        store.runs.update(run, id="other")
    except ValueError as exc:
        assert "id" in str(exc)
    else:
        raise AssertionError("a run's id was changed")
    assert store.runs.get("nosuchrun") is None and store.runs.get(run).id == run


def test_a_store_written_before_the_newest_migrations_opens_with_its_rows(tmp_path, monkeypatch):
    """A store file of an earlier version (only its migrations applied) opens: the rest are applied, its
    rows read back typed."""
    monkeypatch.setenv("UMLSTUDIO_HOME", str(tmp_path / "old"))
    paths.store_path().parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(paths.store_path()))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TIMESTAMP)")
    for version, migration in enumerate(store.MIGRATIONS[:2], start=1):  # m001_initial, m002_run_checklist
        migration(con)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, migration.__name__])
    con.execute(
        "INSERT INTO runs (id, name, output_dir, phase_kind, config, status, created_at) "
        "VALUES ('old1', 'before', '/o', 'fresh', '{\"training\": {}}', 'finished', now())"
    )
    con.close()
    run = store.runs.get("old1")
    assert (run.name, run.config, run.changes, run.status) == ("before", {"training": {}}, {}, "finished")
    applied = store.query_for_tests("SELECT name FROM schema_migrations ORDER BY version")
    assert [r["name"] for r in applied] == [m.__name__ for m in store.MIGRATIONS]


CKPT = "/c/checkpoint-1"


def generation(i: int, evaluation_id: str | None = None) -> store.evaluations.Generation:
    return store.evaluations.Generation(
        id=f"g{i}",
        evaluation_id=evaluation_id,
        checkpoint=CKPT,
        settings_key=f"k{i}",
        prompt=f"p{i}",
        reference="@startuml\n@enduml",
        diagram_type="class",
        output=f"out{i}",
        metrics={"truncated": False, "repair": False},
        tokens=5,
        latency_s=0.1,
        created_at=store.now(),
    )


def test_evaluations_and_generations_round_trip_typed():
    store.evaluations.add_generations([generation(0), generation(1)])
    found = store.evaluations.generations_for_keys(CKPT, ["k0", "k1", "k9"])
    assert [g.output for g in found] == ["out0", "out1"] and found[0].metrics == {"truncated": False, "repair": False}
    evaluation = store.evaluations.Evaluation(
        id="e1",
        checkpoint=CKPT,
        dataset="d",
        settings={"split": "test"},
        n=3,
        summary={"loss": 0.5},
        created_at=store.now(),
    )
    store.evaluations.add(evaluation, ["g0", "g1"], [generation(2, evaluation_id="e1")])  # two stored already
    assert [g.id for g in store.evaluations.generations_of("e1")] == ["g0", "g1", "g2"]
    assert store.evaluations.latest_of(CKPT) == evaluation
    assert store.evaluations.latest_per_checkpoint() == [evaluation]
    newest = store.evaluations.newest_outputs([CKPT], ["p1", "p2"])
    assert sorted((o.prompt, o.output, o.metrics["truncated"]) for o in newest) == [
        ("p1", "out1", False),
        ("p2", "out2", False),
    ]
    assert store.evaluations.mean_output_tokens([CKPT], 4) == {CKPT: 4.0}  # at most the budget each


def test_checkpoints_and_metrics_answer_typed_rows():
    run = store.runs.create(name="r", output_dir="/o", phase_kind="fresh", config={})
    store.metrics.log(run, 5, 0.5, {"loss": 2.0})
    store.metrics.log(run, 10, 1.0, {"loss": 1.0, "eval_loss": 1.5, "tokens_per_s": 100.0})
    store.checkpoints.record(run, "/o/checkpoint-10", 10, "0" * 64)
    assert store.checkpoints.get("/o/checkpoint-10").step == 10
    assert store.checkpoints.newest().path == "/o/checkpoint-10" and store.checkpoints.run_ids() == [run]
    assert store.checkpoints.with_run_names()[0][1] == "r"
    (saved,) = store.checkpoints.on_curves([run])
    assert (saved.step, saved.eval_loss, saved.loss) == (10, 1.5, 1.0)
    assert [(p.step, p.value) for p in store.metrics.curve([run], ["loss"])] == [(5, 2.0), (10, 1.0)]
    assert store.metrics.value_at(run, "loss", 7) == 2.0 and store.metrics.value_at(run, "loss") == 1.0
    assert store.metrics.last_step_and_epoch(run) == (10, 1.0) and store.metrics.maxima(run, ["loss"]) == {"loss": 2.0}
    assert [s.run_name for s in store.metrics.positive_samples("tokens_per_s", run_id=run)] == ["r"]
    assert store.counts()["metrics"] == 4 and store.runs.with_metric("loss")[0].id == run


def test_a_session_opens_the_store_once_and_shares_its_transaction(monkeypatch):
    """In a `session` block every store call of the thread uses one connection: the reads in it open the
    store once, a write in it commits or rolls back with the block, and another thread waits."""
    run = store.runs.create(name="r", output_dir="/o", phase_kind="fresh", config={})
    opened = []
    real = store.db.duckdb.connect
    monkeypatch.setattr(store.db.duckdb, "connect", lambda *a, **k: opened.append(a) or real(*a, **k))
    with store.session():
        for _ in range(3):
            store.runs.get(run)
        store.query_for_tests("SELECT * FROM runs")
        with store.connect() as one, store.connect() as other:
            assert one is other
    assert len(opened) == 1
    store.runs.get(run)
    assert len(opened) == 2  # outside a block, one connection a read again

    try:
        with store.session():
            store.runs.update(run, status="running")
            assert store.runs.get(run).status == "running"  # the block sees its own write
            raise KeyError("the page failed")
    except KeyError:
        pass
    assert store.runs.get(run).status == "created"  # rolled back with the block

    seen = []
    with store.session():
        store.runs.update(run, status="finished")
        other = threading.Thread(target=lambda: seen.append(store.runs.get(run).status))
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
        store.metrics.log(run, step, step / n, {"loss": 1.0 / (step + 1), "tokens_per_s": 100.0})
    """
)
READER = textwrap.dedent(
    """
    import sys
    from core import store
    for _ in range(int(sys.argv[1])):
        store.query_for_tests("SELECT count(*) FROM metrics")
        store.query_for_tests("SELECT * FROM runs")
    """
)


@pytest.mark.e2e
def test_concurrent_processes_lose_no_row_and_hit_no_lock_error():
    """A studio (reader), two trainers and an evaluation writing at once: real processes, one file."""
    runs = [store.runs.create(name=f"r{i}", output_dir=f"/o{i}", phase_kind="fresh", config={}) for i in range(3)]
    env = {**os.environ}
    steps = 150
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, run, str(steps)], env=env, stderr=subprocess.PIPE)
        for run in runs
    ]
    procs.append(subprocess.Popen([sys.executable, "-c", READER, "60"], env=env, stderr=subprocess.PIPE))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
    counts = store.query_for_tests(
        "SELECT run_id, count(*) AS n, count(DISTINCT step) AS steps FROM metrics GROUP BY run_id"
    )
    assert sorted((r["n"], r["steps"]) for r in counts) == [(2 * steps, steps)] * 3
