"""Training throughput: the trainer's packed micro-batches against two plain HF + PEFT baselines.

    .venv/bin/python bench/train_throughput.py [--rows 48] [--tokens 4096] [--dtypes float32,bfloat16]

For each dtype (fp32 always, bf16 where the CPU or GPU computes it natively, or as --dtypes says),
each variant in its own process (unsloth patches transformers when imported), on the same rows in
the same order, the same LoRA shape, learning rate (constant) and seed, every row seen once:

- padded: transformers Trainer + PEFT, every row padded to max_seq_length (the common first attempt);
- unpadded: transformers Trainer + PEFT with dynamic padding (each batch padded to its longest row);
  both take --batch rows a forward pass and --accum passes an optimizer step;
- peft@T: the `peft` backend as `umlstudio train` runs it: rows packed end to end into micro-batches
  of up to T tokens (training.tokens_per_batch), attention inside each row (backends.PACKED_ATTENTION),
  accumulation chosen so that an optimizer step sees about as many tokens as the baselines' step;
- unsloth@T: the `unsloth` backend, same packed micro-batches.

With --compile every variant trains through `torch.compile` (transformers' `torch_compile=True`, the
inductor backend; compiling counts as training time), and --threads sets torch's intra-op threads.

Reported: real (non-pad) tokens per second of training time (evaluation excluded), the ratio to the
padded and to the unpadded baseline of the same dtype, model-FLOPs utilisation against the matmul
peak of that dtype timed in this run (the FLOPs a step needs: 4 x params per token, forward plus the
activation gradients, as LoRA has no weight gradients of the frozen base; the output layer only at
the answer tokens, the only ones with a loss; attention scores not counted), and the
eval loss after training (the exact mean answer-token loss over the same validation rows), and the
process's peak memory (resident set).
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BASELINES = ("padded", "unpadded")


def matmul_flops(dtype_name: str, seconds: float = 3.0) -> float:
    """Sustained FLOP/s of a (2048 x 576) @ (576 x 1536) matmul: the model's MLP shape."""
    import torch

    dtype = getattr(torch, dtype_name)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a, b = torch.randn(2048, 576, dtype=dtype, device=device), torch.randn(576, 1536, dtype=dtype, device=device)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * 2048 * 576 * 1536 * n / (time.perf_counter() - start)


def eval_loss(model, rows: list[dict], dtype) -> float:
    """The exact mean answer-token loss over `rows`, packed 4,096 tokens at a time (the same for every variant)."""
    import torch

    from core.training import train

    model.eval()
    device = next(model.parameters()).device
    total = count = 0.0
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for batch in train.pack(rows, 4096, 1):
            inputs = {k: v.to(device) for k, v in train.Flatten()([batch]).items()}
            n = int((inputs["labels"][:, 1:] != -100).sum())
            total += model(**inputs, use_cache=False).loss.float().item() * n
            count += n
    return total / count


