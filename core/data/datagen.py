"""Generated requirement -> PlantUML pairs for the diagram types without real prose (state, use
case, component, ER) and more of sequence and activity.

Each domain of data/datagen/domains.yaml (banking, hospital, ...) brings its own actors, services,
workflows, lifecycles and tables. For every domain and type the generator draws `per_domain`
distinct diagrams (mostly 3 to 8 entities; 2-entity diagrams are rare) and has a person ask for
each in the words of one of the frames of data/datagen/frames.yaml (at least 30 per type): a user
story ("As a ..., I want ..."), a requirement ("The ... shall ..."), a goal, a story of how things
happen, or terse notes. A frame fills its blanks from a description of the diagram at several
levels of detail, so a request often states the goal and the main parts and leaves the rest of
the design to the model, as a person would. The diagram varies too (titles, notes, groupings,
participant kinds, arrow forms). The output is valid PlantUML 1.2025 (a test checks it with the
jar) and depends only on the seed (one random.Random, no global state).

Entities and relations ([source, target, kind, label]) per type:
- sequence: the participants; one "message" per arrow, sender -> receiver, label = the text
- activity: the action texts; a "flow" from each action to the next, labelled "yes"/"no" when it
  enters the first action of an if/else branch (start, stop and the if itself are no entities);
  two actions of a fork both flow from the action before it
- usecase: actors and use cases; "association" actor -> use case, "include" base -> included,
  "extend" extension -> base, label ""
- state: the states ([*] is none); one "transition" per arrow between two states, label = event
- component: components, interfaces, databases, queues and nodes; "association" for - and -->,
  "dependency" for ..>, label = the arrow's text
- er: the entities; one "association" per crow's foot line, left -> right, label = its text
"""

import random
import re
import string

import yaml

from core.data.rows import Row
from core.paths import DATA_DIR

DOMAINS_FILE = DATA_DIR / "datagen" / "domains.yaml"
FRAMES_FILE = DATA_DIR / "datagen" / "frames.yaml"
GENERATED_TYPES = ("sequence", "activity", "usecase", "state", "component", "er")
STYLES = ("story", "shall", "goal", "narrative", "notes")
PER_DOMAIN = 15

VERBS = ("Draw", "Create", "Produce", "Sketch", "Model", "Make", "Put together", "Give me")
SUBMIT = ("submit", "create", "send", "register")
STORE = ("save", "store", "insert", "persist")
STORED = ("id", "saved", "stored")
DONE = ("confirmed", "accepted", "completed")
AUTH_CALLS = ("verify session", "validate token", "check credentials")
AUTH_REPLIES = ("session valid", "token valid", "user verified")
SHOW = ("confirmation", "result page", "status message")
PROTOCOLS = ("REST", "HTTPS", "gRPC", "GraphQL")
DB_LABELS = ("SQL", "JDBC", "reads/writes")
AUTH_PROTOCOLS = ("OAuth2", "SSO", "OpenID Connect")
NODES = ("AppServer", "BackendCluster", "KubernetesCluster", "ApplicationHost", "CloudRegion")
ARCHITECTS = ("software architect", "DevOps engineer", "platform engineer", "tech lead", "new developer",
              "solution architect", "site reliability engineer")
CARDINALITY = {  # (left-to-right symbol, right-to-left symbol, words)
    "many": (("||--o{", "}o--||", "zero or more"), ("||--|{", "}|--||", "one or more")),
    "one": (("||--||", "||--||", "exactly one"), ("||--o|", "|o--||", "at most one")),
}
# how often a diagram has this many entities (capped by what the vocabulary offers)
SIZES = {2: 1, 3: 4, 4: 6, 5: 6, 6: 5, 7: 3, 8: 2}


