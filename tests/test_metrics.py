"""Scoring one output against its reference, aggregating with intervals, the paired test, and the
seed's good/bad verdict.

`test_the_metric_table` is the definition of the scores: adversarial outputs for every diagram
type with the score a careful reader would give, and why. Change a metric only with its case."""

import json

import pytest

from core import cli
from core.advisor import advise
from core.config import EvaluationConfig, QualityConfig
from core.evaluation import metrics, stats
from core.inference.render import SyntaxResult

VALID = SyntaxResult(True, None, None, "CLASS")

REFERENCES = {
    "class": """@startuml
class Owner
class Dog {
  name : String
  bark()
}
class Animal
Dog --|> Animal
Owner *-- Dog
@enduml""",
    "sequence": """@startuml
actor User
participant Helpdesk
database Tickets
User -> Helpdesk : open ticket
Helpdesk -> Tickets : store ticket
Tickets --> Helpdesk : ticket id
Helpdesk --> User : confirmation
@enduml""",
    "activity": """@startuml
start
:Receive the order;
:Validate the order;
if (valid?) then (yes)
  :Ship the goods;
else (no)
  :Reject the order;
endif
:Send an invoice;
stop
@enduml""",
    "state": """@startuml
[*] --> Idle
Idle --> Running : start
Running --> Paused : pause
Paused --> Running : resume
Running --> Idle : stop
Running --> [*]
@enduml""",
    "usecase": """@startuml
actor Customer
actor Clerk
Customer --> (Place Order)
Clerk --> (Place Order)
(Place Order) ..> (Pay) : <<include>>
(Apply Coupon) ..> (Place Order) : <<extend>>
@enduml""",
    "component": """@startuml
database "Orders DB" as DB
[Web UI] --> [API Gateway]
[API Gateway] --> [Order Service]
[Order Service] ..> [Payments] : uses
[Order Service] --> DB
@enduml""",
    "er": """@startuml
entity Customer {
  * id : int
  name : text
}
entity Order {
  * id : int
  total : decimal
}
entity Product {
  * id : int
}
Customer ||--o{ Order : places
Order }o--o{ Product : contains
@enduml""",
}
PROSE = "Here is the diagram you asked for: the user talks to the helpdesk, which stores the ticket."


def diagram(*lines: str, end: bool = True) -> str:
    return "\n".join(["@startuml", *lines, *(["@enduml"] if end else [])])


def loop(line: str, times: int = 40) -> str:
    """A generation that repeats one line until the token limit: no @enduml."""
    return diagram(*[line] * times, end=False)


