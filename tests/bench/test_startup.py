"""`startup_s` of `mplug bench train`: a fresh process building the model and engine, which
`mplug plan` adds to every training job. Its success path runs in every smoke DAG (the bench
rule); tests/e2e/test_smoke_dag.py checks that the plan carries it."""
import pytest

from mplug.bench.train import TrainBenchOptions, startup_seconds


def test_a_failing_probe_says_why():
    with pytest.raises(RuntimeError, match="(?s)start-up probe failed.*unknown model 'no_such_model'"):
        startup_seconds(TrainBenchOptions.quick(model="no_such_model"), "fp32", 0)
