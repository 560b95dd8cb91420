"""Checkpoint A/B: 2-4 checkpoints on one prompt sample, their diagrams side by side per prompt, per-prompt
score deltas against the first, filters, and the aggregate table with 95% intervals and a sign test on
every delta (better / worse / within noise), for all rows and for real prose and generated rows apart.

Outputs come from the store (every evaluation keeps its generations), so reopening is instant; only
what is missing is generated, by a background `umlstudio compare` job."""

import pandas as pd
import streamlit as st

from core import checkpoints, data, evaluate, jobs, metrics, render
from core.config import EvaluationConfig

PER_PAGE = 6

st.title("Checkpoint A/B")

names = checkpoints.stored()
names[checkpoints.BASE] = "base model (untrained)"
if len(names) < 2:
    st.info("Nothing to compare yet: A/B needs at least one trained checkpoint besides the base model. "
            "Run a **Quick test** on the Train page first.")
    st.stop()

best = checkpoints.best_paths()  # each run's lowest validation loss: the Runs page's and the advisor's best
picked = st.multiselect("Checkpoints (2 to 4; deltas are against the first)", list(names), max_selections=4,
                        default=list(names)[:2], format_func=lambda p: names[p] + (" · best of its run" if p in best else ""))
limit = st.number_input("Prompts: a sample of N test rows, every diagram type, origin and source in turn "
                        "(as `umlstudio evaluate --limit N`)", 1, 500, EvaluationConfig().limit)
if len(picked) < 2:
    st.info("Pick at least two checkpoints.")
    st.stop()

prompts = evaluate.sample_rows(data.load_split(data.default_dataset_dir(), "test"), int(limit))
outputs = evaluate.stored_outputs(picked, prompts)
missing = {c: sum((c, i) not in outputs for i in range(len(prompts))) for c in picked}

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

complete = [i for i in range(len(prompts)) if all((c, i) in outputs for c in picked)]
if not complete:
    st.stop()


def scored(ckpt) -> list[dict]:
    return [outputs[(ckpt, i)]["metrics"] for i in complete]


st.subheader("Aggregate")
summaries = [metrics.aggregate(scored(c)) for c in picked]
tests = [evaluate.paired_tests(scored(picked[0]), scored(c)) for c in picked[1:]]
lines = []
for group in metrics.groups(summaries[0]):
    for key, heading in metrics.SHOWN:
        if summaries[0].get(key) is None:
            continue
        line = {"rows": group, "metric": heading}
        line |= {names[c]: metrics.estimate_text(metrics.groups(s).get(group, {}), key) for c, s in zip(picked, summaries)}
        line |= {f"Δ {names[c]}": metrics.delta_text(t[group][key]) for c, t in zip(picked[1:], tests)}
        lines.append(line)
st.dataframe(pd.DataFrame(lines), hide_index=True, width="stretch")
st.caption(f"{len(complete)} prompts every checkpoint has answered. Each value: mean (95% interval, n rows "
           "measured); real = people's prose, generated = template rows. Each Δ: sign test on the same prompts, "
           "better / worse at p < 0.05, else within noise. For hallucinated and looped, lower is better.")

st.subheader("Prompt by prompt")
rows = []
for i in complete:
    scores = [metrics.row_score(outputs[(c, i)]["metrics"]) for c in picked]
    texts = [outputs[(c, i)]["output"] for c in picked]
    p = prompts[i]
    rows.append({"i": i, "prompt": p["prompt"], "diagram_type": p["diagram_type"], "origin": p.get("origin"),
                 "differ": len(set(texts)) > 1, "delta": min(s - scores[0] for s in scores[1:]),
                 **{names[c]: s for c, s in zip(picked, scores)}})
table = pd.DataFrame(rows)
left, middle, right = st.columns(3)
types = left.multiselect("Diagram types", sorted(table["diagram_type"].unique()))
origins = middle.multiselect("Origin", sorted(table["origin"].dropna().unique()))
which = right.radio("Show", ["all", "only where they differ", "only regressions"], horizontal=True)
shown = table
if types:
    shown = shown[shown["diagram_type"].isin(types)]
if origins:
    shown = shown[shown["origin"].isin(origins)]
if which == "only where they differ":
    shown = shown[shown["differ"]]
elif which == "only regressions":
    shown = shown[shown["delta"] < 0]
shown = shown.sort_values(["delta", "i"])
st.dataframe(shown.drop(columns=["i"]), hide_index=True, width="stretch", height=240,
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


def number(value) -> str:
    return "—" if value is None else f"{value:.2f}"


for row in shown.iloc[(page - 1) * PER_PAGE: page * PER_PAGE].itertuples():
    with st.container(border=True):
        st.markdown(f"**{row.prompt}**  \n{row.diagram_type} · {row.origin or 'origin unknown'} · "
                    f"worst Δ score {row.delta:+.3f}")
        cells = st.columns(len(picked) + 1)
        cells[0].markdown("*reference*")
        diagram(cells[0], prompts[row.i]["plantuml"])
        for cell, c in zip(cells[1:], picked):
            m = outputs[(c, row.i)]["metrics"]
            cell.markdown(f"*{names[c]}* · score {metrics.row_score(m):.3f}  \n"
                          f"entity F1 {number(m['entity_f1'])} · relation F1 {number(m['relation_f1'])}"
                          + ("" if m["type_match"] else f" · wrong type ({m['output_type']})"))
            diagram(cell, outputs[(c, row.i)]["output"])
