"""How fast every studio page becomes usable on a big store.

Seeds a temporary runs root with 50 runs (lineages of three phases), 100,000 metric rows, 250
checkpoints, 250 evaluations and 10,000 generations; starts `streamlit run studio/app.py` on a free
loopback port; opens each page in headless Chromium and measures the time from navigation until
the script has finished ("Running..." gone: the app's script state is notRunning) and the page's
title is visible. Each page is opened by URL twice, cold (first visit: caches empty, PlantUML server
not started; the whole app loads) and warm, then once more through its sidebar link (in-app
navigation, the way a user moves between pages). Target: under 2 s from the sidebar.

Then the first page after the studio starts, ROUNDS times each for two browsers: a new Chromium each round
(nothing cached; target: under 3 s) and a returning one, the same profile each round after one visit
that filled its cache (how a returning user meets it; target: under 1.5 s); a new studio each round, Runs
opened by URL as soon as the server answers its health check. Reported: the seconds until the server
answered, until the page was usable (as above), and until its loss curve was drawn; the median and the
range.

    .venv/bin/python bench/studio_pages.py [--rounds 7]
"""

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_browser import (  # noqa: E402  the studio, and the wait for a finished page, as the browser test has them
    CHROMIUM,
    CHROMIUM_ARGS,
    PAGES,
    free_port,
    start_studio,
    studio_at,
    wait_until_idle,
)

RUNS, METRIC_ROWS, GENERATIONS, CHECKPOINTS_PER_RUN, PROMPTS = 50, 100_000, 10_000, 5, 40
TARGET_S, FIRST_PAGE_TARGET_S, RETURNING_TARGET_S = 2.0, 3.0, 1.5  # returning: a browser that opened it before
CHART = "[data-testid='stPlotlyChart'] .main-svg"


