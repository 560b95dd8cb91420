"""Runs: every run and phase as a lineage tree, its best checkpoint, and its curves. While a run trains,
the whole view (table, summary, progress, curves, checkpoint markers) refreshes every 3 s."""

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core import advise, checkpoints, runs, ui

CURVES = {name: ui.METRIC_WORDS[name] for name in ("loss", "eval_loss", "learning_rate", "tokens_per_s")}
MAX_POINTS = 1000  # per curve: a long run is thinned for the chart, never for the numbers
TIME_PARTS = {"train": "training", "eval": "evaluating", "checkpoint": "saving checkpoints"}

st.title("Runs")
was_live = bool(runs.active())


def dash(value, spec: str = "") -> str:
    """A value as the page shows it; "—" when there is none (never "None")."""
    return "—" if value is None or value == "" else format(value, spec)


def curves_figure(chain: list[str], offsets: dict[str, int], by_id: dict[str, dict]) -> go.Figure:
    """Loss (training and validation) on top, learning rate and tokens per second below; every saved
    checkpoint marked on the loss curve (at its validation loss when one was logged at that step)."""
    metrics = pd.DataFrame(runs.curves(chain, CURVES), columns=["run_id", "step", "name", "value"])
    ckpts = pd.DataFrame(runs.saved(chain), columns=["run_id", "step", "path", "eval_loss", "loss"])
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07, row_heights=[0.56, 0.22, 0.22],
                        subplot_titles=("loss", "learning rate", "tokens per second"))
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
        y = saved["eval_loss"].fillna(saved["loss"])
        placed = saved[y.notna()]
        if not placed.empty:
            fig.add_trace(go.Scatter(
                x=placed["step"] + offsets[rid], y=y[y.notna()], text=placed["path"],
                customdata=[dash(v, ".4f") for v in placed["eval_loss"]],
                mode="markers", marker={"symbol": "diamond", "size": 11, "color": "#2f6fde"},
                name=f"{name}: checkpoints",
                hovertemplate="checkpoint at step %{x}<br>validation loss %{customdata}<br>%{text}<extra></extra>",
            ), row=1, col=1)
        if offsets[rid]:
            fig.add_vline(x=offsets[rid], line_dash="dash", line_color="grey", annotation_text=name)
    fig.update_layout(height=620, margin={"t": 40, "b": 20}, legend={"orientation": "h", "y": -0.1})
    fig.update_xaxes(title_text="step (phases end to end)" if len(chain) > 1 else "step", row=3, col=1)
    return fig


@st.fragment(run_every=3 if was_live else None)
def runs_view():
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

    table = pd.DataFrame({
        "run": [("　" * (r["depth"] - 1) + "└ " if r["depth"] else "") + r["name"] for r in listed],
        "phase": [r["depth"] + 1 for r in listed],
        "kind": [r["kind"] for r in listed],
        "status": [r["status"] for r in listed],
        "steps": [r["steps"] for r in listed],
        "best checkpoint": [f"step {checkpoints.step_of(r['best_checkpoint'])}" if r["best_checkpoint"] else "—"
                            for r in listed],
        "best validation loss": [dash(r["best_eval_loss"], ".4f") for r in listed],
        "created": [r["created_at"] for r in listed],
    })
    selection = st.dataframe(
        table, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row", key="runs_table",
        column_config={"created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm")},
    )
    picked = selection.selection.rows
    run = listed[picked[0]] if picked else max(live or listed, key=lambda r: r["created_at"])  # a training run, else the newest
    offsets = dict(runs.lineage(run["id"]))  # the run and the phases it continues, end to end on one step axis
    chain = list(offsets)
    now = runs.detail(run["id"])

    st.subheader(now["name"] + (f" — phase {len(chain)} of its lineage" if len(chain) > 1 else ""))
    cols = st.columns(4)
    cols[0].metric("status", now["status"])
    cols[1].metric("steps", run["steps"])
    cols[2].metric("best validation loss", dash(run["best_eval_loss"], ".4f"))
    cols[3].metric("best checkpoint", f"step {checkpoints.step_of(run['best_checkpoint'])}" if run["best_checkpoint"] else "—")
    if now["status"] == "running":
        done, text = runs.progress(now)
        st.progress(done or 0.0, text=text)
    if run["best_checkpoint"]:
        st.caption(f"Best checkpoint (lowest validation loss): `{run['best_checkpoint']}`")
    spent = runs.time_split(run["id"])
    if spent:
        st.caption("Time so far: " + " · ".join(f"{words} {advise.duration(spent[part])}"
                                                 for part, words in TIME_PARTS.items() if part in spent))
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
    figure = curves_figure(chain, offsets, {r["id"]: r for r in listed})
    if figure.data:
        st.plotly_chart(figure, width="stretch", key="curves")
    else:
        st.info("No metrics logged yet — the first ones arrive after the first logging step.")
    if was_live:
        st.caption("Live: refreshing every 3 s while a run trains.")
    with st.expander("Config of this run"):
        st.code(json.dumps(now["config"], indent=2), language="json")


runs_view()
