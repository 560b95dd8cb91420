"""Faults of the disk: full during a checkpoint save or a store write, and a runs root on a read-only
mount. Each scenario runs in a private mount namespace (`unshare --mount`, as tests/as_bf16_host.sh)
with a small tmpfs, so nothing outside the test sees the mounts; it needs root (or unprivileged user
namespaces) and is skipped where `unshare` cannot make one.

The scenario runs as this file's `__main__` inside the namespace, mounts its tmpfs, runs `umlstudio`
as a user would, and writes what it found to a JSON file outside the tmpfs for the test to check.
"""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROW = {
    "prompt": "A Library has many Books.",
    "diagram_type": "class",
    "plantuml": "@startuml\nclass Library\nclass Book\nLibrary --> Book\n@enduml",
}


def namespace_argv() -> list[str] | None:
    """`unshare` arguments that give a private mount namespace here, or None."""
    if not shutil.which("unshare"):
        return None
    for argv in (
        ["unshare", "--mount", "--propagation", "private"],
        ["unshare", "--mount", "--propagation", "private", "--map-root-user"],
    ):
        if subprocess.run([*argv, "true"], capture_output=True).returncode == 0:
            return argv
    return None


NAMESPACE = namespace_argv()
pytestmark = [
    pytest.mark.skipif(NAMESPACE is None, reason="unshare cannot make a private mount namespace here"),
    pytest.mark.e2e,
]  # a training worker in a mount namespace: make test-fast leaves it out


