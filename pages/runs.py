"""Runs: every run and phase as a lineage tree, its best checkpoint, and its curves. While a run trains,
the whole view (table, summary, progress, curves, checkpoint markers) refreshes every 3 s."""

import pandas as pd
import streamlit as st

from core import store
from core.advisor import advise
from core.studio import charts, ui
from core.training import checkpoints, phases, runs

TIME_PARTS = {"train": "training", "eval": "evaluating", "checkpoint": "saving checkpoints"}

st.title("Runs")
was_live = bool(runs.active())


def dash(value, spec: str = "") -> str:
    """A value as the page shows it; "—" when there is none (never "None")."""
    return "—" if value is None or value == "" else format(value, spec)


@st.fragment(run_every=3 if was_live else None)
def runs_view():
    with store.session():  # the view's dozen reads on one connection
        view()


def view():
    listed = runs.table()  # lineage order: a continue phase right under its parent
    if not listed:
        st.info(
            "No runs yet. Start with a **quick test**: open **Train** and press *Quick test (≈100 steps)* — it "
            "fine-tunes the embedded SmolLM2-135M for about a hundred steps on this machine, offline, so you can "
            "see every page work before a long run."
        )
        return
    live = [r for r in listed if r["status"] == "running"]
    if was_live and not live:
        st.rerun()  # the last run ended: redraw once and stop polling

    table = pd.DataFrame(
        {
            "run": [("　" * (r["depth"] - 1) + "└ " if r["depth"] else "") + r["name"] for r in listed],
            "phase": [r["depth"] + 1 for r in listed],
            "kind": [r["kind"] for r in listed],
            "status": [r["status"] for r in listed],
            "steps": [r["steps"] for r in listed],
            "best checkpoint": [
                f"step {checkpoints.step_of(r['best_checkpoint'])}" if r["best_checkpoint"] else "—" for r in listed
            ],
            "best validation loss": [dash(r["best_eval_loss"], ".4f") for r in listed],
            "created": [r["created_at"] for r in listed],
        }
    )
    selection = st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key="runs_table",
        column_config={"created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm")},
    )
    picked = selection.selection.rows
    run = (
        listed[picked[0]] if picked else max(live or listed, key=lambda r: r["created_at"])
    )  # a training run, else the newest
    offsets = dict(runs.lineage(run["id"]))  # the run and the phases it continues, end to end on one step axis
    chain = list(offsets)
    now = runs.detail(run["id"])

    st.subheader(now.name + (f" — phase {len(chain)} of its lineage" if len(chain) > 1 else ""))
    cols = st.columns(4)
    cols[0].metric("status", now.status)
    cols[1].metric("steps", run["steps"])
    cols[2].metric("best validation loss", dash(run["best_eval_loss"], ".4f"))
    cols[3].metric(
        "best checkpoint", f"step {checkpoints.step_of(run['best_checkpoint'])}" if run["best_checkpoint"] else "—"
    )
    if now.status == "running":
        done, text = runs.progress(now)
        st.progress(done or 0.0, text=text)
    if run["best_checkpoint"]:
        st.caption(f"Best checkpoint (lowest validation loss): `{run['best_checkpoint']}`")
    spent = runs.time_split(run["id"])
    if spent:
        st.caption(
            "Time so far: "
            + " · ".join(
                f"{words} {advise.duration(spent[part])}" for part, words in TIME_PARTS.items() if part in spent
            )
        )
    checklist = now.checklist
    failed = [item["title"] for item in checklist if not item["passed"]]
    if now.override_reason and (failed or not checklist):
        which = f" ({'; '.join(failed)})" if failed else ""
        st.warning(f"Started although the pre-continue checklist failed{which}. Reason given: {now.override_reason}")
    if checklist:
        with st.expander(
            f"Pre-continue checklist when this phase started: {len(checklist) - len(failed)} of {len(checklist)} passed"
        ):
            for item in checklist:
                st.markdown(ui.item_line(item["passed"], item["title"], item["why"]))
    if now.error:
        st.error(now.error)
    chart = charts.lineage_curves(chain, offsets, {r["id"]: r["name"] for r in listed})
    if chart:
        st.vega_lite_chart(spec=chart["loss"], width="stretch", key="curves")
        for column, panel in zip(st.columns(2), ("learning rate", "tokens per second")):
            column.vega_lite_chart(spec=chart[panel], width="stretch", key=f"curves:{panel}")
    else:
        st.info("No metrics logged yet — the first ones arrive after the first logging step.")
    if was_live:
        st.caption("Live: refreshing every 3 s while a run trains.")
    with st.expander("Config of this run"):  # a table: no code highlighter to load for the first page
        st.dataframe(
            pd.DataFrame(phases.config_in_words(now.config), columns=["setting", "value"]),
            hide_index=True,
            width="stretch",
            key="run_config",
        )


runs_view()
