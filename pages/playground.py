"""Prompt playground: one prompt and the wanted diagram type, the base model or any checkpoint (the chosen
model selected first), greedy decoding or, when asked, repeats penalised (DRY) or sampling (temperature,
top-p, top-k, seed); tokens as they stream, the diagram beside its source, PlantUML's error with its line,
and metrics against the reference when there is one. "Valid PlantUML" (on by default) checks the output
and repairs it when PlantUML rejects it; the page then says what was changed and keeps the model's raw
output in view.

Generation runs in a worker process (`jobs.generate`, a background job): the studio never loads a model.
The job's id sits in the URL, so a refresh picks the same generation up again."""

import difflib

import streamlit as st

from core import data, jobs
from core.config import EvaluationConfig
from core.data import prompts
from core.evaluation import metrics
from core.inference import chosen, render
from core.studio.ui import show_diagram

st.title("Prompt playground")


@st.cache_data(show_spinner=False, max_entries=64)
def scored(output: str, row: data.Row, tokens: int, latency_s: float, truncated: bool) -> dict:
    """The output's metrics against the dataset row, checked by PlantUML the way an evaluation checks it."""
    syntax = render.syntax_check([output])[0]
    return metrics.score(
        output,
        row["plantuml"],
        row["prompt"],
        row["diagram_type"],
        syntax=syntax,
        renders=syntax.valid and render.render(output).ok,
        truncated=truncated,
        tokens=tokens,
        latency_s=latency_s,
    )


options, start, favourite = chosen.models_on_offer()
model = st.selectbox(
    "Model",
    options,
    index=start,
    format_func=lambda o: o["label"],
    help="a checkpoint's adapter on its base model, or an untrained base model (the floor to beat); "
    "the chosen model (Quality page, `umlstudio choose`) is selected first",
)
if favourite:
    st.caption(favourite.line())
with st.expander("Decoding"):
    max_new_tokens = st.slider(
        "max new tokens",
        32,
        1024,
        320,
        32,
        help="stops at @enduml, at the end of turn, or when a line keeps repeating",
    )
    make_valid = st.checkbox(
        "Valid PlantUML: check the output and repair it when PlantUML rejects it",
        value=True,
        help="a second attempt from the last good line, then edits (cut loops, close blocks, "
        "delete the rejected line); the raw output stays visible",
    )
    decoding: dict = {}
    if st.toggle(
        "Penalise repeats (DRY)",
        help=EvaluationConfig.model_fields["repetition"].description,
    ):
        decoding["repetition"] = "dry"
    temperature = st.slider(
        "temperature", 0.0, 1.5, 0.0, 0.05, help="0: greedy, the evaluation's reference; above 0 it samples"
    )
    if temperature:
        top_p, top_k, seed = st.columns(3)
        decoding |= {
            "temperature": temperature,
            "top_p": top_p.slider(
                "top-p", 0.05, 1.0, 1.0, 0.05, help=EvaluationConfig.model_fields["top_p"].description
            ),
            "top_k": top_k.number_input("top-k", 0, 1000, 0, help=EvaluationConfig.model_fields["top_k"].description),
            "seed": seed.number_input("seed", 0, 2**31 - 1, 0, help=EvaluationConfig.model_fields["seed"].description),
        }

dataset = data.default_dataset_dir()
test_rows = data.load_split(dataset, "test") if (dataset / "test.jsonl").is_file() else []
how = st.radio(
    "Prompt",
    ["pick one from the test split", "type one"],
    horizontal=True,
    disabled=not test_rows,
    index=0 if test_rows else 1,
)
if how == "type one" or not test_rows:
    prompt = st.text_area(
        "Requirement", placeholder="e.g. A library lends books to members; each loan has a due date.", height=100
    )
    wanted = st.selectbox(
        "Diagram type",
        [None, *prompts.TYPE_NAMES],
        format_func=lambda t: prompts.TYPE_NAMES[t] if t else "not stated (the model picks)",
        help="stated in the prompt the way training states it",
    )
else:
    types = sorted({r["diagram_type"] for r in test_rows})
    kind = st.selectbox("Diagram type", ["all"] + types, help="the test prompt's type is stated in the prompt")
    rows = [r for r in test_rows if kind == "all" or r["diagram_type"] == kind]
    row = st.selectbox(f"Test prompt ({len(rows)})", rows, format_func=lambda r: r["prompt"][:140])
    prompt, wanted = row["prompt"], row["diagram_type"]

if st.button("Generate", type="primary", disabled=not prompt.strip()):
    job = jobs.generate(
        model["checkpoint"],
        prompt,
        base=model["base"],
        diagram_type=wanted,
        max_new_tokens=max_new_tokens,
        repair=make_valid,
        decoding=decoding,
        label=model["label"],
    )
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

requirement = result.get("requirement", result["prompt"])
reference = next((r for r in test_rows if r["prompt"] == requirement), None)  # typed prompts can match too
st.markdown(
    f"**{job.label}** — {result['tokens']} tokens in {result['latency_s']:.1f} s"
    + (f" · {prompts.TYPE_NAMES[result['diagram_type']]} asked" if result.get("diagram_type") else "")
    + (" · cut off at max new tokens, no @enduml" if result["truncated"] else "")
    + (f" · stopped: {result['loop']}" if result.get("looped") else "")
)
if result.get("repaired"):
    st.warning(
        "Repaired: PlantUML rejected the model's output. What was changed:\n\n"
        + "\n".join(f"- {change}" for change in result["repair"])
    )
elif result.get("valid") is False:
    st.error("PlantUML rejects the output and no repair helped.")
source_col, diagram_col = st.columns(2)
source_col.markdown("**Output**" + (" (repaired)" if result.get("repaired") else ""))
source_col.code(result["output"] or "(empty)", language=None, wrap_lines=True, line_numbers=True)
diagram_col.markdown("**Rendered**")
show_diagram(diagram_col, result["output"], "the answer")
if result.get("repaired"):
    with st.expander("The model's raw output, and the difference"):
        st.code(result["raw_output"] or "(empty)", language=None, wrap_lines=True)
        diff = difflib.unified_diff(
            result["raw_output"].splitlines(), result["output"].splitlines(), "raw", "repaired", lineterm=""
        )
        st.code("\n".join(diff), language="diff")
if reference:
    st.markdown("**Against the reference**")
    m = scored(result["output"], reference, result["tokens"], result["latency_s"], result["truncated"])
    cols = st.columns(6)
    cols[0].metric("valid PlantUML", {True: "yes", False: "no", None: "—"}[m["syntax_valid"]])
    cols[1].metric("right type", "yes" if m["type_match"] else "no", help=f"expected {m['diagram_type']}")
    cols[2].metric("entity F1", "—" if m["entity_f1"] is None else f"{m['entity_f1']:.2f}")
    cols[3].metric(
        "relation F1",
        "—" if m["relation_f1"] is None else f"{m['relation_f1']:.2f}",
        help="— : the reference has no relations to score",
    )
    cols[4].metric("complete", "yes" if m["complete"] else "no")
    cols[5].metric(
        "hallucinated",
        len(m["hallucinated_entities"]),
        help=", ".join(m["hallucinated_entities"]) or "no entity outside the prompt and the reference",
    )
    ref_source, ref_diagram = st.columns(2)
    ref_source.code(reference["plantuml"], language=None, line_numbers=True)
    show_diagram(ref_diagram, reference["plantuml"], "the reference from the dataset")
