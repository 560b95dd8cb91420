"""The quality checklist in words: each item of `metrics.verdict` as one plain sentence counted on the
evaluation's rows, the numbers (value, 95% interval, n, threshold) apart for an expander.

Every count comes from the same rows the verdict judged (`examples`: the `metrics.score` rows), so
"Valid PlantUML" and "Invalid syntax" count the same outputs, and "Logical and complete structure"
says which of the other items' failures keep its rows out.
"""

from pathlib import Path

from core import paths


def _count(examples: list[dict], test) -> int:
    return sum(1 for row in examples if test(row))


def _structure_gaps(examples: list[dict]) -> list[str]:
    """Why rows are not a logical and complete structure, each row counted once, by its first gap."""
    reasons = (
        ("cut off or unclosed", lambda r: not r.get("complete")),
        ("rejected by PlantUML", lambda r: r.get("syntax_valid") is False or r.get("renders") is False),
        ("of another diagram type", lambda r: not r.get("type_match")),
        ("naming none of the expected entities", lambda r: not (r.get("entity_recall") or 0) > 0),
    )
    counts = dict.fromkeys([name for name, _ in reasons], 0)
    for row in examples:
        for name, test in reasons:
            if test(row):
                counts[name] += 1
                break
    return [f"{n} {name}" for name, n in counts.items() if n]


def _share(item: dict) -> str:
    return f"{item['value']:.0%}"


def sentence(item: dict, examples: list[dict]) -> str:
    """One plain sentence for a checklist item, its counts taken from `examples`."""
    n = len(examples)
    name, value = item["item"], item["value"]
    if name.startswith("Loss"):
        if value is None:
            return "No validation loss was logged for these weights, so the loss cannot be judged."
        side = "under" if value < item["threshold"] else "not under"
        if name.startswith("Loss still"):
            side = "still above" if value > item["threshold"] else "no longer above"
        return f"The validation loss is {value:.3f}, {side} {item['threshold']:g}."
    failing = item.get("failing_count", len(item["failing"]))
    if name == "Valid PlantUML":
        unchecked = _count(examples, lambda r: r.get("syntax_valid") is None)
        if unchecked == n:
            return "PlantUML checked none of the outputs."
        return f"PlantUML accepts {n - failing - unchecked} of {n} outputs; it rejects {failing}."
    if name == "Invalid syntax (won't render)":
        return f"{failing} of {n} outputs will not render (PlantUML rejects them or cannot draw them)."
    if name == "Logical and complete structure":
        good = n - failing
        gaps = _structure_gaps(examples)
        why = f": {', '.join(gaps)}" if gaps else ""
        return (
            f"{good} of {n} outputs are a whole diagram of the right type that PlantUML accepts and that "
            f"names at least one expected entity; {failing} are not{why}."
        )
    if name == "Incomplete diagrams":
        return f"{failing} of {n} outputs are cut off, unclosed or stopped for repeating themselves."
    if name == "Hallucinated entities":
        return f"{failing} of {n} outputs invent names that neither the requirement nor the reference has."
    if name == "Wrong diagram type":
        return f"{failing} of {n} outputs are another kind of diagram than the one asked for."
    if name in ("Relevant entity names", "Accurate relationships"):
        what = "names of things" if name == "Relevant entity names" else "relationships"
        if value is None:
            return f"None of the references has {what} to compare with."
        return (
            f"On average the outputs get {_share(item)} of the expected {what} right (F1); {failing} of "
            f"{item['n']} rows score under {item['threshold']:.0%}."
        )
    return f"{name}: {failing} of {n} outputs fail it."


def numbers(item: dict) -> str:
    """The item's value with its 95% interval, n and threshold, and how it was decided."""
    if item["value"] is None:
        return "not measured"
    if item["low"] is None:
        return f"{item['value']:.4f} against the threshold {item['threshold']:g}"
    told = (
        "passes: the whole interval clears the threshold"
        if item["passed"]
        else "fails: the whole interval misses the threshold"
        if item["passed"] is False
        else "not enough rows to tell: the interval holds the threshold"
    )
    return (
        f"{item['value']:.0%} (95% interval {item['low']:.0%}–{item['high']:.0%}, n {item['n']}; "
        f"threshold {item['threshold']:.0%}) — {told}"
    )


def verdict_sentence(judged: dict) -> str:
    """The verdict in one sentence."""
    items = judged["items"]
    failed = [i["item"] for i in items if i["passed"] is False]
    unsure = [i["item"] for i in items if i["passed"] is None]
    if judged["good"]:
        return "Good: every item of the good list holds and none of the bad list."
    parts = []
    if failed:
        parts.append(f"{len(failed)} item{'s' if len(failed) > 1 else ''} fail ({', '.join(failed)})")
    if unsure:
        parts.append(f"{len(unsure)} cannot be told yet ({', '.join(unsure)})")
    label = "Bad" if judged["label"] == "bad" else "Not yet good"
    return f"{label}: {'; '.join(parts)}."


def evaluation_words(evaluation) -> str:
    """Which rows an evaluation (store.evaluations.Evaluation) judged, in words: how many, of which split of
    which dataset, how they were sampled, and when, e.g. "20 test rows of data/default (a seeded sample:
    every diagram type in turn, seed 0), 2026-12-07 10:30 (UTC)"."""
    summary = evaluation.summary
    split = summary.get("split") or (evaluation.settings or {}).get("split") or "test"
    sample = summary.get("sample") or {}
    how = f" (a seeded sample: every diagram type in turn, seed {sample['seed']})" if "seed" in sample else ""
    dataset = Path(evaluation.dataset)
    shown = dataset.relative_to(paths.ROOT) if dataset.is_relative_to(paths.ROOT) else dataset  # data/default
    return f"{evaluation.n} {split} rows of {shown}{how}, {evaluation.created_at:%Y-%m-%d %H:%M} (UTC)"
