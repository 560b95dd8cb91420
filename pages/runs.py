"""Runs: every run and phase as a lineage tree, its best checkpoint, and its curves (live while it trains)."""

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core import checkpoints, runs, ui

CURVES = {"loss": "train loss", "eval_loss": "validation loss", "learning_rate": "learning rate", "tokens_per_s": "tokens/s"}
MAX_POINTS = 1000  # per curve: a long run is thinned for the chart, never for the numbers

st.title("Runs")

listed = runs.table()  # lineage order: a continue phase right under its parent
if not listed:
    st.info(
        "No runs yet. Start with a **quick test**: open **Train** and press *Quick test (≈100 steps)* — it "
        "fine-tunes the embedded SmolLM2-135M for about a hundred steps on this machine, offline, so you can "
        "see every page work before a long run."
    )
    st.stop()

table = pd.DataFrame(listed)
table.insert(0, "run", [("　" * (r["depth"] - 1) + "└ " if r["depth"] else "") + r["name"] for r in listed])
table["phase"] = [r["depth"] + 1 for r in listed]
table["best checkpoint"] = [f"step {checkpoints.step_of(r['best_checkpoint'])}" if r["best_checkpoint"] else ""
                            for r in listed]
selection = st.dataframe(
    table[["run", "phase", "phase_kind", "status", "steps", "best checkpoint", "best_eval_loss", "created_at", "id"]],
    hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row", key="runs_table",
    column_config={
        "phase_kind": "kind", "steps": st.column_config.NumberColumn("steps"),
        "best_eval_loss": st.column_config.NumberColumn("best eval loss", format="%.4f"),
        "created_at": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
        "id": "run id",
    },
)
picked = selection.selection.rows
training = [r for r in listed if r["status"] == "running"]
run_id = listed[picked[0]]["id"] if picked else max(training or listed, key=lambda r: r["created_at"])["id"]  # default: a training run, else the newest
by_id = {r["id"]: r for r in listed}

# The selected run and the phases it continues, laid end to end on one step axis.
offsets = dict(runs.lineage(run_id))
chain = list(offsets)


def curves_figure() -> go.Figure:
    """Loss (train and validation) on top, learning rate and tokens/s below; checkpoints marked."""
    metrics = pd.DataFrame(runs.curves(chain, CURVES), columns=["run_id", "step", "name", "value"])
    ckpts = pd.DataFrame(runs.saved(chain), columns=["run_id", "step", "path"])
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07, row_heights=[0.56, 0.22, 0.22],
                        subplot_titles=("loss", "learning rate", "tokens/s"))
    for rid in chain:
        name, one = by_id[rid]["name"], metrics[metrics["run_id"] == rid]
        for metric, row in (("loss", 1), ("eval_loss", 1), ("learning_rate", 2), ("tokens_per_s", 3)):
            curve = one[one["name"] == metric]
            if len(curve) > MAX_POINTS:
                curve = curve.iloc[:: len(curve) // MAX_POINTS + 1]
            if not curve.empty:
                fig.add_trace(go.Scatter(
                    x=curve["step"] + offsets[rid], y=curve["value"], name=f"{name}: {CURVES[metric]}",
                    mode="lines+markers" if metric == "eval_loss" else "lines",
                ), row=row, col=1)
        saved = ckpts[ckpts["run_id"] == rid]
        if not saved.empty:
            evals = one[one["name"] == "eval_loss"].set_index("step")["value"]
            fig.add_trace(go.Scatter(
                x=saved["step"] + offsets[rid], y=[evals.get(step) for step in saved["step"]], text=saved["path"],
                mode="markers", marker={"symbol": "diamond", "size": 10}, name=f"{name}: checkpoints",
                hovertemplate="checkpoint at step %{x}<br>%{text}<extra></extra>",
            ), row=1, col=1)
        if offsets[rid]:
            fig.add_vline(x=offsets[rid], line_dash="dash", line_color="grey", annotation_text=name)
    fig.update_layout(height=620, margin={"t": 40, "b": 20}, legend={"orientation": "h", "y": -0.1})
    fig.update_xaxes(title_text="step (phases end to end)" if len(chain) > 1 else "step", row=3, col=1)
    return fig


was_live = any(by_id[rid]["status"] == "running" for rid in chain)


@st.fragment(run_every=3 if was_live else None)
def selected_run():
    now = runs.detail(run_id)
    st.subheader(now["name"] + (f" — phase {len(chain)} of its lineage" if len(chain) > 1 else ""))
    cols = st.columns(4)
    cols[0].metric("status", now["status"])
    cols[1].metric("steps", now["steps"] if now["steps"] is not None else "—")
    best = by_id[run_id]
    cols[2].metric("best eval loss", "—" if best["best_eval_loss"] is None else f"{best['best_eval_loss']:.4f}")
    cols[3].metric("best checkpoint", "—" if not best["best_checkpoint"] else f"step {checkpoints.step_of(best['best_checkpoint'])}")
    if best["best_checkpoint"]:
        st.caption(f"Best checkpoint (lowest validation loss): `{best['best_checkpoint']}`")
    checklist = now["checklist"]
    failed = [item["title"] for item in checklist if not item["passed"]]
    if now["override_reason"] and (failed or not checklist):
        which = f" ({'; '.join(failed)})" if failed else ""
        st.warning(f"Started although the pre-continue checklist failed{which}. Reason given: {now['override_reason']}")
    if checklist:
        with st.expander(f"Pre-continue checklist when this phase started: {len(checklist) - len(failed)} of "
                         f"{len(checklist)} passed"):
            for item in checklist:
                st.markdown(ui.item_line(item["passed"], item["title"], item["why"]))
    if now["error"]:
        st.error(now["error"])
    figure = curves_figure()
    if figure.data:
        st.plotly_chart(figure, width="stretch", key="curves")
    else:
        st.info("No metrics logged yet — the first ones arrive after the first logging step.")
    if was_live:
        if now["status"] != "running":
            st.rerun()  # the run ended: redraw the whole page once (table, best checkpoint) and stop polling
        st.caption("Live: refreshing every 3 s while the run trains.")
    with st.expander("Config of this run"):
        st.code(json.dumps(now["config"], indent=2), language="json")


selected_run()
