"""Warm a studio process up in the background, so that the first visit to a page does not pay for what
every later visit gets for free.

- `preload`, when the server starts (the start-up hook in studio/app.py): the imports every page
  needs (pandas and core, ~1 s), while the browser is still loading Streamlit's own scripts. Then two
  costs that would otherwise fall on the first page: the module index that Streamlit's first element
  builds (its REPL check calls `inspect.stack()`, ~0.1 s the first time), and the full garbage
  collection Streamlit runs after every script run: what the imports created lives as long as the
  process, so it is frozen out of the collections (0.1–0.2 s each with the interpreter lock held,
  delaying the page's last messages, and every 3 s while a Runs page follows a training run).
- `start`, once, on the first visit: DELAY_S later, the PlantUML server's start and first render (a JVM
  start and its JIT: seconds of both cores) and the default training set's token counts for the time
  estimate (~2 s the first time in a runs root, then read back from its cache/). The delay keeps it off
  the CPU while the first page is drawn.
"""

import gc
import importlib
import inspect
import sys
import threading
import time

from core.errors import UserError

DELAY_S = 5.0
DIAGRAM = "@startuml\nclass Order\nclass Item\nOrder *-- Item\n@enduml"
# What the pages import (none of them imports a model library): pandas and the core modules.
PAGE_IMPORTS = (
    "pandas",
    "core.advisor.advise",
    "core.training.estimate",
    "core.studio.charts",
    "core.advisor.checklist",
    "core.training.checkpoints",
    "core.data",
    "core.training.distributed",
    "core.evaluation.evaluate",
    "core.inference.export",
    "core.inference.generate",
    "core.jobs",
    "core.training.phases",
    "core.evaluation.quality",
    "core.inference.render",
    "core.training.runs",
    "core.training.plan",
    "core.training.adopt",
    "core.inference.chosen",
    "core.studio.ui",
)


def _imports() -> None:
    for name in PAGE_IMPORTS:
        importlib.import_module(name)
    inspect.stack()
    gc.freeze()


def _work() -> None:
    time.sleep(DELAY_S)
    from core import data
    from core.config import Config
    from core.inference import render
    from core.training import estimate

    try:
        render.render(DIAGRAM, cache=False)
        estimate.count_tokens(Config(), data.load_split(data.default_dataset_dir(), "train"))
    except UserError as exc:  # the page that needs it says so, with the fix
        print(f"warm-up: {exc}", file=sys.stderr)


def _thread(target, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def preload() -> threading.Thread:
    return _thread(_imports, "umlstudio-preload")


def start() -> threading.Thread:
    return _thread(_work, "umlstudio-warm-up")
