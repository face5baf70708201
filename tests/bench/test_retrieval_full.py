"""`mplug bench retrieval --full --quick`: the whole retrieval evaluation at CI shapes."""
import json

import numpy as np

from mplug.cli import main


def test_full_quick_breakdown(tmp_path):
    out = tmp_path / "rf.json"
    assert main(["bench", "retrieval", "--full", "--quick", "--threads", "1", "--device", "cpu",
                 "--images", "8", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    parts = ("image_encode_s", "text_encode_s", "itc_all_pairs_s", "itm_i2t_s", "itm_t2i_s", "select_s", "recall_s")
    assert all(row[p] >= 0 for p in parts) and row["itm_i2t_s"] > 0 and row["itm_t2i_s"] > 0
    assert sum(row[p] for p in parts) <= row["total_s"] * 1.01
    assert row["texts"] == 40 and row["itc_pairs"] == 8 * 40
    assert row["itm_i2t_pairs"] == 8 * 8 and row["itm_t2i_pairs"] == 40 * 8
    assert 0 <= row["recalls"]["r_mean"] <= 100
    assert data["settings"]["image_res"] == 32 and data["bench"] == "retrieval_full"


def test_full_bf16_is_compared_with_fp32(tmp_path):
    from mplug.bench.retrieval_full import FullRetrievalOptions, _changes, run_full_retrieval

    data = run_full_retrieval(FullRetrievalOptions.quick(images=4, k=4, dtype="bf16", threads=1, device="cpu"))
    low, ref = data["rows"]
    assert (low["dtype"], ref["dtype"]) == ("bf16", "fp32")
    cmp = low["vs_fp32"]
    assert set(cmp["recall_diff_points"]) == set(ref["recalls"]) and cmp["tolerance"] == 1e-2
    assert 0 <= cmp["i2t_same_candidates"] <= 1 and np.isfinite(cmp["t2i_max_abs_diff"])
    # the comparison itself: identical evaluations change nothing
    same = {"i2t": np.eye(3), "t2i": np.eye(3), "sims": np.eye(3), "recalls": {"r_mean": 5.0}}
    c = _changes(same, same, 2, 1e-2)
    assert c["within_tolerance"] and c["i2t_same_top1"] == 1.0 and c["recall_diff_points"]["r_mean"] == 0