def write_config(folder: Path, tiny_model, output_dir: Path) -> Path:
    dataset = folder / "dataset"
    dataset.mkdir(parents=True, exist_ok=True)
    rows = [ROW, {**ROW, "prompt": "A Shop has Orders."}]
    (dataset / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (dataset / "validation.jsonl").write_text(json.dumps(ROW) + "\n")
    config = {
        "model": {"base": str(tiny_model)},
        "data": {"dataset": str(dataset), "eval_rows": 1},
        "training": {
            "backend": "peft",
            "output_dir": str(output_dir),
            "max_steps": 4,
            "save_steps": 2,
            "eval_steps": 2,
            "logging_steps": 1,
            "max_seq_length": 64,
            "tokens_per_batch": 128,
            "warmup_ratio": 0.0,
        },
        "lora": {"r": 4, "lora_alpha": 8},
    }
    path = folder / "phase.yaml"
    path.write_text(json.dumps(config))
    return path


def in_namespace(scenario: str, tmp_path: Path, **values) -> dict:
    """Run `scenario` of this file inside a private mount namespace; what it found."""
    results = tmp_path / "results.json"
    spec = tmp_path / "scenario.json"
    spec.write_text(json.dumps({"scenario": scenario, "tmp": str(tmp_path), "results": str(results), **values}))
    env = {k: v for k, v in os.environ.items() if k != "UMLSTUDIO_HOME"}
    done = subprocess.run(
        [*NAMESPACE, sys.executable, __file__, str(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0 and results.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(results.read_text())


def error_lines(text: str) -> list[str]:
    """The `error:` lines of a run's output (a progress bar may end without a newline before one)."""
    return ["error:" + line.split("error:", 1)[1] for line in text.replace("\r", "\n").splitlines() if "error:" in line]


def test_a_full_disk_during_a_checkpoint_save_stops_with_one_line_and_resumes(tmp_path, tiny_model):
    disk = tmp_path / "disk"
    config = write_config(tmp_path, tiny_model, disk / "run")
    # room for one checkpoint (the tokenizer is most of it) and a half: the save at step 4 fills the disk
    size = int((Path(tiny_model) / "tokenizer.json").stat().st_size * 1.5) + 512 * 1024
    found = in_namespace("checkpoint", tmp_path, config=str(config), disk=str(disk), size=size)

    first = found["first"]
    assert first["rc"] == 2, first["output"][-3000:]
    assert "Traceback" not in first["output"], first["output"][-3000:]
    lines = error_lines(first["output"])
    assert len(lines) == 1 and "the disk is full" in lines[0] and "checkpoint-2" in lines[0], first["output"][-3000:]
    assert "resume_from_checkpoint" in lines[0]
    assert found["verify_checkpoint_2"] == []  # the previous checkpoint stays whole
    assert found["complete_after_fault"] == ["checkpoint-2"]
    assert found["status_after_fault"] == "failed"
    assert found["stored_checkpoints_after_fault"] == [2]  # the store holds no half-saved checkpoint

    resumed = found["resume"]
    assert resumed["rc"] == 0, resumed["output"][-3000:]
    assert found["complete_after_resume"] == ["checkpoint-2", "checkpoint-4"]
    assert found["verify_checkpoint_4"] == []
    assert found["status_after_resume"] == "finished"
    assert found["stored_checkpoints_after_resume"] == [2, 4]

    assert found["rebuild"]["rc"] == 0, found["rebuild"]["output"][-3000:]
    before, after = found["metrics_before_rebuild"], found["metrics_after_rebuild"]
    assert [row[:3] for row in after] == [row[:3] for row in before]  # the failed attempt's steps 3-4 purged
    assert all(math.isclose(a[3], b[3], rel_tol=1e-6, abs_tol=1e-9) for a, b in zip(after, before))


def test_a_full_disk_during_a_store_write_is_one_line_and_leaves_the_store_whole(tmp_path, tiny_model):
    disk = tmp_path / "disk"
    config = write_config(tmp_path, tiny_model, tmp_path / "out" / "run")
    found = in_namespace("store", tmp_path, config=str(config), disk=str(disk), size=4 * 1024 * 1024)

    train = found["train"]
    assert train["rc"] == 2, train["output"][-3000:]
    assert "Traceback" not in train["output"], train["output"][-3000:]
    lines = error_lines(train["output"])
    assert len(lines) == 1 and "the disk is full" in lines[0] and "studio.duckdb" in lines[0], train["output"][-3000:]
    assert not found["run_folder_left"]  # the folder made for the run went with the row that could not be written
    assert found["runs_after"]["rc"] == 0, found["runs_after"]["output"]
    assert found["counts_before"] == found["counts_after"]  # not half-written: the same rows as before


def test_a_runs_root_on_a_read_only_mount_is_one_line(tmp_path):
    found = in_namespace("read-only", tmp_path, disk=str(tmp_path / "disk"))
    for case in ("existing", "missing"):
        result = found[case]
        assert result["rc"] == 2 and "Traceback" not in result["output"], result["output"][-3000:]
        lines = [line for line in result["output"].splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: UMLSTUDIO_HOME "), lines
    assert "read-only mount" in found["existing"]["output"]
    assert "Read-only file system" in found["missing"]["output"]


# ---- inside the namespace ----------------------------------------------------------------------


def _umlstudio(*argv, home: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "core", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "UMLSTUDIO_HOME": str(home), "PYTHONUNBUFFERED": "1"},
        timeout=600,
    )
    return {"rc": done.returncode, "output": done.stdout + done.stderr}


def _mount(disk: Path, size: int, *options: str) -> None:
    disk.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(disk)], check=True)


def _store_facts(home: Path, output_dir: Path) -> tuple[str | None, list[int]]:
    os.environ["UMLSTUDIO_HOME"] = str(home)
    from core import store

    run = store.runs.for_output_dir(output_dir)
    steps = sorted(c.step for c in store.checkpoints.of_runs([run.id])) if run else []
    return (run.status if run else None), steps


def _complete(run_dir: Path) -> list[str]:
    from core.training import checkpoints

    return [c.name for c in checkpoints.list_checkpoints(run_dir) if (c / checkpoints.MANIFEST).is_file()]


def _scenario_checkpoint(spec: dict) -> dict:
    from core.training import checkpoints

    disk, home = Path(spec["disk"]), Path(spec["tmp"]) / "home"
    run_dir = disk / "run"
    _mount(disk, spec["size"])
    found = {"first": _umlstudio("train", "--config", spec["config"], home=home)}
    found["complete_after_fault"] = _complete(run_dir)
    found["verify_checkpoint_2"] = checkpoints.verify(run_dir / "checkpoint-2")
    found["status_after_fault"], found["stored_checkpoints_after_fault"] = _store_facts(home, run_dir)
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)  # space freed
    found["resume"] = _umlstudio(
        "train",
        "--config",
        str(run_dir / "config.yaml"),
        "--set",
        f"training.resume_from_checkpoint={run_dir}",
        home=home,
    )
    found["complete_after_resume"] = _complete(run_dir)
    found["verify_checkpoint_4"] = checkpoints.verify(run_dir / "checkpoint-4")
    found["status_after_resume"], found["stored_checkpoints_after_resume"] = _store_facts(home, run_dir)
    # the store rebuilt from this folder, whose TensorBoard events hold the failed attempt's steps 3 and 4
    # and the resume's purge of them, equals the store as training left it
    found["metrics_before_rebuild"] = _metrics(home)
    (home / "studio.duckdb").write_bytes(os.urandom(8192))
    found["rebuild"] = _umlstudio("store", "rebuild", "--runs-in", str(disk), home=home)
    found["metrics_after_rebuild"] = _metrics(home)
    return found


def _metrics(home: Path) -> list:
    os.environ["UMLSTUDIO_HOME"] = str(home)
    from core import store

    rows = store.query_for_tests("SELECT run_id, step, name, value FROM metrics ORDER BY run_id, step, name")
    return [[r["run_id"], r["step"], r["name"], r["value"]] for r in rows]


def _counts(home: Path) -> dict:
    os.environ["UMLSTUDIO_HOME"] = str(home)
    from core import store

    return store.counts()


def _scenario_store(spec: dict) -> dict:
    disk = Path(spec["disk"])
    _mount(disk, spec["size"])
    home = disk / "home"
    assert _umlstudio("runs", home=home)["rc"] == 0  # the store made while there is room
    counts_before = _counts(home)
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    for block in (65536, 512, 1):  # fill the disk to the last byte
        try:
            while True:
                os.write(fd, b"\0" * block)
        except OSError:
            pass
    os.close(fd)
    found = {
        "train": _umlstudio("train", "--config", spec["config"], home=home),
        "run_folder_left": (Path(spec["tmp"]) / "out" / "run").exists(),
    }
    filler.unlink()
    found["runs_after"] = _umlstudio("runs", home=home)
    found["counts_before"], found["counts_after"] = counts_before, _counts(home)
    return found


def _scenario_read_only(spec: dict) -> dict:
    disk = Path(spec["disk"])
    _mount(disk, 1024 * 1024)
    (disk / "home").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    return {"existing": _umlstudio("runs", home=disk / "home"), "missing": _umlstudio("runs", home=disk / "new-home")}


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    sys.path.insert(0, str(ROOT))
    scenarios = {"checkpoint": _scenario_checkpoint, "store": _scenario_store, "read-only": _scenario_read_only}
    Path(spec["results"]).write_text(json.dumps(scenarios[spec["scenario"]](spec), default=str))
