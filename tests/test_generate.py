"""The generation engine on the tiny model: continuous batching token-identical to one row at a time,
hot-swapped adapters, determinism, stopping at @enduml, the loop guard, repair of outputs PlantUML
rejects, streaming, the worker, and one-line errors for checkpoints and files that do not fit."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core import cli, data
from core.data import prompts
from core.errors import UserError
from core.inference import generate, repair
from core.training.checkpoints import ADAPTER_FILE

PROMPTS = ["A library lends books to members.", "Orders have items.", "A user owns accounts with a balance."]
PARROT_PROMPT = "Draw a class A."
PARROT_MESSAGE = prompts.request(PARROT_PROMPT, "class")
PARROT_ANSWER = "@startuml\nclass A\n@enduml"
LOOP_MESSAGE = "List the members."
LOOP_ANSWER = "@startuml\nclass Member\n" + "Member : +name\n" * 30
BROKEN_MESSAGE = "Draw something broken."
BROKEN_ANSWER = "@startuml\nclass A\nA -> -> ((\nclass B\n@enduml"


pytestmark = pytest.mark.usefixtures("one_thread")


def make_checkpoint(root: Path, base: Path, seed: int, step: int = 10, scale: float = 2.0) -> Path:
    """A trained-looking checkpoint: a PEFT LoRA adapter on `base` with random (non-zero) B weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)  # lora_A's initialisation: the same seed gives the same adapter
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]),
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    ckpt = Path(root) / "run" / f"checkpoint-{step}"
    model.save_pretrained(ckpt)
    (ckpt / "umlstudio.json").write_text(json.dumps({"config": {"model": {"base": str(base)}}, "step": step}))
    return ckpt


