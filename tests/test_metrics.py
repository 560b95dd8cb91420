"""Scoring one output against its reference, aggregating, and the seed's good/bad verdict."""

import pytest

from core import metrics
from core.config import QualityConfig
from core.render import SyntaxResult

PROMPT = "A customer places orders; each order holds order items and ships to an address. Orders are stored."
REFERENCE = """@startuml
class Customer
class Order
class OrderItem
Customer "1" --> "0..*" Order : places
Order *-- OrderItem
@enduml"""
VALID = SyntaxResult(True, None, None, "CLASS")


def score(output, reference=REFERENCE, prompt=PROMPT, expected_type="class", **kw):
    options = {"syntax": VALID, "renders": True, "truncated": False, "tokens": 50, "latency_s": 1.5} | kw
    return metrics.score(output, reference, prompt, expected_type, **options)


def test_perfect_output():
    result = score(REFERENCE)
    assert result["entity_precision"] == result["entity_recall"] == result["entity_f1"] == 1.0
    assert result["relation_precision"] == result["relation_recall"] == result["relation_f1"] == 1.0
    assert result["hallucinated_entities"] == []
    assert result["type_match"] and result["complete"] and result["syntax_valid"] and result["renders"]
    assert (result["tokens"], result["latency_s"], result["diagram_type"]) == (50, 1.5, "class")


def test_other_spellings_of_the_same_names_match():
    output = "@startuml\nclass customer\nclass order\nclass order_item\ncustomer --> order\norder *-- order_item\n@enduml"
    result = score(output)
    assert result["entity_f1"] == 1.0 and result["relation_f1"] == 1.0


def test_missing_entity_lowers_recall_not_precision():
    result = score("@startuml\nclass Customer\nclass Order\nCustomer --> Order\n@enduml")
    assert result["entity_precision"] == 1.0
    assert result["entity_recall"] == pytest.approx(2 / 3)
    assert result["relation_recall"] == 0.5 and result["relation_precision"] == 1.0


def test_invented_entity_is_hallucinated_unless_the_prompt_names_it():
    output = REFERENCE.replace("@enduml", "class Address\nclass Warehouse\nclass Store\nOrder --> Warehouse\n@enduml")
    result = score(output)
    # Address is in the prompt; Warehouse is nowhere; "stored" in the prompt does not name a Store
    assert result["hallucinated_entities"] == ["Warehouse", "Store"]
    assert result["entity_precision"] == pytest.approx(3 / 6)
    assert result["entity_recall"] == 1.0


def test_prompt_match_by_words():
    assert metrics.in_prompt("OrderItem", "each order holds several order items")
    assert metrics.in_prompt("Category", "products are grouped in categories")
    assert metrics.in_prompt("delivery_address", "the address used for delivery")
    assert not metrics.in_prompt("PaymentGateway", "each order holds several order items")
    assert not metrics.in_prompt("", "anything")


def test_wrong_type():
    result = score("@startuml\nparticipant Customer\nparticipant Order\nCustomer -> Order : places\n@enduml")
    assert not result["type_match"]
    prose = score("A customer places orders.")
    assert not prose["type_match"] and prose["entity_f1"] == 0.0 and prose["hallucinated_entities"] == []
    code = metrics.score("def order():\n    return 1\n", "@startuml\nclass Order\n@enduml", "an order", "class",
                         syntax=None, renders=None, truncated=False, tokens=9, latency_s=0.1)
    assert code["entity_f1"] == 0.0 and code["relation_f1"] == 0.0  # no relations expected, but no diagram either


def test_truncated_or_unclosed_output_is_incomplete():
    assert not score(REFERENCE, truncated=True)["complete"]
    assert not score(REFERENCE.replace("@enduml", ""))["complete"]


