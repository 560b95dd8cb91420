"""Every studio page, run alone with AppTest on a seeded temporary store (UMLSTUDIO_HOME is a temp
folder, see conftest.py): no exceptions, the key elements present, and the gates behave.

The seed is real data the way the trainer and the evaluator write it: run rows with lineage,
metric curves, checkpoints that are real PEFT adapters on the tiny model (with manifests), an
evaluation and its generations."""

import ast
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import config, data, jobs, paths, store
from core.evaluation import evaluate, metrics
from core.inference import render
from core.studio import ui
from core.training import checkpoints

PASS, FAIL = (
    ":green[:material/check_circle:]",
    ":red[:material/cancel:]",
)  # how the pages mark a passed and a failed item
UNSURE = ":gray[:material/help:]"  # not measured, or not enough rows to tell
ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "pages"
LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def seed_rows() -> list[dict]:
    """The A/B viewer's first two prompts (an activity and a class prompt: types in turn) and one state prompt."""
    rows = data.load_split(data.default_dataset_dir(), "test")
    return evaluate.sample_rows(rows, 2) + [next(r for r in rows if r["diagram_type"] == "state")]


def make_adapter(target: Path, base: Path) -> Path:
    """A real PEFT LoRA adapter on the base model (random B weights, so it changes the outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(**LORA))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    model.save_pretrained(target)
    return target


def run_config(base: Path, output_dir: Path, **training) -> dict:
    return config.parse(
        {
            "model": {"base": str(base)},
            "lora": LORA,
            "data": {"eval_rows": 8},
            "training": {
                "output_dir": str(output_dir),
                "max_steps": 300,
                "save_steps": 100,
                "eval_steps": 50,
                **training,
            },
        }
    ).to_dict()


def add_checkpoint(adapter: Path, run_id: str, output_dir: Path, step: int, cfg: dict) -> Path:
    ckpt = output_dir / f"checkpoint-{step}"
    shutil.copytree(adapter, ckpt)
    (ckpt / checkpoints.INFO).write_text(json.dumps({"run_id": run_id, "step": step, "config": cfg}))
    store.checkpoints.record(run_id, ckpt, step, checkpoints.write_manifest(ckpt))
    return ckpt


def log_curve(run_id: str, steps: range, loss, eval_every: int = 50) -> None:
    """Training loss, validation loss every `eval_every` steps, learning rate, throughput, elapsed time."""
    rows = []
    for step in steps:
        values = {
            "loss": loss(step),
            "learning_rate": 1e-4 * (1 - step / 400),
            "tokens_per_s": 500.0 + step % 7,
            "elapsed_s": step * 0.5,
        }
        if step % eval_every == 0:
            values["eval_loss"] = loss(step) + 0.08
        rows += [[run_id, step, step / 100, name, value, store.now()] for name, value in values.items()]
    with store.connect() as con:
        con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)", rows)


def seed_store(base: Path) -> dict:
    """Phase 1 (finished, still learning) and its phase 2 (stopped); an evaluation of phase 1's last
    checkpoint and of the base model, with their generations."""
    home = paths.home()
    adapter = make_adapter(home / "adapter", base)
    p1_dir = home / "phase1"
    p1_cfg = run_config(base, p1_dir)
    p1 = store.runs.create(name="phase1", output_dir=p1_dir, phase_kind="fresh", config=p1_cfg, base_model=str(base))
    store.runs.update(p1, status="finished", started_at=store.now(), finished_at=store.now())
    log_curve(p1, range(5, 301, 5), lambda s: 2.3 * math.exp(-s / 90) + 0.4 + 0.01 * math.sin(s))
    p1_ckpts = [add_checkpoint(adapter, p1, p1_dir, step, p1_cfg) for step in (100, 200, 300)]

    p2_dir = home / "phase2"
    p2_cfg = run_config(base, p2_dir, learning_rate=1e-4)
    p2_cfg["phase"]["continue_from"] = str(p1_ckpts[-1])
    p2 = store.runs.create(
        name="phase2",
        output_dir=p2_dir,
        phase_kind="continue",
        config=p2_cfg,
        parent_run=p1,
        parent_checkpoint=str(p1_ckpts[-1]),
        base_model=str(base),
        override_reason="a hunch worth an hour",
        checklist=[
            {
                "key": "evaluated",
                "title": "Evaluated current model quality",
                "passed": False,
                "why": "no evaluation of checkpoint-300",
            },
            {"key": "output_dir", "title": "Changed output_dir (don't overwrite!)", "passed": True, "why": "new"},
        ],
    )
    store.runs.update(p2, status="stopped")
    log_curve(p2, range(5, 101, 5), lambda s: 0.45 - s / 2000)
    p2_ckpt = add_checkpoint(adapter, p2, p2_dir, 100, p2_cfg)
    evaluations = {ckpt: seed_evaluation(ckpt, good) for ckpt, good in ((str(p1_ckpts[-1]), True), ("base", False))}
    return {"phase1": p1, "phase2": p2, "checkpoints": [*map(str, p1_ckpts), str(p2_ckpt)], "evaluations": evaluations}


def seed_evaluation(checkpoint: str, good: bool) -> str:
    """An evaluation stored the way core.evaluation.evaluate stores one: outputs checked by PlantUML, scored by
    core.evaluation.metrics, the summary with its verdict, one generation row per prompt. The good checkpoint
    answers with the reference except for the state diagram; the other answers one made-up class."""
    rows = seed_rows()
    outputs = [
        r["plantuml"] if good and r["diagram_type"] != "state" else "@startuml\nclass Thing\n@enduml" for r in rows
    ]
    checks = render.syntax_check(outputs)
    scored = [
        metrics.score(
            output,
            r["plantuml"],
            r["prompt"],
            r["diagram_type"],
            syntax=check,
            renders=render.render(output).ok,
            truncated=False,
            tokens=20,
            latency_s=0.5,
            origin=r["origin"],
        )
        for output, r, check in zip(outputs, rows, checks)
    ]
    summary = metrics.aggregate(scored)
    summary["loss"] = 0.45 if good else None
    summary["verdict"] = metrics.verdict(summary, summary["loss"], config.QualityConfig(), scored)
    evaluation = store.new_id()
    with store.connect() as con:
        con.execute(
            "INSERT INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                evaluation,
                checkpoint,
                "data/default",
                json.dumps({"max_new_tokens": 320, "split": "test"}),
                len(rows),
                json.dumps(summary),
                store.now(),
            ],
        )
        con.executemany(
            "INSERT INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [
                    store.new_id(),
                    evaluation,
                    checkpoint,
                    f"key-{checkpoint}-{r['prompt']}",
                    evaluate.message(r),
                    r["plantuml"],
                    r["diagram_type"],
                    output,
                    json.dumps({**m, "truncated": False, "requirement": r["prompt"]}),
                    20,
                    0.5,
                    store.now(),
                ]
                for output, r, m in zip(outputs, rows, scored)
            ],
        )
    return evaluation


@pytest.fixture
def seeded(tiny_model):
    return seed_store(tiny_model)


def page(name: str) -> AppTest:
    return AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=120)


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# ---- empty store: every page teaches what to do first ----------------------------------------


@pytest.mark.parametrize("name", ["runs", "train", "pre_continue", "playground", "compare", "quality", "data"])
def test_every_page_runs_on_an_empty_store(name):
    at = page(name).run()
    no_exceptions(at)
    assert at.title


MODEL_LIBRARIES = "sorted(m for m in ('torch', 'transformers', 'peft', 'unsloth', 'trl') if m in sys.modules)"


def fresh_process(script: str, home: Path) -> str:
    """Run `script` in a new Python process with this runs root; its standard output."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys\n" + script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "UMLSTUDIO_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_no_page_imports_torch_transformers_or_peft(umlstudio_home):
    """Models load in worker processes only: running every page leaves the studio process light."""
    out = fresh_process(
        "from streamlit.testing.v1 import AppTest\n"
        f"for page in {sorted(str(p) for p in PAGES.glob('*.py'))!r}:\n"
        "    at = AppTest.from_file(page, default_timeout=120).run()\n"
        "    assert not at.exception, (page, [e.value for e in at.exception])\n"
        f"print({MODEL_LIBRARIES})\n",
        umlstudio_home,
    )
    assert out.strip().splitlines()[-1] == "[]"


