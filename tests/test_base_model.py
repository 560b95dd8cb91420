"""Their own base model: a hub id found in the local Hugging Face cache, a hub id that is not there (one line
at once, no request, nothing written), and `model.load_in_4bit` (QLoRA) where this machine runs it.

The cache is a real Hugging Face cache layout (`models--org--name/snapshots/<sha>/`, `refs/main`) holding
the tiny model; HF_HUB_CACHE points at it. Commands run as real `python -m core` processes, with
HF_ENDPOINT at a local listener that records every connection: a lookup that asked the hub would show.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core import cli, store
from core import config as cfg
from core.errors import UserError
from core.training import backends, checkpoints, distributed, models, plan

PROJECT = Path(__file__).resolve().parent.parent
SHA = "0123456789abcdef0123456789abcdef01234567"
ROWS = [
    {
        "prompt": f"A {a} has many {b}s.",
        "plantuml": f"@startuml\nclass {a}\nclass {b}\n{a} --> {b}\n@enduml",
        "diagram_type": "class",
    }
    for a, b in [("Library", "Book"), ("Shop", "Order"), ("Team", "Player"), ("Farm", "Cow")]
]


class Listener:
    """A TCP listener on 127.0.0.1 counting the connections made to it (HF_ENDPOINT points here)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.connections = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self):
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self.done.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def hub():
    listener = Listener()
    yield listener
    listener.close()