# (type, why a careful reader gives these scores, output, expected scores, options)
# an expected value is a number (to 0.01) or a (low, high) range; options: truncated
CASES = [
    # -- class ------------------------------------------------------------------------------------
    (
        "class",
        "the issue's example: right classes, inheritance and composition replaced by plain arrows the wrong way",
        diagram("class Owner", "class Dog", "class Animal", "Animal --> Dog", "Dog --> Owner"),
        {"entity_f1": 1.0, "relation_f1": 0.0},
        {},
    ),
    (
        "class",
        "the same diagram spelled differently (case, underscores, the arrow written from the other side)",
        diagram(
            "class owner",
            "class dog {",
            "+name : String",
            "+bark() : void",
            "}",
            "class animal",
            "Animal <|-- Dog",
            "Dog --* Owner",
        ),
        {"entity_f1": 1.0, "relation_f1": 1.0, "attribute_f1": 1.0, "type_match": True},
        {},
    ),
    (
        "class",
        "inheritance reversed (Animal extends Dog) is wrong; the composition is right",
        diagram("class Owner", "class Dog", "class Animal", "Animal --|> Dog", "Owner *-- Dog"),
        {"relation_f1": 0.5, "attribute_f1": 0.0},
        {},
    ),
    (
        "class",
        "the right diagram, then a second @startuml before the @enduml: PlantUML draws only the second block",
        "\n".join(
            [
                diagram("class Owner", "class Dog", "class Animal", "Dog --|> Animal", "Owner *-- Dog", end=False),
                diagram("class Cat"),
            ]
        ),
        {"entity_f1": 0.0, "relation_f1": 0.0, "complete": True},
        {},
    ),
    (
        "class",
        "two classes, then @enduml, then the rest as text: what follows @enduml is not drawn",
        diagram("class Owner", "class Dog") + "\nclass Animal\nDog --|> Animal\nOwner *-- Dog",
        {"entity_f1": 0.8, "relation_f1": 0.0},
        {},
    ),
    (
        "class",
        "two diagrams in one answer: the first is the one drawn",
        diagram("class Owner") + "\n" + diagram("class Dog", "class Animal", "Dog --|> Animal", "Owner *-- Dog"),
        {"entity_f1": 0.5, "relation_f1": 0.0},
        {},
    ),
    (
        "class",
        "arrow kinds swapped: realization for inheritance, aggregation for composition",
        diagram("class Owner", "class Dog", "class Animal", "Dog ..|> Animal", "Owner o-- Dog"),
        {"entity_f1": 1.0, "relation_f1": 0.0},
        {},
    ),
    (
        "class",
        "half the classes: precision 1, recall 2/3 on classes, 1/2 on relations",
        diagram("class Dog", "class Animal", "Dog --|> Animal"),
        {"entity_f1": 0.8, "relation_f1": 0.667},
        {},
    ),
    (
        "class",
        "a sequence diagram of the same names is the wrong type: no structure credit",
        diagram("participant Owner", "participant Dog", "Owner -> Dog : feeds", "Dog -> Animal : is"),
        {"type_match": False, "entity_f1": 0.0, "relation_f1": 0.0, "attribute_f1": 0.0},
        {},
    ),
    (
        "class",
        "prose is no diagram",
        PROSE,
        {"type_match": False, "entity_f1": 0.0, "relation_f1": 0.0, "complete": False},
        {},
    ),
    (
        "class",
        "one line repeated until the token limit: 39 of 40 relations are wrong, never complete",
        loop("Dog --|> Animal"),
        {"relation_f1": (0.0, 0.1), "complete": False},
        {"truncated": True},
    ),
    (
        "class",
        "cut off mid-diagram: what it wrote counts, but it is not complete",
        diagram("class Owner", "class Dog", "class Animal", "Dog --|> Animal", "Owner *", end=False),
        {"entity_f1": 1.0, "relation_f1": 0.667, "complete": False},
        {"truncated": True},
    ),
    # -- sequence ---------------------------------------------------------------------------------
    (
        "sequence",
        "the same messages in the same order",
        REFERENCES["sequence"],
        {"entity_f1": 1.0, "relation_f1": 1.0},
        {},
    ),
    (
        "sequence",
        "messages reversed in order and unlabelled: the participants are right, the conversation is not",
        diagram(
            "actor User",
            "participant Helpdesk",
            "database Tickets",
            "Helpdesk -> User",
            "Tickets -> Helpdesk",
            "Helpdesk -> Tickets",
            "User -> Helpdesk",
        ),
        {"entity_f1": 1.0, "relation_f1": 0.0},
        {},
    ),
    (
        "sequence",
        "messages reversed in order, labels kept: only one keeps its place in the order",
        diagram(
            "actor User",
            "participant Helpdesk",
            "database Tickets",
            "Helpdesk --> User : confirmation",
            "Tickets --> Helpdesk : ticket id",
            "Helpdesk -> Tickets : store ticket",
            "User -> Helpdesk : open ticket",
        ),
        {"relation_f1": 0.25},
        {},
    ),
    (
        "sequence",
        "paraphrased labels match ('opens a ticket'); 'confirms' is not 'confirmation'",
        diagram(
            "User -> Helpdesk : opens a ticket",
            "Helpdesk -> Tickets : stores the ticket",
            "Tickets --> Helpdesk : the ticket ID",
            "Helpdesk --> User : confirms",
        ),
        {"relation_f1": 0.75},
        {},
    ),
    (
        "sequence",
        "the first half of the conversation only",
        diagram("User -> Helpdesk : open ticket", "Helpdesk -> Tickets : store ticket"),
        {"entity_f1": 1.0, "relation_f1": 0.667},
        {},
    ),
    (
        "sequence",
        "one message sent the wrong way round",
        diagram(
            "Helpdesk -> User : open ticket",
            "Helpdesk -> Tickets : store ticket",
            "Tickets --> Helpdesk : ticket id",
            "Helpdesk --> User : confirmation",
        ),
        {"relation_f1": 0.75},
        {},
    ),
    (
        "sequence",
        "a class diagram answering a sequence prompt",
        diagram("class User", "class Helpdesk", "class Tickets", "User --> Helpdesk", "Helpdesk *-- Tickets"),
        {"type_match": False, "entity_f1": 0.0, "relation_f1": 0.0},
        {},
    ),
    (
        "sequence",
        "the first message repeated until the token limit",
        loop("User -> Helpdesk : open ticket"),
        {"relation_f1": (0.0, 0.1), "complete": False},
        {"truncated": True},
    ),
    ("sequence", "prose", PROSE, {"entity_f1": 0.0, "relation_f1": 0.0, "type_match": False}, {}),
    # -- activity ---------------------------------------------------------------------------------
    (
        "activity",
        "the same flow with actions paraphrased ('Validate order' for 'Validate the order')",
        diagram(
            "start",
            ":Receive order;",
            ":Validate order;",
            "if (ok?) then (yes)",
            ":Ship goods;",
            "else (no)",
            ":Reject order;",
            "endif",
            ":Send invoice;",
            "stop",
        ),
        {"entity_f1": 1.0, "relation_f1": 1.0, "branch_score": 1.0},
        {},
    ),
    (
        "activity",
        "the decision flattened into a straight line: one wrong flow, two missing, no branch",
        diagram(
            "start",
            ":Receive the order;",
            ":Validate the order;",
            ":Ship the goods;",
            ":Reject the order;",
            ":Send an invoice;",
            "stop",
        ),
        {"entity_f1": 1.0, "relation_f1": 0.667, "branch_score": 0.0},
        {},
    ),
    (
        "activity",
        "other actions altogether",
        diagram("start", ":Bake bread;", ":Slice bread;", "stop"),
        {"entity_f1": 0.0, "relation_f1": 0.0},
        {},
    ),
    (
        "activity",
        "the first three actions only",
        diagram("start", ":Receive the order;", ":Validate the order;", ":Ship the goods;", "stop"),
        {"entity_f1": 0.75, "relation_f1": 0.571},
        {},
    ),
    (
        "activity",
        "the right actions in reverse order: no flow is right",
        diagram(
            "start",
            ":Send an invoice;",
            ":Reject the order;",
            ":Ship the goods;",
            ":Validate the order;",
            ":Receive the order;",
            "stop",
        ),
        {"entity_f1": 1.0, "relation_f1": 0.0},
        {},
    ),
    (
        "activity",
        "a class diagram answering an activity prompt",
        diagram("class Order", "class Invoice", "Order --> Invoice"),
        {"type_match": False, "entity_f1": 0.0, "relation_f1": 0.0, "branch_score": 0.0},
        {},
    ),
    (
        "activity",
        "one action repeated until the token limit",
        loop(":Validate the order;"),
        {"entity_f1": 0.333, "relation_f1": 0.0, "complete": False},
        {"truncated": True},
    ),
    ("activity", "prose", PROSE, {"entity_f1": 0.0, "relation_f1": 0.0}, {}),
    # -- state ------------------------------------------------------------------------------------
    (
        "state",
        "the same machine, events in other words ('Starts', 'resumes')",
        diagram(
            "[*] --> Idle",
            "Idle --> Running : Starts",
            "Running --> Paused : pause",
            "Paused --> Running : resumes",
            "Running --> Idle : stop",
            "Running --> [*]",
        ),
        {"entity_f1": 1.0, "relation_f1": 1.0},
        {},
    ),
    (
        "state",
        "the transitions without their events: only the two unlabelled ones are right",
        diagram(
            "[*] --> Idle",
            "Idle --> Running",
            "Running --> Paused",
            "Paused --> Running",
            "Running --> Idle",
            "Running --> [*]",
        ),
        {"entity_f1": 1.0, "relation_f1": 0.333},
        {},
    ),
    (
        "state",
        "every transition reversed",
        diagram(
            "Idle --> [*]",
            "Running --> Idle : start",
            "Paused --> Running : pause",
            "Running --> Paused : resume",
            "Idle --> Running : stop",
            "[*] --> Running",
        ),
        {"entity_f1": 1.0, "relation_f1": 0.0},
        {},
    ),
    (
        "state",
        "Paused left out",
        diagram("[*] --> Idle", "Idle --> Running : start", "Running --> Idle : stop"),
        {"entity_f1": 0.8, "relation_f1": 0.667},
        {},
    ),
    (
        "state",
        "a class diagram of the states",
        diagram("class Idle", "class Running", "class Paused", "Idle --> Running", "Running --> Paused"),
        {"type_match": False, "entity_f1": 0.0, "relation_f1": 0.0},
        {},
    ),
    (
        "state",
        "one transition repeated until the token limit",
        loop("Idle --> Running : start"),
        {"relation_f1": (0.0, 0.1), "complete": False},
        {"truncated": True},
    ),
    ("state", "prose", PROSE, {"entity_f1": 0.0, "relation_f1": 0.0}, {}),
    # -- use case ---------------------------------------------------------------------------------
    (
        "usecase",
        "the same diagram with plain links for the actors' arrows",
        diagram(
            "actor Customer",
            "actor Clerk",
            "Customer -- (Place Order)",
            "(Place Order) -- Clerk",
            "(Place Order) ..> (Pay) : <<include>>",
            "(Apply Coupon) ..> (Place Order) : <<extend>>",
        ),
        {"entity_f1": 1.0, "relation_f1": 1.0},
        {},
    ),
    (
        "usecase",
        "include and extend swapped",
        diagram(
            "actor Customer",
            "actor Clerk",
            "Customer --> (Place Order)",
            "Clerk --> (Place Order)",
            "(Place Order) ..> (Pay) : <<extend>>",
            "(Apply Coupon) ..> (Place Order) : <<include>>",
        ),
        {"entity_f1": 1.0, "relation_f1": 0.5},
        {},
    ),
    (
        "usecase",
        "the include pointing the wrong way",
        diagram(
            "actor Customer",
            "actor Clerk",
            "Customer --> (Place Order)",
            "Clerk --> (Place Order)",
            "(Pay) ..> (Place Order) : <<include>>",
            "(Apply Coupon) ..> (Place Order) : <<extend>>",
        ),
        {"relation_f1": 0.75},
        {},
    ),
    (
        "usecase",
        "one actor and one use case of five",
        diagram("actor Customer", "Customer --> (Place Order)"),
        {"entity_f1": 0.571, "relation_f1": 0.4},
        {},
    ),
    (
        "usecase",
        "a sequence diagram answering a use case prompt",
        diagram("actor Customer", "participant Shop", "Customer -> Shop : place order", "Shop -> Customer : receipt"),
        {"type_match": False, "entity_f1": 0.0, "relation_f1": 0.0},
        {},
    ),
    (
        "usecase",
        "one association repeated until the token limit",
        loop("Customer --> (Place Order)"),
        {"relation_f1": (0.0, 0.1), "complete": False},
        {"truncated": True},
    ),
    ("usecase", "prose", PROSE, {"entity_f1": 0.0, "relation_f1": 0.0}, {}),
    # -- component --------------------------------------------------------------------------------
    (
        "component",
        "the same, declared with keywords first",
        diagram(
            "component [Web UI]",
            "component [API Gateway]",
            "component [Order Service]",
            "component [Payments]",
            'database "Orders DB"',
            "[Web UI] --> [API Gateway]",
            "[API Gateway] --> [Order Service]",
            "[Order Service] ..> [Payments] : uses",
            "[Order Service] --> [Orders DB]",
        ),
        {"entity_f1": 1.0, "relation_f1": 1.0},
        {},
    ),
    (
        "component",
        "every dependency pointing the wrong way",
        diagram(
            'database "Orders DB" as DB',
            "[API Gateway] --> [Web UI]",
            "[Order Service] --> [API Gateway]",
            "[Payments] ..> [Order Service]",
            "DB --> [Order Service]",
        ),
        {"entity_f1": 1.0, "relation_f1": 0.0},
        {},
    ),
    (
        "component",
        "a dependency written as an association",
        diagram(
            'database "Orders DB" as DB',
            "[Web UI] --> [API Gateway]",
            "[API Gateway] --> [Order Service]",
            "[Order Service] --> [Payments]",
            "[Order Service] --> DB",
        ),
        {"relation_f1": 0.75},
        {},
    ),
    (
        "component",
        "two of five components",
        diagram("[Web UI] --> [API Gateway]"),
        {"entity_f1": 0.571, "relation_f1": 0.4},
        {},
    ),
    (
        "component",
        "a class diagram answering a component prompt",
        diagram("class WebUI", "class APIGateway", "WebUI --> APIGateway"),
        {"type_match": False, "entity_f1": 0.0, "relation_f1": 0.0},
        {},
    ),
    (
        "component",
        "one dependency repeated until the token limit",
        loop("[Web UI] --> [API Gateway]"),
        {"relation_f1": (0.0, 0.1), "complete": False},
        {"truncated": True},
    ),
    ("component", "prose", PROSE, {"entity_f1": 0.0, "relation_f1": 0.0}, {}),
    # -- ER ---------------------------------------------------------------------------------------
    (
        "er",
        "the same model, one relation written from the other end",
        diagram(
            "entity Customer {",
            "* id : int",
            "name : text",
            "}",
            "entity Order {",
            "* id : int",
            "total : decimal",
            "}",
            "entity Product {",
            "* id : int",
            "}",
            "Order }o--|| Customer",
            "Order }o--o{ Product",
        ),
        {"entity_f1": 1.0, "relation_f1": 1.0, "cardinality_f1": 1.0, "attribute_f1": 1.0},
        {},
    ),
    (
        "er",
        "a customer with exactly one order: the link is there, its cardinality is wrong",
        diagram("entity Customer", "entity Order", "entity Product", "Customer ||--|| Order", "Order }o--o{ Product"),
        {"relation_f1": 1.0, "cardinality_f1": 0.5, "attribute_f1": 0.0},
        {},
    ),
    (
        "er",
        "Product left out",
        diagram("entity Customer", "entity Order", "Customer ||--o{ Order"),
        {"entity_f1": 0.8, "relation_f1": 0.667, "cardinality_f1": 0.667},
        {},
    ),
    (
        "er",
        "plain class arrows and no cardinalities",
        diagram("entity Customer", "entity Order", "entity Product", "Customer --> Order", "Order --> Product"),
        {"entity_f1": 1.0, "relation_f1": 1.0, "cardinality_f1": 0.0},
        {},
    ),
    (
        "er",
        "a class diagram answering an ER prompt",
        diagram("class Customer", "class Order", "Customer --> Order"),
        {"type_match": False, "entity_f1": 0.0, "relation_f1": 0.0, "cardinality_f1": 0.0},
        {},
    ),
    (
        "er",
        "one relation repeated until the token limit",
        loop("Customer ||--o{ Order"),
        {"relation_f1": (0.0, 0.1), "complete": False},
        {"truncated": True},
    ),
    ("er", "prose", PROSE, {"entity_f1": 0.0, "relation_f1": 0.0}, {}),
]


