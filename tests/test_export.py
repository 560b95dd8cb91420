"""`umlstudio export` on the tiny model: the merged transformers folder answers exactly as base +
adapter; the GGUF file reads back (names, shapes, metadata), transformers loads it to the very
weights written, llama.cpp generates with it where its runtime loads; bad input is one line,
exit 2 and nothing written."""

import json
import re
import sys
from pathlib import Path

import pytest
from test_generate import make_checkpoint

from core import cli
from core.data import prompts
from core.inference import export, generate
from core.training import models

REQUESTS = [
    prompts.request("A library lends books to members.", "class"),
    prompts.request("A user logs in and the system checks the password.", "sequence"),
    prompts.request("An order is placed, paid and shipped.", "activity"),
]
NEW_TOKENS = 12


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tiny_model, tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("export-ckpt"), tiny_model, seed=3, scale=0.5)


def _export(out: Path, *args) -> Path:
    assert cli.main(["export", "--out", str(out), *args]) == 0
    return out


@pytest.fixture(scope="module")
def exports(ckpt, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    return {
        "hf": _export(root / "hf", "--checkpoint", str(ckpt)),
        "f16": _export(root / "f16", "--checkpoint", str(ckpt), "--format", "gguf"),
        "q8_0": _export(root / "q8_0", "--checkpoint", str(ckpt), "--format", "gguf", "--gguf-type", "q8_0"),
    }


def _encode(tokenizer, request: str):
    return tokenizer(prompts.chat_prompt(tokenizer, request), return_tensors="pt", add_special_tokens=False).input_ids


def _greedy(model, tokenizer, request: str, n: int = NEW_TOKENS) -> list[int]:
    import torch

    ids = _encode(tokenizer, request)
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=n,
            min_new_tokens=n,
            pad_token_id=tokenizer.pad_token_id,
        )
    return out[0, ids.shape[1] :].tolist()


def _logits(model, tokenizer, request: str):
    import torch

    with torch.inference_mode():
        return model(_encode(tokenizer, request)).logits[0].float()


@pytest.fixture(scope="module")
def merged(exports):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(exports["hf"]).eval(), AutoTokenizer.from_pretrained(exports["hf"])


# ---- hf: the merged folder ----------------------------------------------------------------------


def test_merged_folder_answers_as_base_plus_adapter(tiny_model, ckpt, exports, merged):
    import torch

    model, tokenizer = merged
    engine = generate.Engine(str(tiny_model), dtype="float32")
    assert tokenizer.chat_template == engine.tokenizer.chat_template
    assert prompts.chat_prompt(tokenizer, REQUESTS[0]) == prompts.chat_prompt(engine.tokenizer, REQUESTS[0])
    for request in REQUESTS:
        with engine.selected(ckpt) as adapted:
            expected_tokens = _greedy(adapted, engine.tokenizer, request)
            expected = _logits(adapted, engine.tokenizer, request)
        with engine.selected("base") as base:
            untouched = _logits(base, engine.tokenizer, request)
        got = _logits(model, tokenizer, request)
        assert (expected - untouched).abs().max() > 1e-2, "the adapter changes nothing: the test would prove nothing"
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        assert _greedy(model, tokenizer, request) == expected_tokens
    info = json.loads((exports["hf"] / export.INFO).read_text())
    assert (
        info["checkpoint"] == str(ckpt)
        and info["format"] == "hf"
        and info["checkpoint_sha256"] == generate.fingerprint(ckpt)
    )
    assert "model.safetensors" in info["files"] and not list(exports["hf"].parent.glob(".*partial*"))


# ---- gguf ---------------------------------------------------------------------------------------


def _field(reader, key):
    return reader.fields[key].contents()


