"""The Runs page in a real browser while a real training run writes to the store: a tiny model trains in
its own worker (`python -m core.training.train`, as the Train page starts it) and the page, opened once and never
reloaded, shows its progress, every checkpoint it saves as a marker on the loss curve and its best
checkpoint as they change. Every request the pages make goes to the studio itself; at 800 px the
sidebar folds and metric values fit; the Train page's YAML editor is in a monospace font. A folder trained
by plain transformers Trainer + PEFT is opened from the Runs page and its next phase made ready on the
Pre-continue page.

Needs Debian's chromium at /usr/bin/chromium (see test_browser.py): skipped without it, unless
UMLSTUDIO_REQUIRE_BROWSER=1."""

import os
import re
import signal
import time

import pytest
from test_browser import ARTIFACTS, browser, studio_at, wait_until_idle, watch_requests  # noqa: F401 (a fixture)
from test_import import train_with_transformers
from test_pages import seed_store
from test_train import write_config

from core import config as cfg
from core import store
from core.advisor import advise, checklist
from core.training import phases, runs

pytestmark = pytest.mark.browser  # make test-fast leaves these out

# A checkpoint every 8 steps and a validation loss every 16 (and at steps 0 and 40): checkpoints 8 and 24 have
# no validation loss of their own, and the best checkpoint moves (16, 32) while the run still trains.
TRAINING = {"max_steps": 40, "save_steps": 8, "eval_steps": 16, "logging_steps": 1}


def metric(page, label: str) -> str:
    """The value of the st.metric labelled `label`."""
    box = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    )
    return box.get_by_test_id("stMetricValue").inner_text()


def checkpoint_markers(page) -> list[int]:
    """The steps of the checkpoint markers drawn on the Runs page's chart: the texts of the diamonds of each
    "<run>: checkpoints" trace in the figure plotly drew (its graph div holds the figure it drew)."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
        .flatMap(plot => (plot.data || []).filter(trace => (trace.name || '').endsWith(': checkpoints')))
        .flatMap(trace => trace.text.map(text => parseInt(text.slice('checkpoint at step '.length))))""")


def test_the_runs_page_follows_a_real_training_run_live(browser, umlstudio_home, tiny_model, tmp_path):
    umlstudio_home.mkdir(parents=True, exist_ok=True)
    path = write_config(tmp_path, "live", tiny_model, training=TRAINING)
    ARTIFACTS.mkdir(exist_ok=True)
    run_id = None
    with studio_at(umlstudio_home) as port:
        try:
            run_id = runs.start_worker(cfg.load(path), path)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            outside = watch_requests(page, port)
            page.goto(f"http://127.0.0.1:{port}/")  # opened while the worker starts; never reloaded below
            wait_until_idle(page)
            assert metric(page, "best checkpoint") == "—"

            seen_best, seen_markers, seen_progress = set(), set(), set()
            deadline = time.monotonic() + 600  # a busy shared machine trains the tiny model slowly
            while store.runs.get(run_id).status in ("created", "running") and time.monotonic() < deadline:
                seen_best.add(metric(page, "best checkpoint"))
                seen_markers.add(tuple(checkpoint_markers(page)))
                bar = page.get_by_test_id("stProgress")
                if bar.count():
                    seen_progress.add(bar.first.inner_text())
                time.sleep(1)
            assert store.runs.get(run_id).status == "finished", store.runs.get(run_id).error
            trained = set(seen_best)  # what the page showed while the run trained
            # The page's refresh after the run ended: the last checkpoints (32, 40) may come less than one
            # refresh before the end, so the page shows them only then, still without a reload.
            page.wait_for_function("() => !document.body.innerText.includes('refreshing every 3 s')", timeout=30_000)
            wait_until_idle(page)
            seen_best.add(metric(page, "best checkpoint"))
            page.screenshot(path=str(ARTIFACTS / "runs-live.png"), full_page=True)

            # The open page showed a best checkpoint while the run trained, and two or more by its last refresh.
            # Its markers changed while it trained: the page opened before the first checkpoint, so it drew
            # markers it did not have at first.
            assert any(v.startswith("step ") for v in trained), f"no best checkpoint while it trained: {trained}"
            steps = sorted(int(v.split()[1]) for v in seen_best if v.startswith("step "))
            assert len(steps) >= 2, f"the best checkpoint never changed on the open page: {seen_best}"
            growing = sorted(seen_markers, key=len)
            assert len(growing) >= 2 and growing[-1], f"markers did not appear while it trained: {seen_markers}"
            assert any(
                text.startswith("step ") and " of 40 · ≈ " in text and text.endswith(" left") for text in seen_progress
            ), seen_progress
            # When it ended: every saved checkpoint is marked, those without a validation loss of their own too.
            saved = [c.step for c in runs.saved([run_id])]
            assert sorted(checkpoint_markers(page)) == saved == [8, 16, 24, 32, 40]
            best = runs.table()[0]["best_checkpoint"]
            assert metric(page, "best checkpoint") == f"step {best.rsplit('-', 1)[1]}"
            assert outside == [], f"requests that left the studio: {outside}"
        finally:
            if run_id and runs.stop_worker(run_id):  # the test failed while it trained: no worker left behind
                time.sleep(10)
                if phases.worker_alive(store.runs.get(run_id)):
                    os.kill(store.runs.get(run_id).pid, signal.SIGKILL)


