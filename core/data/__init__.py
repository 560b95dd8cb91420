"""Dataset rows: load them, split them by source, build the default dataset, count, filter and
write them, and the report `umlstudio data` prints (its flags are in core/cli/data.py).

A row is {"prompt", "plantuml", "diagram_type", "category", "source", "origin", "entities",
"relations"}. `origin` says who wrote the prompt: "real" (people: PlantUCD, US2SD, LATO),
"generated" (core/data/datagen.py) or "unspecified" (a file that does not say).
`entities` lists the names a diagram declares; `relations` lists [source, target, kind, label].
Direction: the arrow's tail is the source, except that inheritance and realization go from the
subclass to its parent and composition and aggregation from the whole to its part (PlantUML's
`A --|> B` and `A *-- B` forms). Rows built by core/data/datagen.py describe their conventions there.

Files: `.jsonl` with rows in this format or PlantUCD's native rows (`HumanLang`, `PlantUML`, `Model`,
`Output_AST`), or `.csv` with the columns prompt,plantuml[,diagram_type,category,source,origin]. Files in
the common fine-tuning shapes (prompt/completion, Alpaca, chat turns, a text column) — `.jsonl`, `.csv`,
`.json`, `.parquet` or a folder saved by `datasets` — are mapped by core/data/own.py (`data.columns`
names the columns when detection cannot). A dataset is a folder holding train.jsonl, validation.jsonl and
test.jsonl, a saved `datasets` folder (its splits), or a single file that stands for whichever split is
asked of it.
"""

import csv
import hashlib
import io
import itertools
import json
import os
import random
import re
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.data import datagen, own, prompts
from core.data.rows import DIAGRAM_TYPES, Row
from core import paths
from core.errors import UserError
from core.paths import DATA_DIR, ROOT

RELATION_KINDS = (
    "inheritance", "realization", "composition", "aggregation", "association", "dependency",
    "message", "transition", "include", "extend", "flow",
)
SPLITS = ("train", "validation", "test")
ORIGINS = ("real", "generated", "unspecified")
PLANTUCD_FILE = DATA_DIR / "plantucd" / "plantucd.jsonl"
US2SD_FILE = DATA_DIR / "us2sd" / "us2sd.jsonl"
LATO_FILE = DATA_DIR / "lato" / "lato.jsonl"
CSV_COLUMNS = "prompt,plantuml[,diagram_type,category,source,origin]"
_CSV_KEYS = ("prompt", "plantuml", "diagram_type", "category", "source", "origin")


# diagram type -> share; Any keys: the config's are Literal diagram types, a page's plain strings (a dict
# is invariant in its key type, so dict[str, float] would refuse the config's)
TypeWeights = Mapping[Any, float]
# data.columns: role -> the user's column (Any keys for the same reason: the config's are Literal roles)
Columns = Mapping[Any, str]


# PlantUCD arrow -> (kind, True when the class holding the relation node is its target)
_PLANTUCD_ARROWS = {
    "--|>": ("inheritance", False), "<|--": ("inheritance", True),
    "..|>": ("realization", False), "<|..": ("realization", True),
    "*--": ("composition", False), "--*": ("composition", True),
    "o--": ("aggregation", False), "--o": ("aggregation", True),
    "..>": ("dependency", False), "<..": ("dependency", True),
    "-->": ("association", False), "<--": ("association", True),
    "--": ("association", False),
}

# For rows that name no diagram_type: the first pattern found in the PlantUML decides; else "class".
_TYPE_PATTERNS = (
    ("er", r"^\s*entity\s+\S+\s*\{"),
    ("state", r"\[\*\]|^\s*state\s"),
    ("activity", r"^\s*(start|stop)\s*$|^\s*:.*;\s*$"),
    ("usecase", r"^\s*usecase\s|\([^()\n]+\)\s*[-.]|[-.]>?\s*\([^()\n]+\)"),
    ("component", r"^\s*(component|node)\s|\[[^\]\n]+\]\s*[-.]"),
    ("class", r"^\s*(abstract\s+class|class|interface|enum)\s"),
    ("sequence", r"^\s*(participant|actor|boundary|control|database|queue)\s|^\s*\w+\s*-+>>?\s*\w+\s*:"),
)


# ---- loading ----------------------------------------------------------------------------------


def load_rows(path, columns: Columns | None = None) -> list[Row]:
    """Read a dataset file into canonical rows (`read`), saying on stderr which rows were left out; any bad
    input is a one-line UserError."""
    mapped = read(path, columns)
    notice = mapped.notice(str(path))
    if notice:
        print(notice, file=sys.stderr)
    return mapped.rows


