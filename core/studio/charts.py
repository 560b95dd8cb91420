"""The studio's charts as plotly figures, for `st.plotly_chart`: the Runs page's curves and the
Pre-continue page's diagnosis.

The Runs page draws one figure: loss on top, learning rate and tokens per second below, on one step
axis, so a zoom on one panel zooms all three. Hovering a loss point shows its step, its value and the
learning rate at that step; every saved checkpoint is a diamond on the loss curve, its trace text
"checkpoint at step N" (what the browser test reads); a dashed line marks where each continued phase
starts. Figures carry plain lists, not numpy arrays, so their JSON is readable rows."""

import bisect

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from tsdownsample import MinMaxLTTBDownsampler

from core.studio import ui
from core.training import runs

PANELS = {"loss": "loss", "eval_loss": "loss", "learning_rate": "learning rate", "tokens_per_s": "tokens per second"}
ROWS = ("loss", "learning rate", "tokens per second")  # the Runs figure's panels, top to bottom
# Points of one metric's curve on a chart, shared by the phases drawn end to end: about one per pixel of a
# wide chart, since the browser's drawing time grows with the points (BENCHMARKS.md). A phase keeps at
# least MIN_CURVE_POINTS however long its lineage. Thinned for the chart only, never for the numbers.
CHART_POINTS, MIN_CURVE_POINTS = 600, 50
X_TITLE = {True: "step (phases end to end)", False: "step"}
DIAGNOSIS_COLORS = ["#9db4d8", "#e07b39"]  # training loss, validation loss
FIT_COLORS = ["#1f4e9c", "#6a3d9a", "#2a7f62", "#8c564b", "#555555"]  # one per fitted window (the advisor fits up to 3)
CONFIG = {"displaylogo": False, "scrollZoom": True}  # for st.plotly_chart(config=...): wheel zoom, no plotly link
LINE_HOVER = "%{fullData.name}<br>step %{x}<br>value %{y:.4g}<br>learning rate %{customdata}<extra></extra>"
CHECKPOINT_HOVER = "%{text}<br>%{customdata[0]}<br>validation loss %{customdata[1]}<extra></extra>"


def _layout(fig: go.Figure, height: int) -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        hovermode="closest",
        dragmode="zoom",
        legend={"orientation": "h", "yanchor": "top", "y": -0.08, "x": 0},
    )
    return fig


def _thin(points: list[dict], n: int) -> list[dict]:
    """At most `n` (at least MIN_CURVE_POINTS) of a curve's points (by step), chosen to keep its shape,
    spikes included: MinMaxLTTB (tsdownsample) keeps each bucket's extremes where striding would drop them."""
    n = max(n, MIN_CURVE_POINTS)
    if len(points) <= n:
        return points
    steps = np.array([p["step"] for p in points], dtype=np.float64)
    values = np.array([p["value"] for p in points], dtype=np.float64)
    return [points[i] for i in MinMaxLTTBDownsampler().downsample(steps, values, n_out=n)]


def _rate_at(rates: list[dict], step: int) -> str:
    """The learning rate logged at or last before `step` ("—" before the first), for the hover."""
    i = bisect.bisect_right([r["step"] for r in rates], step)
    return f"{rates[i - 1]['value']:.3g}" if i else "—"


