"""Score a model's PlantUML against the reference, strictly and per diagram type; aggregate the
scores with 95% intervals; judge them with the seed's good / bad lists.

The scores (each in [0, 1], F1 of precision and recall unless said otherwise):

- entity_f1: entities by normalised name (`analyse.normalise`: "OrderItem" == "order item").
  Activity actions match fuzzily: their content words (stop words dropped, plurals folded) overlap
  by at least SIMILAR (Jaccard), so "Validate the order" matches "Validate order"; one to one.
- relation_f1, per type:
  - class, component, use case, ER: relations typed and directed. `--|>` ≠ `..|>` ≠ `-->` ≠ `*--`
    ≠ `o--` ≠ `..>`; a plain association `-->` and an undirected link `--` are one kind. `A --> B`
    ≠ `B --> A`; either way round matches only when one of the two is an undirected link.
  - sequence: messages in order. The longest common subsequence of (from, to, label) messages, a
    label matching at SIMILAR; precision = kept / output messages, recall = kept / reference
    messages (the share of the reference's message order the output keeps).
  - activity: control-flow edges between matched actions.
  - state: transitions (from, to) with their event (label, at SIMILAR; both unlabelled match).
  Relations are matched one to one as written: a line repeated by a loop counts against precision.
- attribute_f1 (class, ER): members as (entity, member name).
- cardinality_f1 (class, ER): relations with multiplicities / crow's feet, both ends equal.
- branch_score (activity): min / max of the if/while/repeat/fork/switch blocks of output and reference.

A row whose reference has nothing of a kind (no relations, no members, ...) gets None for that
score and is left out of its mean (the mean's n says how many rows count). An output of the wrong
diagram type, prose, code or an empty answer scores 0 on every structure score the reference
has; the type miss is its own rate (type_accuracy). An output cut off mid-diagram scores what it
wrote, but is not complete and usually not valid PlantUML.

An entity is hallucinated when its name is neither in the reference nor in the prompt: the prompt
matches when it contains the normalised name, or every word of the name (plural-tolerant).

`aggregate` gives each rate and mean with its n and 95% interval (`core.evaluation.stats`), per diagram type,
and split by row origin ("generated" template rows vs "real" prose). `verdict` passes a list
item only when its interval clears the threshold, fails it when the interval lies on the wrong
side, and says "not enough rows to tell" when the interval holds the threshold.
"""

import operator
import re
from statistics import fmean
from typing import Any

from core.config import QualityConfig
from core.evaluation import stats
from core.evaluation.analyse import Diagram, Relation, analyse, normalise
from core.inference.render import SyntaxResult, syntax_check

MAX_FAILING = 5
SIMILAR = 0.5  # word overlap (Jaccard of content words) at which two actions or two labels match
STOP_WORDS = frozenset("a an the of to for and or in on at by with from into its it is are be this that their".split())

# aggregate keys: (row key, summary key, higher is better)
SCORES = (
    ("syntax_valid", "syntax_valid_rate", True),
    ("raw_syntax_valid", "raw_valid_rate", True),  # with repair: valid before it
    ("repaired", "repaired_rate", False),
    ("renders", "render_rate", True),
    ("type_match", "type_accuracy", True),
    ("entity_f1", "entity_f1", True),
    ("relation_f1", "relation_f1", True),
    ("attribute_f1", "attribute_f1", True),
    ("cardinality_f1", "cardinality_f1", True),
    ("branch_score", "branch_score", True),
    ("hallucinated", "hallucination_rate", False),
    ("complete", "complete_rate", True),
    ("looped", "looped_rate", False),
)
HIGHER_IS_BETTER = {key: higher for _, key, higher in SCORES}
STRUCTURE = ("entity_f1", "relation_f1", "attribute_f1", "cardinality_f1", "branch_score")
# how the summary keys are shown in tables: (summary key, heading)
SHOWN = (
    ("syntax_valid_rate", "valid"),
    ("raw_valid_rate", "valid before repair"),
    ("repaired_rate", "repaired"),
    ("render_rate", "renders"),
    ("type_accuracy", "right type"),
    ("entity_f1", "entity F1"),
    ("relation_f1", "relation F1"),
    ("attribute_f1", "attribute F1"),
    ("cardinality_f1", "cardinality F1"),
    ("branch_score", "branches"),
    ("hallucination_rate", "hallucinated"),
    ("complete_rate", "complete"),
    ("looped_rate", "looped"),
)


