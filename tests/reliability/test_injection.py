"""Issue 18, case 1: a config that validates must not run code through a rule's shell.

Every interpolation in the rule shells is quoted (`{x:q}`), so a path with spaces stays one
argument and a shell metacharacter stays a character. The config's path keys are constrained by
the schema (no metacharacters, quotes, braces or control characters): `res||touch X||` is a
ConfigError naming the key, before Snakemake schedules anything. A real rule (`preprocess` of a
small SNLI-VE raw layout) runs through Snakemake from a working directory and a config file whose
paths hold spaces and metacharacters, with a `resources_dir` holding spaces; no marker file
appears and the dataset is written.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from _helpers import REPO, cli_env, snli_raw
from mplug.config import load_config
from mplug.data.preprocess import PREPROCESS_SOURCES
from mplug.errors import ConfigError

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SMOKE = (REPO / "config" / "smoke.yaml").read_text(encoding="utf-8")


def _config(resources_dir: str) -> str:
    old = "  source: synth              # `mplug data synth` instead of download + preprocess\n" \
          "  resources_dir: resources\n"
    assert old in SMOKE, "config/smoke.yaml's data section changed"
    text = SMOKE.replace(old, f"  source: real\n  resources_dir: {json.dumps(resources_dir)}\n")
    for name, sources in PREPROCESS_SOURCES.items():  # real data: the planning check wants them
        text = text.replace(f"    {name}:".ljust(22) + "{downloads: []",
                            f"    {name}:".ljust(22) + f"{{downloads: [{', '.join(sources)}]", 1)
    return text


INJECTIONS = ["res||touch {m}||", "res;touch {m}", "res$(touch {m})", "res`touch {m}`",
              "res\ntouch {m}", "res && touch {m}", "res' ; touch {m} '", "res{{x}}"]


@pytest.mark.parametrize("value", INJECTIONS)
def test_path_key_with_shell_metacharacters_is_a_named_config_error(value, tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "c.yaml"
    path.write_text(_config(value.format(m=marker)), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "data.resources_dir" in msg and "shell metacharacters" in msg and str(path) in msg, msg
    assert not marker.exists()


def test_snakemake_refuses_the_injecting_config_before_any_job(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "c.yaml"
    path.write_text(_config(f"res||touch {marker}||"), encoding="utf-8")
    res = subprocess.run([str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path / "w"),
                          "--configfile", str(path), "--cores", "1", "data/smoke/snli_ve/stats.json"],
                         cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=180)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "data.resources_dir" in out and "shell metacharacters" in out, out[-2000:]
    assert not marker.exists()


def test_preprocess_rule_runs_with_spaces_and_metacharacters_in_its_paths(tmp_path):
    """The whole rule really runs (not a dry run): Snakemake -> shell -> `mplug data preprocess`."""
    weird = tmp_path / "my work;touch PWNED1;$(touch PWNED2)`touch PWNED3`|x&y"
    workdir = weird / "run dir"
    resources = "raw data"  # relative to the working directory; spaces are a valid folder name
    snli_raw(workdir / resources)
    for source in PREPROCESS_SOURCES["snli_ve"]:  # downloaded already: only preprocess runs
        marker = workdir / resources / source / "download.json"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}", encoding="utf-8")
    config = weird / "conf dir" / "smoke run.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(_config(resources), encoding="utf-8")
    res = subprocess.run([str(SNAKEMAKE), "data/smoke/snli_ve/stats.json", "-s", str(REPO / "Snakefile"),
                          "-d", str(workdir), "--configfile", str(config), "--cores", "1",
                          "--allowed-rules", "preprocess"],
                         cwd=weird, env=cli_env(), capture_output=True, text=True, timeout=300)
    log = workdir / "logs" / "smoke" / "preprocess" / "snli_ve.log"
    detail = res.stdout[-2000:] + res.stderr[-3000:] + (log.read_text() if log.exists() else "")
    assert res.returncode == 0, detail
    made = [p for p in tmp_path.rglob("PWNED*")]
    assert not made, f"the shell ran injected commands: {made}"
    stats = json.loads((workdir / "data" / "smoke" / "snli_ve" / "stats.json").read_text())
    assert stats["splits"] == {"train": 1, "dev": 1, "test": 1}, stats
