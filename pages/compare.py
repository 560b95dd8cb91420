"""Checkpoint A/B: 2-4 checkpoints on one prompt set, their diagrams side by side per prompt, per-prompt
metric deltas against the first, filters, and the aggregate table.

Outputs come from the store (every evaluation keeps its generations), so reopening is instant; only
what is missing is generated, by a background `umlstudio compare` job."""

import json

import pandas as pd
import streamlit as st

from core import checkpoints, data, jobs, metrics, render, store
from core.config import EvaluationConfig

PER_PAGE = 6
SHOWN = ("syntax_valid_rate", "render_rate", "type_accuracy", "entity_f1", "relation_f1", "hallucination_rate",
         "complete_rate")
LOWER_IS_BETTER = {"hallucination_rate"}

st.title("Checkpoint A/B")

names = checkpoints.stored()
names[checkpoints.BASE] = "base model (untrained)"
if len(names) < 2:
    st.info("Nothing to compare yet: A/B needs at least one trained checkpoint besides the base model. "
            "Run a **Quick test** on the Train page first.")
    st.stop()

picked = st.multiselect("Checkpoints (2 to 4; deltas are against the first)", list(names), max_selections=4,
                        default=list(names)[:2], format_func=names.get)
dataset = data.default_dataset_dir()
limit = st.number_input("Prompts: N from the test split, every diagram type in turn (as `umlstudio evaluate --limit N`)",
                        1, 500, EvaluationConfig().limit)
if len(picked) < 2:
    st.info("Pick at least two checkpoints.")
    st.stop()

prompts = data.in_turn(data.load_split(dataset, "test"), int(limit))
stored = store.query_df(
    f"""SELECT checkpoint, prompt, arg_max(output, created_at) AS output, arg_max(metrics, created_at) AS metrics
        FROM generations WHERE checkpoint IN ({', '.join('?' * len(picked))})
        AND prompt IN (SELECT unnest(?)) GROUP BY checkpoint, prompt""",
    [*picked, [p["prompt"] for p in prompts]],
)
outputs = {(r.checkpoint, r.prompt): (r.output, json.loads(r.metrics)) for r in stored.itertuples()}
missing = {c: sum((c, p["prompt"]) not in outputs for p in prompts) for c in picked}

running = [j for j in jobs.list_jobs("compare") if not j.done]
if running:
    job = running[0]

    @st.fragment(run_every=2)
    def progress():
        if jobs.get(job.id).done:
            st.rerun()
        with st.status(f"Generating the missing outputs (job {job.id}, {job.seconds:.0f} s) …"):
            st.code(job.log(1500).replace("\r", "\n")[-1500:] or "loading the model …", language=None)

    progress()
elif any(missing.values()):
    lacking = ", ".join(f"{names[c]}: {n}" for c, n in missing.items() if n)
    st.warning(f"Outputs not in the store yet — {lacking}. Shown below: the prompts every checkpoint has answered.")
    if st.button("Generate the missing outputs (background job)", type="primary"):
        refs = [arg for i, c in enumerate(picked) for arg in (f"--model{i + 1}", c)]
        jobs.start("compare", ["-m", "core", "compare", *refs, "--limit", int(limit), "--out", "{job}/compare.html"],
                   label=", ".join(names[c] for c in picked))
        st.rerun()
failed = [j for j in jobs.list_jobs("compare", limit=1) if j.status in ("failed", "lost")]
if failed and not running:
    with st.expander(f"The last compare job {failed[0].status}"):
        st.code(failed[0].log(3000), language=None)

complete = [p for p in prompts if all((c, p["prompt"]) in outputs for c in picked)]
if not complete:
    st.stop()


def row_score(ckpt, prompt) -> float:
    return metrics.row_score(outputs[(ckpt, prompt)][1])


rows = []
for p in complete:
    scores = [row_score(c, p["prompt"]) for c in picked]
    texts = [outputs[(c, p["prompt"])][0] for c in picked]
    rows.append({"prompt": p["prompt"], "diagram_type": p["diagram_type"], "reference": p["plantuml"],
                 "differ": len(set(texts)) > 1, "delta": min(s - scores[0] for s in scores[1:]),
                 **{names[c]: s for c, s in zip(picked, scores)}})
table = pd.DataFrame(rows)

st.subheader("Aggregate")
summaries = [metrics.aggregate([outputs[(c, p["prompt"])][1] for p in complete]) for c in picked]
aggregate = pd.DataFrame({names[c]: {k: s[k] for k in SHOWN} for c, s in zip(picked, summaries)}).astype(float)
for c in picked[1:]:
    aggregate[f"Δ {names[c]}"] = aggregate[names[c]] - aggregate[names[picked[0]]]
st.dataframe(aggregate.style.format("{:.3f}", na_rep="—"), width="stretch")
st.caption(f"{len(complete)} prompts every checkpoint has answered; for hallucination_rate lower is better; "
           "— where PlantUML was not asked.")

st.subheader("Prompt by prompt")
left, right = st.columns(2)
types = left.multiselect("Diagram types", sorted(table["diagram_type"].unique()))
which = right.radio("Show", ["all", "only where they differ", "only regressions"], horizontal=True)
shown = table
if types:
    shown = shown[shown["diagram_type"].isin(types)]
if which == "only where they differ":
    shown = shown[shown["differ"]]
elif which == "only regressions":
    shown = shown[shown["delta"] < 0]
shown = shown.sort_values("delta")
st.dataframe(shown.drop(columns=["reference"]), hide_index=True, width="stretch", height=240,
             column_config={"delta": st.column_config.NumberColumn("worst Δ score", format="%+.3f")})

if shown.empty:
    st.info("No prompt matches the filters.")
    st.stop()
pages = (len(shown) - 1) // PER_PAGE + 1
page = st.number_input(f"Page (of {pages}, {PER_PAGE} prompts each, largest regression first)", 1, pages, 1)


def diagram(where, source: str) -> None:
    result = render.render(source)
    if result.ok:
        where.image(result.data.decode())
    else:
        where.error(f"does not render — line {result.error_line}: {result.error_message}")
    with where.expander("source"):
        st.code(source or "(empty)", language=None)


for row in shown.iloc[(page - 1) * PER_PAGE: page * PER_PAGE].itertuples():
    with st.container(border=True):
        st.markdown(f"**{row.prompt}**  \n{row.diagram_type} · worst Δ score {row.delta:+.3f}")
        cells = st.columns(len(picked) + 1)
        cells[0].markdown("*reference*")
        diagram(cells[0], row.reference)
        for cell, c in zip(cells[1:], picked):
            m = outputs[(c, row.prompt)][1]
            cell.markdown(f"*{names[c]}* · score {row_score(c, row.prompt):.3f}  \n"
                          f"entity F1 {m['entity_f1']:.2f} · relation F1 {m['relation_f1']:.2f}")
            diagram(cell, outputs[(c, row.prompt)][0])