def read(path, columns: Columns | None = None, split: str | None = None) -> own.Mapped:
    """A .jsonl, .csv, .json or .parquet file, or one `split` of a folder saved by `datasets`, read into
    canonical rows: the rows, the shape and columns they were mapped from, and the rows left out (counted).
    `columns` is data.columns (core/data/own.py); a file with our own columns is read as ours."""
    path = Path(path)
    if own.is_saved(path):
        mapped = _read_table(path, split, columns)
    else:
        if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO, a device, a socket: may never end
            raise UserError(f"{path}: not a regular file (a FIFO, device or socket); give the path of a .jsonl or "
                            f".csv dataset file")
        if not path.is_file():
            raise UserError(f"{path}: no such file; give the path of a .jsonl or .csv dataset file")
        if path.suffix not in (".jsonl", ".csv", ".json", ".parquet"):
            raise UserError(
                f"{path}: unsupported file type '{path.suffix}'; use .jsonl (one JSON object a line), "
                f".csv (columns {CSV_COLUMNS}), .json, .parquet or a folder saved by datasets"
            )
        if path.suffix in (".json", ".parquet"):
            mapped = _read_table(path, None, columns)
        else:
            text = _utf8(path)
            mapped = _read_jsonl(path, text, columns) if path.suffix == ".jsonl" else _read_csv(path, text, columns)
    if not mapped.read:
        raise UserError(f"{path}:1: the file holds no rows; add at least one prompt/plantuml row")
    if not mapped.rows:
        raise UserError(f"{mapped.notice(str(path))} — none is left: give rows whose answer holds a @startuml block")
    return mapped


def _ours(columns: set[str], mapping: Columns | None) -> bool:
    """Whether a file with these columns holds our own rows (or PlantUCD's): then data.columns does not apply."""
    if "HumanLang" in columns:
        return True
    return {"prompt", "plantuml"} <= columns if mapping else "plantuml" in columns


def _read_table(path: Path, split: str | None, columns: Columns | None) -> own.Mapped:
    """A file or saved split read with `datasets`: our own columns as ours, other shapes mapped."""
    table = own.load(path, split)
    where = f"{path}{f' ({split})' if split else ''}"
    names = set(table.column_names)
    if _ours(names, columns):
        rows = [_from_canonical({k: v for k, v in record.items() if v is not None}, path, i)
                for i, record in enumerate(table, start=1)]
        return own.Mapped("ours", {"prompt": "prompt", "plantuml": "plantuml"}, rows, read=len(rows))
    shape, found = own.shape_of(names, where, dict(columns or {}))
    return own.map_records([(f"{where}: row {i}", r) for i, r in enumerate(table, start=1)], shape, found, path.name)


