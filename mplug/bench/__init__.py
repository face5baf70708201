"""Benchmarks of the paper's speed claims and of the harness's fast paths.

`fusion` (Figures 1, 3, 4), `train` (Table 6), `generate` (cached vs recompute decoding),
`retrieval` (cached vs plain ITM reranking). Each module has a `*Options` dataclass and a
`run_*(opts) -> dict` that returns the JSON the report reads (docs in mplug/report/README.md);
`mplug bench NAME` (mplug/commands/bench.py) prints it as a table and writes it atomically.
"""