def test_relation_direction():
    reference = "@startuml\nA --> B\nC <|-- D\n@enduml"
    # an association matches either way round; inheritance does not
    assert score("@startuml\nB --> A\nC <|-- D\n@enduml", reference, "A B C D")["relation_f1"] == 1.0
    assert score("@startuml\nA --> B\nD <|-- C\n@enduml", reference, "A B C D")["relation_f1"] == 0.5
    # the kind is not compared: the right pair with another arrow still matches
    assert score("@startuml\nA *-- B\nD --|> C\n@enduml", reference, "A B C D")["relation_f1"] == 1.0


def test_empty_reference_and_output():
    result = score("@startuml\n@enduml", "@startuml\n@enduml", "nothing")
    assert result["entity_f1"] == 1.0 and result["relation_f1"] == 1.0
    result = score("@startuml\nclass A\n@enduml", "@startuml\n@enduml", "A")
    assert result["entity_precision"] == 0.0 and result["entity_f1"] == 0.0


def test_expected_type_defaults_to_the_reference_type():
    reference = "@startuml\nAlice -> Bob : hi\n@enduml"
    assert score(reference, reference, "Alice greets Bob", None)["diagram_type"] == "sequence"


def test_unchecked_syntax_stays_none():
    result = score(REFERENCE, syntax=None, renders=None)
    assert result["syntax_valid"] is None and result["renders"] is None


def _row(diagram_type="class", **values):
    row = {"diagram_type": diagram_type, "syntax_valid": True, "renders": True, "type_match": True,
           "entity_precision": 1.0, "entity_recall": 1.0, "entity_f1": 1.0, "relation_precision": 1.0,
           "relation_recall": 1.0, "relation_f1": 1.0, "hallucinated_entities": [], "complete": True,
           "tokens": 10, "latency_s": 1.0}
    return row | values


def test_aggregate_rates_and_per_type():
    rows = [_row(), _row(syntax_valid=False, renders=False, entity_f1=0.5, hallucinated_entities=["X", "Y"]),
            _row("sequence", type_match=False, complete=False, relation_f1=0.0, renders=None)]
    summary = metrics.aggregate(rows)
    assert summary["n"] == 3
    assert summary["syntax_valid_rate"] == pytest.approx(2 / 3)
    assert summary["render_rate"] == 0.5  # the unchecked render is skipped
    assert summary["type_accuracy"] == pytest.approx(2 / 3)
    assert summary["entity_f1"] == pytest.approx(2.5 / 3)
    assert summary["relation_f1"] == pytest.approx(2 / 3)
    assert summary["hallucination_rate"] == pytest.approx(1 / 3)  # a share of outputs, not a count of names
    assert summary["complete_rate"] == pytest.approx(2 / 3)
    assert set(summary["per_type"]) == {"class", "sequence"}
    assert summary["per_type"]["class"]["n"] == 2 and summary["per_type"]["class"]["syntax_valid_rate"] == 0.5
    assert summary["per_type"]["sequence"]["type_accuracy"] == 0.0
    assert summary["per_type"]["sequence"]["render_rate"] is None


def test_aggregate_of_nothing():
    summary = metrics.aggregate([])
    assert summary["n"] == 0 and summary["entity_f1"] is None and summary["per_type"] == {}


def _items(result):
    return {item["item"]: item for item in result["items"]}


GOOD = ["Loss < 0.5", "Valid PlantUML", "Logical and complete structure", "Relevant entity names",
        "Accurate relationships"]
BAD = ["Loss still > 1.0", "Invalid syntax (won't render)", "Incomplete diagrams", "Hallucinated entities",
       "Wrong diagram type"]


def test_verdict_all_good():
    rows = [_row() for _ in range(10)]
    result = metrics.verdict(metrics.aggregate(rows), 0.3, QualityConfig(), rows)
    items = _items(result)
    assert [i["item"] for i in result["items"]] == GOOD + BAD
    assert all(items[name]["list"] == "good" for name in GOOD) and all(items[name]["list"] == "bad" for name in BAD)
    assert all(item["passed"] is True and item["failing"] == [] for item in result["items"])
    assert result["good"] is True and result["label"] == "good" and result["reasons"] == []
    assert items["Loss < 0.5"]["value"] == 0.3 and items["Loss < 0.5"]["threshold"] == 0.5


