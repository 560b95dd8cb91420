import json

import pytest

from core import cli
from core.errors import UserError
from core.training import models


def test_the_embedded_gguf_ships_in_the_wheel():
    path = models.gguf_path()
    assert path.name == models.GGUF_FILE and path.stat().st_size > 50_000_000


def test_tiny_model_uses_the_real_tokenizer_and_chat_template(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.vocab_size == len(tokenizer) == 49152
    assert sum(p.numel() for p in model.parameters()) < 3_000_000
    text = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"


@pytest.mark.slow
def test_prepared_model_is_a_plain_bf16_safetensors_folder_reused_offline(
    real_model, umlstudio_home, monkeypatch, capsys
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = umlstudio_home / "models" / "smollm2-135m"
    config = json.loads((folder / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["eos_token_id"] == 2
    before = (folder / "model.safetensors").stat().st_mtime_ns
    assert cli.main(["prepare-model", "--base", str(real_model)]) == 0
    assert (folder / "model.safetensors").stat().st_mtime_ns == before  # not rebuilt
    assert "ready at" in capsys.readouterr().out
    model, tokenizer = models.load_model(real_model)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tokenizer.eos_token_id == model.generation_config.eos_token_id == 2


def test_base_may_be_a_local_folder(tiny_model):
    assert models.resolve_base(str(tiny_model)) == str(tiny_model)


@pytest.mark.parametrize(
    "base, message",
    [("./no/such/folder", "no such folder"), ("nonsense", "no such folder")],
)
def test_bad_base_is_one_clear_error(base, message):
    with pytest.raises(UserError, match=message):
        models.resolve_base(base)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        models.resolve_base(str(tmp_path))
