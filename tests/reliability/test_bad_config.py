"""Item 4: a bad run config stops everything before any work, with a message naming the key.

Each case edits config/smoke.yaml's text (so anchors and comments stay) and is checked twice:
`mplug.config.load_config` (what every verb calls) and `snakemake -n` with the Snakefile (what
a user runs), which must fail while parsing, before scheduling a single job.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from _helpers import REPO, cli_env
from mplug.config import load_config
from mplug.errors import ConfigError

SMOKE = (REPO / "config" / "smoke.yaml").read_text(encoding="utf-8")
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def _edit(old: str, new: str, count: int = 1) -> str:
    assert SMOKE.count(old) >= 1, f"config/smoke.yaml no longer contains {old!r}"
    return SMOKE.replace(old, new, count)


# name -> (config text, what the message must name)
CASES = {
    "unknown_key": (_edit("    stride: 2 ", "    stride: 2\n    strde: 3 "),
                    ["models.mplug_smoke.strde", "unknown key 'strde'"]),
    "wrong_type": (_edit("batch_size: 32", "batch_size: thirty-two"),
                   ["pretrain.pretrain_14m.train.batch_size", "wrong type"]),
    "missing_required": (_edit("run: smoke\n", ""), ["'run' is required"]),
    "missing_required_nested": (_edit("    task: vqa\n    init: pretrain_4m\n", "    task: vqa\n"),
                                ["finetune.vqa", "'init' is required"]),
    "unknown_task": (_edit("    task: nlvr2\n", "    task: nlvr3\n"),
                     ["finetune.nlvr2.task", "unknown task 'nlvr3'"]),
    "unknown_eval_task": (_edit("    task: video_qa_msrvtt\n", "    task: video_qa_msrvt\n"),
                          ["evaluate.video_qa_msrvtt.task", "unknown task 'video_qa_msrvt'"]),
    "impossible_stride": (_edit("    stride: 2 ", "    stride: 4 "),
                          ["models.mplug_smoke.stride", "stride 4 is impossible"]),
    "unknown_job": (_edit("finetune: [vqa, ", "finetune: [vqa_large, "),
                    ["models.mplug_smoke.finetune", "unknown fine-tuning job 'vqa_large'"]),
    # issue 18, case 9: YAML keeps the last of two equal keys silently; .nan/.inf are numbers
    "duplicate_key": (_edit("seed: 0\n", "seed: 0\nhparams: paper\n"),
                      ["hparams (line 11): written twice, first at line 10"]),
    "nan_lr": (_edit("      lr_text: 1.0e-3\n", "      lr_text: .nan\n"),
               ["pretrain.pretrain_14m.train.lr_text", "nan is not a finite number"]),
    "inf_weight_decay": (_edit("      weight_decay: 0.02\n", "      weight_decay: .inf\n"),
                         ["pretrain.pretrain_14m.train.weight_decay", "inf is not a finite number"]),
}


def _write(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(CASES[name][0], encoding="utf-8")
    return path


def test_the_unedited_smoke_config_is_valid(tmp_path):
    path = tmp_path / "smoke.yaml"
    path.write_text(SMOKE, encoding="utf-8")
    assert load_config(path)["run"] == "smoke"


@pytest.mark.parametrize("name", sorted(CASES))
def test_load_config_names_the_key(name, tmp_path):
    path = _write(tmp_path, name)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg
    for needle in CASES[name][1]:
        assert needle in msg, msg
    if name != "missing_required":  # a missing top-level key has no line to point at
        assert re.search(r"\(line \d+\)", msg), msg


def test_snakemake_stops_before_any_job(tmp_path):
    """One `snakemake -n` per bad config, run side by side (each parses the Snakefile, ~2 s)."""
    procs = {}
    for name in sorted(CASES):
        workdir = tmp_path / name
        workdir.mkdir()
        cmd = [str(SNAKEMAKE), "all", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n",
               "--cores", "1", "--configfile", str(_write(tmp_path, name))]
        procs[name] = (subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True), workdir)
    for name, (proc, workdir) in procs.items():
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode != 0, f"{name}: snakemake accepted the config:\n{out[-2000:]}"
        assert "ConfigError" in out, f"{name}:\n{out[-2000:]}"
        for needle in CASES[name][1]:
            assert needle in out, f"{name}: {needle!r} not in:\n{out[-2000:]}"
        assert "Job stats" not in out and "rule " not in out.split("ConfigError")[0], out[-2000:]
        made = [p for p in workdir.rglob("*") if ".snakemake" not in p.parts]
        assert not made, f"{name}: files were made before the config was checked: {made}"