def load_domains(path=DOMAINS_FILE) -> dict[str, dict]:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_frames(path=FRAMES_FILE) -> dict[str, list[dict]]:
    """The prompt frames per diagram type: [{"style", "text"}]; `text` has {blanks}."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def generate(seed: int = 0, per_domain: int = PER_DOMAIN) -> list[Row]:
    """Rows for every domain x generated type, `per_domain` distinct diagrams each."""
    rng = random.Random(seed)
    frames = load_frames()
    builders = {
        "sequence": _sequence, "activity": _activity, "usecase": _usecase,
        "state": _state, "component": _component, "er": _er,
    }
    rows: list[Row] = []
    for key, domain in load_domains().items():
        for diagram_type in GENERATED_TYPES:
            seen = set()
            for _ in range(per_domain * 50):
                lines, entities, relations, blanks = builders[diagram_type](rng, domain)
                plantuml = "\n".join(["@startuml", *lines, "@enduml"])
                if plantuml in seen:
                    continue
                seen.add(plantuml)
                blanks.update(domain=domain["name"], system=domain["system"], verb=rng.choice(VERBS))
                rows.append({
                    "prompt": _fill(rng, frames[diagram_type], blanks), "plantuml": plantuml,
                    "diagram_type": diagram_type, "category": key, "source": f"gen:{key}", "origin": "generated",
                    "entities": entities, "relations": relations,
                })
                if len(seen) == per_domain:
                    break
            else:
                raise ValueError(
                    f"{DOMAINS_FILE.name}: {key} yields fewer than {per_domain} distinct {diagram_type} diagrams; "
                    f"add vocabulary"
                )
    return rows


def _fill(rng, frames: list[dict], blanks: dict) -> str:
    """A frame whose blanks are all known and non-empty, filled; sentences start upper case."""
    usable = [f for f in frames if all(blanks.get(name) for name in _names(f["text"]))]
    text = rng.choice(usable)["text"].format(**blanks)
    text = re.sub(r"(^|[.?!]\s+|\n)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text.strip())
    return re.sub(r"[ \t]+", " ", text)


def _names(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _size(rng, low: int, high: int) -> int:
    options = [n for n in SIZES if low <= n <= high] or [high]
    return rng.choices(options, [SIZES.get(n, 1) for n in options])[0]


# ---- prose helpers ----------------------------------------------------------------------------


def _join(items, word: str = "and") -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}"


def _a(word: str) -> str:
    return f"{'an' if word[0].lower() in 'aeiou' else 'a'} {word}"


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _phrase(name: str) -> str:
    """A name as words in a sentence: "Review SLA Report" -> "review SLA report", "BookCopy" -> "book copy"."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    return " ".join(word if word.isupper() and len(word) > 1 else word.lower() for word in spaced.split())


def _plural(word: str) -> str:
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


def _quoted(items) -> list[str]:
    return [f'"{item}"' for item in items]


def _sentences(items) -> str:
    return " ".join(_cap(item.rstrip(".")) + "." for item in items)


def _title(rng, lines: list[str], title: str, chance: float = 0.2) -> list[str]:
    return [f"title {title}", *lines] if rng.random() < chance else lines


# ---- sequence ---------------------------------------------------------------------------------


