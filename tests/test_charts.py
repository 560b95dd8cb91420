"""The studio's Vega-Lite specs: what each chart draws, and axes that keep their titles when layers merge."""

from core.advisor import advise
from core.studio import charts


def layers_titles(spec: dict) -> set:
    return {
        (layer["encoding"]["x"].get("title"), layer["encoding"].get("y", {}).get("title")) for layer in spec["layer"]
    }


def test_run_curves_split_by_panel_with_checkpoints_on_the_loss_chart_only():
    curves = [
        {"step": s, "value": v, "series": f"a: {m}", "panel": p, "points": m == "validation loss"}
        for s in (0, 10)
        for m, p, v in (
            ("training loss", "loss", 2.0 - s / 10),
            ("validation loss", "loss", 2.1),
            ("learning rate", "learning rate", 1e-4),
            ("tokens per second", "tokens per second", 300.0),
        )
    ]
    marks = [{"step": 10, "value": 2.1, "series": "a: checkpoints", "path": "a/checkpoint-10", "eval_loss": "2.1000"}]
    drawn = charts.run_curves(curves, marks, [{"step": 10, "name": "b"}], lineage=True)
    assert list(drawn) == ["loss", "learning rate", "tokens per second"]
    assert {c["series"] for c in drawn["loss"]["datasets"]["curves"]} == {"a: training loss", "a: validation loss"}
    assert drawn["loss"]["datasets"]["checkpoints"][0]["label"] == "checkpoint at step 10"
    assert all("checkpoints" not in drawn[p]["datasets"] for p in ("learning rate", "tokens per second"))
    for panel, spec in drawn.items():  # one x title per chart (a layer without it would blank the axis title)
        assert {x for x, _ in layers_titles(spec)} == {"step (phases end to end)"}
        assert {y for _, y in layers_titles(spec)} - {None} == {panel}
        assert spec["datasets"]["phases"] == [{"step": 10, "name": "b"}]


def test_diagnosis_without_fits_or_minimum_draws_the_curves_alone():
    spec = charts.diagnosis([(0, 2.0), (5, 1.5)], [], [], None)
    assert list(spec["datasets"]) == ["curves"] and len(spec["layer"]) == 1  # lines only: no points to draw
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
    spec = charts.diagnosis([(0, 2.0), (5, 1.5)], [(5, 1.6)], [fit], 5)
    assert [f["value"] for f in spec["datasets"]["fits"]] == [2.0, 1.5]  # the fitted line at its window's ends
    assert {x for x, _ in layers_titles(spec)} == {"step"}


def test_a_long_curve_is_thinned_for_the_chart_keeping_its_ends_and_its_spike():
    points = [{"step": s, "value": 1.0 + (5.0 if s == 1234 else 0.0) + 0.001 * (s % 7)} for s in range(5000)]
    thin = charts._thin(points, 600)
    assert len(thin) == 600 and (thin[0]["step"], thin[-1]["step"]) == (0, 4999)
    assert [p["step"] for p in thin] == sorted(p["step"] for p in thin)
    assert any(p["step"] == 1234 for p in thin)  # a stride of 9 would have dropped the spike
    assert charts._thin(points[:600], 600) == points[:600]  # short curves are drawn whole
    assert len(charts._thin(points, 2)) == charts.MIN_CURVE_POINTS  # a phase of a very long lineage keeps its shape