def test_verdict_failures_name_examples():
    rows = [_row(id=f"r{i}") for i in range(10)]
    for i in range(7):
        rows[i] |= {"syntax_valid": False, "hallucinated_entities": ["Ghost"]}
    result = metrics.verdict(metrics.aggregate(rows), 1.4, QualityConfig(), rows)
    items = _items(result)
    assert items["Valid PlantUML"]["passed"] is False and items["Valid PlantUML"]["value"] == 0.3
    assert items["Valid PlantUML"]["failing"] == ["r0", "r1", "r2", "r3", "r4"]  # at most five
    assert items["Invalid syntax (won't render)"]["passed"] is False
    assert items["Invalid syntax (won't render)"]["value"] == 0.7
    assert items["Hallucinated entities"]["passed"] is False and items["Hallucinated entities"]["value"] == 0.7
    assert items["Loss < 0.5"]["passed"] is False and items["Loss still > 1.0"]["passed"] is False
    assert items["Wrong diagram type"]["passed"] is True and items["Incomplete diagrams"]["passed"] is True
    assert result["good"] is False and result["label"] == "bad"
    assert any(reason.startswith("Valid PlantUML: 0.3 against 0.9") for reason in result["reasons"])


def test_verdict_thresholds_are_inclusive_where_the_seed_says_so():
    rows = [_row() for _ in range(10)]
    rows[0]["hallucinated_entities"] = ["Ghost"]  # 10 %: exactly the allowed share
    items = _items(metrics.verdict(metrics.aggregate(rows), 0.5, QualityConfig(), rows))
    assert items["Hallucinated entities"]["passed"] is True and items["Hallucinated entities"]["failing"] == [0]
    assert items["Loss < 0.5"]["passed"] is False  # 0.5 is not below 0.5
    items = _items(metrics.verdict(metrics.aggregate(rows), 1.0, QualityConfig(), rows))
    assert items["Loss still > 1.0"]["passed"] is True  # 1.0 is not above 1.0


def test_verdict_unknown_loss_is_not_a_pass():
    rows = [_row() for _ in range(4)]
    result = metrics.verdict(metrics.aggregate(rows), None, QualityConfig(), rows)
    items = _items(result)
    assert items["Loss < 0.5"]["passed"] is None and items["Loss still > 1.0"]["passed"] is None
    assert items["Loss < 0.5"]["value"] is None
    assert result["good"] is False and result["label"] == "not yet good"
    assert "Loss < 0.5: unknown (not measured)" in result["reasons"]


def test_verdict_structure_item_fails_wrong_type_outputs():
    rows = [_row(), _row(type_match=False), _row(entity_recall=0.0, entity_f1=0.0)]
    items = _items(metrics.verdict(metrics.aggregate(rows), 0.2, QualityConfig(), rows))
    assert items["Logical and complete structure"]["value"] == pytest.approx(0.333333)
    assert items["Logical and complete structure"]["failing"] == [1, 2]
    assert items["Relevant entity names"]["failing"] == [2]


def test_row_score():
    assert metrics.row_score(_row()) == 1.0
    worse = _row(syntax_valid=False, renders=False, entity_f1=0.5, hallucinated_entities=["X"])
    assert metrics.row_score(worse) < metrics.row_score(_row())
    assert metrics.row_score(_row(renders=None)) == 1.0  # unchecked signals are skipped
    prose = metrics.score("def order():\n    return 1\n", "@startuml\nclass Order\n@enduml", "an order", "class",
                          syntax=None, renders=None, truncated=False, tokens=9, latency_s=0.1)
    assert metrics.row_score(prose) == 0.0  # invented nothing, but wrote no diagram either
