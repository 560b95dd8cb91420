"""The studio's plotly figures: what each chart draws, where, and what its hover shows."""

import json

import plotly.io

from core.advisor import advise
from core.studio import charts


def drawn(fig) -> dict:
    """The figure as st.plotly_chart sends it to the browser (its JSON)."""
    return json.loads(plotly.io.to_json(fig, validate=False))


def test_run_curves_share_one_step_axis_with_checkpoints_on_the_loss_panel_only():
    curves = [
        {
            "step": s,
            "value": v,
            "series": f"a: {m}",
            "panel": p,
            "points": m == "validation loss",
            "learning_rate": "0.0001",
        }
        for s in (0, 10)
        for m, p, v in (
            ("training loss", "loss", 2.0 - s / 10),
            ("validation loss", "loss", 2.1),
            ("learning rate", "learning rate", 1e-4),
            ("tokens per second", "tokens per second", 300.0),
        )
    ]
    marks = [{"step": 10, "value": 2.1, "series": "a: checkpoints", "path": "a/checkpoint-10", "eval_loss": "2.1000"}]
    fig = drawn(charts.run_curves(curves, marks, [{"step": 10, "name": "b"}], lineage=True))
    axis = {t["name"]: t["yaxis"] for t in fig["data"]}
    assert axis == {
        "a: training loss": "y",
        "a: validation loss": "y",
        "a: checkpoints": "y",
        "a: learning rate": "y2",
        "a: tokens per second": "y3",
    }
    assert {t["xaxis"] for t in fig["data"]} == {"x", "x2", "x3"}
    layout = fig["layout"]
    assert layout["xaxis"]["matches"] == layout["xaxis2"]["matches"] == "x3"  # a zoom on one panel zooms all
    assert layout["xaxis3"]["title"]["text"] == "step (phases end to end)"
    assert [layout[f"yaxis{i}"]["title"]["text"] for i in ("", "2", "3")] == list(charts.ROWS)
    [mark] = [t for t in fig["data"] if t["name"] == "a: checkpoints"]
    assert mark["text"] == ["checkpoint at step 10"] and mark["marker"]["symbol"] == "diamond"
    assert mark["customdata"] == [["a/checkpoint-10", "2.1000"]]
    loss = next(t for t in fig["data"] if t["name"] == "a: training loss")
    assert loss["customdata"] == ["0.0001", "0.0001"] and "learning rate %{customdata}" in loss["hovertemplate"]
    assert loss["mode"] == "lines" and next(t for t in fig["data"] if t["name"] == "a: validation loss")["mode"] == (
        "lines+markers"
    )
    assert {s["x0"] for s in layout["shapes"]} == {10} and len(layout["shapes"]) == 3  # the phase, on every panel
    assert [a["text"] for a in layout["annotations"]] == ["b"]


def test_the_learning_rate_in_the_hover_is_the_one_logged_at_or_before_the_step():
    rates = [{"step": 5, "value": 2e-4}, {"step": 10, "value": 1e-4}]
    assert [charts._rate_at(rates, s) for s in (0, 5, 9, 10, 400)] == ["—", "0.0002", "0.0002", "0.0001", "0.0001"]


def test_diagnosis_without_fits_or_minimum_draws_the_curves_alone():
    fig = drawn(charts.diagnosis([(0, 2.0), (5, 1.5)], [], [], None))
    assert [t["name"] for t in fig["data"]] == ["train loss"] and "shapes" not in fig["layout"]
    fit = advise.Fit(
        curve="loss",
        window="recent",
        start=0,
        end=5,
        n=2,
        slope=-0.1,
        slope_se=0.01,
        intercept=2.0,
        level=1.75,
        change=-0.29,
        change_ci=0.05,
    )
    fig = drawn(charts.diagnosis([(0, 2.0), (5, 1.5)], [(5, 1.6)], [fit], 5))
    assert [t["name"] for t in fig["data"]] == ["train loss", "validation loss", "fit: loss, recent"]
    assert fig["data"][2]["y"] == [2.0, 1.5]  # the fitted line at its window's ends
    assert fig["data"][2]["hovertext"] == fit.describe()
    assert [s["x0"] for s in fig["layout"]["shapes"]] == [5]  # the validation minimum
    assert fig["layout"]["xaxis"]["title"]["text"] == "step"


def test_a_long_curve_is_thinned_for_the_chart_keeping_its_ends_and_its_spike():
    points = [{"step": s, "value": 1.0 + (5.0 if s == 1234 else 0.0) + 0.001 * (s % 7)} for s in range(5000)]
    thin = charts._thin(points, 600)
    assert len(thin) == 600 and (thin[0]["step"], thin[-1]["step"]) == (0, 4999)
    assert [p["step"] for p in thin] == sorted(p["step"] for p in thin)
    assert any(p["step"] == 1234 for p in thin)  # a stride of 9 would have dropped the spike
    assert charts._thin(points[:600], 600) == points[:600]  # short curves are drawn whole
    assert len(charts._thin(points, 2)) == charts.MIN_CURVE_POINTS  # a phase of a very long lineage keeps its shape
    long = [{"step": s, "value": 2.0, "series": "a", "panel": "loss", "points": False} for s in range(5000)]
    fig = drawn(charts.run_curves(charts._thin(long, 600), [], [], lineage=False))
    assert len(fig["data"][0]["x"]) == 600  # what reaches the browser
