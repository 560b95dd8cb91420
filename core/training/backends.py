"""Training backends behind one small interface (`training.backend: auto | unsloth | peft`).

A backend does two things: `load(config)` returns (model with fresh LoRA adapters, tokenizer), and
`trainer(...)` wraps them in its trainer. Everything else (the rows, the padding-free collator,
the TrainingArguments, the callbacks) is the recipe's, shared by both, so the two backends train
on identical batches and both save standard PEFT adapters.

- unsloth: `FastLanguageModel` + TRL `SFTTrainer`. `import unsloth` patches transformers, so it is
  imported first, and only here, in the training worker.
- `model.load_in_4bit` (QLoRA): unsloth loads the base in 4-bit itself; peft through bitsandbytes'
  `BitsAndBytesConfig` (NF4), also on a CPU (`models.check_4bit` says where it runs).
- peft: transformers `Trainer` + PEFT, fp32 master weights with bf16 (or fp16 on GPUs without bf16)
  autocast where the hardware computes it natively (`models.pick_dtype`); logits only at the positions
  that predict an answer token (`answer_logits_only`, done by the collator).

Both work on a CPU without native bf16 (fp32), a CPU with AMX / AVX512-BF16 (bf16) and a CUDA GPU
(bf16, or fp16 where bf16 is missing). On a CPU, transformers refuses bf16 unless told the run is a
CPU run (`use_cpu`); `precision_args` says so.
- auto: unsloth when it imports, else peft with a one-line notice saying why.

Attention over packed rows (`PACKED_ATTENTION`): a micro-batch is many rows end to end, position_ids
restarting at 0 for each. transformers' own sdpa would build a dense block-causal mask over the
whole packed length and compute every masked score (at 4,096 tokens as many FLOPs as the rest of the
model); `packed_sdpa` runs causal SDPA on each row alone instead (the sum of the rows' squared
lengths). The peft backend uses it everywhere, the unsloth backend on a CPU (where unsloth runs stock
transformers); on a GPU unsloth attends packed rows with its own varlen kernels.
"""

from core.errors import UserError
from core.training import models

PACKED_ATTENTION = "packed_sdpa"


