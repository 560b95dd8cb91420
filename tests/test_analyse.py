"""The PlantUML reader: types, entities and relations for every diagram type, real PlantUCD rows,
garbled and truncated model output, prose and Python."""

import json
import random
import re
import subprocess
import time

import pytest

from core import paths
from core.evaluation.analyse import Diagram, Entity, Relation, analyse, detect_type, normalise
from core.inference import render


def names(diagram: Diagram) -> set[str]:
    return {e.name for e in diagram.entities}


def rels(diagram: Diagram) -> set[tuple[str, str, str]]:
    return {(r.source, r.target, r.kind) for r in diagram.relations}


# (name, text, expected type given to analyse, type found, entities, relations (source, target, kind))
CASES = [
    (
        "class: keywords, every arrow, multiplicities, labels",
        """@startuml
abstract class Shape {
  + area() : double
  - name : String
}
class Circle extends Shape
interface Drawable
enum Color {
  RED
  GREEN
}
class "Order Item" as OI
Circle ..|> Drawable
Order "1" *-- "0..*" OI : contains >
Customer "1" o-- "many" Order
Square --|> Shape
Shape <|.. Polygon
Order --> Invoice : bills
Invoice ..> Color : uses
Customer -- Address
Payment -up-> Order
Order -[#red,bold]-> Carrier
Order <-- Review
Part --* Engine
Wheel --o Car
@enduml""",
        None,
        "class",
        {
            "Shape",
            "Circle",
            "Drawable",
            "Color",
            "Order Item",
            "Order",
            "Customer",
            "Square",
            "Polygon",
            "Invoice",
            "Address",
            "Payment",
            "Carrier",
            "Review",
            "Part",
            "Engine",
            "Wheel",
            "Car",
        },
        {
            ("Circle", "Shape", "inheritance"),
            ("Circle", "Drawable", "realization"),
            ("Order", "Order Item", "composition"),
            ("Customer", "Order", "aggregation"),
            ("Square", "Shape", "inheritance"),
            ("Polygon", "Shape", "realization"),
            ("Order", "Invoice", "association"),
            ("Invoice", "Color", "dependency"),
            ("Customer", "Address", "link"),
            ("Payment", "Order", "association"),
            ("Order", "Carrier", "association"),
            ("Review", "Order", "association"),
            ("Engine", "Part", "composition"),
            ("Car", "Wheel", "aggregation"),
        },
    ),
    (
        "sequence: participants, aliases, message arrows",
        """@startuml
actor User as U
participant "Order Service" as OS
database DB
collections Cache
queue Events
boundary Web
control Ctrl
entity Ledger
U -> OS : place order
OS -> DB : save
DB --> OS : ok
OS ->> Events : order placed
OS <- Cache : hit
Ctrl -> Ledger
Web -> Web : self call
@enduml""",
        None,
        "sequence",
        {"User", "Order Service", "DB", "Cache", "Events", "Web", "Ctrl", "Ledger"},
        {
            ("User", "Order Service", "message"),
            ("Order Service", "DB", "message"),
            ("DB", "Order Service", "message"),
            ("Order Service", "Events", "message"),
            ("Cache", "Order Service", "message"),
            ("Ctrl", "Ledger", "message"),
            ("Web", "Web", "message"),
        },
    ),
    (
        "activity: actions, if/else, multi-line action, partition, loop",
        """@startuml
start
:Receive order;
if (in stock?) then (yes)
  :Ship goods;
elseif (backorder allowed?) then (yes)
  :Back-order;
else (no)
  :Cancel order;
  stop
endif
partition Billing {
  :Send
  invoice;
}
while (unpaid?) is (yes)
  :Send reminder;
endwhile
:Close order;
stop
@enduml""",
        None,
        "activity",
        {
            "Receive order",
            "Ship goods",
            "Back-order",
            "Cancel order",
            "Billing",
            "Send invoice",
            "Send reminder",
            "Close order",
        },
        {
            ("Receive order", "Ship goods", "flow"),
            ("Receive order", "Back-order", "flow"),
            ("Receive order", "Cancel order", "flow"),
            ("Ship goods", "Send invoice", "flow"),
            ("Back-order", "Send invoice", "flow"),
            ("Send invoice", "Send reminder", "flow"),
            ("Send invoice", "Close order", "flow"),
            ("Send reminder", "Close order", "flow"),
        },
    ),
    (
        "activity: fork and swimlanes",
        """@startuml
|Customer|
start
:Order;
|Shop|
fork
  :Pack;
fork again
  :Invoice;
end fork
:Ship;
stop
@enduml""",
        None,
        "activity",
        {"Customer", "Shop", "Order", "Pack", "Invoice", "Ship"},
        {
            ("Order", "Pack", "flow"),
            ("Order", "Invoice", "flow"),
            ("Pack", "Ship", "flow"),
            ("Invoice", "Ship", "flow"),
        },
    ),
    (
        "usecase: actors, use cases, include, extend, generalisation",
        """@startuml
left to right direction
actor Customer
actor "Store Admin" as Admin
:Guest: as G
usecase (Checkout) as CO
usecase "Apply Coupon" as UC2
rectangle Shop {
  (Browse Catalog)
}
Customer --> (Browse Catalog)
Customer --> CO
G -- (Browse Catalog)
CO .> (Login) : include
UC2 .> CO : <<extend>>
Admin --|> Customer
@enduml""",
        None,
        "usecase",
        {"Customer", "Store Admin", "Guest", "Checkout", "Apply Coupon", "Browse Catalog", "Login"},
        {
            ("Customer", "Browse Catalog", "association"),
            ("Customer", "Checkout", "association"),
            ("Guest", "Browse Catalog", "link"),
            ("Checkout", "Login", "include"),
            ("Apply Coupon", "Checkout", "extend"),
            ("Store Admin", "Customer", "inheritance"),
        },
    ),
    (
        "state: [*], composite state, alias, events",
        """@startuml
[*] --> Idle
state "Processing Payment" as PP
PP : charging the card
Idle --> PP : pay
PP -> Shipped : paid
PP --> Idle : declined
state Shipped {
  [*] --> InTransit
  InTransit --> Delivered : arrive
}
Shipped --> [*]
@enduml""",
        None,
        "state",
        {"Idle", "Processing Payment", "Shipped", "InTransit", "Delivered"},
        {
            ("[*]", "Idle", "transition"),
            ("Idle", "Processing Payment", "transition"),
            ("Processing Payment", "Shipped", "transition"),
            ("Processing Payment", "Idle", "transition"),
            ("[*]", "InTransit", "transition"),
            ("InTransit", "Delivered", "transition"),
            ("Shipped", "[*]", "transition"),
        },
    ),
    (
        "component: [X], component, interface, () and node/database",
        """@startuml
package "Front end" {
  component [Web UI] as UI
}
[API Gateway]
interface REST
() "Auth API" as AA
node Server {
  database "Orders DB" as ODB
}
UI --> [API Gateway]
[API Gateway] ..> REST : use
[API Gateway] --> ODB
AA - [API Gateway]
@enduml""",
        None,
        "component",
        {"Web UI", "API Gateway", "REST", "Auth API", "Server", "Orders DB"},
        {
            ("Web UI", "API Gateway", "association"),
            ("API Gateway", "REST", "dependency"),
            ("API Gateway", "Orders DB", "association"),
            ("Auth API", "API Gateway", "link"),
        },
    ),
    (
        "er: entities with bodies, crow's feet",
        """@startuml
hide circle
entity Customer {
  * id : int <<PK>>
  --
  name : text
}
entity "Sales Order" as SO {
  * id : int
  customer_id : int <<FK>>
}
Customer ||--o{ SO : places
SO }|--|| Product
Product |o--o{ Supplier
@enduml""",
        None,
        "er",
        {"Customer", "Sales Order", "Product", "Supplier"},
        {("Customer", "Sales Order", "link"), ("Sales Order", "Product", "link"), ("Product", "Supplier", "link")},
    ),
    (
        "a class snippet of arrows only is a class diagram when the dataset says so",
        """Review --> Service : for
Customer --> Order : places""",
        "class",
        "class",
        {"Review", "Service", "Customer", "Order"},
        {("Review", "Service", "association"), ("Customer", "Order", "association")},
    ),
    (
        "the same arrows read as messages when the dataset says sequence",
        """@startuml
Customer -> Shop : order
Shop --> Customer : receipt
@enduml""",
        "sequence",
        "sequence",
        {"Customer", "Shop"},
        {("Customer", "Shop", "message"), ("Shop", "Customer", "message")},
    ),
]