def run_variant(variant: str, args) -> dict:
    """One variant, in this process: train on the rows once, then evaluate."""
    name, _, tokens = variant.partition("@")
    from core import config as cfg
    from core.training import backends

    config = cfg.parse(
        {
            "model": {"base": args.base, "dtype": args.dtype},
            "training": {
                "backend": "unsloth" if name == "unsloth" else "peft",
                "learning_rate": 2e-4,
                "max_seq_length": args.max_seq_length,
                "warmup_ratio": 0.0,
                "lr_scheduler_type": "constant",
            },
            "lora": {"r": args.r, "lora_alpha": 2 * args.r},
        }
    )
    backend = backends.select(config.training.backend)  # unsloth first, before transformers
    import torch
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, PrinterCallback, TrainerCallback

    from core import data
    from core.training import models, train

    dtype = models.pick_dtype(args.dtype)
    if name in BASELINES:  # plain transformers + PEFT, transformers' own sdpa attention
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        path = models.resolve_base(args.base)
        tokenizer = models.load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model.config.use_cache = False
        torch.manual_seed(42)
        model = get_peft_model(
            model,
            LoraConfig(
                task_type="CAUSAL_LM", r=args.r, lora_alpha=2 * args.r, target_modules=config.lora.target_modules
            ),
        )
        trainer_of = backends.PeftBackend()
        trainer_of.dtype = dtype
    else:
        model, tokenizer = backend.load(config)
        trainer_of = backend
    rows = data.load_split(args.dataset, "train")[: args.rows]
    train_rows = train.encode_rows(tokenizer, rows, args.max_seq_length)
    eval_rows = train.encode_rows(tokenizer, data.load_split(args.dataset, "validation"), args.max_seq_length)[
        : args.eval_rows
    ]
    real_tokens = sum(len(r["input_ids"]) for r in train_rows)
    if name in BASELINES:
        padding = "max_length" if name == "padded" else "longest"
        collator = DataCollatorForSeq2Seq(
            tokenizer, padding=padding, max_length=args.max_seq_length, label_pad_token_id=-100
        )
        dataset, batch, accum = Dataset.from_list(train_rows), args.batch, args.accum
        chunks = [train_rows[i : i + args.batch] for i in range(0, len(train_rows), args.batch)]
        computed = (
            len(train_rows) * args.max_seq_length
            if name == "padded"
            else sum(len(chunk) * max(len(r["input_ids"]) for r in chunk) for chunk in chunks)
        )
    else:
        batches = train.pack(train_rows, int(tokens), 1)  # the rows' own order, as the baselines see them
        per_step = real_tokens / len(train_rows) * args.batch * args.accum  # the baselines' tokens per optimizer step
        collator, dataset, batch = train.Flatten(backend.answer_logits_only), Dataset.from_list(batches), 1
        accum = max(1, round(per_step / (real_tokens / len(batches))))
        computed = real_tokens

    class Clock(TrainerCallback):
        """Training seconds: optimizer steps only, each step's kept."""

        def __init__(self):
            self.steps: list[float] = []

        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.steps.append(time.perf_counter() - self.start)

    clock = Clock()
    out = Path(args.workdir) / variant.replace("@", "_")
    trainer = trainer_of.trainer(
        model,
        tokenizer,
        dict(
            output_dir=str(out),
            num_train_epochs=1,
            learning_rate=2e-4,
            warmup_steps=0.0,
            lr_scheduler_type="constant",
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accum,
            optim="adamw_torch_fused",
            seed=42,
            logging_steps=1,
            eval_strategy="no",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            train_sampling_strategy="sequential",  # the rows in the same order for every variant
            torch_compile=args.compile,
        ),
        dataset,
        None,
        collator,
        [clock],
    )
    trainer.remove_callback(PrinterCallback)
    result = trainer.train()
    head = model.get_output_embeddings().weight.numel()
    body = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n and "embed_tokens" not in n)
    body -= 0 if getattr(model.config, "tie_word_embeddings", False) else head
    answer_tokens = sum(sum(label != -100 for label in r["labels"]) for r in train_rows)
    return {
        "variant": variant,
        "dtype": str(dtype).replace("torch.", ""),
        "steps": result.global_step,
        "accum": accum,
        "real_tokens": real_tokens,
        "computed_tokens": computed,
        "train_s": sum(clock.steps),
        "step_s": clock.steps,
        "tok_s": real_tokens / sum(clock.steps),
        "eval_loss": eval_loss(model, eval_rows, dtype),
        "flops_per_token": 4 * (body + head * answer_tokens / real_tokens),
        "threads": torch.get_num_threads(),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # KiB on Linux
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, default=48, help="training rows, each seen once (default 48: 3 baseline steps)"
    )
    parser.add_argument("--batch", type=int, default=4, help="baselines: rows per forward pass (default 4)")
    parser.add_argument(
        "--accum", type=int, default=4, help="baselines: gradient accumulation (default 4: 16 rows a step)"
    )
    parser.add_argument(
        "--tokens", default="4096", help="packed variants: tokens_per_batch values, comma-separated (default 4096)"
    )
    parser.add_argument(
        "--dtypes", default=None, help="default: float32, and bfloat16 where the hardware computes it natively"
    )
    parser.add_argument("--variants", default="padded,unpadded,peft,unsloth")
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument(
        "--r",
        type=int,
        default=16,
        help="LoRA rank (alpha = 2r): 16, the quick test's, by default; the 30-minute preset trains 64",
    )
    parser.add_argument("--eval-rows", type=int, default=32)
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--dataset", default="data/default")
    parser.add_argument("--workdir", default=None, help="scratch folder for the trainers (default: a temp folder)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true", help="train through torch.compile (inductor)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    if args.variant:
        print("RESULT " + json.dumps(run_variant(args.variant, args)), flush=True)
        return 0

    import tempfile

    import torch

    from core.training import models

    dtypes = (
        args.dtypes.split(",")
        if args.dtypes
        else ["float32"] + (["bfloat16"] if models.pick_dtype("auto") == torch.bfloat16 else [])
    )
    variants = [
        v if v in BASELINES else f"{v}@{t}"
        for v in args.variants.split(",")
        for t in (args.tokens.split(",") if v not in BASELINES else [None])
    ]
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench-train-")
    peak = {d: matmul_flops(d) for d in dtypes}
    print("matmul 2048x576 @ 576x1536: " + ", ".join(f"{d} {peak[d] / 1e9:.1f} GFLOP/s" for d in dtypes), flush=True)
    results = []
    for dtype in dtypes:
        for variant in variants:
            # the parent's own arguments, then the variant's (argparse keeps the last --workdir)
            child = [
                sys.executable,
                __file__,
                *sys.argv[1:],
                "--variant",
                variant,
                "--dtype",
                dtype,
                "--workdir",
                workdir,
            ]
            start = time.perf_counter()
            done = subprocess.run(child, capture_output=True, text=True)
            line = next((out for out in done.stdout.splitlines() if out.startswith("RESULT ")), None)
            if done.returncode or line is None:
                print(
                    f"{variant} {dtype}: failed (exit {done.returncode})\n{done.stderr[-3000:]}",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            result = json.loads(line[len("RESULT ") :])
            result["wall_s"] = time.perf_counter() - start
            results.append(result)
            print(
                f"{variant} {dtype}: {result['tok_s']:.1f} real tok/s, {result['steps']} steps ("
                + ", ".join(f"{s:.1f}" for s in result["step_s"])
                + f" s), eval_loss {result['eval_loss']:.4f} "
                f"({result['wall_s']:.0f} s)",
                flush=True,
            )

    print(
        f"\n{args.rows} rows once, baselines {args.batch} rows x {args.accum} accumulation a step, max_seq_length "
        f"{args.max_seq_length}, LoRA r {args.r}, {results[0]['threads'] if results else '?'} threads"
        + (", torch.compile" if args.compile else "")
    )
    print(
        f"{'variant':<14} {'dtype':<9} {'steps':>5} {'real tok/s':>10} {'x padded':>8} "
        f"{'x unpadded':>10} {'eval loss':>9} "
        f"{'vs unpadded':>11} {'pad share':>9} {'MFU':>6} {'peak GB':>7} {'wall s':>7}"
    )
    for r in results:
        same = {
            b: next((x for x in results if x["variant"] == b and x["dtype"] == r["dtype"]), None) for b in BASELINES
        }
        ratio = {b: f"{r['tok_s'] / same[b]['tok_s']:.2f}" if same[b] else "-" for b in BASELINES}
        delta = f"{(r['eval_loss'] / same['unpadded']['eval_loss'] - 1) * 100:+.1f}%" if same["unpadded"] else "-"
        mfu = r["tok_s"] * r["flops_per_token"] / peak[r["dtype"]]
        pad = 1 - r["real_tokens"] / r["computed_tokens"]
        print(
            f"{r['variant']:<14} {r['dtype']:<9} {r['steps']:>5} {r['tok_s']:>10.1f} {ratio['padded']:>8} "
            f"{ratio['unpadded']:>10} {r['eval_loss']:>9.4f} {delta:>11} {pad:>9.0%} {mfu:>6.1%} "
            f"{r['peak_rss_gb']:>7.1f} {r['wall_s']:>7.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
