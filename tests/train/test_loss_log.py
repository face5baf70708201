"""The loop's loss records without per-step host syncs equal the per-step `.item()` way."""
import json

import pytest
import torch

from toy import ToyData, ToyModel, collate


@pytest.fixture
def _env(dist_env_restored):
    yield


def test_log_values_equal_the_per_step_means(tmp_path, monkeypatch, _env):
    import mplug.train.loss_log as loss_log
    from mplug.train.deepspeed_config import EngineConfig
    from mplug.train.loop import LoopConfig, fit
    from mplug.train.optim import OptimConfig

    seen: list[dict] = []  # what the old loop did per micro-step: float(v.float().item())

    def step_fn(engine, batch, ctx):
        out = engine(batch)
        seen.append({k: float(v.detach().float().item()) for k, v in out.items()})
        return out

    flushes = []
    real = loss_log._to_host_rank_mean
    monkeypatch.setattr(loss_log, "_to_host_rank_mean",
                        lambda values: flushes.append(len(values)) or real(values))
    torch.manual_seed(0)
    fit(ToyModel(), ToyData(), collate,
        LoopConfig(epochs=1, batch_size=8, max_steps=5, seed=3, log_every=2, save_every=0,
                   progress=False, tensorboard=False),
        OptimConfig(lr=3e-3, lr_vit=1e-3, warmup_steps=0), EngineConfig(zero_stage=0, precision="fp32",
                                                                      grad_accum=2),
        tmp_path, step_fn=step_fn)
    records = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    for i, rec in enumerate(records):
        micro = seen[2 * i:2 * i + 2]
        for key in ("loss", "loss_ce", "loss_reg"):
            old = 0.0
            for m in micro:  # the old accumulation order: acc += value / grad_accum
                old += m[key] / 2
            assert rec[key] == old, (rec["step"], key)
        assert list(rec)[:5] == ["step", "epoch", "loss", "loss_ce", "loss_reg"]
    # one host copy per log interval (steps 2, 4) and at the end (5), not one per micro-step
    assert [n for n in flushes if n] == [12, 12, 6]


def test_a_failed_run_logs_the_steps_it_finished(tmp_path, _env):
    """The records waiting for the next flush are written when a step raises."""
    from mplug.train.deepspeed_config import EngineConfig
    from mplug.train.loop import LoopConfig, fit
    from mplug.train.optim import OptimConfig

    def step_fn(engine, batch, ctx):
        if ctx.step == 3:
            raise RuntimeError("boom")
        return engine(batch)

    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match="boom"):
        fit(ToyModel(), ToyData(), collate,
            LoopConfig(epochs=1, batch_size=8, max_steps=6, seed=3, log_every=5, save_every=0,
                       progress=False, tensorboard=False),
            OptimConfig(lr=3e-3, lr_vit=1e-3, warmup_steps=0), EngineConfig(zero_stage=0, precision="fp32"),
            tmp_path, step_fn=step_fn)
    records = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3] and all("loss" in r for r in records)
