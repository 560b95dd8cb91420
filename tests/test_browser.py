"""The whole studio in a real browser: `streamlit run studio/app.py` on a free loopback port, every
page opened in headless Chromium, one playground generation with the tiny model whose rendered
diagram must appear, and an A/B job that counts, fills in rows before it ends and is cancelled.
No request may leave the studio. Screenshots go to test-artifacts/.

Needs Debian's chromium at /usr/bin/chromium (no browser is downloaded): without it the test is
skipped, unless UMLSTUDIO_REQUIRE_BROWSER=1 (CI), where it fails."""

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from test_pages import seed_store

from core import jobs

pytestmark = pytest.mark.browser  # make test-fast leaves these out

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGES = {  # url path -> the page's title
    "": "Runs",
    "train": "Train",
    "pre_continue": "Pre-continue checklist",
    "playground": "Prompt playground",
    "compare": "Checkpoint A/B",
    "quality": "Quality checklist",
    "data": "Data",
    "export": "Export",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_studio(home: Path, port: int, cwd: Path = ROOT, extra=(), env=None) -> subprocess.Popen:
    """`streamlit run studio/app.py [extra]` as a user starts it (from `cwd`), on `port`, with its runs root
    at `home`."""
    log = open(home / "streamlit.log", "wb")
    app = "studio/app.py" if cwd == ROOT else str(ROOT / "studio" / "app.py")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", app, "--server.port", str(port), *extra],
        cwd=cwd,
        env={**os.environ, "UMLSTUDIO_HOME": str(home), **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
                if answer.read() == b"ok":
                    return process
        except OSError:
            time.sleep(0.3)
        if process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"streamlit did not come up: {(home / 'streamlit.log').read_text()[-2000:]}")


@contextlib.contextmanager
def studio_at(home: Path):
    """A studio (`start_studio`) on a free loopback port for the length of the block: yields the port."""
    port = free_port()
    studio = start_studio(home, port)
    try:
        yield port
    finally:
        os.killpg(studio.pid, 15)
        studio.wait(timeout=30)


def wait_until_idle(page, timeout_ms: int = 60_000) -> None:
    """The script has run to its end ('notRunning') and the page's title is on screen."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)
    page.wait_for_selector("[data-testid='stMainBlockContainer'] h1", timeout=timeout_ms)


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the selectbox labelled `label`."""
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()


def watch_requests(page, port: int) -> list[str]:
    """Every request the page makes that is not to the studio (the list fills in as the page runs)."""
    outside = []
    studio = (f"http://127.0.0.1:{port}/", f"ws://127.0.0.1:{port}/")
    page.on(
        "request",
        lambda request: None if request.url.startswith((*studio, "data:", "blob:")) else outside.append(request.url),
    )
    return outside


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("UMLSTUDIO_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing and UMLSTUDIO_REQUIRE_BROWSER=1: apt-get install chromium")
        pytest.skip(
            f"{CHROMIUM} is missing (apt-get install chromium); set UMLSTUDIO_REQUIRE_BROWSER=1 to fail instead"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_every_page_and_a_playground_generation(browser, umlstudio_home, tiny_model):
    seeded = seed_store(tiny_model)
    ARTIFACTS.mkdir(exist_ok=True)
    with studio_at(umlstudio_home) as port:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        outside = watch_requests(page, port)
        for path, title in PAGES.items():
            page.goto(f"http://127.0.0.1:{port}/{path}")
            wait_until_idle(page)
            assert page.locator("[data-testid='stMainBlockContainer'] h1").first.inner_text() == title
            assert page.get_by_test_id("stException").count() == 0, (
                f"{title}: {page.get_by_test_id('stException').first.inner_text()}"
            )
            page.screenshot(path=str(ARTIFACTS / f"page-{path or 'runs'}.png"), full_page=True)

        # A generation with the tiny model: its checkpoint, a prompt from the test split.
        page.goto(f"http://127.0.0.1:{port}/playground")
        wait_until_idle(page)
        step = seeded["checkpoints"][-1].rsplit("-", 1)[1]
        choose(page, "Model", f"phase2 · step {step}")
        page.get_by_role("button", name="Generate").click()
        # The worker loads the model and streams; when it is done the output's diagram (or PlantUML's
        # error with its line) and the reference's rendered diagram appear.
        page.get_by_text("Against the reference").wait_for(timeout=240_000)
        wait_until_idle(page)
        page.screenshot(path=str(ARTIFACTS / "playground-generation.png"), full_page=True)
        images = page.locator("[data-testid='stImage'] img")
        assert images.count() >= 1
        assert images.first.get_attribute("src").startswith("data:image/svg+xml")
        assert page.get_by_text("the reference from the dataset").count() == 1
        assert not outside, f"requests that left the studio: {outside}"


def progress_count(page) -> tuple[int, int] | None:
    """(n, total) of the A/B job's 'prompt n of total' progress text; None while it shows none."""
    bars = page.get_by_test_id("stProgress")
    if not bars.count():
        return None
    found = re.search(r"prompt (\d+) of (\d+)", bars.first.inner_text())
    return (int(found.group(1)), int(found.group(2))) if found else None


def test_an_ab_job_counts_fills_in_rows_before_it_ends_and_cancels(browser, umlstudio_home, tiny_model):
    """2 checkpoints x 120 prompts with the tiny model (a quiet machine makes 2 x 40 in under
    30 s): the count advances, the first side-by-side rows
    appear while the job still runs, Cancel stops it and what was made stays."""
    seeded = seed_store(tiny_model)
    first, second = seeded["checkpoints"][0], seeded["checkpoints"][3]  # neither has a stored output
    ARTIFACTS.mkdir(exist_ok=True)
    with studio_at(umlstudio_home) as port:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        outside = watch_requests(page, port)
        query = urllib.parse.urlencode([("ckpt", first), ("ckpt", second), ("prompts", 120), ("tokens", 512)])
        page.goto(f"http://127.0.0.1:{port}/compare?{query}")  # the selection comes from the link
        wait_until_idle(page)
        assert page.get_by_text("0 of 240 outputs already stored").count() == 1
        page.get_by_role("button", name="Generate the missing outputs (background job)").click()

        deadline = time.monotonic() + 180
        counts = set()
        while len(counts) < 2:  # two different counts seen: it advances
            assert time.monotonic() < deadline, f"the count did not advance: {counts}"
            if (count := progress_count(page)) is not None:
                counts.add(count)
            time.sleep(0.5)
        assert {total for _, total in counts} == {240}
        page.get_by_text(re.compile(r"^Below: the \d+ of 120 prompts every checkpoint has answered so far")).wait_for(
            timeout=180_000
        )
        (job,) = jobs.list_jobs("compare")
        assert not jobs.get(job.id).done  # rows are on the page before the job ends
        page.screenshot(path=str(ARTIFACTS / "compare-running.png"), full_page=True)

        page.get_by_role("button", name="Cancel").click()
        page.get_by_text("The last compare job was cancelled").wait_for(timeout=60_000)
        page.get_by_test_id("stImage").first.wait_for(timeout=60_000)  # the kept rows: the reference, rendered
        page.get_by_text(re.compile(r"· score \d\.\d{3}")).nth(1).wait_for(timeout=60_000)  # both checkpoints' outputs
        stopped = jobs.get(job.id)
        assert stopped.status == jobs.STOPPED and 0 < stopped.progress()["saved"] < 240
        assert page.get_by_test_id("stProgress").count() == 0
        page.screenshot(path=str(ARTIFACTS / "compare-cancelled.png"), full_page=True)
        assert not outside, f"requests that left the studio: {outside}"