def fake_cache(root: Path, repo_id: str, model: Path | None) -> Path:
    """A Hugging Face cache holding `model`'s files as `repo_id`'s main snapshot; returns the snapshot."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / SHA
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    if model is not None:
        for file in model.iterdir():
            shutil.copy(file, snapshot / file.name)
    return snapshot


def umlstudio(args: list[str], home: Path, cache: Path, hub: Listener, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "UMLSTUDIO_HOME": str(home), "HF_HUB_CACHE": str(cache), "HF_ENDPOINT": hub.url}
    env.pop("HF_HUB_OFFLINE", None)  # the studio must not need it to stay off the network
    env["PYTHONPATH"] = str(PROJECT)
    return subprocess.run(
        [sys.executable, "-m", "core", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def files_under(*folders: Path) -> set[str]:
    return {
        str(Path(root) / name) for folder in folders for root, dirs, files in os.walk(folder) for name in dirs + files
    }


def write_config(folder: Path, base: str, **model) -> Path:
    dataset = folder / "dataset"
    dataset.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation"):
        (dataset / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    config = {
        "model": {"base": base, **model},
        "data": {"dataset": str(dataset), "eval_rows": 2},
        "training": {
            "backend": "peft",
            "output_dir": str(folder / "run"),
            "max_steps": 2,
            "save_steps": 2,
            "eval_steps": 2,
            "logging_steps": 1,
            "max_seq_length": 96,
            "tokens_per_batch": 160,
            "gradient_accumulation_steps": 1,
        },
        "lora": {"r": 4, "lora_alpha": 8},
    }
    path = folder / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def test_an_uncached_hub_id_is_one_line_without_a_request_and_writes_nothing(tmp_path, umlstudio_home, hub):
    """The issue's case: `--set model.base=Qwen/Qwen2.5-0.5B` on a machine that does not hold it."""
    cache, work = tmp_path / "hf-cache", tmp_path / "work"
    cache.mkdir()
    work.mkdir()
    before = files_under(tmp_path)
    done = umlstudio(
        ["train", "--config", str(PROJECT / "config" / "quick_test.yaml"), "--set", "model.base=Qwen/Qwen2.5-0.5B"],
        umlstudio_home,
        cache,
        hub,
        work,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: model.base 'Qwen/Qwen2.5-0.5B': not in the Hugging Face cache")
    assert "hf download Qwen/Qwen2.5-0.5B" in lines[0] and "model folder" in lines[0]
    assert hub.connections == 0, "the lookup asked the hub"
    assert files_under(tmp_path) == before, "something was written"


def test_a_cached_hub_id_resolves_to_its_snapshot_and_loads(tmp_path, tiny_model, umlstudio_home, hub):
    snapshot = fake_cache(tmp_path / "hf-cache", "org/tiny-llama", tiny_model)
    done = umlstudio(
        ["prepare-model", "--base", "org/tiny-llama"], umlstudio_home, tmp_path / "hf-cache", hub, tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"org/tiny-llama: ready at {snapshot} (loads in ")
    assert hub.connections == 0


def test_a_cached_copy_without_weights_is_one_line(tmp_path, umlstudio_home, hub):
    snapshot = fake_cache(tmp_path / "hf-cache", "org/half", None)
    (snapshot / "config.json").write_text("{}")
    done = umlstudio(["prepare-model", "--base", "org/half"], umlstudio_home, tmp_path / "hf-cache", hub, tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert "lacks config.json or its weights" in lines[0] and "hf download org/half" in lines[0]


@pytest.mark.e2e
def test_a_phase_trains_on_a_cached_hub_id_and_records_the_id(tmp_path, tiny_model, umlstudio_home, hub):
    cache = tmp_path / "hf-cache"
    fake_cache(cache, "org/tiny-llama", tiny_model)
    path = write_config(tmp_path, "org/tiny-llama")
    done = umlstudio(["train", "--config", str(path)], umlstudio_home, cache, hub, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = tmp_path / "run" / "checkpoint-2"
    assert checkpoints.verify(ckpt) == []
    assert cfg.load(tmp_path / "run" / "config.yaml").model.base == "org/tiny-llama"  # the id, not this cache's path
    assert hub.connections == 0


def test_a_hub_id_is_looked_up_in_the_cache_only(tmp_path):
    """In this process the cache is the default one (HF_HUB_CACHE is read when huggingface_hub is imported):
    an id nobody downloaded is not found there, and no form of it is passed on to a download."""
    with pytest.raises(UserError, match="not in the Hugging Face cache"):
        models.resolve_base("no-such-org-here/no-such-model-here")
    assert models.base_dir("no-such-org-here/no-such-model-here") == Path("no-such-org-here/no-such-model-here")


# ---- model.load_in_4bit -----------------------------------------------------------------------

ON_A_CPU = pytest.mark.skipif(distributed.gpu_count() > 0, reason="the CPU rules; a CUDA GPU runs both backends")


@pytest.fixture(scope="module")
def tiny64(tmp_path_factory):
    """The tiny model with hidden_size 64: each of its layers one whole 4-bit block."""
    home = tmp_path_factory.mktemp("tiny64-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UMLSTUDIO_HOME", str(home))
        return models.make_tiny_model(home / "tiny-llama-64", hidden_size=64)


@ON_A_CPU
def test_4bit_with_unsloth_on_a_cpu_is_refused_before_anything(tmp_path, tiny64):
    config = cfg.load(write_config(tmp_path, str(tiny64), load_in_4bit=True), ["training.backend=unsloth"])
    with pytest.raises(UserError, match="unsloth's 4-bit kernels need one — set training.backend: peft"):
        plan.plan(config)
    assert not (tmp_path / "run").exists()


@ON_A_CPU
def test_4bit_on_a_cpu_refuses_layers_that_are_not_whole_blocks(tmp_path, tiny_model):
    config = cfg.load(write_config(tmp_path, str(tiny_model), load_in_4bit=True))
    with pytest.raises(UserError, match="has hidden_size 32, num_attention_heads x head_dim 32, not a multiple of 64"):
        plan.plan(config)


@ON_A_CPU
def test_4bit_auto_on_a_cpu_plans_the_peft_backend(tmp_path, tiny64, capsys):
    config = cfg.load(write_config(tmp_path, str(tiny64), load_in_4bit=True), ["training.backend=auto"])
    planned = plan.plan(config)
    assert planned.config.training.backend == "peft" and config.training.backend == "auto"
    assert "model.load_in_4bit on a CPU: training with the peft backend" in capsys.readouterr().out


def test_4bit_loads_nf4_layers_under_fp32_adapters_that_learn(tmp_path, tiny64):
    import torch
    from bitsandbytes.nn import Linear4bit

    config = cfg.load(write_config(tmp_path, str(tiny64), load_in_4bit=True), ["model.dtype=float32"])
    backend = backends.PeftBackend()
    model, tokenizer = backend.load(config)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(layer.base_layer, Linear4bit) and layer.base_layer.weight.dtype == torch.uint8
    assert layer.base_layer.weight.quant_state.quant_type == "nf4"
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and all(p.dtype == torch.float32 for p in trained)
    ids = tokenizer(ROWS[0]["plantuml"], return_tensors="pt").input_ids.to(model.device)  # a GPU's, where there is one
    optimizer = torch.optim.AdamW(trained, lr=1e-2)
    losses = []
    for _ in range(4):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.e2e
@ON_A_CPU
def test_a_4bit_phase_trains_on_a_cpu(tmp_path, tiny64, umlstudio_home, capsys):
    path = write_config(tmp_path, str(tiny64), load_in_4bit=True)
    assert cli.main(["train", "--config", str(path)]) == 0
    run = store.runs.for_output_dir(tmp_path / "run")
    assert run is not None and (run.status, run.backend) == ("finished", "peft")
    assert checkpoints.verify(tmp_path / "run" / "checkpoint-2") == []
    assert cfg.load(tmp_path / "run" / "config.yaml").model.load_in_4bit


def test_the_memory_estimate_counts_4bit_weights_at_about_half_a_byte():
    """A Llama-2-7B shape (6.7 B parameters, 6.5 B of them in the layers' linear modules): 13.5 GB of bf16
    weights; in 4-bit the linear ones take NF4 with its scales, the embeddings stay bf16 (about 3.9 GB)."""
    from core.training import fit

    llama7b = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
               "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000}  # fmt: skip
    config = cfg.Config.model_validate(
        {"model": {"dtype": "bfloat16"}, "training": {"backend": "unsloth", "rows_per_micro_batch": 1}}
    )
    full = fit.estimate(config, llama7b, where="cuda")
    config.model.load_in_4bit = True
    quantised = fit.estimate(config, llama7b, where="cuda")
    assert 13.3 < full.weights_gb < 13.6
    assert 3.7 < quantised.weights_gb < 4.0
    assert quantised.lora_gb == full.lora_gb and quantised.activations_gb == full.activations_gb