def _sequence(rng, d):
    actor, action, noun, service = rng.choice(d["requests"])
    frontend = rng.choice(d["frontends"])
    size = _size(rng, 2, 8)
    roles = {"auth": d["auth"], "database": d["services"][service], "notifier": d["notifier"]}
    if service in d["guards"]:
        roles["guard"] = d["guards"][service][0]
    if service in d["externals"]:
        roles["external"] = d["externals"][service][0]
    picked = rng.sample(sorted(roles), min(size - 3, len(roles))) if size > 2 else []

    steps = [("->", actor, frontend, action)]
    if size == 2:
        steps.append(("-->", frontend, actor, f"{noun} {rng.choice(DONE)}"))
    else:
        if "auth" in picked:
            steps += [("->", frontend, roles["auth"], rng.choice(AUTH_CALLS)),
                      ("-->", roles["auth"], frontend, rng.choice(AUTH_REPLIES))]
        steps.append(("->", frontend, service, f"{rng.choice(SUBMIT)} {noun}"))
        work = []
        if "external" in picked:
            external, call, reply = d["externals"][service]
            work += [("->", service, external, call), ("-->", external, service, reply)]
        if "database" in picked:
            db = roles["database"]
            work += [("->", service, db, f"{rng.choice(STORE)} {noun}"),
                     ("-->", db, service, f"{noun} {rng.choice(STORED)}")]
        if "notifier" in picked:
            notify = [("->", service, roles["notifier"], f"notify {actor}")]
            work += [("opt", f"{actor} has notifications enabled", notify)] if rng.random() < 0.4 else notify
        done = ("-->", service, frontend, f"{noun} {rng.choice(DONE)}")
        if "guard" in picked:
            guard, check, result, ok, fail = d["guards"][service]
            steps += [("->", service, guard, check), ("-->", guard, service, result),
                      ("alt", ok, [*work, done], fail, [("-->", service, frontend, f"{noun} rejected")])]
        else:
            steps += [*work, done]
        steps.append(("-->", frontend, actor, rng.choice(SHOW)))

    kinds = {actor: "actor", frontend: rng.choice(("participant", "participant", "boundary"))}
    if size > 2:
        for role in ("auth", "service", "guard", "external", "database", "notifier"):
            if role == "service":
                kinds[service] = rng.choice(("participant", "participant", "control"))
            elif role in picked:
                kinds[roles[role]] = {"database": "database", "notifier": rng.choice(("participant", "queue"))}.get(
                    role, "participant")
    numbered = rng.random() < 0.2
    active = size > 3 and rng.random() < 0.3
    declared = [f"{kind} {name}" for name, kind in kinds.items()]
    if size > 3 and rng.random() < 0.2:  # the back end in a box
        declared = [*declared[:2], 'box "Back end"', *declared[2:], "end box"]
    lines = (["autonumber"] if numbered else []) + declared
    messages = _sequence_lines(steps, "", rng.random() < 0.3)
    lines += _activated(messages, frontend, service) if active else messages
    if size > 3 and rng.random() < 0.25:
        lines.append(rng.choice((f"note over {frontend}, {service} : {action}",
                                 f"note left of {actor} : wants to {action}",
                                 f"note right of {service} : owns the {noun}")))
    lines = _title(rng, lines, _cap(action), 0.15)
    relations = [[a, b, "message", text] for _, a, b, text in _messages(steps)]

    others = [name for name in kinds if name not in (actor, frontend, service)]
    guard = d["guards"].get(service) if "guard" in picked else None
    blanks = {
        "actor": _phrase(actor), "a_actor": _a(_phrase(actor)), "actors": _plural(_phrase(actor)),
        "action": action, "noun": noun, "frontend": frontend, "service": service if size > 2 else "",
        "participants": _join(kinds), "others": _join(others) if others else "",
        "story": _sequence_story(steps, False), "shall_story": _sequence_story(steps, True),
        "gist": _sequence_gist(steps, frontend, service, kinds) if size > 2 else "",
        "check": f"the {noun} only goes through when {guard[3]}; when {guard[4]} the {actor} is told it was rejected"
                 if guard else "",
        "db": roles["database"] if "database" in picked else "",
        "numbered": "Number the messages." if numbered else "",
        "n": str(len(kinds)),
    }
    return lines, list(kinds), relations, blanks


def _sequence_lines(steps, indent, async_notify=False):
    lines = []
    for step in steps:
        if step[0] == "alt":
            _, ok, ok_steps, fail, fail_steps = step
            lines += [f"{indent}alt {ok}", *_sequence_lines(ok_steps, indent + "  ", async_notify),
                      f"{indent}else {fail}", *_sequence_lines(fail_steps, indent + "  ", async_notify), f"{indent}end"]
        elif step[0] == "opt":
            lines += [f"{indent}opt {step[1]}", *_sequence_lines(step[2], indent + "  ", async_notify), f"{indent}end"]
        else:
            arrow, a, b, text = step
            arrow = "->>" if async_notify and text.startswith("notify ") else arrow  # fire and forget
            lines.append(f"{indent}{a} {arrow} {b} : {text}")
    return lines


def _activated(lines: list[str], frontend: str, service: str) -> list[str]:
    """The service's activation bar: from the front end's first call to it until the last reply."""
    first = next(i for i, line in enumerate(lines) if line.startswith(f"{frontend} -> {service} : "))
    return [*lines[:first + 1], f"activate {service}", *lines[first + 1:-1], f"deactivate {service}", lines[-1]]


def _messages(steps):
    for step in steps:
        if step[0] == "alt":
            yield from _messages(step[2])
            yield from _messages(step[4])
        elif step[0] == "opt":
            yield from _messages(step[2])
        else:
            yield step


def _clause(step, shall: bool) -> str:
    if step[0] == "alt":
        _, ok, ok_steps, fail, fail_steps = step
        return (f"if {ok}, {', then '.join(_clause(s, shall) for s in ok_steps)}; "
                f"otherwise, when {fail}, {', then '.join(_clause(s, shall) for s in fail_steps)}")
    if step[0] == "opt":
        return f"only if {step[1]}, {', then '.join(_clause(s, shall) for s in step[2])}"
    arrow, a, b, text = step
    if arrow == "->":
        return f"{a} {'shall ask' if shall else 'asks'} {b} to {text}"
    return f"{a} {'shall return' if shall else 'returns'} \"{text}\" to {b}"


def _sequence_story(steps, shall: bool) -> str:
    return " ".join(_cap(_clause(step, shall)) + "." for step in steps)


