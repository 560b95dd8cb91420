"""Read a PlantUML diagram's structure: its type, entities and relations, without PlantUML.

`analyse(text, expected_type)` takes the @startuml…@enduml block PlantUML draws
(`render.drawn_span`: the first closed block; a second @startuml before the @enduml starts it
again, as PlantUML does; text outside it, markdown fences, comments, notes, titles and skinparams
are ignored), decides the diagram type from line
evidence, and parses with that type's rules:

- class / er: class, abstract, interface, enum, entity declarations (members inside `{}` are
  skipped), `extends`/`implements`, and relations with any arrow (`<|--`, `..|>`, `*--`, `o--`,
  `-->`, `..>`, `--`, crow's feet `}|--o{`, direction and style hints `-up->`, `-[#red]->`),
  multiplicities `"1" -- "0..*"` and labels.
- sequence: participant, actor, boundary, control, entity, database, collections, queue with
  `as` aliases; messages `->`, `-->`, `->>`, `<-`, `->x`, …
- activity (new syntax): actions `:x;` (also over several lines), flows between consecutive
  actions through if/elseif/else/endif, while, repeat, fork/split, switch; partitions, swimlanes.
- usecase: actor, usecase, `(Name)`, `:Actor:`, aliases; include/extend from the label,
  generalisation, associations.
- state: states, `state X { }`, `state "Long" as L`, `X : text`, transitions with events;
  `[*]` stays a relation end but is no entity.
- component: component, `[X]`, interface, `() X`, node, database, cloud, queue, artifact, …

Relation direction: inheritance/realization go child -> parent, composition/aggregation whole ->
part, other arrows tail -> head (`A <-- B` is B -> A), lines without a head left -> right.

Type evidence: keywords and type-specific syntax are strong evidence; a bare `A --> B` line is
weak evidence (class, sequence and state all accept it; PlantUML reads a snippet of only such
lines as a sequence diagram); where declared participants are the strongest evidence, every
message line counts as sequence evidence too. Given the dataset's expected type, the diagram takes that type when
the text supports it (strong evidence at least half of the strongest, or weak evidence only);
otherwise the type the evidence says. Text with no PlantUML evidence (prose, Python) is
"unknown" with no entities. The parser never raises on garbled or truncated text; lines over
1,000 characters are skipped.
"""

import re
from collections import Counter
from dataclasses import dataclass, field

from core.inference.render import drawn_span

TYPES = ("class", "sequence", "activity", "usecase", "state", "component", "er")
MAX_LINE = 1000


@dataclass(frozen=True)
class Entity:
    name: str
    kind: str


@dataclass(frozen=True)
class Relation:
    source: str
    target: str
    kind: str
    label: str = ""
    ends: tuple[str, str] = ("", "")  # multiplicity or ER cardinality at (source, target): "1", "0..*", …


@dataclass
class Diagram:
    type: str  # one of TYPES, or "unknown"
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)  # in written order, repeats kept
    complete: bool = False  # @startuml…@enduml present, braces balanced
    attributes: list[tuple[str, str]] = field(default_factory=list)  # class/ER members: (entity, normalised member)
    branches: int = 0  # activity: if, while, repeat, fork/split and switch blocks


def normalise(name: str) -> str:
    """Comparable form of a name: "OrderItem" == "order item" == "order_item" == "Order-Item"."""
    name = name.replace("\\n", " ").strip().strip('"').strip()
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", name)
    name = re.sub(r"[\s_\-.]+", " ", name)
    return name.lower().strip()


# ---- text preparation -------------------------------------------------------------------------

_NOTE = r'[hr]?note\s*(?:(?:left|right|top|bottom|over|as|on\s+link)\b|")'
# blocks to skip: (start, end); a note without ':' or a quoted text spans lines until "end note"
_MULTILINE = [
    (re.compile(rf'^{_NOTE}[^:"]*$', re.I), re.compile(r"^end\s*note$", re.I)),
    (re.compile(r"^legend(?:\s+(?:left|right|top|bottom|center))*$", re.I), re.compile(r"^end\s*legend$", re.I)),
    (re.compile(r"^(title|header|footer)$", re.I), re.compile(r"^end\s*(title|header|footer)$", re.I)),
    (re.compile(r"^skinparam\b.*\{$", re.I), re.compile(r"^\}$")),
    (re.compile(r"^<style>", re.I), re.compile(r"^</style>$", re.I)),
]
# one-line settings and notes; a relation line stays even if it starts with such a word ("Note --> Patient")
_SETTING = re.compile(
    rf"^(?:!|skinparam\b|hide\b|show\b|scale\b|title\b|caption\b|header\b|footer\b|"
    rf"left to right direction|top to bottom direction|allowmixing|set\s|{_NOTE})",
    re.I,
)


