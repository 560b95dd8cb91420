"""One background-work system (core/jobs.py over core/supervisor.py): the typed functions that pages start work
with build the workers' command lines, and nothing else does (no page builds one); a training run started in the
background is a job of kind "train", whose job says whether its worker lives, stops it, and keeps its exit code
and its log. A worker `umlstudio train` runs attached in a terminal has no job: its run row's pid says."""

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import cli, config, jobs, paths, store, supervisor
from core.training import phases, runs, train

ROOT = Path(__file__).resolve().parent.parent
QUICK_TEST = paths.CONFIG_DIR / "quick_test.yaml"


def wait_for(check, what: str, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"waited {seconds:.0f} s for {what}"
        time.sleep(0.1)
    return found


def wait_done(job_id: str, seconds: float = 30) -> jobs.Job:
    return wait_for(lambda: (job := jobs.get(job_id)).done and job, f"job {job_id} to end", seconds)


# ---- no page builds a command line --------------------------------------------------------------

BUILDERS = {
    ("jobs", "start"),
    ("supervisor", "start"),
    ("runs", "start_worker"),
    ("sys", "executable"),
    ("subprocess", "Popen"),
    ("subprocess", "run"),
}


def argv_building(source: str) -> list[str]:
    """Where a page's source builds a worker's command line: the strings '-m' or '-c', `sys.executable`,
    subprocess, or starting a job or a worker past the typed functions of core/jobs.py."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and node.value in ("-m", "-c"):
            found.append(f"line {node.lineno}: {node.value!r}")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in BUILDERS
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        elif (
            isinstance(node, ast.Import)
            and any(a.name == "subprocess" for a in node.names)
            or isinstance(node, ast.ImportFrom)
            and node.module == "subprocess"
        ):
            found.append(f"line {node.lineno}: imports subprocess")
    return sorted(found)


def test_the_argv_finder_finds_a_command_line():
    assert argv_building('jobs.start("evaluate", ["-m", "core", "evaluate", "--checkpoint", ckpt])') == [
        "line 1: '-m'",
        "line 1: jobs.start",
    ]
    assert argv_building("import subprocess\nsubprocess.run([sys.executable, '-c', code])") == [
        "line 1: imports subprocess",
        "line 2: '-c'",
        "line 2: subprocess.run",
        "line 2: sys.executable",
    ]
    assert argv_building("run_id = runs.start_worker(cfg)") == ["line 1: runs.start_worker"]
    assert argv_building('jobs.evaluate(ckpt, limit); st.write("-m is a flag")') == []  # a typed function; words


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "pages").glob("*.py")))
def test_no_page_builds_a_command_line(page):
    assert argv_building((ROOT / "pages" / page).read_text()) == [], (
        f"pages/{page}: start background work with a typed function of core/jobs.py"
    )


# ---- the typed functions ------------------------------------------------------------------------


@pytest.fixture
def no_supervisor(monkeypatch):
    """Jobs are written but no supervisor starts: the test reads the command lines the typed functions built."""
    started = []
    monkeypatch.setattr(supervisor.subprocess, "Popen", lambda argv, **kwargs: started.append(argv))
    return started


def parsed(job: jobs.Job):
    """The job's worker command line as `python -m core` parses it (an unknown or a missing argument exits 2)."""
    argv = json.loads((job.dir / "command.json").read_text())["argv"]
    assert argv[:3] == [sys.executable, "-m", "core"], argv
    return cli.build_parser(argv[3]).parse_args(argv[3:]), argv


def test_evaluate_compare_generate_and_export_build_their_workers_command_lines(no_supervisor, tmp_path):
    job = jobs.evaluate("/runs/a/checkpoint-8", 40)
    args, _ = parsed(job)
    assert (job.kind, job.label, job.status) == ("evaluate", "/runs/a/checkpoint-8", jobs.RUNNING)
    assert (args.command, args.checkpoint, args.limit) == ("evaluate", "/runs/a/checkpoint-8", 40)
    assert "--limit" not in parsed(jobs.evaluate("base"))[1]  # the evaluation config's own default

    job = jobs.compare(
        ["base", "/runs/a/checkpoint-8", "/runs/b/checkpoint-4"], limit=12, max_new_tokens=200, label="base, a, b"
    )
    args, _ = parsed(job)
    assert (job.kind, job.label, args.command) == ("compare", "base, a, b", "compare")
    assert (args.model1, args.model2, args.model3, args.model4) == (
        "base",
        "/runs/a/checkpoint-8",
        "/runs/b/checkpoint-4",
        None,
    )
    assert (args.limit, args.max_new_tokens, args.out) == (12, 200, str(job.dir / "compare.html"))
    assert (args.repetition, args.temperature) == ("none", 0.0)  # greedy unless asked
    dry = jobs.compare(["base", "/runs/a/checkpoint-8"], limit=4, max_new_tokens=64, decoding={"repetition": "dry"})
    assert parsed(dry)[0].repetition == "dry"

    job = jobs.generate(
        "base",
        "A lamp is on or off.",
        base="/models/tiny",
        diagram_type="state",
        max_new_tokens=64,
        repair=True,
        label="base model",
    )
    args, _ = parsed(job)
    assert (job.kind, job.label) == ("generate", "base model")
    assert (job.dir / "prompt.txt").read_text() == "A lamp is on or off."
    assert (args.checkpoint, args.prompt_file, args.out) == ("base", job.dir / "prompt.txt", job.dir / "result.json")
    assert (args.base, args.type, args.max_new_tokens, args.repair) == ("/models/tiny", "state", 64, True)
    args, _ = parsed(jobs.generate("/runs/a/checkpoint-8", "A shop has orders."))
    assert (args.base, args.type, args.repair) == (None, None, False)
    sampled = {"repetition": "dry", "temperature": 0.7, "top_p": 0.9, "top_k": 40, "seed": 3}
    args, _ = parsed(jobs.generate("base", "A lamp is on or off.", decoding=sampled))
    assert (args.repetition, args.temperature, args.top_p, args.top_k, args.seed) == ("dry", 0.7, 0.9, 40, 3)

    job = jobs.export("/runs/a/checkpoint-8", tmp_path / "out", "gguf", "q8_0", label="a → out")
    args, _ = parsed(job)
    assert (job.kind, job.label) == ("export", "a → out")
    assert (args.checkpoint, args.out, args.format, args.gguf_type) == (
        "/runs/a/checkpoint-8",
        str(tmp_path / "out"),
        "gguf",
        "q8_0",
    )

    kinds = ["compare", "compare", "evaluate", "evaluate", "export", "generate", "generate", "generate"]
    assert sorted(j.kind for j in jobs.list_jobs()) == kinds
    # each typed function started one supervisor, for its own job folder
    assert [argv[1:3] for argv in no_supervisor] == [["-m", "core.supervisor"]] * 8
    assert sorted(Path(argv[3]).name for argv in no_supervisor) == sorted(j.id for j in jobs.list_jobs())


# ---- a training run is a job --------------------------------------------------------------------

# A training worker's stand-in: it says it runs the way the real worker does (status, pid, its job), writes to
# stdout and stderr, and trains for a minute.
STAND_IN = (
    "import os, sys, time\nfrom core import store, supervisor\n"
    "store.runs.update(sys.argv[1], status='running', pid=os.getpid(), job=supervisor.current())\n"
    "print('step 1', flush=True)\nprint('a warning', file=sys.stderr, flush=True)\ntime.sleep(60)\n"
)


@pytest.fixture
def stand_in_worker(monkeypatch):
    """`jobs.train` plans the real quick test (run row, output folder, config.yaml) and starts the stand-in."""
    monkeypatch.setattr(train, "worker_argv", lambda run_id: [sys.executable, "-c", STAND_IN, run_id])


def test_a_training_run_started_in_the_background_is_a_job_that_stops_it(stand_in_worker):
    run_id = jobs.train(QUICK_TEST)
    run = store.runs.get(run_id)
    job = runs.job_of(run)
    assert (job.kind, job.label, run.job) == ("train", run.name, job.id)
    assert (Path(run.output_dir) / train.CONFIG_FILE).is_file()  # planned before it started
    assert job.log_file == job.output_file == Path(run.output_dir) / train.LOG_FILE  # the run's log, stdout and stderr
    wait_for(lambda: "a warning" in runs.log_tail(store.runs.get(run_id)), "the worker's output in train.log")
    assert runs.log_tail(store.runs.get(run_id)) == "step 1\na warning\n"
    run = store.runs.get(run_id)
    assert (run.status, run.job, runs.status_of(run)) == ("running", job.id, "running") and phases.worker_alive(run)
    assert [r.id for r in runs.active()] == [run_id]

    assert runs.stop_worker(run_id)  # the Train page's Stop
    stopped = wait_done(job.id)
    assert (stopped.status, stopped.returncode) == (jobs.STOPPED, -signal.SIGTERM)
    run = store.runs.get(run_id)
    assert not phases.worker_alive(run) and runs.status_of(run) == "interrupted"  # it ended without saying how
    assert not runs.stop_worker(run_id) and runs.active() == []


def test_a_training_worker_killed_by_a_signal_leaves_its_run_interrupted(stand_in_worker):
    run_id = jobs.train(QUICK_TEST)
    wait_for(lambda: store.runs.get(run_id).status == "running", "the worker to start")
    os.kill(store.runs.get(run_id).pid, signal.SIGKILL)  # as the out-of-memory killer does it
    ended = wait_done(store.runs.get(run_id).job)
    assert (ended.status, ended.returncode) == (jobs.FAILED, -signal.SIGKILL)
    run = store.runs.get(run_id)
    assert not phases.worker_alive(run) and runs.status_of(run) == "interrupted"
    assert phases.failed_before_a_checkpoint(run)  # nothing to resume: a new run may take its folder over
    assert "the training worker was killed by SIGKILL" in runs.detail(run_id).error  # what the Runs page says


def test_a_worker_trained_attached_is_seen_alive_by_its_process():
    """`umlstudio train` in a terminal runs its worker without a job: its run row's pid, read from /proc."""
    quick = config.load(QUICK_TEST)
    run_id = store.runs.create(
        name=quick.name,
        output_dir=paths.resolve_output_dir(quick.training.output_dir),
        phase_kind="fresh",
        config=quick.to_dict(),
    )
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "core.training.train"])
    try:
        store.runs.update(run_id, status="running", pid=worker.pid)
        run = store.runs.get(run_id)
        assert run.job is None and phases.worker_alive(run) and runs.status_of(run) == "running"
        assert runs.stop_worker(run_id)
        assert worker.wait(timeout=15) == -signal.SIGTERM
    finally:
        worker.kill()
        worker.wait()
    assert runs.status_of(store.runs.get(run_id)) == "interrupted"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a live pid, not a worker
    try:
        store.runs.update(run_id, pid=other.pid)
        assert not phases.worker_alive(store.runs.get(run_id))
    finally:
        other.kill()
        other.wait()


def test_umlstudio_train_background_starts_the_same_job(stand_in_worker, capsys):
    assert cli.main(["train", "--config", str(QUICK_TEST), "--background"]) == 0
    (run,) = store.runs.all_newest_first()
    job = runs.job_of(run)
    assert job.kind == "train" and f"run {run.id} training in the background (job {job.id})" in capsys.readouterr().out
    wait_for(lambda: store.runs.get(run.id).status == "running", "the worker to start")
    assert runs.stop_worker(run.id)
    assert wait_done(job.id).status == jobs.STOPPED