def test_the_servers_start_up_imports_what_the_pages_import_and_no_model_library(umlstudio_home):
    """studio/app.py's start-up hook runs core.studio.warmup.preload: afterwards every module a page imports is
    loaded (so the first visit does not import it), no model library is, and what the imports made is
    frozen out of the garbage collections that Streamlit runs after every script run."""
    imports = sorted(
        {
            (alias.name, None) if isinstance(node, ast.Import) else (node.module, alias.name)
            for page in PAGES.glob("*.py")
            for node in ast.walk(ast.parse(page.read_text()))
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        }
    )
    out = fresh_process(
        "from core.studio import warmup\n"
        "warmup.preload().join(timeout=120)\n"
        f"print(sorted(m for m, name in {imports!r} if m.split('.')[0] not in (*sys.stdlib_module_names, 'streamlit')\n"
        "             and (m not in sys.modules or name and not hasattr(sys.modules[m], name))))\n"
        f"print({MODEL_LIBRARIES})\n"
        "import gc\n"
        "print(gc.get_freeze_count() > 10_000)\n",
        umlstudio_home,
    )
    assert out.splitlines()[-3:] == ["[]", "[]", "True"]


def test_the_studio_warm_up_starts_plantuml_and_counts_tokens_without_torch(tiny_model, umlstudio_home):
    """studio/navigation.py starts core.studio.warmup once per process: afterwards the PlantUML server runs, the
    default training set's token counts are kept in the runs root's cache, and no model library was imported.
    The counts need the embedded model's tokenizer and chat template only: the tiny model's are the same files."""
    embedded = umlstudio_home / "models" / "smollm2-135m"
    embedded.mkdir(parents=True)
    for name in ("tokenizer.json", "chat_template.jinja"):
        shutil.copyfile(tiny_model / name, embedded / name)
    out = fresh_process(
        "from core import paths\nfrom core.inference import render\nfrom core.studio import warmup\n"
        "warmup.DELAY_S = 0\n"
        "warmup.start().join(timeout=180)\n"
        "print(render.renderer().pid is not None, len(list((paths.home() / 'cache').glob('token-lengths-*.json'))),"
        f" {MODEL_LIBRARIES})\n",
        umlstudio_home,
    )
    started, counted, heavy = out.split(" ", 2)
    assert started == "True" and counted == "1" and heavy.strip() == "[]"


