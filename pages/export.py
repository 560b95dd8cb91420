"""Export: a stored checkpoint (or the base model) out of the studio, as a merged transformers folder
or a GGUF file for llama.cpp / Ollama, by a background `umlstudio export` job with its progress."""

import json

import streamlit as st

from core import jobs
from core.errors import UserError
from core.inference import export
from core.studio import ui
from core.training import checkpoints

FORMATS = {"gguf": "GGUF for llama.cpp / Ollama / LM Studio", "hf": "merged transformers folder (float32)"}

st.title("Export")
st.caption(
    "The adapter merged into the base weights: use the model without the studio. "
    "Same as `umlstudio export --checkpoint CKPT --out DIR --format hf|gguf`."
)

names = checkpoints.stored()
names[checkpoints.BASE] = "base model (untrained)"
if len(names) == 1:
    st.info(
        "No trained checkpoint yet: run a **Quick test** on the Train page first "
        "(the base model can be exported as it is)."
    )

running = [j for j in jobs.list_jobs("export") if not j.done]
if running:
    job = running[0]

    @st.fragment(run_every=2)
    def progress():
        now = jobs.get(job.id)
        if now.done:
            st.rerun()
        done, text = export.progress_of(now.log(6000))
        ui.job_bar(
            st,
            job.id,
            done,
            f"{now.label}: {text}{jobs.time_left(done, now.seconds)}",
            "stops the export; nothing is left at the output folder",
        )

    progress()
    st.stop()

ckpt = st.selectbox("Checkpoint", list(names), format_func=names.get)
left, right = st.columns(2)
fmt = left.radio("Format", list(FORMATS), format_func=FORMATS.get)
gguf_type = right.radio(
    "GGUF type",
    export.GGUF_TYPES,
    disabled=fmt != "gguf",
    help="f16: the merged weights in half precision; q8_0: about half the size, near-identical outputs",
)
out = st.text_input("Output folder (new or empty)", str(export.default_out(ckpt, fmt, gguf_type)))
if st.button("Export (background job)", type="primary"):
    try:
        export.check(ckpt, out, fmt, gguf_type)  # the same checks as the command, before the job starts
    except UserError as exc:
        st.error(str(exc))
    else:
        jobs.export(ckpt, out, fmt, gguf_type, label=f"{names[ckpt]} → {out}")
        st.rerun()

last = jobs.list_jobs("export", limit=1)
if last:
    job = last[0]
    if job.status == jobs.FINISHED:
        st.success(f"Exported {job.label} in {job.seconds:.0f} s")
        st.code(job.output(), language=None)
        destination = job.label.rsplit(" → ", 1)[-1]
        info = export.read_info(destination)
        if info and export.MODELFILE in info["files"]:
            st.markdown(
                f"Ollama: `cd {destination} && ollama create plantuml -f {export.MODELFILE}`, then "
                "`ollama run plantuml` — ask as training did: *Write a PlantUML class diagram for this "
                "requirement.*, a blank line, then the requirement."
            )
        if info:
            with st.expander(export.INFO):
                st.code(json.dumps(info, indent=1), language="json")
    elif job.status in (jobs.FAILED, jobs.LOST, jobs.STOPPED):
        with st.expander(f"The last export ({job.label}) {job.status}"):
            st.code(job.log(3000).replace("\r", "\n")[-3000:], language=None)
