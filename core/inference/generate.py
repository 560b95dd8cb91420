"""The generation engine: one base model in memory, the LoRA adapters of many checkpoints hot-swapped,
rows decoded with continuous batching.

`Engine(base)` loads the base model once. Each checkpoint's adapter is loaded the first time it is
asked for (PEFT `load_adapter`, under a name derived from its path) and selected with
`set_adapter`; the checkpoint `base` means adapters disabled. A checkpoint trained on another base
model, or one without adapter weights, is a UserError, never a shape mismatch deep in PEFT.

Prompts are user messages (`prompts.request`: the wanted diagram type, then the requirement),
formatted by `prompts.chat_prompt`, the one function training uses too. A prompt that does not fit
the model's context with `max_new_tokens` is refused with the numbers before anything runs.

Decoding is greedy by default, so two checkpoints' outputs differ only because their weights differ,
and a row's output is the one it gets alone (padding changes float sums in their last bits at most;
the tests and the benchmark compare token for token). `Decoding` adds a repetition control (DRY: a
token that would extend a repeat of the row's own output is penalised, so a loop is steered away
from before the loop guard would have to cut it) and sampling (temperature, top-k, top-p, a seeded
generator per row); greedy with neither stays the batched argmax. **Continuous batching**: up to
`batch_size` rows share one forward pass per token, each in its own slot of one KV cache that is
allocated once and written in place (`_Slab`: a row at its own length, a 4-D mask, attention that
reads the cache where it is). A row leaves as soon as it ends — `@enduml` (on its decoded text;
what follows is cut off), the end-of-turn token, the loop guard (core.inference.repair: `Generation.looped`)
or `max_new_tokens` — and the next prompts are prefilled together (left padded, as
`model.generate` pads a batch) and take the free slots. `model.generate` instead keeps computing
finished rows until the whole batch ends, and its `DynamicCache` copies the whole cache at every
token.

Why our own loop: transformers 5.17's `generate_batch` / `ContinuousBatchingManager` runs on CPU,
also on a PEFT model (called on the wrapped model, whose layers carry the LoRA weights; outputs
token-identical), but it switches the model to paged attention, and on this CPU it was no faster
than one row at a time (embedded model, 4 prompts x 40 new tokens: 41.6 s vs 47.4 s, plus ~48 s
of warm-up on the first call); nor can it end a row on a stop string or a loop guard while it
decodes (only on end-of-sequence ids). vLLM and SGLang need a GPU. The loop here is ~200 lines
on transformers' model forward (its attention functions are pluggable, `AttentionInterface`).

`python -m core.inference.generate --checkpoint C --prompt-file F --out result.json` is the worker the studio
starts (the studio never imports torch; its flags are core/cli/inference.py's, `work` does the job): it prints
the text as it streams and writes the result. `umlstudio generate` is in core/cli/inference.py too.

torch, transformers and peft are imported inside functions: the studio imports this module.
"""

import contextlib
import hashlib
import json
import re
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from core import paths
from core.data import prompts
from core.data.prompts import chat_prompt
from core.errors import UserError
from core.inference import repair
from core.training import checkpoints, models

STOP = "@enduml"
SEED = 0
MAX_ADAPTERS = 8  # adapters kept loaded; the least recently used one is dropped beyond that


@dataclass
class Generation:
    prompt: str  # the user message
    output: str  # decoded text, cut right after @enduml (repaired, when it was)
    tokens: int  # tokens generated for this row (up to and including the stop)
    latency_s: float  # from the row's prefill until it ended
    truncated: bool  # hit max_new_tokens without @enduml
    looped: bool = False  # stopped by the loop guard
    loop: str | None = None  # what repeated, in words
    raw_output: str = ""  # what the model wrote (the output before any repair)
    repaired: bool = False
    repair: list[str] = field(default_factory=list)  # one line per change, in order
    raw_valid: bool | None = None  # PlantUML's verdict on raw_output (None: not checked)
    valid: bool | None = None  # PlantUML's verdict on output (None: not checked)
    repair_s: float = 0.0  # checking and repairing, per row

    def __post_init__(self):
        self.raw_output = self.raw_output or self.output


def cut_at_stop(text: str) -> tuple[str, bool]:
    """Text up to and including the first @enduml, and whether there was one."""
    at = text.find(STOP)
    return (text[: at + len(STOP)], True) if at >= 0 else (text, False)


# ---- checkpoints and their base models --------------------------------------------------------


def resolve_checkpoint(ref) -> Path | str:
    """'base', or a checkpoint folder that holds adapter weights (UserError otherwise)."""
    ckpt = checkpoints.resolve(str(ref))
    if ckpt == checkpoints.BASE:
        return ckpt
    checkpoints.read_adapter(ckpt, str(ref))  # both files read cleanly before any model is loaded
    return ckpt


