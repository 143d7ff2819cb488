"""Training: the Trainer subclass, method presets and the finetune / distill entry points."""
