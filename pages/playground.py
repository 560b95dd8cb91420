"""Prompt playground: one prompt, the base model or any checkpoint, tokens as they stream, the diagram
beside its source, PlantUML's error with its line, and metrics against the reference when there is one.

Generation runs in a worker process (`python -m core.generate`, a job): the studio never loads a model.
The job's id sits in the URL, so a refresh picks the same generation up again."""

from pathlib import Path

import streamlit as st

from core import checkpoints, data, jobs, metrics, models, render, store

st.title("Prompt playground")


def choices() -> list[dict]:
    """Every checkpoint on disk, newest first, then the base models the runs use (the embedded one first)."""
    found = [{"label": label, "checkpoint": path, "base": None} for path, label in checkpoints.stored().items()]
    used = {r["base_model"] for r in store.query("SELECT DISTINCT base_model FROM runs WHERE base_model IS NOT NULL")}
    bases = [models.EMBEDDED] + sorted(used - {models.EMBEDDED})
    return found + [{"label": f"base model: {Path(b).name}", "checkpoint": checkpoints.BASE, "base": b} for b in bases]


@st.cache_data(show_spinner=False, max_entries=64)
def scored(output: str, row: dict, tokens: int, latency_s: float, truncated: bool) -> dict:
    """The output's metrics against the dataset row, checked by PlantUML the way an evaluation checks it."""
    syntax = render.syntax_check([output])[0]
    return metrics.score(output, row["plantuml"], row["prompt"], row["diagram_type"], syntax=syntax,
                         renders=syntax.valid and render.render(output).ok, truncated=truncated, tokens=tokens,
                         latency_s=latency_s)


def show_diagram(where, source: str, caption: str) -> None:
    result = render.render(source)
    if result.ok:
        where.image(result.data.decode(), caption=caption)
    else:
        where.error(f"PlantUML rejects it at line {result.error_line}: {result.error_message}")


options = choices()
model = st.selectbox("Model", options, format_func=lambda o: o["label"],
                     help="a checkpoint's adapter on its base model, or an untrained base model (the floor to beat)")
with st.expander("Decoding"):
    max_new_tokens = st.slider("max new tokens", 32, 1024, 320, 32, help="greedy decoding, stops at @enduml")

dataset = data.default_dataset_dir()
test_rows = data.load_split(dataset, "test") if (dataset / "test.jsonl").is_file() else []
how = st.radio("Prompt", ["pick one from the test split", "type one"], horizontal=True, disabled=not test_rows,
               index=0 if test_rows else 1)
if how == "type one" or not test_rows:
    prompt = st.text_area("Requirement", placeholder="e.g. A library lends books to members; each loan has a due date.",
                          height=100)
else:
    types = sorted({r["diagram_type"] for r in test_rows})
    kind = st.selectbox("Diagram type", ["all"] + types)
    rows = [r for r in test_rows if kind == "all" or r["diagram_type"] == kind]
    row = st.selectbox(f"Test prompt ({len(rows)})", rows, format_func=lambda r: r["prompt"][:140])
    prompt = row["prompt"]

if st.button("Generate", type="primary", disabled=not prompt.strip()):
    args = ["-m", "core.generate", "--checkpoint", model["checkpoint"], "--prompt-file", "{job}/prompt.txt",
            "--out", "{job}/result.json", "--max-new-tokens", max_new_tokens]
    if model["base"]:
        args += ["--base", model["base"]]
    job = jobs.start("generate", args, label=model["label"], files={"prompt.txt": prompt})
    st.query_params["job"] = job.id

job_id = st.query_params.get("job")
if not job_id:
    st.caption("The output streams here; the rendered diagram appears beside its source.")
    st.stop()
try:
    job = jobs.get(job_id)
except FileNotFoundError:
    st.query_params.pop("job")
    st.stop()


@st.fragment(run_every=0.5)
def streaming():
    now = jobs.get(job_id)
    if now.done:
        st.rerun()
    text = now.output()
    st.markdown(f"**{now.label}** · {now.seconds:.0f} s")
    if text:
        st.code(text, language=None, wrap_lines=True)
    else:
        st.status("Loading the model in a worker process …")


if not job.done:
    streaming()
    st.stop()

result = job.result()
if result is None:
    st.error(f"The generation {job.status} (exit code {job.returncode}).")
    st.code(job.log(4000) or "(no output)", language=None)
    st.stop()

reference = next((r for r in test_rows if r["prompt"] == result["prompt"]), None)  # typed prompts can match too
st.markdown(f"**{job.label}** — {result['tokens']} tokens in {result['latency_s']:.1f} s"
            + (" · cut off at max new tokens, no @enduml" if result["truncated"] else ""))
source_col, diagram_col = st.columns(2)
source_col.markdown("**Output**")
source_col.code(result["output"] or "(empty)", language=None, wrap_lines=True)
diagram_col.markdown("**Rendered**")
show_diagram(diagram_col, result["output"], "the model's output")
if reference:
    st.markdown("**Against the reference**")
    m = scored(result["output"], reference, result["tokens"], result["latency_s"], result["truncated"])
    cols = st.columns(6)
    cols[0].metric("valid PlantUML", {True: "yes", False: "no", None: "—"}[m["syntax_valid"]])
    cols[1].metric("right type", "yes" if m["type_match"] else "no", help=f"expected {m['diagram_type']}")
    cols[2].metric("entity F1", f"{m['entity_f1']:.2f}")
    cols[3].metric("relation F1", f"{m['relation_f1']:.2f}")
    cols[4].metric("complete", "yes" if m["complete"] else "no")
    cols[5].metric("hallucinated", len(m["hallucinated_entities"]),
                   help=", ".join(m["hallucinated_entities"]) or "no entity outside the prompt and the reference")
    ref_source, ref_diagram = st.columns(2)
    ref_source.code(reference["plantuml"], language=None)
    show_diagram(ref_diagram, reference["plantuml"], "the reference from the dataset")
