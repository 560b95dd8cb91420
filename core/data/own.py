"""Their own data: rows in the common fine-tuning shapes, mapped to a prompt and its PlantUML.

Files: `.jsonl` and `.csv` are read line by line by core.data (errors name the line); `.json`, `.parquet`
and a folder written by `datasets`' `save_to_disk` (one dataset, or a DatasetDict of splits) are read
with the `datasets` library (errors name the row).

Shapes, detected from the columns (or named in `data.columns`, which then decides alone):

- prompt/completion (TRL's): `prompt` → the prompt, `completion` → the PlantUML (text, or lists of turns);
- alpaca: `instruction` (then `input`, when there is one) → the prompt, `output` → the PlantUML;
- chat: `messages` or `conversations`, turns {role, content} or ShareGPT's {from, value}: the user turn
  before the first assistant turn holding PlantUML → the prompt, that turn → the PlantUML;
- text: one `text` column holding a @startuml block → the block, the words around it → the prompt.

Our own columns (prompt, plantuml, …) and PlantUCD's rows are read as before (core.data). The PlantUML
is the first `@startuml … @enduml` block of the answer (code fences and words around it are dropped).
The diagram type is a `diagram_type` column's (or the column `data.columns` names), else it is read
from the PlantUML itself (core.evaluation.analyse.detect_type). Rows without a PlantUML block, without
a prompt, or whose diagram type is none of the seven are left out and counted (`Mapped.left_out`),
never dropped silently: core.data prints the count and the Data page shows it.
"""

import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from core.data.rows import DIAGRAM_TYPES, Row
from core.errors import UserError

# (shape, {role: column}, the roles that may be missing) in the order a detection reports them
SHAPES = (
    ("prompt/completion", {"prompt": "prompt", "plantuml": "completion"}, ()),
    ("alpaca", {"prompt": "instruction", "input": "input", "plantuml": "output"}, ("input",)),
    ("chat", {"messages": "messages"}, ()),
    ("chat", {"messages": "conversations"}, ()),
    ("text", {"text": "text"}, ()),
)
SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what `save_to_disk` writes: a DatasetDict, a Dataset
SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev", "eval"), "test": ("test",)}
USER, ASSISTANT = {"user", "human"}, {"assistant", "gpt", "model", "bot"}
_BLOCK = re.compile(r"@start(\w+)\b.*?@end\1\b", re.DOTALL)
NO_BLOCK, NO_PROMPT, OTHER_TYPE = "no @startuml … @enduml block", "no prompt", "not one of the seven diagram types"
HINT = (
    "use prompt/completion, instruction/input/output, messages or conversations, or a text column holding a "
    "@startuml block — or map yours in data.columns, e.g. {prompt: question, plantuml: answer}"
)


@dataclass
class Mapped:
    """What was read from one file or split: its rows, the shape and the columns they came from, and the rows
    left out ({reason: count}, with the first such row's place in `first_left_out`)."""

    shape: str
    columns: dict[str, str]  # role -> column
    rows: list[Row] = field(default_factory=list)
    read: int = 0
    left_out: Counter[str] = field(default_factory=Counter)
    first_left_out: dict[str, str] = field(default_factory=dict)

    def notice(self, where: str) -> str | None:
        """One line saying what was left out, or None."""
        if not self.left_out:
            return None
        reasons = ", ".join(f"{n} with {why} (first: {self.first_left_out[why]})" for why, n in self.left_out.items())
        return f"{where}: {sum(self.left_out.values())} of {self.read} rows left out: {reasons}"

    def to_dict(self) -> dict:
        return {
            "shape": self.shape,
            "columns": self.columns,
            "read": self.read,
            "kept": len(self.rows),
            "left_out": dict(self.left_out),
            "first_left_out": self.first_left_out,
        }


def fitting(columns: set[str]) -> list[tuple[str, dict[str, str]]]:
    """The known shapes whose columns are all among `columns`, each with {role: column}."""
    return [
        (shape, {role: column for role, column in roles.items() if column in columns})
        for shape, roles, optional in SHAPES
        if all(column in columns for role, column in roles.items() if role not in optional)
    ]