def base_of(ckpt: Path | str) -> str:
    """The base model a checkpoint was trained on: its umlstudio.json, else its adapter_config.json."""
    base = checkpoints.info(ckpt).get("config", {}).get("model", {}).get("base")
    if not base:
        try:
            base = json.loads((Path(ckpt) / "adapter_config.json").read_text()).get("base_model_name_or_path")
        except (OSError, json.JSONDecodeError):
            base = None
    if not base:
        raise UserError(
            f"{ckpt}: cannot tell which base model it was trained on "
            "(no model.base in umlstudio.json, no base_model_name_or_path in adapter_config.json)"
        )
    return base


def common_base(refs, base: str | None = None) -> str:
    """The one base model serving every checkpoint in `refs` (resolved), checking they agree.

    `base` checkpoints take the base of the others; with none, `base` or the embedded default."""
    found: dict[str, str] = {}
    for ref in refs:
        ckpt = resolve_checkpoint(ref)
        if ckpt != checkpoints.BASE:
            found.setdefault(models.resolve_base(base_of(ckpt)), str(ckpt))
    if base is not None:
        wanted = models.resolve_base(base)
        for resolved, ckpt in found.items():
            if resolved != wanted:
                raise UserError(
                    f"{ckpt}: incompatible checkpoint — trained on {resolved}, not on the base model {wanted}"
                )
        return wanted
    if len(found) > 1:
        listing = "; ".join(f"{ckpt} on {resolved}" for resolved, ckpt in found.items())
        raise UserError(
            f"incompatible checkpoints — they were trained on different base models ({listing}); "
            "compare checkpoints of one base model"
        )
    return next(iter(found), None) or models.resolve_base(models.EMBEDDED)


def fingerprint(ckpt) -> str:
    """What identifies the weights behind a checkpoint: its manifest's sha256 (as the store records
    it), else a sha256 over its adapter files."""
    if ckpt == checkpoints.BASE:
        return "base"
    ckpt = Path(ckpt)
    if (ckpt / checkpoints.MANIFEST).is_file():
        return checkpoints.sha256_file(ckpt / checkpoints.MANIFEST)
    files = (ckpt / "adapter_config.json", ckpt / checkpoints.ADAPTER_FILE)
    return hashlib.sha256("".join(checkpoints.sha256_file(p) for p in files).encode()).hexdigest()


def _adapter_name(ckpt: Path, signature: tuple) -> str:
    readable = re.sub(r"\W", "_", f"{ckpt.parent.name}_{ckpt.name}")
    digest = hashlib.sha1(f"{ckpt}|{signature}".encode()).hexdigest()[:8]
    return f"{readable}_{digest}"


def _misfit(model, weights: Path) -> str | None:
    """Why the LoRA weights in `weights` cannot attach to `model` (a missing module, a wrong shape),
    read from the file's header without loading it; None when they fit."""
    modules = dict(model.named_modules())
    try:
        shapes = checkpoints.adapter_shapes(weights)
    except UserError as exc:
        return str(exc)
    for key, shape in shapes.items():
        name = key.removeprefix("base_model.model.")
        for suffix, dim, feature in ((".lora_A.weight", 1, "in_features"), (".lora_B.weight", 0, "out_features")):
            if name.endswith(suffix):
                target = name[: -len(suffix)]
                if target not in modules:
                    return f"the base model has no module {target}"
                size = getattr(modules[target], feature, None)
                if size != shape[dim]:
                    return f"{key} has shape {list(shape)}, but {target}.{feature} is {size}"
    return None


# ---- the decoding loop ------------------------------------------------------------------------


@dataclass
class _Row:
    """One prompt in the decoding loop."""

    index: int
    ids: list[int]  # the prompt's token ids (for a second attempt: prompt + the kept lines)
    limit: int  # max new tokens
    runner_up: bool = False  # take the second-best token at the first step (a second attempt)
    rng: object = None  # the row's torch.Generator when it samples
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    lines: int = 0  # tokens whose text is settled: the text up to the last completed line
    lines_text: str = ""
    whole: bool = False  # decode the whole text every step (pieces did not add up, see _step)
    reason: str | None = None  # stop | eos | loop | limit
    loop: str | None = None
    started: float = 0.0
    finished: float = 0.0


