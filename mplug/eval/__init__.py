"""Evaluation: metrics (accuracy.py, caption_eval.py, retrieval_eval.py, grounding_eval.py,
vqa_eval.py; bootstrap.py for 95% intervals), scoring prediction files (score.py), and evaluation runs of a
checkpoint on a task split (run.py). Import the submodules directly; this package imports nothing
heavy on its own."""
