"""Generation throughput: hot-swapped adapters vs reloading the model; continuous batching vs static
batching vs one at a time.

1. N checkpoints x P prompts. "pure" is the generation time alone (adapters already loaded, a warm
   second pass); "hot-swap" is the whole job on one Engine (one base load, each adapter loaded on
   first use, swapped by name); "reload" loads the base model and the adapter again per
   checkpoint. Target: hot-swap <= 1.15 x pure. The outputs of hot-swap and reload must agree.
2. The same P test prompts (every diagram type in turn, the type stated), at 32, 128 and 320 new
   tokens (--lengths), three ways in the same run, back to back at each length:
   - one at a time: transformers' `generate`, one prompt after the other;
   - static batching: transformers' `generate` on batches of --batch-size (left padding; a row that
     reached @enduml stays in the batch until the longest one ends);
   - continuous: `Engine.generate` (a finished row leaves, the next prompt takes its slot), at each
     of --slots (the fastest is the one compared).
   Tokens are the tokens each row needed (up to its stop). Targets at 320: continuous >= 4 x one at
   a time and >= 1.5 x static, outputs identical to one at a time (the loop guard is off here so
   that the three decode the same thing).

The checkpoints are synthetic: LoRA adapters (r 16 on every projection) with random weights on the
base model; `--checkpoint` puts a trained one in the batching comparison instead (rows then end at
@enduml at mixed lengths, as in an evaluation). Usage: python bench/generate_throughput.py [--prompts 16]
[--lengths 32 128 320] [--threads 1] [--batch-size 8] [--slots 8 16] [--checkpoint C] [--only swap|batch]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import data, generate, models
from core.config import DEFAULT_TARGETS
from core.data.prompts import request


def synthetic_checkpoints(base: str, count: int, root: Path) -> list[str]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = []
    for k in range(count):
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(models.resolve_base(base)),
            LoraConfig(r=16, lora_alpha=32, target_modules=list(DEFAULT_TARGETS)),
        )
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
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64, help="for the hot-swap comparison")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 320], help="for the batching comparison")
    parser.add_argument(
        "--batch-size", type=int, default=8, help="static batching's batch, and continuous batching's slots"
    )
    parser.add_argument(
        "--slots", type=int, nargs="+", help="continuous batching's slots, each measured (default: --batch-size)"
    )
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch's choice; on a busy machine 1 is faster)"
    )
    parser.add_argument(
        "--checkpoint", help="a trained checkpoint for the batching comparison (default: a synthetic adapter)"
    )
    parser.add_argument("--only", choices=["swap", "batch"], help="run one of the two comparisons")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    rows = data.in_turn(data.load_split(data.default_dataset_dir(), "test"), args.prompts)
    prompts = [request(row["prompt"], row["diagram_type"]) for row in rows]
    run = dict(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    print(
        f"base {args.base}, {args.checkpoints} checkpoints x {len(prompts)} prompts, max_new_tokens "
        f"{args.max_new_tokens}, batch {args.batch_size}, torch threads {torch.get_num_threads()}",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as tmp:
        ckpts = synthetic_checkpoints(args.base, args.checkpoints if args.only != "batch" else 1, Path(tmp))
        # warm the process once (kernels, allocator, file cache), as any long-lived worker is
        generate.Engine(args.base).generate(prompts[:2], "base", max_new_tokens=4)
        same = True
        if args.only != "batch":
            same = compare_swap(args, prompts, ckpts, run)
        if args.only != "swap":
            compare_batch(args, prompts, args.checkpoint or ckpts[0])
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
    table(
        [
            ("pure generation (adapters loaded)", pure, None),
            ("hot-swap total", t_swap, None),
            ("  of which: base model load (once)", t_load, None),
            ("  of which: adapter loads (each once)", t_adapters, None),
            ("  of which: generation", t_generation, None),
            ("reload: base + adapter per checkpoint", t_reload, None),
        ]
    )
    swap_ratio = t_swap / pure
    overhead_ratio = (t_load + t_adapters + pure) / pure
    print(
        f"\nhot-swap / pure   {swap_ratio:.3f} measured wall time  (target <= 1.15) "
        f"{'ok' if swap_ratio <= 1.15 else 'MISSED'}"
    )
    print(
        f"                  {overhead_ratio:.3f} as (load + adapter loads + pure) / pure: the swap overhead alone, "
        "without the run-to-run noise of a shared machine"
    )
    print(f"reload / pure     {t_reload / pure:.3f}")
    print(f"hot-swap outputs == reload outputs: {'yes' if same else 'NO'}")
    return same


def stop_at_enduml(engine, prompt_len: int):
    """The stopping criterion the engine used before continuous batching: a row is done once the
    decoded tail of its new tokens holds @enduml, or it ended with end-of-turn (transformers'
    `stop_strings` does the same but builds a table over the whole vocabulary on every call)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            tails = engine.tokenizer.batch_decode(
                input_ids[:, max(prompt_len, input_ids.shape[1] - 12) :],
                skip_special_tokens=True,
                clean_up_tokenization_spaces=False,
            )
            return torch.tensor([generate.STOP in tail for tail in tails], dtype=torch.bool)

    return StoppingCriteriaList([Stop()])


def one_at_a_time(engine, model, ids, max_new_tokens) -> list[tuple[str, int]]:
    """transformers' greedy generate, one prompt at a time: (output, tokens) per prompt."""
    import torch

    rows = []
    for row in ids:
        row = torch.tensor([row])
        out = model.generate(
            input_ids=row,
            attention_mask=torch.ones_like(row),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=engine.tokenizer.pad_token_id,
            stopping_criteria=stop_at_enduml(engine, row.shape[1]),
        )
        rows.append(_row(engine, out[0, row.shape[1] :].tolist()))
    return rows


