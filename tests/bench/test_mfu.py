"""The peak table and the measured matmul peak behind `mplug bench train`'s MFU."""
import pytest
import torch

from mplug.bench.mfu import PEAK_TFLOPS, datasheet_peak, gpu_key, matmul_precision, measured_matmul_peak


@pytest.mark.parametrize("name,key", [
    ("NVIDIA H200", "H200 SXM"), ("NVIDIA H200 NVL", "H200 NVL"), ("NVIDIA H100 80GB HBM3", "H100 SXM"),
    ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H100 NVL", "H100 NVL"), ("NVIDIA A100-SXM4-80GB", "A100"),
    ("NVIDIA A100 80GB PCIe", "A100"), ("Tesla T4", None)])
def test_gpu_names(name, key):
    assert gpu_key(name) == key


def test_table_is_dense():
    """Dense tensor-core figures: BF16 is twice TF32 on these parts, and A100 BF16 is 312, not 624."""
    for key, peaks in PEAK_TFLOPS.items():
        assert peaks["bf16"] == pytest.approx(2 * peaks["tf32"], rel=0.01), key
    assert PEAK_TFLOPS["A100"]["bf16"] == 312.0 and PEAK_TFLOPS["H100 SXM"]["bf16"] == 989.5


def test_cpu_has_no_datasheet_peak_but_a_measured_one():
    cpu = torch.device("cpu")
    assert datasheet_peak(cpu, "fp32")[0] is None and matmul_precision("fp32", cpu) == "fp32"
    m = measured_matmul_peak(cpu, "fp32", n=128, repeats=1)
    assert m["flops_per_s"] > 0 and m["n"] == 128 and m["threads"] == torch.get_num_threads()