class _Slab:
    """The KV cache of the decoding loop, allocated once and written in place.

    Per layer, keys and values of shape [slots, kv heads, capacity, head dim]. The rows being decoded
    sit in slots 0..n-1, each left-aligned: a row's token at position p is column p. A step writes
    each row's new keys and values at its own length, and the attention reads the columns up to the
    longest row, a 4-D mask hiding each shorter row's unused tail (`DynamicCache` instead copies the
    whole cache into a new tensor at every token). A finished row's slot is filled by moving the rows
    after it up, so the active rows stay a prefix and the attention reads views, never copies."""

    def __init__(self, config, slots: int, capacity: int, dtype):
        import torch

        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        shape = (slots, kv_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.lengths: list[int] = []  # per active row: the positions it holds
        self._write = None  # this step's (rows, columns) to write at

    def put(self, cache, line: int, length: int) -> None:
        """Append a prefilled row: the last `length` columns of line `line` of a (left-padded) DynamicCache."""
        slot = len(self.lengths)
        for keys, values, layer in zip(self.keys, self.values, cache.layers):
            keys[slot, :, :length] = layer.keys[line, :, -length:]
            values[slot, :, :length] = layer.values[line, :, -length:]
        self.lengths.append(length)

    def keep(self, rows: list[int]) -> None:
        """Keep the active rows at `rows` (ascending), moved up to slots 0..len(rows)-1."""
        for slot, row in enumerate(rows):
            if slot != row:
                length = self.lengths[row]
                for keys, values in zip(self.keys, self.values):
                    keys[slot, :, :length] = keys[row, :, :length]
                    values[slot, :, :length] = values[row, :, :length]
        self.lengths = [self.lengths[row] for row in rows]

    def step_inputs(self) -> dict:
        """The model's keyword arguments for one decoding step of every active row."""
        import torch

        lengths = torch.tensor(self.lengths)
        span = max(self.lengths) + 1
        self._write = (torch.arange(len(self.lengths)), lengths)
        mask = torch.arange(span)[None, :] <= lengths[:, None]
        return {
            "attention_mask": mask[:, None, None, :],
            "position_ids": lengths[:, None],
            "past_key_values": self,
            "use_cache": True,
        }

    def update(self, keys, values, layer: int, *args, **kwargs):
        """Called by each attention layer with the step's new keys and values: write them in place,
        return views of the columns the attention reads."""
        rows, columns = self._write
        self.keys[layer][rows, :, columns] = keys[:, :, 0]
        self.values[layer][rows, :, columns] = values[:, :, 0]
        span = max(self.lengths) + 1
        return self.keys[layer][: len(rows), :, :span], self.values[layer][: len(rows), :, :span]

    def advance(self) -> None:
        self.lengths = [length + 1 for length in self.lengths]


SLAB_ATTENTION = "umlstudio_slab"


def _slab_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention of one decoding step over the slab: the query heads that share a key/value head are
    laid along the query axis, so the keys and values are read where they are (transformers' SDPA
    path copies them once per query head, `repeat_kv`, whenever a mask is given)."""
    import torch.nn.functional as F

    rows, heads, _, head_dim = query.shape
    kv_heads = key.shape[1]
    grouped = query.reshape(rows, kv_heads, heads // kv_heads, head_dim)
    out = F.scaled_dot_product_attention(grouped, key, value, attn_mask=attention_mask, scale=scaling)
    return out.reshape(rows, 1, heads, head_dim), None


@contextlib.contextmanager
def _slab_attention_on(config):
    """The model's attention layers use `_slab_attention` for the duration of one decoding step."""
    from transformers import AttentionInterface

    AttentionInterface.register(SLAB_ATTENTION, _slab_attention)
    before = config._attn_implementation
    config._attn_implementation = SLAB_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = before


def _pick(logits, runner_up: bool) -> int:
    return int(logits.topk(2).indices[1]) if runner_up else int(logits.argmax())


# ---- how the next token is chosen --------------------------------------------------------------

# lines PlantUML repeats by design: a repeat of them is never penalised
STRUCTURE_LINES = frozenset(
    "start stop end else endif endwhile endswitch fork split repeat detach kill } { -- .. == __ @enduml".split()
    + ["fork again", "end fork", "split again", "end split", "end note", "end box", "end group", "end legend"]
)
# lines starting with these words repeat in references too (`else (no)`, `activate DB`, `end note`)
STRUCTURE_START = re.compile(
    r"(?:else|elseif|end(?:if|while|switch)?|activate|deactivate|return|fork again|split again)\b"
)
MAX_REPEAT = 32  # tokens a repeat is followed back at most (its penalty is past any logit gap long before)


@dataclass(frozen=True)
class Decoding:
    """How each next token is chosen (`evaluation.*` in core/config.py says what each field does).

    The default is greedy, the evaluation's reference. `repetition="dry"` penalises, before the pick,
    every token that would extend a repeat of what the row already wrote (llama.cpp's DRY sampler):
    where the row's last n tokens (n >= `dry_allowed_length`) occurred before, the token that followed
    them then loses `dry_multiplier * dry_base ** (n - dry_allowed_length)` from its logit. Only the
    row's own output counts (copying names from the prompt is what it should do). Unlike llama.cpp's
    default, a newline does not break a repeat: a PlantUML loop is whole short lines, which a
    repeat cut at each newline never makes long enough to penalise. A token is never penalised where
    the line it would make is still the start of a structure line (`end`, `else`, `endif`, `}`, ...)
    or starts with a word that starts them (`else (no)`, `activate DB`: references repeat those).
    `temperature` > 0 samples (after `top_k`, `top_p`) from a generator of the row's own, seeded by
    `seed`, the prompt and the sample's number, so a row draws the same output in any batch."""

    repetition: str = "none"  # none | dry
    dry_multiplier: float = 0.8
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = SEED

    @classmethod
    def of(cls, config) -> "Decoding":
        """The decoding an EvaluationConfig asks for."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})

    @property
    def plain(self) -> bool:
        """Greedy with nothing added: the batched argmax, token-identical to transformers' greedy decoding."""
        return self.repetition == "none" and self.temperature == 0

    def settings(self) -> dict:
        """What decides an output besides prompt and weights (part of a stored output's settings key);
        greedy's is what it always was, so outputs stored before these settings existed are reused."""
        found: dict = {"decoding": "greedy" if self.temperature == 0 else "sample", "seed": self.seed}
        if self.repetition != "none":
            found |= {
                "repetition": self.repetition,
                "dry": [self.dry_multiplier, self.dry_base, self.dry_allowed_length],
            }
        if self.temperature:
            found |= {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}
        return found


GREEDY = Decoding()


def row_seed(seed: int, message: str, sample: int = 0) -> int:
    """The seed of one row's generator: the same for the same prompt, sample number and seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}|{sample}|{message}".encode()).digest()[:8], "big") >> 1


def repeats(tokens: list[int], allowed: int) -> dict[int, int]:
    """For each token that would extend a repeat: the length of the longest repeat it extends (at
    least `allowed`). A repeat is the end of `tokens` (n of them, at most MAX_REPEAT) written before;
    the token that followed it then extends it."""
    found: dict[int, int] = {}
    if not tokens:
        return found
    last, end = tokens[-1], len(tokens) - 1
    for i in range(end):
        if tokens[i] != last:
            continue
        length = 1
        while length <= i and length < MAX_REPEAT and tokens[i - length] == tokens[end - length]:
            length += 1
        following = tokens[i + 1]
        if length >= allowed and length > found.get(following, 0):
            found[following] = length
    return found


def _structure(line: str) -> bool:
    """Whether `line` (a line being written) is still the start of a structure line, or starts with a
    word such lines start with."""
    line = line.strip()
    return bool(line) and (
        any(known.startswith(line) for known in STRUCTURE_LINES) or bool(STRUCTURE_START.match(line))
    )


def choose(logits, tokens: list[int], line: str, decoding: Decoding, text_of, rng=None, runner_up: bool = False) -> int:
    """The next token of a row from its logits (1-D), given the row's tokens so far, the line it is
    writing (the text after its last newline) and `text_of(token)`, a token's text."""
    import torch

    if decoding.plain:
        return _pick(logits, runner_up)
    logits = logits.float().clone()
    if decoding.repetition == "dry":
        for token, length in repeats(tokens, decoding.dry_allowed_length).items():
            if not _structure(line + text_of(token)):
                logits[token] -= decoding.dry_multiplier * decoding.dry_base ** (length - decoding.dry_allowed_length)
    if runner_up or decoding.temperature == 0:
        return _pick(logits, runner_up)
    logits /= decoding.temperature
    if decoding.top_k:
        kept = logits.topk(min(decoding.top_k, logits.numel())).values[-1]
        logits[logits < kept] = -torch.inf
    if decoding.top_p < 1:
        ordered, order = logits.sort(descending=True)
        probs = ordered.softmax(-1)
        logits[order[(probs.cumsum(-1) - probs) >= decoding.top_p]] = -torch.inf  # the most likely always stays
    return int(torch.multinomial(logits.softmax(-1), 1, generator=rng))


# ---- the engine -------------------------------------------------------------------------------


class Engine:
    """A base model loaded once; checkpoints' adapters swapped in and out of it."""

    def __init__(self, base: str = models.EMBEDDED, dtype: str = "auto"):
        self.base = models.resolve_base(base)
        self.model, self.tokenizer = models.load_model(self.base, dtype)
        self.model.eval()
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = {self.tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}
        self.context = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self.peft = None  # the PeftModel wrapping self.model once an adapter is loaded
        self.adapters: OrderedDict[str, tuple[tuple, str]] = OrderedDict()  # path -> (signature, name)
        self._lock = threading.RLock()
        self._texts: dict[int, str] = {}  # token id -> its text (for the repetition control)

    def _adapter(self, ckpt: Path) -> str:
        """Load the checkpoint's adapter if it is not loaded (or changed on disk); return its name."""
        trained_on = models.resolve_base(base_of(ckpt))
        if trained_on != self.base:
            raise UserError(
                f"{ckpt}: incompatible checkpoint — trained on {trained_on}, but the loaded base model is {self.base}"
            )
        weights = ckpt / checkpoints.ADAPTER_FILE
        stat = weights.stat()
        signature = (stat.st_mtime_ns, stat.st_size)
        key = str(ckpt)
        known = self.adapters.get(key)
        if known and known[0] == signature:
            self.adapters.move_to_end(key)
            return known[1]
        misfit = _misfit(self.model, weights)
        if misfit:
            raise UserError(
                f"{ckpt}: incompatible checkpoint — its adapter does not fit the base model {self.base} ({misfit})"
            )
        name = _adapter_name(ckpt, signature)
        if self.peft is None:
            from peft import PeftModel

            self.peft = PeftModel.from_pretrained(self.model, str(ckpt), adapter_name=name)
            self.peft.eval()
        else:
            self.peft.load_adapter(str(ckpt), adapter_name=name)
        self.peft.set_adapter(name)  # before dropping others: never delete the active adapter
        if known:
            self.peft.delete_adapter(known[1])
        self.adapters[key] = (signature, name)
        while len(self.adapters) > MAX_ADAPTERS:
            _, (_, old) = self.adapters.popitem(last=False)
            self.peft.delete_adapter(old)
        return name

    def prepare(self, checkpoint) -> None:
        """Load a checkpoint's adapter now (checking that it fits): later use is only a swap."""
        ckpt = resolve_checkpoint(checkpoint)
        if ckpt != checkpoints.BASE:
            with self._lock:
                self._adapter(ckpt)

    @contextlib.contextmanager
    def selected(self, checkpoint):
        """The model to generate with, `checkpoint`'s adapter active ('base': adapters disabled)."""
        ckpt = resolve_checkpoint(checkpoint)
        with self._lock:
            if ckpt == checkpoints.BASE:
                if self.peft is None:
                    yield self.model
                else:
                    with self.peft.disable_adapter():
                        yield self.peft
            else:
                name = self._adapter(ckpt)
                self.peft.set_adapter(name)
                yield self.peft

    def encode(self, messages: list[str], max_new_tokens: int) -> list[list[int]]:
        """The prompts' token ids (chat template applied); a prompt that leaves no room for
        `max_new_tokens` in the model's context is a UserError, before anything is generated."""
        if max_new_tokens < 1:
            raise UserError(f"max_new_tokens {max_new_tokens}: must be at least 1")
        ids = [self.tokenizer(chat_prompt(self.tokenizer, m), add_special_tokens=False).input_ids for m in messages]
        for n, row in enumerate(ids, 1):
            if self.context and len(row) + max_new_tokens > self.context:
                which = f"prompt {n} of {len(ids)}" if len(ids) > 1 else "the prompt"
                raise UserError(
                    f"{which} is {len(row):,} tokens; with {max_new_tokens:,} new tokens that is more than "
                    f"the model's context of {self.context:,} tokens — shorten the requirement"
                )
        return ids

    def _prefill(self, model, rows: list[_Row], decoding: Decoding):
        """One forward pass over the prompts of `rows`, left-padded as `model.generate` pads a batch:
        (cache, each row's first token)."""
        import torch
        from transformers import DynamicCache

        width = max(len(row.ids) for row in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(row.ids)) + row.ids for row in rows])
        mask = torch.tensor([[0] * (width - len(row.ids)) + [1] * len(row.ids) for row in rows])
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=DynamicCache(config=self.model.config),
            use_cache=True,
            logits_to_keep=1,
        )
        return out.past_key_values, [
            choose(out.logits[i, -1], [], "", decoding, self._text_of, row.rng, row.runner_up)
            for i, row in enumerate(rows)
        ]

    def _text_of(self, token: int) -> str:
        if token not in self._texts:
            self._texts[token] = self._decode([token])
        return self._texts[token]

    def _step(self, row: _Row, token: int, guard: bool, clock: float) -> None:
        """Append one token to a row and decide whether it ends there.

        Only the tokens after the last completed line are decoded at each step (a row's whole text
        at every token costs milliseconds per row at 300 tokens); when a line completes, the pieces
        are checked once against the whole text, and a row whose pieces do not add up (a
        tokenizer that decodes a piece differently on its own) is decoded whole from then on. The
        loop guard looks at the completed lines only when one was added."""
        row.tokens.append(token)
        before = row.text.rfind("\n")
        if row.whole:
            row.text = self._decode(row.tokens)
        else:
            row.text = row.lines_text + self._decode(row.tokens[row.lines :])
            if "\n" in row.text[len(row.lines_text) :] and not row.text.endswith("\ufffd"):
                whole = self._decode(row.tokens)
                row.whole = whole != row.text
                row.text, row.lines, row.lines_text = whole, len(row.tokens), whole
        if guard and STOP not in row.text:
            row.loop = repair.loop_in(row.text, new_line=row.text.rfind("\n") != before)
        if token in self.eos_ids:
            row.reason = "eos"
        elif STOP in row.text:
            row.reason = "stop"
        elif row.loop:
            row.reason = "loop"
        elif len(row.tokens) >= row.limit:
            row.reason = "limit"
        if row.reason:
            row.finished = clock
            row.text = self._decode(row.tokens)

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def decode(
        self, model, rows: list[_Row], slots: int, guard: bool = True, should_stop=None, decoding: Decoding = GREEDY
    ):
        """Decoding with continuous batching (greedy unless `decoding` says otherwise, see `choose`):
        up to `slots` rows share one forward pass per token; a row leaves as soon as it ends and the
        next prompt takes its place. Yields the rows that changed after each step (finished ones with
        `reason` set). `should_stop()`, when given, is asked before each step; when it answers True,
        decoding ends there (rows not finished keep `reason` None)."""
        import torch

        if not rows:
            return
        waiting = list(reversed(rows))
        slots = min(slots, len(rows))
        slab = _Slab(self.model.config, slots, max(len(row.ids) + row.limit for row in rows), self.model.dtype)
        active: list[_Row] = []
        with torch.inference_mode():
            while waiting or active:
                if should_stop is not None and should_stop():
                    return
                admitted: list[_Row] = []
                while waiting and len(active) + len(admitted) < slots:
                    admitted.append(waiting.pop())
                if admitted:  # the free slots' prompts, prefilled together
                    started = time.perf_counter()
                    cache, tokens = self._prefill(model, admitted, decoding)
                    clock = time.perf_counter()
                    for line, (row, token) in enumerate(zip(admitted, tokens)):
                        row.started = started
                        self._step(row, token, guard, clock)
                        if not row.reason:
                            slab.put(cache, line, len(row.ids))
                            active.append(row)
                    yield admitted
                if not active:
                    continue
                last = torch.tensor([[row.tokens[-1]] for row in active])
                with _slab_attention_on(self.model.config):
                    out = model(input_ids=last, **slab.step_inputs())
                slab.advance()
                if decoding.plain:
                    picked = out.logits[:, -1].argmax(-1).tolist()
                else:
                    picked = [
                        choose(
                            out.logits[i, -1],
                            row.tokens,
                            row.text[row.text.rfind("\n") + 1 :],
                            decoding,
                            self._text_of,
                            row.rng,
                        )
                        for i, row in enumerate(active)
                    ]
                clock = time.perf_counter()
                for row, token in zip(active, picked):
                    self._step(row, token, guard, clock)
                yield list(active)
                if any(row.reason for row in active):
                    keep = [i for i, row in enumerate(active) if not row.reason]
                    slab.keep(keep)
                    active = [active[i] for i in keep]

    def _generation(self, message: str, row: _Row) -> Generation:
        text, _ = cut_at_stop(row.text)
        return Generation(
            message,
            text.strip(),
            len(row.tokens),
            round(row.finished - row.started, 4),
            truncated=row.reason == "limit",
            looped=row.reason == "loop",
            loop=row.loop,
        )

    def generate(
        self,
        messages: list[str],
        checkpoint="base",
        max_new_tokens: int = 320,
        batch_size: int = 16,
        progress=None,
        *,
        repair: bool = False,
        loop_guard: bool = True,
        should_stop=None,
        decoding: Decoding = GREEDY,
        sample: int = 0,
    ) -> list[Generation | None]:
        """Outputs for `messages` (user messages, see `prompts.request`), in their order: greedy, or as
        `decoding` says (`sample`: which of a prompt's samples, when it samples).

        Up to `batch_size` rows are decoded together (continuous batching). `progress(n)` is called
        as rows finish. With `repair`, outputs PlantUML rejects are repaired (see core.inference.repair);
        `raw_output` keeps what the model wrote. `should_stop()`, when given, is asked between
        decoding steps: once it answers True, generation ends at once and the list holds the rows
        finished so far (not repaired) and None for the others."""
        ids = self.encode(messages, max_new_tokens)
        results: list[Generation | None] = [None] * len(messages)
        with self.selected(checkpoint) as model:
            rows = [
                self._row(i, row_ids, max_new_tokens, decoding, messages[i], sample) for i, row_ids in enumerate(ids)
            ]
            for changed in self.decode(model, rows, batch_size, loop_guard, should_stop, decoding):
                done = [row for row in changed if row.reason]
                for row in done:
                    results[row.index] = self._generation(messages[row.index], row)
                if done and progress:
                    progress(len(done))
            if repair and None not in results:
                self._repair(model, ids, results, max_new_tokens, batch_size, decoding, sample)
        return results

    @staticmethod
    def _row(index: int, ids: list[int], limit: int, decoding: Decoding, message: str, sample: int, **kw) -> _Row:
        """A row to decode; one that samples gets its own generator (`row_seed`)."""
        rng = None
        if decoding.temperature:
            import torch

            rng = torch.Generator().manual_seed(row_seed(decoding.seed, message, sample))
        return _Row(index, ids, limit, rng=rng, **kw)

    def make_valid(
        self,
        results: list[Generation],
        checkpoint="base",
        max_new_tokens: int = 320,
        batch_size: int = 16,
        decoding: Decoding = GREEDY,
        sample: int = 0,
    ) -> None:
        """Check finished generations with PlantUML and repair the rejected ones in place, with the
        checkpoint and decoding that wrote them (what `generate(..., repair=True)` does after decoding)."""
        ids = self.encode([g.prompt for g in results], max_new_tokens)
        with self.selected(checkpoint) as model:
            self._repair(model, ids, results, max_new_tokens, batch_size, decoding, sample)

    def _repair(
        self,
        model,
        ids,
        results: list[Generation],
        max_new_tokens: int,
        slots: int,
        decoding: Decoding = GREEDY,
        sample: int = 0,
    ) -> None:
        """Check every output with PlantUML and repair the rejected ones in place (see core.inference.repair)."""
        from core.inference.render import syntax_check

        started = time.perf_counter()
        verdicts = syntax_check([g.output for g in results])
        for g, verdict in zip(results, verdicts):
            g.raw_valid = g.valid = verdict.valid
        failed = [i for i, v in enumerate(verdicts) if not v.valid or results[i].looped]
        # 1. a second attempt from the last good line, the runner-up token first (not for a loop:
        #    the model goes back into it)
        again = []
        for i in failed:
            if results[i].looped:
                continue
            prefix = repair.prefix_before(results[i].output, verdicts[i].error_line)
            if prefix is not None:
                kept = self.tokenizer(prefix, add_special_tokens=False).input_ids
                budget = max_new_tokens - len(kept)
                if budget > 0:
                    row = self._row(i, ids[i] + kept, budget, decoding, results[i].prompt, sample, runner_up=True)
                    again.append((i, prefix, row))
        for _ in self.decode(model, [row for *_, row in again], slots, decoding=decoding):
            pass
        if again:
            retried = {}
            for i, prefix, row in again:
                text, _ = cut_at_stop(prefix + row.text)
                retried[i] = text.strip()
            for (i, text), verdict in zip(retried.items(), syntax_check(list(retried.values()))):
                if verdict.valid:
                    line = verdicts[i].error_line
                    self._repaired(
                        results[i], text, f"second attempt from line {line} (PlantUML: {verdicts[i].error_message})"
                    )
                    verdicts[i] = verdict
        # 2. edits, checked together round by round
        pending = [i for i in failed if not verdicts[i].valid or results[i].looped]
        texts = {i: results[i].output for i in pending}
        changes: dict[int, list[str]] = {i: [] for i in pending}
        for i in pending:
            for fix in (repair.unloop, repair.close):
                edit = fix(texts[i])
                if edit:
                    texts[i] = edit.text
                    changes[i].append(edit.change)
        for _ in range(repair.MAX_EDITS + 1):
            if not pending:
                break
            checked = syntax_check([texts[i] for i in pending])
            still = []
            for i, verdict in zip(pending, checked):
                if verdict.valid:
                    if changes[i]:
                        self._repaired(results[i], texts[i], *changes[i])
                    continue
                edit = repair.delete_line(texts[i], verdict.error_line)
                if edit and len(changes[i]) < repair.MAX_EDITS + 2:
                    texts[i] = edit.text
                    changes[i].append(edit.change)
                    still.append(i)
            pending = still
        spent = (time.perf_counter() - started) / max(len(results), 1)
        for g in results:
            g.repair_s = round(spent, 4)

    @staticmethod
    def _repaired(g: Generation, text: str, *changes: str) -> None:
        g.output, g.repaired, g.valid = text, True, True
        g.repair = list(changes)

    def stream(
        self, checkpoint, message: str, max_new_tokens: int = 320, *, repair: bool = False, decoding: Decoding = GREEDY
    ):
        """Yield the output's text piece by piece as it is generated; the generator's return value
        (StopIteration.value) is the finished Generation (repaired when `repair`)."""
        ids = self.encode([message], max_new_tokens)
        with self.selected(checkpoint) as model:
            row = self._row(0, ids[0], max_new_tokens, decoding, message, 0)
            shown = ""
            for _ in self.decode(model, [row], 1, decoding=decoding):
                text, _ = cut_at_stop(row.text)
                text = text.rstrip("\ufffd")  # an unfinished multi-byte character comes with the next token
                if text.startswith(shown) and len(text) > len(shown):
                    yield text[len(shown) :]
                    shown = text
            result = [self._generation(message, row)]
            if repair:
                self._repair(model, ids, result, max_new_tokens, 1, decoding)
        return result[0]


