"""Bench tests: one thread, tiny shapes (each test well under 30 s on a slow core)."""
import torch

torch.set_num_threads(1)