@pytest.mark.parametrize("name,text,expected_type,found_type,entities,relations", CASES, ids=[c[0] for c in CASES])
def test_parses_every_diagram_type(name, text, expected_type, found_type, entities, relations):
    diagram = analyse(text, expected_type)
    assert diagram.type == found_type
    assert names(diagram) == entities
    assert rels(diagram) == relations


def test_entity_kinds_and_labels():
    diagram = analyse(CASES[0][1])
    kinds = {e.name: e.kind for e in diagram.entities}
    assert kinds["Shape"] == "abstract" and kinds["Drawable"] == "interface" and kinds["Color"] == "enum"
    assert Relation("Order", "Order Item", "composition", "contains", ("1", "0..*")) in diagram.relations
    assert Relation("Customer", "Order", "aggregation", "", ("1", "0..*")) in diagram.relations  # "many" is 0..*
    assert diagram.attributes == [("Shape", "area()"), ("Shape", "name"), ("Color", "red"), ("Color", "green")]
    seq = analyse(CASES[1][1])
    assert {e.name: e.kind for e in seq.entities}["DB"] == "database"
    assert Relation("User", "Order Service", "message", "place order") in seq.relations
    usecase = analyse(CASES[4][1])
    assert {e.name: e.kind for e in usecase.entities} == {
        "Customer": "actor",
        "Store Admin": "actor",
        "Guest": "actor",
        "Checkout": "usecase",
        "Apply Coupon": "usecase",
        "Browse Catalog": "usecase",
        "Login": "usecase",
    }