def _sequence_gist(steps, frontend, service, kinds) -> str:
    """What happens behind the front end in one or two sentences, without every message."""
    helpers = [name for name in kinds if name not in (frontend, service) and kinds[name] != "actor"]
    text = f"the {frontend} hands the request to the {service}"
    if helpers:
        text += f", which works with {_join(helpers)}"
    return text


# ---- activity ---------------------------------------------------------------------------------


def _actions(steps) -> list[str]:
    actions = []
    for step in steps:
        actions += [step] if isinstance(step, str) else [*step["then"], *step.get("else", [])]
    return actions


def _activity(rng, d):
    flow = rng.choice(d["workflows"])
    ends = [k for k in range(1, len(flow["steps"]) + 1) if 2 <= len(_actions(flow["steps"][:k])) <= 8]
    weights = [SIZES.get(len(_actions(flow["steps"][:k])), 1) for k in ends]
    steps = flow["steps"][:rng.choices(ends, weights)[0]]
    actor, name = flow["actor"], flow["name"]

    lane, group = rng.random() < 0.25, rng.random() < 0.2
    indent0 = "  " if group else ""
    lines, relations = [f"|{actor}|"] if lane else [], []
    lines += ["start"]
    if group:
        lines.append(f'partition "{_cap(name)}" {{')
    sources = []  # (action, label) pairs the next action flows from
    noted = rng.random() < 0.2

    def follow(action, froms, indent):
        lines.append(f"{indent}:{action};")
        relations.extend([source, action, "flow", label] for source, label in froms)
        return [(action, "")]

    # the last two steps in parallel, when both are plain actions after a first one
    parallel = (len(steps) >= 3 and all(isinstance(s, str) for s in steps[-2:]) and rng.random() < 0.25)
    for i, step in enumerate(steps):
        if parallel and i == len(steps) - 2:
            lines.append(f"{indent0}fork")
            ends = follow(step, sources, indent0 + "  ")
            lines.append(f"{indent0}fork again")
            ends += follow(steps[-1], sources, indent0 + "  ")
            lines.append(f"{indent0}end fork")
            break
        if isinstance(step, str):
            sources = follow(step, sources, indent0)
            if noted:
                lines.append(f"{indent0}note {rng.choice(('right', 'left'))}: done by the {_phrase(actor)}")
                noted = False
            continue
        lines.append(f"{indent0}if ({step['if']}) then (yes)")
        yes = [(source, "yes") for source, _ in sources]
        for action in step["then"]:
            yes = follow(action, yes, indent0 + "  ")
        no = [(source, "") for source, _ in sources]
        if "else" in step:
            lines.append(f"{indent0}else (no)")
            no = [(source, "no") for source, _ in sources]
            for action in step["else"]:
                no = follow(action, no, indent0 + "  ")
        lines.append(f"{indent0}endif")
        sources = yes + no
    if group:
        lines.append("}")
    lines.append(rng.choice(("stop", "stop", "stop", "end")))
    lines = _title(rng, lines, _cap(name), 0.15)

    actions = _actions(steps)
    together = f' "{steps[-2]}" and "{steps[-1]}" can happen at the same time.' if parallel else ""
    decisions = [step for step in steps if not isinstance(step, str)]
    plain = [_lower(s) for s in steps if isinstance(s, str)]
    blanks = {
        "name": name, "actor": _phrase(actor), "a_actor": _a(_phrase(actor)), "actors": _plural(_phrase(actor)),
        "story": _activity_story(steps) + together, "shall_story": _activity_shall(steps, _phrase(actor)) + together,
        "outline": _join(plain[:3]) if len(plain) >= 2 else "",
        "first": _lower(actions[0]),
        "last": _lower(steps[-1]) if isinstance(steps[-1], str) and len(actions) > 1 else "",  # not inside a branch
        "decision": _decision(decisions[0]) if decisions else "",
        "notes": "\n".join(f"- {a}" for a in actions), "n": str(len(actions)),
    }
    return lines, actions, relations, blanks


def _decision(step) -> str:
    then = _join(map(_lower, step["then"]))
    otherwise = _join(map(_lower, step["else"])) if "else" in step else "we just carry on"
    return f"the question is \"{step['if']}\": if so, {then}; if not, {otherwise}"