def _utf8(path: Path) -> str:
    """The file's text; bytes that are not UTF-8 are a UserError naming the line and byte."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UserError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            f"save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _read_jsonl(path: Path, text: str, columns: Columns | None = None) -> own.Mapped:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: not valid JSON ({e.msg}); write one JSON object per line") from None
        if not isinstance(obj, dict):
            raise UserError(f"{where}: a row must be a JSON object; write {{\"prompt\": ..., \"plantuml\": ...}}")
        records.append((number, obj))
    keys = {key for _, obj in records for key in obj}
    if records and not _ours(keys, columns):
        shape, found = own.shape_of(keys, str(path), dict(columns or {}))
        return own.map_records([(f"{path}:{n}", obj) for n, obj in records], shape, found, path.name)
    rows = []
    for number, obj in records:
        where = f"{path}:{number}"
        if "HumanLang" not in obj:
            rows.append(_from_canonical(obj, path, number))
        elif isinstance(obj["HumanLang"], str) and not obj["HumanLang"].strip():
            print(f"{where}: skipped: the PlantUCD row has an empty HumanLang (no requirement to learn from)",
                  file=sys.stderr)
        else:
            rows.append(_from_plantucd(obj, where))
    return own.Mapped("ours", {"prompt": "prompt", "plantuml": "plantuml"}, rows, read=len(rows))  # skips said


def _read_csv(path: Path, text: str, columns: Columns | None = None) -> own.Mapped:
    rows, records = [], []
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        first_line = 2
        for record in reader:
            records.append((first_line, record))
            first_line = reader.line_num + 1
    if not _ours(set(header), columns) and (columns or own.fitting(set(header))):
        shape, found = own.shape_of(set(header), str(path), dict(columns or {}))
        return own.map_records([(f"{path}:{n}", r) for n, r in records], shape, found, path.name)
    if "prompt" not in header or "plantuml" not in header:
        raise UserError(
            f"{path}:1: the header lacks the columns prompt and plantuml (found: {','.join(header) or 'none'}); "
            f"start the file with the header line {CSV_COLUMNS}, or map yours in data.columns"
        )
    for line, record in records:
        fields = {key: record[key] for key in _CSV_KEYS if record.get(key)}
        rows.append(_from_canonical(fields, path, line))
    return own.Mapped("ours", {"prompt": "prompt", "plantuml": "plantuml"}, rows, read=len(rows))


def _from_canonical(obj: dict, path: Path, line: int) -> Row:
    where = f"{path}:{line}"
    prompt = _text(obj, "prompt", where)
    plantuml = _wrapped(_text(obj, "plantuml", where))
    diagram_type = obj.get("diagram_type")
    if diagram_type is None:
        diagram_type = _guess_type(plantuml)
    elif diagram_type not in DIAGRAM_TYPES:
        raise UserError(f"{where}: unknown diagram_type {diagram_type!r}; use one of {', '.join(DIAGRAM_TYPES)}")
    category = _optional_text(obj, "category", where) or "uncategorized"
    source = _optional_text(obj, "source", where) or f"{path.name}:{line}"  # unknown: each row its own
    origin = _optional_text(obj, "origin", where) or "unspecified"
    if origin not in ORIGINS:
        raise UserError(f"{where}: unknown origin {origin!r}; use one of {', '.join(ORIGINS)} or drop the field")
    entities = obj.get("entities", [])
    if not isinstance(entities, list) or not all(isinstance(name, str) for name in entities):
        raise UserError(f"{where}: 'entities' is not a list of names; write it like [\"Order\", \"Customer\"]")
    relations = obj.get("relations", [])
    if not isinstance(relations, list) or not all(_is_relation(r) for r in relations):
        raise UserError(
            f"{where}: 'relations' is not a list of [source, target, kind, label]; write it so, with kinds "
            f"from {', '.join(RELATION_KINDS)}"
        )
    return _row(prompt, plantuml, diagram_type, category, source, origin, entities, relations)


def _from_plantucd(obj: dict, where: str) -> Row:
    prompt = _text(obj, "HumanLang", where)
    plantuml = _wrapped(_text(obj, "PlantUML", where))
    model = _text(obj, "Model", where)
    try:
        entities, relations = _plantucd_ast(obj.get("Output_AST", {"children": []}))
    except (KeyError, IndexError, TypeError, AttributeError):
        raise UserError(f"{where}: 'Output_AST' is not a PlantUCD parse tree; fix it or drop the field") from None
    except ValueError as e:
        raise UserError(f"{where}: {e}") from None
    return _row(prompt, plantuml, "class", model, f"plantucd:{model}", "real", entities, relations)


def _plantucd_ast(ast: dict) -> tuple[list[str], list[list[str]]]:
    """Class names and relations of a PlantUCD `Output_AST`."""
    entities, relations = [], []
    for node in ast["children"]:
        if node["type"] != "class":
            continue
        if node["value"] not in entities:
            entities.append(node["value"])
        for child in node.get("children", []):
            if child["type"] != "relation":
                continue
            if child["value"] not in _PLANTUCD_ARROWS:
                raise ValueError(
                    f"unknown PlantUCD relation arrow {child['value']!r}; supported: {' '.join(_PLANTUCD_ARROWS)}"
                )
            kind, reverse = _PLANTUCD_ARROWS[child["value"]]
            ends = [node["value"], child["children"][0]["value"]]
            source, target = reversed(ends) if reverse else ends
            relations.append([source, target, kind, child.get("label", "").strip().strip('"')])
    return entities, relations


def _row(prompt, plantuml, diagram_type, category, source, origin, entities, relations) -> Row:
    return {
        "prompt": prompt, "plantuml": plantuml, "diagram_type": diagram_type, "category": category,
        "source": source, "origin": origin, "entities": entities, "relations": relations,
    }


def _text(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: missing or empty field '{key}'; every row needs a non-empty '{key}' string")
    return value.strip()


def _optional_text(obj: dict, key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise UserError(f"{where}: '{key}' must be a string; quote it or drop the field")
    return value.strip() if value else None


def _is_relation(value) -> bool:
    return (
        isinstance(value, list) and len(value) == 4 and all(isinstance(part, str) for part in value)
        and value[2] in RELATION_KINDS
    )


def _wrapped(plantuml: str) -> str:
    """PlantUML with its @startuml/@enduml lines (PlantUCD's snippets come without them)."""
    return plantuml if plantuml.startswith("@start") else f"@startuml\n{plantuml}\n@enduml"


def _guess_type(plantuml: str) -> str:
    for diagram_type, pattern in _TYPE_PATTERNS:
        if re.search(pattern, plantuml, re.MULTILINE):
            return diagram_type
    return "class"


# ---- splitting and the default dataset --------------------------------------------------------


def split_by_source(rows: list[Row], seed: int, fractions=(0.8, 0.1, 0.1)) -> dict[str, list[Row]]:
    """Split rows into train/validation/test so that no source lands in two splits.

    Deterministic by seed. First, every diagram type with at least 3 sources gets its smallest
    unassigned source in each split with a positive fraction (validation, then test, then train;
    seeded order among sources of one size). Then the other sources, largest first, each go to the
    split furthest below its share of that source's diagram types, counted in rows. Rows keep their
    input order within a split.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be 3 non-negative shares of train/validation/test adding to 1: {fractions}")
    by_source: dict[str, list[Row]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    sources = sorted(by_source)
    random.Random(seed).shuffle(sources)
    sources.sort(key=lambda source: len(by_source[source]))  # stable: seeded order among equal sizes
    types = {source: Counter(row["diagram_type"] for row in by_source[source]) for source in sources}
    totals = Counter(row["diagram_type"] for row in rows)
    share = dict(zip(SPLITS, fractions))
    filled: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    split_of: dict[str, str] = {}

    def assign(source: str, split: str) -> None:
        split_of[source] = split
        filled[split].update(types[source])

    for diagram_type in DIAGRAM_TYPES:
        having = [source for source in sources if diagram_type in types[source]]
        if len(having) < 3:
            continue
        for split in ("validation", "test", "train"):
            free = [source for source in having if source not in split_of]
            if share[split] > 0 and not filled[split][diagram_type] and free:
                assign(free[0], split)

    def shortfall(split: str, source: str) -> float:
        return sum(share[split] * totals[t] - filled[split][t] for t in types[source])

    for source in reversed(sources):
        if source not in split_of:
            assign(source, max(SPLITS, key=lambda split: shortfall(split, source)))
    return {split: [row for row in rows if split_of[row["source"]] == split] for split in SPLITS}


def default_dataset_dir() -> Path:
    return DATA_DIR / "default"


MANIFEST = "manifest.json"


def build_default_dataset(seed: int = 0, out_dir=None) -> Path:
    """The real-prose rows (PlantUCD, US2SD, LATO) and the generated rows, each family split by
    source on its own (so each keeps about 80/10/10), into out_dir (default data/default), with a
    manifest.json that counts what each family read, skipped and kept.

    References PlantUML rejects are dropped from the real rows and counted; a generated diagram
    PlantUML rejects is a generator bug and stops the build."""
    from core.inference import render

    out_dir = Path(out_dir) if out_dir else default_dataset_dir()
    (plantucd, empty_prompts), generated = _plantucd_rows(), datagen.generate(seed)
    families = {"plantucd": plantucd, "us2sd": _us2sd_rows(), "lato": _lato_rows(), "generated": generated}
    skipped = {"plantucd": empty_prompts}
    everything = [row for rows in families.values() for row in rows]
    verdicts = iter(render.syntax_check([row["plantuml"] for row in everything]))
    manifest: dict[str, Any] = {"seed": seed, "plantuml": render.plantuml_version(), "families": {}}
    splits: dict[str, list[Row]] = {split: [] for split in SPLITS}
    for family, rows in families.items():
        kept = []
        for row in rows:
            verdict = next(verdicts)
            if verdict.valid:
                kept.append(row)
            elif family == "generated":
                raise ValueError(f"PlantUML rejects a generated {row['diagram_type']} diagram at line "
                                 f"{verdict.error_line} ({verdict.error_message}):\n{row['plantuml']}")
        parts = split_by_source(kept, seed)
        for split in SPLITS:
            splits[split] += parts[split]
        manifest["families"][family] = {
            "read": len(rows) + skipped.get(family, 0), "skipped_empty_prompt": skipped.get(family, 0),
            "rejected_by_plantuml": len(rows) - len(kept), "kept": len(kept),
            **{split: len(parts[split]) for split in SPLITS},
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, split_rows in splits.items():
        (out_dir / f"{split}.jsonl").write_text(_jsonl(split_rows), encoding="utf-8")
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _plantucd_rows() -> tuple[list[Row], int]:
    """The shipped PlantUCD rows, one source per model, less those with an empty HumanLang (no
    requirement to learn from; one, model J27), and how many those were."""
    rows, skipped = [], 0
    for number, line in enumerate(PLANTUCD_FILE.read_text(encoding="utf-8").splitlines(), start=1):
        obj = json.loads(line)
        if obj["HumanLang"].strip():
            rows.append(_from_plantucd(obj, f"{PLANTUCD_FILE}:{number}"))
        else:
            skipped += 1
    return rows, skipped


def _us2sd_rows() -> list[Row]:
    """The shipped US2SD user stories, one source per project (a project never spans two splits)."""
    rows: list[Row] = []
    for row, obj in zip(load_rows(US2SD_FILE), map(json.loads, US2SD_FILE.read_text(encoding="utf-8").splitlines())):
        rows.append({**row, "category": obj["project"], "source": f"us2sd:{obj['project']}", "origin": "real"})
    return rows


def _lato_rows() -> list[Row]:
    """The shipped LATO rows, one source per LATO subset (bp, lmc, pure, us)."""
    rows: list[Row] = []
    for row in load_rows(LATO_FILE):
        subset = row["source"].split(":")[1]
        rows.append({**row, "category": f"lato-{subset}", "source": f"lato:{subset}", "origin": "real"})
    return rows


def resolve_dataset(name_or_path) -> Path:
    """A dataset path as given (relative to the working folder), under the project root, or under data/."""
    path = Path(name_or_path).expanduser()
    for candidate in (path, ROOT / path, DATA_DIR / path):
        if candidate.exists():
            return candidate
    raise UserError(
        f"{name_or_path}: no such dataset; give a folder holding train.jsonl, validation.jsonl and "
        f"test.jsonl (e.g. data/default), a folder saved by datasets, or a .jsonl/.csv/.json/.parquet file"
    )


def load_split(name_or_path, split: str, columns: Columns | None = None) -> list[Row]:
    """The rows of one split of a dataset folder (or of a folder saved by `datasets`); a single file (or
    one saved Dataset) is returned whole for any split. `columns`: data.columns."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    path = resolve_dataset(name_or_path)
    if own.is_saved(path):
        mapped = read(path, columns, split)
        notice = mapped.notice(f"{path} ({split})")
        if notice:
            print(notice, file=sys.stderr)
        return mapped.rows
    return load_rows(path / f"{split}.jsonl" if path.is_dir() else path, columns)


# ---- counting, filtering, writing -------------------------------------------------------------


def counts(dataset, columns: Columns | None = None) -> dict[str, dict[str, int]]:
    """Rows per split and diagram type (zeros included). A folder counts the splits it holds; a
    single file counts as one column named after the file."""
    return {name: type_counts(mapped.rows) for name, mapped in parts(dataset, columns).items()}


def parts(dataset, columns: Columns | None = None) -> dict[str, own.Mapped]:
    """Each split a dataset holds, read (`read`): a folder's splits by name, a saved DatasetDict's splits,
    or a single file (or one saved Dataset) under its own name."""
    path = resolve_dataset(dataset)
    if own.is_saved(path):
        splits: list[str | None] = [*own.saved_splits(path)] or [None]  # None: one saved Dataset, whole
        return {split or path.name: read(path, columns, split) for split in splits}
    return {name: read(file, columns) for name, file in split_files(path).items()}


def split_files(path: Path) -> dict[str, Path]:
    """The files `counts` counts: a folder's splits by name, or a single file under its own name."""
    if not path.is_dir():
        return {path.name: path}
    parts = {split: path / f"{split}.jsonl" for split in SPLITS if (path / f"{split}.jsonl").exists()}
    if not parts:
        raise UserError(
            f"{path}: holds none of train.jsonl, validation.jsonl, test.jsonl; "
            f"build the default one with `umlstudio data --build`"
        )
    return parts


def type_counts(rows: list[Row]) -> dict[str, int]:
    """Rows per diagram type, zeros included."""
    found = Counter(row["diagram_type"] for row in rows)
    return {diagram_type: found[diagram_type] for diagram_type in DIAGRAM_TYPES}


def format_counts(table: dict[str, dict[str, int]]) -> str:
    """The counts table as aligned text, with a total column and a total row."""
    rows: list[list[Any]] = [[name, *(table[name][t] for t in DIAGRAM_TYPES)] for name in table]
    rows.append(["total", *(sum(table[name][t] for name in table) for t in DIAGRAM_TYPES)])
    cells = [["split", *DIAGRAM_TYPES, "total"]]
    cells += [[name, *map(str, values), str(sum(values))] for name, *values in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join([row[0].ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:]))]) for row in cells
    )