def test_gguf_reads_back_with_llama_names_shapes_and_metadata(exports, merged):
    import gguf

    model, tokenizer = merged
    config = model.config
    reader = gguf.GGUFReader(exports["f16"] / "model-f16.gguf")
    tensors = {t.name: t for t in reader.tensors}
    per_block = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]
    assert set(tensors) == {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{name}.weight" for i in range(config.num_hidden_layers) for name in per_block
    }  # tied: no output.weight
    kv = config.num_key_value_heads * (config.hidden_size // config.num_attention_heads)
    shapes = {
        "token_embd": [config.hidden_size, config.vocab_size],
        "attn_q": [config.hidden_size, config.hidden_size],
        "attn_k": [config.hidden_size, kv],
        "ffn_down": [config.intermediate_size, config.hidden_size],
        "attn_norm": [config.hidden_size],
    }
    for name, tensor in tensors.items():
        short = name.split(".")[-2] if name.startswith("blk.") else name.split(".")[0]
        if short in shapes:
            assert list(tensor.shape) == shapes[short], name  # GGUF lists dimensions innermost first
        expected = gguf.GGMLQuantizationType.F32 if len(tensor.shape) == 1 else gguf.GGMLQuantizationType.F16
        assert tensor.tensor_type == expected, name
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "llama.block_count") == config.num_hidden_layers
    assert _field(reader, "llama.attention.head_count_kv") == config.num_key_value_heads
    assert _field(reader, "tokenizer.chat_template") == tokenizer.chat_template
    assert _field(reader, "tokenizer.ggml.eos_token_id") == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert _field(reader, "tokenizer.ggml.padding_token_id") == tokenizer.pad_token_id
    assert _field(reader, "tokenizer.ggml.bos_token_id") == tokenizer.bos_token_id
    assert _field(reader, "tokenizer.ggml.pre") == "smollm"
    assert _field(reader, "tokenizer.ggml.add_bos_token") is False
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == config.vocab_size and tokens[:3] == tokenizer.convert_ids_to_tokens([0, 1, 2])
    q8 = gguf.GGUFReader(exports["q8_0"] / "model-q8_0.gguf")
    assert {t.name: t.tensor_type.name for t in q8.tensors if len(t.shape) == 2} == dict.fromkeys(
        (n for n, t in tensors.items() if len(t.shape) == 2), "Q8_0"
    )


@pytest.mark.parametrize("kind", ["f16", "q8_0"])
def test_transformers_loads_the_gguf_to_the_weights_written(exports, merged, kind):
    """transformers undoes llama.cpp's layout (names, rotary permutation) when it loads a GGUF: it
    must get back exactly the merged weights after the f16 or q8_0 rounding."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    model, tokenizer = merged
    loaded = AutoModelForCausalLM.from_pretrained(
        exports[kind], gguf_file=f"model-{kind}.gguf", dtype=torch.float32
    ).eval()
    expected, got = model.state_dict(), loaded.state_dict()
    assert set(got) == set(expected)
    qtype = getattr(gguf.GGMLQuantizationType, kind.upper())
    for name, weights in expected.items():
        if weights.ndim == 2:
            rounded = gguf.quants.dequantize(gguf.quants.quantize(weights.numpy(), qtype), qtype)
            weights = torch.from_numpy(rounded.astype("float32"))
        assert torch.equal(got[name], weights), name
    if kind == "f16":
        assert torch.max(loaded.model.embed_tokens.weight - model.model.embed_tokens.weight).abs() > 0
        for request in REQUESTS:
            assert _greedy(loaded, tokenizer, request) == _greedy(model, tokenizer, request)


def test_ollama_modelfile_states_template_system_prompt_and_stops(exports, merged):
    _, tokenizer = merged
    text = (exports["f16"] / export.MODELFILE).read_text()
    assert "FROM ./model-f16.gguf" in text
    system = prompts.chat_prompt(tokenizer, "x").split("<|im_start|>system\n")[1].split("<|im_end|>")[0]
    assert f'SYSTEM """{system}"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "<|im_start|>assistant\n" in text
    assert json.loads((exports["f16"] / export.INFO).read_text())["files"] == ["model-f16.gguf", "Modelfile"]


@pytest.fixture(scope="module")
def llama_cpp():
    """llama.cpp through its Python binding, where one is installed and its library loads here."""
    binding = pytest.importorskip("llama_cpp_py_sync", reason="no llama.cpp Python binding installed")
    from llama_cpp_py_sync._cffi_bindings import get_lib

    try:
        get_lib()
    except (OSError, RuntimeError) as exc:
        why = re.search(r"version `[^']+' not found", str(exc))
        pytest.skip(f"the llama.cpp library does not load on this system: {why.group(0) if why else str(exc)[:200]}")
    return binding


