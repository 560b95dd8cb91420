"""The long jobs of the A/B, quality, pre-continue and export pages: progress files, partial results, Cancel, the
A/B estimate and URL selection, and the quality checklist's plain sentences and counts (AppTest on
a seeded store, see test_pages.seed_store; the real browser drives a running job in test_browser)."""

import json
import time
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from streamlit.testing.v1 import AppTest
from test_pages import PAGES, no_exceptions, seed_rows, seeded, wait_done  # noqa: F401  (seeded: the fixture)

from core import data, jobs, paths, store
from core.config import QualityConfig
from core.evaluation import evaluate, metrics, quality
from core.inference import render
from core.training import checkpoints

pytestmark = pytest.mark.usefixtures("one_thread")


def page(name: str) -> AppTest:
    return AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=120)


# ---- progress of a job -----------------------------------------------------------------------


def test_a_worker_reports_its_count_and_time_left_in_its_job_folder():
    script = (
        "import time\nfrom core import jobs\np = jobs.Progress(4, 'prompt', stored=2)\np.start()\n"
        "for _ in range(4):\n    time.sleep(0.2); p.advance(); p.save(1)\n"
    )
    done = wait_done(jobs.start("check", ["-c", script]).id)
    state = done.progress()
    assert (state["done"], state["total"], state["saved"], state["stored"], state["unit"]) == (4, 4, 4, 2, "prompt")
    assert state["eta_s"] == 0
    assert jobs.progress_text(state) == (1.0, "prompt 4 of 4")
    middle = {**state, "done": 1, "eta_s": 390}
    assert jobs.progress_text(middle) == (0.25, "prompt 2 of 4 · ~6 min left")
    assert jobs.progress_text({"total": 9, "unit": "prompt", "done": 0}) == (
        0.0,
        "loading the model … (9 prompts to do)",
    )
    assert jobs.Progress(3).path is None  # outside a job nothing is written


def test_time_words():
    assert [jobs.duration_text(s) for s in (3, 42, 59, 61, 390, 3600 + 20 * 60)] == [
        "3 s",
        "40 s",
        "60 s",
        "1 min",
        "6 min",
        "1 h 20 min",
    ]
    assert jobs.time_left(0.5, 120) == " · ~2 min left" and jobs.time_left(0.01, 5) == ""


# ---- the empty diagram -----------------------------------------------------------------------


def test_an_empty_diagram_scores_zero():
    row = seed_rows()[1]
    out = "@startuml\n@enduml"
    found = metrics.score(
        out,
        row["plantuml"],
        row["prompt"],
        row["diagram_type"],
        syntax=render.syntax_check([out])[0],
        renders=render.render(out).ok,
        truncated=False,
        tokens=3,
        latency_s=0.1,
    )
    assert found["empty"] and metrics.row_score(found) == 0.0
    reference = metrics.score(
        row["plantuml"],
        row["plantuml"],
        row["prompt"],
        row["diagram_type"],
        syntax=None,
        renders=None,
        truncated=False,
        tokens=3,
        latency_s=0.1,
    )
    assert not reference["empty"] and metrics.row_score(reference) == 1.0


# ---- A/B -----------------------------------------------------------------------------------------


def pick(at: AppTest, ckpts: list[str], prompts: int, tokens: int = 320) -> AppTest:
    at.multiselect[0].set_value(ckpts)
    at.number_input[0].set_value(prompts)
    at.number_input[1].set_value(tokens)
    return at.button[0].click().run()  # the form's submit