def _activity_story(steps) -> str:
    sentences: list[str] = []
    run: list[str] = []
    for step in steps:
        if isinstance(step, str):
            run.append(_lower(step))
            continue
        if run:
            sentences.append(("First " if not sentences else "Then ") + ", then ".join(run) + ".")
            run = []
        otherwise = ", then ".join(map(_lower, step["else"])) if "else" in step else "carry on"
        then = ", then ".join(map(_lower, step["then"]))
        sentences.append(f"Ask \"{step['if']}\" If yes, {then}; if no, {otherwise}.")
    if run:
        sentences.append(("First " if not sentences else "Afterwards ") + ", then ".join(run) + ".")
    return " ".join(sentences)


def _activity_shall(steps, actor) -> str:
    sentences = []
    for step in steps:
        if isinstance(step, str):
            sentences.append(f"The {actor} shall {_lower(step)}.")
        else:
            text = f"If the answer to \"{step['if']}\" is yes, the {actor} shall {_join(map(_lower, step['then']))}"
            text += f"; otherwise the {actor} shall {_join(map(_lower, step['else']))}." if "else" in step else "."
            sentences.append(text)
    return " ".join(sentences)


# ---- use case ---------------------------------------------------------------------------------


def _usecase(rng, d):
    size = _size(rng, 2, 8)
    cases = d["usecases"]
    first = rng.choice(list(cases))
    actors, uses, includes, extends = [first], [(first, rng.choice(cases[first]))], [], []

    def names():
        found = []
        for name in [*(u for _, u in uses), *(n for pair in includes + extends for n in pair)]:
            if name not in found:
                found.append(name)
        return found

    while len(actors) + len(names()) < size:
        count, known = len(actors) + len(names()), names()
        options = [("uses", a, u) for a in actors for u in cases[a] if (a, u) not in uses]
        if count + 2 <= size:
            options += [("actor", a, None) for a in cases if a not in actors]
        options += [("include", b, i) for b, i in d["includes"] if b in known and (b, i) not in includes]
        options += [("extend", b, e) for b, e in d["extends"] if b in known and (b, e) not in extends]
        if not options:
            break
        kind, a, b = rng.choice(options)
        if kind == "actor":
            actors.append(a)
            uses.append((a, rng.choice(cases[a])))
        else:
            {"uses": uses, "include": includes, "extend": extends}[kind].append((a, b))

    cases_shown = names()
    leftright = rng.random() < 0.3
    boundary = rng.choice(("rectangle", "rectangle", "package", None, None))
    arrow = rng.choice(("-->", "-->", "--", "->"))
    dots = rng.choice((".>", "..>"))
    declared = [f"usecase ({u})" for u in cases_shown]
    lines = (["left to right direction"] if leftright else [])
    lines += [rng.choice(("skinparam actorStyle awesome", "skinparam packageStyle rectangle"))] if rng.random() < 0.15 else []
    lines += [f"actor {a}" for a in actors]
    lines += [f'{boundary} "{d["system"]}" {{', *(f"  {line}" for line in declared), "}"] if boundary else declared
    lines += [f"{a} {arrow} ({u})" for a, u in uses]
    lines += [f"({b}) {dots} ({i}) : <<include>>" for b, i in includes]
    lines += [f"({e}) {dots} ({b}) : <<extend>>" for b, e in extends]
    lines = _title(rng, lines, d["system"], 0.15)
    relations = ([[a, u, "association", ""] for a, u in uses] + [[b, i, "include", ""] for b, i in includes]
                 + [[e, b, "extend", ""] for b, e in extends])

    per_actor = {a: [u for who, u in uses if who == a] for a in actors}
    can = [f"{_plural(_phrase(a))} can {_join(map(_phrase, us))}" for a, us in per_actor.items()]
    stories = [f"As {_a(_phrase(a))}, I want to {_join(map(_phrase, us))}." for a, us in per_actor.items()]
    shalls = [f"The {d['system']} shall let {_plural(_phrase(a))} {_join(map(_phrase, us))}."
              for a, us in per_actor.items()]
    links = [rng.choice(('"{b}" always includes "{i}"', 'every time someone does "{b}", "{i}" happens as part of it',
                         '"{b}" needs "{i}" first')).format(b=b, i=i) for b, i in includes]
    links += [rng.choice(('"{e}" is an optional extra of "{b}"', 'while doing "{b}" one may also "{e}"',
                          '"{e}" extends "{b}"')).format(b=b, e=e) for b, e in extends]
    blanks = {
        "a_actor": _a(_phrase(first)), "actors": _join(_plural(_phrase(a)) for a in actors),
        "first_wants": _join(map(_phrase, per_actor[first])),
        "can": "; ".join(can), "stories": " ".join(stories), "shalls": " ".join(shalls),
        "links": _sentences(links) if links else "",
        "cases": _join(_quoted(cases_shown)),
        "layout": "Lay it out left to right." if leftright else "",
        "boundary": f'Put the use cases inside a "{d["system"]}" boundary.' if boundary else "",
        "notes": "\n".join([*(f"- {a}: {', '.join(us)}" for a, us in per_actor.items()),
                            *(f"- {b} includes {i}" for b, i in includes), *(f"- {e} extends {b}" for b, e in extends)]),
        "n": str(len(actors) + len(cases_shown)),
    }
    return lines, actors + cases_shown, relations, blanks


