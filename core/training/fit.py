"""Fits before it starts: a phase's config checked against its base model's shape and this machine's
memory, from the model's config.json alone (no weights, no torch), before any model is loaded.

- `lora.r` no larger than the smallest dimension it adapts (a rank above min(in, out) adds nothing
  but memory), and every `lora.target_modules` name a module of the model;
- the peak memory, estimated in parts, against the memory available (the cgroup's limit or
  MemAvailable on a CPU; the GPU's free memory where one trains): a phase that cannot fit is refused
  with the estimate and the setting to change, instead of a worker killed by the kernel an hour in.

The estimate (bytes), for one process:
  weights      parameters × 4 (the peft backend keeps fp32 master weights and computes in bf16 under
               autocast, which caches a bf16 copy of each weight: + 2 a parameter) or × the dtype's bytes
               (unsloth loads in the compute dtype); with model.load_in_4bit the layers' linear weights
               take NF4_BYTES a parameter (4 bits and their double-quantised scales) and the rest
               (embeddings, norms) stays as above
  LoRA         adapter parameters × 16: fp32 weights, gradients and AdamW's two moments
  activations  tokens a micro-batch × layers × what one layer keeps for backward per token
               (ACT_* numbers of hidden / kv / intermediate / rank width, 4 bytes each: under bf16 autocast
               norms, the residual and the LoRA path stay fp32 beside the bf16 copies the matmuls keep, so
               it saves nothing measurable), plus the output layer: answer tokens ×
               vocabulary × 4 bytes × 3 (logits, log-softmax, their gradient)
  evaluation   forward only: the output layer of one micro-batch (counted against the training peak,
               the larger one is the peak)
  runtime      RUNTIME_GB for torch, the tokenizer and the rows
BENCHMARKS.md compares it with measured peaks.
"""

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core import config as cfg
from core.errors import UserError

GB = 1e9
RUNTIME_GB = 1.2
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits; an 8-bit scale per block of 64; an fp32 one per 256 blocks
ANSWER_SHARE = 0.5  # the output layer runs only where the next token is an answer token: about half of a row
# per token and layer, what autograd keeps for backward, in widths: hidden-wide tensors (norm inputs and
# outputs, q and its rotation, attention output, o_proj input, LoRA B outputs, residuals), kv-wide (k, v,
# their LoRA outputs), intermediate-wide (gate, up, their LoRA outputs, SiLU, the product), and
# rank-wide (each adapted module's LoRA A output). Counted from the Llama layer, then set so that the
# estimate meets the measured fp32 peak of the peft backend at 4,096 tokens, r 16 (BENCHMARKS.md).
ACT_HIDDEN, ACT_KV, ACT_INTERMEDIATE = 15, 6, 6
# the modules of the Llama family (llama, mistral, qwen2/3, gemma, phi3 aside): (input, output) widths
LLAMA_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "granite", "olmo", "smollm3"}
# the embedded model before `umlstudio prepare-model` wrote its config.json (SmolLM2-135M-Instruct)
EMBEDDED_SHAPE = {
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}


@dataclass(frozen=True)
class Estimate:
    weights_gb: float
    lora_gb: float
    activations_gb: float
    evaluation_gb: float
    runtime_gb: float
    tokens: int  # a micro-batch at most
    processes: int
    device: str  # cpu | cuda

    @property
    def peak_gb(self) -> float:
        per_process = self.weights_gb + self.lora_gb + max(self.activations_gb, self.evaluation_gb) + self.runtime_gb
        return per_process * (self.processes if self.device == "cpu" else 1)

    def parts(self) -> str:
        copies = f", × {self.processes} processes" if self.processes > 1 and self.device == "cpu" else ""
        return (
            f"weights {self.weights_gb:.2f} + LoRA with optimizer {self.lora_gb:.2f} + activations "
            f"{self.activations_gb:.2f} for {self.tokens:,} tokens a micro-batch (evaluation "
            f"{self.evaluation_gb:.2f}) + runtime {self.runtime_gb:.1f} GB{copies}"
        )

    def line(self, available_gb: float | None = None) -> str:
        room = f" of {available_gb:.1f} GB available" if available_gb else ""
        return f"memory: estimated peak {self.peak_gb:.1f} GB{room} ({self.parts()})"


def shape(base: str) -> dict | None:
    """The base model's config.json (its shape), or None when it is not on disk (a hub id)."""
    from core.training import models

    folder = models.base_dir(base)
    path = folder / "config.json"
    if not path.is_file():
        return dict(EMBEDDED_SHAPE) if base == models.EMBEDDED else None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"model.base: {path} is not valid JSON ({str(exc)[:100]}) — use a complete model folder"
        ) from None
    found = found.get("text_config", found) if isinstance(found, dict) else None
    return found if isinstance(found, dict) and found.get("hidden_size") else None


def modules(found: dict) -> dict[str, tuple[int, int]] | None:
    """(input, output) width of each adaptable linear module of a layer; None for an architecture not known here."""
    if found.get("model_type") not in LLAMA_TYPES:
        return None
    h, inter = found["hidden_size"], found["intermediate_size"]
    heads = found["num_attention_heads"]
    head_dim = found.get("head_dim") or h // heads
    kv = found.get("num_key_value_heads") or heads
    return {
        "q_proj": (h, heads * head_dim),
        "k_proj": (h, kv * head_dim),
        "v_proj": (h, kv * head_dim),
        "o_proj": (heads * head_dim, h),
        "gate_proj": (h, inter),
        "up_proj": (h, inter),
        "down_proj": (inter, h),
    }