@pytest.mark.parametrize("diagram_type", ["class", "sequence", "activity", "usecase", "state", "component", "er"])
def test_detect_type_without_a_hint(diagram_type):
    text = next(c[1] for c in CASES if c[3] == diagram_type and c[2] is None)
    assert detect_type(text) == diagram_type


def test_detect_type_heuristics():
    assert detect_type("@startuml\nAlice -> Bob : hi\nBob --> Alice : ok\n@enduml") == "sequence"
    assert detect_type("@startuml\nA --> B\nB --> C\n@enduml") == "class"
    assert detect_type('@startuml\nA "1" -- "*" B\n@enduml') == "class"
    assert detect_type("@startmindmap\n* root\n@endmindmap") == "unknown"
    # a clear sequence diagram stays one when the dataset expects a class diagram
    assert analyse("@startuml\nparticipant A\nparticipant B\nA -> B : hi\n@enduml", "class").type == "sequence"


# Five real PlantUCD rows (HumanLang/PlantUML/Output_AST of data/plantucd), with the classes and
# relations of their Output_AST.
PLANTUCD = [
    (
        "class Category {\n  + categoryId : String\n  + name : String\n  + description : String\n}\n\n\n"
        'Category "1" -- "0..*" Product : includes\n',
        {"Category", "Product"},
        {("Category", "Product", "link")},
    ),
    (
        "class User {\n  + userId : String\n  + username : String\n  + role : String\n"
        "\n  + login()\n  + logout()\n}\n\n\n"
        "User <|-- Admin\nUser <|-- WarehouseManager\nUser <|-- Salesperson\n",
        {"User", "Admin", "WarehouseManager", "Salesperson"},
        {
            ("Admin", "User", "inheritance"),
            ("WarehouseManager", "User", "inheritance"),
            ("Salesperson", "User", "inheritance"),
        },
    ),
    (
        "class Payment {\n  +paymentId: String\n  +amount: Double\n  +status: String\n  +processPayment()\n}\n\n"
        "Subscription --> Payment",
        {"Payment", "Subscription"},
        {("Subscription", "Payment", "association")},
    ),
    (
        "class TrafficPredictor {\n"
        "  +predictTrafficConditions(data: List<HistoricalData>, realTimeData: TrafficCondition): "
        'TrafficCondition\n}\n\nHistoricalData "1" -- "*" TrafficPredictor : "analyzed by"',
        {"TrafficPredictor", "HistoricalData"},
        {("HistoricalData", "TrafficPredictor", "link")},
    ),
    (
        "class Report {\n  + reportId : String\n  + reportType : String\n  + generate()\n}\n\n\n"
        "class Alert {\n  + alertId : String\n  + message : String\n  + alertDate : Date\n}\n\n\n"
        'Alert "1" --> "1" Product : concerns\n',
        {"Report", "Alert", "Product"},
        {("Alert", "Product", "association")},
    ),
    (
        'Lesson "1" *-- "0..*" Quiz : includes\nUser "1" o-- "*" WearableDevice : connects\n'
        "Notification ..> HealthGoal : refers to\nAuctionAPI <|.. AuctionMonitor\n",
        {"Lesson", "Quiz", "User", "WearableDevice", "Notification", "HealthGoal", "AuctionAPI", "AuctionMonitor"},
        {
            ("Lesson", "Quiz", "composition"),
            ("User", "WearableDevice", "aggregation"),
            ("Notification", "HealthGoal", "dependency"),
            ("AuctionMonitor", "AuctionAPI", "realization"),
        },
    ),
]