def shape_of(columns: set[str], where: str, mapping: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """(shape, {role: column}) of a file with `columns`: `mapping` (data.columns) when given, else the one
    known shape its columns fit. UserError naming `where` when none or several fit, or a mapped column is missing."""
    if mapping:
        missing = [column for column in mapping.values() if column not in columns]
        if missing:
            raise UserError(
                f"{where}: data.columns names {', '.join(map(repr, missing))}, not a column here (found: "
                f"{', '.join(sorted(columns)) or 'none'}) — map data.columns to these columns"
            )
        return "data.columns", dict(mapping)
    fits = fitting(columns)
    if len(fits) > 1:
        named = "; ".join(f"{shape}: {', '.join(found.values())}" for shape, found in fits)
        raise UserError(
            f"{where}: its columns fit more than one shape ({named}) — name the ones to use in data.columns: "
            "{prompt: …, plantuml: …}, {messages: …} or {text: …}"
        )
    if not fits:
        raise UserError(f"{where}: no known shape in its columns ({', '.join(sorted(columns)) or 'none'}) — {HINT}")
    shape, found = fits[0]
    if "diagram_type" in columns:
        found["diagram_type"] = "diagram_type"
    return shape, found


def map_records(records: list[tuple[str, dict]], shape: str, columns: dict[str, str], name: str) -> Mapped:
    """Rows from (where, record) pairs of one file in `shape`; `name` (the file's name) makes each row's source."""
    mapping = Mapped(shape, columns, read=len(records))
    for number, (where, record) in enumerate(records, start=1):
        prompt, answer = _prompt_and_answer(record, columns, where)
        block = _BLOCK.search(answer or "")
        diagram_type = _diagram_type(record, columns, block.group(0), where) if block else None
        if block is None or not prompt or diagram_type is None:
            reason = NO_BLOCK if block is None else NO_PROMPT if not prompt else OTHER_TYPE
            mapping.left_out[reason] += 1
            mapping.first_left_out.setdefault(reason, where)
            continue
        mapping.rows.append(
            Row(
                prompt=prompt,
                plantuml=block.group(0),
                diagram_type=diagram_type,
                category="uncategorized",
                source=f"{name}:{number}",  # unknown: each row its own
                origin="unspecified",
                entities=[],
                relations=[],
            )
        )
    return mapping


def _text(value, role: str, where: str) -> str | None:
    """A cell as text: None when empty; UserError when it is not text."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise UserError(f"{where}: the {role} is {type(value).__name__}, not text — map data.columns to a text column")
    return value.strip() or None


def _prompt_and_answer(record: dict, columns: dict[str, str], where: str) -> tuple[str | None, str | None]:
    if "messages" in columns:
        return _chat(record.get(columns["messages"]), where)
    if "text" in columns:
        text = _text(record.get(columns["text"]), "text", where) or ""
        block = _BLOCK.search(text)
        if block is None:
            return text or None, None
        around = (text[: block.start()] + " " + text[block.end() :]).replace("```plantuml", "").replace("```", "")
        return " ".join(around.split()) or None, block.group(0)
    prompt, answer = record.get(columns["prompt"]), record.get(columns["plantuml"])
    if isinstance(prompt, list):  # TRL's conversational prompt/completion: lists of turns
        prompt = _chat(prompt, where)[0]
    if isinstance(answer, list):
        answer = "\n".join(str(_turn(turn, where)[1] or "") for turn in answer)
    prompt = _text(prompt, "prompt", where)
    extra = _text(record.get(columns["input"]), "input", where) if "input" in columns else None
    return (f"{prompt}\n\n{extra}" if prompt and extra else prompt), _text(answer, "answer", where)


def _turn(turn, where: str) -> tuple[str, str | None]:
    if not isinstance(turn, dict):
        raise UserError(
            f"{where}: a chat turn is {type(turn).__name__}, not {{role, content}} — write turns as objects"
        )
    role = turn.get("role", turn.get("from"))
    content = turn.get("content", turn.get("value"))
    if not isinstance(role, str):
        raise UserError(f"{where}: a chat turn without a role — give each turn role/content (or ShareGPT's from/value)")
    return role.lower(), _text(content, f"{role} turn", where)


def _chat(turns, where: str) -> tuple[str | None, str | None]:
    """(the user turn before the first assistant turn holding PlantUML, that turn); a chat without one
    gives its last user turn and no answer."""
    if not isinstance(turns, list):
        raise UserError(
            f"{where}: the chat is {type(turns).__name__}, not a list of turns — write [{{role, content}}, ...]"
        )
    asked = None
    for role, content in (_turn(turn, where) for turn in turns):
        if role in USER:
            asked = content
        elif role in ASSISTANT and content and _BLOCK.search(content):
            return asked, content
    return asked, None


def _diagram_type(record: dict, columns: dict[str, str], plantuml: str, where: str) -> str | None:
    """The type a column gives (checked), else the one the PlantUML reads as; None when it is none of the seven."""
    from core.evaluation import analyse

    given = record.get(columns["diagram_type"]) if "diagram_type" in columns else None
    if given not in (None, ""):  # an empty CSV cell says nothing
        if given not in DIAGRAM_TYPES:
            raise UserError(
                f"{where}: unknown diagram_type {given!r} — use one of {', '.join(DIAGRAM_TYPES)} or drop the column"
            )
        return given
    found = analyse.detect_type(plantuml)
    return found if found in DIAGRAM_TYPES else None


# ---- files read with the datasets library --------------------------------------------------------


def is_saved(path: Path) -> bool:
    """A folder written by `datasets`' save_to_disk (a Dataset or a DatasetDict)."""
    return path.is_dir() and any((path / marker).is_file() for marker in SAVED_MARKERS)


def saved_splits(path: Path) -> list[str]:
    """The splits of a saved DatasetDict under our names (train, validation, test); [] for one saved Dataset."""
    if not (path / "dataset_dict.json").is_file():
        return []
    found = {child.name for child in path.iterdir() if child.is_dir()}
    return [ours for ours, names in SPLIT_NAMES.items() if found & set(names)]


def split_of(saved, split: str | None, path: Path):
    """One split of a saved DatasetDict under one of its names (`split` None: its first)."""
    names = SPLIT_NAMES.get(split, ()) if split else tuple(saved)
    name = next((name for name in names if name in saved), None)
    if name is None:
        raise UserError(
            f"{path}: the saved dataset has no {split} split (it has {', '.join(saved)}) — save one under "
            f"that name, or point data.{'validation_file' if split == 'validation' else 'dataset'} elsewhere"
        )
    return saved[name]


def load(path: Path, split: str | None):
    """The rows of a .json or .parquet file, or of one split of a saved dataset folder, as a `datasets.Dataset`:
    nothing is downloaded, and the arrow files `load_dataset` writes go to a temporary folder removed after."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        if path.is_dir():
            saved = datasets.load_from_disk(str(path), keep_in_memory=True)
            return split_of(saved, split, path) if isinstance(saved, datasets.DatasetDict) else saved
        builder = "parquet" if path.suffix == ".parquet" else "json"
        with tempfile.TemporaryDirectory(prefix="umlstudio-datasets-") as cache:
            return datasets.load_dataset(
                builder, data_files=str(path), split="train", cache_dir=cache, keep_in_memory=True
            )
    except UserError:
        raise
    except Exception as exc:  # datasets and pyarrow raise many kinds for a damaged file
        cause = exc.__cause__ or exc
        reason = " ".join(str(cause).split())[:200] or type(cause).__name__
        raise UserError(
            f"{path}: not readable as a {'saved dataset' if path.is_dir() else path.suffix} dataset ({reason}) — "
            f"check the file, or save it as JSON lines"
        ) from None