def packed_sdpa(module, query, key, value, attention_mask, position_ids=None, **kwargs):
    """transformers' SDPA, causal, on each packed row alone: a row starts where its position_ids
    restart at 0. A padded batch (a mask) goes to plain SDPA with its mask."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if attention_mask is not None or position_ids is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    length = query.shape[2]
    outputs = []
    for b in range(query.shape[0]):
        starts = (position_ids[b] == 0).nonzero().flatten().tolist()
        bounds = sorted({0, *starts, length})
        rows = [
            sdpa_attention_forward(
                module, query[b : b + 1, :, s:e], key[b : b + 1, :, s:e], value[b : b + 1, :, s:e], None, **kwargs
            )[0]
            for s, e in zip(bounds, bounds[1:])
        ]
        outputs.append(torch.cat(rows, dim=1))  # (1, rows' tokens, heads, head_dim)
    return torch.cat(outputs, dim=0), None


def _packed_mask(*args, attention_mask=None, **kwargs):
    """No mask for packed rows (`packed_sdpa` reads their bounds from position_ids); a padding mask as sdpa's."""
    from transformers.masking_utils import sdpa_mask

    return None if attention_mask is None else sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register_packed_attention() -> str:
    """Make `attn_implementation=PACKED_ATTENTION` known to transformers; returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PACKED_ATTENTION, packed_sdpa)
    AttentionMaskInterface.register(PACKED_ATTENTION, _packed_mask)
    return PACKED_ATTENTION


def select(choice: str):
    """The backend for `training.backend`; call it before anything imports transformers."""
    if choice == "peft":
        return PeftBackend()
    try:
        import unsloth  # noqa: F401  (first: it patches transformers, TRL and PEFT)
    except Exception as exc:  # an import failure of any kind means "not available here"
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        if choice == "unsloth":
            raise UserError(
                f"training.backend: unsloth does not import here ({reason}) — set training.backend: peft or auto"
            ) from None
        backend = PeftBackend()
        backend.notice = f"backend auto: unsloth is unavailable ({reason}); training with peft"
        return backend
    return UnslothBackend()


def precision_args(dtype) -> dict:
    """TrainingArguments keys for the compute dtype: mixed precision flags, and `use_cpu` without CUDA."""
    import torch

    cuda = torch.cuda.is_available()
    if dtype == torch.float16 and not cuda:
        raise UserError(
            "model.dtype: float16 training needs a CUDA GPU — set model.dtype: bfloat16 or float32 on a CPU"
        )
    return dict(bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, use_cpu=not cuda)


def quantized(dtype, config) -> dict:
    """from_pretrained's keys for `model.load_in_4bit` (QLoRA's NF4 with double quantisation, computing in
    `dtype`); {} without it. core.training.models.check_4bit refused the machines it cannot run on."""
    if not config.model.load_in_4bit:
        return {}
    from transformers import BitsAndBytesConfig

    return dict(
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
    )


def _lora_kwargs(config) -> dict:
    return dict(
        r=config.lora.r,
        lora_alpha=config.lora.lora_alpha,
        lora_dropout=config.lora.lora_dropout,
        target_modules=list(config.lora.target_modules),
    )


class PeftBackend:
    name = "peft"
    notice = None
    answer_logits_only = True  # the collator keeps logits only where an answer token is learnt (train.Flatten)

    def load(self, config):
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        self.dtype = models.pick_dtype(config.model.dtype)
        path = models.resolve_base(config.model.base)
        tokenizer = models.load_tokenizer(path)
        # fp32 master weights; bf16 (where native) comes from autocast, so LoRA updates stay exact.
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, attn_implementation=register_packed_attention(), **quantized(self.dtype, config)
        )
        if config.model.load_in_4bit:  # QLoRA: norms and embeddings in fp32, gradients flow to the adapters
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model.config.use_cache = False
        torch.manual_seed(config.training.seed)
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", bias="none", **_lora_kwargs(config)))
        return model, tokenizer

    def trainer(self, model, tokenizer, args: dict, train_dataset, eval_dataset, collator, callbacks):
        from transformers import Trainer, TrainingArguments

        training_args = TrainingArguments(**args, **precision_args(self.dtype))
        return Trainer(
            model=model,
            args=training_args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=collator,
            processing_class=tokenizer,
            callbacks=callbacks,
        )


class UnslothBackend:
    name = "unsloth"
    notice = None
    answer_logits_only = False  # TRL's SFTTrainer does it itself (its fused LM head); the collator must not

    def load(self, config):
        import torch
        from unsloth import FastLanguageModel

        self.dtype = models.pick_dtype(config.model.dtype)
        # on a CPU unsloth runs stock transformers: packed rows need packed_sdpa there; a GPU has unsloth's own kernels
        attention = {} if torch.cuda.is_available() else {"attn_implementation": register_packed_attention()}
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=models.resolve_base(config.model.base),
            dtype=self.dtype,
            load_in_4bit=config.model.load_in_4bit,
            max_seq_length=config.training.max_seq_length,
            use_gradient_checkpointing=False,
            **attention,
        )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # No gradient checkpointing: a 135M model's activations fit easily, recomputing them costs ~30%.
        model = FastLanguageModel.get_peft_model(
            model,
            bias="none",
            random_state=config.training.seed,
            use_gradient_checkpointing=False,
            **_lora_kwargs(config),
        )
        return model, tokenizer

    def trainer(self, model, tokenizer, args: dict, train_dataset, eval_dataset, collator, callbacks):
        from trl import SFTConfig, SFTTrainer

        # The rows arrive tokenised with their completion-only labels: TRL must not prepare them again.
        sft_args = SFTConfig(
            **args,
            **precision_args(self.dtype),
            gradient_checkpointing=False,
            dataset_kwargs={"skip_prepare_dataset": True},
        )
        return SFTTrainer(
            model=model,
            args=sft_args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=collator,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
