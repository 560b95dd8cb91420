"""The shape of the house: core's import graph has no circle, `umlstudio --help` stays light, flags are
declared only in core/cli/ (those mirroring a config key with the schema's default and description), and the
plan refuses bad output folders and damaged checkpoints before a run row exists; a run that failed
before its first checkpoint never blocks its folder; `advise --out` is checked before any work."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core import cli, paths, store
from core import config as configs
from core.training import checkpoints, phases, plan, train

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core"
ROWS = [
    {
        "prompt": f"A {a} has many {b}s.",
        "plantuml": f"@startuml\nclass {a}\nclass {b}\n{a} -- {b}\n@enduml",
        "diagram_type": "class",
    }
    for a, b in [("Shop", "Order"), ("Team", "Player"), ("Zoo", "Animal")]
]
LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}


# ---- no import circles in core ------------------------------------------------------------------


def module_name(path: Path) -> str:
    """A core file's dotted module name: core/training/train.py -> core.training.train,
    core/data/__init__.py -> core.data."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


CORE_MODULES = {module_name(p) for p in CORE.rglob("*.py")}


def core_imports(path: Path) -> set[str]:
    """The core modules a core file imports, at module level and inside functions alike (dotted names)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "core":
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("core.")}
    return found & CORE_MODULES - {"core"}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (a -> b -> ... -> a), or None when the graph is acyclic (depth-first search)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (circle := visit(nxt)):
                return circle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (circle := visit(node)):
            return circle
    return None


def test_the_circle_finder_finds_a_circle_inside_a_function():
    graph = {"train": {"checklist"}, "checklist": {"advise"}, "advise": {"train"}, "store": set()}
    assert find_circle(graph) == ["advise", "train", "checklist", "advise"]
    train_imports = core_imports(CORE / "training" / "train.py")
    assert train_imports >= {"core.training.phases", "core.training.plan", "core.store"}
    assert "core.data" in train_imports  # `from core import data` inside a function too


def test_core_imports_form_no_circle():
    graph = {module_name(p): core_imports(p) - {module_name(p)} for p in CORE.rglob("*.py")}
    assert find_circle(graph) is None, " -> ".join(find_circle(graph))


# ---- light commands stay light ------------------------------------------------------------------


def imported_after(argv: list[str]) -> list[str]:
    script = (
        "import sys\nfrom core import cli\ntry:\n    cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('core.') or m in ('torch', 'transformers')))"
    )
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_help_imports_no_command_module():
    assert imported_after(["--help"]) == ["core.cli", "core.errors"]
    runs_help = imported_after(["runs", "--help"])
    assert "core.cli.training" in runs_help  # its flags, and nothing of the work behind them
    heavy = ("core.training", "core.advisor", "core.evaluation", "core.inference", "core.data", "core.store", "torch")
    assert not [m for m in runs_help if m.startswith(heavy)], runs_help


# ---- the command line lives in core/cli ---------------------------------------------------------


def test_no_argument_parsing_outside_the_cli():
    """Flags are declared once, in core/cli/: no argparse in core, pages, studio or scripts (bench/ keeps its own)."""
    parsing = re.compile(r"\b(argparse|add_argument)\b")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("core", "pages", "studio", "scripts")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if CORE / "cli" not in path.parents
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if parsing.search(line)
    ]
    assert not found, f"argument parsing outside core/cli/: {found}"


# command, the arguments it needs, flag, the config key it mirrors, whether its own default is None (an override)
MIRRORED = [
    ("evaluate", ["--checkpoint", "base"], "--limit", "evaluation.limit", False),
    ("evaluate", ["--checkpoint", "base"], "--max-new-tokens", "evaluation.max_new_tokens", False),
    ("evaluate", ["--checkpoint", "base"], "--batch-size", "evaluation.batch_size", False),
    ("evaluate", ["--checkpoint", "base"], "--dataset", "data.dataset", True),
    ("compare", ["--model1", "base", "--model2", "base"], "--batch-size", "evaluation.batch_size", False),
    ("generate", ["--checkpoint", "base", "--prompt", "x"], "--max-new-tokens", "evaluation.max_new_tokens", False),
    ("generate", ["--checkpoint", "base", "--prompt", "x"], "--base", "model.base", True),
    ("data", [], "--max-seq-length", "training.max_seq_length", False),
    ("data", [], "--dataset", "data.dataset", True),
    ("prepare-model", [], "--base", "model.base", False),
    ("train", ["--config", "c.yaml"], "--processes", "training.processes", True),
]


@pytest.mark.parametrize("command, needed, flag, key, override", MIRRORED, ids=[f"{c} {f}" for c, _, f, *_ in MIRRORED])
def test_an_option_mirroring_a_config_key_has_the_schemas_default_and_description(
    command, needed, flag, key, override, capsys
):
    section, name = key.split(".")
    field = configs.Config.model_fields[section].annotation.model_fields[name]
    assert field.description, f"{key}: give it Field(description=...) in core/config.py"
    args = cli.build_parser(command).parse_args([command, *needed])
    assert getattr(args, flag.lstrip("-").replace("-", "_")) == (None if override else field.default)
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert " ".join(field.description.split()) in shown
    assert override or f"(default: {field.default})" in shown


def test_a_bad_argument_is_one_line_without_the_usage(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["runs", "--colour"])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--colour" in err[0] and "usage" not in err[0]


# ---- the plan refuses before a run row exists ---------------------------------------------------


@pytest.fixture
def lab(tmp_path, tiny_model):
    """A dataset and a config maker on the tiny model."""
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    for split in ("train", "validation"):
        (dataset / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))

    def make(output_dir, **sections) -> Path:
        tree = {
            "model": {"base": str(tiny_model)},
            "data": {"dataset": str(dataset), "eval_rows": 2},
            "training": {"backend": "peft", "output_dir": str(output_dir), "max_steps": 2},
            "lora": LORA,
        }
        for key, value in sections.items():
            tree.setdefault(key, {}).update(value)
        path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
        path.write_text(json.dumps(tree))
        return path

    return make


def refused(argv, capsys) -> list[str]:
    """Run a command that must be refused: exit 2, no run row written; its error lines."""
    before = store.query_for_tests("SELECT count(*) AS n FROM runs")[0]["n"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith("error: ") for line in err) and "Traceback" not in "\n".join(err)
    assert store.query_for_tests("SELECT count(*) AS n FROM runs")[0]["n"] == before
    return err


def test_an_output_dir_that_is_a_file_or_a_system_folder_is_refused(lab, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    err = refused(["train", "--config", str(lab(tmp_path / "a-file"))], capsys)
    assert len(err) == 1 and "is a file" in err[0] and "training.output_dir" in err[0]
    err = refused(["train", "--config", str(lab(tmp_path / "a-file" / "below"))], capsys)
    assert len(err) == 1 and "no folder can be made below it" in err[0]
    err = refused(["train", "--config", str(lab("/proc/umlstudio-run"))], capsys)
    assert len(err) == 1 and "/proc is a system folder" in err[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: an unwritable folder cannot be made")
def test_an_output_dir_in_an_unwritable_folder_is_refused(lab, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    err = refused(["train", "--config", str(lab(locked / "run"))], capsys)
    assert len(err) == 1 and "is not writable" in err[0]


def fake_checkpoint(folder: Path, base: str) -> Path:
    """A checkpoint folder with a real (tiny) safetensors file of LoRA-shaped tensors and a manifest."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({**LORA, "base_model_name_or_path": base}))
    save_file(
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.zeros((4, 16), np.float32)},
        str(folder / "adapter_model.safetensors"),
    )
    checkpoints.write_manifest(folder)
    return folder


