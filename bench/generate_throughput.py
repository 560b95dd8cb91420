"""Generation throughput: hot-swapped adapters vs reloading the model, batched vs one at a time.

1. N checkpoints x P prompts. "pure" is the generation time alone (adapters already loaded, a warm
   second pass); "hot-swap" is the whole job on one Engine (one base load, each adapter loaded on
   first use, swapped by name); "reload" loads the base model and the adapter again per
   checkpoint. Target: hot-swap <= 1.15 x pure. The outputs of hot-swap and reload must agree.
2. The same P prompts on one checkpoint, batched (--batch-size) vs one at a time, measured chunk
   by chunk back to back. Target: batched >= 4 x the tokens/s.

The checkpoints are synthetic: LoRA adapters (r 16 on every projection) with random weights on the
base model. Usage: python bench/generate_throughput.py [--prompts 32] [--max-new-tokens 64] [--threads 1]
[--batch-size 8] [--only swap|batch]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import data, generate, models  # noqa: E402
from core.config import DEFAULT_TARGETS  # noqa: E402


def synthetic_checkpoints(base: str, count: int, root: Path) -> list[str]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = []
    for k in range(count):
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(models.resolve_base(base)),
                               LoraConfig(r=16, lora_alpha=32, target_modules=list(DEFAULT_TARGETS)))
        generator = torch.Generator().manual_seed(k)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
        ckpt = root / f"synthetic-{k}" / "checkpoint-1"
        model.save_pretrained(ckpt)
        (ckpt / "umlstudio.json").write_text(json.dumps({"config": {"model": {"base": base}}, "step": 1}))
        paths.append(str(ckpt))
    return paths


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=models.EMBEDDED)
    parser.add_argument("--checkpoints", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice; on a busy machine 1 is faster)")
    parser.add_argument("--only", choices=["swap", "batch"], help="run one of the two comparisons")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    prompts = [row["prompt"] for row in data.load_split(data.default_dataset_dir(), "test")[:args.prompts]]
    run = dict(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    print(f"base {args.base}, {args.checkpoints} checkpoints x {len(prompts)} prompts, max_new_tokens "
          f"{args.max_new_tokens}, batch {args.batch_size}, torch threads {torch.get_num_threads()}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        ckpts = synthetic_checkpoints(args.base, args.checkpoints if args.only != "batch" else 1, Path(tmp))
        # warm the process once (kernels, allocator, file cache), as any long-lived worker is
        generate.Engine(args.base).generate(prompts[:2], "base", max_new_tokens=4)
        same = True
        if args.only != "batch":
            same = compare_swap(args, prompts, ckpts, run)
        if args.only != "swap":
            compare_batch(args, prompts, ckpts[0], run)
    return 0 if same else 1


def table(rows) -> None:
    print(f"\n{'':<42}{'seconds':>9}{'tokens':>8}{'tok/s':>8}")
    for name, seconds, tokens in rows:
        extra = f"{tokens:>8}{tokens / seconds:>8.1f}" if tokens is not None else ""
        print(f"{name:<42}{seconds:>9.2f}{extra}")


def compare_swap(args, prompts, ckpts, run) -> bool:
    """Hot-swapped adapters on one engine vs a fresh engine per checkpoint; True when the outputs agree."""
    start = time.perf_counter()
    engine = generate.Engine(args.base)
    t_load = time.perf_counter() - start
    t_adapters = t_generation = 0.0
    swapped = []
    for c in ckpts:
        t_adapters += timed(lambda: engine.prepare(c))[1]
        rows, seconds = timed(lambda: engine.generate(prompts, c, **run))
        swapped.append(rows)
        t_generation += seconds
    t_swap = time.perf_counter() - start
    pure = sum(timed(lambda: engine.generate(prompts, c, **run))[1] for c in ckpts)  # adapters loaded

    def reload():
        return [generate.Engine(args.base).generate(prompts, c, **run) for c in ckpts]

    reloaded, t_reload = timed(reload)
    same = all([r.output for r in a] == [r.output for r in b] for a, b in zip(swapped, reloaded))
    table([
        ("pure generation (adapters loaded)", pure, None),
        ("hot-swap total", t_swap, None),
        ("  of which: base model load (once)", t_load, None),
        ("  of which: adapter loads (each once)", t_adapters, None),
        ("  of which: generation", t_generation, None),
        ("reload: base + adapter per checkpoint", t_reload, None),
    ])
    swap_ratio = t_swap / pure
    overhead_ratio = (t_load + t_adapters + pure) / pure
    print(f"\nhot-swap / pure   {swap_ratio:.3f} measured wall time  (target <= 1.15) {'ok' if swap_ratio <= 1.15 else 'MISSED'}")
    print(f"                  {overhead_ratio:.3f} as (load + adapter loads + pure) / pure: the swap overhead alone, "
          "without the run-to-run noise of a shared machine")
    print(f"reload / pure     {t_reload / pure:.3f}")
    print(f"hot-swap outputs == reload outputs: {'yes' if same else 'NO'}")
    return same


def compare_batch(args, prompts, ckpt, run) -> None:
    """Batched vs one at a time on one checkpoint, chunk by chunk back to back, so both see the same load."""
    engine = generate.Engine(args.base)
    t_batched = t_single = 0.0
    tok_batched = tok_single = 0
    for at in range(0, len(prompts), args.batch_size):
        chunk = prompts[at:at + args.batch_size]
        rows, seconds = timed(lambda: engine.generate(chunk, ckpt, **run))
        t_batched, tok_batched = t_batched + seconds, tok_batched + sum(r.tokens for r in rows)
        rows, seconds = timed(lambda: engine.generate(chunk, ckpt, max_new_tokens=args.max_new_tokens, batch_size=1))
        t_single, tok_single = t_single + seconds, tok_single + sum(r.tokens for r in rows)
    table([
        (f"batched (batch {args.batch_size}), 1 checkpoint", t_batched, tok_batched),
        ("one at a time, 1 checkpoint", t_single, tok_single),
    ])
    speedup = (tok_batched / t_batched) / (tok_single / t_single)
    print(f"\nbatched / single  {speedup:.2f}x tokens/s  (target >= 4) {'ok' if speedup >= 4 else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
