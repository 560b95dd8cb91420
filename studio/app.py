"""PlantUML LoRA Studio: `streamlit run studio/app.py`.

The studio's server: an `st.App` whose start-up hook imports what the pages need in the background
(`core.warmup.preload`), before anyone opens a page. Each visit runs `studio/navigation.py`, which
routes to the pages in pages/.
"""

import contextlib
from pathlib import Path

import streamlit as st

from core import warmup


@contextlib.asynccontextmanager
async def preload(_app):
    warmup.preload()
    yield


app = st.App(Path(__file__).with_name("navigation.py"), lifespan=preload)