def _block(text: str) -> tuple[list[str], bool, bool]:
    """(lines of the diagram PlantUML draws, whether it has both @start and @end, whether it is a @startuml)."""
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = [line for line in lines if not line.startswith("```")]
    begin, end = drawn_span(lines)
    if begin is None:
        return lines, False, True
    is_uml = re.match(r"@startuml\b", lines[begin]) is not None
    return lines[begin + 1 : end], end is not None, is_uml


def _clean(lines: list[str]) -> list[str]:
    """Drop comments, notes, legends, multi-line titles, skinparam/style blocks and settings."""
    out, in_comment, until = [], False, None
    for line in lines:
        if in_comment:
            if "'/" in line:
                in_comment = False
                line = line.split("'/", 1)[1].strip()
            else:
                continue
        if "/'" in line:
            head, tail = line.split("/'", 1)
            if "'/" in tail:
                line = (head + tail.split("'/", 1)[1]).strip()
            else:
                in_comment, line = True, head.strip()
        if until is not None:
            if until.match(line):
                until = None
            continue
        until = next((end for start, end in _MULTILINE if start.match(line)), None)
        if until is not None:
            continue
        if not line or line.startswith("'") or len(line) > MAX_LINE:
            continue
        if _SETTING.match(line) and not (_REL.match(line) or _message(line)):
            continue
        out.append(line)
    return out


def _balanced(lines: list[str]) -> bool:
    depth = 0
    for line in lines:
        unquoted = re.sub(
            r"(?<=[-.])[|o]\{|\}[|o](?=[-.])", "", re.sub(r'"[^"]*"', "", line)
        )  # `||--o{` opens no block
        depth += unquoted.count("{") - unquoted.count("}")
        if depth < 0:
            return False
    return depth == 0


# ---- shared patterns --------------------------------------------------------------------------

_WORD = r"\w[\w$]*(?:\.\w[\w$]*)*"
_NAME = rf'"[^"\n]+"|\[\*\]|\[[^\[\]\n]+\]|\([^()\n]+\)|:[^:\n]+:|{_WORD}'
_LEFT = r"<\||\}\||\}o|\|\||\|o|[<*o+#x^]"
_RIGHT = r"\|>|\|\{|o\{|\|\||o\||[>*o+#x^]"
# one run of line characters, optionally a style/direction part and another run: unambiguous, so
# a long run of dashes cannot make the regex backtrack
_BODY = r"[-.]+(?:(?:\[[^\]\n]*\]|up|down|left|right|le|ri|do|u|d|l|r)[-.]*)?"
_REL = re.compile(
    rf'^(?P<a>{_NAME})\s*(?:"(?P<ma>[^"\n]*)"\s*)?(?P<lh>{_LEFT})?(?P<body>{_BODY})(?P<rh>{_RIGHT})?'
    rf'\s*(?:"(?P<mb>[^"\n]*)"\s*)?(?P<b>{_NAME})\s*(?::\s*(?P<label>.*))?$'
)
_SEQ_NAME = r'"[^"\n]+"|\w[\w$.]*'
_SEQ_MSG = re.compile(
    rf"^(?P<a>{_SEQ_NAME}|\[|\?)?\s*(?P<lh>[ox]?(?:<<|<|\\\\|\\|//|/))?(?P<body>-{{1,2}}(?:\[[^\]\n]*\]-?)?)"
    rf"(?P<rh>(?:>>|>|\\\\|\\|//|/)[ox]?)?\s*(?P<b>{_SEQ_NAME}|\]|\?)\s*(?:\+\+|--|\*\*|!!)?\s*"
    rf"(?::\s*(?P<label>.*))?$"
)
_SEQ_DECL = re.compile(
    rf"^(?P<kw>participant|actor|boundary|control|entity|database|collections|queue)\s+(?P<first>{_SEQ_NAME})"
    rf"(?:\s+as\s+(?P<second>{_SEQ_NAME}))?\s*(?:order\s+\d+)?\s*(?:<<[^>\n]*>>)?\s*(?:#\S+)?\s*$"
)
_CROWS_FOOT = re.compile(r"(?:\}\||\}o|\|\||\|o)[-.]+|[-.]+(?:\|\{|o\{|\|\||o\|)")