def in_turn(rows: list[Row], limit: int) -> list[Row]:
    """`limit` rows taken in turn from each diagram type (file order within a type): a short
    evaluation still covers every type, and the same rows come back every time."""
    by_type: dict[str, list[Row]] = {}
    for row in rows:
        by_type.setdefault(row["diagram_type"], []).append(row)
    return [row for group in itertools.zip_longest(*by_type.values()) for row in group if row is not None][:limit]


def filter_rows(rows: list[Row], diagram_types, replay_share: float = 0.2, seed: int = 0) -> list[Row]:
    """The rows of the given (weak) diagram types plus a seeded sample of `replay_share` of the
    other rows, replayed so that training on the weak types does not forget the rest. Rows keep
    their input order."""
    diagram_types = list(diagram_types)
    if not diagram_types:
        raise UserError(f"the filter names no diagram type; give some of {', '.join(DIAGRAM_TYPES)}, e.g. state,er")
    for diagram_type in diagram_types:
        if diagram_type not in DIAGRAM_TYPES:
            raise UserError(
                f"unknown diagram type {diagram_type!r} in the filter; use some of {', '.join(DIAGRAM_TYPES)}"
            )
    if not 0 <= replay_share <= 1:
        raise UserError(f"replay share {replay_share} is outside 0..1; give a fraction such as 0.2")
    weak = [i for i, row in enumerate(rows) if row["diagram_type"] in diagram_types]
    if not weak:
        raise UserError(
            f"no row has diagram type {', '.join(diagram_types)}; pick types the dataset holds (see `umlstudio data`)"
        )
    others = [i for i, row in enumerate(rows) if row["diagram_type"] not in diagram_types]
    keep = set(weak) | set(random.Random(seed).sample(others, round(replay_share * len(others))))
    return [row for i, row in enumerate(rows) if i in keep]


