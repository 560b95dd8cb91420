"""Their own data: each common fine-tuning shape written by the code that writes it (the `datasets` library's
to_parquet / to_json / save_to_disk, the json and csv modules), read into prompt + PlantUML rows; rows
without a PlantUML block counted and said, never dropped silently; an ambiguous shape, a mapped column that
is missing and a damaged file each one line naming the file and the fix; a phase planned on them."""

import csv
import json
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from core import config as cfg
from core import data
from core.errors import UserError
from core.training import plan

CLASS = "@startuml\nclass Library\nclass Book\nLibrary --> Book\n@enduml"
SEQUENCE = "@startuml\nparticipant User\nparticipant Shop\nUser -> Shop : order\nShop --> User : receipt\n@enduml"
ASK_CLASS, ASK_SEQUENCE = "A library lends books.", "A user orders from a shop and gets a receipt."


def one_line(call, *args, **kwargs) -> str:
    with pytest.raises(UserError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and " — " in message, message  # what is wrong — how to fix it
    return message


def test_prompt_completion_from_parquet(tmp_path):
    path = tmp_path / "pc.parquet"
    Dataset.from_list(
        [
            {"prompt": ASK_CLASS, "completion": f"Here it is:\n```plantuml\n{CLASS}\n```"},
            {"prompt": ASK_SEQUENCE, "completion": SEQUENCE},
        ]
    ).to_parquet(path)
    mapped = data.read(path)
    assert (mapped.shape, mapped.columns) == ("prompt/completion", {"prompt": "prompt", "plantuml": "completion"})
    assert [(r["prompt"], r["plantuml"], r["diagram_type"]) for r in mapped.rows] == [
        (ASK_CLASS, CLASS, "class"),
        (ASK_SEQUENCE, SEQUENCE, "sequence"),
    ]
    assert mapped.rows[0]["source"] == "pc.parquet:1" and mapped.rows[0]["origin"] == "unspecified"


def test_alpaca_from_a_json_array_with_and_without_input(tmp_path):
    path = tmp_path / "alpaca.json"
    rows = [
        {"instruction": "Draw a class diagram.", "input": ASK_CLASS, "output": CLASS},
        {"instruction": ASK_SEQUENCE, "input": "", "output": SEQUENCE},
    ]
    path.write_text(json.dumps(rows))
    mapped = data.read(path)
    assert mapped.shape == "alpaca"
    assert mapped.columns == {"prompt": "instruction", "input": "input", "plantuml": "output"}
    assert [r["prompt"] for r in mapped.rows] == [f"Draw a class diagram.\n\n{ASK_CLASS}", ASK_SEQUENCE]


def test_chat_messages_from_a_saved_dataset_dict_with_its_splits(tmp_path):
    def chat(ask, answer):
        return {
            "messages": [
                {"role": "system", "content": "You draw PlantUML."},
                {"role": "user", "content": ask},
                {"role": "assistant", "content": answer},
            ]
        }

    folder = tmp_path / "saved"
    DatasetDict(
        {
            "train": Dataset.from_list([chat(ASK_CLASS, CLASS), chat(ASK_SEQUENCE, SEQUENCE)]),
            "valid": Dataset.from_list([chat(ASK_CLASS, CLASS)]),
        }
    ).save_to_disk(folder)
    train = data.load_split(folder, "train")
    assert [(r["prompt"], r["plantuml"]) for r in train] == [(ASK_CLASS, CLASS), (ASK_SEQUENCE, SEQUENCE)]
    assert len(data.load_split(folder, "validation")) == 1  # "valid" is its validation split
    assert "the saved dataset has no test split (it has train, valid)" in one_line(data.load_split, folder, "test")
    assert data.counts(folder) == {
        "train": {**dict.fromkeys(data.DIAGRAM_TYPES, 0), "class": 1, "sequence": 1},
        "validation": {**dict.fromkeys(data.DIAGRAM_TYPES, 0), "class": 1},
    }


def test_sharegpt_conversations_from_jsonl_and_a_single_saved_dataset(tmp_path):
    rows = [
        {
            "conversations": [
                {"from": "human", "value": "Hello"},
                {"from": "gpt", "value": "Hi! What should I draw?"},
                {"from": "human", "value": ASK_CLASS},
                {"from": "gpt", "value": CLASS},
            ]
        }
    ]
    Dataset.from_list(rows).to_json(tmp_path / "sharegpt.jsonl")
    Dataset.from_list(rows).save_to_disk(tmp_path / "one")
    for source in (tmp_path / "sharegpt.jsonl", tmp_path / "one"):
        (row,) = data.load_split(source, "validation")  # one file or one saved Dataset: the same rows for any split
        assert (row["prompt"], row["plantuml"], row["diagram_type"]) == (ASK_CLASS, CLASS, "class")
    assert data.read(tmp_path / "sharegpt.jsonl").columns == {"messages": "conversations"}


def test_a_text_column_from_csv_gives_the_block_and_the_words_around_it(tmp_path):
    path = tmp_path / "text.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "diagram_type"])
        writer.writerow([f"### Request: {ASK_SEQUENCE}\n### Diagram:\n{SEQUENCE}", "sequence"])
        writer.writerow([f"{ASK_CLASS}\n{CLASS}", ""])  # no type given: read from the PlantUML
    mapped = data.read(path)
    assert mapped.shape == "text" and mapped.columns == {"text": "text", "diagram_type": "diagram_type"}
    assert [(r["prompt"], r["plantuml"], r["diagram_type"]) for r in mapped.rows] == [
        (f"### Request: {ASK_SEQUENCE} ### Diagram:", SEQUENCE, "sequence"),
        (ASK_CLASS, CLASS, "class"),
    ]


def test_rows_without_plantuml_are_counted_and_said_never_dropped_silently(tmp_path, capsys):
    path = tmp_path / "mixed.jsonl"
    Dataset.from_list(
        [
            {"prompt": ASK_CLASS, "completion": CLASS},
            {"prompt": "Tell me a joke.", "completion": "Why did the class diagram cross the road?"},
            {"prompt": "", "completion": CLASS},
            {"prompt": "A mind map of fruit.", "completion": "@startmindmap\n* Fruit\n** Apple\n@endmindmap"},
            {"prompt": "Another joke.", "completion": "No."},
        ]
    ).to_json(path)
    rows = data.load_rows(path)
    assert [r["prompt"] for r in rows] == [ASK_CLASS]
    notice = capsys.readouterr().err.strip()
    assert notice == (
        f"{path}: 4 of 5 rows left out: 2 with no @startuml … @enduml block (first: {path}:2), 1 with no prompt "
        f"(first: {path}:3), 1 with not one of the seven diagram types (first: {path}:4)"
    )
    mapped = data.read(path)
    assert (mapped.read, len(mapped.rows), dict(mapped.left_out)) == (
        5,
        1,
        {"no @startuml … @enduml block": 2, "no prompt": 1, "not one of the seven diagram types": 1},
    )


def test_a_file_with_no_plantuml_at_all_is_one_line(tmp_path):
    path = tmp_path / "chatter.parquet"
    Dataset.from_list([{"instruction": "Say hi.", "output": "Hi!"}]).to_parquet(path)
    message = one_line(data.read, path)
    assert message.startswith(f"{path}: 1 of 1 rows left out: 1 with no @startuml … @enduml block")
    assert "none is left" in message


def test_an_ambiguous_shape_is_one_line_with_the_fix(tmp_path):
    path = tmp_path / "both.jsonl"
    Dataset.from_list([{"instruction": ASK_CLASS, "output": CLASS, "text": f"{ASK_CLASS}\n{CLASS}"}]).to_json(path)
    message = one_line(data.read, path)
    assert message.startswith(f"{path}: its columns fit more than one shape (alpaca: instruction, output; text: text)")
    assert "data.columns" in message


def test_an_unknown_shape_names_the_columns_and_the_shapes_that_work(tmp_path):
    path = tmp_path / "qa.parquet"
    Dataset.from_list([{"question": ASK_CLASS, "answer": CLASS}]).to_parquet(path)
    message = one_line(data.read, path)
    assert message.startswith(f"{path}: no known shape in its columns (answer, question)")
    assert "{prompt: question, plantuml: answer}" in message


def test_data_columns_maps_your_columns_and_a_missing_one_is_one_line(tmp_path):
    path = tmp_path / "qa.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["question", "answer", "kind"], [ASK_SEQUENCE, SEQUENCE, "sequence"]])
    (row,) = data.load_rows(path, {"prompt": "question", "plantuml": "answer", "diagram_type": "kind"})
    assert (row["prompt"], row["plantuml"], row["diagram_type"]) == (ASK_SEQUENCE, SEQUENCE, "sequence")
    message = one_line(data.load_rows, path, {"prompt": "query", "plantuml": "answer"})
    assert message.startswith(f"{path}: data.columns names 'query', not a column here (found: answer, kind, question)")


def test_a_bad_diagram_type_names_the_row(tmp_path):
    path = tmp_path / "typed.parquet"
    Dataset.from_list([{"prompt": ASK_CLASS, "completion": CLASS, "diagram_type": "gantt"}]).to_parquet(path)
    assert one_line(data.read, path).startswith(f"{path}: row 1: unknown diagram_type 'gantt'")


def test_a_damaged_parquet_file_is_one_line(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    assert one_line(data.read, path).startswith(f"{path}: not readable as a .parquet dataset (")


def test_our_own_columns_read_through_parquet_as_before(tmp_path):
    path = tmp_path / "ours.parquet"
    Dataset.from_list([{"prompt": ASK_CLASS, "plantuml": CLASS, "diagram_type": "class", "origin": "real"}]).to_parquet(
        path
    )
    (row,) = data.load_rows(
        path, {"prompt": "question", "plantuml": "answer"}
    )  # our columns: the mapping is not needed
    assert (row["prompt"], row["origin"]) == (ASK_CLASS, "real")


@pytest.mark.parametrize(
    "columns",
    [{"prompt": "q"}, {"prompt": "q", "plantuml": "a", "text": "t"}, {"messages": "m", "input": "i"}],
)
def test_a_data_columns_mapping_of_no_one_shape_is_refused_in_the_config(columns):
    message = one_line(cfg.parse, {"data": {"columns": columns}})
    assert "data: columns maps prompt and plantuml" in message and "{prompt: question, plantuml: answer}" in message


def test_a_phase_plans_on_a_saved_dataset_mapped_by_data_columns(tmp_path, tiny_model):
    folder = tmp_path / "saved"
    rows = [{"question": f"{ASK_CLASS} ({i})", "answer": CLASS} for i in range(6)]
    DatasetDict({"train": Dataset.from_list(rows), "validation": Dataset.from_list(rows[:2])}).save_to_disk(folder)
    config = cfg.parse(
        {
            "model": {"base": str(tiny_model)},
            "data": {"dataset": str(folder), "eval_rows": 2, "columns": {"prompt": "question", "plantuml": "answer"}},
            "training": {"backend": "peft", "output_dir": str(tmp_path / "run"), "max_steps": 2, "max_seq_length": 96},
            "lora": {"r": 4, "lora_alpha": 8},
        }
    )
    planned = plan.plan(config)
    assert (planned.train_rows, planned.eval_rows) == (6, 2)
    assert not (tmp_path / "run").exists()


def test_describe_says_how_each_split_was_read(tmp_path):
    path = tmp_path / "pc.jsonl"
    Dataset.from_list([{"prompt": ASK_CLASS, "completion": CLASS}, {"prompt": "hi", "completion": "hello"}]).to_json(
        path
    )
    report = data.describe(path)
    mapped = report["mapped"]["pc.jsonl"]
    assert {k: mapped[k] for k in ("shape", "columns", "read", "kept", "left_out")} == {
        "shape": "prompt/completion",
        "columns": {"prompt": "prompt", "plantuml": "completion"},
        "read": 2,
        "kept": 1,
        "left_out": {"no @startuml … @enduml block": 1},
    }
    assert [r["prompt"] for r in mapped["examples"]] == [ASK_CLASS]
    assert Path(report["dataset"]) == path


def test_the_data_page_shows_how_your_own_data_was_read(tmp_path):
    from streamlit.testing.v1 import AppTest

    path = tmp_path / "alpaca.jsonl"
    Dataset.from_list(
        [
            {"instruction": ASK_CLASS, "input": "", "output": CLASS},
            {"instruction": ASK_SEQUENCE, "input": "", "output": SEQUENCE},
            {"instruction": "Say hi.", "input": "", "output": "Hi!"},
        ]
    ).to_json(path)
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "pages" / "data.py"), default_timeout=120)
    at.run()
    at.text_input[0].set_value(str(path)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "How it was read" in [h.value for h in at.subheader]
    said = next(m.value for m in at.markdown if m.value.startswith("**alpaca.jsonl**"))
    assert said == (
        "**alpaca.jsonl**: alpaca · prompt ← instruction, input ← input, plantuml ← output · 2 of 3 rows kept · "
        f"left out: 1 with no @startuml … @enduml block (first: {path}:3)"
    )
    examples = at.dataframe[0].value
    assert list(examples["prompt"]) == [ASK_CLASS, ASK_SEQUENCE] and list(examples["diagram_type"]) == [
        "class",
        "sequence",
    ]
    assert at.dataframe[1].value.loc["alpaca.jsonl", "total"] == 2  # the counts table, of the kept rows


@pytest.mark.e2e
def test_a_phase_trains_on_chat_rows_mapped_by_data_columns(tmp_path, tiny_model, capsys):
    from core import cli, store
    from core.training import checkpoints

    folder = tmp_path / "saved"
    rows = [
        {"dialog": [{"role": "user", "content": f"{ASK_CLASS} ({i})"}, {"role": "assistant", "content": CLASS}]}
        for i in range(4)
    ]
    DatasetDict({"train": Dataset.from_list(rows), "validation": Dataset.from_list(rows[:2])}).save_to_disk(folder)
    path = tmp_path / "config.yaml"
    path.write_text(
        json.dumps(
            {
                "model": {"base": str(tiny_model)},
                "data": {"dataset": str(folder), "eval_rows": 2, "columns": {"messages": "dialog"}},
                "training": {
                    "backend": "peft",
                    "output_dir": str(tmp_path / "run"),
                    "max_steps": 2,
                    "save_steps": 2,
                    "eval_steps": 2,
                    "max_seq_length": 96,
                    "tokens_per_batch": 160,
                    "gradient_accumulation_steps": 1,
                },
                "lora": {"r": 4, "lora_alpha": 8},
            }
        )
    )
    assert cli.main(["train", "--config", str(path)]) == 0
    run = store.runs.for_output_dir(tmp_path / "run")
    assert run is not None and run.status == "finished"
    assert checkpoints.verify(tmp_path / "run" / "checkpoint-2") == []