def test_an_empty_runs_page_says_start_with_a_quick_test():
    at = page("runs").run()
    assert any("Quick test" in info.value for info in at.info)


# ---- seeded store -----------------------------------------------------------------------------


def test_runs_page_shows_the_lineage_best_checkpoint_and_curves(seeded):
    at = page("runs").run()
    no_exceptions(at)
    table = at.dataframe[0].value
    assert list(table["run"]) == ["phase1", "└ phase2"]  # phase 2 hangs under phase 1
    assert list(table["phase"]) == [1, 2]
    drawn = traces(at)  # one figure: loss on top, learning rate and speed below, on one step axis
    panel = {name: t["yaxis"] for name, t in drawn.items()}
    assert {"phase1: training loss", "phase1: validation loss", "phase2: training loss"} <= {
        name for name, axis in panel.items() if axis == "y"
    }
    assert {"phase1: learning rate", "phase2: learning rate"} <= {name for name, axis in panel.items() if axis == "y2"}
    assert {name for name, axis in panel.items() if axis == "y3"} >= {"phase1: tokens per second"}
    layout = chart(at)["layout"]
    assert [a["text"] for a in layout["annotations"]] == ["phase2"]
    assert {s["x0"] for s in layout["shapes"]} == {300}  # phase 2 drawn after phase 1's 300 steps
    assert "e-" in "".join(drawn["phase2: training loss"]["customdata"])  # the hover's learning rate at each step
    settings = dict(at.dataframe[1].value.itertuples(index=False))  # the config, one setting a row
    assert settings["training.output_dir"].endswith("phase2")
    assert "None" not in settings.values()  # in words: "—", and "none (counted in epochs)" for no step limit
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["best checkpoint"] == "step 100"  # phase 2 is shown (newest); its one checkpoint
    # it started on an override: which check failed and why it started anyway, and the whole list
    assert at.warning[0].value == (
        "Started although the pre-continue checklist failed (Evaluated current model "
        "quality). Reason given: a hunch worth an hour"
    )
    assert at.expander[0].label == "Pre-continue checklist when this phase started: 1 of 2 passed"
    assert "no evaluation of checkpoint-300" in at.expander[0].markdown[0].value