_DECL_KEYWORDS = {
    "class": {
        "abstract class": "abstract",
        "abstract": "abstract",
        "class": "class",
        "interface": "interface",
        "enum": "enum",
        "annotation": "class",
        "struct": "class",
        "record": "class",
        "exception": "class",
        "entity": "entity",
    },
    "er": {"entity": "entity", "class": "entity", "table": "entity"},
    "usecase": {"actor": "actor", "usecase": "usecase"},
    "component": {
        "component": "component",
        "interface": "interface",
        "node": "node",
        "database": "database",
        "cloud": "cloud",
        "queue": "queue",
        "artifact": "artifact",
        "storage": "storage",
        "file": "file",
        "actor": "actor",
        "person": "actor",
        "agent": "component",
        "port": "port",
        "portin": "port",
        "portout": "port",
    },
    "state": {"state": "state"},
}
_DEFAULT_KIND = {"class": "class", "er": "entity", "usecase": "actor", "component": "component", "state": "state"}
# what may follow a declaration's name: stereotypes, colours, generics, extends/implements, a body,
# a state description; anything else (Python's "(Base):", prose) makes the line no declaration
_DECL_REST = (
    r"^\s*(?:<[^<>\n]*>)?\s*(?:(?:<<[^>\n]*>>|#[\w#:;.]+|\$\w+|(?:extends|implements)\s+[\w.]+(?:\s*,\s*[\w.]+)*)\s*)*"
)
_REST = re.compile(_DECL_REST + r"(?:\{.*|\[.*)?$")
_STATE_REST = re.compile(_DECL_REST + r"(?:\{.*|:.*)?$")  # state X : description
_CONTAINER = re.compile(
    r"^(?:package|namespace|rectangle|folder|frame|together|box|card|hexagon|stack)\b.*\{?$|^\}$", re.I
)


def _decl_pattern(keywords) -> re.Pattern:
    escaped = (re.escape(k).replace("\\ ", " ").replace(" ", r"\s+") for k in keywords)
    alternatives = "|".join(sorted(escaped, key=len, reverse=True))
    return re.compile(
        rf"^(?P<kw>{alternatives})/?\s+(?P<name>{_NAME})(?:\s+as\s+(?P<alias>{_NAME}))?(?P<rest>.*)$", re.I
    )


_DECLS = {kind: _decl_pattern(keywords) for kind, keywords in _DECL_KEYWORDS.items()}
_SHORT_DECL = re.compile(
    rf"^(?P<name>\[[^\[\]\n]+\]|\([^()\n]+\)|:[^:\n]+:|\(\)\s*(?:{_NAME}))"
    rf"(?:\s+as\s+(?P<alias>{_NAME}))?\s*(?:<<[^>\n]*>>)?\s*(?:#\S+)?$"
)
_STATE_TEXT = re.compile(rf'^(?P<name>"[^"\n]+"|{_WORD})\s*:\s*\S')


def _declaration(pattern: re.Pattern, line: str, kind: str) -> re.Match | None:
    found = pattern.match(line)
    rest = _STATE_REST if kind == "state" else _REST
    return found if found and rest.match(found["rest"]) else None


def _message(line: str) -> re.Match | None:
    """A sequence message: an arrow with a head between two names."""
    found = _SEQ_MSG.match(line)
    return found if found and (found["lh"] or found["rh"]) else None


def _bare(token: str) -> str:
    """A name without its quotes, brackets, parentheses or colons."""
    token = token.strip()
    if token.startswith("()"):
        token = token[2:].strip()
    if len(token) >= 2 and (token[0], token[-1]) in {('"', '"'), ("[", "]"), ("(", ")"), (":", ":")}:
        token = token[1:-1]
    return " ".join(token.replace("\\n", " ").split())


def _shape(token: str) -> str | None:
    """The kind a token's own syntax gives it: [X] component, (X) use case, :X: actor, () interface."""
    token = token.strip()
    if token.startswith("()"):
        return "interface"
    return {"[": "component", "(": "usecase", ":": "actor"}.get(token[:1])


# ---- type evidence ----------------------------------------------------------------------------