def test_compare_reads_stored_outputs_keeps_the_selection_in_the_url_and_orders_drops_and_gains(seeded):
    p1_last = seeded["checkpoints"][2]
    names = checkpoints.stored()
    at = page("compare").run()
    no_exceptions(at)
    best = [o for o in at.multiselect[0].options if o.endswith(" · best of its run")]
    assert (
        best == [f"{names[p]} · best of its run" for p in checkpoints.stored() if p in checkpoints.best_paths()] != []
    )
    at = pick(at, [p1_last, "base"], 2)  # the two seeded prompts come first
    no_exceptions(at)
    assert at.query_params["ckpt"] == [p1_last, "base"] and at.query_params["prompts"] in ("2", ["2"])
    assert not at.warning and not jobs.list_jobs("compare")  # everything is stored: nothing to generate
    aggregate = at.dataframe[0].value.set_index(["rows", "metric"])
    delta = aggregate.loc[("all", "entity F1"), "Δ base model (untrained)"]
    assert delta.startswith("-") and "within noise" in delta  # base is worse than phase 1, on two prompts only
    assert len(at.image) == 6  # 2 prompts x (reference + 2 checkpoints)
    links = [m.value for m in at.markdown if "Open in a PlantUML server" in m.value]
    assert len(links) == 6 and all("](https://www.plantuml.com/plantuml/uml/" in link for link in links)
    texts = [t.value for t in at.text]
    assert set(texts) == {r["prompt"] for r in seed_rows()[:2]}  # prompts as text, not Markdown
    assert any(c.value.startswith("Below: the 2 of 2 prompts") for c in at.caption)
    table = at.dataframe[1].value
    assert list(table["drop"]) == sorted(table["drop"]) and (table["drop"] < 0).all()
    at.radio[0].set_value("largest gains first").run()
    assert list(at.dataframe[1].value["gain"]) == sorted(table["gain"], reverse=True)

    # a new session with the same URL has the same selection
    again = page("compare")
    again.query_params.update({"ckpt": [p1_last, "base"], "prompts": "2"})
    again.run()
    assert again.multiselect[0].value == [p1_last, "base"] and again.number_input[0].value == 2


def test_compare_with_repeats_penalised_shows_and_makes_those_outputs_only(seeded):
    p1_last = seeded["checkpoints"][2]
    at = page("compare").run()
    next(t for t in at.toggle if t.label == "Penalise repeats (DRY)").set_value(True)
    at = pick(at, [p1_last, "base"], 2)
    no_exceptions(at)
    assert at.query_params["repetition"] == "dry"
    assert at.warning[0].value.startswith("0 of 4 outputs already stored")  # the stored greedy ones are not these
    next(b for b in at.button if b.label.startswith("Generate the missing outputs")).click().run()
    [job] = jobs.list_jobs("compare")
    jobs.stop(job.id)
    argv = json.loads((job.dir / "command.json").read_text())["argv"]
    assert argv[argv.index("--repetition") + 1] == "dry"
    wait_done(job.id, 30)


def test_compare_estimates_the_time_and_counts_what_is_stored(seeded):
    p1_last, p2 = seeded["checkpoints"][2], seeded["checkpoints"][3]
    at = pick(page("compare").run(), [p1_last, p2], 2, tokens=320)
    no_exceptions(at)
    warning = at.warning[0].value
    assert warning.startswith(
        "2 of 4 outputs already stored (phase1 · step 300: 2 of 2, phase2 · step 100: 0 of 2). "
        "The other 2 take about **1 min** to generate."
    )
    assert "nothing measured on this machine yet" in " ".join(c.value for c in at.caption)
    assert not any(c.value.startswith("Below:") for c in at.caption)  # nothing every checkpoint answered
    rows = evaluate.sample_rows(data.load_split(data.default_dataset_dir(), "test"), 2)
    plan = evaluate.estimate([p1_last, p2], rows, 320)
    assert plan["stored"] == 2 and plan["missing"] == 2
    assert plan["per_checkpoint"][1]["tokens_per_row"] == 320  # phase 2 has no outputs: the budget
    assert plan["per_checkpoint"][0]["tokens_per_row"] == 20  # phase 1's stored outputs ran 20 tokens
    assert plan["seconds"] == pytest.approx(2 * 320 / evaluate.DEFAULT_TOKENS_PER_S)
    # at another token budget the stored outputs do not count
    assert evaluate.estimate([p1_last, p2], rows, 100)["stored"] == 0