# ---- state ------------------------------------------------------------------------------------


def _state(rng, d):
    cycle = rng.choice(d["lifecycles"])
    order = []
    for source, target, _ in cycle["transitions"]:
        order += [s for s in (source, target) if s not in order]
    states = order[:_size(rng, 2, min(8, len(order)))]
    moves = [(a, b, e) for a, b, e in cycle["transitions"] if a in states and b in states]
    finals = [s for s in states if all(a != s for a, _, _ in moves)]
    arrow = rng.choice(("-->", "-->", "->", "-down->"))
    lines = []
    if rng.random() < 0.25:
        lines += ["hide empty description"]
    if rng.random() < 0.2:
        lines += [f'state "{_cap(_phrase(s))}" as {s}' for s in states if _phrase(s) != s.lower()] or []
    lines += [f"[*] {arrow} {states[0]}", *(f"{a} {arrow} {b} : {e}" for a, b, e in moves)]
    lines += [f"{s} {arrow} [*]" for s in finals]
    if finals and rng.random() < 0.2:
        lines.append(f"{finals[0]} : the {_phrase(cycle['object'])} is done")
    if rng.random() < 0.15:
        lines.append(f"{states[0]} : entry / record the new {_phrase(cycle['object'])}")
    if len(states) > 2 and rng.random() < 0.15:
        lines.append(f"note right of {states[1]} : {_phrase(cycle['actor'])} decides here")
    lines = _title(rng, lines, f"{_cap(_phrase(cycle['object']))} lifecycle", 0.15)
    relations = [[a, b, "transition", e] for a, b, e in moves]

    thing = _phrase(cycle["object"])
    branching = [s for s in states if sum(a == s for a, _, _ in moves) >= 2]
    path = [states[0]]
    while True:
        nxt = [b for a, b, _ in moves if a == path[-1] and b not in path]
        if not nxt:
            break
        path.append(nxt[0])
    events = [rng.choice(('"{e}" takes it from {a} to {b}', 'on "{e}" it goes from {a} to {b}',
                          '{a} becomes {b} when "{e}" happens')).format(a=a, b=b, e=e) for a, b, e in moves]
    branch = ""
    if branching:
        out = [(b, e) for a, b, e in moves if a == branching[0]]
        branch = f"from {branching[0]} it can go to {_join((b for b, _ in out), 'or')} ({_join(_quoted(e for _, e in out), 'or')})"
    blanks = {
        "thing": thing, "things": _plural(thing), "a_thing": _a(thing), "Thing": _cap(thing),
        "actor": _phrase(cycle["actor"]), "a_actor": _a(_phrase(cycle["actor"])),
        "initial": states[0], "states": _join(states), "finals": _join(finals, "or") if finals else "",
        "path": " -> ".join(path) if len(path) > 2 else "", "path_words": _join(path[1:]) if len(path) > 2 else "",
        "events": _sentences(events), "some_events": _sentences(events[:2]) if len(events) > 2 else "",
        "branch": branch, "event_names": _join(_quoted(e for _, _, e in moves)),
        "shalls": " ".join(f'On "{e}", a {thing} in {a} shall move to {b}.' for a, b, e in moves),
        "notes": "\n".join(f"- {a} -> {b}: {e}" for a, b, e in moves),
        "n": str(len(states)),
    }
    return lines, states, relations, blanks


# ---- component --------------------------------------------------------------------------------