@pytest.mark.parametrize("text,entities,relations", PLANTUCD)
def test_real_plantucd_rows(text, entities, relations):
    diagram = analyse(text, "class")
    assert diagram.type == "class"
    assert names(diagram) == entities
    assert rels(diagram) == relations
    assert not diagram.complete  # PlantUCD snippets come without @startuml/@enduml


PLANTUCD_ARROWS = {  # Output_AST arrow -> (kind, the class holding the relation is its target)
    "--|>": ("inheritance", False),
    "<|--": ("inheritance", True),
    "..|>": ("realization", False),
    "<|..": ("realization", True),
    "*--": ("composition", False),
    "--*": ("composition", True),
    "o--": ("aggregation", False),
    "--o": ("aggregation", True),
    "..>": ("dependency", False),
    "<..": ("dependency", True),
    "-->": ("association", False),
    "<--": ("association", True),
    "--": ("link", False),
}


def test_every_plantucd_row_agrees_with_its_ast():
    """Everything the authors' AST finds, the reader finds; they agree exactly on nearly all rows
    (the AST misses lines with trailing spaces and `<..` arrows, which PlantUML reads)."""
    rows = [json.loads(line) for line in (paths.DATA_DIR / "plantucd" / "plantucd.jsonl").open()]
    exact = 0
    for row in rows:
        ast_entities, ast_relations = set(), set()
        for node in row["Output_AST"]["children"]:
            if node["type"] != "class":
                continue
            ast_entities.add(normalise(node["value"]))
            for child in node.get("children", []):
                if child["type"] == "relation":
                    kind, reverse = PLANTUCD_ARROWS[child["value"]]
                    ends = (normalise(node["value"]), normalise(child["children"][0]["value"]))
                    ast_relations.add((*(ends[::-1] if reverse else ends), kind))
        diagram = analyse(row["PlantUML"], "class")
        found_entities = {normalise(n) for n in names(diagram)}
        found_relations = {(normalise(s), normalise(t), k) for s, t, k in rels(diagram)}
        if diagram.type == "unknown":  # three rows hold a JSON-escaped string, not PlantUML
            assert "\\n" in row["PlantUML"]
            continue
        assert ast_entities <= found_entities, row["PlantUML"]
        assert ast_relations <= found_relations, row["PlantUML"]
        exact += (ast_entities, ast_relations) == (found_entities, found_relations)
    assert len(rows) > 1000
    assert exact / len(rows) > 0.98


