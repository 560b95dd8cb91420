"""Runs: every run and phase as a lineage tree, its best checkpoint, and its curves. While a run trains,
the whole view (table, summary, progress, curves, checkpoint markers) refreshes every 3 s."""

import json

import pandas as pd
import streamlit as st

from core import advise, charts, checkpoints, runs, ui

CURVES = {name: ui.METRIC_WORDS[name] for name in ("loss", "eval_loss", "learning_rate", "tokens_per_s")}
MAX_POINTS = 1000  # per curve: a long run is thinned for the chart, never for the numbers
PANELS = {"loss": "loss", "eval_loss": "loss", "learning_rate": "learning rate", "tokens_per_s": "tokens per second"}
TIME_PARTS = {"train": "training", "eval": "evaluating", "checkpoint": "saving checkpoints"}

st.title("Runs")
was_live = bool(runs.active())


def dash(value, spec: str = "") -> str:
    """A value as the page shows it; "—" when there is none (never "None")."""
    return "—" if value is None or value == "" else format(value, spec)


def curves_chart(chain: list[str], offsets: dict[str, int], by_id: dict[str, dict]) -> dict[str, dict] | None:
    """The run's curves, its phases end to end, every saved checkpoint marked on the loss curve (at its
    validation loss when one was logged at that step, else at the training loss); None before any metric."""
    metrics = pd.DataFrame(runs.curves(chain, CURVES), columns=["run_id", "step", "name", "value"])
    ckpts = pd.DataFrame(runs.saved(chain), columns=["run_id", "step", "path", "eval_loss", "loss"])
    curves, marks, phases = [], [], []
    for rid in chain:
        name, one = by_id[rid]["name"], metrics[metrics["run_id"] == rid]
        for metric, panel in PANELS.items():
            curve = one[one["name"] == metric]
            if len(curve) > MAX_POINTS:
                curve = curve.iloc[:: len(curve) // MAX_POINTS + 1]
            curves += [{"step": int(step) + offsets[rid], "value": float(value), "series": f"{name}: {CURVES[metric]}",
                        "panel": panel, "points": metric == "eval_loss"} for step, value in zip(curve["step"], curve["value"])]
        saved = ckpts[ckpts["run_id"] == rid]
        for step, path, eval_loss, loss in zip(saved["step"], saved["path"], saved["eval_loss"], saved["loss"]):
            value = loss if pd.isna(eval_loss) else eval_loss
            if not pd.isna(value):
                marks.append({"step": int(step) + offsets[rid], "value": float(value), "series": f"{name}: checkpoints",
                              "path": path, "eval_loss": dash(None if pd.isna(eval_loss) else eval_loss, ".4f")})
        if offsets[rid]:
            phases.append({"step": offsets[rid], "name": name})
    return charts.run_curves(curves, marks, phases, len(chain) > 1) if curves else None


def config_rows(config: dict, prefix: str = "") -> list[tuple[str, str]]:
    """The config as (dotted setting, value) rows: `training.learning_rate`, `3e-04`."""
    rows = []
    for key, value in config.items():
        if isinstance(value, dict) and value:
            rows += config_rows(value, f"{prefix}{key}.")
        else:
            rows.append((prefix + key, "—" if value is None else json.dumps(value) if isinstance(value, (dict, list)) else str(value)))
    return rows


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
    chart = curves_chart(chain, offsets, {r["id"]: r for r in listed})
    if chart:
        st.vega_lite_chart(spec=chart["loss"], width="stretch", key="curves")
        for column, panel in zip(st.columns(2), ("learning rate", "tokens per second")):
            column.vega_lite_chart(spec=chart[panel], width="stretch", key=f"curves:{panel}")
    else:
        st.info("No metrics logged yet — the first ones arrive after the first logging step.")
    if was_live:
        st.caption("Live: refreshing every 3 s while a run trains.")
    with st.expander("Config of this run"):  # a table: no code highlighter to load for the first page
        st.dataframe(pd.DataFrame(config_rows(now["config"]), columns=["setting", "value"]), hide_index=True,
                     width="stretch", key="run_config")


runs_view()