_EDGE_PROSE = {  # how an edge is said: (present tense, requirement)
    "calls": ("{a} calls {b} over {label}", "{a} shall call {b} over {label}"),
    "stores": ("{a} keeps its data in {b} ({label})", "{a} shall store its data in {b} ({label})"),
    "depends": ("{a} relies on the external {b} to {label}", "{a} shall use the external {b} to {label}"),
    "checks": ("{a} asks {b} to {label}", "{a} shall call {b} to {label}"),
    "auth": ("{a} signs users in through {b} ({label})", "{a} shall authenticate users with {b} via {label}"),
    "publishes": ("{a} publishes {label} to {b}", "{a} shall publish {label} to {b}"),
    "provides": ("{a} offers the {b} interface", "{a} shall provide the {b} interface"),
    "uses": ("{a} goes through the {b} interface", "{a} shall use the {b} interface"),
}


def _component(rng, d):
    size = _size(rng, 2, 8)
    frontend, first = rng.choice(d["frontends"]), rng.choice(list(d["services"]))
    kinds = {frontend: "frontend", first: "service"}  # name -> frontend|service|backend|interface|database|external|queue
    edges = [[frontend, first, "-->", rng.choice(PROTOCOLS), "calls"]]  # [a, b, arrow, label, how it is said]
    node = None
    while len(kinds) + (node is not None) < size:
        role, owner, name = rng.choice(_component_options(d, kinds, node))
        if role == "node":
            node = rng.choice(NODES)
            continue
        services = [n for n, kind in kinds.items() if kind == "service"]
        kinds[name] = "backend" if role in ("guard", "auth") else role
        if role == "database":
            edges.append([owner, name, "-->", rng.choice(DB_LABELS), "stores"])
        elif role == "interface":
            edges.append([owner, name, "-", "", "provides"])
            for edge in edges:  # frontends now reach the service through its interface
                if edge[1] == owner and kinds[edge[0]] == "frontend":
                    edge[1:] = [name, "..>", "uses", "uses"]
        elif role == "external":
            edges.append([owner, name, "..>", d["externals"][owner][1], "depends"])
        elif role == "guard":
            edges.append([owner, name, "-->", d["guards"][owner][1], "checks"])
        elif role == "service":
            edges.append([rng.choice([frontend, *services]), name, "-->", rng.choice(PROTOCOLS), "calls"])
        elif role == "frontend":
            target = rng.choice(services)
            api = d["apis"].get(target)
            if api in kinds:
                edges.append([name, api, "..>", "uses", "uses"])
            else:
                edges.append([name, target, "-->", rng.choice(PROTOCOLS), "calls"])
        elif role == "auth":
            edges.append([frontend, name, "-->", rng.choice(AUTH_PROTOCOLS), "auth"])
        else:
            kinds[name] = rng.choice(("backend", "queue"))
            edges.append([rng.choice(services), name, "..>", "events", "publishes"])

    def named(*wanted):
        return [name for name, kind in kinds.items() if kind in wanted]

    bracket = rng.random() < 0.5

    def ref(name):
        return name if kinds[name] in ("interface", "database", "queue") or not bracket else f"[{name}]"

    backend = named("service", "backend")
    grouped = rng.random() < 0.3 and len(named("frontend")) > 1
    fronts = [f"component {n}" for n in named("frontend")]
    lines = [f'package "Clients" {{', *(f"  {line}" for line in fronts), "}"] if grouped else fronts
    lines += [f"interface {n}" for n in named("interface")]
    if node:
        lines += [f"node {node} {{", *(f"  component {n}" for n in backend), "}"]
    else:
        lines += [f"component {n}" for n in backend]
    lines += [f"database {n}" for n in named("database")] + [f"queue {n}" for n in named("queue")]
    externals = named("external")
    if externals and rng.random() < 0.4:
        lines += ['cloud "External" {', *(f"  component {n}" for n in externals), "}"]
    else:
        lines += [f"component {n} <<external>>" for n in externals]
    lines += [f"{ref(a)} {arrow} {ref(b)}" + (f" : {label}" if label else "") for a, b, arrow, label, _ in edges]
    lines = _title(rng, lines, d["system"], 0.15)
    relations = [[a, b, "dependency" if arrow == "..>" else "association", label] for a, b, arrow, label, _ in edges]
    entities = [*named("frontend"), *named("interface"), *([node] if node else []), *backend,
                *named("database"), *named("queue"), *named("external")]

    def said(shall, chosen):
        sentences = [_EDGE_PROSE[how][shall].format(a=a, b=b, label=label) for a, b, _, label, how in chosen]
        if node:
            verb = "shall run" if shall else "runs" if len(backend) == 1 else "run"
            sentences.append(f"{_join(backend)} {verb} on the {node} node")
        return _sentences(sentences)

    goals = [f"{_plural(_phrase(actor))} {action}" for actor, action, _, service in d["requests"] if service in kinds]
    blanks = {
        "architect": _a(rng.choice(ARCHITECTS)), "frontend": frontend, "parts": _join(entities),
        "backend": _join(backend), "edges": said(False, edges), "shall_edges": said(True, edges),
        "some_edges": said(False, edges[:2]) if len(edges) > 2 else "",
        "goal": f"it is where {_join(goals[:2])}" if goals else "",
        "stores": _join(named("database")) if named("database") else "",
        "externals": _join(externals) if externals else "",
        "notes": "\n".join(f"- {a} {'depends on' if arrow == '..>' else '->'} {b}" + (f" ({label})" if label else "")
                           for a, b, arrow, label, _ in edges),
        "n": str(len(entities)),
    }
    return lines, entities, relations, blanks