@pytest.mark.parametrize(
    "damage, message",
    [
        ("config-not-json", "adapter_config.json is not valid JSON"),
        ("config-not-utf8", "adapter_config.json is not valid JSON"),
        ("weights-truncated", "adapter_model.safetensors is unreadable"),
        ("weights-empty", "adapter_model.safetensors is unreadable"),
    ],
)
def test_a_damaged_checkpoint_to_continue_from_is_refused_before_a_run_row(
    lab, tmp_path, tiny_model, capsys, damage, message
):
    ckpt = fake_checkpoint(tmp_path / "parent" / "checkpoint-2", str(tiny_model))
    assert checkpoints.read_adapter(ckpt, "phase.continue_from")["r"] == 4  # undamaged, it reads
    weights, adapter_config = ckpt / "adapter_model.safetensors", ckpt / "adapter_config.json"
    if damage == "config-not-json":
        adapter_config.write_text('{"r": 4, "lora_alpha":')
    elif damage == "config-not-utf8":
        adapter_config.write_bytes(b"\xff\xfe{\x00")
    elif damage == "weights-truncated":
        weights.write_bytes(weights.read_bytes()[:-16])
    else:
        weights.write_bytes(b"")
    config = lab(tmp_path / "next", phase={"continue_from": str(ckpt), "override_reason": "testing damage"})
    err = refused(["train", "--config", str(config)], capsys)
    assert len(err) == 1 and err[0].startswith("error: phase.continue_from: ") and message in err[0]
    assert "the checkpoint is damaged" in err[0]
    assert not (tmp_path / "next").exists()