def models_on_offer() -> list[dict]:
    """What the playground can generate with: every stored checkpoint, newest first, then the base
    models the runs use (the embedded one first); each {label, checkpoint, base}."""
    from core import store

    found = [{"label": label, "checkpoint": path, "base": None} for path, label in checkpoints.stored().items()]
    used = store.runs.base_models()
    bases = [models.EMBEDDED] + sorted(used - {models.EMBEDDED})
    return found + [{"label": f"base model: {Path(b).name}", "checkpoint": checkpoints.BASE, "base": b} for b in bases]


_engines: dict[tuple[str, str], Engine] = {}


def engine_for(refs, base: str | None = None, dtype: str = "auto") -> Engine:
    """The engine (loaded once per process and base model) that serves every checkpoint in `refs`."""
    resolved = common_base(refs, base)
    key = (resolved, dtype)
    if key not in _engines:
        _engines[key] = Engine(resolved, dtype)
    return _engines[key]


def stream(
    checkpoint,
    message: str,
    max_new_tokens: int = 320,
    base: str | None = None,
    *,
    repair: bool = False,
    decoding: Decoding = GREEDY,
):
    """Stream one output for the playground: yields text pieces (see Engine.stream)."""
    engine = engine_for([checkpoint], base)
    return (yield from engine.stream(checkpoint, message, max_new_tokens, repair=repair, decoding=decoding))