@pytest.fixture(scope="module")
def checkpoints(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    return make_checkpoint(root / "a", tiny_model, seed=1), make_checkpoint(root / "b", tiny_model, seed=2)


@pytest.fixture(scope="module")
def parrot(tiny_model, tmp_path_factory):
    """The tiny model trained to answer PARROT_MESSAGE with PARROT_ANSWER and then keep talking,
    LOOP_MESSAGE with one line over and over, and BROKEN_MESSAGE with a diagram PlantUML rejects."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    examples = []
    for message, answer in (
        (PARROT_MESSAGE, PARROT_ANSWER + "\nand then some more text"),
        (LOOP_MESSAGE, LOOP_ANSWER),
        (BROKEN_MESSAGE, BROKEN_ANSWER + "\n"),
    ):
        prompt = generate.chat_prompt(tokenizer, message)
        ids = tokenizer(prompt + answer, return_tensors="pt", add_special_tokens=False).input_ids
        labels = ids.clone()
        labels[:, : len(tokenizer(prompt, add_special_tokens=False).input_ids)] = -100
        examples.append((ids, labels))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        losses = [model(input_ids=ids, labels=labels).loss for ids, labels in examples]
        loss = max(losses)
        if loss.item() < 0.02:
            break
        sum(losses).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.05, "the tiny model did not memorise its answers"
    target = tmp_path_factory.mktemp("parrot") / "parrot"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def engine(tiny_model):
    return generate.Engine(str(tiny_model))


def outputs(rows):
    return [row.output for row in rows]


def test_chat_prompt_is_the_chat_template_with_one_user_message(engine):
    text = generate.chat_prompt(engine.tokenizer, "Orders have items.")
    assert "<|im_start|>user\nOrders have items.<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_outputs_are_deterministic_and_differ_between_base_and_adapter(engine, checkpoints):
    a, _ = checkpoints
    base1 = engine.generate(PROMPTS, "base", max_new_tokens=12)
    tuned1 = engine.generate(PROMPTS, str(a), max_new_tokens=12)
    base2 = engine.generate(PROMPTS, "base", max_new_tokens=12)  # adapters disabled again
    tuned2 = engine.generate(PROMPTS, str(a), max_new_tokens=12)
    assert outputs(base1) == outputs(base2)
    assert outputs(tuned1) == outputs(tuned2)
    assert outputs(base1) != outputs(tuned1)
    for row in base1 + tuned1:
        assert 1 <= row.tokens <= 12 and row.latency_s > 0
        assert row.truncated == (row.tokens == 12 and generate.STOP not in row.output)


def test_hot_swapped_adapter_matches_a_fresh_load(engine, checkpoints, tiny_model):
    a, b = checkpoints
    engine.generate(PROMPTS, str(a), max_new_tokens=10)
    swapped = engine.generate(PROMPTS, str(b), max_new_tokens=10)
    fresh = generate.Engine(str(tiny_model)).generate(PROMPTS, str(b), max_new_tokens=10)
    assert outputs(swapped) == outputs(fresh)
    assert outputs(swapped) != outputs(engine.generate(PROMPTS, str(a), max_new_tokens=10))
    assert len(engine.adapters) == 2  # each loaded once, swapped by name


def test_least_recently_used_adapter_is_dropped_and_reloaded(engine, checkpoints, tiny_model, monkeypatch):
    a, b = checkpoints
    expected = {c: outputs(engine.generate(PROMPTS[:1], str(c), max_new_tokens=8)) for c in (a, b)}
    monkeypatch.setattr(generate, "MAX_ADAPTERS", 1)
    small = generate.Engine(str(tiny_model))
    for c in (a, b, a):
        assert outputs(small.generate(PROMPTS[:1], str(c), max_new_tokens=8)) == expected[c]
        assert list(small.adapters) == [str(c)]
    assert set(small.peft.peft_config) == {small.adapters[str(a)][1]}


def test_a_checkpoint_rewritten_on_disk_is_loaded_again(engine, checkpoints, tiny_model, tmp_path):
    a, b = checkpoints
    ckpt = make_checkpoint(tmp_path, tiny_model, seed=1)  # the same weights as a
    assert outputs(engine.generate(PROMPTS, str(ckpt), max_new_tokens=8)) == outputs(
        engine.generate(PROMPTS, str(a), max_new_tokens=8)
    )
    shutil.copy(b / ADAPTER_FILE, ckpt / ADAPTER_FILE)
    assert outputs(engine.generate(PROMPTS, str(ckpt), max_new_tokens=8)) == outputs(
        engine.generate(PROMPTS, str(b), max_new_tokens=8)
    )


def test_a_run_folder_means_its_latest_checkpoint(engine, checkpoints):
    a, _ = checkpoints
    assert outputs(engine.generate(PROMPTS[:1], str(a.parent), max_new_tokens=8)) == outputs(
        engine.generate(PROMPTS[:1], str(a), max_new_tokens=8)
    )


def test_generation_stops_at_enduml_and_drops_the_rest(parrot):
    import torch

    engine = generate.Engine(str(parrot))
    row, other = engine.generate(
        [PARROT_MESSAGE, "Something else, a longer prompt than the first"], "base", max_new_tokens=40
    )
    assert row.output == PARROT_ANSWER and not row.truncated
    answer_tokens = len(engine.tokenizer(PARROT_ANSWER, add_special_tokens=False).input_ids)
    assert row.tokens <= answer_tokens + 1 < 40  # stopped there, not cut afterwards
    # Without the stop the model goes on: the criterion, not the cut, ended the row.
    ids = torch.tensor(engine.encode([PARROT_MESSAGE], 40))
    with torch.inference_mode():
        full = engine.model.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=row.tokens + 6
        )
    assert "and then" in engine.tokenizer.decode(full[0, ids.shape[1] :])

    pieces = engine.stream("base", PARROT_MESSAGE, 40)
    streamed = []
    with pytest.raises(StopIteration) as done:
        while True:
            streamed.append(next(pieces))
    assert "".join(streamed).strip() == PARROT_ANSWER and len(streamed) > 1
    assert done.value.value.output == PARROT_ANSWER and done.value.value.tokens == row.tokens


def test_generate_command_prints_plantuml_and_writes_the_file(parrot, tmp_path, capsys):
    out = tmp_path / "diagram.puml"
    code = cli.main(
        [
            "generate",
            "--checkpoint",
            "base",
            "--base",
            str(parrot),
            "--prompt",
            PARROT_PROMPT,
            "--type",
            "class",
            "--out",
            str(out),
            "--max-new-tokens",
            "40",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == PARROT_ANSWER
    assert out.read_text().strip() == PARROT_ANSWER


def test_generate_command_renders_svg(parrot, tmp_path):
    out = tmp_path / "diagram.svg"
    assert (
        cli.main(
            [
                "generate",
                "--checkpoint",
                "base",
                "--base",
                str(parrot),
                "--prompt",
                PARROT_PROMPT,
                "--type",
                "class",
                "--out",
                str(out),
                "--max-new-tokens",
                "40",
            ]
        )
        == 0
    )
    assert out.read_bytes().lstrip().startswith(b"<") and b"<svg" in out.read_bytes()


def test_worker_streams_to_stdout_and_writes_the_result(parrot, tmp_path, umlstudio_home):
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text(PARROT_PROMPT)
    result = tmp_path / "result.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "core.inference.generate",
            "--checkpoint",
            "base",
            "--base",
            str(parrot),
            "--type",
            "class",
            "--prompt-file",
            str(prompt_file),
            "--out",
            str(result),
            "--max-new-tokens",
            "40",
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == PARROT_ANSWER
    result = json.loads(result.read_text())
    assert result["output"] == PARROT_ANSWER and result["truncated"] is False and result["tokens"] > 0
    assert (
        result["prompt"] == PARROT_MESSAGE
        and result["requirement"] == PARROT_PROMPT
        and result["diagram_type"] == "class"
    )


def test_missing_adapter_weights_is_one_clear_error(engine, checkpoints, tmp_path):
    broken = tmp_path / "run" / "checkpoint-5"
    broken.mkdir(parents=True)
    (broken / "adapter_config.json").write_text((checkpoints[0] / "adapter_config.json").read_text())
    with pytest.raises(
        UserError, match=r"(no|missing) adapter_model\.safetensors|adapter_model\.safetensors is missing"
    ):
        engine.generate(PROMPTS[:1], str(broken), max_new_tokens=4)


def test_checkpoint_of_another_base_model_is_refused(engine, tmp_path, tiny_model):
    other = shutil.copytree(tiny_model, tmp_path / "other-tiny")  # another base model folder
    ckpt = make_checkpoint(tmp_path / "o", other, seed=3)
    with pytest.raises(UserError, match="incompatible checkpoint"):
        engine.generate(PROMPTS[:1], str(ckpt), max_new_tokens=4)
    with pytest.raises(UserError, match="different base models"):
        generate.common_base([str(ckpt), str(make_checkpoint(tmp_path / "t", tiny_model, seed=4))])


def test_adapter_that_does_not_fit_the_base_is_one_clear_error(engine, tmp_path, tiny_model):
    from transformers import LlamaConfig, LlamaForCausalLM

    wider = tmp_path / "wider"
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=engine.model.config.vocab_size,
            hidden_size=48,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    ).save_pretrained(wider)
    ckpt = make_checkpoint(tmp_path / "w", wider, seed=5)
    info = json.loads((ckpt / "umlstudio.json").read_text())
    info["config"]["model"]["base"] = str(tiny_model)  # claims the wrong base
    (ckpt / "umlstudio.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="does not fit the base model"):
        engine.generate(PROMPTS[:1], str(ckpt), max_new_tokens=4)
    assert outputs(engine.generate(PROMPTS[:1], "base", max_new_tokens=4))  # the engine still works


def test_missing_checkpoint_is_exit_2(capsys):
    assert cli.main(["generate", "--checkpoint", "no/such/ckpt", "--prompt", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: checkpoint 'no/such/ckpt' not found") and len(err.splitlines()) == 1


def test_worker_bad_input_is_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "core.inference.generate",
            "--checkpoint",
            "base",
            "--prompt-file",
            str(tmp_path / "none.txt"),
            "--out",
            str(tmp_path / "result.json"),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.strip().endswith("none.txt: prompt file not found")
    assert not (tmp_path / "result.json").exists()


# ---- continuous batching ------------------------------------------------------------------------


def one_at_a_time(engine, messages, checkpoint, max_new_tokens):
    """Today's reference: transformers' greedy `generate`, one prompt at a time, no padding, cut at @enduml."""
    import torch

    texts = []
    with engine.selected(checkpoint) as model, torch.inference_mode():
        for ids in engine.encode(messages, max_new_tokens):
            ids = torch.tensor([ids])
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=engine.tokenizer.pad_token_id,
                stop_strings=[generate.STOP],
                tokenizer=engine.tokenizer,
            )
            text = engine.tokenizer.decode(
                out[0, ids.shape[1] :], skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
            texts.append(generate.cut_at_stop(text)[0].strip())
    return texts


@pytest.mark.parametrize("slots", [1, 2, 8])
def test_continuous_batching_is_token_identical_to_one_at_a_time(parrot, checkpoints, tiny_model, slots):
    """Rows of mixed lengths (the parrot stops early, the others run to the limit) leave and join
    the batch; each output is what the row gets alone. float32 pinned: the same sums on every host."""
    engine = generate.Engine(str(parrot), dtype="float32")
    messages = [PROMPTS[0], PARROT_MESSAGE, PROMPTS[1] * 3, PARROT_MESSAGE, PROMPTS[2]]
    rows = engine.generate(messages, "base", max_new_tokens=24, batch_size=slots, loop_guard=False)
    assert outputs(rows) == one_at_a_time(engine, messages, "base", 24)
    assert rows[1].tokens < 24 and rows[3].tokens < 24 and rows[0].tokens == rows[2].tokens == 24  # mixed lengths
    tiny = generate.Engine(str(tiny_model), dtype="float32")  # and with a LoRA adapter active
    tuned = tiny.generate(PROMPTS * 2, str(checkpoints[0]), max_new_tokens=16, batch_size=slots, loop_guard=False)
    assert outputs(tuned) == one_at_a_time(tiny, PROMPTS * 2, str(checkpoints[0]), 16)


def test_more_slots_than_rows_and_rows_moving_up_keep_every_output(parrot):
    """Slots freed in the middle of the batch are filled by the rows after them moving up (their
    caches copied); rows admitted later start in the freed slots."""
    engine = generate.Engine(str(parrot), dtype="float32")
    messages = [PARROT_MESSAGE, PROMPTS[0], PARROT_MESSAGE, PROMPTS[1], PARROT_MESSAGE, PROMPTS[2] * 2, PARROT_MESSAGE]
    expected = one_at_a_time(engine, messages, "base", 20)
    for slots in (3, 16):
        assert (
            outputs(engine.generate(messages, "base", max_new_tokens=20, batch_size=slots, loop_guard=False))
            == expected
        )


def test_should_stop_ends_generation_between_steps_with_the_rows_finished_so_far(parrot):
    engine = generate.Engine(str(parrot), dtype="float32")
    messages = [PARROT_MESSAGE, PROMPTS[0], PARROT_MESSAGE, PROMPTS[1]]
    full = engine.generate(messages, "base", max_new_tokens=40, batch_size=2, loop_guard=False)
    finished, asked = [], []

    def should_stop():
        asked.append(len(finished))
        return len(finished) >= 1

    cut = engine.generate(
        messages,
        "base",
        max_new_tokens=40,
        batch_size=2,
        loop_guard=False,
        progress=lambda n: finished.append(n),
        should_stop=should_stop,
        repair=True,
    )
    assert cut[0] is not None and cut[0].output == full[0].output == PARROT_ANSWER
    assert cut[1:] == [None, None, None] and asked[-1] == 1 and len(asked) < full[0].tokens + 2
    assert engine.generate(messages, "base", should_stop=lambda: True) == [None] * 4


@pytest.mark.slow
def test_continuous_batching_matches_one_at_a_time_on_the_real_model(real_model):
    engine = generate.Engine(real_model, dtype="float32")
    rows = data.load_split(data.default_dataset_dir(), "test")
    messages = [prompts.request(r["prompt"], r["diagram_type"]) for r in data.in_turn(rows, 4)]
    got = engine.generate(messages, "base", max_new_tokens=96, batch_size=3, loop_guard=False)
    assert outputs(got) == one_at_a_time(engine, messages, "base", 96)


def test_a_prompt_longer_than_the_context_is_refused_with_the_numbers(engine):
    long = "A library lends books to members. " * 200  # ~1,600 tokens; the tiny model's context is 1,024
    with pytest.raises(
        UserError, match=r"is 1,\d{3} tokens; with 320 new tokens that is more than the model's context of 1,024"
    ):
        engine.generate(PROMPTS[:1] + [long], "base", max_new_tokens=320)


# ---- the loop guard -----------------------------------------------------------------------------

LOOPING = [  # outputs that loop, as small models write them (the guard looks at the end of the text)
    "@startuml\nclass Library {\n" + "  +name: String\n" * 7,
    "@startuml\nclass Book\n" + "".join(f"class Book{i}\n" for i in range(1, 8)),
    "@startuml\nUser -> System : login\n" + "System -> DB : query\nDB --> System : rows\n" * 4,
    "@startuml\nstart\n" + ":check stock;\nif (in stock?) then (yes)\n:ship;\nendif\n" * 4,
    "@startuml\n" + "state Open\nstate Closed\nOpen --> Closed : close\n" * 4,
    "@startuml\nclass A {\n" + "  +a1: int\n  +a2: int\n  +a3: int\n  +a4: int\n  +a5: int\n" * 4,
    "@startuml\nclass Order\nOrder : items = " + "item, " * 12,
    "@startuml\nactor User\nUser -> (Login) : " + "the user the user " * 5,
    "@startuml\n" + "}\n" * 7,
    "@startuml\nclass Book\n" + "\n".join(["Book --> Author", "", "Book --> Author"] * 4) + "\n",
]


def test_the_loop_guard_catches_every_known_loop():
    assert [bool(repair.loop_in(text)) for text in LOOPING] == [True] * len(LOOPING)


def test_the_loop_guard_never_stops_a_reference_diagram_of_the_test_split():
    """The decoder asks after every token: every prefix of every reference must pass."""
    for row in data.load_split(data.default_dataset_dir(), "test"):
        text = row["plantuml"]
        stopped = next((end for end in range(1, len(text) + 1) if repair.loop_in(text[:end])), None)
        assert stopped is None, f"{row['prompt'][:60]!r} stopped at {text[:stopped]!r}"


def test_limits_are_the_stated_ones():
    line = "@startuml\n" + "A -> B : ping\n" * repair.SAME_LINE_LIMIT
    assert repair.loop_in(line) is None and repair.loop_in(line + "A -> B : ping\n")
    block = "@startuml\n" + "A -> B : ping\nB --> A : pong\n" * repair.BLOCK_LIMIT
    assert repair.loop_in(block) is None and repair.loop_in(block + "A -> B : ping\nB --> A : pong\n")


def test_completed_lines_are_looked_at_only_when_one_was_added():
    """The decoder passes new_line=False while a line is unfinished: the verdict on the completed
    lines cannot have changed, the unfinished line is still checked."""
    assert repair.loop_in(LOOPING[0]) and repair.loop_in(LOOPING[0], new_line=False) is None
    assert repair.loop_in(LOOPING[6], new_line=False) == repair.loop_in(LOOPING[6]) is not None


def test_a_looping_row_is_stopped_and_marked(parrot):
    engine = generate.Engine(str(parrot))
    looped, guarded_off = (
        engine.generate([LOOP_MESSAGE], "base", max_new_tokens=200, loop_guard=guard)[0] for guard in (True, False)
    )
    assert looped.looped and not looped.truncated and "7 times in a row" in looped.loop
    assert looped.output.count("Member : +name") == repair.SAME_LINE_LIMIT + 1 and looped.tokens < 60
    assert guarded_off.truncated and not guarded_off.looped and guarded_off.tokens == 200


# ---- repair ---------------------------------------------------------------------------------------


def test_edits_fix_what_they_name():
    looped = LOOPING[0]
    cut = repair.unloop(looped)
    assert cut.text.count("+name") == 1 and "cut 6 repeated copies" in cut.change
    closed = repair.close(cut.text)
    assert (
        closed.text.endswith("  +name: String\n}\n@enduml") and closed.change == "closed 1 open { block, added @enduml"
    )
    deleted = repair.delete_line("@startuml\nclass A\nA -> -> ((\n@enduml", 3)
    assert deleted.text == "@startuml\nclass A\n@enduml" and deleted.change == "deleted line 3: A -> -> (("
    assert repair.delete_line("@startuml\nclass A\n@enduml", 3) is None  # never the last line of content
    assert repair.prefix_before(BROKEN_ANSWER, 3) == "@startuml\nclass A\n"


def test_repair_makes_rejected_outputs_valid_and_keeps_the_raw_one(parrot):
    engine = generate.Engine(str(parrot))
    broken, good, looped = engine.generate(
        [BROKEN_MESSAGE, PARROT_MESSAGE, LOOP_MESSAGE], "base", max_new_tokens=60, repair=True
    )
    assert broken.raw_output == BROKEN_ANSWER and broken.raw_valid is False
    assert broken.repaired and broken.valid and broken.output != BROKEN_ANSWER and broken.repair
    assert good.output == good.raw_output == PARROT_ANSWER and good.valid and not good.repaired and not good.repair
    assert looped.looped and looped.repaired and looped.valid and looped.output.count("Member : +name") == 1
    from core.inference.render import syntax_check

    assert all(v.valid for v in syntax_check([broken.output, looped.output]))
    assert not any(v.valid for v in syntax_check([broken.raw_output]))
    unrepaired = engine.generate([BROKEN_MESSAGE], "base", max_new_tokens=60)[0]
    assert unrepaired.output == BROKEN_ANSWER and unrepaired.valid is None and not unrepaired.repaired


# ---- bad input: refused before any generation -------------------------------------------------------


@pytest.mark.parametrize(
    "where, message",
    [
        ("missing/diagram.puml", "does not exist"),
        ("folder.svg", "is a folder"),
        ("/proc/diagram.svg", r"system folder|cannot write there"),
        ("diagram.txt", "unknown format"),
    ],
)
def test_generate_out_that_cannot_be_written_is_refused_before_generating(
    where, message, tmp_path, capsys, monkeypatch
):
    (tmp_path / "folder.svg").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(generate, "engine_for", lambda *a, **k: pytest.fail("generation started"))
    assert cli.main(["generate", "--checkpoint", "base", "--prompt", "x", "--out", where]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(message, err) and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.svg"]


def test_unknown_type_is_one_line_exit_2(capsys, monkeypatch):
    monkeypatch.setattr(generate, "engine_for", lambda *a, **k: pytest.fail("generation started"))
    assert cli.main(["generate", "--checkpoint", "base", "--prompt", "x", "--type", "pie"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: --type pie: unknown diagram type — one of class, sequence")
        and len(err.splitlines()) == 1
    )


def test_a_type_is_read_whatever_its_case():
    for command in (["generate", "--prompt", "x"], ["generate-worker", "--prompt-file", "p", "--out", "o"]):
        args = cli.build_parser(command[0]).parse_args([*command, "--checkpoint", "base", "--type", "Class"])
        assert args.type == "class"
        generate.check_type(args.type)  # accepted
    assert cli.build_parser("data").parse_args(["data", "--filter", "State,ER"]).filter == "state,er"


# ---- the playground shows what the worker repaired ----------------------------------------------------


def test_playground_shows_a_repaired_output_and_what_changed(parrot):
    import time

    from streamlit.testing.v1 import AppTest

    from core import jobs

    job = jobs.start(
        "generate",
        [
            "-m",
            "core.inference.generate",
            "--checkpoint",
            "base",
            "--base",
            str(parrot),
            "--prompt-file",
            "{job}/prompt.txt",
            "--out",
            "{job}/result.json",
            "--max-new-tokens",
            "60",
            "--repair",
        ],
        label="parrot",
        files={"prompt.txt": BROKEN_MESSAGE},
    )
    deadline = time.monotonic() + 300
    while not jobs.get(job.id).done:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    result = jobs.get(job.id).result()
    assert result["repaired"] and result["raw_output"] == BROKEN_ANSWER, jobs.get(job.id).log(2000)
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "pages" / "playground.py"), default_timeout=120)
    at.query_params["job"] = job.id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.warning[0].value.startswith("Repaired: PlantUML rejected the model's output")
    assert all(f"- {change}" in at.warning[0].value for change in result["repair"])
    assert BROKEN_ANSWER in [c.value for c in at.code]  # the raw output stays in view
    assert any(c.language == "diff" and "-A -> -> ((" in c.value for c in at.code)
