"""The studio's charts as Vega-Lite specs, for `st.vega_lite_chart`: the Runs page's curves and the
Pre-continue page's diagnosis. Vega-Lite, not plotly: the browser loads a 0.8 MB chart bundle instead
of 4.7 MB before it can draw the first page (BENCHMARKS.md).

Tabular data goes in as named datasets (Streamlit sends them as Arrow); each mark that matters carries
an accessible description, so a screen reader and the browser test read the same checkpoints."""

import numpy as np
from tsdownsample import MinMaxLTTBDownsampler

from core.studio import ui
from core.training import runs

PANELS = {"loss": "loss", "eval_loss": "loss", "learning_rate": "learning rate", "tokens_per_s": "tokens per second"}
# Points of one metric's curve on a chart, shared by the phases drawn end to end: about one per pixel of a
# wide chart, since the browser's drawing time grows with the points (BENCHMARKS.md). A phase keeps at
# least MIN_CURVE_POINTS however long its lineage. Thinned for the chart only, never for the numbers.
CHART_POINTS, MIN_CURVE_POINTS = 600, 50
X_TITLE = {True: "step (phases end to end)", False: "step"}
DIAGNOSIS_COLORS = ["#9db4d8", "#e07b39"]  # training loss, validation loss
FIT_COLORS = ["#1f4e9c", "#6a3d9a", "#2a7f62", "#8c564b", "#555555"]  # one per fitted window (the advisor fits up to 3)


def _x(title: str) -> dict:
    return {"field": "step", "type": "quantitative", "title": title}


def _y(title: str) -> dict:
    return {"field": "value", "type": "quantitative", "title": title, "scale": {"zero": False}}


def _color(scale: dict | None = None) -> dict:
    legend = {"orient": "bottom", "columns": 2, "labelLimit": 300}
    return {
        "field": "series",
        "type": "nominal",
        "title": None,
        "legend": legend,
        **({"scale": scale} if scale else {}),
    }


def _tooltip() -> list[dict]:
    return [
        {"field": "series", "title": "curve"},
        {"field": "step", "title": "step"},
        {"field": "value", "title": "value", "format": ".4~g"},
    ]


def _lines(curves: list[dict], x_title: str, y_title: str, scale: dict | None = None) -> tuple[dict, list[dict]]:
    """The datasets and layers of a line per series, with points where a row says `points`. The points
    are a dataset of their own, so the browser evaluates no filter on every row."""
    encoding = {"x": _x(x_title), "y": _y(y_title), "color": _color(scale), "tooltip": _tooltip()}
    datasets = {"curves": curves}
    layers = [{"data": {"name": "curves"}, "mark": {"type": "line", "aria": False}, "encoding": encoding}]
    points = [c for c in curves if c["points"]]
    if points:
        datasets["points"] = points
        layers.append(
            {
                "data": {"name": "points"},
                "mark": {"type": "point", "filled": True, "size": 36, "aria": False},
                "encoding": encoding,
            }
        )
    return datasets, layers


def _rule(dataset: dict, dash: list[int], x_title: str) -> list[dict]:
    """A dashed vertical rule at each row's step, labelled with its name at the top."""
    return [
        {
            "data": dataset,
            "mark": {"type": "rule", "strokeDash": dash, "color": "grey", "aria": False},
            "encoding": {"x": _x(x_title)},
        },
        {
            "data": dataset,
            "mark": {
                "type": "text",
                "align": "left",
                "dx": 4,
                "dy": 4,
                "baseline": "top",
                "color": "grey",
                "aria": False,
            },
            "encoding": {"x": _x(x_title), "y": {"value": 0}, "text": {"field": "name"}},
        },
    ]


def _thin(points: list[dict], n: int) -> list[dict]:
    """At most `n` (at least MIN_CURVE_POINTS) of a curve's points (by step), chosen to keep its shape,
    spikes included: MinMaxLTTB (tsdownsample) keeps each bucket's extremes where striding would drop them."""
    n = max(n, MIN_CURVE_POINTS)
    if len(points) <= n:
        return points
    steps = np.array([p["step"] for p in points], dtype=np.float64)
    values = np.array([p["value"] for p in points], dtype=np.float64)
    return [points[i] for i in MinMaxLTTBDownsampler().downsample(steps, values, n_out=n)]