def mix(rows: list[Row], type_weights: TypeWeights, seed: int, n: int | None = None) -> list[Row]:
    """`n` rows (default: as many as given) in which each diagram type has its weight's share of
    the weights of the types the rows hold (a type without a weight gets none); deterministic by seed.

    Each type's rows are drawn in a seeded shuffled order, without repeats until all are used: a
    type asked for more rows than it holds repeats them in fresh shuffles (no row twice more than
    another), a type asked for fewer gives a seeded sample. Counts are rounded by largest remainder
    so they add up to n; the result is shuffled."""
    by_type: dict[str, list[Row]] = {}
    for row in rows:
        by_type.setdefault(row["diagram_type"], []).append(row)
    weights = {t: type_weights.get(t, 0.0) for t in DIAGRAM_TYPES if t in by_type}
    if any(weight < 0 for weight in type_weights.values()) or not any(weights.values()):
        raise UserError(
            f"data.type_weights gives no positive share to a diagram type these rows hold "
            f"({', '.join(sorted(by_type)) or 'none'}); give some of them a weight above 0"
        )
    n = len(rows) if n is None else n
    total = sum(weights.values())
    exact = {t: n * weight / total for t, weight in weights.items()}
    quota = {t: int(share) for t, share in exact.items()}
    for t in sorted(exact, key=lambda t: exact[t] - quota[t], reverse=True)[: n - sum(quota.values())]:
        quota[t] += 1
    rng = random.Random(seed)
    picked = []
    for t, wanted in quota.items():
        while wanted > 0:
            order = by_type[t][:]
            rng.shuffle(order)
            picked += order[:wanted]
            wanted -= len(order[:wanted])
    rng.shuffle(picked)
    return picked


