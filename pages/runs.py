"""Runs: every run and phase as a lineage tree, its best checkpoint, and its curves. While a run trains,
the whole view (table, summary, progress, curves, checkpoint markers) refreshes every 3 s."""

import pandas as pd
import streamlit as st

from core import store
from core.errors import UserError
from core.studio import charts, ui
from core.training import adopt, checkpoints, estimate, phases, runs

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
                f"{words} {estimate.duration(spent[part])}" for part, words in TIME_PARTS.items() if part in spent
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
        st.plotly_chart(chart, width="stretch", key="curves", config=charts.CONFIG)
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


def open_folder():
    """The Open button's callback: it runs before the page, so the table below already holds the run."""
    try:
        st.session_state.opened = adopt.adopt(st.session_state.import_folder.strip())
    except UserError as exc:
        st.session_state.opened = str(exc)


runs_view()

with st.expander("Open a training folder", expanded="opened" in st.session_state):
    st.caption(
        "A run trained elsewhere (transformers Trainer, TRL, Unsloth, LLaMA-Factory, axolotl): its output folder or "
        "one checkpoint-N folder. It is only read: nothing is written into it."
    )
    folder = st.text_input("Folder", key="import_folder", placeholder="/path/to/outputs")
    st.button("Open", key="import_open", disabled=not folder.strip(), on_click=open_folder)
    opened = st.session_state.pop("opened", None)
    if isinstance(opened, str):
        st.error(opened)
    elif opened is not None:
        found = opened.folder
        st.success(
            f"Run '{opened.run.name}' {'imported' if opened.new else 'read again'}: "
            f"{found.state.get('global_step', '?')} steps, {len(found.checkpoints)} checkpoint(s), "
            f"base model {opened.run.base_model}."
        )
        st.markdown(opened.diagnosis.plain)
        missing = [c.path.name for c in found.checkpoints if not c.weights]
        if missing:
            st.caption(f"Weights not present in {', '.join(missing)}: the curve is imported, not the model.")
        if found.unknown:
            st.caption("Not told by the folder (the studio's defaults stand in): " + ", ".join(found.unknown))
