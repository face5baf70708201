"""Evaluation: metrics (metrics.py), scoring prediction files (score.py), and evaluation runs of a
checkpoint on a task split (run.py). Import the submodules directly; this package imports nothing
heavy on its own."""
