"""Generated requirement -> PlantUML pairs for the diagram types PlantUCD lacks: sequence,
activity, usecase, state, component and er.

Each domain of data/datagen/domains.yaml (banking, hospital, ...) brings its own actors, services,
workflows, lifecycles and tables. For every domain and type the generator draws `per_domain`
distinct diagrams of 2 to 8 entities and phrases each request in one of four styles: imperative
("Draw a ..."), user story ("As a ..., I want ..."), requirement ("The ... shall ...") or terse
bullets. A prompt names every entity of its diagram and holds no PlantUML syntax. The output is
valid PlantUML 1.2025 and depends only on the seed (one random.Random, no global state).

Entities and relations ([source, target, kind, label]) per type:
- sequence: the participants; one "message" per arrow, sender -> receiver, label = the text
- activity: the action texts; a "flow" from each action to the next, labelled "yes"/"no" when it
  enters the first action of an if/else branch (start, stop and the if itself are no entities)
- usecase: actors and use cases; "association" actor -> use case, "include" base -> included,
  "extend" extension -> base, label ""
- state: the states ([*] is none); one "transition" per arrow between two states, label = event
- component: components, interfaces, databases and nodes; "association" for - and -->,
  "dependency" for ..>, label = the arrow's text
- er: the entities; one "association" per crow's foot line, left -> right, label = its text
"""

import random
import re

import yaml

from core.paths import DATA_DIR

DOMAINS_FILE = DATA_DIR / "datagen" / "domains.yaml"
GENERATED_TYPES = ("sequence", "activity", "usecase", "state", "component", "er")
STYLES = ("imperative", "story", "shall", "bullets")

VERBS = ("Draw", "Create", "Produce", "Generate", "Model", "Sketch")
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
ARCHITECTS = ("software architect", "DevOps engineer", "platform engineer", "tech lead")
CARDINALITY = {
    "many": (("||--o{", "zero or more"), ("||--|{", "one or more")),
    "one": (("||--||", "exactly one"), ("||--o|", "at most one")),
}


def load_domains(path=DOMAINS_FILE) -> dict[str, dict]:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def generate(seed: int = 0, per_domain: int = 5) -> list[dict]:
    """Rows for every domain x generated type, `per_domain` distinct diagrams each."""
    rng = random.Random(seed)
    builders = {
        "sequence": _sequence, "activity": _activity, "usecase": _usecase,
        "state": _state, "component": _component, "er": _er,
    }
    rows = []
    for key, domain in load_domains().items():
        for diagram_type in GENERATED_TYPES:
            seen = set()
            for _ in range(per_domain * 50):
                prompt, lines, entities, relations = builders[diagram_type](rng, domain, rng.choice(STYLES))
                plantuml = "\n".join(["@startuml", *lines, "@enduml"])
                if plantuml in seen:
                    continue
                seen.add(plantuml)
                rows.append({
                    "prompt": prompt, "plantuml": plantuml, "diagram_type": diagram_type,
                    "category": key, "source": f"gen:{key}", "origin": "generated", "entities": entities, "relations": relations,
                })
                if len(seen) == per_domain:
                    break
            else:
                raise ValueError(
                    f"{DOMAINS_FILE.name}: {key} yields fewer than {per_domain} distinct {diagram_type} diagrams; "
                    f"add vocabulary"
                )
    return rows


# ---- prose helpers ----------------------------------------------------------------------------