def test_the_plan_is_recorded_in_the_run_folder_for_the_worker(lab, tmp_path):
    """One plan per phase, made once: `prepare` writes it beside the resolved config, the worker's command names it."""
    out = tmp_path / "runs" / "planned"
    config = lab(out, training={"rows_per_micro_batch": 2, "tokens_per_batch": None})
    run_id = train.prepare(configs.load(config), config_path=config)
    written = plan.load(out / plan.PLAN_FILE)
    assert (written.kind, written.output_dir, written.run_id, written.checklist) == ("fresh", out, None, None)
    assert written.config == configs.load(out / train.CONFIG_FILE)
    assert written.train_rows == len(ROWS) and written.micro_batch == "2 rows"
    assert written.estimate.tokens > 0
    assert train.worker_argv(run_id)[-1] == str(out / plan.PLAN_FILE)


def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_its_folder(lab, tmp_path, capsys):
    out = tmp_path / "runs" / "first"
    config = lab(out)
    failed_id = train.prepare(configs.load(config), config_path=config)
    (out / train.LOG_FILE).write_text("Traceback: the worker died\n")
    store.runs.update(failed_id, status="failed", error="RuntimeError: out of memory")
    assert phases.check_free(out).id == failed_id  # free, once that run is set aside
    second = train.prepare(configs.load(config), config_path=config)
    assert second != failed_id and store.runs.for_output_dir(out).id == second
    moved = Path(store.runs.get(failed_id).output_dir)
    assert moved == paths.home() / "failed" / f"first-{failed_id}"
    assert (moved / train.LOG_FILE).read_text() == "Traceback: the worker died\n"  # its log is kept
    assert "failed there before its first checkpoint" in capsys.readouterr().out
    # a run that did save a complete checkpoint still holds its folder: it can be resumed
    store.runs.update(second, status="failed")
    fake_checkpoint(out / "checkpoint-1", "any")
    err = refused(["train", "--config", str(config)], capsys)
    assert "holds run" in err[0] and "resume_from_checkpoint" in err[0]


# ---- advise --out is checked before any work ----------------------------------------------------


@pytest.mark.parametrize(
    "where, message",
    [
        ("missing/next.yaml", "does not exist"),
        ("existing", "is a folder"),
    ],
)
def test_advise_out_in_a_missing_or_existing_folder_is_refused_first(tmp_path, capsys, where, message):
    (tmp_path / "existing").mkdir()
    # the run does not exist either: the --out check comes first, before the store is read
    err = refused(["advise", "--run", "nosuchrun", "--out", str(tmp_path / where)], capsys)
    assert len(err) == 1 and message in err[0] and "--out" in err[0]
    assert not (tmp_path / "missing").exists()


