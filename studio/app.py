"""PlantUML LoRA Studio: `streamlit run studio/app.py`.

The studio's server: an `st.App` whose start-up hook imports what the pages need in the background
(`core.studio.warmup.preload`), before anyone opens a page, and whose shutdown stops the PlantUML server. Each
visit runs `studio/navigation.py`, which routes to the pages in pages/.
"""

import contextlib
from pathlib import Path

import streamlit as st

from core.inference import render
from core.studio import warmup


@contextlib.asynccontextmanager
async def lifespan(_app):
    warmup.preload()
    yield
    # The server re-raises a SIGTERM once it has shut down, which ends the process without its atexit
    # handlers: stop the PlantUML server here, or its JVM outlives the studio.
    render.renderer().close()


app = st.App(Path(__file__).with_name("navigation.py"), lifespan=lifespan)
