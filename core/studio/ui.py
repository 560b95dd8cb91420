"""What the studio's pages share: the pass / fail marks and "show the diagram, or PlantUML's error".

No streamlit import here: a page passes the container to draw in (`st`, a column, an expander), so
every page file still runs alone under AppTest and core stays importable without the studio.
"""

import os
import re

import plantuml

from core import jobs
from core.errors import UserError
from core.inference import render

# Metric and summary names (as stored) in words, for tables, headings and the quality items: one list.
METRIC_WORDS = {
    "n": "rows",
    "failing": "below the threshold",
    "loss": "training loss",
    "eval_loss": "validation loss",
    "learning_rate": "learning rate",
    "tokens_per_s": "tokens per second",
    "valid_rate": "valid PlantUML",
    "syntax_valid_rate": "valid PlantUML",
    "raw_valid_rate": "valid before repair",
    "repaired_rate": "repaired",
    "render_rate": "renders",
    "type_accuracy": "right diagram type",
    "entity_f1": "expected names found (entity F1)",
    "relation_f1": "expected relations found (relation F1)",
    "attribute_f1": "expected members found (attribute F1)",
    "cardinality_f1": "multiplicities right (cardinality F1)",
    "branch_score": "branches like the reference",
    "hallucination_rate": "invents names",
    "complete_rate": "whole diagram",
    "looped_rate": "looped (stopped for repeating itself)",
}
# what Cancel on an evaluation keeps (the quality and pre-continue pages)
EVALUATION_CANCEL = "stops the evaluation; the outputs made so far stay stored and are reused when you evaluate again"
# material icons: no emoji font needed; None is "not judged"
MARK = {True: ":green[:material/check_circle:]", False: ":red[:material/cancel:]", None: ":gray[:material/help:]"}
# Where "open in a PlantUML server" links point (UMLSTUDIO_PLANTUML_SERVER moves it, e.g. to a server of your
# own); the studio only writes the link, the browser opens it when the user clicks.
PLANTUML_SERVER = "https://www.plantuml.com/plantuml"
SERVER_ENV = "UMLSTUDIO_PLANTUML_SERVER"


def plantuml_server() -> str:
    """The PlantUML server the links open (its base address, without a trailing slash); UserError (one line)
    for a setting that is not an http(s) address."""
    chosen = os.environ.get(SERVER_ENV, "").strip()
    if chosen and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", chosen):
        raise UserError(
            f"{SERVER_ENV}={chosen!r} is not a server address — set it to the http(s) address a PlantUML server "
            f"answers on (e.g. {PLANTUML_SERVER}), or unset it for that one"
        )
    return (chosen or PLANTUML_SERVER).rstrip("/")


def server_link(source: str) -> str:
    """The address that opens `source` in the PlantUML server's editor: `<server>/uml/<text>`, the text in
    PlantUML's encoding (deflate, then a base64 of its own alphabet; the `plantuml` package's). Base64's
    `=` padding becomes `0`, the zero digit the documented encoding pads with."""
    return f"{plantuml_server()}/uml/{plantuml.deflate_and_encode(source).replace('=', '0')}"


def open_in_server(where, source: str) -> None:
    """A link under a diagram that opens its source in the PlantUML server (in a new tab), or the setting's
    error. A Markdown link, not st.link_button: two diagrams with the same source need no keys."""
    try:
        link = server_link(source)
    except UserError as exc:
        where.caption(str(exc))
        return
    where.markdown(f"[:material/open_in_new: Open in a PlantUML server]({link})", help=plantuml_server())


def show_diagram(where, source: str, caption: str = "") -> bool:
    """Render PlantUML into `where` as an image, or say why not: no PlantUML in the text at all, or the
    line PlantUML rejects, numbered and quoted; under it, a link that opens the source in a PlantUML server.
    Whether it rendered."""
    label = f"{caption} does not render" if caption else "PlantUML rejects it"
    if "@startuml" not in source.lower():
        what = caption or "the answer"
        where.error(
            f"No PlantUML in {what}: it has no @startuml … @enduml block."
            if source.strip()
            else f"No PlantUML in {what}: it is empty."
        )
        return False
    result = render.render(source)
    if result.ok:
        where.image(result.data.decode(), caption=caption or None)
    else:
        lines = source.splitlines()
        line = result.error_line
        quoted = f" `{lines[line - 1].strip()}`" if line and 0 < line <= len(lines) and lines[line - 1].strip() else ""
        where.error(
            f"{label} — line {line}{quoted}: {result.error_message}" if line else f"{label}: {result.error_message}"
        )
    open_in_server(where, source)
    return result.ok


def item_line(passed, title: str, why: str, below: bool = False) -> str:
    """One checklist item as markdown: its mark, its title in bold, what was found (after it, or below it)."""
    return f"{MARK[passed]} **{title}**{'  ' + chr(10) if below else ' — '}{why}"


def split_why(why: str) -> tuple[str, str]:
    """A checklist item's text as (what was found, how to fix it): split at its first " — "."""
    finding, _, fix = why.partition(" — ")
    return finding, fix


def job_bar(where, job_id: str, done: float, text: str, cancel_help: str, key: str = "cancel") -> None:
    """A running job's progress bar and its Cancel button. Cancel is an on_click callback: Streamlit
    runs it before the rerun the click starts, so a page that refreshes itself cannot swallow the click."""
    where.progress(done, text=text)
    where.button("Cancel", key=key, on_click=jobs.stop, args=(job_id,), help=cancel_help)