_MULT = r'"\s*(?:\d+|\*|n|m|many)(?:\s*\.\.\s*(?:\d+|\*|n|m|many))?\s*"'
# declarations that point to a type (validated like the parser's, so "class Foo:" is no evidence)
_EVIDENCE_KEYWORDS = {
    "class": ["abstract class", "abstract", "class", "interface", "enum", "annotation"],
    "er": ["entity"],
    "usecase": ["usecase", "actor"],
    "state": ["state"],
    "component": ["component", "node", "cloud", "artifact", "storage", "database", "interface"],
}
_EVIDENCE_DECLS = {kind: _decl_pattern(keywords) for kind, keywords in _EVIDENCE_KEYWORDS.items()}
# syntax that points to a type
_SYNTAX = [
    (
        "class",
        re.compile(rf"<\|[-.]|[-.]\|>|{_MULT}\s*\S*[-.]{{2}}|[-.]{{2}}\S*\s*{_MULT}|\s[*o][-.]{{2}}|[-.]{{2}}[*o]\s"),
    ),
    ("er", _CROWS_FOOT),
    # group lines ("loop 3 times") without a full stop, so a sentence starting "Critical ..." is no evidence
    (
        "sequence",
        re.compile(
            r"^(?:activate|deactivate)\s+\S+$|^autonumber\b|^(?:alt|loop|opt|par|critical|group)"
            r"(?:\s+[^.]*)?$|^ref\s+over\b|^==.*==$|^\.\.\.$|^\|\|\|$|->>",
            re.I,
        ),
    ),
    (
        "activity",
        re.compile(
            r"^:.*[;|<>/\]}]$|^:[^:]*$|^(?:start|stop|kill|detach)$|^if\s*\(.*\)\s*(?:is\s*\(.*\)\s*)?"
            r"then\b|^(?:endif|end\s*if|endwhile|end\s*while|fork|fork\s+again|end\s*fork|repeat|"
            r"split|split\s+again|end\s*split)(?:\s*\(.*\))?$|^(?:while|repeat\s+while)\s*\(.*\)"
            r"(?:\s*is\s*\(.*\))?$|^partition\s+(?:\"[^\"]+\"|\S+)\s*(?:#\S+\s*)?\{?$"
            r"|^\|(?:#?\w+\|)?[^|]+\|$",
            re.I,
        ),
    ),
    (
        "usecase",
        re.compile(
            r"<<\s*(?:include|extend)s?\s*>>|(?<!\w)\([^()\n*]+\)\s*[-.<]|[-.>]\s*\([^()\n*]+\)"
            r"|^:[^:;]+:\s*(?:as\s|[-.<]|$)",
            re.I,
        ),
    ),
    ("state", re.compile(r"\[\*\]")),
    ("component", re.compile(r"^\(\)\s|(?:^|[\s>])\[[^\]\[*\n#]+\]")),
]


def _evidence(lines: list[str]) -> tuple[Counter, Counter]:
    """Per type: lines of strong evidence, and weighted lines of weak evidence (bare arrows)."""
    strong, weak = Counter(), Counter()
    for line in lines:
        kinds = {kind for kind, pattern in _SYNTAX if pattern.search(line)}
        kinds |= {kind for kind, pattern in _EVIDENCE_DECLS.items() if _declaration(pattern, line, kind)}
        if _SEQ_DECL.match(line):
            kinds.add("sequence")
        strong.update(kinds)
        if _message(line):
            single = re.search(r"(?<![-.])-(?:\[[^\]]*\])?>", line) is not None
            weak["sequence"] += 1 if single else 0.75
            weak["class"] += 0.5 if single else 1
            weak["state"] += 0.5
        elif _REL.match(line):
            weak["class"] += 1
            weak["state"] += 0.5
    if strong["sequence"] and strong["sequence"] >= max(strong.values()):
        strong["sequence"] += weak["sequence"]  # declared participants make every message sequence evidence
    return strong, weak


def _type(lines: list[str], expected: str | None) -> str:
    strong, weak = _evidence(lines)
    if expected in TYPES:
        if strong[expected] > 0 and 2 * strong[expected] >= max(strong.values()):
            return expected
        if not strong and weak[expected] > 0:
            return expected
    if strong:
        return max(TYPES, key=lambda t: (strong[t], weak[t], -TYPES.index(t)))
    if weak:
        return max(TYPES, key=lambda t: (weak[t], -TYPES.index(t)))
    return "unknown"


