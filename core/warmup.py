"""Warm a studio process up in the background, once, so that the first visit to a page does not pay
for what every later visit gets for free: the PlantUML server's start and first render (a JVM start
and its JIT: seconds of both cores) and the default training set's token counts for the time
estimate (~0.5 s).

It waits DELAY_S first, so that it does not compete with the first page for the CPU while the browser
loads the studio."""

import sys
import threading
import time

from core.errors import UserError

DELAY_S = 5.0
DIAGRAM = "@startuml\nclass Order\nclass Item\nOrder *-- Item\n@enduml"


def _work() -> None:
    time.sleep(DELAY_S)
    from core import advise, data, render
    from core.config import Config

    try:
        render.render(DIAGRAM, cache=False)
        advise.count_tokens(Config(), data.load_split(data.default_dataset_dir(), "train"))
    except UserError as exc:  # the page that needs it says so, with the fix
        print(f"warm-up: {exc}", file=sys.stderr)


def start() -> threading.Thread:
    thread = threading.Thread(target=_work, name="umlstudio-warm-up", daemon=True)
    thread.start()
    return thread