def training_rows(
    source: str, type_weights: TypeWeights | None, seed: int, columns: Columns | None = None
) -> list[Row]:
    """The rows a phase trains on: the train split of `source` mixed by `type_weights` (`mix`), or as
    they are when `type_weights` is None (a train_file keeps the mix it was made with). The plan checks
    them, the time estimate counts them and the worker trains them. UserError when there are none.
    `columns`: data.columns, for a file in another shape (core/data/own.py)."""
    rows = load_split(source, "train", columns)
    if not rows:
        raise UserError(f"data: {source} has no training rows — point data.dataset or data.train_file at a JSONL with rows")
    return rows if type_weights is None else mix(rows, type_weights, seed)


def validation_rows(
    source: str, type_weights: TypeWeights, seed: int, n: int, columns: Columns | None = None
) -> list[Row]:
    """The same validation rows at every evaluation: a seeded sample of `n` (at most all of them) with
    each type's share of `type_weights`."""
    rows = load_split(source, "validation", columns)
    return mix(rows, type_weights, seed, n=min(n, len(rows)))


def family(row: Row) -> str:
    """Where a row comes from, in one word: the part of its source before the first colon
    (plantucd, us2sd, lato, gen) or "other" for a source without one."""
    head, colon, _ = row["source"].partition(":")
    return head if colon else "other"


def mix_table(rows: list[Row]) -> dict[str, dict[str, dict[str, float]]]:
    """Rows and shares of `rows` per diagram type, per source family and per origin:
    {"type": {name: {"rows", "share"}}, "family": {...}, "origin": {...}}."""
    table = {}
    for key, of in (("type", lambda r: r["diagram_type"]), ("family", family), ("origin", lambda r: r["origin"])):
        found = Counter(map(of, rows))
        table[key] = {name: {"rows": count, "share": round(count / len(rows), 4)} for name, count in found.most_common()}
    return table


