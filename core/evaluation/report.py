"""The compare report: one self-contained HTML file (no scripts, no external links).

At the top the aggregate metrics of every checkpoint with their 95% intervals and each delta against
the first one with its sign-test verdict (better / worse / within noise), for all rows and for real
prose and generated rows apart, then each checkpoint's verdict, then prompt by prompt the reference and every
checkpoint's diagram side by side, largest regression first. Diagrams are embedded as
`<img src="data:image/svg+xml;base64,...">`
(an SVG inside <img> cannot run script or touch the page); every piece of text is HTML-escaped.
"""

import base64
import html
from pathlib import Path

from core.evaluation.metrics import SHOWN, delta_text, estimate_text, groups
from core.inference.render import render

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
.better { color: #17692c; font-weight: 600; } .worse { color: #b3261e; font-weight: 600; } .noise { color: #666; }
.row { border: 1px solid #ddd; border-radius: 6px; margin: 1rem 0; padding: .75rem; }
.cells { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: .75rem; }
.cell { border: 1px solid #eee; padding: .5rem; overflow: auto; }
.cell img { max-width: 100%; background: #fff; }
.error { color: #b3261e; } pre { white-space: pre-wrap; font-size: .8rem; background: #f6f6f6; padding: .4rem; }
.muted { color: #666; font-size: .85rem; }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else _e(value)


def _delta(value: float | None, higher_is_better: bool) -> str:
    if value is None:
        return "-"
    if abs(value) < 1e-12:
        return "±0"
    good = (value > 0) == higher_is_better
    return f'<span class="{"better" if good else "worse"}">{value:+.3f}</span>'


def diagram_html(source: str, valid: bool = True) -> str:
    """A rendered diagram as an <img> with an SVG data URI, or PlantUML's error; the source below.

    `valid=False` (the syntax check rejected it) shows the error even where PlantUML draws a picture."""
    result = render(source, "svg")
    if result.ok and valid:
        picture = f'<img alt="diagram" src="data:image/svg+xml;base64,{base64.b64encode(result.data).decode("ascii")}">'
    else:
        where = f"line {result.error_line}: " if result.error_line else ""
        message = result.error_message or "PlantUML finds no diagram in it"
        picture = f'<p class="error">not valid PlantUML — {_e(where)}{_e(message)}</p>'
    return f"{picture}<details><summary>source</summary><pre>{_e(source)}</pre></details>"


def _verdict_html(test: dict) -> str:
    css = {"better": "better", "worse": "worse"}.get(test["verdict"], "noise")
    return f'<span class="{css}">{_e(delta_text(test))}</span>'


def _aggregate_table(result: dict) -> str:
    names = result["checkpoints"]
    head = "".join(f"<th>{_e(n)}</th>" for n in names) + "".join(f"<th>Δ {_e(n)}</th>" for n in names[1:])
    lines = []
    for group in groups(result["summaries"][0]):
        summaries = [groups(s).get(group) for s in result["summaries"]]
        lines.append(f"<tr><th>{_e(group)} rows ({summaries[0]['n']})</th>{head}</tr>")
        for key, heading in SHOWN:
            if summaries[0].get(key) is None:
                continue
            values = "".join(f"<td>{_e(estimate_text(s, key)) if s else '-'}</td>" for s in summaries)
            deltas = "".join(f"<td>{_verdict_html(t[group][key])}</td>" for t in result["tests"])
            lines.append(f"<tr><td>{_e(heading)}</td>{values}{deltas}</tr>")
    return "<table>" + "".join(lines) + "</table>"


def _verdicts(result: dict) -> str:
    items = []
    for name, summary in zip(result["checkpoints"], result["summaries"]):
        verdict = summary.get("verdict") or {}
        lines = "".join(f"<li>{_e(line)}</li>" for line in verdict.get("reasons", []))
        items.append(f"<li><b>{_e(name)}</b>: {_e(verdict.get('label', ''))}<ul>{lines}</ul></li>")
    return "<ul>" + "".join(items) + "</ul>"


def _row_html(row: dict, names: list[str]) -> str:
    cells = [
        f'<div class="cell"><div><b>reference</b> <span class="muted">({_e(row["diagram_type"])})</span></div>'
        f"{diagram_html(row['reference'])}</div>"
    ]
    for name, out in zip(names, row["outputs"]):
        m = out["metrics"]
        facts = f"score {out['score']:.3f} · {out['tokens']} tokens · {out['latency_s']:.2f} s" + (
            " · cut off" if out["truncated"] else ""
        )
        detail = ", ".join(
            f"{k} {_num(m.get(k))}"
            for k in (
                "syntax_valid",
                "renders",
                "type_match",
                "complete",
                "entity_f1",
                "relation_f1",
                "attribute_f1",
                "cardinality_f1",
                "branch_score",
            )
            if m.get(k) is not None
        )
        if m["hallucinated_entities"]:
            detail += "; invented: " + ", ".join(m["hallucinated_entities"])
        cells.append(
            f'<div class="cell"><b>{_e(name)}</b><div class="muted">{_e(facts)}<br>{_e(detail)}</div>'
            f"{diagram_html(out['output'], m['syntax_valid'] is not False)}</div>"
        )
    origin = f" · {_e(row['origin'])}" if row.get("origin") else ""
    gain = f" · largest gain {_delta(row['gain'], True)}" if "gain" in row else ""
    return (
        f'<div class="row"><div>score change: largest drop {_delta(row["delta"], True)}{gain} · '
        f'<span class="muted">prompt {row["index"] + 1}{origin}</span></div>'
        f'<p>{_e(row["prompt"])}</p><div class="cells">{"".join(cells)}</div></div>'
    )


def compare_html(result: dict) -> str:
    """The whole report for a `core.evaluation.evaluate.compare` result."""
    names = result["checkpoints"]
    title = "Compare: " + " vs ".join(names)
    rows = "".join(_row_html(row, names) for row in result["rows"])
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f'<p class="muted">dataset {_e(result["dataset"])} ({_e(result["split"])}), {result["n"]} prompts; '
        f"greedy decoding, max_new_tokens {_e(result['settings']['max_new_tokens'])}; Δ is against {_e(names[0])}; "
        f"each value: mean (95% interval, n rows measured); each Δ: sign test on the same prompts, "
        f"better / worse at p &lt; 0.05, else within noise</p>"
        f"<h2>Aggregate</h2>{_aggregate_table(result)}"
        f"<h2>Verdicts</h2>{_verdicts(result)}"
        f"<h2>Prompt by prompt (largest regression first)</h2>{rows}"
        "</body></html>"
    )


def write_compare(result: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(compare_html(result), encoding="utf-8")
    return path
