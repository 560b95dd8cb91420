"""Quality checklist: the seed's "what good results look like" and "what bad results look like" lists
for one checkpoint, judged from its latest stored evaluation (or an earlier one a person picks). Each item
leads with one plain sentence counted on the evaluation's rows (core.evaluation.quality); its number, 95%
interval, n and threshold sit in an expander. Then the scores per diagram type and origin with the weak
types, and the failing examples rendered. An evaluation runs as a background job with its count, time
left and Cancel. "Choose this model" makes the checkpoint the project's chosen model
(core.inference.chosen)."""

from pathlib import Path

import pandas as pd
import streamlit as st

from core import jobs
from core.config import EvaluationConfig, QualityConfig
from core.errors import UserError
from core.evaluation import evaluate, metrics, quality
from core.inference import chosen, render
from core.studio import ui
from core.training import checkpoints

st.title("Quality checklist")

names = checkpoints.stored()
names[checkpoints.BASE] = "base model (untrained)"
latest = evaluate.latest_evaluations()
for ckpt in latest:
    names.setdefault(ckpt, ckpt)
if len(names) == 1 and not latest:
    st.info(
        "No checkpoint yet. Run a **Quick test** on the Train page, then judge its checkpoint here — or "
        "evaluate the base model below to see the floor a fine-tune has to beat."
    )

order = sorted(names, key=lambda c: c not in latest)  # evaluated ones first, newest checkpoint first, base last
ckpt = st.selectbox("Checkpoint", order, format_func=lambda c: names[c] + ("" if c in latest else " (not evaluated)"))
if ckpt != checkpoints.BASE:
    favourite = chosen.current()
    if st.button(
        "Choose this model",
        disabled=favourite is not None and favourite.checkpoint == ckpt,
        help="the project's chosen model: `umlstudio generate`, `umlstudio serve` and the playground use it "
        "when no checkpoint is given",
    ):
        try:
            favourite = chosen.choose(ckpt)
        except UserError as exc:
            st.error(str(exc))
    if favourite is not None:
        st.caption(favourite.line())

mine = [j for j in jobs.list_jobs("evaluate", limit=20) if j.label == ckpt]
if mine and not mine[0].done:

    @st.fragment(run_every=2)
    def progress():
        job = jobs.get(mine[0].id)
        if job.done:
            st.rerun()
        done, text = jobs.progress_text(job.progress())
        ui.job_bar(st, job.id, done, f"Evaluating {names[ckpt]}: {text}", ui.EVALUATION_CANCEL)

    progress()
else:
    if mine and mine[0].status in (jobs.STOPPED, jobs.FAILED, jobs.LOST):
        saved = mine[0].progress().get("saved", 0)
        if mine[0].status == jobs.STOPPED:
            st.info(
                f"The last evaluation of this checkpoint was cancelled; {saved} outputs it made are stored and "
                "will be reused."
            )
        else:
            st.error(f"The last evaluation of this checkpoint {mine[0].status}.")
            with st.expander("Its log"):
                st.code(mine[0].log(3000).replace("\r", "\n")[-3000:], language=None)
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    limit = left.number_input(
        "Test rows",
        1,
        500,
        EvaluationConfig().limit,
        help="a sample of N test rows, every diagram type, origin and source in turn",
    )
    if right.button("Evaluate now (background job)" if ckpt not in latest else "Evaluate again", type="primary"):
        jobs.evaluate(ckpt, limit)
        st.rerun()

if ckpt not in latest:
    st.stop()

evaluations = evaluate.evaluations_of(ckpt)
evaluation = (
    st.selectbox(
        "Evaluation",
        evaluations,
        format_func=quality.evaluation_words,
        help="each evaluation of this checkpoint: its rows, how they were sampled, when (newest first)",
    )
    if len(evaluations) > 1
    else evaluations[0]
)
rows = evaluate.evaluation_rows(evaluation.id)
examples = [{**r["metrics"], "id": r["id"]} for r in rows]
by_id = {r["id"]: r for r in rows}
info_config = checkpoints.info(Path(ckpt)).get("config", {}) if ckpt != checkpoints.BASE else {}
thresholds = QualityConfig(**info_config.get("quality", {}))
summary = metrics.aggregate(examples)
judged = metrics.verdict(summary, evaluation.summary.get("loss"), thresholds, examples)