def detect_type(text: str) -> str:
    """The diagram type the text looks like: one of TYPES, or "unknown"."""
    lines, _, is_uml = _block(text)
    return _type(_clean(lines), None) if is_uml else "unknown"


# ---- building a diagram -----------------------------------------------------------------------


class _Builder:
    def __init__(self):
        self.entities: dict[str, Entity] = {}
        self.relations: list[Relation] = []
        self.aliases: dict[str, str] = {}
        self.attributes: dict[tuple[str, str], None] = {}
        self.branches = 0

    def entity(self, name: str, kind: str, declared: bool = True) -> str:
        """Add (or, when declared, re-kind) an entity; return its name as first written."""
        key = normalise(name)
        if not key:
            return name
        known = self.entities.get(key)
        if known is None or (declared and known.kind != kind):
            self.entities[key] = Entity(known.name if known else name, kind)
        return self.entities[key].name

    def alias(self, alias: str, name: str) -> None:
        self.aliases[alias] = name

    def resolve(self, token: str, default_kind: str) -> str:
        """The entity a relation end names (added when new, as PlantUML does)."""
        shape = _shape(token)
        name = _bare(token)
        if token.strip() in self.aliases:
            return self.aliases[token.strip()]
        if name in self.aliases:
            return self.aliases[name]
        return self.entity(name, shape or default_kind, declared=False)

    def relation(self, source: str, target: str, kind: str, label: str = "", ends: tuple[str, str] = ("", "")) -> None:
        if source and target:
            self.relations.append(Relation(source, target, kind, label, ends))

    def attribute(self, entity: str, line: str) -> None:
        member = _member(line)
        if member:
            self.attributes[(entity, member)] = None


def _label(text: str | None) -> str:
    text = (text or "").strip()
    text = re.sub(r"\s+[<>]$|^[<>]\s+", "", text)  # the reading direction of "contains >"
    return text.strip().strip('"').strip()


_CARDINALITY = {"||": "1", "|o": "0..1", "o|": "0..1", "}|": "1..*", "|{": "1..*", "}o": "0..*", "o{": "0..*"}


def _multiplicity(text: str | None) -> str:
    """A comparable multiplicity: "*", "many", "n" -> "0..*"; "1..n" -> "1..*"; "" when none."""
    text = re.sub(r"\s+", "", (text or "").lower())
    text = re.sub(r"(?<![\d.])(?:many|n|m)$|(?<=\.\.)(?:many|n|m)$", "*", text)
    return "0..*" if text == "*" else text


def _member(line: str) -> str | None:
    """The normalised name of a class or entity member line ("+ name : String", "String name",
    "+ total() : int", "* id : int <<PK>>"); None for separators and empty lines."""
    line = re.sub(r"\{\w+\}|<<[^>\n]*>>", "", line).strip().lstrip("+-#~* ").strip()
    if not line or re.match(r"^[-.=_]{2}", line) or line in "{}":
        return None
    if "(" in line:
        words = line.split("(", 1)[0].split()
        return f"{normalise(words[-1])}()" if words else None
    words = (line.split(":", 1)[0] if ":" in line else line).split()
    return normalise(words[-1].rstrip(",;")) if words else None


def _arrow(lh: str | None, body: str, rh: str | None) -> tuple[str, bool]:
    """(kind, reversed) for a class-style arrow; reversed: the right-hand name is the source.

    A line without heads is a "link" (no direction), as are ER relations (crow's feet)."""
    dotted = "." in body
    ends = {lh or "", rh or ""}
    if ends & set(_CARDINALITY) or not (lh or rh):
        return "link", False
    if lh == "<|" or rh == "|>":
        return ("realization" if dotted else "inheritance"), lh == "<|"
    if "*" in ends:
        return "composition", rh == "*"
    if "o" in ends:
        return "aggregation", rh == "o"
    kind = "dependency" if dotted else "association"
    return kind, lh == "<" and rh != ">"


