"""Quality checklist: the seed's "what good results look like" and "what bad results look like" lists
for one checkpoint, judged from its latest stored evaluation, each item with its number and the
failing examples rendered."""

import json
from pathlib import Path

import streamlit as st

from core import checkpoints, jobs, metrics, render, store
from core.config import EvaluationConfig, QualityConfig

MARK = {True: ":green[:material/check_circle:]", False: ":red[:material/cancel:]", None: ":gray[:material/help:]"}  # material icons: no emoji font needed

st.title("Quality checklist")

names = checkpoints.stored()
names[checkpoints.BASE] = "base model (untrained)"
latest = {r["checkpoint"]: r for r in store.query(
    "SELECT * FROM evaluations QUALIFY row_number() OVER (PARTITION BY checkpoint ORDER BY created_at DESC) = 1")}
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
    limit = left.number_input("Test rows", 1, 500, EvaluationConfig().limit, help="N rows of the test split, every diagram type in turn")
    if right.button("Evaluate now (background job)" if ckpt not in latest else "Evaluate again", type="primary"):
        jobs.start("evaluate", ["-m", "core", "evaluate", "--checkpoint", ckpt, "--limit", limit], label=ckpt)
        st.rerun()

if ckpt not in latest:
    st.stop()

evaluation = latest[ckpt]
summary_stored = json.loads(evaluation["summary"])
rows = store.query("SELECT id, prompt, reference, diagram_type, output, metrics FROM generations WHERE evaluation_id = ?",
                   [evaluation["id"]])
examples = [{**json.loads(r["metrics"]), "id": r["id"]} for r in rows]
by_id = {r["id"]: r for r in rows}
info_config = checkpoints.info(Path(ckpt)).get("config", {}) if ckpt != checkpoints.BASE else {}
quality = QualityConfig(**info_config.get("quality", {}))
summary = metrics.aggregate(examples)
judged = metrics.verdict(summary, summary_stored.get("loss"), quality, examples)

st.caption(f"Evaluation {evaluation['id']} of {evaluation['n']} rows of {evaluation['dataset']}, "
           f"{evaluation['created_at']:%Y-%m-%d %H:%M} (UTC); thresholds from the checkpoint's quality settings.")
if judged["good"]:
    st.success("Verdict: **good** — every item of the good list holds and none of the bad list.")
else:
    show = st.error if judged["label"] == "bad" else st.warning
    show(f"Verdict: **{judged['label']}**\n\n" + "\n".join(f"- {reason}" for reason in judged["reasons"]))


def number(item) -> str:
    if item["value"] is None:
        return "not measured"
    is_loss = item["item"].startswith("Loss")
    value, threshold = (f"{item['value']:.4f}", f"{item['threshold']:g}") if is_loss else (
        f"{item['value']:.0%}", f"{item['threshold']:.0%}")
    return f"{value} (threshold {threshold})"


def show_example(generation_id: str) -> None:
    row = by_id[generation_id]
    m = json.loads(row["metrics"])
    st.markdown(f"**{row['prompt']}** · {row['diagram_type']} · entity F1 {m.get('entity_f1', 0):.2f} · "
                f"relation F1 {m.get('relation_f1', 0):.2f}"
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

with_examples = [item for item in judged["items"] if item["failing"]]
if with_examples:
    st.subheader("Failing examples")
    item = st.selectbox("Item", with_examples, format_func=lambda i: f"{i['item']} ({len(i['failing'])})")
    for generation_id in item["failing"]:
        with st.container(border=True):
            show_example(generation_id)
