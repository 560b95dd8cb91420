"""core/data/: loaders and their errors, split by source, the default dataset, filter, write, CLI."""

import json
import os
from collections import Counter

import pytest

from core import cli, data
from core.cli import data as cli_data
from core.errors import UserError
from core.training import models

SEQUENCE = "@startuml\nAlice -> Bob : hi\n@enduml"


def write(path, text):
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def jsonl(path, *objects):
    return write(path, "".join(json.dumps(o) + "\n" for o in objects))


def user_error(call, *args) -> str:
    with pytest.raises(UserError) as caught:
        call(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


# ---- loading ----------------------------------------------------------------------------------


def test_canonical_jsonl_keeps_every_field(tmp_path):
    row = {
        "prompt": "Alice greets Bob",
        "plantuml": SEQUENCE,
        "diagram_type": "sequence",
        "category": "demo",
        "source": "mine",
        "origin": "real",
        "entities": ["Alice", "Bob"],
        "relations": [["Alice", "Bob", "message", "hi"]],
    }
    assert data.load_rows(jsonl(tmp_path / "rows.jsonl", row)) == [row]


def test_canonical_jsonl_fills_optional_fields(tmp_path):
    path = write(
        tmp_path / "rows.jsonl",
        '{"prompt": "p1", "plantuml": "Alice -> Bob : hi"}\n\n'
        '{"prompt": "p2", "plantuml": "@startuml\\nclass A\\n@enduml"}\n',
    )
    first, second = data.load_rows(path)
    assert first == {
        "prompt": "p1",
        "plantuml": "@startuml\nAlice -> Bob : hi\n@enduml",
        "diagram_type": "sequence",
        "category": "uncategorized",
        "source": "rows.jsonl:1",
        "origin": "unspecified",
        "entities": [],
        "relations": [],
    }
    assert second["diagram_type"] == "class" and second["source"] == "rows.jsonl:3"


@pytest.mark.parametrize(
    "plantuml, expected",
    [
        ("entity Customer {\n  * id : int\n}", "er"),
        ("[*] --> Idle\nIdle --> Busy : go", "state"),
        ("start\n:Do it;\nstop", "activity"),
        ("actor User\nUser --> (Log In)", "usecase"),
        ("component Web\n[Web] --> [Api] : REST", "component"),
        ("class Order {\n  + id : int\n}\nOrder --> Item", "class"),
        ("participant Web\nWeb -> Api : call", "sequence"),
        ("Order *-- Item", "class"),
    ],
)
def test_missing_diagram_type_is_guessed_from_the_plantuml(tmp_path, plantuml, expected):
    rows = data.load_rows(jsonl(tmp_path / "rows.jsonl", {"prompt": "p", "plantuml": plantuml}))
    assert rows[0]["diagram_type"] == expected


def test_plantucd_native_rows(tmp_path):
    ast = {
        "type": "root",
        "children": [
            {
                "type": "class",
                "value": "User",
                "children": [
                    {"type": "attribute", "value": "name", "visibility": "+", "data_type": "string"},
                    {"type": "relation", "value": "<|--", "children": [{"type": "class", "value": "Admin"}]},
                    {
                        "type": "relation",
                        "value": "*--",
                        "children": [{"type": "class", "value": "Profile"}],
                        "label": "has",
                    },
                    {
                        "type": "relation",
                        "value": "<--",
                        "children": [{"type": "class", "value": "Session"}],
                        "label": '"opened by"',
                        "multiplicity1": "1",
                        "multiplicity2": "*",
                    },
                ],
            },
            {
                "type": "class",
                "value": "Admin",
                "children": [
                    {"type": "relation", "value": "..|>", "children": [{"type": "class", "value": "Auditable"}]},
                    {"type": "relation", "value": "--o", "children": [{"type": "class", "value": "Team"}]},
                    {
                        "type": "relation",
                        "value": "..>",
                        "children": [{"type": "class", "value": "Log"}],
                        "label": "writes",
                    },
                    {
                        "type": "relation",
                        "value": "--",
                        "children": [{"type": "class", "value": "Team"}],
                        "label": "leads",
                    },
                ],
            },
            {"type": "class", "value": "Profile", "children": []},
        ],
    }
    native = {
        "HumanLang": "Admins are users.",
        "PlantUML": "class User\nUser <|-- Admin\n",
        "Model": "H29",
        "RequirementIndex": "4",
        "Output_AST": ast,
    }
    [row] = data.load_rows(jsonl(tmp_path / "plantucd.jsonl", native))
    assert row["prompt"] == "Admins are users."
    assert row["plantuml"] == "@startuml\nclass User\nUser <|-- Admin\n@enduml"
    assert (row["diagram_type"], row["category"], row["source"], row["origin"]) == (
        "class",
        "H29",
        "plantucd:H29",
        "real",
    )
    assert row["entities"] == ["User", "Admin", "Profile"]
    assert row["relations"] == [
        ["Admin", "User", "inheritance", ""],
        ["User", "Profile", "composition", "has"],
        ["Session", "User", "association", "opened by"],
        ["Admin", "Auditable", "realization", ""],
        ["Team", "Admin", "aggregation", ""],
        ["Admin", "Log", "dependency", "writes"],
        ["Admin", "Team", "association", "leads"],
    ]


def test_csv_with_and_without_optional_columns(tmp_path):
    path = write(
        tmp_path / "rows.csv",
        "prompt,plantuml,diagram_type,category,source,origin\n"
        '"Alice greets Bob","@startuml\nAlice -> Bob : hi\n@enduml",sequence,demo,chat,generated\n'
        'Two states,"[*] --> On\nOn --> Off : flip",,,,\n',
    )
    greet, states = data.load_rows(path)
    assert greet == {
        "prompt": "Alice greets Bob",
        "plantuml": SEQUENCE,
        "diagram_type": "sequence",
        "category": "demo",
        "source": "chat",
        "origin": "generated",
        "entities": [],
        "relations": [],
    }
    assert states["plantuml"] == "@startuml\n[*] --> On\nOn --> Off : flip\n@enduml"
    assert (states["diagram_type"], states["category"], states["source"]) == ("state", "uncategorized", "rows.csv:5")


def test_shipped_plantucd_file_is_complete_and_its_empty_prompt_is_skipped_with_a_notice(capsys):
    lines = data.PLANTUCD_FILE.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1119
    assert len({json.loads(line)["Model"] for line in lines}) == 115
    rows = data.load_rows(data.PLANTUCD_FILE)
    assert len(rows) == 1118 and {row["origin"] for row in rows} == {"real"}
    notice = capsys.readouterr().err
    assert "plantucd.jsonl:467: skipped" in notice and "empty HumanLang" in notice


def test_shipped_real_prose_files_with_their_licenses():
    for folder, count in (("plantucd", 1119), ("us2sd", 2147), ("lato", 406)):
        assert (data.DATA_DIR / folder / "LICENSE.txt").read_text().startswith("MIT")
        assert (data.DATA_DIR / folder / "SOURCE.md").is_file()
        assert len((data.DATA_DIR / folder / f"{folder}.jsonl").read_text(encoding="utf-8").splitlines()) == count


BAD_INPUTS = {
    "missing file": (None, None, "nope.jsonl: no such file"),
    "bad json": ("rows.jsonl", '{"prompt": "p", "plantuml": "x"}\n{"prompt": oops}\n', "rows.jsonl:2: not valid JSON"),
    "not an object": ("rows.jsonl", '["p", "x"]\n', "rows.jsonl:1: a row must be a JSON object"),
    "missing prompt": (
        "rows.jsonl",
        '{"prompt": "p", "plantuml": "x"}\n{"plantuml": "x"}\n',
        "rows.jsonl:2: missing or empty field 'prompt'",
    ),
    "empty plantuml": (
        "rows.jsonl",
        '{"prompt": "p", "plantuml": "  "}\n',
        "rows.jsonl:1: missing or empty field 'plantuml'",
    ),
    "unknown origin": (
        "rows.jsonl",
        '{"prompt": "p", "plantuml": "x", "origin": "scraped"}\n',
        "rows.jsonl:1: unknown origin 'scraped'",
    ),
    "latin-1 jsonl": (
        "rows.jsonl",
        b'{"prompt": "p", "plantuml": "x"}\n{"prompt": "caf\xe9", "plantuml": "x"}\n',
        "rows.jsonl:2: not UTF-8 text (byte 0xe9 at offset 48)",
    ),
    "latin-1 csv": ("rows.csv", b'prompt,plantuml\n"na\xefve",x\n', "rows.csv:2: not UTF-8 text (byte 0xef"),
    "unknown type": (
        "rows.jsonl",
        '{"prompt": "p", "plantuml": "x", "diagram_type": "gantt"}\n',
        "rows.jsonl:1: unknown diagram_type 'gantt'",
    ),
    "bad relations": (
        "rows.jsonl",
        '{"prompt": "p", "plantuml": "x", "relations": [["A", "B", "likes", ""]]}\n',
        "rows.jsonl:1: 'relations' is not a list",
    ),
    "bad entities": (
        "rows.jsonl",
        '{"prompt": "p", "plantuml": "x", "entities": "A, B"}\n',
        "rows.jsonl:1: 'entities' is not a list",
    ),
    "bad category": (
        "rows.jsonl",
        '{"prompt": "p", "plantuml": "x", "category": 3}\n',
        "rows.jsonl:1: 'category' must be a string",
    ),
    "plantucd without model": (
        "rows.jsonl",
        '{"HumanLang": "h", "PlantUML": "class A"}\n',
        "rows.jsonl:1: missing or empty field 'Model'",
    ),
    "plantucd bad ast": (
        "rows.jsonl",
        '{"HumanLang": "h", "PlantUML": "class A", "Model": "M", "Output_AST": [1]}\n',
        "rows.jsonl:1: 'Output_AST' is not",
    ),
    "plantucd bad arrow": (
        "rows.jsonl",
        json.dumps(
            {
                "HumanLang": "h",
                "PlantUML": "A ~~ B",
                "Model": "M",
                "Output_AST": {
                    "children": [
                        {
                            "type": "class",
                            "value": "A",
                            "children": [
                                {"type": "relation", "value": "~~", "children": [{"type": "class", "value": "B"}]}
                            ],
                        }
                    ]
                },
            }
        )
        + "\n",
        "rows.jsonl:1: unknown PlantUCD relation arrow '~~'",
    ),
    "empty jsonl": ("rows.jsonl", "\n\n", "rows.jsonl:1: the file holds no rows"),
    "empty csv": ("rows.csv", "prompt,plantuml\n", "rows.csv:1: the file holds no rows"),
    "csv header": (
        "rows.csv",
        "question,answer\nq,a\n",
        "rows.csv:1: the header lacks the columns prompt and plantuml (found: question,answer)",
    ),
    "csv missing field": (
        "rows.csv",
        'prompt,plantuml\np,"multi\nline"\n,x\n',
        "rows.csv:4: missing or empty field 'prompt'",
    ),
    "unsupported extension": ("rows.txt", "prompt\n", "rows.txt: unsupported file type '.txt'"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_names_file_line_and_fix(tmp_path, name):
    filename, text, expected = BAD_INPUTS[name]
    path = write(tmp_path / filename, text) if filename else tmp_path / "nope.jsonl"
    message = user_error(data.load_rows, path)
    assert expected in message
    assert str(tmp_path) in message
    assert "; " in message  # what is wrong; how to fix it


# ---- splitting --------------------------------------------------------------------------------


def synthetic_rows():
    """20 sources of class rows, 10 of sequence, 10 mixing state and er, 2 of activity."""
    rows = []
    for i in range(20):
        rows += [{"source": f"class{i}", "diagram_type": "class", "prompt": f"c{i}-{j}"} for j in range(3 + i % 4)]
    for i in range(10):
        rows += [{"source": f"seq{i}", "diagram_type": "sequence", "prompt": f"s{i}-{j}"} for j in range(5)]
        rows += [{"source": f"mix{i}", "diagram_type": t, "prompt": f"m{i}-{t}"} for t in ("state", "er", "er")]
    rows += [{"source": f"act{i}", "diagram_type": "activity", "prompt": f"a{i}"} for i in range(2)]
    return rows


def sources_of(split_rows):
    return {row["source"] for row in split_rows}


def test_split_keeps_each_source_in_one_split_and_covers_types():
    rows = synthetic_rows()
    splits = data.split_by_source(rows, seed=3)
    assert list(splits) == ["train", "validation", "test"]
    train, validation, test = (sources_of(splits[s]) for s in data.SPLITS)
    assert not train & validation and not train & test and not validation & test
    assert sorted(r["prompt"] for s in splits.values() for r in s) == sorted(r["prompt"] for r in rows)
    for split_rows in splits.values():
        assert {"class", "sequence", "state", "er"} <= {r["diagram_type"] for r in split_rows}
    assert 0.7 < len(splits["train"]) / len(rows) < 0.9
    for split_rows in splits.values():  # input order kept
        assert split_rows == [r for r in rows if r in split_rows]


def test_split_is_deterministic_by_seed():
    rows = synthetic_rows()
    assert data.split_by_source(rows, seed=1) == data.split_by_source(rows, seed=1)
    assert data.split_by_source(rows, seed=1) != data.split_by_source(rows, seed=2)


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError):
        data.split_by_source(synthetic_rows(), seed=0, fractions=(0.8, 0.3, 0.1))


# ---- the default dataset ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_splits():
    return {split: data.load_split("default", split) for split in data.SPLITS}


def test_default_dataset_has_every_type_in_every_split_and_no_leak(default_splits):
    seen = {}
    for split, rows in default_splits.items():
        assert {row["diagram_type"] for row in rows} == set(data.DIAGRAM_TYPES)
        for source in sources_of(rows):
            assert seen.setdefault(source, split) == split
    every = [row for rows in default_splits.values() for row in rows]
    manifest = json.loads((data.default_dataset_dir() / data.MANIFEST).read_text())["families"]
    for family, prefix, origin in (
        ("plantucd", "plantucd:", "real"),
        ("us2sd", "us2sd:", "real"),
        ("lato", "lato:", "real"),
        ("generated", "gen:", "generated"),
    ):
        rows = [row for row in every if row["source"].startswith(prefix)]
        assert {row["origin"] for row in rows} == {origin}
        counted = manifest[family]
        assert (
            len(rows)
            == counted["kept"]
            == counted["read"] - counted["skipped_empty_prompt"] - counted["rejected_by_plantuml"]
        )
        assert [counted[split] for split in data.SPLITS] == [
            sum(row["source"].startswith(prefix) for row in default_splits[split]) for split in data.SPLITS
        ]
    assert manifest["plantucd"]["skipped_empty_prompt"] == 1
    assert 100 <= manifest["us2sd"]["rejected_by_plantuml"] <= 130  # GPT-4's diagrams: ~5% do not parse


def test_rebuilding_the_default_dataset_reproduces_the_committed_files(tmp_path):
    data.build_default_dataset(seed=0, out_dir=tmp_path)
    for name in [f"{split}.jsonl" for split in data.SPLITS] + [data.MANIFEST]:
        committed = (data.default_dataset_dir() / name).read_bytes()
        assert (tmp_path / name).read_bytes() == committed, f"{name} differs; run `umlstudio data --build`"


def test_load_split_accepts_names_folders_and_files(tmp_path, default_splits):
    assert data.load_split(data.default_dataset_dir(), "test") == default_splits["test"]
    assert data.load_split("data/default", "validation") == default_splits["validation"]
    single = jsonl(tmp_path / "subset.jsonl", {"prompt": "p", "plantuml": SEQUENCE})
    assert data.load_split(single, "train") == data.load_split(single, "validation") == data.load_rows(single)
    assert "unknown split 'dev'" in user_error(data.load_split, "default", "dev")
    assert "no such dataset" in user_error(data.load_split, tmp_path / "missing", "train")
    assert "test.jsonl: no such file" in user_error(data.load_split, tmp_path, "test")


def test_counts_of_folder_and_file(tmp_path, default_splits):
    table = data.counts("default")
    assert table == {
        split: {t: sum(r["diagram_type"] == t for r in rows) for t in data.DIAGRAM_TYPES}
        for split, rows in default_splits.items()
    }
    single = jsonl(tmp_path / "few.jsonl", {"prompt": "p", "plantuml": SEQUENCE, "diagram_type": "sequence"})
    assert data.counts(single) == {"few.jsonl": {t: int(t == "sequence") for t in data.DIAGRAM_TYPES}}
    assert "holds none of train.jsonl" in user_error(data.counts, tmp_path)


# ---- filtering and writing --------------------------------------------------------------------


def test_filter_keeps_weak_types_and_a_seeded_replay_share():
    rows = synthetic_rows()
    others = [r for r in rows if r["diagram_type"] not in ("state", "er")]
    subset = data.filter_rows(rows, ["state", "er"], replay_share=0.25, seed=7)
    kept = Counter(r["diagram_type"] for r in subset)
    assert kept["state"] == 10 and kept["er"] == 20
    assert sum(kept.values()) - 30 == round(0.25 * len(others))
    assert subset == [r for r in rows if r in subset]
    assert data.filter_rows(rows, ["state", "er"], 0.25, seed=7) == subset
    assert data.filter_rows(rows, ["state", "er"], 0.25, seed=8) != subset
    assert len(data.filter_rows(rows, ["activity"], replay_share=0)) == 2
    assert len(data.filter_rows(rows, ["activity"], replay_share=1)) == len(rows)


@pytest.mark.parametrize(
    "types, share, expected",
    [
        ([], 0.2, "names no diagram type"),
        (["gantt"], 0.2, "unknown diagram type 'gantt'"),
        (["state"], 1.5, "replay share 1.5 is outside 0..1"),
        (["component"], 0.2, "no row has diagram type component"),
    ],
)
def test_filter_rejects_bad_requests(types, share, expected):
    assert expected in user_error(data.filter_rows, synthetic_rows(), types, share)


def test_write_rows_round_trips_and_never_overwrites(tmp_path):
    rows = data.load_split("default", "test")[:5]
    path = data.write_rows(rows, tmp_path / "out" / "subset.jsonl")
    assert data.load_rows(path) == rows
    before = path.read_bytes()
    assert "already exists" in user_error(data.write_rows, rows[:1], path)
    assert path.read_bytes() == before
    assert "ending in .jsonl" in user_error(data.write_rows, rows, tmp_path / "subset.csv")


# ---- the `umlstudio data` command -------------------------------------------------------------


def run(capsys, *argv):
    code = cli_data.run_data(cli.build_parser("data").parse_args(["data", *argv]))  # a UserError raised, not printed
    return code, capsys.readouterr().out


def test_cli_prints_the_counts_the_mix_and_the_long_rows(capsys):
    code, out = run(capsys)
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["split", *data.DIAGRAM_TYPES, "total"]
    assert [line.split()[0] for line in lines[1:5]] == ["train", "validation", "test", "total"]
    table = data.counts("default")
    assert lines[4].split()[1:] == [str(sum(table[s][t] for s in table)) for t in data.DIAGRAM_TYPES] + [
        str(sum(table[s][t] for s in table for t in data.DIAGRAM_TYPES))
    ]
    train = data.load_split("default", "train")
    assert f"train: {len(train)} rows" in out
    assert f"real {sum(r['origin'] == 'real' for r in train)} (" in out
    assert "train rows as a phase sees them (data.mix, type_weights class 2" in out
    assert "longer than 512 tokens" in out and "left out when built" in out
    code, out = run(capsys, "--json", "--max-seq-length", "300")
    report = json.loads(out)
    assert code == 0 and report["counts"] == table
    assert report["long"]["max_seq_length"] == 300 and report["long"]["test"]["rows"] == sum(table["test"].values())
    assert max(entry["share"] for entry in report["phase_mix"]["type"].values()) <= 0.4
    assert set(report["mix"]["train"]["family"]) == {"plantucd", "us2sd", "lato", "gen"}


def test_mix_gives_each_type_its_weighted_share_deterministically():
    rows = synthetic_rows()  # class 90, sequence 50, state 10, er 20, activity 2
    weights = {"class": 1, "sequence": 1, "state": 2, "activity": 0}
    mixed = data.mix(rows, weights, seed=4, n=200)
    found = Counter(r["diagram_type"] for r in mixed)
    assert found == {"class": 50, "sequence": 50, "state": 100}  # er and activity have no weight
    states = Counter(r["prompt"] for r in mixed if r["diagram_type"] == "state")
    assert len(states) == 10 and set(states.values()) == {10}  # repeats spread evenly
    classes = [r["prompt"] for r in mixed if r["diagram_type"] == "class"]
    assert len(set(classes)) == 50  # a sample, no repeats while unused rows remain
    assert data.mix(rows, weights, seed=4, n=200) == mixed
    assert data.mix(rows, weights, seed=5, n=200) != mixed
    assert len(data.mix(rows, {"class": 1, "er": 1}, seed=0)) == len(rows)
    assert Counter(r["diagram_type"] for r in data.mix(rows, {"class": 1, "er": 1, "usecase": 5}, 0, n=7)) == {
        "class": 4,
        "er": 3,
    }  # usecase is absent: the others share; rounding by largest remainder


def test_mix_refuses_weights_that_pick_nothing():
    assert "gives no positive share" in user_error(data.mix, synthetic_rows(), {"usecase": 1}, 0)
    assert "gives no positive share" in user_error(data.mix, synthetic_rows(), {"class": 0}, 0)


def test_mix_table_counts_types_families_and_origins():
    rows = [
        {"diagram_type": t, "source": s, "origin": o}
        for t, s, o in (
            ("class", "plantucd:H1", "real"),
            ("class", "plantucd:H2", "real"),
            ("state", "gen:bank", "generated"),
            ("sequence", "mine", "unspecified"),
        )
    ]
    table = data.mix_table(rows)
    assert table["type"] == {
        "class": {"rows": 2, "share": 0.5},
        "state": {"rows": 1, "share": 0.25},
        "sequence": {"rows": 1, "share": 0.25},
    }
    assert table["family"] == {
        "plantucd": {"rows": 2, "share": 0.5},
        "gen": {"rows": 1, "share": 0.25},
        "other": {"rows": 1, "share": 0.25},
    }
    assert table["origin"]["real"] == {"rows": 2, "share": 0.5}


def test_long_rows_are_counted_not_dropped(tmp_path):
    short = {"prompt": "Alice greets Bob", "plantuml": SEQUENCE, "diagram_type": "sequence"}
    long_answer = {**short, "plantuml": "@startuml\n" + "Alice -> Bob : hi\n" * 200 + "@enduml"}
    long_prompt = {**short, "prompt": "word " * 2000}
    found = data.long_rows([short, long_answer, long_prompt], 512, tmp_path)  # no tokenizer there: approximated
    assert found == {"rows": 3, "cut": 2, "prompt_only": 1, "how": found["how"]} and "approximated" in found["how"]


def test_token_lengths_are_counted_once_and_kept_for_the_same_rows_and_tokenizer(
    tmp_path, umlstudio_home, tiny_model, monkeypatch
):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("tokenizer.json", "chat_template.jinja"):
        (folder / name).write_bytes((tiny_model / name).read_bytes())
    rows = data.load_split("default", "validation")[:40]
    lengths, how = data.token_lengths(rows, folder)
    assert how == "counted with model's tokenizer and chat template" and len(lengths) == 40
    assert all(0 < prompt < total for prompt, total in lengths)
    assert len(list((umlstudio_home / "cache").glob("token-lengths-*.json"))) == 1

    counted = []
    monkeypatch.setattr(data, "_count_tokens", lambda *args: counted.append(len(args[1])) or [(1, 2)] * len(args[1]))
    assert data.token_lengths(rows, folder) == (lengths, how) and counted == []  # read back, not counted again
    assert data.long_rows(rows, 512, folder)["rows"] == 40 and counted == []
    data.token_lengths(rows[:39], folder)  # other rows: counted
    (folder / "chat_template.jinja").write_text((folder / "chat_template.jinja").read_text() + "\n")
    data.token_lengths(rows, folder)  # another template: counted
    data.token_lengths(rows[:38], folder, keep=False)  # a check that may refuse: counted, not kept
    assert counted == [39, 40, 38]
    assert len(list((umlstudio_home / "cache").glob("token-lengths-*.json"))) == 3
    assert not list((umlstudio_home / "cache").glob("*.part"))


def test_the_stamp_of_a_dataset_moves_with_its_files_and_with_the_tokenizer_that_counts_it(tmp_path):
    dataset = tmp_path / "set"
    data.write_rows(synthetic_rows()[:3], dataset / "train.jsonl")
    before = data.stamp(dataset)
    os.utime(dataset / "train.jsonl", (before + 10, before + 10))
    assert data.stamp(dataset) == before + 10
    tokenizer = models.embedded_dir() / "tokenizer.json"  # prepared after the page cached its report
    tokenizer.parent.mkdir(parents=True)
    tokenizer.write_text("{}")
    os.utime(tokenizer, (before + 20, before + 20))
    assert data.stamp(dataset) == before + 20


def test_cli_filter_writes_a_subset_of_the_train_split(tmp_path, capsys):
    out_file = tmp_path / "weak.jsonl"
    code, out = run(capsys, "--filter", "state, er", "--replay-share", "0.1", "--out", str(out_file))
    train = data.load_split("default", "train")
    assert code == 0 and f"to {out_file}" in out
    assert data.load_rows(out_file) == data.filter_rows(train, ["state", "er"], 0.1, seed=0)
    assert "already exists" in user_error(run, capsys, "--filter", "state", "--out", str(out_file))


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--filter", "state"], "--filter needs --out"),
        (["--out", "x.jsonl"], "--out only goes with --filter"),
        (["--build", "--dataset", "mine"], "--build always writes data/default"),
        (["--dataset", "no/such/place"], "no such dataset"),
    ],
)
def test_cli_refuses_bad_combinations(capsys, argv, expected):
    assert expected in user_error(run, capsys, *argv)


def test_cli_build_rewrites_the_default_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "default_dataset_dir", lambda: tmp_path / "default")
    code, out = run(capsys, "--build")
    assert code == 0 and f"rebuilt {tmp_path / 'default'}" in out
    assert data.counts(tmp_path / "default") == data.counts("default")
