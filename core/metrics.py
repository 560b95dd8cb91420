"""Score a model's PlantUML against the reference, aggregate scores, and judge them with the seed's lists.

Entities match by normalised name (`analyse.normalise`: case, spacing, underscores, CamelCase).
Relations match by their normalised (source, target) pair, one to one; the kind is not compared
(a model that writes `A --> B` where the reference has `A *-- B` still links the right pair). The
pair is direction-insensitive when either side calls the relation an association (a plain link
has no direction; `A --> B` and `B <-- A` are the same anyway). Duplicate pairs count once.

An entity is hallucinated when its name is neither in the reference nor in the prompt: the prompt
matches when it contains the normalised name, or every word of the name (plural-tolerant, so
"OrderItem" is found in "order items").

`score` records `diagram_type` (the expected type) with the metrics so `aggregate` can split by type.
"""

import operator
import re
from statistics import fmean

from core.analyse import Diagram, analyse, normalise
from core.config import QualityConfig
from core.render import SyntaxResult

MAX_FAILING = 5


def _prf(matched: int, predicted: int, expected: int) -> tuple[float, float, float]:
    """Precision, recall, F1; an empty side scores 1 only when the other is empty too."""
    precision = matched / predicted if predicted else float(expected == 0)
    recall = matched / expected if expected else float(predicted == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _pairs(diagram: Diagram) -> dict[tuple[str, str], bool]:
    """Normalised (source, target) -> whether some relation on it is an association."""
    pairs: dict[tuple[str, str], bool] = {}
    for rel in diagram.relations:
        pair = (normalise(rel.source), normalise(rel.target))
        pairs[pair] = pairs.get(pair, False) or rel.kind == "association"
    return pairs


def _matched_relations(output: Diagram, reference: Diagram) -> int:
    out, ref = _pairs(output), _pairs(reference)
    unused = dict(ref)
    matched = 0
    for (source, target), association in out.items():
        if (source, target) in unused:
            del unused[(source, target)]
            matched += 1
        elif (target, source) in unused and (association or unused[(target, source)]):
            del unused[(target, source)]
            matched += 1
    return matched


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", normalise(text))


def in_prompt(name: str, prompt: str) -> bool:
    """The prompt names this entity: the normalised name as whole words, or each of its words
    (singular or plural)."""
    name_words, prompt_words = _words(name), _words(prompt)
    if not name_words:
        return False
    if f" {' '.join(name_words)} " in f" {' '.join(prompt_words)} ":
        return True
    return {_stem(w) for w in name_words} <= {_stem(w) for w in prompt_words}


def score(output: str, reference: str, prompt: str, expected_type: str | None, *, syntax: SyntaxResult | None,
          renders: bool | None, truncated: bool, tokens: int, latency_s: float) -> dict:
    """Metrics of one output against its reference (syntax/renders come from core.render; None = not checked)."""
    ref = analyse(reference, expected_type)
    expected = expected_type or ref.type
    out = analyse(output, expected)
    out_names = {normalise(e.name): e.name for e in out.entities}
    ref_names = {normalise(e.name) for e in ref.entities}
    if "@start" not in output.lower():  # not a diagram (prose, code): it matches nothing, not even "no relations"
        entity = relation = (0.0, 0.0, 0.0)
    else:
        entity = _prf(len(out_names.keys() & ref_names), len(out_names), len(ref_names))
        relation = _prf(_matched_relations(out, ref), len(_pairs(out)), len(_pairs(ref)))
    hallucinated = [name for key, name in out_names.items() if key not in ref_names and not in_prompt(name, prompt)]
    return {
        "diagram_type": expected,
        "syntax_valid": syntax.valid if syntax is not None else None,
        "renders": renders,
        "type_match": out.type == expected,
        "entity_precision": entity[0], "entity_recall": entity[1], "entity_f1": entity[2],
        "relation_precision": relation[0], "relation_recall": relation[1], "relation_f1": relation[2],
        "hallucinated_entities": hallucinated,
        "complete": out.complete and not truncated,
        "tokens": tokens,
        "latency_s": latency_s,
    }


def row_score(row: dict) -> float:
    """One number per output for ranking (e.g. regressions between checkpoints): the mean of its
    measured quality signals, each in [0, 1]. "Invented no entity" counts only for an output that is
    a diagram (complete or valid): prose or code invents nothing and earns nothing for it."""
    signals = [row.get(key) for key in ("syntax_valid", "renders", "type_match", "complete", "entity_f1", "relation_f1")]
    if row.get("complete") or row.get("syntax_valid"):
        signals.append(not row.get("hallucinated_entities"))
    measured = [float(s) for s in signals if s is not None]
    return fmean(measured) if measured else 0.0


def _share(rows: list[dict], key: str) -> float | None:
    """Mean of a per-row value, skipping rows where it was not measured (None)."""
    values = [float(row[key]) for row in rows if row.get(key) is not None]
    return fmean(values) if values else None


def _summary(rows: list[dict]) -> dict:
    return {
        "n": len(rows),
        "syntax_valid_rate": _share(rows, "syntax_valid"),
        "render_rate": _share(rows, "renders"),
        "type_accuracy": _share(rows, "type_match"),
        "entity_f1": _share(rows, "entity_f1"),
        "relation_f1": _share(rows, "relation_f1"),
        "hallucination_rate": fmean(bool(row["hallucinated_entities"]) for row in rows) if rows else None,
        "complete_rate": _share(rows, "complete"),
    }


def aggregate(rows: list[dict]) -> dict:
    """Rates and mean F1s over `score` rows, overall and per diagram type. Unmeasured values are skipped."""
    types = sorted({row.get("diagram_type") or "unknown" for row in rows})
    per_type = {t: _summary([row for row in rows if (row.get("diagram_type") or "unknown") == t]) for t in types}
    return {**_summary(rows), "per_type": per_type}


# ---- the seed's good / bad lists --------------------------------------------------------------


def _invalid(row: dict) -> bool | None:
    """The output will not render: PlantUML rejected it (syntax or render); None when neither was checked."""
    checks = [row.get("syntax_valid"), row.get("renders")]
    if all(check is None for check in checks):
        return None
    return any(check is False for check in checks)


def _structured(row: dict) -> bool:
    """Complete, accepted by PlantUML (where checked), of the right type, with some entity found."""
    return (bool(row.get("complete")) and row.get("syntax_valid") is not False and row.get("renders") is not False
            and bool(row.get("type_match")) and row.get("entity_recall", 0) > 0)


def _item(item: str, which: str, value, threshold: float, passes, failing: list) -> dict:
    """One list item; `passes(value, threshold)` decides it (rounded, so 1 - 0.9 equals 0.1)."""
    if value is None:
        passed = None
    else:
        value, threshold = round(float(value), 6), round(float(threshold), 6)
        passed = passes(value, threshold)
    return {"item": item, "list": which, "passed": passed, "value": value, "threshold": threshold,
            "failing": failing[:MAX_FAILING]}


def verdict(summary: dict, loss: float | None, quality: QualityConfig, examples: list[dict]) -> dict:
    """The seed's good and bad lists for one evaluation.

    `summary` is `aggregate(examples)`; `examples` are the `score` rows (an "id" key names a row in
    `failing`, else its index). A bad item passes when the bad thing is absent. An item whose value
    was not measured (loss None, nothing syntax-checked) is unknown, passed None, and the overall
    "good" is then False: unknown is not a pass. `label` sums it up (good / bad when a bad-list item
    fails / not yet good) and `reasons` lists each item that did not pass."""
    ids = [ex.get("id", i) for i, ex in enumerate(examples)]

    def failing(test) -> list:
        return [ident for ident, ex in zip(ids, examples) if test(ex)]

    invalid = [flag for flag in map(_invalid, examples) if flag is not None]
    structured = fmean(_structured(ex) for ex in examples) if examples else None
    complete_rate, type_accuracy = summary.get("complete_rate"), summary.get("type_accuracy")
    items = [
        _item("Loss < 0.5", "good", loss, quality.good_loss, operator.lt, []),
        _item("Valid PlantUML", "good", summary.get("syntax_valid_rate"), quality.valid_rate, operator.ge,
              failing(lambda ex: ex.get("syntax_valid") is False)),
        _item("Logical and complete structure", "good", structured, quality.complete_rate, operator.ge,
              failing(lambda ex: not _structured(ex))),
        _item("Relevant entity names", "good", summary.get("entity_f1"), quality.entity_f1, operator.ge,
              failing(lambda ex: ex.get("entity_f1", 0) < quality.entity_f1)),
        _item("Accurate relationships", "good", summary.get("relation_f1"), quality.relation_f1, operator.ge,
              failing(lambda ex: ex.get("relation_f1", 0) < quality.relation_f1)),
        _item("Loss still > 1.0", "bad", loss, quality.bad_loss, operator.le, []),
        _item("Invalid syntax (won't render)", "bad", fmean(invalid) if invalid else None, 1 - quality.valid_rate,
              operator.le, failing(lambda ex: _invalid(ex) is True)),
        _item("Incomplete diagrams", "bad", None if complete_rate is None else 1 - complete_rate,
              1 - quality.complete_rate, operator.le, failing(lambda ex: not ex.get("complete"))),
        _item("Hallucinated entities", "bad", summary.get("hallucination_rate"), quality.hallucination_rate, operator.le,
              failing(lambda ex: bool(ex.get("hallucinated_entities")))),
        _item("Wrong diagram type", "bad", None if type_accuracy is None else 1 - type_accuracy,
              1 - quality.type_accuracy, operator.le, failing(lambda ex: not ex.get("type_match"))),
    ]
    good = all(item["passed"] is True for item in items)
    bad = any(item["passed"] is False for item in items if item["list"] == "bad")
    reasons = [_reason(item) for item in items if item["passed"] is not True]
    return {"items": items, "good": good, "label": "good" if good else "bad" if bad else "not yet good",
            "reasons": reasons}


def _reason(item: dict) -> str:
    if item["passed"] is None:
        return f"{item['item']}: unknown (not measured)"
    failing = f"; e.g. rows {', '.join(map(str, item['failing']))}" if item["failing"] else ""
    return f"{item['item']}: {item['value']:.3g} against {item['threshold']:.3g}{failing}"
