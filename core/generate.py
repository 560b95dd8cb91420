"""The generation engine: one base model in memory, the LoRA adapters of many checkpoints hot-swapped.

`Engine(base)` loads the base model once. Each checkpoint's adapter is loaded the first time it is
asked for (PEFT `load_adapter`, under a name derived from its path) and selected with
`set_adapter`; the checkpoint `base` means adapters disabled. A checkpoint trained on another base
model, or one without adapter weights, is a UserError, never a shape mismatch deep in PEFT.

Prompts are user messages (`prompts.request`: the wanted diagram type, then the requirement),
formatted by `prompts.chat_prompt`, the one function training uses too. Decoding is greedy
with a fixed seed, so two checkpoints' outputs differ only because their weights differ. Rows are
generated in batches with left padding; a row stops at `@enduml` (checked on its decoded text) or
at the end-of-sequence token, and what follows `@enduml` is cut off.

`python -m core.generate --checkpoint C --prompt-file F --out result.json` is the worker the studio
starts (the studio never imports torch): it prints the text as it streams and writes the result.

torch, transformers and peft are imported inside functions: the studio imports this module.
"""

import argparse
import contextlib
import hashlib
import json
import re
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

from core import checkpoints, models
from core.prompts import chat_prompt
from core.errors import UserError

STOP = "@enduml"
SEED = 0
MAX_ADAPTERS = 8  # adapters kept loaded; the least recently used one is dropped beyond that
ADAPTER_FILE = "adapter_model.safetensors"
_TAIL_TOKENS = 12  # decoded per row and step to spot STOP; it is 3-4 tokens long


@dataclass
class Generation:
    prompt: str
    output: str  # decoded text, cut right after @enduml
    tokens: int  # tokens generated for this row (up to and including the stop)
    latency_s: float  # from the start of its batch until this row finished
    truncated: bool  # hit max_new_tokens without @enduml


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
    if not (ckpt / ADAPTER_FILE).is_file():
        raise UserError(f"{ckpt}: {ADAPTER_FILE} is missing — the checkpoint is incomplete; pick another checkpoint of the run")
    return ckpt


def base_of(ckpt: Path) -> str:
    """The base model a checkpoint was trained on: its umlstudio.json, else its adapter_config.json."""
    base = checkpoints.info(ckpt).get("config", {}).get("model", {}).get("base")
    if not base:
        try:
            base = json.loads((ckpt / "adapter_config.json").read_text()).get("base_model_name_or_path")
        except (OSError, json.JSONDecodeError):
            base = None
    if not base:
        raise UserError(f"{ckpt}: cannot tell which base model it was trained on (no model.base in umlstudio.json, no base_model_name_or_path in adapter_config.json)")
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
                raise UserError(f"{ckpt}: incompatible checkpoint — trained on {resolved}, not on the base model {wanted}")
        return wanted
    if len(found) > 1:
        listing = "; ".join(f"{ckpt} on {resolved}" for resolved, ckpt in found.items())
        raise UserError(f"incompatible checkpoints — they were trained on different base models ({listing}); compare checkpoints of one base model")
    return next(iter(found), None) or models.resolve_base(models.EMBEDDED)


def fingerprint(ckpt) -> str:
    """What identifies the weights behind a checkpoint: its manifest's sha256 (as the store records
    it), else a sha256 over its adapter files."""
    if ckpt == checkpoints.BASE:
        return "base"
    ckpt = Path(ckpt)
    if (ckpt / checkpoints.MANIFEST).is_file():
        return checkpoints.sha256_file(ckpt / checkpoints.MANIFEST)
    files = (ckpt / "adapter_config.json", ckpt / ADAPTER_FILE)
    return hashlib.sha256("".join(checkpoints.sha256_file(p) for p in files).encode()).hexdigest()


def _adapter_name(ckpt: Path, signature: tuple) -> str:
    readable = re.sub(r"\W", "_", f"{ckpt.parent.name}_{ckpt.name}")
    digest = hashlib.sha1(f"{ckpt}|{signature}".encode()).hexdigest()[:8]
    return f"{readable}_{digest}"