def chart(at: AppTest, index: int = 0) -> dict:
    """A plotly chart of the page, in page order: the figure the browser draws (data and layout)."""
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def traces(at: AppTest, index: int = 0) -> dict[str, dict]:
    """A chart's traces by name."""
    return {t["name"]: t for t in chart(at, index)["data"]}


def test_runs_page_follows_a_training_run_with_progress_and_every_checkpoint(training_quick_test):
    store.checkpoints.record(training_quick_test, paths.home() / "quick_test" / "checkpoint-30", 30, "0" * 64)
    at = page("runs").run()
    no_exceptions(at)
    assert list(at.dataframe[0].value["kind"]) == ["new run"]
    assert list(at.dataframe[0].value["best validation loss"]) == ["—"]  # no validation loss yet: a dash, not None
    [bar] = at.get("progress")
    assert bar.proto.text.startswith("step 40 of 100 · ≈ ") and bar.proto.text.endswith(" left")
    mark = traces(at)["quick-test: checkpoints"]
    assert (mark["x"], mark["text"]) == ([30], ["checkpoint at step 30"])
    assert (
        mark["y"] == [pytest.approx(2.0 - 30 / 100)] and mark["customdata"][0][1] == "—"
    )  # no validation loss at step 30: on the training loss
    assert any("refreshing every 3 s" in c.value for c in at.caption)


def test_runs_page_legend_lists_checkpoints_only_when_there_are_some(training_quick_test):
    at = page("runs").run()
    assert not [name for name in traces(at) if name.endswith("checkpoints")], (
        "no checkpoint trace (nor legend entry) without checkpoints"
    )


def test_train_page_validates_inline_with_the_line_of_the_error(seeded):
    at = page("train").run()
    no_exceptions(at)
    at.radio[0].set_value("an earlier run's config").run()
    at.text_area[0].set_value("training:\n  learning_rate: -1\n  epochs: 3\n").run()
    errors = " ".join(e.value for e in at.error)
    assert "line 2: training.learning_rate" in errors
    assert "line 3: unknown key 'training.epochs'" in errors and "num_train_epochs" in errors
    assert not [b for b in at.button if b.label == "Start training"], "no Start for an invalid config"


def test_train_page_gates_a_continue_phase_on_the_checklist(seeded):
    at = page("train").run()
    at.radio[0].set_value("an earlier run's config").run()
    phase2 = store.runs.get(seeded["phase2"]).config
    phase2["training"]["output_dir"] = str(paths.home() / "phase3")
    import yaml

    at.text_area[0].set_value(yaml.safe_dump(phase2)).run()
    no_exceptions(at)
    start = next(b for b in at.button if b.key == "start")
    assert start.disabled  # the checkpoints are writable and nobody checked the loss curve
    assert any("Backed up current checkpoints" in m.value for m in at.markdown)
    assert not any("**The plan**" in m.value for m in at.markdown)  # no plan while the gate refuses
    at.text_input[0].set_value("testing the gate").run()
    assert not next(b for b in at.button if b.key == "start").disabled
    shown = next(m.value for m in at.markdown if "**The plan**" in m.value)  # as the worker will be told
    assert f"a continue phase into `{paths.home() / 'phase3'}`" in shown and "training rows" in shown


def test_train_page_does_not_call_a_phase_from_a_missing_checkpoint_valid():
    at = page("train").run()
    at.selectbox[0].set_value(paths.CONFIG_DIR / "continue_training.yaml").run()
    no_exceptions(at)
    assert not at.success, "no green 'Valid' for a phase whose checkpoint is not there"
    assert "phase.continue_from: checkpoint" in at.error[0].value and "not found" in at.error[0].value


@pytest.fixture
def training_quick_test():
    """A quick test whose worker is alive: its run row names a running job of kind "train" (a stand-in worker)."""
    quick = config.load(paths.CONFIG_DIR / "quick_test.yaml")
    out = paths.resolve_output_dir(quick.training.output_dir)
    run_id = store.runs.create(
        name=quick.name, output_dir=out, phase_kind="fresh", config=quick.to_dict(), base_model=quick.model.base
    )
    worker = jobs.start("train", ["-c", "import time; time.sleep(120)"], label=quick.name)
    store.runs.update(run_id, status="running", job=worker.id)
    log_curve(run_id, range(2, 41, 2), lambda s: 2.0 - s / 100)
    yield run_id
    jobs.stop(worker.id)
    wait_done(worker.id, 15)


