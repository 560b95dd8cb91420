"""Training throughput: a naive baseline against the trainer's two backends, same data and batch.

    .venv/bin/python bench/train_throughput.py [--steps 10] [--batch 4] [--accum 4] [--base smollm2-135m]

- baseline: transformers Trainer + PEFT in fp32, every row padded to max_seq_length (the common
  first attempt);
- peft: the `peft` backend as `umlstudio train` runs it: padding-free packed batches, bf16 autocast
  where the CPU has native bf16;
- unsloth: the `unsloth` backend (FastLanguageModel + TRL SFTTrainer), same packed batches.

Each variant runs in its own process (unsloth patches transformers when imported), on the same
rows in the same order, the same LoRA shape, learning rate and seed. Reported: real (non-pad)
tokens per second of training time (evaluation excluded), the ratio to the baseline, eval loss
after the last step on the same validation rows, and model-FLOPs utilisation against a bf16 and
an fp32 matmul timed in this run (4 x params FLOPs per token: forward plus the activation
gradients; LoRA has no weight gradients of the frozen base; attention scores not counted).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = ("baseline", "peft", "unsloth")


def matmul_flops(dtype_name: str, seconds: float = 3.0) -> float:
    """Sustained FLOP/s of a (2048 x 576) @ (576 x 1536) matmul: the model's MLP shape."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(2048, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * 2048 * 576 * 1536 * n / (time.perf_counter() - start)