def _join(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _a(word: str) -> str:
    return f"{'an' if word[0].lower() in 'aeiou' else 'a'} {word}"


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _phrase(name: str) -> str:
    """A title-case name as words in a sentence: "Review SLA Report" -> "review SLA report"."""
    return " ".join(word if word.isupper() and len(word) > 1 else word.lower() for word in name.split())


def _quoted(items) -> list[str]:
    return [f'"{item}"' for item in items]


# ---- sequence ---------------------------------------------------------------------------------


def _sequence(rng, d, style):
    actor, action, noun, service = rng.choice(d["requests"])
    frontend = rng.choice(d["frontends"])
    size = rng.randint(2, 8)
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

    kinds = {actor: "actor", frontend: "participant"}
    if size > 2:
        for role in ("auth", "service", "guard", "external", "database", "notifier"):
            if role == "service":
                kinds[service] = "participant"
            elif role in picked:
                kinds[roles[role]] = "database" if role == "database" else "participant"
    numbered = rng.random() < 0.2
    lines = (["autonumber"] if numbered else []) + [f"{kind} {name}" for name, kind in kinds.items()]
    lines += _sequence_lines(steps, "")
    relations = [[a, b, "message", text] for _, a, b, text in _messages(steps)]

    db = roles["database"] if "database" in picked else None
    shown = f"Show {actor} as an actor" + (f" and {db} as a database." if db else ".")
    number = " Number the messages." if numbered else ""
    if style == "imperative":
        prompt = (f"{rng.choice(VERBS)} a sequence diagram for {d['name']}: how {_a(actor)} can {action} "
                  f"through the {frontend}. {shown} {_sequence_story(steps, False)}{number}")
    elif style == "story":
        prompt = (f"As {_a(actor)}, I want to {action} in the {frontend}. {_sequence_story(steps, False)} "
                  f"Model this interaction as a sequence diagram. {shown}{number}")
    elif style == "shall":
        prompt = (f"The {d['system']} shall let {_a(actor)} {action} via the {frontend}. "
                  f"{_sequence_story(steps, True)} Provide a UML sequence diagram. {shown}{number}")
    else:
        listed = [f"{name} ({kind})" if kind != "participant" else name for name, kind in kinds.items()]
        bullets = [f"- {_clause(step, False)}" for step in steps] + (["- number the messages"] if numbered else [])
        prompt = "\n".join([f"Sequence diagram, {d['name']}", f"Participants: {', '.join(listed)}", *bullets])
    return prompt, lines, list(kinds), relations


def _sequence_lines(steps, indent):
    lines = []
    for step in steps:
        if step[0] == "alt":
            _, ok, ok_steps, fail, fail_steps = step
            lines += [f"{indent}alt {ok}", *_sequence_lines(ok_steps, indent + "  "),
                      f"{indent}else {fail}", *_sequence_lines(fail_steps, indent + "  "), f"{indent}end"]
        elif step[0] == "opt":
            lines += [f"{indent}opt {step[1]}", *_sequence_lines(step[2], indent + "  "), f"{indent}end"]
        else:
            arrow, a, b, text = step
            lines.append(f"{indent}{a} {arrow} {b} : {text}")
    return lines


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


# ---- activity ---------------------------------------------------------------------------------


def _actions(steps) -> list[str]:
    actions = []
    for step in steps:
        actions += [step] if isinstance(step, str) else [*step["then"], *step.get("else", [])]
    return actions


def _activity(rng, d, style):
    flow = rng.choice(d["workflows"])
    ends = [k for k in range(1, len(flow["steps"]) + 1) if 2 <= len(_actions(flow["steps"][:k])) <= 8]
    steps = flow["steps"][:rng.choice(ends)]

    lines, relations = ["start"], []
    sources = []  # (action, label) pairs the next action flows from

    def follow(action, froms, indent=""):
        lines.append(f"{indent}:{action};")
        relations.extend([source, action, "flow", label] for source, label in froms)
        return [(action, "")]

    for step in steps:
        if isinstance(step, str):
            sources = follow(step, sources)
            continue
        lines.append(f"if ({step['if']}) then (yes)")
        yes = [(source, "yes") for source, _ in sources]
        for action in step["then"]:
            yes = follow(action, yes, "  ")
        no = [(source, "") for source, _ in sources]
        if "else" in step:
            lines.append("else (no)")
            no = [(source, "no") for source, _ in sources]
            for action in step["else"]:
                no = follow(action, no, "  ")
        lines.append("endif")
        sources = yes + no
    lines.append("stop")

    actor, name = flow["actor"], flow["name"]
    if style == "imperative":
        prompt = (f"{rng.choice(VERBS)} an activity diagram that shows how to {name} in {d['name']}. "
                  f"{_activity_story(steps)}")
    elif style == "story":
        prompt = f"As {_a(actor)}, I need the process to {name} drawn as an activity diagram. {_activity_story(steps)}"
    elif style == "shall":
        prompt = (f"The {d['system']} shall support the workflow to {name}. {_activity_shall(steps, actor)} "
                  f"Model it as an activity diagram.")
    else:
        bullets = []
        for step in steps:
            if isinstance(step, str):
                bullets.append(f"- {step}")
            else:
                bullets += [f"- decision: {step['if']}", f"  - yes: {', then '.join(step['then'])}"]
                bullets += [f"  - no: {', then '.join(step['else'])}"] if "else" in step else ["  - no: continue"]
        prompt = "\n".join([f"Activity diagram: {name} ({d['name']})", *bullets])
    return prompt, lines, _actions(steps), relations


def _activity_story(steps) -> str:
    sentences, run = [], []
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


def _usecase(rng, d, style):
    size = rng.randint(2, 8)
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
    leftright, boundary = rng.random() < 0.3, rng.random() < 0.5
    declared = [f"usecase ({u})" for u in cases_shown]
    lines = (["left to right direction"] if leftright else []) + [f"actor {a}" for a in actors]
    lines += [f'rectangle "{d["system"]}" {{', *(f"  {line}" for line in declared), "}"] if boundary else declared
    lines += [f"{a} --> ({u})" for a, u in uses]
    lines += [f"({b}) .> ({i}) : <<include>>" for b, i in includes]
    lines += [f"({e}) .> ({b}) : <<extend>>" for b, e in extends]
    relations = ([[a, u, "association", ""] for a, u in uses] + [[b, i, "include", ""] for b, i in includes]
                 + [[e, b, "extend", ""] for b, e in extends])

    per_actor = {a: [u for who, u in uses if who == a] for a in actors}
    links = [f'"{b}" always includes "{i}".' for b, i in includes]
    links += [f'"{e}" optionally extends "{b}".' for b, e in extends]
    layout = ([f'Draw the use cases inside a system boundary named "{d["system"]}".'] if boundary else [])
    layout += ["Lay the diagram out left to right."] if leftright else []
    if style == "imperative":
        said = [f"The {a} can {_join(_quoted(us))}." for a, us in per_actor.items()]
        prompt = " ".join([f"{rng.choice(VERBS)} a use case diagram for the {d['system']}.", *said, *links, *layout])
    elif style == "story":
        said = [f"As {_a(a)}, I want to {_join(map(_phrase, us))}." for a, us in per_actor.items()]
        prompt = " ".join([*said, *links, "Show these user stories in a use case diagram.", *layout])
    elif style == "shall":
        said = [f"The {d['system']} shall allow {_a(a)} to {_join(map(_phrase, us))}." for a, us in per_actor.items()]
        shall = [f'"{b}" shall include "{i}".' for b, i in includes] + [f'"{e}" may extend "{b}".' for b, e in extends]
        prompt = " ".join([*said, *shall, "Provide the use case diagram.", *layout])
    else:
        bullets = [f"- {a}: {', '.join(us)}" for a, us in per_actor.items()]
        bullets += [f"- {b} includes {i}" for b, i in includes] + [f"- {e} extends {b}" for b, e in extends]
        bullets += [f"- system boundary: {d['system']}"] if boundary else []
        bullets += ["- left to right"] if leftright else []
        prompt = "\n".join([f"Use case diagram: {d['system']}", f"Actors: {', '.join(actors)}", *bullets])
    return prompt, lines, actors + cases_shown, relations


# ---- state ------------------------------------------------------------------------------------


def _state(rng, d, style):
    cycle = rng.choice(d["lifecycles"])
    order = []
    for source, target, _ in cycle["transitions"]:
        order += [s for s in (source, target) if s not in order]
    states = order[:rng.randint(2, min(8, len(order)))]
    moves = [(a, b, e) for a, b, e in cycle["transitions"] if a in states and b in states]
    finals = [s for s in states if all(a != s for a, _, _ in moves)]
    lines = [f"[*] --> {states[0]}", *(f"{a} --> {b} : {e}" for a, b, e in moves), *(f"{s} --> [*]" for s in finals)]
    relations = [[a, b, "transition", e] for a, b, e in moves]

    thing = cycle["object"]
    template = rng.choice(('{a} goes to {b} on "{e}".', 'The event "{e}" moves it from {a} to {b}.'))
    said = [f"{_cap(_a(thing))} starts as {states[0]}.", *(template.format(a=a, b=b, e=e) for a, b, e in moves)]
    said += [f"{_join(finals)} {'is' if len(finals) == 1 else 'are'} final."] if finals else []
    if style == "imperative":
        prompt = " ".join([f"{rng.choice(VERBS)} a state diagram for {_a(thing)} in {d['name']}.", *said])
    elif style == "story":
        prompt = " ".join([f"As {_a(cycle['actor'])}, I want to follow each {thing} through its lifecycle.", *said,
                           "Capture it as a state machine diagram."])
    elif style == "shall":
        shall = [f'On "{e}", {a} shall change to {b}.' for a, b, e in moves]
        shall += [f"{_join(finals)} shall end the lifecycle."] if finals else []
        prompt = " ".join([f"The {d['system']} shall track every {thing} through the states {_join(states)}.",
                           f"A new {thing} shall start as {states[0]}.", *shall, "Provide the state diagram."])
    else:
        bullets = [f"- initial: {states[0]}", *(f'- {a} to {b} on "{e}"' for a, b, e in moves)]
        bullets += [f"- final: {', '.join(finals)}"] if finals else []
        prompt = "\n".join([f"State machine: {thing} ({d['name']})", *bullets])
    return prompt, lines, states, relations


# ---- component --------------------------------------------------------------------------------

_EDGE_PROSE = {  # how an edge is said: (present tense, requirement)
    "calls": ("{a} calls {b} over {label}", "{a} shall call {b} over {label}"),
    "stores": ("{a} stores data in the {b} database ({label})", "{a} shall store data in the {b} database ({label})"),
    "depends": ("{a} depends on the external system {b} to {label}",
                "{a} shall depend on the external system {b} to {label}"),
    "checks": ("{a} calls {b} to {label}", "{a} shall call {b} to {label}"),
    "auth": ("{a} authenticates users with {b} via {label}", "{a} shall authenticate users with {b} via {label}"),
    "publishes": ("{a} publishes {label} to {b}", "{a} shall publish {label} to {b}"),
    "provides": ("{a} provides the {b} interface", "{a} shall provide the {b} interface"),
    "uses": ("{a} uses the {b} interface", "{a} shall use the {b} interface"),
}


def _component(rng, d, style):
    size = rng.randint(2, 8)
    frontend, first = rng.choice(d["frontends"]), rng.choice(list(d["services"]))
    kinds = {frontend: "frontend", first: "service"}  # name -> frontend|service|backend|interface|database|external
    edges = [[frontend, first, "-->", rng.choice(PROTOCOLS), "calls"]]  # [a, b, arrow, label, how it is said]
    node = None
    while len(kinds) + (node is not None) < size:
        role, owner, name = rng.choice(_component_options(d, kinds, node))
        if role == "node":
            node = rng.choice(NODES)
            continue
        services = [n for n, kind in kinds.items() if kind == "service"]
        kinds[name] = "backend" if role in ("guard", "auth", "notifier") else role
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
            edges.append([rng.choice(services), name, "..>", "events", "publishes"])

    def named(*wanted):
        return [name for name, kind in kinds.items() if kind in wanted]

    def ref(name):
        return name if kinds[name] in ("interface", "database") else f"[{name}]"

    backend = named("service", "backend")
    lines = [f"component {n}" for n in named("frontend")] + [f"interface {n}" for n in named("interface")]
    if node:
        lines += [f"node {node} {{", *(f"  component {n}" for n in backend), "}"]
    else:
        lines += [f"component {n}" for n in backend]
    lines += [f"database {n}" for n in named("database")] + [f"component {n} <<external>>" for n in named("external")]
    lines += [f"{ref(a)} {arrow} {ref(b)}" + (f" : {label}" if label else "") for a, b, arrow, label, _ in edges]
    relations = [[a, b, "dependency" if arrow == "..>" else "association", label] for a, b, arrow, label, _ in edges]
    entities = [*named("frontend"), *named("interface"), *([node] if node else []), *backend,
                *named("database"), *named("external")]

    def said(shall):
        sentences = [_EDGE_PROSE[how][shall].format(a=a, b=b, label=label) for a, b, _, label, how in edges]
        if node:
            verb = "shall run" if shall else "runs" if len(backend) == 1 else "run"
            sentences.append(f"{_join(backend)} {verb} on the {node} node")
        return sentences

    def text(sentences):
        return " ".join(_cap(sentence) + "." for sentence in sentences)

    if style == "imperative":
        prompt = f"{rng.choice(VERBS)} a component diagram of the {d['system']}. {text(said(False))}"
    elif style == "story":
        prompt = (f"As {_a(rng.choice(ARCHITECTS))}, I want a component diagram of the {d['system']} that shows "
                  f"how its parts connect. {text(said(False))}")
    elif style == "shall":
        prompt = (f"The {d['system']} shall consist of {_join(entities)}. {text(said(True))} "
                  f"Provide a component diagram.")
    else:
        prompt = "\n".join([f"Component diagram: {d['system']}", *(f"- {sentence}" for sentence in said(False))])
    return prompt, lines, entities, relations


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


def _er(rng, d, style):
    tables, links = d["tables"], d["links"]
    chosen = [rng.choice(list(tables))]
    size = rng.randint(2, min(8, len(tables)))
    while len(chosen) < size:
        a, b, _, _ = rng.choice([link for link in links if (link[0] in chosen) != (link[1] in chosen)])
        chosen.append(b if a in chosen else a)
    names = [t for t in tables if t in chosen]
    used = [(a, b, *rng.choice(CARDINALITY[card]), label) for a, b, card, label in links if a in chosen and b in chosen]

    columns = {t: [tuple(c.split()) for c in tables[t].split(", ")] for t in names}
    lines = []
    for t in names:
        keys = [f"  * {_snake(a)}_id : int <<FK>>" for a, b, *_ in used if b == t]
        attributes = [f"  {column} : {kind}" for column, kind in columns[t]]
        lines += [f"entity {t} {{", "  * id : int <<PK>>", "  --", *keys, *attributes, "}"]
    lines += [f"{a} {symbol} {b} : {label}" for a, b, symbol, _, label in used]
    relations = [[a, b, "association", label] for a, b, _, _, label in used]

    typed = rng.random() < 0.5
    described = [f"{t} ({', '.join(f'{c} {kind}' if typed else c for c, kind in columns[t])})" for t in names]
    said = [f"Each {a} {label} {many} {b}{' rows' if 'more' in many else ''}." for a, b, _, many, label in used]
    if used:
        a, b = used[0][:2]
        said.append(f"Every entity has an integer id primary key; the other side of each relationship holds a "
                    f"foreign key named after its partner, such as {_snake(a)}_id in {b}.")
    if style == "imperative":
        prompt = " ".join([f"{rng.choice(VERBS)} an ER diagram for the {d['name']} database with the entities "
                           f"{_join(described)}.", *said])
    elif style == "story":
        prompt = " ".join([f"As a data engineer, I want an entity-relationship diagram of the {d['name']} data.",
                           f"We store {_join(described)}.", *said])
    elif style == "shall":
        prompt = " ".join([f"The {d['system']} database shall hold {_join(described)}.", *said,
                           "Provide the ER diagram."])
    else:
        bullets = [f"- {text}" for text in described]
        bullets += [f"- {a} {label} {b}: one to {many}" for a, b, _, many, label in used]
        prompt = "\n".join([f"ER diagram: {d['name']}", *bullets, *said[len(used):]])
    return prompt, lines, names, relations
