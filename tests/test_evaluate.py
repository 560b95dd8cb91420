"""Evaluation and comparison end to end on the tiny model (real PlantUML, real store), the stored
generations served again, bad input, and one slow run of the real 135M base model."""

import json

import pytest
from test_generate import make_checkpoint

from core import cli, store
from core.config import EvaluationConfig
from core.data import prompts
from core.evaluation import evaluate
from core.inference import generate

pytestmark = pytest.mark.usefixtures("one_thread")

RATES = {
    "syntax_valid_rate",
    "render_rate",
    "type_accuracy",
    "entity_f1",
    "relation_f1",
    "hallucination_rate",
    "complete_rate",
    "looped_rate",
}
KEYS = RATES | {"n", "per_type", "by_origin", "intervals", "verdict", "sample"}
ROWS = [
    {
        "prompt": "A library lends books to members.",
        "diagram_type": "class",
        "origin": "real",
        "source": "a",
        "plantuml": "@startuml\nclass Library\nclass Book\nLibrary --> Book : lends\n@enduml",
    },
    {
        "prompt": "A <script>alert('x')</script> customer sends an order to a shop.",
        "diagram_type": "sequence",
        "origin": "generated",
        "source": "gen:shop",
        "plantuml": "@startuml\nparticipant Customer\nparticipant Shop\nCustomer -> Shop : order\n@enduml",
    },
    {
        "prompt": "An order has many items.",
        "diagram_type": "class",
        "origin": "generated",
        "source": "gen:shop",
        "plantuml": "@startuml\nclass Order\nclass Item\nOrder *-- Item\n@enduml",
    },
]
FAST = EvaluationConfig(max_new_tokens=12)


@pytest.fixture(scope="module")
def checkpoint(tiny_model, tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("eval-ckpt"), tiny_model, seed=1)


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return path


def test_a_limit_takes_the_rows_in_turn_from_each_diagram_type(dataset):
    """The file holds class, sequence, class: two rows take one of each type, not the first two
    (the A/B page picks its prompts the same way, with evaluate.sample_rows)."""
    _, rows = evaluate._rows(dataset, "test", 2)
    assert sorted(r["diagram_type"] for r in rows) == ["class", "sequence"]
    _, rows = evaluate._rows(dataset, "test", 10)
    assert len(rows) == 3


def test_the_sample_is_seeded_and_stratified_by_type_origin_and_source():
    rows = [
        {"prompt": f"{t} {o} {s} {i}", "diagram_type": t, "origin": o, "source": s}
        for t, o, sources, count in (
            ("class", "real", ["m1", "m2", "m3"], 30),
            ("sequence", "real", ["p1"], 20),
            ("sequence", "generated", ["g1", "g2"], 10),
            ("state", "generated", ["g1"], 5),
        )
        for s in sources
        for i in range(count)
    ]
    sample = evaluate.sample_rows(rows, 30)
    assert sample == evaluate.sample_rows(rows, 30)  # seeded: the same rows every time
    assert sample != evaluate.sample_rows(rows, 30, seed=1)
    assert evaluate.sample_rows(rows, 40)[:30] == sample  # a larger sample keeps the smaller one's rows

    def count(key, value):
        return sum(r[key] == value for r in sample)

    assert (count("diagram_type", "class"), count("diagram_type", "sequence"), count("diagram_type", "state")) == (
        13,
        12,
        5,
    )  # types in turn; state has only five rows, class and sequence share the rest
    assert {count("source", m) for m in ("m1", "m2", "m3")} == {4, 5}  # 13 class rows from every model, not one
    sequence = [r for r in sample if r["diagram_type"] == "sequence"]
    assert abs(sum(r["origin"] == "real" for r in sequence) - sum(r["origin"] == "generated" for r in sequence)) <= 1
    class_rows = [r for r in rows if r["diagram_type"] == "class"]
    assert [r for r in sample if r["diagram_type"] == "class"] != class_rows[:10]  # random, not file order


def count(table: str) -> int:
    return store.query_for_tests(f"SELECT count(*) AS n FROM {table}")[0]["n"]