show = st.success if judged["good"] else st.error if judged["label"] == "bad" else st.warning
show(quality.verdict_sentence(judged))
st.caption(
    f"Judged on {'the latest' if evaluation == evaluations[0] else 'an earlier'} evaluation: "
    f"{quality.evaluation_words(evaluation)}, scored with today's metrics "
    "against the checkpoint's quality thresholds. An item passes when its whole 95% interval clears the threshold."
)

good, bad = st.columns(2)
for where, which, heading in (
    (good, "good", "What good results look like"),
    (bad, "bad", "What bad results look like"),
):
    where.subheader(heading)
    for item in (i for i in judged["items"] if i["list"] == which):
        box = where.container(border=True)
        box.markdown(f"{ui.MARK[item['passed']]} **{item['item']}** — {quality.sentence(item, examples)}")
        with box.expander("numbers"):
            st.write(quality.numbers(item))

st.subheader("Per diagram type and origin")
types = metrics.judge_types(summary["per_type"], thresholds)
lines = []
for name, values in sorted(summary["per_type"].items()):
    for origin, group in {"all": values, **values["by_origin"]}.items():
        lines.append(
            {
                "type": name,
                "rows": origin,
                "n": group["n"],
                **{
                    ui.METRIC_WORDS[key]: metrics.estimate_text(group, key)
                    for key, _ in metrics.SHOWN
                    if summary.get(key) is not None
                },
            }
        )
st.dataframe(pd.DataFrame(lines), hide_index=True, width="stretch")
st.markdown(
    f"**Weak types** (some metric's whole interval misses its threshold): {', '.join(types['weak']) or 'none'}  \n"
    f"**Good types** (every interval clears its threshold): {', '.join(types['strong']) or 'none'}  \n"
    f"**Not enough rows to tell**: {', '.join(types['unclear']) or 'none'}"
)


def score_text(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def show_example(generation_id: str) -> None:
    row = by_id[generation_id]
    m = row["metrics"]
    st.text(row["requirement"])  # as written: a requirement is not Markdown
    st.caption(
        f"{row['diagram_type']} · {m.get('origin') or 'origin unknown'} · names found (entity F1) "
        f"{score_text(m['entity_f1'])} · relations found (relation F1) {score_text(m['relation_f1'])}"
        + ("" if m["type_match"] else f" · wrong type ({m['output_type']})")
        + (f" · invented: {', '.join(m['hallucinated_entities'])}" if m.get("hallucinated_entities") else "")
    )
    output, reference = st.columns(2)
    for where, source, caption, empty in (
        (output, row["output"], "output", m.get("empty")),
        (reference, row["reference"], "reference", False),
    ):
        if empty:
            where.warning(f"The {caption} is an empty diagram: nothing to draw.")
        else:
            result = render.render(source)
            if result.ok:
                where.image(result.data.decode(), caption=caption)
            else:
                where.error(f"{caption} does not render — line {result.error_line}: {result.error_message}")
            ui.open_in_server(where, source)
        where.code(source or "(empty)", language=None)


with_examples = [item for item in judged["items"] if item["failing"]]
if with_examples:
    st.subheader("Failing examples")
    item = st.selectbox(
        "Item", with_examples, format_func=lambda i: f"{i['item']} ({i['failing_count']} of {len(examples)} outputs)"
    )
    if item["failing_count"] > len(item["failing"]):
        st.caption(f"The first {len(item['failing'])} of the {item['failing_count']} outputs that fail it.")
    for generation_id in item["failing"]:
        with st.container(border=True):
            show_example(generation_id)