def lineage_curves(chain: list[str], offsets: dict[str, int], names: dict[str, str]) -> dict[str, dict] | None:
    """`run_curves` of a run and the phases it continues (`chain`, each drawn from its offset on one step
    axis; `names`: run id -> name), from the store: every saved checkpoint placed at its validation loss
    when one was logged at that step, else at the training loss; None before any metric."""
    logged: dict[tuple[str, str], list[dict]] = {}
    for point in runs.curves(chain, PANELS):
        logged.setdefault((point.run_id, point.name), []).append({"step": point.step, "value": point.value})
    curves = []
    for rid in chain:
        for metric, panel in PANELS.items():
            points = _thin(logged.get((rid, metric), []), CHART_POINTS // len(chain))
            curves += [
                {
                    "step": p["step"] + offsets[rid],
                    "value": p["value"],
                    "series": f"{names[rid]}: {ui.METRIC_WORDS[metric]}",
                    "panel": panel,
                    "points": metric == "eval_loss",
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


def run_curves(curves: list[dict], checkpoints: list[dict], phases: list[dict], lineage: bool) -> dict[str, dict]:
    """Three charts on one step axis, by panel: "loss" (training and validation), "learning rate" and
    "tokens per second". Separate charts, not one concatenated spec: Vega-Lite fits only a single or
    layered view to the page's width.

    curves: {step, value, series, panel, points}; checkpoints: {step, value, series, path, eval_loss
    (text)}, drawn as diamonds on the loss chart, each described as "checkpoint at step N"; phases:
    {step, name}, a dashed rule where each continued phase starts (`lineage`: phases end to end)."""
    x_title = X_TITLE[lineage]
    charts = {}
    for panel, height in (("loss", 440), ("learning rate", 220), ("tokens per second", 220)):
        datasets, layers = _lines([c for c in curves if c["panel"] == panel], x_title=x_title, y_title=panel)
        if panel == "loss" and checkpoints:
            datasets["checkpoints"] = [{**c, "label": f"checkpoint at step {c['step']}"} for c in checkpoints]
            layers.append(
                {
                    "data": {"name": "checkpoints"},
                    "mark": {
                        "type": "point",
                        "shape": "diamond",
                        "filled": True,
                        "size": 130,
                        "opacity": 1,
                        "aria": True,
                    },
                    "encoding": {
                        "x": _x(x_title),
                        "y": _y(panel),
                        "color": _color(),
                        "description": {"field": "label"},
                        "tooltip": [
                            {"field": "path", "title": "checkpoint"},
                            {"field": "step", "title": "step"},
                            {"field": "eval_loss", "title": "validation loss"},
                        ],
                    },
                }
            )
        if phases:
            datasets["phases"] = phases
            layers += _rule({"name": "phases"}, [6, 4], x_title)
        charts[panel] = {"datasets": datasets, "height": height, "layer": layers}
    return charts


def diagnosis(
    train: list[tuple[int, float]], validation: list[tuple[int, float]], fits: list, minimum: int | None
) -> dict:
    """The loss curves the advisor read, each fitted window as a thick dashed line, and the step of the
    validation minimum. `fits`: advise.Fit."""
    curves = _thin([{"step": s, "value": v, "series": "train loss", "points": False} for s, v in train], CHART_POINTS)
    curves += _thin(
        [{"step": s, "value": v, "series": "validation loss", "points": True} for s, v in validation], CHART_POINTS
    )
    names = [f"fit: {fit.curve}, {fit.window}" for fit in fits]
    # the validation loss in front, the training loss behind it, the fits in darker shades
    scale = {
        "domain": ["train loss", "validation loss", *names],
        "range": [*DIAGNOSIS_COLORS, *FIT_COLORS[: len(names)]],
    }
    datasets, layers = _lines(curves, "step", "loss", scale)
    if fits:
        datasets["fits"] = [
            {"step": step, "value": fit.at(step), "series": name, "fit": fit.describe()}
            for fit, name in zip(fits, names)
            for step in (fit.start, fit.end)
        ]
        layers.append(
            {
                "data": {"name": "fits"},
                "mark": {"type": "line", "strokeWidth": 3, "strokeDash": [8, 4], "aria": False},
                "encoding": {
                    "x": _x("step"),
                    "y": _y("loss"),
                    "color": _color(scale),
                    "tooltip": [{"field": "fit", "title": "fit"}],
                },
            }
        )
    if minimum is not None:
        layers += _rule({"values": [{"step": minimum, "name": "validation minimum"}]}, [2, 3], "step")
    return {"datasets": datasets, "height": 340, "layer": layers}