def test_cardinalities_members_branches_and_repeats():
    er = analyse(next(c[1] for c in CASES if c[3] == "er"))
    assert [r.ends for r in er.relations] == [("1", "0..*"), ("1..*", "1"), ("0..1", "0..*")]
    assert er.attributes == [
        ("Customer", "id"),
        ("Customer", "name"),
        ("Sales Order", "id"),
        ("Sales Order", "customer id"),
    ]
    assert er.complete  # crow's feet like `o{` open no block
    assert analyse(CASES[2][1]).branches == 2 and analyse(CASES[3][1]).branches == 1  # if + while; fork
    assert analyse("@startuml\nclass Order\nOrder : total\nOrder : + pay() : bool\n@enduml").attributes == [
        ("Order", "total"),
        ("Order", "pay()"),
    ]
    looped = analyse("@startuml\nA -> B : ping\nA -> B : ping\nB -> A : pong\n@enduml", "sequence")
    assert [(r.source, r.label) for r in looped.relations] == [("A", "ping"), ("A", "ping"), ("B", "pong")]


def test_complete_needs_start_end_and_closed_braces():
    assert analyse("@startuml\nclass A {\n}\n@enduml").complete
    assert not analyse("@startuml\nclass A {\n  + x : int\n@enduml").complete  # unclosed body
    assert not analyse("@startuml\nclass A\nA --> B").complete  # cut off before @enduml
    assert not analyse("class A\nA --> B").complete


def test_truncated_output_keeps_what_was_written():
    text = "@startuml\nclass Order {\n  + id : int\n}\nclass Customer\nCustomer --> Order : places\nOrder *-- Line"
    cut = text[: text.index("Order *--") + 6]  # "Order *"
    diagram = analyse(cut, "class")
    assert diagram.type == "class" and not diagram.complete
    assert names(diagram) == {"Order", "Customer"}
    assert rels(diagram) == {("Customer", "Order", "association")}
    # cut inside a class body: the members are not entities
    diagram = analyse("@startuml\nclass Order {\n  + id : int\n  + total : Money", "class")
    assert names(diagram) == {"Order"}


def test_text_around_the_diagram_and_fences_are_ignored():
    text = (
        "Sure! Here is the diagram:\n```plantuml\n@startuml\nclass Library\nLibrary o-- Book\n@enduml\n```\n"
        "The Library class aggregates Book. class Foo is not here."
    )
    diagram = analyse(text)
    assert diagram.complete and names(diagram) == {"Library", "Book"}


# outputs whose drawn diagram is not simply "the text between the first @startuml and @enduml"
DRAWN = [
    (
        "a second @startuml before the @enduml",
        "@startuml\nclass Alpha\nAlpha --> Gamma\n@startuml\nclass Beta\n@enduml\n",
    ),
    (
        "three @startuml, one @enduml",
        "@startuml\nclass Alpha\n@startuml\nclass Beta\n@startuml\nclass Gamma\n@enduml\n",
    ),
    ("a sequence restarted as a class diagram", "@startuml\nAlice -> Bob : hi\n@startuml\nclass Beta\n@enduml\n"),
    ("text after the @enduml", "@startuml\nclass Alpha\n@enduml\nclass Beta\nBeta --> Alpha\n"),
    ("two diagrams in one answer", "@startuml\nclass Alpha\n@enduml\n\n@startuml\nclass Beta\n@enduml\n"),
    ("a second diagram left open", "@startuml\nclass Alpha\n@enduml\n@startuml\nclass Beta\n"),
]


def _drawn_names(svg: bytes) -> set[str]:
    return set(re.findall(r"<text[^>]*>([^<]+)</text>", svg.decode()))


@pytest.mark.parametrize("text", [text for _, text in DRAWN], ids=[why for why, _ in DRAWN])
def test_the_analyser_reads_the_diagram_plantuml_draws(text, tmp_path):
    """What the jar draws from the text as a file (its first image), what the studio's renderer draws,
    and what the analyser reads are the same diagram."""
    source = tmp_path / "answer.puml"
    source.write_text(text)
    subprocess.run(render._command("-tsvg", str(source)), check=True, capture_output=True, timeout=120)
    jar = _drawn_names((tmp_path / "answer.svg").read_bytes())
    studio = _drawn_names(render.render(text, cache=False).data)
    diagram = analyse(text)
    assert jar == studio == names(diagram) | {r.label for r in diagram.relations if r.label}


