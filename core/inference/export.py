"""Export a checkpoint for use outside the studio: a merged transformers folder, or a GGUF file for
llama.cpp-based tools (llama.cpp, Ollama, LM Studio).

    umlstudio export --checkpoint CKPT --out DIR [--format hf|gguf] [--gguf-type f16|q8_0]

Both formats start the same way: the base model is loaded in float32, the checkpoint's LoRA adapter
is attached exactly as the generation engine attaches it (same fit checks), and PEFT's
`merge_and_unload` folds it into the base weights. Then

- `hf` saves the merged model (float32: the merge is exact there) with the tokenizer and its chat
  template, a folder any transformers code loads with `from_pretrained(DIR)`;
- `gguf` writes the merged weights with the `gguf` package's writer in llama.cpp's layout for the
  Llama architecture (SmolLM2 is one): tensor names from gguf's own name map, the query and key
  projections permuted to llama.cpp's rotary layout, the byte-level BPE vocabulary, merges,
  special token ids and chat template in the metadata; 2-D weights in f16 or q8_0, norms in f32.
  Beside it an Ollama `Modelfile` (the chat template, the default system prompt and the stop tokens).

Everything is checked before any work (the checkpoint, the format, that `--out` is a new or empty
folder in a writable place); the export is written into a hidden folder beside `--out` and renamed
into place at the end, so a failed or interrupted export leaves nothing at `--out`.
Progress goes to stderr as `[step/steps] what` lines and tqdm bars; the studio's Export page reads them.

torch, transformers, peft and gguf are imported inside functions: the studio imports this module.
"""

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from core import paths
from core.data.prompts import chat_prompt
from core.errors import UserError
from core.inference import generate
from core.training import checkpoints, models

FORMATS = ("hf", "gguf")
GGUF_TYPES = ("f16", "q8_0")
INFO = "EXPORT.json"
MODELFILE = "Modelfile"
_STEP = re.compile(r"^\[(\d+)/(\d+)\] (.*)$", re.M)
_BAR = re.compile(r"(\d+)%\|")


@dataclass(frozen=True)
class Plan:
    """A checked export: what to export, from which base model, where, in which format."""

    checkpoint: Path | str  # a checkpoint folder, or checkpoints.BASE
    base: str  # the base model as the checkpoint names it (resolved when the export runs)
    out: Path
    format: str
    gguf_type: str

    @property
    def steps(self) -> int:
        return 3 if self.format == "hf" else 4

    @property
    def gguf_name(self) -> str:
        return f"model-{self.gguf_type}.gguf"


# ---- checks before any work (no torch: the studio calls these) ---------------------------------


def check(checkpoint: str, out, format: str = "hf", gguf_type: str = "f16") -> Plan:
    """Every input checked, nothing loaded or written; UserError with the fix when something is wrong."""
    if format not in FORMATS:
        raise UserError(
            f"--format {format!r}: unknown format — use hf (a merged transformers folder) or gguf (llama.cpp, Ollama)"
        )
    if gguf_type not in GGUF_TYPES:
        raise UserError(f"--gguf-type {gguf_type!r}: unknown GGUF type — use f16 or q8_0")
    ckpt = generate.resolve_checkpoint(checkpoint)
    base = models.EMBEDDED if ckpt == checkpoints.BASE else generate.base_of(ckpt)
    if format == "gguf":
        _check_llama(base)
    return Plan(ckpt, base, _check_out(out), format, gguf_type)


def _check_out(value) -> Path:
    if not str(value).strip():
        raise UserError("--out: empty — name a new folder to export into, e.g. --out exports/quick-test")
    out = Path(value).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file — name a new folder to export into")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out}: exists and is not empty — name a new folder, or empty this one first")
    paths.check_not_system(out, "--out", "export into a folder of yours")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"--out {out}: {existing} is a file, so no folder can be made under it — pick another place")
    try:  # the honest test of writability (permissions, read-only mounts); leaves nothing behind
        tempfile.TemporaryDirectory(dir=existing, prefix=".umlstudio-probe-").cleanup()
    except OSError as exc:
        raise UserError(
            f"--out {out}: cannot write in {existing} ({exc.strerror}) — pick a folder you can write to"
        ) from None
    return out


def _check_llama(base: str) -> None:
    """GGUF export writes llama.cpp's Llama layout: refuse other architectures before any work."""
    if base == models.EMBEDDED:
        return  # SmolLM2 is a Llama
    config = Path(base).expanduser() / "config.json"
    if not config.is_file():
        return  # a hub id: known only once loaded; _write_gguf checks it again
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type != "llama":
        raise UserError(
            f"--format gguf: the base model {base} is a {model_type!r} model; GGUF export writes the Llama "
            "architecture only — use --format hf and convert that folder with llama.cpp's converter"
        )