def run_variant(variant: str, args) -> dict:
    """One variant, in this process: train `steps` optimizer steps, then evaluate."""
    from core import backends
    from core import config as cfg

    config = cfg.parse({
        "model": {"base": args.base, "dtype": "float32" if variant == "baseline" else "auto"},
        "training": {"backend": "unsloth" if variant == "unsloth" else "peft", "max_steps": args.steps,
                     "per_device_train_batch_size": args.batch, "gradient_accumulation_steps": args.accum,
                     "learning_rate": 2e-4, "max_seq_length": args.max_seq_length, "warmup_ratio": 0.0},
        "lora": {"r": args.r, "lora_alpha": 2 * args.r},
    })
    backend = backends.select(config.training.backend)  # unsloth first, before transformers
    import torch
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, PrinterCallback, TrainerCallback

    from core import data, train

    model, tokenizer = backend.load(config)
    rows = data.load_split(args.dataset, "train")[: args.steps * args.batch * args.accum]
    train_rows = train.encode_rows(tokenizer, rows, args.max_seq_length)
    eval_rows = train.encode_rows(tokenizer, data.load_split(args.dataset, "validation"), args.max_seq_length)[: args.eval_rows]
    if variant == "baseline":
        collator = DataCollatorForSeq2Seq(tokenizer, padding="max_length", max_length=args.max_seq_length, label_pad_token_id=-100)
    else:
        collator = DataCollatorWithFlattening(return_position_ids=True)

    class Clock(TrainerCallback):
        """Training seconds (optimizer steps only) and real tokens (labels or attention, never pads)."""

        seconds = 0.0

        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.seconds += time.perf_counter() - self.start

    clock = Clock()
    out = Path(args.workdir) / variant
    trainer = backend.trainer(model, tokenizer, dict(
        output_dir=str(out), max_steps=args.steps, learning_rate=2e-4, warmup_steps=0.0,
        per_device_train_batch_size=args.batch, per_device_eval_batch_size=args.batch,
        gradient_accumulation_steps=args.accum, optim="adamw_torch_fused", seed=42, logging_steps=1,
        eval_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True, remove_unused_columns=False,
        prediction_loss_only=True, dataloader_num_workers=0, dataloader_pin_memory=False,
    ), Dataset.from_list(train_rows), Dataset.from_list(eval_rows), collator, [clock])
    trainer.remove_callback(PrinterCallback)
    result = trainer.train()
    eval_loss = trainer.evaluate()["eval_loss"]
    # every row is seen once, in the same order: its tokens are the real tokens of every variant
    real_tokens = sum(len(r["input_ids"]) for r in train_rows[: args.steps * args.batch * args.accum])
    computed = real_tokens if variant != "baseline" else args.steps * args.batch * args.accum * args.max_seq_length
    params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n and "embed_tokens" not in n)
    params += model.get_output_embeddings().weight.numel() if getattr(model.config, "tie_word_embeddings", False) else 0
    return {
        "variant": variant, "backend": backend.name, "dtype": str(backend.dtype).replace("torch.", ""),
        "steps": result.global_step, "real_tokens": real_tokens, "computed_tokens": computed,
        "train_s": clock.seconds, "tok_s": real_tokens / clock.seconds, "eval_loss": eval_loss,
        "flops_per_token": 4 * params, "threads": torch.get_num_threads(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per variant (default 10)")
    parser.add_argument("--batch", type=int, default=4, help="rows per forward pass (default 4)")
    parser.add_argument("--accum", type=int, default=4, help="gradient accumulation (default 4: effective batch 16)")
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--r", type=int, default=64, help="LoRA rank (alpha = 2r), phase 1's 64 by default")
    parser.add_argument("--eval-rows", type=int, default=32)
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--dataset", default="data/default")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--workdir", default=None, help="scratch folder for the trainers (default: a temp folder)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()

    if args.variant:
        print("RESULT " + json.dumps(run_variant(args.variant, args)), flush=True)
        return 0

    import tempfile

    workdir = args.workdir or tempfile.mkdtemp(prefix="bench-train-")
    peak = {"bfloat16": matmul_flops("bfloat16"), "float32": matmul_flops("float32")}
    print(f"matmul 2048x576 @ 576x1536: bf16 {peak['bfloat16'] / 1e9:.1f} GFLOP/s, fp32 {peak['float32'] / 1e9:.1f} GFLOP/s")
    results = []
    for variant in args.variants.split(","):
        child = [sys.executable, __file__, "--variant", variant, "--workdir", workdir,
                 *(f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("variant", "workdir", "variants") and v is not None)]
        start = time.perf_counter()
        done = subprocess.run(child, capture_output=True, text=True)
        line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
        if done.returncode or line is None:
            print(f"{variant}: failed (exit {done.returncode})\n{done.stderr[-3000:]}", file=sys.stderr)
            continue
        result = json.loads(line[len("RESULT "):])
        result["wall_s"] = time.perf_counter() - start
        results.append(result)
        print(f"{variant}: {result['tok_s']:.1f} real tok/s, eval_loss {result['eval_loss']:.4f}", flush=True)

    base = next((r for r in results if r["variant"] == "baseline"), None)
    print(f"\n{args.steps} steps x {args.batch} rows x {args.accum} accumulation, max_seq_length {args.max_seq_length}, "
          f"LoRA r {args.r}, {results[0]['threads'] if results else '?'} threads")
    print(f"{'variant':<9} {'dtype':<9} {'real tok/s':>10} {'x base':>7} {'eval loss':>9} {'vs base':>8} "
          f"{'pad share':>9} {'MFU bf16':>8} {'MFU fp32':>8} {'wall s':>7}")
    for r in results:
        ratio = f"{r['tok_s'] / base['tok_s']:.2f}" if base else "-"
        loss_delta = f"{(r['eval_loss'] / base['eval_loss'] - 1) * 100:+.1f}%" if base else "-"
        flops = r["tok_s"] * r["flops_per_token"]
        pad = 1 - r["real_tokens"] / r["computed_tokens"]
        print(f"{r['variant']:<9} {r['dtype']:<9} {r['tok_s']:>10.1f} {ratio:>7} {r['eval_loss']:>9.4f} {loss_delta:>8} "
              f"{pad:>9.0%} {flops / peak['bfloat16']:>8.1%} {flops / peak['float32']:>8.1%} {r['wall_s']:>7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