def _parse_graph(lines: list[str], diagram_type: str) -> _Builder:
    """Class, ER, use case, state and component diagrams: declarations and relations."""
    b = _Builder()
    decl, keywords, default = _DECLS[diagram_type], _DECL_KEYWORDS[diagram_type], _DEFAULT_KIND[diagram_type]
    skip_bodies = diagram_type in ("class", "er")
    depth, owner = 0, ""
    for line in lines:
        if depth:  # inside a class or entity body: members, not structure
            if depth == 1 and "{" not in line and "}" not in line:
                b.attribute(owner, line)
            depth += line.count("{") - line.count("}")
            depth = max(depth, 0)
            continue
        found = _declaration(decl, line, diagram_type)
        if found:
            kind = keywords[" ".join(found["kw"].lower().split())]
            first, alias = found["name"], found["alias"]
            if alias and alias.startswith('"') and not first.startswith('"'):
                first, alias = alias, first
            if not alias and _bare(first) in b.aliases:  # state LN : text, after state "Long" as LN
                name = b.aliases[_bare(first)]
            else:
                name = b.entity(_bare(first), kind)
            if alias:
                b.alias(alias.strip(), name)
                b.alias(_bare(alias), name)
            rest = found["rest"]
            for parent in re.findall(r"extends\s+([\w.]+(?:\s*,\s*[\w.]+)*)", rest):
                for p in parent.split(","):
                    b.relation(name, b.resolve(p.strip(), default), "inheritance")
            for parent in re.findall(r"implements\s+([\w.]+(?:\s*,\s*[\w.]+)*)", rest):
                for p in parent.split(","):
                    b.relation(name, b.resolve(p.strip(), "interface"), "realization")
            if skip_bodies and "{" in rest:
                depth, owner = max(rest.count("{") - rest.count("}"), 0), name
            continue
        if diagram_type in ("usecase", "component"):
            found = _SHORT_DECL.match(line)
            if found:
                kind = _shape(found["name"]) or default
                name = b.entity(_bare(found["name"]), kind)
                if found["alias"]:
                    b.alias(found["alias"].strip(), name)
                    b.alias(_bare(found["alias"]), name)
                continue
        if _CONTAINER.match(line):
            continue
        found = _REL.match(line)
        if found:
            _graph_relation(b, found, diagram_type, default)
            continue
        found = _STATE_TEXT.match(line)
        if found and diagram_type == "state":
            b.resolve(found["name"], default)
        elif found and skip_bodies:  # Order : total
            b.attribute(b.resolve(found["name"], default), line.split(":", 1)[1])
    return b


def _graph_relation(b: _Builder, found: re.Match, diagram_type: str, default: str) -> None:
    ends = []
    for token in (found["a"], found["b"]):
        pseudo = diagram_type == "state" and token.startswith("[")
        ends.append(token if pseudo else b.resolve(token, default))
    kind, reverse = _arrow(found["lh"], found["body"], found["rh"])
    label = _label(found["label"])
    marks = (
        _CARDINALITY.get(found["lh"] or "") or _multiplicity(found["ma"]),
        _CARDINALITY.get(found["rh"] or "") or _multiplicity(found["mb"]),
    )
    if diagram_type == "state":
        kind = "transition"
    elif diagram_type == "usecase" and re.search(r"\binclude", label, re.I):
        kind = "include"
    elif diagram_type == "usecase" and re.search(r"\bextend", label, re.I):
        kind = "extend"
    source, target = reversed(ends) if reverse else ends
    b.relation(source, target, kind, label, marks[::-1] if reverse else marks)


def _parse_sequence(lines: list[str]) -> _Builder:
    b = _Builder()
    for line in lines:
        found = _SEQ_DECL.match(line)
        if found:
            first, second = found["first"], found["second"]
            display, code = (second, first) if second and second.startswith('"') else (first, second)
            name = b.entity(_bare(display), found["kw"].lower())
            if code:
                b.alias(_bare(code), name)
            continue
        found = _message(line)
        if found:
            a, z = found["a"], found["b"]
            ends = [b.resolve(t, "participant") if t and t not in "[]?" else None for t in (a, z)]
            source, target = ends if found["lh"] is None or found["rh"] else ends[::-1]
            if source and target:
                b.relation(source, target, "message", _label(found["label"]))
    return b


@dataclass
class _Branches:
    kind: str  # if | loop | repeat | fork | switch
    entry: list[str]
    exits: list[str] = field(default_factory=list)
    has_else: bool = False
    started: bool = True


_ACTION_END = ";|<>/]}"