# ---- the export --------------------------------------------------------------------------------


def _step(plan: Plan, n: int, text: str) -> None:
    print(f"[{n}/{plan.steps}] {text}", file=sys.stderr, flush=True)


def run(plan: Plan) -> dict:
    """Do the export that `check` planned; return what EXPORT.json records."""
    out = plan.out
    work = _nearest_dir(out.parent) / f".{out.name}.partial-{os.getpid()}"
    work.mkdir()  # (not mkdtemp: the export keeps the user's umask, not mode 0700)
    try:
        model, tokenizer = merged(plan)
        if plan.format == "hf":
            _step(plan, 3, "saving the merged model (float32) and the tokenizer")
            model.save_pretrained(work)
            tokenizer.save_pretrained(work)
            files = sorted(p.name for p in work.iterdir())
        else:
            _write_gguf(plan, model, tokenizer, work / plan.gguf_name)
            files = [plan.gguf_name]
            text = modelfile(tokenizer, plan.gguf_name)
            if text:
                (work / MODELFILE).write_text(text)
                files.append(MODELFILE)
            else:
                print(
                    f"note: the chat template is not ChatML, so no Ollama {MODELFILE} was written; "
                    "the GGUF file carries the template for llama.cpp",
                    file=sys.stderr,
                )
        info = {
            "checkpoint": str(plan.checkpoint),
            "checkpoint_sha256": generate.fingerprint(plan.checkpoint),
            "base": plan.base,
            "format": plan.format,
            "gguf_type": plan.gguf_type if plan.format == "gguf" else None,
            "files": files,
            "versions": {p: _version(p) for p in ("torch", "transformers", "peft", "gguf")},
        }
        (work / INFO).write_text(json.dumps(info, indent=1))
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_dir():
            out.rmdir()  # checked empty; refuses if something appeared meanwhile
        work.rename(out)
        return info
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _nearest_dir(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def merged(plan: Plan):
    """(model, tokenizer): the base in float32 with the checkpoint's adapter merged into its weights."""
    _step(
        plan,
        1,
        f"loading the base model {plan.base}" + ("" if plan.checkpoint == checkpoints.BASE else " and the adapter"),
    )
    engine = generate.Engine(plan.base, dtype="float32")
    engine.prepare(plan.checkpoint)  # the adapter attached as the generation engine does, fit checked
    _step(plan, 2, "merging the adapter into the base weights")
    model = engine.model if engine.peft is None else engine.peft.merge_and_unload()
    model.eval()
    return model, models.load_tokenizer(engine.base)


# ---- GGUF (llama.cpp's Llama layout) ----------------------------------------------------------


def _permute(weights, n_head: int):
    """Query/key rows from transformers' rotate-half order to llama.cpp's interleaved rotary order
    (the inverse of what transformers undoes when it loads a GGUF)."""
    rows = weights.shape[0]
    return weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _tokenizer_pre(tokens: list[str]) -> str:
    """llama.cpp's name for the pre-tokenizer. The embedded SmolLM2 GGUF names its own; a tokenizer
    with the same vocabulary gets that name, any other the generic 'default' (with a notice)."""
    import gguf

    reader = gguf.GGUFReader(models.gguf_path())
    reference = reader.fields["tokenizer.ggml.tokens"]
    if len(reference.data) == len(tokens) and all(
        str(bytes(reference.parts[i]), "utf-8") == token for i, token in zip(reference.data, tokens)
    ):
        return reader.fields["tokenizer.ggml.pre"].contents()
    print("note: unknown tokenizer; llama.cpp will pre-tokenize with its 'default' rules", file=sys.stderr)
    return "default"


def _add_tokenizer(writer, tokenizer, vocab_size: int) -> None:
    import gguf

    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    if backend["model"]["type"] != "BPE":
        raise UserError(
            f"GGUF export: the tokenizer is {backend['model']['type']}, not byte-level BPE — use --format hf"
        )
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_size):
        token = tokenizer.convert_ids_to_tokens(index) if index < len(tokenizer) else None
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in backend["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_tokenizer_pre(tokens))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for add, token_id in (
        (writer.add_bos_token_id, tokenizer.bos_token_id),
        (writer.add_eos_token_id, tokenizer.eos_token_id),
        (writer.add_pad_token_id, tokenizer.pad_token_id),
        (writer.add_unk_token_id, tokenizer.unk_token_id),
    ):
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(False)  # prompts are encoded without special tokens, as in training
    writer.add_chat_template(tokenizer.chat_template)