def _prf(matched: int, predicted: int, expected: int) -> tuple[float, float, float] | None:
    """Precision, recall, F1; None when the reference expects nothing (the row is left out)."""
    if not expected:
        return None
    precision = matched / predicted if predicted else 0.0
    recall = matched / expected
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", normalise(text))


def similarity(a: str, b: str) -> float:
    """Jaccard overlap of the content words of two texts (stop words dropped, plurals folded);
    two texts without content words are equal (1.0)."""
    wa = {_stem(w) for w in _words(a) if w not in STOP_WORDS}
    wb = {_stem(w) for w in _words(b) if w not in STOP_WORDS}
    if not wa and not wb:
        return 1.0
    return len(wa & wb) / len(wa | wb)


def in_prompt(name: str, prompt: str) -> bool:
    """The prompt names this entity: the normalised name as whole words, or each of its words
    (singular or plural)."""
    name_words, prompt_words = _words(name), _words(prompt)
    if not name_words:
        return False
    if f" {' '.join(name_words)} " in f" {' '.join(prompt_words)} ":
        return True
    return {_stem(w) for w in name_words} <= {_stem(w) for w in prompt_words}


# ---- matching ---------------------------------------------------------------------------------


def _match_entities(out: Diagram, ref: Diagram, fuzzy: bool) -> dict[str, str]:
    """Output entity name -> the reference entity it matches, one to one. Exact normalised names
    first; with `fuzzy`, remaining actions pair by the highest similarity of at least SIMILAR."""
    ref_by_key = {normalise(e.name): e for e in ref.entities}
    mapping, taken = {}, set()
    for e in out.entities:
        key = normalise(e.name)
        if key in ref_by_key and key not in taken:
            mapping[e.name] = ref_by_key[key].name
            taken.add(key)
    if fuzzy:
        left = [e for e in out.entities if e.name not in mapping and e.kind == "action"]
        right = [e for k, e in ref_by_key.items() if k not in taken and e.kind == "action"]
        pairs = sorted(
            ((similarity(a.name, b.name), i, j) for i, a in enumerate(left) for j, b in enumerate(right)),
            key=lambda p: (-p[0], p[1], p[2]),
        )
        used_left, used_right = set(), set()
        for sim, i, j in pairs:
            if sim < SIMILAR:
                break
            if i not in used_left and j not in used_right:
                used_left.add(i)
                used_right.add(j)
                mapping[left[i].name] = right[j].name
    return mapping


def _same_relation(o: Relation, r: Relation, mapping: dict[str, str], diagram_type: str) -> bool:
    kinds = {o.kind, r.kind}
    if o.kind != r.kind and not kinds <= {"association", "link"}:
        return False
    source, target = mapping.get(o.source, o.source), mapping.get(o.target, o.target)
    ends = (normalise(source), normalise(target))
    wanted = (normalise(r.source), normalise(r.target))
    if ends != wanted and not ("link" in kinds and ends == wanted[::-1]):
        return False
    if diagram_type == "state":
        return similarity(o.label, r.label) >= SIMILAR
    return True


def _matched(out: list[Relation], ref: list[Relation], same) -> int:
    """Relations matched one to one (each output relation to the first free reference relation it equals)."""
    free = list(range(len(ref)))
    matched = 0
    for o in out:
        hit = next((j for j in free if same(o, ref[j])), None)
        if hit is not None:
            free.remove(hit)
            matched += 1
    return matched