@pytest.mark.parametrize("width", [800])
def test_a_narrow_window_folds_the_sidebar_and_fits_the_metrics(browser, umlstudio_home, tiny_model, width):
    seed_store(tiny_model)
    with studio_at(umlstudio_home) as port:
        page = browser.new_page(viewport={"width": width, "height": 1000})
        outside = watch_requests(page, port)
        page.goto(f"http://127.0.0.1:{port}/")
        wait_until_idle(page)
        page.wait_for_selector("button[aria-controls='stSidebar'][aria-expanded='false']", timeout=10_000)
        assert page.get_by_test_id("stSidebar").bounding_box()["width"] < 50
        cut = page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid=stMetricValue]'))
            .filter(v => v.scrollWidth > v.clientWidth + 1).map(v => v.innerText)""")
        assert cut == [], f"metric values cut at {width} px: {cut}"
        page.screenshot(path=str(ARTIFACTS / f"runs-{width}px.png"), full_page=True)

        page.goto(f"http://127.0.0.1:{port}/train")
        wait_until_idle(page)
        font = page.locator(".st-key-yaml_editor textarea").evaluate("e => getComputedStyle(e).fontFamily")
        assert "monospace" in font
        assert outside == [], f"requests that left the studio: {outside}"


def test_a_folder_trained_elsewhere_is_opened_and_its_next_phase_is_ready(
    browser, umlstudio_home, tiny_model, tmp_path
):
    """A folder made by plain transformers Trainer + PEFT (LoRA on the output layer too, so the tiny model's loss
    falls: "still decreasing") opened from the Runs page's "Open a training folder": its name, curve and diagnosis
    appear; the Pre-continue page then proposes the continue phase from its last checkpoint, lists the checks
    (not evaluated, not backed up: such a folder has neither) and enables Start once an override reason is typed."""
    from playwright.sync_api import expect

    out = tmp_path / "outputs"
    train_with_transformers(tiny_model, out, targets=("q_proj", "v_proj", "lm_head"), learning_rate=2e-2)
    umlstudio_home.mkdir(parents=True, exist_ok=True)
    ARTIFACTS.mkdir(exist_ok=True)
    with studio_at(umlstudio_home) as port:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        outside = watch_requests(page, port)
        page.goto(f"http://127.0.0.1:{port}/")
        wait_until_idle(page)
        page.get_by_text("Open a training folder", exact=True).click()
        page.get_by_label("Folder", exact=True).fill(str(out))
        page.get_by_label("Folder", exact=True).press("Enter")  # the text is sent: the button is enabled
        opened = page.get_by_role("button", name="Open", exact=True)
        expect(opened).to_be_enabled(timeout=30_000)
        opened.click()
        expect(page.get_by_text("Run 'outputs' imported: 24 steps, 3 checkpoint(s)")).to_be_visible(timeout=120_000)
        wait_until_idle(page)
        expect(page.get_by_text(advise.PLAIN[1], exact=True)).to_be_visible()  # its diagnosis: still decreasing
        expect(page.get_by_role("heading", name="outputs", exact=True)).to_be_visible()  # the run shown above
        curves = page.locator(".st-key-curves")  # the run's chart, whichever library draws it
        expect(curves).to_be_visible()
        expect(curves.locator("svg, canvas").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "runs-imported.png"), full_page=True)

        page.goto(f"http://127.0.0.1:{port}/pre_continue")
        wait_until_idle(page)
        page.get_by_role("combobox", name="Run to continue").click()
        page.get_by_role("option", name=re.compile(r"^outputs · ")).click()
        wait_until_idle(page)
        expect(page.get_by_text(advise.PLAIN[1], exact=True)).to_be_visible()
        main = page.get_by_test_id("stMainBlockContainer")
        for title in checklist.TITLES.values():  # every check listed
            expect(main.get_by_text(title).first).to_be_visible()
        expect(main.get_by_text(f"no evaluation of {out / 'checkpoint-24'}").first).to_be_visible()
        start = page.get_by_role("button", name="Start the next phase")
        expect(start).to_be_disabled()
        reason = page.get_by_label(re.compile(r"^2 of 7 checks fail\. Override reason"))
        reason.fill("their run, continued before it is evaluated")
        reason.press("Enter")
        expect(start).to_be_enabled(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "pre-continue-imported.png"), full_page=True)
        assert outside == [], f"requests that left the studio: {outside}"
    run = store.runs.named("outputs")
    assert run is not None and run.imported["from"] == str(out.resolve())