def test_evaluate_json_has_the_keys_and_stores_every_generation(checkpoint, dataset, capsys):
    code = cli.main(
        [
            "evaluate",
            "--checkpoint",
            str(checkpoint),
            "--dataset",
            str(dataset),
            "--limit",
            "2",
            "--max-new-tokens",
            "12",
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)  # stdout is exactly one JSON object
    assert KEYS <= summary.keys() and summary["n"] == 2
    for key in RATES:
        assert 0.0 <= summary[key] <= 1.0
        interval = summary["intervals"][key]
        assert interval["low"] <= summary[key] <= interval["high"] and interval["n"] == 2
    assert set(summary["per_type"]) == {"class", "sequence"}
    assert summary["verdict"]["label"] in ("good", "bad", "not yet good")
    assert summary["generated"] == 2 and summary["reused"] == 0

    (evaluation,) = store.query_for_tests("SELECT * FROM evaluations")
    assert evaluation["checkpoint"] == str(checkpoint) and evaluation["n"] == 2
    assert json.loads(evaluation["summary"])["evaluation_id"] == evaluation["id"]
    rows = store.query_for_tests("SELECT * FROM generations ORDER BY prompt")
    asked = sorted(prompts.request(row["prompt"], row["diagram_type"]) for row in evaluate.sample_rows(ROWS, 2))
    assert [r["prompt"] for r in rows] == asked  # the message the model got: the wanted type, then the requirement
    assert summary["by_origin"].keys() <= {"real", "generated"} and "generated" in summary["by_origin"]
    assert summary["intervals"]["syntax_valid_rate"]["n"] == 2
    for row in rows:
        assert row["evaluation_id"] == evaluation["id"] and len(row["settings_key"]) == 64
        assert 1 <= row["tokens"] <= 12 and row["latency_s"] > 0
        assert {"syntax_valid", "renders", "entity_f1", "truncated"} <= json.loads(row["metrics"]).keys()


def test_evaluate_prints_a_readable_table(checkpoint, dataset, capsys):
    assert (
        cli.main(
            [
                "evaluate",
                "--checkpoint",
                str(checkpoint),
                "--dataset",
                str(dataset),
                "--limit",
                "1",
                "--max-new-tokens",
                "8",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "valid" in out and "per type" in out and "verdict:" in out and "95% interval" in out


def test_repeat_evaluation_is_served_from_the_store(checkpoint, dataset):
    first, rows1 = evaluate.run(str(checkpoint), dataset, 3, config=FAST, progress=False)
    generate._engines.clear()  # a repeat must not even need the model
    second, rows2 = evaluate.run(str(checkpoint), dataset, 3, config=FAST, progress=False)
    assert not generate._engines
    assert (first["generated"], second["generated"], second["reused"]) == (3, 0, 3)
    assert [r["output"] for r in rows1] == [r["output"] for r in rows2]
    assert {k: first[k] for k in RATES} == {k: second[k] for k in RATES}
    assert count("evaluations") == 2 and count("generations") == 6
    # other decoding settings are other generations
    third = evaluate.evaluate(str(checkpoint), dataset, 3, config=EvaluationConfig(max_new_tokens=13), progress=False)
    assert third["generated"] == 3


def test_repair_reports_raw_and_repaired_validity_side_by_side(checkpoint, dataset, capsys):
    plain = evaluate.evaluate(str(checkpoint), dataset, 3, config=FAST, progress=False)
    assert plain["raw_valid_rate"] is None and plain["repaired_rate"] is None  # nothing repaired, nothing to show
    assert (
        cli.main(
            [
                "evaluate",
                "--checkpoint",
                str(checkpoint),
                "--dataset",
                str(dataset),
                "--limit",
                "3",
                "--max-new-tokens",
                "12",
                "--repair",
                "--json",
            ]
        )
        == 0
    )
    repaired = json.loads(capsys.readouterr().out)
    assert repaired["settings"]["repair"] is True and repaired["generated"] == 3  # other settings, other outputs
    # the model's own outputs are the plain run's (greedy): their valid rate is the plain run's
    assert repaired["raw_valid_rate"] == plain["syntax_valid_rate"]
    assert repaired["intervals"]["repaired_rate"]["n"] == 3
    assert 0.0 <= repaired["repaired_rate"] <= 1.0
    # the check and repair are timed apart from the generation, and the text report says both
    assert repaired["repair_s"] > 0 and repaired["generation_s"] > 0 and "repair_s" not in plain
    text = evaluate.format_summary(repaired)
    assert (
        f"took {repaired['repair_s']:.1f} s, {repaired['repair_s'] / repaired['generation_s']:.2f}x the generation's"
        in text
    )


def test_the_verdict_uses_the_eval_loss_logged_for_the_checkpoint(tiny_model, tmp_path, dataset):
    ckpt = make_checkpoint(tmp_path, tiny_model, seed=1, step=10)
    info = json.loads((ckpt / "umlstudio.json").read_text())
    (ckpt / "umlstudio.json").write_text(json.dumps({**info, "run_id": "r1"}))
    for step, loss in ((5, 1.4), (10, 0.8), (15, 0.3)):  # step 15 came after this checkpoint
        store.metrics.log("r1", step, None, {"eval_loss": loss, "loss": loss + 0.1})
    summary = evaluate.evaluate(str(ckpt), dataset, 1, config=FAST, progress=False)
    assert summary["loss"] == pytest.approx(0.8)
    items = {item["item"]: item for item in summary["verdict"]["items"]}
    assert items["Loss < 0.5"]["passed"] is False and items["Loss still > 1.0"]["passed"] is True


def test_compare_writes_one_self_contained_html(checkpoint, dataset, tmp_path, capsys):
    out = tmp_path / "report.html"
    code = cli.main(
        [
            "compare",
            "--model1",
            "base",
            "--model2",
            str(checkpoint),
            "--dataset",
            str(dataset),
            "--limit",
            "3",
            "--max-new-tokens",
            "12",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "entity F1" in printed and "sign test" in printed
    assert any(word in printed for word in ("within noise", "better", "worse"))
    page = out.read_text()
    assert page.count("<img") >= 3  # at least the three reference diagrams render
    assert "data:image/svg+xml;base64," in page and "<svg" not in page
    assert "base" in page and "run/checkpoint-10" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "http://" not in page.replace("http://www.w3.org", "")  # nothing loaded from elsewhere
    assert count("evaluations") == 2


def test_compare_result_orders_regressions_first(checkpoint, dataset, tiny_model):
    result = evaluate.compare(["base", str(checkpoint)], dataset, 3, config=FAST, progress=False)
    assert result["checkpoints"] == ["base", "run/checkpoint-10"] and result["n"] == 3
    # 'base' is the checkpoint's own base model, adapters disabled
    assert [s["settings"]["base"] for s in result["summaries"]] == [str(tiny_model.resolve())] * 2
    deltas = [row["delta"] for row in result["rows"]]
    assert deltas == sorted(deltas)
    for row in result["rows"]:
        scores = [o["score"] for o in row["outputs"]]
        assert row["delta"] == pytest.approx(scores[1] - scores[0])
    base, tuned = result["summaries"]
    test = result["tests"][0]["all"]["entity_f1"]
    assert test["delta"] == pytest.approx(tuned["entity_f1"] - base["entity_f1"]) and test["n"] == 3
    assert test["verdict"] == "within noise"  # three prompts can never show a difference at p < 0.05
    assert set(result["tests"][0]) == {"all", "real", "generated"}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint", "no/such/checkpoint"], "not found"),
        (["--dataset", "missing.jsonl"], "no such dataset"),
        (["--limit", "0"], "at least 1"),
        (["--limit", "-3"], "at least 1"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_stored(args, message, checkpoint, dataset, capsys):
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", str(dataset), *args]
    assert cli.main(argv) == 2
    assert message in one_error_line(capsys)
    assert count("evaluations") == 0 and count("generations") == 0


def test_incompatible_checkpoints_are_refused_before_any_work(checkpoint, dataset, tiny_model, tmp_path, capsys):
    import shutil

    other = shutil.copytree(tiny_model, tmp_path / "another-base")
    foreign = make_checkpoint(tmp_path / "foreign", other, seed=7)
    capsys.readouterr()
    assert cli.main(["compare", "--model1", str(checkpoint), "--model2", str(foreign), "--dataset", str(dataset)]) == 2
    assert "different base models" in one_error_line(capsys)
    assert cli.main(["evaluate", "--checkpoint", str(checkpoint), "--base", str(other), "--dataset", str(dataset)]) == 2
    assert "incompatible checkpoint" in one_error_line(capsys)
    broken = tmp_path / "broken" / "checkpoint-3"
    shutil.copytree(checkpoint, broken)
    (broken / "adapter_model.safetensors").unlink()
    assert cli.main(["evaluate", "--checkpoint", str(broken), "--dataset", str(dataset)]) == 2
    assert "no adapter_model.safetensors" in one_error_line(capsys)
    assert cli.main(["compare", "--model1", "base", "--model2", "base", "--dataset", str(dataset)]) == 2
    assert "named twice" in one_error_line(capsys)
    assert count("evaluations") == 0 and count("generations") == 0


@pytest.mark.slow
def test_real_base_model_evaluates_five_rows(real_model, capsys):
    assert cli.main(["evaluate", "--checkpoint", "base", "--limit", "5", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 5 and KEYS <= summary.keys()
    for key in RATES:  # the base model mostly writes prose or Python: low, but real numbers
        assert 0.0 <= summary[key] <= 1.0
    assert summary["settings"]["base"].endswith("smollm2-135m")
    assert count("generations") == 5
