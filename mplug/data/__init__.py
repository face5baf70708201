"""Data: the normalised format (formats.py), the synthetic world (synth.py, vocab.py), and the
loaders (datasets.py, transforms.py, video.py, collate.py, tokenizer.py).

Import submodules directly; this package imports nothing heavy (no torch) on its own.
See mplug/data/README.md for the on-disk format.
"""