def _write_gguf(plan: Plan, model, tokenizer, path: Path) -> None:
    import gguf
    import numpy as np
    from tqdm import tqdm

    config = model.config
    if config.model_type != "llama":
        raise UserError(
            f"--format gguf: the base model {plan.base} is a {config.model_type!r} model; "
            "GGUF export writes the Llama architecture only — use --format hf"
        )
    rope = getattr(config, "rope_parameters", None) or {"rope_type": "default", "rope_theta": config.rope_theta}
    if (
        rope.get("rope_type", "default") != "default"
        or getattr(config, "attention_bias", False)
        or getattr(config, "mlp_bias", False)
    ):
        raise UserError(
            f"--format gguf: {plan.base} uses rope scaling or biases, "
            "which this GGUF writer does not map — use --format hf"
        )
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    qtype = {"f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[plan.gguf_type]
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[plan.gguf_type]

    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(f"plantuml-lora-studio {Path(str(plan.checkpoint)).parent.name}/{Path(str(plan.checkpoint)).name}")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, tokenizer, config.vocab_size)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    state = model.state_dict()
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # llama.cpp reuses token_embd when output.weight is absent
    _step(plan, 3, f"converting {len(state)} tensors to {plan.gguf_type}")
    for hf_name, tensor in tqdm(state.items(), desc="tensors", unit="tensor", file=sys.stderr):
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UserError(
                f"--format gguf: the model has a tensor {hf_name} "
                "that llama.cpp's Llama layout has no place for — use --format hf"
            )
        data = tensor.detach().float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, config.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, config.num_key_value_heads)
        if data.ndim == 1:  # norms stay f32, as llama.cpp's converter keeps them
            writer.add_tensor(name, data.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, data.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    _step(plan, 4, f"writing {path.name}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=True)
    writer.close()


def modelfile(tokenizer, gguf_name: str) -> str | None:
    """An Ollama Modelfile for a ChatML chat template (SmolLM2's), with the template's default system
    prompt, so Ollama builds the prompt exactly as training did; None for other templates."""
    marker = "\x00request\x00"
    match = re.fullmatch(
        r"(?:<\|im_start\|>system\n(?P<system>.*?)<\|im_end\|>\n)?<\|im_start\|>user\n"
        + re.escape(marker)
        + r"<\|im_end\|>\n<\|im_start\|>assistant\n",
        chat_prompt(tokenizer, marker),
        flags=re.S,
    )
    if not match:
        return None
    system = match.group("system")
    lines = [
        "# Ollama: ollama create plantuml -f Modelfile && ollama run plantuml",
        "# Ask as training did: 'Write a PlantUML <type> diagram for this requirement.' "
        "then a blank line and the requirement.",
        "# Greedy decoding (temperature 0), as the studio evaluates.",
        f"FROM ./{gguf_name}",
        'TEMPLATE """{{- if .System }}<|im_start|>system',
        "{{ .System }}<|im_end|>",
        "{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}",
        "{{ .Content }}<|im_end|>",
        "{{ end }}<|im_start|>assistant",
        '"""',
    ]
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [
        'PARAMETER stop "<|im_end|>"',
        'PARAMETER stop "<|im_start|>"',
        "PARAMETER temperature 0",
        "PARAMETER num_predict 512",
    ]
    return "\n".join(lines) + "\n"


# ---- the studio's view of a running export ------------------------------------------------------


def progress_of(log: str) -> tuple[float, str]:
    """How far an export is (0..1) and what it does, from its stderr (the `[i/n]` lines and tqdm bars)."""
    steps = list(_STEP.finditer(log))
    if not steps:
        return 0.0, "starting"
    last = steps[-1]
    index, total, text = int(last.group(1)), int(last.group(2)), last.group(3)
    bars = _BAR.findall(log[last.end() :].replace("\r", "\n"))
    within = int(bars[-1]) / 100 if bars else 0.0
    if bars:
        text += f" — {bars[-1]}%"
    return min(1.0, (index - 1 + within) / total), f"step {index} of {total}: {text}"


def read_info(folder) -> dict | None:
    """What an export folder's EXPORT.json records; None when there is none."""
    path = Path(folder) / INFO
    return json.loads(path.read_text()) if path.is_file() else None


def default_out(checkpoint: str, format: str, gguf_type: str = "f16") -> Path:
    """A new folder under the runs root's exports/ for this checkpoint and format."""
    name = "base" if checkpoint == checkpoints.BASE else f"{Path(checkpoint).parent.name}-{Path(checkpoint).name}"
    return paths.home() / "exports" / (f"{name}-{format}" + (f"-{gguf_type}" if format == "gguf" else ""))