def targets(config: cfg.Config, layer: dict[str, tuple[int, int]]) -> list[str]:
    wanted = config.lora.target_modules
    return list(layer) if wanted in (["all-linear"], ["all_linear"]) else wanted


def check_shape(config: cfg.Config, found: dict) -> None:
    """lora.target_modules name modules of the model; lora.r is no larger than the smallest width it adapts."""
    layer = modules(found)
    if layer is None:
        return
    chosen = targets(config, layer)
    unknown = [name for name in chosen if name not in layer]
    if unknown:
        raise UserError(
            f"lora.target_modules: {', '.join(repr(n) for n in unknown)} is not a module of "
            f"{config.model.base} ({found['model_type']}: {', '.join(layer)}) — name some of those"
        )
    name, (n_in, n_out) = min(((n, layer[n]) for n in chosen), key=lambda item: min(item[1]))
    if config.lora.r > min(n_in, n_out):
        raise UserError(
            f"lora.r {config.lora.r}: larger than the smallest dimension it adapts ({name}: {n_in} → "
            f"{n_out} in {config.model.base}) — set lora.r to at most {min(n_in, n_out)} (64 or less "
            f"is usual)"
        )


def device() -> str:
    from core.training import distributed

    return "cuda" if distributed.gpu_count() else "cpu"


def estimate(config: cfg.Config, found: dict | None = None, where: str | None = None) -> Estimate | None:
    """The peak memory of training this phase in one process (see the module's docstring); None when
    the base model's shape is not known here."""
    found = found if found is not None else shape(config.model.base)
    layer = modules(found) if found else None
    if layer is None:
        return None
    where = where or device()
    t = config.training
    h, inter, layers = found["hidden_size"], found["intermediate_size"], found["num_hidden_layers"]
    vocab = found["vocab_size"]
    kv = layer["k_proj"][1]
    embeddings = vocab * h * (1 if found.get("tie_word_embeddings") else 2)
    params = layers * (sum(i * o for i, o in layer.values()) + 2 * h) + embeddings + h
    chosen = targets(config, layer)
    lora_params = layers * sum(config.lora.r * (layer[n][0] + layer[n][1]) for n in chosen)
    bf16 = config.model.dtype == "bfloat16" or (config.model.dtype == "auto" and _native_bf16(where))
    peft = t.backend != "unsloth" and not (t.backend == "auto" and where == "cuda")
    weight_bytes = (6 if bf16 else 4) if peft else (2 if bf16 else 4)
    weights = params * weight_bytes
    if config.model.load_in_4bit:
        linear = layers * sum(i * o for i, o in layer.values())
        weights = linear * NF4_BYTES + (params - linear) * weight_bytes
    act_bytes = 4.0
    tokens = t.tokens_per_batch or t.rows_per_micro_batch * t.max_seq_length
    per_token_layer = ACT_HIDDEN * h + ACT_KV * kv + ACT_INTERMEDIATE * inter + len(chosen) * config.lora.r
    head = tokens * ANSWER_SHARE * vocab * 4
    return Estimate(
        weights_gb=weights / GB,
        lora_gb=lora_params * 16 / GB,
        activations_gb=(tokens * layers * per_token_layer * act_bytes + 3 * head) / GB,
        evaluation_gb=2 * head / GB,
        runtime_gb=RUNTIME_GB,
        tokens=tokens,
        processes=t.processes,
        device=where,
    )


def _native_bf16(where: str) -> bool:
    from core.training import models

    return where == "cuda" or models.cpu_has_native_bf16()


def available_gb(where: str) -> float | None:
    """Memory this process can still use: the GPU's free memory, else the smaller of MemAvailable and
    what the cgroup's limit leaves; None when it cannot be read."""
    if where == "cuda":
        smi = shutil.which("nvidia-smi")
        if not smi:
            return None
        try:
            out = subprocess.run(
                [smi, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.split()
            return float(out[0]) * 1024 * 1024 / GB if out else None
        except (OSError, ValueError, subprocess.SubprocessError):
            return None
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024 / GB)
    except (OSError, ValueError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append((int(limit) - used) / GB)
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def check(config: cfg.Config) -> Estimate | None:
    """Refuse (UserError, one line) a phase whose LoRA does not fit its model's shape or whose estimated
    peak memory is over what is available; return the estimate (None for a model whose shape is not known)."""
    found = shape(config.model.base)
    if found is None:
        return None
    check_shape(config, found)
    where = device()
    guess = estimate(config, found, where)
    if guess is None:
        return None
    limit = available_gb(where)
    if limit and guess.peak_gb > limit:
        biggest = max(
            ("activations", guess.activations_gb),
            ("lora", guess.lora_gb),
            ("weights", guess.weights_gb),
            key=lambda part: part[1],
        )[0]
        fix = {
            "activations": "lower training.tokens_per_batch (or training.rows_per_micro_batch × "
            "training.max_seq_length)",
            "lora": "lower lora.r or name fewer lora.target_modules",
            "weights": "pick a smaller model.base",
        }[biggest]
        if guess.processes > 1 and guess.device == "cpu":
            fix += ", or train in fewer training.processes"
        raise UserError(f"{guess.line(limit)} — it does not fit: {fix}")
    return guess