def _misfit(model, weights: Path) -> str | None:
    """Why the LoRA weights in `weights` cannot attach to `model` (a missing module, a wrong shape),
    read from the file's header without loading it; None when they fit."""
    from safetensors import SafetensorError, safe_open

    modules = dict(model.named_modules())
    try:
        with safe_open(str(weights), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (OSError, SafetensorError) as exc:
        return f"{weights.name} is unreadable: {exc}"
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


# ---- the engine -------------------------------------------------------------------------------


def _watcher(tokenizer, eos_ids: set[int], prompt_len: int, batch: int):
    """A StoppingCriteria that ends a row at @enduml (on its decoded text) and records, per row,
    how many tokens it generated and when it finished (end-of-sequence rows included)."""
    import torch
    from transformers import StoppingCriteria

    class RowWatcher(StoppingCriteria):
        def __init__(self):
            self.start = time.perf_counter()
            self.finished: list[tuple[int, float] | None] = [None] * batch  # (tokens, seconds)
            self.cancelled = False

        def __call__(self, input_ids, scores, **kwargs):
            length = input_ids.shape[1]
            open_rows = [i for i in range(batch) if self.finished[i] is None]
            if open_rows:
                tails = tokenizer.batch_decode(input_ids[open_rows, max(prompt_len, length - _TAIL_TOKENS):],
                                               clean_up_tokenization_spaces=False)
                stamp = time.perf_counter() - self.start
                for row, tail in zip(open_rows, tails):
                    if STOP in tail or input_ids[row, -1].item() in eos_ids:
                        self.finished[row] = (length - prompt_len, stamp)
            done = [self.cancelled or f is not None for f in self.finished]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return RowWatcher()


class Engine:
    """A base model loaded once; checkpoints' adapters swapped in and out of it."""

    def __init__(self, base: str = models.EMBEDDED, dtype: str = "auto"):
        self.base = models.resolve_base(base)
        self.model, self.tokenizer = models.load_model(self.base, dtype)
        self.model.eval()
        self.tokenizer.padding_side = "left"
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = {self.tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}
        self.peft = None  # the PeftModel wrapping self.model once an adapter is loaded
        self.adapters: OrderedDict[str, tuple[tuple, str]] = OrderedDict()  # path -> (signature, name)
        self._lock = threading.RLock()

    def _adapter(self, ckpt: Path) -> str:
        """Load the checkpoint's adapter if it is not loaded (or changed on disk); return its name."""
        trained_on = models.resolve_base(base_of(ckpt))
        if trained_on != self.base:
            raise UserError(f"{ckpt}: incompatible checkpoint — trained on {trained_on}, but the loaded base model is {self.base}")
        weights = ckpt / ADAPTER_FILE
        stat = weights.stat()
        signature = (stat.st_mtime_ns, stat.st_size)
        key = str(ckpt)
        known = self.adapters.get(key)
        if known and known[0] == signature:
            self.adapters.move_to_end(key)
            return known[1]
        misfit = _misfit(self.model, weights)
        if misfit:
            raise UserError(f"{ckpt}: incompatible checkpoint — its adapter does not fit the base model {self.base} ({misfit})")
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

    def _encode(self, prompts: list[str]):
        texts = [chat_prompt(self.tokenizer, p) for p in prompts]
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)

    def _rows(self, prompts, out, prompt_len, watcher, total_s, max_new_tokens) -> list[Generation]:
        rows = []
        for i, prompt in enumerate(prompts):
            new = out[i, prompt_len:]
            tokens, latency = watcher.finished[i] or (int(new.shape[0]), total_s)
            text, stopped = cut_at_stop(self.tokenizer.decode(new[:tokens], skip_special_tokens=True,
                                                              clean_up_tokenization_spaces=False))
            ended = bool(tokens) and new[tokens - 1].item() in self.eos_ids
            truncated = not stopped and not ended and tokens >= max_new_tokens
            rows.append(Generation(prompt, text.strip(), int(tokens), round(latency, 4), truncated))
        return rows

    def _generate_batch(self, model, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        import torch
        from transformers import StoppingCriteriaList

        enc = self._encode(prompts)
        prompt_len = enc["input_ids"].shape[1]
        watcher = _watcher(self.tokenizer, self.eos_ids, prompt_len, len(prompts))
        torch.manual_seed(SEED)
        with torch.inference_mode():
            out = model.generate(
                **enc, do_sample=False, max_new_tokens=max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id, stopping_criteria=StoppingCriteriaList([watcher]),
            )
        total = time.perf_counter() - watcher.start
        return self._rows(prompts, out, prompt_len, watcher, total, max_new_tokens)

    def generate(self, prompts: list[str], checkpoint="base", max_new_tokens: int = 320,
                 batch_size: int = 8, progress=None) -> list[Generation]:
        """Greedy outputs for `prompts` (in their order), batched by prompt length.

        `progress(n)` is called after each batch with the number of rows it finished."""
        order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
        results: dict[int, Generation] = {}
        with self.selected(checkpoint) as model:
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                for i, row in zip(chunk, self._generate_batch(model, [prompts[i] for i in chunk], max_new_tokens)):
                    results[i] = row
                if progress:
                    progress(len(chunk))
        return [results[i] for i in range(len(prompts))]

    def stream(self, checkpoint, prompt: str, max_new_tokens: int = 320):
        """Yield the output's text piece by piece as it is generated; the generator's return value
        (StopIteration.value) is the finished Generation."""
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        with self.selected(checkpoint) as model:
            enc = self._encode([prompt])
            prompt_len = enc["input_ids"].shape[1]
            watcher = _watcher(self.tokenizer, self.eos_ids, prompt_len, 1)
            streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                            clean_up_tokenization_spaces=False)
            result: dict = {}

            def run():
                try:
                    torch.manual_seed(SEED)
                    with torch.inference_mode():
                        result["out"] = model.generate(
                            **enc, do_sample=False, max_new_tokens=max_new_tokens, streamer=streamer,
                            pad_token_id=self.tokenizer.pad_token_id, stopping_criteria=StoppingCriteriaList([watcher]),
                        )
                except BaseException as exc:  # handed to the consuming thread below
                    result["error"] = exc
                    streamer.end()

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            text = ""
            try:
                for piece in streamer:
                    if STOP in text:
                        continue  # drain what the last step decoded after @enduml
                    cut, _ = cut_at_stop(text + piece)
                    if len(cut) > len(text):
                        yield cut[len(text):]
                    text = cut
            finally:
                watcher.cancelled = True
                thread.join()
            if "error" in result:
                raise result["error"]
            total = time.perf_counter() - watcher.start
            return self._rows([prompt], result["out"], prompt_len, watcher, total, max_new_tokens)[0]