@pytest.mark.e2e
def test_a_compare_job_stores_outputs_as_they_are_made_and_cancel_keeps_them(seeded, umlstudio_home):
    """A real compare job on the tiny model (phase 1 and phase 2, 4 prompts, a batch of 1): the page
    shows its count, the outputs are stored batch by batch, Cancel stops it and they stay."""
    p1_first, p2 = seeded["checkpoints"][0], seeded["checkpoints"][3]
    job = jobs.start(
        "compare",
        [
            "-m",
            "core",
            "compare",
            "--model1",
            p1_first,
            "--model2",
            p2,
            "--limit",
            "40",
            "--max-new-tokens",
            "64",
            "--batch-size",
            "1",
            "--out",
            "{job}/compare.html",
        ],
        label="phase1 · step 100, phase2 · step 100",
    )
    deadline = time.monotonic() + 240
    while jobs.get(job.id).progress().get("saved", 0) < 2:
        assert time.monotonic() < deadline and not jobs.get(job.id).done, jobs.get(job.id).log()
        time.sleep(0.3)
    at = page("compare").run()
    no_exceptions(at)
    (bar,) = at.get("progress")
    assert "Generating (phase1 · step 100, phase2 · step 100): prompt " in bar.proto.text
    assert " of 80" in bar.proto.text
    assert "Warning" not in " ".join(m.value for m in at.markdown)  # the log stays in the job folder
    next(b for b in at.button if b.key == "cancel").click().run()
    stopped = wait_done(job.id, 60)
    assert stopped.status == jobs.STOPPED
    saved = stopped.progress()["saved"]
    assert 2 <= saved < 80
    stored = store.query_for_tests("SELECT count(*) AS n FROM generations WHERE evaluation_id IS NULL")[0]["n"]
    assert stored == saved  # what finished is kept (not yet part of an evaluation: none finished)
    at = page("compare").run()
    assert any("was cancelled" in i.value for i in at.info)


# ---- quality ---------------------------------------------------------------------------------


def test_quality_items_lead_with_a_sentence_counted_on_the_same_rows(seeded):
    at = page("quality").run()
    no_exceptions(at)
    assert at.selectbox[0].value == seeded["checkpoints"][2]  # the evaluated checkpoint comes first
    items = {
        m.value.split("**")[1]: m.value.split(" — ", 1)[1]
        for m in at.markdown
        if m.value.startswith(":") and "**" in m.value
    }
    assert items["Loss < 0.5"] == "The validation loss is 0.450, under 0.5."
    assert items["Valid PlantUML"] == "PlantUML accepts 3 of 3 outputs; it rejects 0."
    assert items["Wrong diagram type"] == "1 of 3 outputs are another kind of diagram than the one asked for."
    assert items["Logical and complete structure"].startswith("2 of 3 outputs are a whole diagram")
    assert items["Logical and complete structure"].endswith("1 are not: 1 of another diagram type.")
    numbers = [e for e in at.expander if e.label == "numbers"]
    assert len(numbers) == 10 and "95% interval" in numbers[1].markdown[0].value
    assert at.warning[0].value.startswith("Not yet good: ")
    labels = at.selectbox[1].options
    assert any(o == "Wrong diagram type (1 of 3 outputs)" for o in labels)
    assert any(c.value.startswith("Judged on the latest evaluation: 3 test rows of data/default, ") for c in at.caption)


def test_quality_lets_a_person_pick_an_earlier_evaluation_of_the_checkpoint(seeded):
    latest = store.evaluations.latest_of(seeded["checkpoints"][2])
    earlier = replace(latest, id=store.new_id(), n=2, created_at=latest.created_at - timedelta(days=1))
    kept = store.evaluations.generations_of(latest.id)[:2]
    store.evaluations.add(earlier, [], [replace(g, id=store.new_id(), evaluation_id=earlier.id) for g in kept])
    at = page("quality").run()
    no_exceptions(at)
    picker = next(s for s in at.selectbox if s.label == "Evaluation")
    assert [o.split(" rows of ")[0] for o in picker.options] == ["3 test", "2 test"]  # newest first
    assert any(c.value.startswith("Judged on the latest evaluation: 3 test rows") for c in at.caption)
    picker.select_index(1).run()
    no_exceptions(at)
    assert any(c.value.startswith("Judged on an earlier evaluation: 2 test rows") for c in at.caption)
    assert "of 2 outputs" in " ".join(m.value for m in at.markdown)  # its items counted on its own rows