@pytest.fixture(scope="module")
def confident(tiny_model, tmp_path_factory):
    """An export whose model is sure of its next tokens (f16 vs float32 arithmetic cannot flip them):
    the tiny model trained to answer two requests, with an adapter on top."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    answers = [
        "@startuml\nclass Library\nclass Book\nLibrary --> Book : lends\n@enduml",
        "@startuml\nUser -> System : login\nSystem --> User : ok\n@enduml",
    ]
    batch = []
    for request, answer in zip(REQUESTS, answers):
        prompt = prompts.chat_prompt(tokenizer, request)
        ids = tokenizer(prompt + answer + "<|im_end|>", return_tensors="pt", add_special_tokens=False).input_ids
        labels = ids.clone()
        labels[:, : len(tokenizer(prompt, add_special_tokens=False).input_ids)] = -100
        batch.append((ids, labels))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = sum(model(input_ids=ids, labels=labels).loss for ids, labels in batch) / len(batch)
        if loss.item() < 0.02:
            break
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.05, "the tiny model did not learn its answers"
    root = tmp_path_factory.mktemp("confident")
    model.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    trained = make_checkpoint(root / "ckpt", root / "base", seed=4, scale=0.05)
    return _export(root / "hf", "--checkpoint", str(trained)), _export(
        root / "gguf", "--checkpoint", str(trained), "--format", "gguf"
    )


@pytest.mark.parametrize("kind", ["f16", "q8_0"])
def test_llama_cpp_generates_what_transformers_generates(llama_cpp, confident, kind, tmp_path):
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf, gguf_dir = confident
    if kind == "q8_0":
        gguf_dir = _export(
            tmp_path / "q8",
            "--checkpoint",
            json.loads((hf / export.INFO).read_text())["checkpoint"],
            "--format",
            "gguf",
            "--gguf-type",
            "q8_0",
        )
    model, tokenizer = AutoModelForCausalLM.from_pretrained(hf).eval(), AutoTokenizer.from_pretrained(hf)
    with llama_cpp.Llama(str(gguf_dir / f"model-{kind}.gguf"), n_ctx=512, n_threads=1) as llm:
        for request in REQUESTS[:2]:
            ids = _encode(tokenizer, request)[0].tolist()
            assert llm.tokenize(prompts.chat_prompt(tokenizer, request), add_special=False, parse_special=True) == ids
            expected = _greedy(model, tokenizer, request, n=16)
            llm._clear_context_state()
            n_past, got = llm._eval_tokens(ids, 0), []
            for _ in expected:
                logits = np.frombuffer(
                    llm._ffi.buffer(llm._lib.llama_get_logits_ith(llm._ctx, -1), 4 * llm.n_vocab), dtype=np.float32
                )
                got.append(int(logits.argmax()))
                n_past = llm._eval_tokens([got[-1]], n_past)
            assert got == expected, (tokenizer.decode(got), tokenizer.decode(expected))


# ---- bad input: one line, exit 2, nothing written, before any work --------------------------------


def _bad(capsys, args, out: Path) -> str:
    before = sorted(p.name for p in out.parent.iterdir()) if out.parent.is_dir() else None
    assert cli.main(["export", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert (sorted(p.name for p in out.parent.iterdir()) if out.parent.is_dir() else None) == before  # nothing written
    return err


def test_bad_input_is_one_line_and_writes_nothing(ckpt, tmp_path, capsys):
    out = tmp_path / "new"
    assert "not found" in _bad(capsys, ["--checkpoint", str(tmp_path / "nope"), "--out", str(out)], out)
    assert "unknown format" in _bad(capsys, ["--checkpoint", str(ckpt), "--out", str(out), "--format", "onnx"], out)
    assert "unknown GGUF type" in _bad(
        capsys, ["--checkpoint", str(ckpt), "--out", str(out), "--format", "gguf", "--gguf-type", "q4_k"], out
    )
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    assert "not empty" in _bad(capsys, ["--checkpoint", str(ckpt), "--out", str(full)], full / "x")
    assert (full / "keep.txt").read_text() == "mine"
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert "is a file" in _bad(capsys, ["--checkpoint", str(ckpt), "--out", str(a_file / "sub" / "out")], a_file)
    assert "system folder" in _bad(capsys, ["--checkpoint", str(ckpt), "--out", "/proc/umlstudio-export"], out)
    assert not out.exists()


def test_bad_input_is_checked_without_loading_a_model(ckpt, tmp_path, monkeypatch):
    """The studio calls `check` in its own process: it must not import torch or load anything."""
    import subprocess

    code = (
        "import sys; from core.inference import export; "
        f"plan = export.check({str(ckpt)!r}, {str(tmp_path / 'o')!r}, 'gguf', 'q8_0'); "
        "assert 'torch' not in sys.modules, 'torch imported'; print(plan.steps, plan.gguf_name)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(export.__file__).parents[2]
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "model-q8_0.gguf"]


def test_a_stop_is_not_a_keyboard_interrupt(monkeypatch, capsys):
    """The Stop handler's exception must not be a KeyboardInterrupt: CPython remembers one that crossed a
    library's embedded PyRun_String and then ends the process by SIGINT (-2), not with the CLI's 130
    (the subprocess test below catches that only at some stop delays)."""
    import signal

    from core.cli import inference
    from core.errors import Stopped

    raised = None  # the handler must raise: returning is a failure too
    try:
        inference._stop(signal.SIGTERM, None)
    except BaseException as exc:  # a KeyboardInterrupt would end pytest itself: caught here to fail the test
        raised = exc
    assert isinstance(raised, Stopped) and not isinstance(raised, KeyboardInterrupt)

    def stopped(args):
        raise Stopped

    monkeypatch.setattr(inference, "run_export", stopped)
    assert cli.main(["export", "--checkpoint", "base", "--out", "unused"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_stopped_export_leaves_nothing(ckpt, tmp_path):
    """SIGTERM (the studio's Stop) mid-export: exit 130, no output folder, no partial folder."""
    import signal
    import subprocess
    import time

    out = tmp_path / "stopped" / "out"
    out.parent.mkdir()
    worker = subprocess.Popen(
        [sys.executable, "-m", "core", "export", "--checkpoint", str(ckpt), "--out", str(out), "--format", "gguf"],
        cwd=Path(export.__file__).parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in worker.stderr:
        if line.startswith("[1/4]"):
            break
    time.sleep(0.5)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=120) == 130, worker.stderr.read()
    assert list(out.parent.iterdir()) == []


def test_progress_reads_steps_and_bars():
    assert export.progress_of("") == (0.0, "starting")
    log = (
        "[1/4] loading the base model\n[2/4] merging\n[3/4] converting 20 tensors to f16\n"
        "tensors:  50%|#####     | 10/20 [00:01<00:01]\rtensors:  75%|#######   | 15/20"
    )
    done, text = export.progress_of(log)
    assert done == pytest.approx((2 + 0.75) / 4) and text == "step 3 of 4: converting 20 tensors to f16 — 75%"


# ---- the real model -------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_exports_merged_and_gguf(real_model, tmp_path):
    """SmolLM2-135M with an adapter: the merged folder answers as base + adapter; the GGUF's
    vocabulary is the embedded GGUF's and transformers reads back the weights written."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = models.resolve_base(real_model)
    trained = make_checkpoint(tmp_path / "ckpt", Path(base), seed=5, scale=0.01)
    hf = _export(tmp_path / "hf", "--checkpoint", str(trained))
    gguf_dir = _export(tmp_path / "gguf", "--checkpoint", str(trained), "--format", "gguf")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(hf).eval(), AutoTokenizer.from_pretrained(hf)
    engine = generate.Engine(base, dtype="float32")
    with engine.selected(trained) as adapted:
        for request in REQUESTS[:2]:
            assert _greedy(model, tokenizer, request, n=24) == _greedy(adapted, engine.tokenizer, request, n=24)
    written = gguf.GGUFReader(gguf_dir / "model-f16.gguf")
    embedded = gguf.GGUFReader(models.gguf_path())
    for key in (
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.pre",
        "llama.rope.freq_base",
        "llama.context_length",
        "llama.attention.layer_norm_rms_epsilon",
    ):
        assert _field(written, key) == _field(embedded, key), key
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file="model-f16.gguf", dtype=torch.float32)
    got = loaded.state_dict()
    for name, weights in model.state_dict().items():
        assert torch.equal(got[name], weights.half().float() if weights.ndim == 2 else weights), name


# ---- the studio page ------------------------------------------------------------------------------


def test_page_checks_before_starting_a_job(tmp_path):
    from streamlit.testing.v1 import AppTest

    from core import jobs

    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    at = AppTest.from_file(str(Path(export.__file__).parents[2] / "pages" / "export.py"), default_timeout=60).run()
    assert not at.exception
    assert at.selectbox[0].value == "base" and at.text_input[0].value.endswith("exports/base-gguf-f16")
    at.text_input[0].set_value(str(full)).run()
    at.button[0].click().run()
    assert not at.exception and "not empty" in at.error[0].value
    assert jobs.list_jobs("export") == []