def _component_options(d, kinds, node):
    """What can join the diagram next: (role, the service it belongs to, its name)."""
    parts = []
    for s in (name for name, kind in kinds.items() if kind == "service"):
        parts.append(("database", s, d["services"][s]))
        parts += [("interface", s, d["apis"][s])] if s in d["apis"] else []
        parts += [("external", s, d["externals"][s][0])] if s in d["externals"] else []
        parts += [("guard", s, d["guards"][s][0])] if s in d["guards"] else []
    parts += [("service", None, s) for s in d["services"]] + [("frontend", None, f) for f in d["frontends"]]
    parts += [("auth", None, d["auth"]), ("notifier", None, d["notifier"])]
    return [part for part in parts if part[2] not in kinds] + ([("node", None, None)] if node is None else [])


# ---- entity-relationship ----------------------------------------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _er(rng, d):
    tables, links = d["tables"], d["links"]
    chosen = [rng.choice(list(tables))]
    size = _size(rng, 2, min(8, len(tables)))
    while len(chosen) < size:
        a, b, _, _ = rng.choice([link for link in links if (link[0] in chosen) != (link[1] in chosen)])
        chosen.append(b if a in chosen else a)
    names = [t for t in tables if t in chosen]
    used = [(a, b, *rng.choice(CARDINALITY[card]), label) for a, b, card, label in links if a in chosen and b in chosen]

    columns = {t: [tuple(c.split()) for c in tables[t].split(", ")] for t in names}
    key_type = rng.choice(("int", "int", "number", "uuid"))
    mandatory = rng.random() < 0.5
    lines = ["hide circle"] if rng.random() < 0.25 else []
    lines += ["skinparam linetype ortho"] if rng.random() < 0.2 else []
    for t in names:
        keys = [f"  * {_snake(a)}_id : {key_type} <<FK>>" for a, b, *_ in used if b == t]
        attributes = [f"  {'* ' if mandatory and i == 0 else ''}{column} : {kind}"
                      for i, (column, kind) in enumerate(columns[t])]
        lines += [f"entity {t} {{", f"  * id : {key_type} <<PK>>", "  --", *keys, *attributes, "}"]
    reverse = rng.random() < 0.3
    relations = []
    for a, b, forward, backward, _, label in used:
        if reverse:
            lines.append(f"{b} {backward} {a} : {label}")
            relations.append([b, a, "association", label])
        else:
            lines.append(f"{a} {forward} {b} : {label}")
            relations.append([a, b, "association", label])
    lines = _title(rng, lines, f"{_cap(d['name'])} data", 0.15)

    typed = rng.random() < 0.5
    described = [f"{t} ({', '.join(f'{c} {kind}' if typed else c for c, kind in columns[t])})" for t in names]
    facts = [rng.choice(("each {a} {label} {many} {b}", "{an_a} {label} {many} {b}",
                         "one {a} {label} {many} {b}")).format(
        a=_phrase(a), an_a=_a(_phrase(a)), b=_plural(_phrase(b)) if "more" in many else _phrase(b), many=many,
        label=label) for a, b, _, _, many, label in used]
    blanks = {
        "entities": _join(names), "described": _join(described), "facts": _sentences(facts) if facts else "",
        "some_facts": _sentences(facts[:2]) if len(facts) > 2 else "",
        "keys": f"Use {key_type} ids as primary keys and a foreign key on the many side." if used else "",
        "main": _phrase(names[0]), "mains": _plural(_phrase(names[0])),
        "notes": "\n".join([*(f"- {text}" for text in described),
                            *(f"- {a} {label} {b}: one to {many}" for a, b, _, _, many, label in used)]),
        "n": str(len(names)),
    }
    return lines, names, relations, blanks
