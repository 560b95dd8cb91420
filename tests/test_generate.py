"""The generation engine on the tiny model: hot-swapped adapters, determinism, stopping at @enduml,
streaming, the worker, and one-line errors for checkpoints that do not fit."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core import cli, generate
from core.errors import UserError

PROMPTS = ["A library lends books to members.", "Orders have items.", "A user owns accounts with a balance."]
PARROT_PROMPT = "Draw a class A."
PARROT_ANSWER = "@startuml\nclass A\n@enduml"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The test machine's 2 cores are shared: one torch thread is several times faster there."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_checkpoint(root: Path, base: Path, seed: int, step: int = 10, scale: float = 2.0) -> Path:
    """A trained-looking checkpoint: a PEFT LoRA adapter on `base` with random (non-zero) B weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)  # lora_A's initialisation: the same seed gives the same adapter
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
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
    """The tiny model trained to answer PARROT_PROMPT with PARROT_ANSWER and then keep talking."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    prompt = generate.chat_prompt(tokenizer, PARROT_PROMPT)
    ids = tokenizer(prompt + PARROT_ANSWER + "\nand then some more text", return_tensors="pt",
                    add_special_tokens=False).input_ids
    labels = ids.clone()
    labels[:, : len(tokenizer(prompt, add_special_tokens=False).input_ids)] = -100
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = model(input_ids=ids, labels=labels).loss
        if loss.item() < 0.02:
            break
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.05, "the tiny model did not memorise its answer"
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
    assert outputs(engine.generate(PROMPTS, str(ckpt), max_new_tokens=8)) == \
        outputs(engine.generate(PROMPTS, str(a), max_new_tokens=8))
    shutil.copy(b / generate.ADAPTER_FILE, ckpt / generate.ADAPTER_FILE)
    assert outputs(engine.generate(PROMPTS, str(ckpt), max_new_tokens=8)) == \
        outputs(engine.generate(PROMPTS, str(b), max_new_tokens=8))


def test_a_run_folder_means_its_latest_checkpoint(engine, checkpoints):
    a, _ = checkpoints
    assert outputs(engine.generate(PROMPTS[:1], str(a.parent), max_new_tokens=8)) == \
        outputs(engine.generate(PROMPTS[:1], str(a), max_new_tokens=8))


def test_generation_stops_at_enduml_and_drops_the_rest(parrot):
    import torch

    engine = generate.Engine(str(parrot))
    row, other = engine.generate([PARROT_PROMPT, "Something else, a longer prompt than the first"], "base",
                                 max_new_tokens=40)
    assert row.output == PARROT_ANSWER and not row.truncated
    answer_tokens = len(engine.tokenizer(PARROT_ANSWER, add_special_tokens=False).input_ids)
    assert row.tokens <= answer_tokens + 1 < 40  # stopped there, not cut afterwards
    # Without the stop the model goes on: the criterion, not the cut, ended the row.
    enc = engine._encode([PARROT_PROMPT])
    with torch.inference_mode():
        full = engine.model.generate(**enc, do_sample=False, max_new_tokens=row.tokens + 6)
    assert "and then" in engine.tokenizer.decode(full[0, enc["input_ids"].shape[1]:])

    pieces = engine.stream("base", PARROT_PROMPT, 40)
    streamed = []
    with pytest.raises(StopIteration) as done:
        while True:
            streamed.append(next(pieces))
    assert "".join(streamed).strip() == PARROT_ANSWER and len(streamed) > 1
    assert done.value.value.output == PARROT_ANSWER and done.value.value.tokens == row.tokens


def test_generate_command_prints_plantuml_and_writes_the_file(parrot, tmp_path, capsys):
    out = tmp_path / "diagram.puml"
    code = cli.main(["generate", "--checkpoint", "base", "--base", str(parrot), "--prompt", PARROT_PROMPT,
                     "--out", str(out), "--max-new-tokens", "40"])
    assert code == 0
    assert capsys.readouterr().out.strip() == PARROT_ANSWER
    assert out.read_text().strip() == PARROT_ANSWER


def test_generate_command_renders_svg(parrot, tmp_path):
    out = tmp_path / "diagram.svg"
    assert cli.main(["generate", "--checkpoint", "base", "--base", str(parrot), "--prompt", PARROT_PROMPT,
                     "--out", str(out), "--max-new-tokens", "40"]) == 0
    assert out.read_bytes().lstrip().startswith(b"<") and b"<svg" in out.read_bytes()


def test_worker_streams_to_stdout_and_writes_the_result(parrot, tmp_path, umlstudio_home):
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text(PARROT_PROMPT)
    result = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "core.generate", "--checkpoint", "base", "--base", str(parrot),
         "--prompt-file", str(prompt_file), "--out", str(result), "--max-new-tokens", "40"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == PARROT_ANSWER
    data = json.loads(result.read_text())
    assert data["output"] == PARROT_ANSWER and data["truncated"] is False and data["tokens"] > 0


def test_missing_adapter_weights_is_one_clear_error(engine, checkpoints, tmp_path):
    broken = tmp_path / "run" / "checkpoint-5"
    broken.mkdir(parents=True)
    (broken / "adapter_config.json").write_text((checkpoints[0] / "adapter_config.json").read_text())
    with pytest.raises(UserError, match="adapter_model.safetensors is missing"):
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
    LlamaForCausalLM(LlamaConfig(vocab_size=engine.model.config.vocab_size, hidden_size=48, intermediate_size=64,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)).save_pretrained(wider)
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
        [sys.executable, "-m", "core.generate", "--checkpoint", "base", "--prompt-file", str(tmp_path / "none.txt"),
         "--out", str(tmp_path / "result.json")],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.strip().endswith("none.txt: prompt file not found")
    assert not (tmp_path / "result.json").exists()