def test_an_evaluation_says_which_rows_of_which_dataset_it_judged():
    when = datetime(2026, 12, 7, 10, 30)
    sampled = store.evaluations.Evaluation(
        id="e1",
        checkpoint="base",
        dataset=str(paths.DATA_DIR / "default"),
        settings={"split": "validation"},
        n=20,
        summary={"split": "validation", "sample": {"limit": 20, "seed": 0}},
        created_at=when,
    )
    assert quality.evaluation_words(sampled) == (
        "20 validation rows of data/default (a seeded sample: every diagram type in turn, seed 0), "
        "2026-12-07 10:30 (UTC)"
    )
    elsewhere = replace(sampled, dataset="/srv/sets/mine", settings=None, summary={})
    assert quality.evaluation_words(elsewhere) == "20 test rows of /srv/sets/mine, 2026-12-07 10:30 (UTC)"


def test_the_quality_sentences_agree_with_the_verdict_counts():
    rows = [
        {
            "syntax_valid": v,
            "renders": v,
            "complete": c,
            "type_match": True,
            "entity_recall": 1.0,
            "entity_f1": 1.0,
            "relation_f1": None,
            "hallucinated_entities": [],
            "looped": False,
        }
        for v, c in [(False, True)] * 29 + [(True, True)] * 5 + [(True, False)] * 6
    ]
    judged = metrics.verdict(metrics.aggregate(rows), None, QualityConfig(), rows)
    items = {i["item"]: i for i in judged["items"]}
    assert (
        items["Valid PlantUML"]["failing_count"] == 29
        and len(items["Valid PlantUML"]["failing"]) == metrics.MAX_FAILING
    )
    assert quality.sentence(items["Valid PlantUML"], rows) == "PlantUML accepts 11 of 40 outputs; it rejects 29."
    assert quality.sentence(items["Logical and complete structure"], rows) == (
        "5 of 40 outputs are a whole diagram of the right type that PlantUML accepts and that names at least one "
        "expected entity; 35 are not: 6 cut off or unclosed, 29 rejected by PlantUML."
    )
    assert quality.sentence(items["Incomplete diagrams"], rows).startswith("6 of 40 outputs")


def test_export_page_offers_cancel_with_the_time_left_while_an_export_runs(seeded):
    job = jobs.start(
        "export",
        ["-c", "import sys, time; print('[1/2] merging', file=sys.stderr, flush=True); time.sleep(60)"],
        label="base → /tmp/x",
    )
    try:
        while "[1/2]" not in jobs.get(job.id).log():
            time.sleep(0.1)
        at = page("export").run()
        no_exceptions(at)
        (bar,) = at.get("progress")
        assert bar.proto.text.startswith("base → /tmp/x: step 1 of 2: merging")
        next(b for b in at.button if b.key == "cancel").click().run()
        assert wait_done(job.id, 15).status == jobs.STOPPED
    finally:
        jobs.stop(job.id)


def test_pre_continue_shows_the_evaluation_job_with_its_count_and_cancel(seeded):
    start = seeded["checkpoints"][2]  # phase1's last checkpoint, where its next phase starts
    with store.connect() as con:  # not evaluated: the page offers to evaluate it
        con.execute(
            "DELETE FROM generations WHERE evaluation_id IN (SELECT id FROM evaluations WHERE checkpoint = ?)", [start]
        )
        con.execute("DELETE FROM evaluations WHERE checkpoint = ?", [start])
    at = page("pre_continue").run()
    at.selectbox[0].select_index(1).run()  # phase1
    assert any(b.key == "evaluate" for b in at.button)
    script = (
        "import time\nfrom core import jobs\np = jobs.Progress(4, 'prompt')\np.start()\np.advance(); p.save(1)\n"
        "time.sleep(60)\n"
    )
    job = jobs.start("evaluate", ["-c", script], label=start)
    try:
        while jobs.get(job.id).progress().get("done") != 1:
            time.sleep(0.1)
        at.run()
        no_exceptions(at)
        (bar,) = at.get("progress")
        assert bar.proto.text.startswith("Evaluating the checkpoint: prompt 2 of 4")
        assert not any(b.key == "evaluate" for b in at.button)  # one evaluation at a time
        next(b for b in at.button if b.key == "cancel_evaluation").click().run()
        assert wait_done(job.id, 15).status == jobs.STOPPED
        at.run()
        assert any("was cancelled; the 1 outputs" in i.value for i in at.info)
        assert any(b.key == "evaluate" for b in at.button)
    finally:
        jobs.stop(job.id)
