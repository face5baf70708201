"""Each `mplug bench` command runs with tiny shapes and writes JSON of the shape the report reads
(mplug/report/README.md, figures.py, tables.py). Timings are printed, never asserted."""
import json
import math

from mplug.cli import main


def _run(tmp_path, argv):
    out = tmp_path / f"{argv[0]}.json"
    assert main(["bench", *argv, "--json", str(out), "--threads", "1", "--device", "cpu"]) == 0
    data = json.loads(out.read_text())
    assert isinstance(data["hardware"], dict) and data["hardware"]["accelerator"] == "cpu"
    assert isinstance(data["rows"], list) and data["rows"]
    return data


def _pos(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_bench_fusion_json_and_figures(tmp_path, capsys):
    data = _run(tmp_path, ["fusion", "--quick", "--samples", "2", "--batch", "2", "--width", "64",
                           "--n-visual", "20", "--n-text", "6", "--repeats", "1"])
    rows = data["rows"]
    nets = [(r["network"], r["stride"], r["schedule"]) for r in rows]
    assert nets[:3] == [("connected", None, None), ("two_stream", None, None), ("asymmetric", None, None)]
    assert {(s, sch) for n, s, sch in nets if n == "skip"} == {
        (s, sch) for s in (1, 2, 3, 6) for sch in ("official", "paper")}
    assert data["n_samples"] == 2 and data["default_stride"] == 3
    for r in rows:
        assert _pos(r["time_s"]) and _pos(r["flops"]) and _pos(r["ratio_time"]) and _pos(r["ratio_flops"])
    ref = next(r for r in rows if r["network"] == "skip" and r["stride"] == 3 and r["schedule"] == "official")
    assert ref["ratio_time"] == 1.0 and ref["ratio_flops"] == 1.0
    by = {(r["network"], r["stride"], r["schedule"]): r for r in rows}
    # the FLOP model orders the networks as the paper's figures do
    assert by[("connected", None, None)]["flops"] > ref["flops"] > by[("asymmetric", None, None)]["flops"]
    assert by[("skip", 1, "official")]["layers"] == "ACCCCC" and ref["layers"] == "AAACAA"
    assert by[("skip", 6, "official")]["flops"] == by[("asymmetric", None, None)]["flops"]
    assert len(data["claims"]) == 4
    from mplug.report.figures import figure_rows
    assert [r["network"] for r in figure_rows(data, 1)] == ["connected", "two_stream", "skip"]
    assert [r["stride"] for r in figure_rows(data, 3)] == [1, 2, 3, 6]
    assert len(figure_rows(data, 4)) == 4
    assert "paper claims" in capsys.readouterr().out


def test_bench_retrieval_json(tmp_path):
    data = _run(tmp_path, ["retrieval", "--quick", "--k", "6", "--n-visual", "12", "--n-text", "5",
                           "--chunk", "4", "--width", "64", "--repeats", "1"])
    assert [r["model"] for r in data["rows"]] == ["mplug_large", "mplug_base"]
    large, base = data["rows"]
    assert large["cached_layers"] == 6 and base["cached_layers"] == 3
    for r in data["rows"]:
        assert r["equal_within_1e-5"] is True and r["max_abs_diff"] <= 1e-5
        assert _pos(r["plain_s"]) and _pos(r["cached_s"]) and _pos(r["speedup"])


def test_bench_generate_json(tmp_path, capsys):
    data = _run(tmp_path, ["generate", "--model", "mplug_tiny", "--caption-max", "6",
                           "--vqa-max", "4", "--batch", "2", "--beam-size", "3", "--repeats", "1",
                           "--profile"])
    rows = {r["task"]: r for r in data["rows"]}
    assert set(rows) == {"caption", "vqa"}
    assert rows["caption"]["max_length"] == 6 and rows["vqa"]["max_length"] == 4
    for r in rows.values():
        assert r["identical_sequences"] is True
        assert _pos(r["plain_s"]) and _pos(r["cached_s"]) and _pos(r["speedup"])
        # breakdown: encoding alone and decode-only of both paths, measured in the same run
        for key in ("encode_s", "plain_decode_s", "cached_decode_s", "decode_speedup"):
            assert _pos(r[key]), key
        assert r["decode_speedup"] == r["plain_decode_s"] / r["cached_decode_s"]
    assert set(data["repeats_s"]["caption"]) == {"plain", "cached", "encode", "plain_decode",
                                                 "cached_decode"}
    top = data["profile"]["caption"]
    assert top and all(_pos(op["self_cpu_s"]) and op["calls"] >= 1 for op in top)
    out = capsys.readouterr().out
    assert "dec speedup" in out and "torch.profiler" in out


def test_bench_generate_without_breakdown(tmp_path):
    data = _run(tmp_path, ["generate", "--model", "mplug_tiny", "--tasks", "caption",
                           "--caption-max", "3", "--batch", "1", "--beam-size", "2",
                           "--repeats", "1", "--no-breakdown", "--caches", "static"])
    row = data["rows"][0]
    assert row["identical_sequences"] is True and _pos(row["speedup"])  # static's ids included
    assert "encode_s" not in row and "profile" not in data and _pos(row["static_decode_s"])


def test_bench_train_json_and_table6(tmp_path, capsys):
    data = _run(tmp_path, ["train", "--model", "mplug_tiny", "--batch", "2", "--text-len", "8",
                           "--steps", "1", "--warmup", "0", "--queue-size", "8"])
    assert [r["setting"] for r in data["rows"]] == ["baseline", "+bf16", "+grad_ckpt", "+zero"]
    assert [r["zero_stage"] for r in data["rows"]] == [0, 0, 0, 2]
    assert [r["precision"] for r in data["rows"]] == ["fp32", "bf16", "bf16", "bf16"]
    for r in data["rows"]:
        assert _pos(r["samples_per_s"]) and _pos(r["peak_mem_gb"])
        # FLOPs and MFU: analytic FLOPs per sample x samples/s over the CPU's measured matmul peak
        for key in ("flops_per_sample", "achieved_flops_per_s", "peak_flops_per_s", "measured_peak_flops_per_s"):
            assert _pos(r[key]), key
        assert math.isclose(r["achieved_flops_per_s"], r["flops_per_sample"] * r["samples_per_s"])
        assert 0 < r["mfu"] <= 1 and 0 < r["mfu_vs_measured"] <= 1
        assert r["peak_flops_per_s"] == r["measured_peak_flops_per_s"] and "measured" in r["peak_source"]
    assert len({r["flops_per_sample"] for r in data["rows"]}) == 1  # same model, same step
    assert set(data["flops"]["measured_matmul_peak"]) == {"fp32", "bf16"}
    assert math.isclose(sum(data["flops"]["components_per_sample"].values()), data["rows"][0]["flops_per_sample"])
    assert "RSS" in data["peak_memory"]
    from mplug.report import mapping
    norm = lambda s: "".join(c for c in s.lower() if c.isalnum())  # noqa: E731
    accepted = {norm(a) for aliases in mapping.TABLE6_SETTINGS.values() for a in aliases}
    assert all(norm(r["setting"]) in accepted for r in data["rows"])
    out = capsys.readouterr().out
    assert "GFLOP/sample" in out and "MFU %" in out and "measured fp32 matmul" in out


def test_bad_option_is_a_user_error(tmp_path, capsys):
    out = tmp_path / "x.json"
    assert main(["bench", "fusion", "--quick", "--strides", "1,2", "--json", str(out)]) != 0
    assert "reference stride 3 must be in --strides" in capsys.readouterr().err
    assert not out.exists()


def test_bench_train_amp_bf16_is_an_opt_in_row_outside_table6(tmp_path):
    data = _run(tmp_path, ["train", "--quick", "--settings", "baseline,amp_bf16", "--steps", "1",
                           "--warmup", "0"])
    amp = next(r for r in data["rows"] if r["setting"] == "amp_bf16")
    assert amp["precision"] == "amp_bf16" and amp["paper_samples_per_s"] is None
    assert amp["paper_speedup"] is None and _pos(amp["samples_per_s"]) and _pos(amp["mfu"])
    assert "bf16 matmul" in amp["peak_source"]  # autocast multiplies in bf16: the bf16 peak