def lineage_curves(chain: list[str], offsets: dict[str, int], names: dict[str, str]) -> go.Figure | None:
    """`run_curves` of a run and the phases it continues (`chain`, each drawn from its offset on one step
    axis; `names`: run id -> name), from the store: every saved checkpoint placed at its validation loss
    when one was logged at that step, else at the training loss; None before any metric."""
    logged: dict[tuple[str, str], list[dict]] = {}
    for point in runs.curves(chain, PANELS):
        logged.setdefault((point.run_id, point.name), []).append({"step": point.step, "value": point.value})
    curves = []
    for rid in chain:
        rates = logged.get((rid, "learning_rate"), [])
        for metric, panel in PANELS.items():
            points = _thin(logged.get((rid, metric), []), CHART_POINTS // len(chain))
            curves += [
                {
                    "step": p["step"] + offsets[rid],
                    "value": p["value"],
                    "series": f"{names[rid]}: {ui.METRIC_WORDS[metric]}",
                    "panel": panel,
                    "points": metric == "eval_loss",
                    "learning_rate": _rate_at(rates, p["step"]),
                }
                for p in points
            ]
    marks = [
        {
            "step": c.step + offsets[c.run_id],
            "value": c.loss if c.eval_loss is None else c.eval_loss,
            "series": f"{names[c.run_id]}: checkpoints",
            "path": c.path,
            "eval_loss": "—" if c.eval_loss is None else f"{c.eval_loss:.4f}",
        }
        for c in runs.saved(chain)
        if c.eval_loss is not None or c.loss is not None
    ]
    phases = [{"step": offsets[rid], "name": names[rid]} for rid in chain if offsets[rid]]
    return run_curves(curves, marks, phases, len(chain) > 1) if curves else None


def run_curves(curves: list[dict], checkpoints: list[dict], phases: list[dict], lineage: bool) -> go.Figure:
    """One figure of three panels on a shared step axis (ROWS): "loss" (training and validation),
    "learning rate" and "tokens per second".

    curves: {step, value, series, panel, points, learning_rate (text)}, a line per series, with markers
    where `points`; checkpoints: {step, value, series, path, eval_loss (text)}, diamonds on the loss panel,
    each with the text "checkpoint at step N"; phases: {step, name}, a dashed line across the panels where
    each continued phase starts, named at the top (`lineage`: phases end to end)."""
    fig = make_subplots(rows=len(ROWS), cols=1, shared_xaxes=True, row_heights=[0.6, 0.2, 0.2], vertical_spacing=0.04)
    for series in dict.fromkeys(c["series"] for c in curves):
        rows = [c for c in curves if c["series"] == series]
        fig.add_trace(
            go.Scatter(
                x=[c["step"] for c in rows],
                y=[c["value"] for c in rows],
                name=series,
                mode="lines+markers" if rows[0]["points"] else "lines",
                customdata=[c.get("learning_rate", "—") for c in rows],
                hovertemplate=LINE_HOVER,
            ),
            row=ROWS.index(rows[0]["panel"]) + 1,
            col=1,
        )
    for series in dict.fromkeys(c["series"] for c in checkpoints):
        marks = [c for c in checkpoints if c["series"] == series]
        fig.add_trace(
            go.Scatter(
                x=[c["step"] for c in marks],
                y=[c["value"] for c in marks],
                name=series,
                mode="markers",
                marker={"symbol": "diamond", "size": 12},
                text=[f"checkpoint at step {c['step']}" for c in marks],
                customdata=[[c["path"], c["eval_loss"]] for c in marks],
                hovertemplate=CHECKPOINT_HOVER,
            ),
            row=1,
            col=1,
        )
    for phase in phases:
        fig.add_vline(x=phase["step"], line_dash="dash", line_color="grey", line_width=1, row="all", col=1)
        fig.add_annotation(
            x=phase["step"], y=1, yref="paper", text=phase["name"], showarrow=False, xanchor="left", yanchor="bottom"
        )
    for row, title in enumerate(ROWS, start=1):
        fig.update_yaxes(title_text=title, row=row, col=1)
    fig.update_xaxes(title_text=X_TITLE[lineage], row=len(ROWS), col=1)
    return _layout(fig, 760)


def diagnosis(
    train: list[tuple[int, float]], validation: list[tuple[int, float]], fits: list, minimum: int | None
) -> go.Figure:
    """The loss curves the advisor read, each fitted window as a thick dashed line, and the step of the
    validation minimum as a dotted line. `fits`: advise.Fit."""
    fig = go.Figure()
    for name, pairs, color, points in (
        ("train loss", train, DIAGNOSIS_COLORS[0], False),
        ("validation loss", validation, DIAGNOSIS_COLORS[1], True),
    ):
        thin = _thin([{"step": s, "value": v} for s, v in pairs], CHART_POINTS)
        if thin:
            fig.add_trace(
                go.Scatter(
                    x=[p["step"] for p in thin],
                    y=[p["value"] for p in thin],
                    name=name,
                    mode="lines+markers" if points else "lines",
                    line={"color": color},
                    hovertemplate="%{fullData.name}<br>step %{x}<br>value %{y:.4g}<extra></extra>",
                )
            )
    for fit, color in zip(fits, FIT_COLORS):
        fig.add_trace(
            go.Scatter(
                x=[fit.start, fit.end],
                y=[fit.at(fit.start), fit.at(fit.end)],
                name=f"fit: {fit.curve}, {fit.window}",
                mode="lines",
                line={"color": color, "width": 3, "dash": "dash"},
                hovertext=fit.describe(),
                hoverinfo="text",
            )
        )
    if minimum is not None:
        fig.add_vline(
            x=minimum,
            line_dash="dot",
            line_color="grey",
            annotation_text="validation minimum",
            annotation_position="top right",
        )
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="loss")
    return _layout(fig, 380)