def format_mix(title: str, table: dict) -> str:
    """A mix table as three lines of "name rows (share%)"."""
    lines = [title]
    for key, label in (("type", "types"), ("family", "sources"), ("origin", "origin")):
        cells = [f"{name} {entry['rows']} ({entry['share']:.0%})" for name, entry in table[key].items()]
        lines.append(f"  {label + ':':9} " + ", ".join(cells))
    return "\n".join(lines)


CHARS_PER_TOKEN = 3.5  # the approximation when a model's tokenizer is not on disk


def token_lengths(rows: list[Row], folder: Path, keep: bool = True) -> tuple[list[tuple[int, int]], str]:
    """(prompt, prompt + answer) tokens per row as the trainer sees it (the request of core/prompts
    in the chat template, then the answer), with the tokenizer and chat template in `folder` when
    they are there, else characters / 3.5; and how they were counted.

    Counted once: the lengths are kept in the runs root's cache/ under a hash of the tokenizer, the
    chat template and the rows' texts (the default dataset's train split takes ~2 s to count). With
    `keep` False a kept count is read but a new one is not kept: a check that may refuse writes nothing."""
    messages = [prompts.request(r["prompt"], r.get("diagram_type")) for r in rows]
    tokenizer_file, template_file = folder / "tokenizer.json", folder / "chat_template.jinja"
    if not (tokenizer_file.is_file() and template_file.is_file()):
        return ([(round(len(m) / CHARS_PER_TOKEN), round((len(m) + len(r["plantuml"])) / CHARS_PER_TOKEN))
                 for m, r in zip(messages, rows)],
                f"approximated as characters / {CHARS_PER_TOKEN}: the tokenizer of {folder.name} is not on disk "
                "(`umlstudio prepare-model` prepares the embedded model's)")
    how = f"counted with {folder.name}'s tokenizer and chat template"
    texts = json.dumps([[m, r["plantuml"]] for m, r in zip(messages, rows)], ensure_ascii=False).encode()
    key = hashlib.sha256(tokenizer_file.read_bytes() + template_file.read_bytes() + texts).hexdigest()
    kept = paths.home() / "cache" / f"token-lengths-{key[:32]}.json"
    if kept.is_file():
        return [tuple(pair) for pair in json.loads(kept.read_text())], how
    lengths = _count_tokens(messages, rows, tokenizer_file, template_file)
    if not keep:
        return lengths, how
    part = kept.with_name(f"{kept.name}.{os.getpid()}.part")  # whole or absent, with two counting at once
    try:
        kept.parent.mkdir(exist_ok=True)
        part.write_text(json.dumps(lengths))
        part.replace(kept)
    except OSError:  # a cache: a full or read-only disk only means counting again next time
        part.unlink(missing_ok=True)
    return lengths, how


def _count_tokens(messages: list[str], rows: list[Row], tokenizer_file: Path, template_file: Path) -> list[tuple[int, int]]:
    """token_lengths' count: each request rendered in the chat template, then tokenized with its answer."""
    import jinja2
    import tokenizers

    tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_file))
    # the options transformers renders chat templates with
    template = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(template_file.read_text())
    asked = [template.render(messages=[{"role": "user", "content": m}], add_generation_prompt=True) for m in messages]
    full = [template.render(messages=[{"role": "user", "content": m}, {"role": "assistant", "content": r["plantuml"]}],
                            add_generation_prompt=False) for m, r in zip(messages, rows)]
    # prompt and answer apart, as the trainer encodes them
    lengths = [len(e.ids) for e in tokenizer.encode_batch(
        asked + [text[len(prompt):] for prompt, text in zip(asked, full)], add_special_tokens=False)]
    return [(p, p + a) for p, a in zip(lengths[:len(rows)], lengths[len(rows):])]


def long_rows(rows: list[Row], max_seq_length: int, folder: Path, keep: bool = True) -> dict:
    """How many rows exceed max_seq_length: "cut" (prompt + answer longer: the trainer cuts the
    answer), of which "prompt_only" (the prompt alone fills it: no answer token fits), and "how"
    (`keep`: see token_lengths)."""
    lengths, how = token_lengths(rows, folder, keep)
    return {"rows": len(rows), "cut": sum(total > max_seq_length for _, total in lengths),
            "prompt_only": sum(prompt >= max_seq_length for prompt, _ in lengths), "how": how}


def write_rows(rows: list[Row], path) -> Path:
    """Write rows as JSON lines to a new file; an existing file is never overwritten."""
    path = Path(path)
    if path.suffix != ".jsonl":
        raise UserError(f"{path}: rows are written as JSON lines; give a file name ending in .jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x", encoding="utf-8") as f:
            f.write(_jsonl(rows))
    except FileExistsError:
        raise UserError(f"{path}: already exists; choose another file name or delete it first") from None
    return path