@pytest.mark.parametrize("diagram_type,why,output,expected,options", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_the_metric_table(diagram_type, why, output, expected, options):
    result = metrics.score(
        output,
        REFERENCES[diagram_type],
        "",
        diagram_type,
        syntax=None,
        renders=None,
        tokens=10,
        latency_s=0.1,
        truncated=options.get("truncated", False),
    )
    for key, want in expected.items():
        got = result[key]
        if isinstance(want, tuple):
            assert want[0] <= got <= want[1], (key, got)
        elif isinstance(want, bool):
            assert got is want, (key, got)
        else:
            assert got == pytest.approx(want, abs=0.01), (key, got)


def test_the_table_covers_every_type_six_times():
    counts = {t: sum(c[0] == t for c in CASES) for t in REFERENCES}
    assert min(counts.values()) >= 6, counts


def test_the_references_score_one_against_themselves():
    for diagram_type, reference in REFERENCES.items():
        result = metrics.score(
            reference, reference, "", diagram_type, syntax=VALID, renders=True, truncated=False, tokens=1, latency_s=0.1
        )
        scores = [result[k] for k in metrics.STRUCTURE if result[k] is not None]
        assert scores and all(s == 1.0 for s in scores), (diagram_type, result)
        assert metrics.row_score(result) == 1.0


def test_nothing_to_score_is_left_out_not_perfect():
    result = metrics.score(
        "@startuml\nclass Dog\n@enduml",
        "@startuml\nclass Dog\n@enduml",
        "a dog",
        "class",
        syntax=VALID,
        renders=True,
        truncated=False,
        tokens=5,
        latency_s=0.1,
    )
    assert result["entity_f1"] == 1.0
    assert result["relation_f1"] is None and result["attribute_f1"] is None and result["cardinality_f1"] is None
    summary = metrics.aggregate([result, _row(relation_f1=0.2)])
    assert summary["relation_f1"] == pytest.approx(0.2) and summary["intervals"]["relation_f1"]["n"] == 1


def test_a_wrong_type_earns_little():
    state = REFERENCES["state"]
    as_class = "@startuml\nclass Idle\nclass Running\nclass Paused\nIdle --> Running\nRunning --> Paused\n@enduml"
    result = metrics.score(
        as_class, state, "", "state", syntax=VALID, renders=True, truncated=False, tokens=5, latency_s=0.1
    )
    assert not result["type_match"] and result["output_type"] == "class"
    assert metrics.row_score(result) <= 0.25


PROMPT = "A customer places orders; each order holds order items and ships to an address. Orders are stored."
REFERENCE = """@startuml
class Customer
class Order
class OrderItem
Customer "1" --> "0..*" Order : places
Order *-- OrderItem
@enduml"""


def score(output, reference=REFERENCE, prompt=PROMPT, expected_type="class", **kw):
    options = {"syntax": VALID, "renders": True, "truncated": False, "tokens": 50, "latency_s": 1.5} | kw
    return metrics.score(output, reference, prompt, expected_type, **options)


def test_invented_entity_is_hallucinated_unless_the_prompt_names_it():
    output = REFERENCE.replace("@enduml", "class Address\nclass Warehouse\nclass Store\nOrder --> Warehouse\n@enduml")
    result = score(output)
    # Address is in the prompt; Warehouse is nowhere; "stored" in the prompt does not name a Store
    assert result["hallucinated_entities"] == ["Warehouse", "Store"]
    assert result["entity_precision"] == pytest.approx(3 / 6)
    assert result["entity_recall"] == 1.0
    assert score("A customer places orders.")["hallucinated_entities"] == []  # prose invents nothing


def test_prompt_match_by_words():
    assert metrics.in_prompt("OrderItem", "each order holds several order items")
    assert metrics.in_prompt("Category", "products are grouped in categories")
    assert metrics.in_prompt("delivery_address", "the address used for delivery")
    assert not metrics.in_prompt("PaymentGateway", "each order holds several order items")
    assert not metrics.in_prompt("", "anything")


def test_similarity():
    assert metrics.similarity("Validate the order", "validate order") == 1.0
    assert metrics.similarity("Ship goods", "Ship the goods to the customer") == pytest.approx(2 / 3)
    assert metrics.similarity("Bake bread", "Ship goods") == 0.0
    assert metrics.similarity("", "") == 1.0 and metrics.similarity("", "ok") == 0.0


def test_looped_and_truncated_outputs_are_incomplete():
    assert not score(REFERENCE, truncated=True)["complete"]
    assert not score(REFERENCE.replace("@enduml", ""))["complete"]
    looped = score(REFERENCE, looped=True)
    assert looped["looped"] is True and not looped["complete"]
    assert score(REFERENCE, origin="real")["origin"] == "real"


def test_expected_type_defaults_to_the_reference_type():
    reference = "@startuml\nAlice -> Bob : hi\n@enduml"
    assert score(reference, reference, "Alice greets Bob", None)["diagram_type"] == "sequence"


def test_unchecked_syntax_stays_none():
    result = score(REFERENCE, syntax=None, renders=None)
    assert result["syntax_valid"] is None and result["renders"] is None


def _row(diagram_type="class", **values):
    row = {
        "diagram_type": diagram_type,
        "syntax_valid": True,
        "renders": True,
        "type_match": True,
        "entity_precision": 1.0,
        "entity_recall": 1.0,
        "entity_f1": 1.0,
        "relation_precision": 1.0,
        "relation_recall": 1.0,
        "relation_f1": 1.0,
        "attribute_f1": None,
        "cardinality_f1": None,
        "branch_score": None,
        "hallucinated_entities": [],
        "complete": True,
        "looped": False,
        "tokens": 10,
        "latency_s": 1.0,
    }
    return row | values


def test_aggregate_rates_intervals_and_per_type():
    rows = [
        _row(),
        _row(syntax_valid=False, renders=False, entity_f1=0.5, hallucinated_entities=["X", "Y"]),
        _row("sequence", type_match=False, complete=False, relation_f1=0.0, renders=None, looped=True),
    ]
    summary = metrics.aggregate(rows)
    assert summary["n"] == 3
    assert summary["syntax_valid_rate"] == pytest.approx(2 / 3)
    assert summary["render_rate"] == 0.5 and summary["intervals"]["render_rate"]["n"] == 2  # unchecked: skipped
    assert summary["type_accuracy"] == pytest.approx(2 / 3)
    assert summary["entity_f1"] == pytest.approx(2.5 / 3)
    assert summary["relation_f1"] == pytest.approx(2 / 3)
    assert summary["hallucination_rate"] == pytest.approx(1 / 3)  # a share of outputs, not a count of names
    assert summary["complete_rate"] == pytest.approx(2 / 3) and summary["looped_rate"] == pytest.approx(1 / 3)
    assert summary["attribute_f1"] is None and summary["intervals"]["attribute_f1"]["n"] == 0
    low, high = summary["intervals"]["syntax_valid_rate"]["low"], summary["intervals"]["syntax_valid_rate"]["high"]
    assert (low, high) == pytest.approx(stats.wilson(2, 3))
    entity = summary["intervals"]["entity_f1"]
    assert entity["n"] == 3 and (entity["low"], entity["high"]) == pytest.approx(stats.wilson(2.5, 3))
    assert set(summary["per_type"]) == {"class", "sequence"}
    assert summary["per_type"]["class"]["n"] == 2 and summary["per_type"]["class"]["syntax_valid_rate"] == 0.5
    assert summary["per_type"]["sequence"]["type_accuracy"] == 0.0
    assert summary["per_type"]["sequence"]["render_rate"] is None
    assert summary["by_origin"] == {}  # no row says where it came from


def test_aggregate_splits_generated_and_real_rows():
    rows = [_row(origin="generated") for _ in range(4)] + [_row(origin="real", entity_f1=0.0) for _ in range(2)]
    summary = metrics.aggregate(rows)
    assert set(summary["by_origin"]) == {"generated", "real"}
    assert summary["by_origin"]["generated"]["entity_f1"] == 1.0 and summary["by_origin"]["real"]["entity_f1"] == 0.0
    assert summary["by_origin"]["real"]["n"] == 2
    assert summary["per_type"]["class"]["by_origin"]["real"]["n"] == 2


def test_aggregate_of_nothing():
    summary = metrics.aggregate([])
    assert summary["n"] == 0 and summary["entity_f1"] is None and summary["per_type"] == {}


def test_intervals():
    assert stats.wilson(0, 10)[0] == 0.0 and 0.25 < stats.wilson(0, 10)[1] < 0.35
    assert stats.wilson(50, 100) == pytest.approx((0.404, 0.596), abs=0.001)
    # a mean of scores: as wide as a share with the same mean, and never a point when every row is the same
    zeros = stats.estimate([0.0] * 14)
    assert zeros["value"] == 0.0 and zeros["low"] == 0.0 and 0.2 < zeros["high"] < 0.25
    halves = stats.estimate([0.5] * 100 + [None])
    assert halves["n"] == 100 and (halves["low"], halves["high"]) == pytest.approx((0.404, 0.596), abs=0.001)


def test_the_default_sample_gives_a_headline_interval_of_at_most_ten_points():
    assert EvaluationConfig().limit >= stats.needed_rows(0.10)  # worst case: a rate of 0.5
    high, low = stats.wilson(EvaluationConfig().limit // 2, EvaluationConfig().limit)[::-1]
    assert high - low <= 0.20


def test_sign_test():
    first, second = [0.0] * 12, [1.0] * 12
    result = stats.sign_test(first, second)
    assert result["verdict"] == "better" and result["delta"] == 1.0 and result["p"] < 0.001
    assert stats.sign_test(second, first)["verdict"] == "worse"
    assert stats.sign_test(first, second, higher_is_better=False)["verdict"] == "worse"
    few = stats.sign_test([0, 0, 0], [1, 1, 1])
    assert few["verdict"] == "within noise" and few["p"] == 0.25  # 3 wins of 3 happen 1 time in 4 by chance
    mixed = stats.sign_test([0, 1] * 10, [1, 0] * 10)
    assert mixed["verdict"] == "within noise" and mixed["wins"] == mixed["losses"] == 10
    assert stats.sign_test([None, 1], [1, None])["verdict"] == "not measured"


def test_paired_compares_every_summary_metric():
    worse = [_row(entity_f1=0.0, hallucinated_entities=["X"]) for _ in range(10)]
    result = metrics.paired([_row() for _ in range(10)], worse)
    assert result["entity_f1"]["verdict"] == "worse" and result["entity_f1"]["delta"] == -1.0
    assert result["hallucination_rate"]["verdict"] == "worse"  # more hallucination is worse
    assert result["syntax_valid_rate"]["verdict"] == "within noise" and result["syntax_valid_rate"]["delta"] == 0


def _items(result):
    return {item["item"]: item for item in result["items"]}


GOOD = [
    "Loss < 0.5",
    "Valid PlantUML",
    "Logical and complete structure",
    "Relevant entity names",
    "Accurate relationships",
]
BAD = [
    "Loss still > 1.0",
    "Invalid syntax (won't render)",
    "Incomplete diagrams",
    "Hallucinated entities",
    "Wrong diagram type",
]


def test_verdict_all_good():
    rows = [_row() for _ in range(40)]
    result = metrics.verdict(metrics.aggregate(rows), 0.3, QualityConfig(), rows)
    items = _items(result)
    assert [i["item"] for i in result["items"]] == GOOD + BAD
    assert all(items[name]["list"] == "good" for name in GOOD) and all(items[name]["list"] == "bad" for name in BAD)
    assert all(item["passed"] is True and item["failing"] == [] for item in result["items"]), result["reasons"]
    assert result["good"] is True and result["label"] == "good" and result["reasons"] == []
    assert items["Loss < 0.5"]["value"] == 0.3 and items["Loss < 0.5"]["threshold"] == 0.5
    assert items["Valid PlantUML"]["n"] == 40 and items["Valid PlantUML"]["low"] > 0.9


def test_verdict_failures_name_examples():
    rows = [_row(id=f"r{i}") for i in range(10)]
    for i in range(7):
        rows[i] |= {"syntax_valid": False, "hallucinated_entities": ["Ghost"]}
    result = metrics.verdict(metrics.aggregate(rows), 1.4, QualityConfig(), rows)
    items = _items(result)
    assert items["Valid PlantUML"]["passed"] is False and items["Valid PlantUML"]["value"] == pytest.approx(0.3)
    assert items["Valid PlantUML"]["failing"] == ["r0", "r1", "r2", "r3", "r4"]  # at most five
    assert items["Invalid syntax (won't render)"]["passed"] is False
    assert items["Invalid syntax (won't render)"]["value"] == pytest.approx(0.7)
    assert items["Hallucinated entities"]["passed"] is False and items["Hallucinated entities"]["value"] == 0.7
    assert items["Loss < 0.5"]["passed"] is False and items["Loss still > 1.0"]["passed"] is False
    assert items["Wrong diagram type"]["passed"] is None  # 0 of 10 wrong: too few rows to show under 10 %
    assert result["good"] is False and result["label"] == "bad"
    assert any(
        reason.startswith("Valid PlantUML: 0.3 (95% 0.11–0.60, n 10) against 0.9") for reason in result["reasons"]
    ), result["reasons"]


def test_verdict_says_when_there_are_too_few_rows_to_tell():
    rows = [_row() for _ in range(10)]
    rows[0]["hallucinated_entities"] = ["Ghost"]  # 10 %: the allowed share, but 10 rows cannot show it
    result = metrics.verdict(metrics.aggregate(rows), 0.3, QualityConfig(), rows)
    items = _items(result)
    assert items["Hallucinated entities"]["passed"] is None and items["Hallucinated entities"]["failing"] == [0]
    assert items["Valid PlantUML"]["passed"] is None  # 10 of 10 valid: the interval still reaches below 0.9
    assert result["label"] == "not yet good" and not result["good"]
    assert any(r.startswith("Hallucinated entities: not enough rows to tell") for r in result["reasons"])


def test_verdict_loss_thresholds_are_as_the_seed_says():
    rows = [_row() for _ in range(40)]
    items = _items(metrics.verdict(metrics.aggregate(rows), 0.5, QualityConfig(), rows))
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
    assert items["Logical and complete structure"]["value"] == pytest.approx(1 / 3)
    assert items["Logical and complete structure"]["failing"] == [1, 2]
    assert items["Relevant entity names"]["failing"] == [2]


def test_weak_types_use_the_interval():
    rows = (
        [_row("class") for _ in range(40)]
        + [_row("sequence", entity_f1=0.1) for _ in range(40)]
        + [_row("state", entity_f1=0.5) for _ in range(3)]
    )
    judged = metrics.judge_types(metrics.aggregate(rows)["per_type"], QualityConfig())
    assert judged["strong"] == ["class"] and judged["weak"] == ["sequence"]
    assert judged["unclear"] == ["state"]  # three rows: the interval spans the threshold
    assert judged["failing"]["sequence"] == ["entity_f1"]
    split = advise.per_type_split(metrics.aggregate(rows)["per_type"], QualityConfig())  # scenario 5's weak types
    assert (split["weak_types"], split["strong_types"], split["too_few_rows"]) == (["sequence"], ["class"], ["state"])


def test_row_score():
    assert metrics.row_score(_row()) == 1.0
    worse = _row(syntax_valid=False, renders=False, entity_f1=0.5)
    assert metrics.row_score(worse) < metrics.row_score(_row())
    assert metrics.row_score(_row(renders=None)) == 1.0  # unchecked signals are skipped
    prose = metrics.score(
        "def order():\n    return 1\n",
        "@startuml\nclass Order\n@enduml",
        "an order",
        "class",
        syntax=None,
        renders=None,
        truncated=False,
        tokens=9,
        latency_s=0.1,
    )
    assert metrics.row_score(prose) == 0.0


# ---- `umlstudio score`: one diagram against another, through the command line ------------------


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_score_prints_the_per_type_scores_of_one_diagram_against_another(tmp_path, capsys):
    reference = _write(tmp_path, "ref.puml", REFERENCES["class"])
    output = _write(tmp_path, "out.puml", diagram("class Owner", "class Dog", "class Cat", "Dog --|> Animal"))
    assert cli.main(["score", output, "--reference", reference, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["diagram_type"] == "class" and found["syntax_valid"] is True and found["type_match"] is True
    # Owner, Dog, Animal of 3 right, Cat invented: P 0.75, R 1; Dog --|> Animal of 2 relations: P 1, R 0.5
    assert found["entity_f1"] == pytest.approx(6 / 7) and found["relation_f1"] == pytest.approx(2 / 3)
    assert found["attribute_f1"] == 0.0 and found["cardinality_f1"] is None
    assert found["hallucinated_entities"] == ["Cat"]
    assert cli.main(["score", output, "--reference", reference]) == 0
    table = capsys.readouterr().out
    assert "scored as a class diagram" in table and "0.86 (0.75, 1.00)" in table
    assert "cardinality F1" in table and "the reference has none" in table


def test_score_reads_what_plantuml_draws_and_takes_the_type_asked(tmp_path, capsys):
    reference = _write(tmp_path, "ref.puml", REFERENCES["sequence"])
    restarted = REFERENCES["sequence"].replace("@enduml", "@startuml\nclass Ticket\n@enduml")
    output = _write(tmp_path, "out.puml", restarted)
    assert cli.main(["score", output, "--reference", reference, "--type", "Sequence", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["output_type"] == "class" and found["type_match"] is False and found["relation_f1"] == 0.0
    same = _write(tmp_path, "same.puml", REFERENCES["sequence"])
    assert cli.main(["score", same, "--reference", reference, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["entity_f1"] == 1.0 and found["relation_f1"] == 1.0 and found["diagram_type"] == "sequence"


@pytest.mark.parametrize(
    "which,content,extra,message",
    [
        ("output", None, [], "out.puml: file not found"),
        ("reference", None, [], "--reference {ref}: file not found"),
        ("output", b"@startuml\nclass \xff\n@enduml", [], "out.puml: not UTF-8 text (byte 16)"),
        ("reference", b"Just prose, no diagram.", [], "--reference {ref}: no PlantUML diagram in it"),
        ("output", b"@startuml\nclass A\n@enduml", ["--type", "flowchart"], "--type flowchart: unknown diagram type"),
    ],
)
def test_score_bad_input_is_one_line_exit_2(which, content, extra, message, tmp_path, capsys):
    paths = {"output": tmp_path / "out.puml", "reference": tmp_path / "ref.puml"}
    paths["reference" if which == "output" else "output"].write_text(REFERENCES["class"])
    if content is not None:
        paths[which].write_bytes(content)
    code = cli.main(["score", str(paths["output"]), "--reference", str(paths["reference"]), *extra])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert message.format(ref=paths["reference"]) in err