def test_train_page_disables_quick_test_and_start_while_their_run_trains(training_quick_test):
    at = page("train").run()
    no_exceptions(at)
    quick = next(b for b in at.button if b.label.startswith("Quick test"))
    assert quick.disabled
    assert any(p.proto.text.startswith("step 40 of 100 · ") for p in at.get("progress"))
    at.radio[0].set_value("an earlier run's config").run()
    assert next(b for b in at.button if b.key == "start").disabled  # its output folder is the running run's
    assert any("is training into" in i.value for i in at.info)
    assert any("st-key-yaml_editor textarea" in h.proto.body for h in at.get("html"))


def test_pre_continue_start_is_disabled_until_checks_pass_or_a_reason_is_typed(seeded):
    at = page("pre_continue").run()
    no_exceptions(at)
    at.selectbox[0].select_index(1).run()  # phase1: finished, still learning
    assert "still decreasing" in " ".join(i.value for i in at.info)
    drawn = list(traces(at))  # the evidence: both curves and the advisor's fitted windows
    assert drawn[:2] == ["train loss", "validation loss"]
    assert drawn[2:] and all(name.startswith("fit: ") for name in drawn[2:])
    start = next(b for b in at.button if b.key == "start_phase")
    assert start.disabled
    failing = [m.value for m in at.markdown if m.value.startswith(FAIL)]
    assert failing, "the seeded parent is neither backed up nor acknowledged"

    at.checkbox[0].check().run()  # I have checked the loss curve
    assert store.query_for_tests("SELECT * FROM acknowledgements WHERE subject = ?", [seeded["phase1"]])
    assert not any("Checked loss curve" in m.value and m.value.startswith(FAIL) for m in at.markdown)

    next(b for b in at.button if b.key == "backup").click().run()
    assert checkpoints.is_read_only(Path(seeded["checkpoints"][2]))
    assert not any("Backed up" in m.value and m.value.startswith(FAIL) for m in at.markdown)
    still_failing = [m.value for m in at.markdown if m.value.startswith(FAIL)]
    start = next(b for b in at.button if b.key == "start_phase")
    assert start.disabled == bool(still_failing)
    if still_failing:
        at.text_input[0].set_value("the evaluation is recent enough for this test").run()
        assert not next(b for b in at.button if b.key == "start_phase").disabled


def test_data_page_counts_and_shows_weak_types(seeded):
    at = page("data").run()
    no_exceptions(at)
    counts = at.dataframe[0].value
    assert {"train", "validation", "test"} <= set(counts.index)
    assert "state" in " ".join(m.value for m in at.markdown if m.value.startswith("**Weak:**"))


def test_data_page_judges_the_best_checkpoint_not_the_latest_evaluated(seeded):
    seed_evaluation(seeded["checkpoints"][0], good=False)  # checkpoint-100 of phase 1, evaluated last
    at = page("data").run()
    no_exceptions(at)
    assert "phase1 · best checkpoint step 300" == at.selectbox[1].format_func(at.selectbox[1].value)
    assert any(seeded["checkpoints"][2] in c.value for c in at.caption)  # the best one's evaluation
    weak = next(m.value for m in at.markdown if m.value.startswith("**Weak:**"))
    assert weak.startswith("**Weak:** state ·")  # checkpoint-100's evaluation would call every type weak
    focus = at.multiselect[-1]
    assert focus.value == ["state"] and len(focus.options) > 1  # the weak types, a true subset


def test_data_page_refuses_a_subset_of_every_type(seeded):
    at = page("data").run()
    at.multiselect[-1].set_value(list(at.multiselect[-1].options))
    at.button[-1].click().run()
    no_exceptions(at)
    assert any("every diagram type is chosen" in e.value for e in at.error)
    assert not (paths.home() / "datasets").exists()


def test_data_page_saves_a_filtered_subset(seeded):
    at = page("data").run()
    at.multiselect[-1].set_value(["state"])  # inside a form: sent with the submit
    at.text_input[-1].set_value("states-only")
    at.button[-1].click().run()
    no_exceptions(at)
    path = paths.home() / "datasets" / "states-only.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows and any(r["diagram_type"] == "state" for r in rows)


def test_playground_offers_checkpoints_and_test_prompts(seeded):
    at = page("playground").run()
    no_exceptions(at)
    models = list(at.selectbox[0].options)
    assert models[0] == "phase2 · step 100"  # the newest checkpoint first
    assert any(o.startswith("base model: ") for o in models)
    assert at.radio[0].value == "pick one from the test split"
    assert next(b for b in at.button if b.label == "Generate").disabled is False