def test_advise_backup_dir_that_is_a_file_is_refused_first(tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    err = refused(["advise", "--run", "nosuchrun", "--backup", "--backup-dir", str(tmp_path / "a-file")], capsys)
    assert len(err) == 1 and "is a file" in err[0]


# ---- SQL lives in core/store/ only: the rest asks its named functions --------------------------

SQL = re.compile(
    r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+(OR\s+\w+\s+)?INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b"
    r"|\b(CREATE|ALTER|DROP)\s+TABLE\b"
)


RAW_STORE = ("query", "query_df", "query_for_tests", "connect", "rows")  # the store's ways to send SQL


def sql_in(source: str) -> list[str]:
    """Where a module's source holds SQL: a string with SQL keywords, a call to the store's query or
    connection functions, a connection's `.execute(`, or duckdb itself."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            found.append(f"line {node.lineno}: {' '.join(node.value.split())[:60]!r}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in RAW_STORE
            and (
                isinstance(node.value, ast.Name)
                and node.value.id in ("store", "db")
                or isinstance(node.value, ast.Attribute)
                and node.value.attr == "db"
            )
        ):
            found.append(f"line {node.lineno}: store.{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("execute", "executemany")
        ):
            found.append(f"line {node.lineno}: .{node.func.attr}(")
        elif (
            isinstance(node, ast.Import)
            and any(a.name.split(".")[0] == "duckdb" for a in node.names)
            or isinstance(node, ast.ImportFrom)
            and (node.module or "").split(".")[0] == "duckdb"
        ):
            found.append(f"line {node.lineno}: imports duckdb")
    return sorted(found, key=lambda where: int(where.split(":")[0].removeprefix("line ")))  # in line order


def test_the_sql_finder_finds_sql_in_strings_store_calls_and_duckdb():
    assert sql_in('rows = store.query_df(f"SELECT run_id, step FROM metrics WHERE run_id IN ({marks})")') == [
        "line 1: store.query_df",
        "line 1: 'SELECT run_id, step FROM metrics WHERE run_id IN ('",
    ]
    assert sql_in("with store.connect() as con:\n    con.execute(q)") == ["line 1: store.connect", "line 2: .execute("]
    assert sql_in("store.query_for_tests(q)\nstore.db.rows(q)") == [
        "line 1: store.query_for_tests",
        "line 2: store.rows",
    ]
    assert sql_in('con.executemany("INSERT INTO generations VALUES (?, ?)", rows)') == [
        "line 1: .executemany(",
        "line 1: 'INSERT INTO generations VALUES (?, ?)'",
    ]
    assert sql_in('x = "UPDATE runs SET status = ?"; y = "DELETE FROM metrics"') == [
        "line 1: 'UPDATE runs SET status = ?'",
        "line 1: 'DELETE FROM metrics'",
    ]
    assert sql_in("import duckdb") == ["line 1: imports duckdb"]
    assert sql_in('st.write("Select a checkpoint from the list"); runs.table()') == []  # words, not SQL
    assert sql_in("with store.session():\n    runs.table()") == []  # sharing a connection is no SQL


OUTSIDE_THE_STORE = sorted(
    str(p.relative_to(ROOT))
    for folder in ("core", "pages", "studio", "scripts", "bench")
    for p in (ROOT / folder).rglob("*.py")
    if (ROOT / "core" / "store") not in p.parents
)


def test_the_modules_checked_for_sql_are_every_module_but_the_stores():
    assert "pages/runs.py" in OUTSIDE_THE_STORE and "core/training/runs.py" in OUTSIDE_THE_STORE
    assert "bench/studio_pages.py" in OUTSIDE_THE_STORE and "scripts/test_model.py" in OUTSIDE_THE_STORE
    assert not [m for m in OUTSIDE_THE_STORE if m.startswith("core/store/")]


@pytest.mark.parametrize("module", OUTSIDE_THE_STORE)
def test_no_sql_outside_the_store(module):
    assert sql_in((ROOT / module).read_text()) == [], f"{module}: ask a named function of core/store/ instead"


def test_system_folders_are_matched_by_whole_names():
    for refused in ("/etc/x", "/lib/x", "/lib64", "/libx32/a", "/var/lib/umlx", "/usr"):
        assert paths.system_folder(refused), refused
    for allowed in ("/library/run", "/etcetera", "/variable/lib", "/var/library", "/home/u/etc"):
        assert paths.system_folder(allowed) is None, allowed