def _lcs(out: list[Relation], ref: list[Relation], same) -> int:
    """Length of the longest common subsequence of two message lists under `same`."""
    previous = [0] * (len(ref) + 1)
    for o in out:
        current = [0]
        for j, r in enumerate(ref):
            current.append(previous[j] + 1 if same(o, r) else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def _same_message(o: Relation, r: Relation) -> bool:
    return (normalise(o.source), normalise(o.target)) == (normalise(r.source), normalise(r.target)) and similarity(
        o.label, r.label
    ) >= SIMILAR


def _cardinalities(diagram: Diagram, mapping: dict[str, str] | None = None) -> list[tuple]:
    """(entity, entity, end, end) of each relation with a multiplicity, the names in sorted order."""
    found = []
    for r in diagram.relations:
        if any(r.ends):
            a, b = (
                normalise((mapping or {}).get(r.source, r.source)),
                normalise((mapping or {}).get(r.target, r.target)),
            )
            found.append((a, b, *r.ends) if a <= b else (b, a, *r.ends[::-1]))
    return found


def _multiset_prf(out: list, ref: list) -> tuple[float, float, float] | None:
    remaining = list(ref)
    matched = 0
    for item in out:
        if item in remaining:
            remaining.remove(item)
            matched += 1
    return _prf(matched, len(out), len(ref))


def _structure(out: Diagram, ref: Diagram, diagram_type: str) -> dict:
    """Every structure score of an output of the right type against its reference (None: nothing to score)."""
    fuzzy = diagram_type == "activity"
    mapping = _match_entities(out, ref, fuzzy)
    entity = _prf(len(mapping), len(out.entities), len(ref.entities))
    if diagram_type == "sequence":
        relation = _prf(_lcs(out.relations, ref.relations, _same_message), len(out.relations), len(ref.relations))
    else:
        same = lambda o, r: _same_relation(o, r, mapping, diagram_type)  # noqa: E731
        relation = _prf(_matched(out.relations, ref.relations, same), len(out.relations), len(ref.relations))
    scores = {
        "entity": entity,
        "relation": relation,
        "attribute_f1": None,
        "cardinality_f1": None,
        "branch_score": None,
    }
    if diagram_type in ("class", "er"):
        attributes = _multiset_prf(
            [(normalise(mapping.get(e, e)), m) for e, m in out.attributes],
            [(normalise(e), m) for e, m in ref.attributes],
        )
        cardinality = _multiset_prf(_cardinalities(out, mapping), _cardinalities(ref))
        scores["attribute_f1"] = attributes and attributes[2]
        scores["cardinality_f1"] = cardinality and cardinality[2]
    if diagram_type == "activity" and ref.branches:
        scores["branch_score"] = min(out.branches, ref.branches) / max(out.branches, ref.branches)
    return scores | {"mapping": mapping}


def score(
    output: str,
    reference: str,
    prompt: str,
    expected_type: str | None,
    *,
    syntax: SyntaxResult | None,
    renders: bool | None,
    truncated: bool,
    tokens: int,
    latency_s: float,
    looped: bool = False,
    origin: str | None = None,
) -> dict:
    """Metrics of one output against its reference (syntax/renders come from core.inference.render; None = not checked).

    `looped`: generation stopped it for repeating itself; `origin`: the row's "generated" / "real"."""
    ref = analyse(reference, expected_type)
    expected = expected_type or ref.type
    out = analyse(output, expected)
    right_type = out.type == expected and "@start" in output.lower()
    if right_type:
        found = _structure(out, ref, expected)
    else:  # wrong type, prose, code, empty: no structure credit where the reference has structure
        empty = Diagram(expected)
        found = _structure(empty, ref, expected) | {"mapping": {}}
    entity, relation = found["entity"], found["relation"]
    known = {normalise(e.name) for e in ref.entities}
    hallucinated = [
        e.name
        for e in out.entities
        if e.name not in found["mapping"] and normalise(e.name) not in known and not in_prompt(e.name, prompt)
    ]
    return {
        "diagram_type": expected,
        "origin": origin,
        "syntax_valid": syntax.valid if syntax is not None else None,
        "renders": renders,
        "type_match": out.type == expected,
        "output_type": out.type,
        "entity_precision": entity and entity[0],
        "entity_recall": entity and entity[1],
        "entity_f1": entity and entity[2],
        "relation_precision": relation and relation[0],
        "relation_recall": relation and relation[1],
        "relation_f1": relation and relation[2],
        "attribute_f1": found["attribute_f1"],
        "cardinality_f1": found["cardinality_f1"],
        "branch_score": found["branch_score"],
        "hallucinated_entities": hallucinated,
        "empty": "@start" in output.lower() and not out.entities and not out.relations,  # e.g. a bare @startuml/@enduml
        "complete": out.complete and not truncated and not looped,
        "looped": looped,
        "tokens": tokens,
        "latency_s": latency_s,
    }


# what relation F1 counts, per diagram type (how `umlstudio score` names it)
RELATIONS = {"sequence": "messages in order", "activity": "control-flow edges", "state": "transitions with events"}


def score_diagram(output: str, reference: str, diagram_type: str | None = None) -> dict:
    """`umlstudio score`: one diagram against another, as an evaluation scores an output against its
    reference (the same `score`, with PlantUML's verdict on the output). The type is `diagram_type`,
    else the reference's; the prompt is unknown, so an entity counts as hallucinated when the
    reference does not have it. The reference must hold a diagram (ValueError otherwise)."""
    wanted = analyse(reference, diagram_type).type
    if wanted == "unknown":
        raise ValueError("no PlantUML diagram in the reference")
    return score(
        output,
        reference,
        "",
        diagram_type or wanted,
        syntax=syntax_check([output])[0],
        renders=None,
        truncated=False,
        tokens=0,
        latency_s=0.0,
    )


def row_score(row: dict) -> float:
    """One number per output for ranking (e.g. regressions between checkpoints): a quarter for the
    form (valid, renders, complete, right type: their mean) and three quarters for the structure
    (the mean of its measured structure scores). A wrong type or prose earns no structure credit;
    a diagram with nothing in it (no entity, no relation) scores 0."""
    if row.get("empty"):
        return 0.0
    form = [float(row[k]) for k in ("syntax_valid", "renders", "complete", "type_match") if row.get(k) is not None]
    structure = [float(row[k]) for k in STRUCTURE if row.get(k) is not None]
    parts = [(weight, fmean(values)) for weight, values in ((0.25, form), (0.75, structure)) if values]
    return sum(w * v for w, v in parts) / sum(w for w, _ in parts) if parts else 0.0


# ---- aggregates -------------------------------------------------------------------------------


def _value(row: dict, key: str):
    if key == "hallucinated":
        return bool(row.get("hallucinated_entities")) if "hallucinated_entities" in row else None
    return row.get(key)


def summarise(rows: list[dict]) -> dict:
    """Each rate and mean over `score` rows: the value (None when nothing was measured) and, under
    "intervals", its n and 95% interval."""
    summary: dict = {"n": len(rows)}
    intervals = {}
    for row_key, key, _ in SCORES:
        found = stats.estimate([_value(row, row_key) for row in rows])
        summary[key] = found["value"]
        intervals[key] = {"n": found["n"], "low": found["low"], "high": found["high"]}
    return summary | {"intervals": intervals}


def _origins(rows: list[dict]) -> dict:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row.get("origin") or "unknown", []).append(row)
    return {} if set(groups) <= {"unknown"} else {origin: summarise(group) for origin, group in sorted(groups.items())}


