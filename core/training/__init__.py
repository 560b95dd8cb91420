"""Training one LoRA phase: base models, the backends (unsloth / peft), the trainer script (train), DDP
(distributed), checkpoint folders, the phase rules (phases), and runs as workers (runs)."""
