"""Quality checklist: the seed's "what good results look like" and "what bad results look like" lists
for one checkpoint, judged from its latest stored evaluation, each item with its number, 95% interval
and n ("not enough rows to tell" when the interval holds the threshold), the scores per diagram type
and per origin (real prose vs generated rows) with the weak types, and the failing examples rendered."""

from pathlib import Path

import pandas as pd
import streamlit as st

from core import checkpoints, evaluate, jobs, metrics, render
from core.config import EvaluationConfig, QualityConfig

MARK = {True: ":green[:material/check_circle:]", False: ":red[:material/cancel:]", None: ":gray[:material/help:]"}  # material icons: no emoji font needed

st.title("Quality checklist")

names = checkpoints.stored()
names[checkpoints.BASE] = "base model (untrained)"
latest = evaluate.latest_evaluations()
for ckpt in latest:
    names.setdefault(ckpt, ckpt)
if len(names) == 1 and not latest:
    st.info("No checkpoint yet. Run a **Quick test** on the Train page, then judge its checkpoint here — or "
            "evaluate the base model below to see the floor a fine-tune has to beat.")

order = sorted(names, key=lambda c: c not in latest)  # evaluated ones first, newest checkpoint first, base last
ckpt = st.selectbox("Checkpoint", order, format_func=lambda c: names[c] + ("" if c in latest else " (not evaluated)"))

running = [j for j in jobs.list_jobs("evaluate") if j.label == ckpt and not j.done]
if running:

    @st.fragment(run_every=2)
    def progress():
        job = jobs.get(running[0].id)
        if job.done:
            st.rerun()
        with st.status(f"Evaluating in the background (job {job.id}, {job.seconds:.0f} s) …"):
            st.code(job.log(1500).replace("\r", "\n")[-1500:] or "loading the model …", language=None)

    progress()
else:
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    limit = left.number_input("Test rows", 1, 500, EvaluationConfig().limit,
                              help="a sample of N test rows, every diagram type, origin and source in turn")
    if right.button("Evaluate now (background job)" if ckpt not in latest else "Evaluate again", type="primary"):
        jobs.start("evaluate", ["-m", "core", "evaluate", "--checkpoint", ckpt, "--limit", limit], label=ckpt)
        st.rerun()

if ckpt not in latest:
    st.stop()

evaluation = latest[ckpt]
rows = evaluate.evaluation_rows(evaluation["id"])
examples = [{**r["metrics"], "id": r["id"]} for r in rows]
by_id = {r["id"]: r for r in rows}
info_config = checkpoints.info(Path(ckpt)).get("config", {}) if ckpt != checkpoints.BASE else {}
quality = QualityConfig(**info_config.get("quality", {}))
summary = metrics.aggregate(examples)
judged = metrics.verdict(summary, evaluation["summary"].get("loss"), quality, examples)

st.caption(f"Evaluation {evaluation['id']} of {evaluation['n']} rows of {evaluation['dataset']}, "
           f"{evaluation['created_at']:%Y-%m-%d %H:%M} (UTC), scored with today's metrics; thresholds from the "
           "checkpoint's quality settings. An item passes when its whole 95% interval clears the threshold.")
if judged["good"]:
    st.success("Verdict: **good** — every item of the good list holds and none of the bad list.")
else:
    show = st.error if judged["label"] == "bad" else st.warning
    show(f"Verdict: **{judged['label']}**\n\n" + "\n".join(f"- {reason}" for reason in judged["reasons"]))


def number(item) -> str:
    if item["value"] is None:
        return "not measured"
    if item["low"] is None:
        return f"{item['value']:.4f} (threshold {item['threshold']:g})"
    told = "" if item["passed"] is not None else " — not enough rows to tell"
    return (f"{item['value']:.0%} (95% interval {item['low']:.0%}–{item['high']:.0%}, n {item['n']}; "
            f"threshold {item['threshold']:.0%}){told}")


def score_text(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def show_example(generation_id: str) -> None:
    row = by_id[generation_id]
    m = row["metrics"]
    st.markdown(f"**{row['requirement']}** · {row['diagram_type']} · {m.get('origin') or 'origin unknown'} · "
                f"entity F1 {score_text(m['entity_f1'])} · relation F1 {score_text(m['relation_f1'])}"
                + ("" if m["type_match"] else f" · wrong type ({m['output_type']})")
                + (f" · hallucinated: {', '.join(m['hallucinated_entities'])}" if m.get("hallucinated_entities") else ""))
    output, reference = st.columns(2)
    for where, source, caption in ((output, row["output"], "output"), (reference, row["reference"], "reference")):
        result = render.render(source)
        if result.ok:
            where.image(result.data.decode(), caption=caption)
        else:
            where.error(f"{caption} does not render — line {result.error_line}: {result.error_message}")
        where.code(source or "(empty)", language=None)


good, bad = st.columns(2)
for where, which, heading in ((good, "good", "What good results look like"), (bad, "bad", "What bad results look like")):
    where.subheader(heading)
    for item in (i for i in judged["items"] if i["list"] == which):
        failing_note = "  \nexamples that fail it: below" if item["failing"] else ""
        where.container(border=True).markdown(f"{MARK[item['passed']]} **{item['item']}** — {number(item)}{failing_note}")

st.subheader("Per diagram type and origin")
types = metrics.judge_types(summary["per_type"], quality)
lines = []
for name, values in sorted(summary["per_type"].items()):
    for origin, group in {"all": values, **values["by_origin"]}.items():
        lines.append({"type": name, "rows": origin, "n": group["n"],
                      **{heading: metrics.estimate_text(group, key) for key, heading in metrics.SHOWN
                         if summary.get(key) is not None}})
st.dataframe(pd.DataFrame(lines), hide_index=True, width="stretch")
st.markdown(f"**Weak types** (some metric's whole interval misses its threshold): {', '.join(types['weak']) or 'none'}  \n"
            f"**Good types** (every interval clears its threshold): {', '.join(types['strong']) or 'none'}  \n"
            f"**Not enough rows to tell**: {', '.join(types['unclear']) or 'none'}")

with_examples = [item for item in judged["items"] if item["failing"]]
if with_examples:
    st.subheader("Failing examples")
    item = st.selectbox("Item", with_examples, format_func=lambda i: f"{i['item']} ({len(i['failing'])})")
    for generation_id in item["failing"]:
        with st.container(border=True):
            show_example(generation_id)
