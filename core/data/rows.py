"""The `Row` type: one dataset row as `core.data.load_rows` returns it (core/data/__init__.py's
docstring says what each key holds). A module of its own so that core/data/datagen.py, which
core.data imports, can name it too."""

from typing import TypedDict

DIAGRAM_TYPES = ("class", "sequence", "activity", "usecase", "state", "component", "er")


class Row(TypedDict):
    prompt: str
    plantuml: str  # with its @startuml/@enduml lines
    diagram_type: str  # one of core.data.DIAGRAM_TYPES
    category: str
    source: str  # rows of one source never land in two splits
    origin: str  # one of core.data.ORIGINS: real, generated, unspecified
    entities: list[str]  # the names the diagram declares
    relations: list[list[str]]  # [source, target, kind, label]