def test_entities_named_like_keywords_are_kept():
    text = "@startuml\nclass Note\nclass Title\nclass Legend\nNote --> Patient\nTitle --> Book\nLegend -- Map\n@enduml"
    diagram = analyse(text)
    assert names(diagram) == {"Note", "Title", "Legend", "Patient", "Book", "Map"}
    assert rels(diagram) == {
        ("Note", "Patient", "association"),
        ("Title", "Book", "association"),
        ("Legend", "Map", "link"),
    }


def test_comments_notes_and_settings_are_ignored():
    text = """@startuml
skinparam class {
  BackgroundColor White
}
title Library system
' class Ghost
/' class Phantom
   Phantom --> Ghost '/
note right of Book : Books are lent
note as N1
  class NotAClass
end note
note left of Book
  Book --> Shelf
end note
legend right
  class Legendary
endlegend
class Book
@enduml"""
    assert names(analyse(text)) == {"Book"}


@pytest.mark.parametrize(
    "text",
    [
        "def order_total(items) -> float:\n    total = 0\n    for item in items:\n"
        "        total += item.price\n    return total\n",
        "import os\nclass Order(Base):\n    def __init__(self):\n"
        "        self.items = []\n        while (len(self.items) < 3):\n"
        "            self.items.append(1)\n",
        "The system lets a customer place an order. Critical: orders have items.\n"
        "Loop over the items to compute a total.",
        "| Class | Relation |\n|---|---|\n| Order | Customer |",
        "",
        "@startuml\n@enduml",
    ],
)
def test_prose_and_python_are_unknown_with_no_entities(text):
    for expected in (None, "class", "sequence", "activity"):
        diagram = analyse(text, expected)
        assert diagram.type == "unknown"
        assert diagram.entities == [] and diagram.relations == []


def test_garbled_output_never_raises():
    rng = random.Random(7)
    alphabet = list("ABCxyz _-.<>|*o#{}[]()\":;@!\n\t'/\\=+0123456789") + [
        "@startuml",
        "@enduml",
        "-->",
        "<|--",
        "class ",
        "state ",
        "if (",
        "endif",
    ]
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 120)))
        for expected in (None, "class", "sequence", "activity", "usecase", "state", "component", "er"):
            diagram = analyse(text, expected)
            assert diagram.type in ("unknown", "class", "sequence", "activity", "usecase", "state", "component", "er")
            assert all(isinstance(e, Entity) and e.name for e in diagram.entities)


@pytest.mark.parametrize(
    "line",
    [
        "A " + "-" * 990 + " B x",
        "A" + "-" * 990,
        "A " + "-." * 490 + " x",
        "a" + " -" * 490,
        "A " + "o-" * 490,
        "A -" + "[" * 990,
        '"' * 995,
        "(" * 990,
        "class A extends " + "a, " * 320,
        "class A " + "<<x>> " * 160,
    ],
)
def test_pathological_lines_stay_fast(line):
    """Lines just under the 1,000-character cap cannot make the regexes backtrack for long. Counted in
    this thread's CPU time, which other processes on a busy machine do not inflate (wall-clock time would)."""
    started = time.thread_time()
    for expected in (None, "class", "sequence", "activity", "usecase", "state", "component", "er"):
        analyse(f"@startuml\n{line}\n{line}\n@enduml", expected)
    assert time.thread_time() - started < 2.0


@pytest.mark.parametrize(
    "a,b",
    [
        ("OrderItem", "order item"),
        ("order_item", "Order Item"),
        ("ORDER ITEM", "orderItem"),
        ("Order-Item", "order.item"),
        ("HTTPServer", "http server"),
        ("userID", "user id"),
        ('"Order  Item"', "order item"),
    ],
)
def test_normalise_matches_spellings(a, b):
    assert normalise(a) == normalise(b)


def test_normalise_keeps_different_names_apart():
    assert normalise("Order") != normalise("Orders")
    assert normalise("OrderItem") != normalise("Order")
