"""Training: one DeepSpeed engine (GPU and CPU), checkpoints, recipes for pretraining and every
fine-tuning task. See docs/training.md.

Modules: `distributed` (launcher detection), `deepspeed_config` (config dict from YAML),
`optim` (AdamW groups, schedules), `engine` (deepspeed.initialize), `checkpoint` (atomic
save/resume), `loop` (the step loop, logging, preemption), `recipes` (per-task settings and
model/data construction), `scst` (CIDEr optimisation step), `evaluation` (keep-best
in-training evaluation), `run` (pretrain/finetune entry points used by `mplug train`).
Nothing here imports torch at package import time.
"""
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: checkpoint written after SIGTERM/SIGUSR1; requeue and --resume latest