def test_playground_passes_its_decoding_to_the_generation_job(seeded):
    at = page("playground").run()
    next(t for t in at.toggle if t.label == "Penalise repeats (DRY)").set_value(True).run()
    next(s for s in at.slider if s.label == "temperature").set_value(0.7).run()
    next(s for s in at.slider if s.label == "top-p").set_value(0.9).run()
    no_exceptions(at)
    next(b for b in at.button if b.label == "Generate").click().run()
    job = jobs.get(at.query_params["job"])  # a single value: a str
    jobs.stop(job.id)
    argv = json.loads((job.dir / "command.json").read_text())["argv"]
    flags = dict(zip(argv[argv.index("--repetition") :: 2], argv[argv.index("--repetition") + 1 :: 2]))
    assert flags == {"--repetition": "dry", "--temperature": "0.7", "--top-p": "0.9", "--top-k": "0", "--seed": "0"}
    wait_done(job.id, 30)


# The A/B and quality pages: tests/test_pages_jobs.py


# ---- the background jobs the pages start (core/jobs.py) ---------------------------------------


def wait_done(job_id: str, seconds: float = 60) -> jobs.Job:
    deadline = time.monotonic() + seconds
    while not (job := jobs.get(job_id)).done:
        assert time.monotonic() < deadline, f"job {job_id} still {job.status}"
        time.sleep(0.1)
    return job


def test_a_job_keeps_its_output_result_and_how_it_ended():
    script = (
        "import json, sys; print('streamed', flush=True); print('a warning', file=sys.stderr); "
        "open(sys.argv[1], 'w').write(json.dumps({'answer': 42}))"
    )
    done = wait_done(jobs.start("check", ["-c", script, "{job}/result.json"], label="x").id)
    assert (done.status, done.returncode) == ("finished", 0)
    assert done.output() == "streamed\n" and done.log() == "a warning\n"
    assert done.result() == {"answer": 42}
    assert [j.id for j in jobs.list_jobs("check")] == [done.id] and jobs.list_jobs("other") == []

    failed = wait_done(jobs.start("check", ["-c", "import sys; sys.exit(3)"]).id)
    assert (failed.status, failed.returncode, failed.result()) == ("failed", 3, None)

    sleeper = jobs.start("check", ["-c", "import time; print('up', flush=True); time.sleep(60)"])
    while not jobs.get(sleeper.id).output():
        time.sleep(0.1)
    jobs.stop(sleeper.id)
    stopped = wait_done(sleeper.id, 15)
    assert stopped.status == "stopped" and stopped.seconds < 15


def finished_generation(output: str) -> str:
    """A finished playground job whose result is `output` (written the way core.inference.generate writes one)."""
    result = {
        "prompt": "A lamp is on or off.",
        "requirement": "A lamp is on or off.",
        "output": output,
        "raw_output": output,
        "tokens": 12,
        "latency_s": 0.4,
        "truncated": False,
        "diagram_type": "state",
    }
    script = f"import json, sys; open(sys.argv[1], 'w').write(json.dumps({result!r}))"
    return wait_done(jobs.start("generate", ["-c", script, "{job}/result.json"], label="base model").id).id


def playground_with(output: str) -> AppTest:
    at = page("playground")
    at.query_params["job"] = finished_generation(output)
    return at.run()


def test_playground_says_when_the_answer_has_no_plantuml():
    at = playground_with("A lamp has two states, on and off, and a switch moves it between them.")
    no_exceptions(at)
    errors = [e.value for e in at.error]
    assert errors == ["No PlantUML in the answer: it has no @startuml … @enduml block."]


def test_playground_numbers_the_lines_and_quotes_the_one_plantuml_rejects():
    answer = "@startuml\n[*] --> On\nOn -> -> Off\n@enduml"
    at = playground_with(answer)
    no_exceptions(at)
    error = next(e.value for e in at.error if "does not render" in e.value)
    assert error.startswith("the answer does not render — line 3 `On -> -> Off`:")
    [link] = [m.value for m in at.markdown if "Open in a PlantUML server" in m.value]  # to fix it there
    assert link.endswith(f"({ui.server_link(answer)})")
    assert at.code[0].proto.show_line_numbers  # the line number points at a numbered line