def aggregate(rows: list[dict]) -> dict:
    """`summarise` overall, per diagram type ("per_type") and per row origin ("by_origin": generated
    vs real prose, also inside each type; left out when no row says its origin)."""
    types = sorted({row.get("diagram_type") or "unknown" for row in rows})
    per_type = {}
    for t in types:
        group = [row for row in rows if (row.get("diagram_type") or "unknown") == t]
        per_type[t] = summarise(group) | {"by_origin": _origins(group)}
    return summarise(rows) | {"per_type": per_type, "by_origin": _origins(rows)}


def paired(first: list[dict], second: list[dict]) -> dict:
    """Per summary key, the sign test of the second checkpoint against the first on the same prompts
    (`score` rows in the same order): delta, n, p and "better" / "worse" / "within noise"."""
    return {
        key: stats.sign_test([_value(r, row_key) for r in first], [_value(r, row_key) for r in second], higher)
        for row_key, key, higher in SCORES
    }


def judge_types(per_type: dict, quality: QualityConfig) -> dict:
    """Which diagram types are weak, which strong, and which have too few rows to tell, from the
    intervals: a type is weak when some metric's whole interval misses its threshold, strong when
    every measured metric's whole interval clears it, else "not enough rows to tell"."""
    thresholds = {
        "syntax_valid_rate": quality.valid_rate,
        "type_accuracy": quality.type_accuracy,
        "entity_f1": quality.entity_f1,
        "relation_f1": quality.relation_f1,
        "complete_rate": quality.complete_rate,
        "hallucination_rate": quality.hallucination_rate,
    }
    result: dict[str, Any] = {"weak": [], "strong": [], "unclear": [], "failing": {}}
    for name, summary in sorted(per_type.items()):
        outcomes = {
            key: _decide(
                summary.get(key),
                summary.get("intervals", {}).get(key),
                threshold,
                operator.ge if HIGHER_IS_BETTER[key] else operator.le,
            )
            for key, threshold in thresholds.items()
        }
        failing = [key for key, passed in outcomes.items() if passed is False]
        result["failing"][name] = failing
        measured = [passed for passed in outcomes.values() if passed != "unmeasured"]
        if failing:
            result["weak"].append(name)
        elif measured and all(passed is True for passed in measured):
            result["strong"].append(name)
        else:
            result["unclear"].append(name)
    return result