# ---- the checks of `umlstudio generate` (core/cli/inference.py) and the studio's worker ---------

OUT_FORMATS = {".svg": "svg", ".png": "png", ".puml": None}


def check_out(out: Path, flag: str = "--out") -> None:
    """Refuse, before any work, an output file that cannot be written (`paths.out_file`) or has an unknown format."""
    paths.out_file(out, flag)
    if out.suffix.lower() not in OUT_FORMATS:
        raise UserError(f"{flag} {out}: unknown format — use a file ending in .svg, .png or .puml")


def check_type(diagram_type: str | None) -> None:
    if diagram_type is not None and diagram_type not in prompts.TYPE_NAMES:
        raise UserError(f"--type {diagram_type}: unknown diagram type — one of {', '.join(prompts.TYPE_NAMES)}")


def work(
    checkpoint: str,
    prompt_file: Path,
    out: Path,
    diagram_type: str | None = None,
    *,
    base: str | None = None,
    max_new_tokens: int = 320,
    repair: bool = False,
    decoding: Decoding = GREEDY,
) -> int:
    """The studio's generation worker (`python -m core.inference.generate`, or `python -m core generate-worker`):
    generate one output, its text to stdout as it streams, the result as JSON to `out`."""
    if not prompt_file.is_file():
        raise UserError(f"{prompt_file}: prompt file not found")
    check_type(diagram_type)
    requirement = prompt_file.read_text()
    pieces = stream(
        checkpoint, prompts.request(requirement, diagram_type), max_new_tokens, base, repair=repair, decoding=decoding
    )
    while True:
        try:
            sys.stdout.write(next(pieces))
            sys.stdout.flush()
        except StopIteration as done:
            row = done.value
            break
    out.write_text(
        json.dumps({"checkpoint": checkpoint, "requirement": requirement, "diagram_type": diagram_type, **asdict(row)})
    )
    print(flush=True)
    return 0


if __name__ == "__main__":
    from core.cli import main

    sys.exit(main(["generate-worker", *sys.argv[1:]]))