def seed(home: Path) -> None:
    os.environ["UMLSTUDIO_HOME"] = str(home)
    from core import config, data, store
    from core.evaluation import metrics

    rng = random.Random(0)
    steps_per_run = METRIC_ROWS // RUNS // 4  # four curves a run
    rows_metrics, rows_ckpts, run_ids = [], [], []
    for i in range(RUNS):
        phase = i % 3
        out = home / f"run{i:02d}"
        cfg = config.parse({"training": {"output_dir": str(out)}}).to_dict()
        parent = run_ids[-1] if phase else None
        parent_ckpt = str(home / f"run{i - 1:02d}" / f"checkpoint-{steps_per_run}") if phase else None
        run_id = store.runs.create(
            name=f"run{i:02d}",
            output_dir=out,
            phase_kind="continue" if phase else "fresh",
            config=cfg,
            parent_run=parent,
            parent_checkpoint=parent_ckpt,
            base_model="smollm2-135m",
        )
        store.runs.update(run_id, status="finished")
        run_ids.append(run_id)
        level = 2.3 * 0.5**phase
        for step in range(1, steps_per_run + 1):
            loss = level * math.exp(-step / 200) + 0.3 + rng.gauss(0, 0.02)
            rows_metrics += [
                [run_id, step, step / 100, "loss", loss],
                [run_id, step, step / 100, "learning_rate", 1e-4],
                [run_id, step, step / 100, "tokens_per_s", 500 + rng.gauss(0, 20)],
                [
                    run_id,
                    step,
                    step / 100,
                    "eval_loss" if step % 10 == 0 else "elapsed_s",
                    loss + 0.1 if step % 10 == 0 else step * 0.4,
                ],
            ]
        for k in range(1, CHECKPOINTS_PER_RUN + 1):
            step = k * steps_per_run // CHECKPOINTS_PER_RUN
            path = out / f"checkpoint-{step}"
            path.mkdir(parents=True)
            rows_ckpts.append([str(path), run_id, step, "0" * 64])

    test = data.load_split(data.default_dataset_dir(), "test")[:PROMPTS]
    evaluations, generations = [], []
    per_eval = PROMPTS
    for e, (path, _run_id, _step, _) in enumerate(rows_ckpts[: GENERATIONS // per_eval]):
        evaluation = store.new_id()
        scored = []
        for row in test:
            output = row["plantuml"] if rng.random() < 0.5 + 0.002 * e else "@startuml\nclass Thing\n@enduml"
            m = metrics.score(
                output,
                row["plantuml"],
                row["prompt"],
                row["diagram_type"],
                syntax=None,
                renders=None,
                truncated=False,
                tokens=60,
                latency_s=1.0,
            )
            scored.append(m)
            generations.append(
                [
                    store.new_id(),
                    evaluation,
                    path,
                    store.new_id(),
                    row["prompt"],
                    row["plantuml"],
                    row["diagram_type"],
                    output,
                    json.dumps({**m, "truncated": False}),
                    60,
                    1.0,
                ]
            )
        summary = metrics.aggregate(scored)
        summary["loss"] = 0.4
        evaluations.append(
            [evaluation, path, "data/default", json.dumps({"split": "test"}), len(test), json.dumps(summary)]
        )

    stamp = store.now()
    store.load_frames(
        {
            "metrics": pd.DataFrame(rows_metrics, columns=["run_id", "step", "epoch", "name", "value"]).assign(
                time=stamp
            ),
            "checkpoints": pd.DataFrame(rows_ckpts, columns=["path", "run_id", "step", "manifest_sha256"]).assign(
                created_at=stamp
            ),
            "evaluations": pd.DataFrame(
                evaluations, columns=["id", "checkpoint", "dataset", "settings", "n", "summary"]
            ).assign(created_at=stamp),
            "generations": pd.DataFrame(
                generations,
                columns=[
                    "id",
                    "evaluation_id",
                    "checkpoint",
                    "settings_key",
                    "prompt",
                    "reference",
                    "diagram_type",
                    "output",
                    "metrics",
                    "tokens",
                    "latency_s",
                ],
            ).assign(created_at=stamp),
        }
    )
    counts = {
        table: n
        for table, n in store.counts().items()
        if table in ("runs", "metrics", "checkpoints", "evaluations", "generations")
    }
    print("seeded: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()), flush=True)


def measure(page, url: str) -> float:
    start = time.perf_counter()
    page.goto(url)
    wait_until_idle(page, timeout_ms=120_000)
    seconds = time.perf_counter() - start
    if page.get_by_test_id("stException").count():
        raise SystemExit(f"{url}: the page raised: {page.get_by_test_id('stException').first.inner_text()[:500]}")
    return seconds


def measure_click(page, title: str) -> float:
    """In-app navigation: a click on the sidebar link until the new page's script has finished."""
    start = time.perf_counter()
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    page.wait_for_function(
        """title => {
            const app = document.querySelector("[data-testid='stApp']");
            const h1 = document.querySelector("[data-testid='stMainBlockContainer'] h1");
            return app && app.dataset.testScriptState === "notRunning" && h1 && h1.innerText.trim() === title;
        }""",
        arg=title,
        timeout=120_000,
    )
    return time.perf_counter() - start


def first_page(playwright, home: Path, rounds: int, profile: Path | None = None) -> list[tuple[float, float, float]]:
    """(server up, page usable, curves drawn) in seconds, a fresh studio each round. profile None: a new
    browser each round (nothing cached). A profile: a returning browser, the same profile each round and the
    studio on the same port (the HTTP cache is per address), so Streamlit's and plotly's scripts come from
    the browser's cache, as for a user who has opened the studio before."""
    results = []
    port = free_port()
    for _ in range(rounds):
        started = time.perf_counter()
        studio = start_studio(home, port)
        try:
            up = time.perf_counter() - started
            if profile is None:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
            else:
                browser = playwright.chromium.launch_persistent_context(
                    str(profile),
                    executable_path=CHROMIUM,
                    args=CHROMIUM_ARGS,
                    viewport={"width": 1400, "height": 1000},
                )
                page = browser.new_page()
            start = time.perf_counter()
            usable = measure(page, f"http://127.0.0.1:{port}/")
            page.wait_for_selector(CHART, timeout=120_000)
            results.append((up, usable, time.perf_counter() - start))
            browser.close()
        finally:
            os.killpg(studio.pid, 15)
            studio.wait(timeout=30)
    return results


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="first-page rounds (a new studio and browser each)")
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="umlstudio-bench-") as folder:
        home = Path(folder)
        started = time.perf_counter()
        seed(home)
        print(f"seeding took {time.perf_counter() - started:.1f} s", flush=True)
        with studio_at(home) as port, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            results = {}
            for attempt in ("cold", "warm"):
                for path, title in PAGES.items():
                    results.setdefault(title, {})[attempt] = measure(page, f"http://127.0.0.1:{port}/{path}")
            for title in [*list(PAGES.values())[1:], list(PAGES.values())[0]]:
                results[title]["click"] = measure_click(page, title)
            browser.close()
        load = os.getloadavg()[0]
        with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="umlstudio-profile-") as profile:
            firsts = {"a new browser": first_page(playwright, home, rounds)}
            first_page(playwright, home, 1, Path(profile))  # the visit that fills the returning browser's cache
            firsts["a returning browser"] = first_page(playwright, home, rounds, Path(profile))
    print(
        f"\nseconds until the page is usable (target: from the sidebar < {TARGET_S:g} s; by URL each visit is a new "
        f"session); load: {load:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'page':<24}{'cold URL':>9}{'warm URL':>9}{'sidebar':>9}")
    for title, times in results.items():
        flag = "" if times["click"] < TARGET_S else "  over target"
        print(f"{title:<24}{times['cold']:>9.2f}{times['warm']:>9.2f}{times['click']:>9.2f}{flag}")
    for who, target in (("a new browser", FIRST_PAGE_TARGET_S), ("a returning browser", RETURNING_TARGET_S)):
        print(
            f"\nfirst page after the studio starts, {who} (Runs by URL, a new studio each round; target "
            f"< {target:g} s); load at the end: {os.getloadavg()[0]:.1f}"
        )
        for i, label in enumerate(("server answers", "page usable", "curves drawn")):
            values = [r[i] for r in firsts[who]]
            print(
                f"{label:<16} median {statistics.median(values):.2f} s  ({min(values):.2f}–{max(values):.2f}, "
                f"{len(values)} rounds)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