def _decide(value, interval: dict | None, threshold: float, passes):
    """True / False when the whole interval is on one side of the threshold, None when it holds it;
    "unmeasured" without a value."""
    if value is None:
        return "unmeasured"
    low, high = (interval["low"], interval["high"]) if interval else (value, value)
    low, high, threshold = round(low, 6), round(high, 6), round(threshold, 6)
    worst, best = (low, high) if passes is operator.ge else (high, low)
    if passes(worst, threshold):
        return True
    if not passes(best, threshold):
        return False
    return None


def groups(summary: dict) -> dict[str, dict]:
    """The summary of all rows, then of each row origin ("generated", "real") where the rows say it."""
    return {"all": summary, **summary.get("by_origin", {})}


def estimate_text(summary: dict, key: str) -> str:
    """'0.731 (0.64–0.81, n 100)': a summary value with its 95% interval and n; '-' when not measured."""
    value = summary.get(key)
    if value is None:
        return "-"
    interval = summary["intervals"][key]
    return f"{value:.3f} ({interval['low']:.2f}–{interval['high']:.2f}, n {interval['n']})"


def delta_text(test: dict) -> str:
    """'+0.120 better (p 0.003, 37 of 40 prompts differ)' for one paired test."""
    if test["delta"] is None:
        return "-"
    return (
        f"{test['delta']:+.3f} {test['verdict']} (p {test['p']:.3g}, {test['wins'] + test['losses']} of "
        f"{test['n']} prompts differ)"
    )


# ---- the seed's good / bad lists --------------------------------------------------------------


def _invalid(row: dict) -> bool | None:
    """The output will not render: PlantUML rejected it (syntax or render); None when neither was checked."""
    checks = [row.get("syntax_valid"), row.get("renders")]
    if all(check is None for check in checks):
        return None
    return any(check is False for check in checks)


def _structured(row: dict) -> bool:
    """Complete, accepted by PlantUML (where checked), of the right type, with some entity found."""
    return (
        bool(row.get("complete"))
        and row.get("syntax_valid") is not False
        and row.get("renders") is not False
        and bool(row.get("type_match"))
        and (row.get("entity_recall") or 0) > 0
    )


def _item(item: str, which: str, found: dict, threshold: float, passes, failing: list) -> dict:
    """One list item from an estimate {"value", "n", "low", "high"} (low/high None: a single number
    such as the loss, judged as it is)."""
    value = found["value"]
    if value is None:
        passed = None
    elif found.get("low") is None:
        passed = passes(round(float(value), 6), round(float(threshold), 6))
    else:
        passed = _decide(value, found, threshold, passes)
    return {
        "item": item,
        "list": which,
        "passed": passed,
        "value": value,
        "threshold": threshold,
        "n": found.get("n"),
        "low": found.get("low"),
        "high": found.get("high"),
        "failing": failing[:MAX_FAILING],
        "failing_count": len(failing),
    }


def _estimate(summary: dict, key: str, flip: bool = False) -> dict:
    """A summary value with its interval; `flip`: 1 - value (the bad-list side of a rate)."""
    value, interval = summary.get(key), (summary.get("intervals") or {}).get(key) or {}
    if value is None:
        return {"value": None}
    if not flip or not interval:
        return {"value": 1 - value if flip else value, **interval}
    return {"value": 1 - value, "n": interval.get("n"), "low": 1 - interval["high"], "high": 1 - interval["low"]}