def _parse_activity(lines: list[str]) -> _Builder:
    b = _Builder()
    prev: list[str] = []
    stack: list[_Branches] = []
    label = ""
    action: list[str] | None = None

    def step(text: str) -> None:
        nonlocal prev, label
        name = b.entity(text, "action")
        for p in prev:
            b.relation(p, name, "flow", label)
        prev, label = [name], ""

    def push(frame: _Branches) -> None:
        stack.append(frame)
        b.branches += 1

    def branch(new_label: str | None, is_else: bool = False) -> None:
        nonlocal prev, label
        if not stack:
            return
        frame = stack[-1]
        if frame.started:
            frame.exits.extend(prev)
        frame.started, frame.has_else = True, frame.has_else or is_else
        prev, label = list(frame.entry), new_label or ""

    def close(kinds: tuple[str, ...]) -> None:
        nonlocal prev
        if not stack or stack[-1].kind not in kinds:
            return
        frame = stack.pop()
        if frame.kind in ("if", "fork", "switch"):
            ends = frame.exits + prev + (frame.entry if frame.kind == "if" and not frame.has_else else [])
        elif frame.kind == "loop":
            ends = prev + frame.entry
        else:
            ends = prev
        prev = list(dict.fromkeys(ends))

    for line in lines:
        if action is not None:  # an action written over several lines
            action.append(line)
            if line[-1] in _ACTION_END:
                step(" ".join(action)[:-1].strip())
                action = None
            continue
        low = line.lower()
        if line.startswith(":"):
            if len(line) > 1 and line[-1] in _ACTION_END:
                step(line[1:-1].strip())
            else:
                action = [line[1:]]
        elif low == "start":
            prev = []
        elif low in ("stop", "end", "kill", "detach"):
            prev = []
        elif found := re.match(r"^if\s*\(.*?\)\s*(?:is\s*\((.*?)\)\s*)?then(?:\s*\((.*?)\))?", line, re.I):
            push(_Branches("if", list(prev)))
            label = found[2] or found[1] or ""
        elif found := re.match(r"^else\s*if\s*\(.*?\)\s*(?:is\s*\((.*?)\)\s*)?then(?:\s*\((.*?)\))?", line, re.I):
            branch(found[2] or found[1])
        elif found := re.match(r"^else\b\s*(?:\((.*?)\))?", line, re.I):
            branch(found[1], is_else=True)
        elif re.match(r"^end\s*if\b", line, re.I):
            close(("if",))
        elif found := re.match(r"^while\s*\(.*?\)\s*(?:is\s*\((.*?)\))?", line, re.I):
            push(_Branches("loop", list(prev)))
            label = found[1] or ""
        elif re.match(r"^end\s*while\b", line, re.I):
            close(("loop",))
        elif re.match(r"^repeat\s*while\b", line, re.I):
            close(("repeat",))
        elif found := re.match(r"^repeat\b\s*(?::(.*?)[;|<>/\]}])?$", line, re.I):
            push(_Branches("repeat", list(prev)))
            if found[1]:
                step(found[1].strip())
        elif re.match(r"^(?:fork|split)\s+again\b", line, re.I):
            branch(None)
        elif re.match(r"^(?:fork|split)$", line, re.I):
            push(_Branches("fork", list(prev)))
        elif re.match(r"^end\s*(?:fork|split|merge)\b", line, re.I):
            close(("fork",))
        elif re.match(r"^switch\s*\(", line, re.I):
            push(_Branches("switch", list(prev), started=False))
        elif found := re.match(r"^case\s*\((.*?)\)", line, re.I):
            branch(found[1])
        elif re.match(r"^end\s*switch\b", line, re.I):
            close(("switch",))
        elif found := re.match(r'^partition\s+("[^"\n]+"|[^{\s]+)', line, re.I):
            b.entity(_bare(found[1]), "partition")
        elif found := re.match(r"^\|(?:#?[\w#]+\|)?([^|]+)\|", line):
            b.entity(found[1].strip(), "swimlane")
        elif found := re.match(r"^-+>\s*(.*?);?$", line):
            label = found[1].strip()
    return b


def analyse(text: str, expected_type: str | None = None) -> Diagram:
    """The type, entities and relations of the diagram PlantUML draws from `text`; never raises."""
    lines, closed, is_uml = _block(text or "")
    lines = _clean(lines)
    complete = closed and _balanced(lines)
    diagram_type = _type(lines, expected_type) if is_uml else "unknown"
    if diagram_type == "unknown":
        return Diagram("unknown", [], [], complete)
    if diagram_type == "sequence":
        built = _parse_sequence(lines)
    elif diagram_type == "activity":
        built = _parse_activity(lines)
    else:
        built = _parse_graph(lines, diagram_type)
    return Diagram(
        diagram_type, list(built.entities.values()), built.relations, complete, list(built.attributes), built.branches
    )
