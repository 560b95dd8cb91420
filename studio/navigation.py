"""The studio's frame, run on every visit (studio/app.py serves it): it only routes; each page lives in pages/.

The studio is a local tool: `studio/.streamlit/config.toml` (read wherever it is started from) binds it
to 127.0.0.1. Bound anywhere else (a global Streamlit config, a flag, an environment variable), it refuses
to serve unless UMLSTUDIO_ALLOW_REMOTE=1 says so on purpose.
"""

import os
import signal
import sys
import threading
from pathlib import Path

import streamlit as st
from streamlit.runtime import Runtime

from core.store import rebuild
from core.studio import warmup

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = ("127.0.0.1", "localhost", "::1")

# A local icon file: Streamlit fetches material and emoji page icons from an outside host.
st.set_page_config(page_title="PlantUML LoRA Studio", page_icon=str(ROOT / "studio" / "icon.png"), layout="wide")
st.html(ROOT / "studio" / "studio.css")
st.html(ROOT / "studio" / "narrow.html", unsafe_allow_javascript=True)  # folds the sidebar on a narrow window
address = st.get_option("server.address")
if Runtime.exists() and address not in LOOPBACK and os.environ.get("UMLSTUDIO_ALLOW_REMOTE") != "1":
    refusal = (
        f"the studio is bound to {address or 'every network interface'} and serves only on 127.0.0.1 — "
        "start it without a server.address setting, or set UMLSTUDIO_ALLOW_REMOTE=1 to expose it on purpose"
    )
    print(f"error: {refusal}", file=sys.stderr, flush=True)
    st.error(refusal)
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()  # after the page got the refusal
    st.stop()
st.cache_resource(show_spinner=False)(warmup.start)()  # once per studio process, in the background
store_problem = rebuild.problem()  # a damaged store or runs root: its one sentence on every page, not a traceback
if store_problem:
    st.error(store_problem)
    st.stop()
st.navigation(
    {
        "Training": [
            st.Page(ROOT / "pages" / "runs.py", title="Runs", icon=":material/monitoring:", default=True),
            st.Page(ROOT / "pages" / "train.py", title="Train", icon=":material/model_training:"),
            st.Page(ROOT / "pages" / "pre_continue.py", title="Pre-continue checklist", icon=":material/checklist:"),
            st.Page(ROOT / "pages" / "data.py", title="Data", icon=":material/dataset:"),
        ],
        "Judging": [
            st.Page(ROOT / "pages" / "playground.py", title="Prompt playground", icon=":material/chat:"),
            st.Page(ROOT / "pages" / "compare.py", title="Checkpoint A/B", icon=":material/compare:"),
            st.Page(ROOT / "pages" / "quality.py", title="Quality checklist", icon=":material/fact_check:"),
        ],
        "Using": [
            st.Page(ROOT / "pages" / "export.py", title="Export", icon=":material/output:"),
        ],
    }
).run()