_engines: dict[tuple[str, str], Engine] = {}


def engine_for(refs, base: str | None = None, dtype: str = "auto") -> Engine:
    """The engine (loaded once per process and base model) that serves every checkpoint in `refs`."""
    resolved = common_base(refs, base)
    key = (resolved, dtype)
    if key not in _engines:
        _engines[key] = Engine(resolved, dtype)
    return _engines[key]


def stream(checkpoint, prompt: str, max_new_tokens: int = 320, base: str | None = None):
    """Stream one output for the playground: yields text pieces (see Engine.stream)."""
    return (yield from engine_for([checkpoint], base).stream(checkpoint, prompt, max_new_tokens))


# ---- `umlstudio generate` and the studio's worker ---------------------------------------------

OUT_FORMATS = {".svg": "svg", ".png": "png", ".puml": None}


def add_generate_args(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint folder, a run folder (its latest checkpoint) or 'base'")
    parser.add_argument("--prompt", required=True, help="the requirement to turn into PlantUML")
    parser.add_argument("--out", help="also write the diagram to FILE.svg, FILE.png or FILE.puml")
    parser.add_argument("--base", help="the base model for --checkpoint base (default: the embedded smollm2-135m)")
    parser.add_argument("--max-new-tokens", type=int, default=320)


def generate_command(args) -> int:
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in OUT_FORMATS:
        raise UserError(f"--out {out}: unknown format — use a file ending in .svg, .png or .puml")
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens {args.max_new_tokens}: must be at least 1")
    if not args.prompt.strip():
        raise UserError("--prompt is empty — pass the requirement to turn into PlantUML")
    engine = engine_for([args.checkpoint], args.base)
    row = engine.generate([args.prompt], args.checkpoint, max_new_tokens=args.max_new_tokens)[0]
    print(row.output)
    note = " (cut off at --max-new-tokens)" if row.truncated else ""
    print(f"-- {row.tokens} tokens in {row.latency_s:.2f} s{note}", file=sys.stderr)
    if out is None:
        return 0
    fmt = OUT_FORMATS[out.suffix.lower()]
    if fmt is None:
        out.write_text(row.output + "\n")
    else:
        from core.render import render

        result = render(row.output, fmt=fmt)
        if not result.ok:
            print(f"error: the output does not render (line {result.error_line}: {result.error_message}); {out} not written", file=sys.stderr)
            return 1
        out.write_bytes(result.data)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def worker_main(argv=None) -> int:
    """Generate one output in a subprocess: text to stdout as it streams, the result to --out."""
    parser = argparse.ArgumentParser(prog="python -m core.generate", description=worker_main.__doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--prompt-file", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path, help="result JSON")
    parser.add_argument("--base")
    parser.add_argument("--max-new-tokens", type=int, default=320)
    args = parser.parse_args(argv)
    try:
        if not args.prompt_file.is_file():
            raise UserError(f"{args.prompt_file}: prompt file not found")
        prompt = args.prompt_file.read_text()
        pieces = stream(args.checkpoint, prompt, args.max_new_tokens, args.base)
        while True:
            try:
                sys.stdout.write(next(pieces))
                sys.stdout.flush()
            except StopIteration as done:
                row = done.value
                break
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps({"checkpoint": args.checkpoint, **asdict(row)}))
    print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
