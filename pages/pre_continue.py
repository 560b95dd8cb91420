"""Pre-continue checklist: the parent run's diagnosis with its evidence (the loss curve and the fitted
windows), the proposed next phase, and the seed's seven checks. Start stays disabled until every
check passes or an override reason is typed (the reason is stored with the run)."""

from pathlib import Path

import streamlit as st
import yaml

from core import jobs
from core.advisor import advise, checklist
from core.errors import UserError
from core.studio import charts, ui
from core.training import checkpoints, phases, runs

st.title("Pre-continue checklist")

candidates = runs.with_loss_curve()
if not candidates:
    st.info(
        "No run has a loss curve yet. Train one first — a **Quick test** on the Train page takes a few "
        "minutes — then come back here to decide how to continue it."
    )
    st.stop()

run = st.selectbox(
    "Run to continue",
    candidates,
    format_func=lambda r: f"{r.name} · {runs.status_of(r)} · started {r.created_at:%Y-%m-%d %H:%M}",
)
review = checklist.review(run)
diagnosis, evidence = review.diagnosis, review.diagnosis.evidence
if runs.status_of(run) == "running":
    st.warning("This run is still training: its curve is not final. Judge it when it has finished or been stopped.")

st.subheader("Diagnosis")
(st.warning if diagnosis.scenario is None else st.info)(f"**{diagnosis.plain}**")

st.plotly_chart(
    charts.diagnosis(
        review.curves.train,
        review.curves.validation,
        [advise.Fit(**f) for f in evidence.get("fits", [])],
        evidence.get("val_min_step"),
    ),
    width="stretch",
    key="diagnosis_curve",
    config=charts.CONFIG,
)
with st.expander(
    "The numbers behind it"
    + (f" (the seed's scenario {diagnosis.scenario}: {diagnosis.name})" if diagnosis.scenario else "")
):
    st.markdown(diagnosis.numbers)
    for fit in evidence.get("fits", []):
        st.markdown(f"- {advise.Fit(**fit).describe()}")
    st.json({k: v for k, v in evidence.items() if k != "fits"}, expanded=False)

# A person's acknowledgement, recorded with the diagnosis it showed; the checklist item itself is
# judged on the diagnosis of the final curve.
st.session_state.setdefault(f"ack:{run.id}", review.acknowledged_as_shown)
if st.checkbox(
    "I have checked the loss curve",
    key=f"ack:{run.id}",
    help="recorded with the diagnosis shown; the checklist notes it beside its own diagnosis",
):
    if not review.acknowledged_as_shown:
        checklist.acknowledge(run.id, diagnosis)
elif review.acknowledged:
    st.caption(f"Last checked {review.acknowledged['created_at']:%Y-%m-%d %H:%M} (UTC).")

st.subheader("Proposed next phase")
if review.proposal is None:
    if diagnosis.scenario is None:
        st.info(
            "Nothing to propose until the curve says something. Train longer, or write the next phase "
            "yourself on the Train page (an override reason will be asked for)."
        )
    else:
        st.error(review.problem)
    st.stop()
proposal = review.proposal
if review.diff:
    st.dataframe(
        phases.changes_in_words(review.diff), hide_index=True, width="stretch", column_config={"key": "config key"}
    )
for sentence in advise.GUIDE_NOTES.get(diagnosis.scenario, ()):  # where the guide disagrees with itself
    st.caption(sentence)
with st.expander("The whole config"):
    st.code(yaml.safe_dump(proposal.to_dict(), sort_keys=False), language="yaml")
if st.button(
    "Save it to edit on the Train page", help=f"writes {review.path}; the Train page lists it under proposals"
):
    st.success(f"Wrote `{checklist.save(review)}`: open **Train** and start from *a proposal*.")

st.subheader("Before continuing")


@st.fragment(run_every=2)
def evaluation_progress(job_id: str):
    job = jobs.get(job_id)
    if job.done:
        st.rerun()  # the evaluation is stored: check the list again
    done, text = jobs.progress_text(job.progress())
    ui.job_bar(st, job_id, done, f"Evaluating the checkpoint: {text}", ui.EVALUATION_CANCEL, key="cancel_evaluation")


running_evaluation = None
# Fixes this page offers itself: pointed at, instead of the command line's.
HERE = {"backed_up": "press *Back up the checkpoint* below.", "evaluated": "press *Evaluate it now* below."}
for item in review.items:
    with st.container(border=True):
        finding, fix = ui.split_why(item.why)
        st.markdown(ui.item_line(item.passed, item.title, finding, below=True))
        if not item.passed and (item.key in HERE or fix):
            st.markdown(
                "To fix: "
                + HERE.get(
                    item.key,
                    fix.replace("set phase.override_reason", "type an override reason below").replace(
                        "give phase.override_reason", "type an override reason below"
                    ),
                )
            )
        if finding != item.why:
            with st.expander("details"):
                st.markdown(item.why)
        if (
            not item.passed
            and item.key == "backed_up"
            and st.button(
                "Back up the checkpoint",
                key="backup",
                help=f"copies it to {checkpoints.backup_root()} and verifies the copy",
            )
        ):
            try:
                st.write(f"Verified copy at `{checkpoints.backup(Path(proposal.phase.continue_from))}`")
            except UserError as exc:
                st.error(str(exc))
            else:
                st.rerun()
        if not item.passed and item.key == "evaluated" and proposal.phase.continue_from:
            evaluations = [j for j in jobs.list_jobs("evaluate") if j.label == proposal.phase.continue_from]
            if evaluations and not evaluations[0].done:
                running_evaluation = evaluations[0]
                evaluation_progress(running_evaluation.id)
            elif evaluations and evaluations[0].status == jobs.STOPPED:
                st.info(
                    f"The last evaluation was cancelled; the {evaluations[0].progress().get('saved', 0)} outputs it "
                    "made are stored and will be reused."
                )
            elif evaluations and evaluations[0].status != jobs.FINISHED:
                st.error(f"The last evaluation job {evaluations[0].status}:")
                st.code(evaluations[0].log(3000), language=None)
            if not running_evaluation and st.button("Evaluate it now (background job)", key="evaluate"):
                jobs.evaluate(proposal.phase.continue_from)
                st.rerun()


failing = [item for item in review.items if not item.passed]
reason = ""
if failing:
    reason = st.text_input(
        f"{len(failing)} of {len(review.items)} checks fail. Override reason (stored with the run)",
        key=f"override:{run.id}",
        placeholder="why continue anyway",
    ).strip()
if st.button("Start the next phase", type="primary", disabled=bool(failing) and not reason, key="start_phase"):
    try:
        run_id = jobs.train(checklist.save(review, reason), config=proposal)
    except UserError as exc:
        st.error(str(exc))
    else:
        st.success(f"Started **{proposal.name}** (run {run_id}) in the background; follow it on the Runs page.")
