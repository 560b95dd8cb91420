"""Runs: every run and phase as a lineage tree, its best checkpoint, and its curves (live while it trains)."""

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core import checkpoints, store
from core import runs as core_runs

CURVES = {"loss": "train loss", "eval_loss": "validation loss", "learning_rate": "learning rate", "tokens_per_s": "tokens/s"}
MARK = {True: ":green[:material/check_circle:]", False: ":red[:material/cancel:]"}  # material icons: no emoji font needed
MAX_POINTS = 1000  # per curve: a long run is thinned for the chart, never for the numbers

st.title("Runs")

runs = store.query_df(
    """SELECT r.id, r.name, r.phase_kind, r.parent_run, r.parent_checkpoint, r.status, r.pid, r.output_dir,
              r.created_at, r.started_at, r.finished_at, r.override_reason, r.error,
              (SELECT max(step) FROM metrics m WHERE m.run_id = r.id) AS step, b.best_checkpoint, b.best_eval_loss
       FROM runs r LEFT JOIN (  -- best checkpoint: the lowest validation loss logged at or before its step
           SELECT c.run_id, arg_min(c.path, e.value) AS best_checkpoint, min(e.value) AS best_eval_loss
           FROM checkpoints c ASOF JOIN (SELECT run_id, step, value FROM metrics WHERE name = 'eval_loss') e
             ON c.run_id = e.run_id AND c.step >= e.step
           GROUP BY c.run_id) b ON b.run_id = r.id
       ORDER BY r.created_at"""
)
if runs.empty:
    st.info(
        "No runs yet. Start with a **quick test**: open **Train** and press *Quick test (≈100 steps)* — it "
        "fine-tunes the embedded SmolLM2-135M for about a hundred steps on this machine, offline, so you can "
        "see every page work before a long run."
    )
    st.stop()

runs["status"] = [core_runs.status_of({"status": s, "pid": None if pd.isna(p) else int(p)})
                  for s, p in zip(runs["status"], runs["pid"])]  # a running row whose worker died: interrupted

# Lineage: a continue phase hangs under the run it continues, phase 1 -> 2 -> 3 as a tree.
children: dict[str | None, list[int]] = {}
known = set(runs["id"])
for i, parent in enumerate(runs["parent_run"]):
    children.setdefault(parent if parent in known else None, []).append(i)
order: list[tuple[int, int]] = []  # (row, depth), depth first


def walk(parent, depth):
    for i in children.get(parent, []):
        order.append((i, depth))
        walk(runs.at[i, "id"], depth + 1)


walk(None, 0)
table = runs.iloc[[i for i, _ in order]].copy()
table.insert(0, "run", [("　" * (d - 1) + "└ " if d else "") + runs.at[i, "name"] for i, d in order])
table["phase"] = [d + 1 for _, d in order]
table["best checkpoint"] = table["best_checkpoint"].map(lambda p: "" if pd.isna(p) else f"step {checkpoints.step_of(p)}")

selection = st.dataframe(
    table[["run", "phase", "phase_kind", "status", "step", "best checkpoint", "best_eval_loss", "created_at", "id"]],
    hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row", key="runs_table",
    column_config={
        "phase_kind": "kind", "step": st.column_config.NumberColumn("steps"),
        "best_eval_loss": st.column_config.NumberColumn("best eval loss", format="%.4f"),
        "created_at": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
        "id": "run id",
    },
)
picked = selection.selection.rows
newest = runs.sort_values(["status", "created_at"], key=lambda c: c.eq("running") if c.name == "status" else c)
run_id = table.iloc[picked[0]]["id"] if picked else newest.iloc[-1]["id"]  # default: a training run, else the newest
by_id = runs.set_index("id")

# The selected run and the phases it continues, laid end to end on one step axis: a phase starts
# at the step of the checkpoint it continues from.
chain = [run_id]
while (parent := by_id.at[chain[0], "parent_run"]) in known:
    chain.insert(0, parent)
offsets = {chain[0]: 0}
for parent, child in zip(chain, chain[1:]):
    offsets[child] = offsets[parent] + (checkpoints.step_of(by_id.at[child, "parent_checkpoint"] or "") or 0)


def curves_figure() -> go.Figure:
    """Loss (train and validation) on top, learning rate and tokens/s below; checkpoints marked."""
    marks = ", ".join("?" * len(chain))
    metrics = store.query_df(
        f"SELECT run_id, step, name, value FROM metrics WHERE run_id IN ({marks}) "
        f"AND name IN ({', '.join('?' * len(CURVES))}) ORDER BY step",
        [*chain, *CURVES],
    )
    ckpts = store.query_df(f"SELECT run_id, step, path FROM checkpoints WHERE run_id IN ({marks}) ORDER BY step", chain)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07, row_heights=[0.56, 0.22, 0.22],
                        subplot_titles=("loss", "learning rate", "tokens/s"))
    for rid in chain:
        name, one = by_id.at[rid, "name"], metrics[metrics["run_id"] == rid]
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


was_live = by_id.loc[chain, "status"].eq("running").any()


@st.fragment(run_every=3 if was_live else None)
def selected_run():
    now = store.get_run(run_id)
    steps = store.query("SELECT max(step) AS step FROM metrics WHERE run_id = ?", [run_id])[0]["step"]
    st.subheader(now["name"] + (f" — phase {len(chain)} of its lineage" if len(chain) > 1 else ""))
    cols = st.columns(4)
    cols[0].metric("status", core_runs.status_of(now))
    cols[1].metric("steps", steps if steps is not None else "—")
    best_loss, best_path = by_id.at[run_id, "best_eval_loss"], by_id.at[run_id, "best_checkpoint"]
    cols[2].metric("best eval loss", "—" if pd.isna(best_loss) else f"{best_loss:.4f}")
    cols[3].metric("best checkpoint", "—" if pd.isna(best_path) else f"step {checkpoints.step_of(best_path)}")
    if not pd.isna(best_path):
        st.caption(f"Best checkpoint (lowest validation loss): `{best_path}`")
    checklist = json.loads(now["checklist"]) if now["checklist"] else []
    failed = [item["title"] for item in checklist if not item["passed"]]
    if now["override_reason"] and (failed or not checklist):
        which = f" ({'; '.join(failed)})" if failed else ""
        st.warning(f"Started although the pre-continue checklist failed{which}. Reason given: {now['override_reason']}")
    if checklist:
        with st.expander(f"Pre-continue checklist when this phase started: {len(checklist) - len(failed)} of "
                         f"{len(checklist)} passed"):
            for item in checklist:
                st.markdown(f"{MARK[item['passed']]} **{item['title']}** — {item['why']}")
    if now["error"]:
        st.error(now["error"])
    figure = curves_figure()
    if figure.data:
        st.plotly_chart(figure, width="stretch", key="curves")
    else:
        st.info("No metrics logged yet — the first ones arrive after the first logging step.")
    if was_live:
        if core_runs.status_of(now) != "running":
            st.rerun()  # the run ended: redraw the whole page once (table, best checkpoint) and stop polling
        st.caption("Live: refreshing every 3 s while the run trains.")
    with st.expander("Config of this run"):
        st.code(json.dumps(json.loads(now["config"]), indent=2), language="json")


selected_run()