def static(engine, model, ids, max_new_tokens, batch_size) -> list[tuple[str, int]]:
    """transformers' greedy generate on left-padded batches: (output, tokens) per prompt."""
    import torch

    rows = []
    pad = engine.tokenizer.pad_token_id
    for at in range(0, len(ids), batch_size):
        chunk = ids[at : at + batch_size]
        width = max(len(r) for r in chunk)
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in chunk])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in chunk])
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            stopping_criteria=stop_at_enduml(engine, width),
        )
        rows += [_row(engine, line[width:].tolist()) for line in out]
    return rows


def _row(engine, new: list[int]) -> tuple[str, int]:
    """The output cut at @enduml and the tokens the row needed (padding after its end left out)."""
    pad, eos = engine.tokenizer.pad_token_id, engine.eos_ids
    tokens = next((i + 1 for i, t in enumerate(new) if t in eos), len(new))
    while tokens and new[tokens - 1] == pad and pad not in eos:
        tokens -= 1
    text = engine.tokenizer.decode(new[:tokens], skip_special_tokens=True, clean_up_tokenization_spaces=False)
    cut, stopped = generate.cut_at_stop(text)
    if stopped:  # the tokens up to the one that completed @enduml
        tokens = next(
            n
            for n in range(1, tokens + 1)
            if generate.STOP
            in engine.tokenizer.decode(new[:n], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        )
    return cut.strip(), tokens


def compare_batch(args, messages, ckpt) -> None:
    """Continuous vs static batching vs one at a time, at each length, back to back."""
    engine = generate.Engine(args.base)
    ids = engine.encode(messages, max(args.lengths))
    results = []
    with engine.selected(ckpt) as model:
        import torch

        for length in args.lengths:
            with torch.inference_mode():
                single, t_single = timed(lambda: one_at_a_time(engine, model, ids, length))
                batched, t_static = timed(lambda: static(engine, model, ids, length, args.batch_size))
            continuous = {}
            for slots in args.slots or [args.batch_size]:
                continuous[slots] = timed(
                    lambda: engine.generate(messages, ckpt, max_new_tokens=length, batch_size=slots, loop_guard=False)
                )
            slots, (_, t_cont) = min(continuous.items(), key=lambda item: item[1][1])  # the fastest
            tok = sum(n for _, n in single)
            same_cont = min(sum(a.output == b[0] for a, b in zip(got, single)) for got, _ in continuous.values())
            same_static = sum(a[0] == b[0] for a, b in zip(batched, single))
            lengths = sorted(n for _, n in single)
            results.append(
                {
                    "max_new_tokens": length,
                    "tokens": tok,
                    "one_s": t_single,
                    "static_s": t_static,
                    "continuous_s": t_cont,
                    "slots": slots,
                    "same_continuous": same_cont,
                    "same_static": same_static,
                    "row_tokens": f"{lengths[0]}-{lengths[len(lengths) // 2]}-{lengths[-1]}",
                }
            )
            r = results[-1]
            print(f"\n{length} new tokens: {tok} tokens (rows min-median-max {r['row_tokens']})", flush=True)
            table(
                [
                    ("one at a time (transformers generate)", t_single, tok),
                    (f"static batching ({args.batch_size}, transformers generate)", t_static, tok),
                ]
                + [
                    (f"continuous batching ({n} slots, Engine)", t, sum(g.tokens for g in got))
                    for n, (got, t) in continuous.items()
                ]
            )
            print(
                f"continuous ({slots} slots) / one at a time {t_single / t_cont:.2f}x, continuous / static "
                f"{t_static / t_cont:.2f}x; same output as one at a time: continuous {same_cont}/{len(ids)} "
                f"(every slot count), static {same_static}/{len(ids)}",
                flush=True,
            )
        length = max(args.lengths)
        guarded, t_gen = timed(lambda: engine.generate(messages, ckpt, max_new_tokens=length, batch_size=slots))
        _, t_fix = timed(lambda: engine.make_valid(guarded, ckpt, length, args.batch_size))
    n = len(guarded)
    raw, fixed = sum(bool(g.raw_valid) for g in guarded), sum(bool(g.valid) for g in guarded)
    print(
        f"\nwith the loop guard and repair, {length} new tokens, continuous: generation {t_gen:.1f} s, "
        f"check + repair {t_fix:.1f} s ({t_fix / n:.2f} s per diagram, "
        f"x{(t_gen + t_fix) / t_gen:.2f} the generation time); "
        f"looped {sum(g.looped for g in guarded)}/{n}; valid PlantUML raw {raw}/{n}, repaired {fixed}/{n} "
        f"({sum(g.repaired for g in guarded)} repaired: "
        f"{sum(any(c.startswith('second attempt') for c in g.repair) for g in guarded)} by a second attempt)"
    )
    print(
        "\n| max new tokens | tokens (row min-median-max) | one at a time tok/s | static tok/s "
        "| continuous tok/s (slots) "
        "| cont. / one | cont. / static | identical (cont., static) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        tok = r["tokens"]
        print(
            f"| {r['max_new_tokens']} | {tok} ({r['row_tokens']}) | {tok / r['one_s']:.1f} | {tok / r['static_s']:.1f} "
            f"| {tok / r['continuous_s']:.1f} ({r['slots']}) | {r['one_s'] / r['continuous_s']:.2f}x | "
            f"{r['static_s'] / r['continuous_s']:.2f}x | "
            f"{r['same_continuous']}/{len(ids)}, {r['same_static']}/{len(ids)} |"
        )


if __name__ == "__main__":
    sys.exit(main())
