"""PlantUML LoRA Studio: fine-tune a small model to write PlantUML, judge it, and continue it honestly."""