def _jsonl(rows: list[Row]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


# ---- what `umlstudio data` (core/cli/data.py) and the Data page show ------------------------------


def describe(dataset, seed: int = 0, max_seq_length: int = 512, type_weights: dict | None = None,
             columns: Columns | None = None) -> dict:
    """What `umlstudio data` and the Data page show of a dataset: rows per split and type
    ("counts"), the mix of each split ("mix"), the mix of the train rows a phase sees with
    `type_weights` (default: the config's, equal shares) ("phase_mix"), the rows over
    max_seq_length per split ("long"), the build manifest when there is one ("manifest"), and how each
    split was read ("mapped": its shape, {role: column}, rows read, kept and left out, and 3 example rows)."""
    from core.training import models
    from core.config import DataConfig

    path = resolve_dataset(dataset)
    read_parts = parts(path, columns)
    rows_of = {name: mapped.rows for name, mapped in read_parts.items()}
    table = {name: type_counts(rows) for name, rows in rows_of.items()}
    weights = type_weights if type_weights is not None else DataConfig().type_weights
    train = rows_of.get("train") or next(iter(rows_of.values()))
    manifest = path / MANIFEST if path.is_dir() else None
    return {
        "dataset": str(path),
        "counts": table,
        "mix": {name: mix_table(rows) for name, rows in rows_of.items()},
        "phase_mix": {"type_weights": weights, "seed": seed, **mix_table(mix(train, weights, seed))},
        "long": {"max_seq_length": max_seq_length,
                 **{name: long_rows(rows, max_seq_length, models.embedded_dir()) for name, rows in rows_of.items()}},
        "manifest": json.loads(manifest.read_text(encoding="utf-8")) if manifest and manifest.is_file() else None,
        "mapped": {name: {**mapped.to_dict(), "examples": mapped.rows[:3]} for name, mapped in read_parts.items()},
    }


def stamp(dataset) -> float:
    """The newest modification time among a dataset's files and the tokenizer `describe` counts with:
    a report or a table of the dataset kept with this stamp is current while it stays the same."""
    from core.training import models

    path = Path(dataset)
    saved = [*path.glob("*.json"), *path.glob("*.arrow"), *path.glob("*/*.json"), *path.glob("*/*.arrow")]
    files = [path, *path.glob("*.jsonl"), *saved, models.embedded_dir() / "tokenizer.json"]
    return max((p.stat().st_mtime for p in files if p.exists()), default=0.0)


def columns_in_words(columns: dict[str, str]) -> str:
    """A {role: column} mapping as "prompt ← question, plantuml ← answer"."""
    return ", ".join(f"{role} ← {column}" for role, column in columns.items())


def format_report(report: dict) -> str:
    """`describe`'s report as text: the counts table, then the mixes, long rows and what the build dropped."""
    lines = [format_counts(report["counts"]), ""]
    for name, mapped in report["mapped"].items():  # how their own data was read (our own files say nothing)
        if mapped["shape"] != "ours" or mapped["left_out"]:
            left = ", ".join(f"{n} with {why}" for why, n in mapped["left_out"].items()) or "none"
            lines.append(f"{name}: read as {mapped['shape']} ({columns_in_words(mapped['columns'])}): "
                         f"{mapped['kept']} of {mapped['read']} rows kept; left out: {left}")
    if lines[-1]:
        lines.append("")
    for name, table in report["mix"].items():
        lines.append(format_mix(f"{name}: {sum(e['rows'] for e in table['type'].values())} rows", table))
    weights = ", ".join(f"{t} {w:g}" for t, w in report["phase_mix"]["type_weights"].items())
    lines.append(format_mix(f"train rows as a phase sees them (data.mix, type_weights {weights})", report["phase_mix"]))
    long = report["long"]
    limit = long["max_seq_length"]
    per_split = [(name, entry) for name, entry in long.items() if isinstance(entry, dict)]
    lines += ["", f"longer than {limit} tokens (prompt + answer; {per_split[0][1]['how']}):"]
    lines += [f"  {name}: {entry['cut']} of {entry['rows']} rows (the trainer cuts their answers), "
              f"{entry['prompt_only']} with a prompt of {limit}+ tokens alone (no answer token fits)"
              for name, entry in per_split]
    if report["manifest"]:
        dropped = [f"{name} {entry['rejected_by_plantuml']} of {entry['read']}"
                   + (f" (+{entry['skipped_empty_prompt']} with an empty prompt)" if entry["skipped_empty_prompt"] else "")
                   for name, entry in report["manifest"]["families"].items()]
        lines += ["", f"left out when built (references PlantUML {report['manifest']['plantuml']} rejects): "
                  + ", ".join(dropped)]
    return "\n".join(lines)