def verdict(summary: dict, loss: float | None, quality: QualityConfig, examples: list[dict]) -> dict:
    """The seed's good and bad lists for one evaluation.

    `summary` is `aggregate(examples)`; `examples` are the `score` rows (an "id" key names a row in
    `failing`, else its index). A bad item passes when the bad thing is absent. An item passes only
    when its 95% interval clears the threshold and fails only when the interval misses it; an
    interval holding the threshold leaves it undecided (passed None, "not enough rows to tell"), as
    is an item not measured (loss None, nothing syntax-checked). `good` needs every item passed;
    `label` sums it up (good / bad when a bad-list item fails / not yet good) and `reasons` lists
    each item that did not pass."""
    ids = [ex.get("id", i) for i, ex in enumerate(examples)]

    def failing(test) -> list:
        return [ident for ident, ex in zip(ids, examples) if test(ex)]

    structured = stats.estimate([_structured(ex) for ex in examples])
    invalid = stats.estimate([_invalid(ex) for ex in examples])
    loss_value = {"value": loss}
    items = [
        _item("Loss < 0.5", "good", loss_value, quality.good_loss, operator.lt, []),
        _item(
            "Valid PlantUML",
            "good",
            _estimate(summary, "syntax_valid_rate"),
            quality.valid_rate,
            operator.ge,
            failing(lambda ex: ex.get("syntax_valid") is False),
        ),
        _item(
            "Logical and complete structure",
            "good",
            structured,
            quality.complete_rate,
            operator.ge,
            failing(lambda ex: not _structured(ex)),
        ),
        _item(
            "Relevant entity names",
            "good",
            _estimate(summary, "entity_f1"),
            quality.entity_f1,
            operator.ge,
            failing(lambda ex: ex.get("entity_f1") is not None and ex["entity_f1"] < quality.entity_f1),
        ),
        _item(
            "Accurate relationships",
            "good",
            _estimate(summary, "relation_f1"),
            quality.relation_f1,
            operator.ge,
            failing(lambda ex: ex.get("relation_f1") is not None and ex["relation_f1"] < quality.relation_f1),
        ),
        _item("Loss still > 1.0", "bad", loss_value, quality.bad_loss, operator.le, []),
        _item(
            "Invalid syntax (won't render)",
            "bad",
            invalid,
            1 - quality.valid_rate,
            operator.le,
            failing(lambda ex: _invalid(ex) is True),
        ),
        _item(
            "Incomplete diagrams",
            "bad",
            _estimate(summary, "complete_rate", flip=True),
            1 - quality.complete_rate,
            operator.le,
            failing(lambda ex: not ex.get("complete")),
        ),
        _item(
            "Hallucinated entities",
            "bad",
            _estimate(summary, "hallucination_rate"),
            quality.hallucination_rate,
            operator.le,
            failing(lambda ex: bool(ex.get("hallucinated_entities"))),
        ),
        _item(
            "Wrong diagram type",
            "bad",
            _estimate(summary, "type_accuracy", flip=True),
            1 - quality.type_accuracy,
            operator.le,
            failing(lambda ex: not ex.get("type_match")),
        ),
    ]
    good = all(item["passed"] is True for item in items)
    bad = any(item["passed"] is False for item in items if item["list"] == "bad")
    reasons = [_reason(item) for item in items if item["passed"] is not True]
    return {
        "items": items,
        "good": good,
        "label": "good" if good else "bad" if bad else "not yet good",
        "reasons": reasons,
    }


def describe(item: dict) -> str:
    """An item's number for people: value, 95% interval and n where it has them."""
    if item["value"] is None:
        return "not measured"
    if item.get("low") is None:
        return f"{item['value']:.3g}"
    return f"{item['value']:.3g} (95% {item['low']:.2f}–{item['high']:.2f}, n {item['n']})"


def _reason(item: dict) -> str:
    if item["value"] is None:
        return f"{item['item']}: unknown (not measured)"
    if item["passed"] is None:
        return f"{item['item']}: not enough rows to tell — {describe(item)} holds the threshold {item['threshold']:.3g}"
    failing = f"; e.g. rows {', '.join(map(str, item['failing']))}" if item["failing"] else ""
    return f"{item['item']}: {describe(item)} against {item['threshold']:.3g}{failing}"
