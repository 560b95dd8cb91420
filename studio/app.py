"""PlantUML LoRA Studio: `streamlit run studio/app.py`. This file only routes; each page lives in pages/."""

from pathlib import Path

import streamlit as st

from core import warmup

ROOT = Path(__file__).resolve().parent.parent

st.set_page_config(page_title="PlantUML LoRA Studio", page_icon=":material/schema:", layout="wide")
st.cache_resource(show_spinner=False)(warmup.start)()  # once per studio process, in the background
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
    }
).run()
