"""Parameter counts against the official ones, schedules, the CLI, and the FLOP model."""
import json
import os
import subprocess
import sys

import pytest

from mplug.models import get_config
from mplug.models.flops import fusion_flops, fusion_flops_for, layer_flops
from mplug.models.info import model_info


@pytest.mark.parametrize("name, official, connected", [
    ("mplug_base", 347.4e6, [3]), ("mplug_large", 566.0e6, [])])
def test_effective_params_within_2_percent_of_official(name, official, connected):
    info = model_info(get_config(name), "vqa")
    assert abs(info["params_effective"] - official) / official < 0.02
    # counting the never-used tensors the official count includes lands on it (to 0.1M)
    assert abs(info["params_official_convention"] - official) < 0.1e6
    assert info["connected_layers"] == connected
    assert len(info["fusion_schedule"]) == 6


def test_caption_uses_no_text_encoder_or_fusion():
    cap, vqa = model_info(get_config("mplug_tiny"), "caption"), model_info(get_config("mplug_tiny"), "vqa")
    assert cap["params_effective"] < vqa["params_effective"]


def test_cli_info_json():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "mplug.cli", "model", "info", "mplug_base", "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["fusion_schedule"] == ["asymmetric"] * 3 + ["connected"] + ["asymmetric"] * 2
    bad = subprocess.run([sys.executable, "-m", "mplug.cli", "model", "info", "mplug_base", "--set",
                          "stride=0"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode != 0 and "stride=0" in bad.stderr and "Traceback" not in bad.stderr


def test_flops_hand_computed_small_case():
    # D=2, I=4, N=3 visual, L=2 text.
    # asymmetric: SA(2)=8*2*4+4*4*2=64+32=96; CA(2<-3)=4*2*4+4*3*4+4*2*3*2=32+48+48=128;
    #             FFN(2)=4*2*2*4=64 -> 288
    # connected:  SA(5)=8*5*4+4*25*2=160+200=360; FFN(5)=4*5*2*4=160 -> 520
    assert layer_flops("asymmetric", 2, 4, 3, 2) == 288
    assert layer_flops("connected", 2, 4, 3, 2) == 520
    # two_stream: SA(2)+SA(3)+CA(2<-3)+CA(3<-2)+FFN(2)+FFN(3)
    #  = 96 + (96+72) + 128 + (48+32+48) + 64 + 96 = 680
    assert layer_flops("two_stream", 2, 4, 3, 2) == 680
    kinds = ["asymmetric", "asymmetric", "connected"]
    assert fusion_flops(kinds, 2, 3, 2, batch=3, intermediate=4) == 3 * (288 * 2 + 520)


def test_flops_ordering_matches_paper_claims():
    base = get_config("mplug_base")
    f = {t: fusion_flops_for(base.replace(fusion_type=t), n_text=32)
         for t in ("skip", "connected", "two_stream", "asymmetric")}
    assert f["asymmetric"] < f["skip"] < f["connected"] and f["skip"] < f["two_stream"]
    s1, s6 = (fusion_flops_for(base.replace(stride=s), n_text=32) for s in (1, 6))
    assert s6 < s1
