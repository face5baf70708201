"""Recall@K on a hand-built score matrix, the two-stage protocol, IoU/Acc@0.5, accuracy."""
import numpy as np
import pytest

from mplug.eval.accuracy import accuracy, accuracy_by_id
from mplug.eval.grounding_eval import box_iou, clamp_boxes, cxcywh_to_xyxy, grounding_accuracy
from mplug.eval.retrieval_eval import recall_at_k, two_stage_scores

# 3 images, 2 captions each: captions 2i and 2i+1 belong to image i
IMG2TXT = [[0, 1], [2, 3], [4, 5]]
TXT2IMG = [0, 0, 1, 1, 2, 2]


def _hand_matrix():
    s = np.array([
        [0.9, 0.1, 0.2, 0.3, 0.4, 0.5],   # image 0: caption 0 ranked first -> TR rank 0
        [0.9, 0.8, 0.1, 0.7, 0.2, 0.3],   # image 1: best own caption (3) at rank 2
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.1],   # image 2: best own caption (4) at rank 4
    ])
    return s


def test_recall_hand_computed():
    s = _hand_matrix()
    r = recall_at_k(s, s.T, TXT2IMG, IMG2TXT)
    # TR ranks 0, 2, 4 -> R@1 = 1/3, R@5 = R@10 = 3/3
    assert r["txt_r1"] == pytest.approx(100 / 3)
    assert r["txt_r5"] == r["txt_r10"] == 100.0
    # IR: per caption, rank of its image in the column. col0 [.9,.9,.9] ties; see below
    cols = s.T
    expected = []
    for t, row in enumerate(cols):
        order = np.argsort(row)[::-1]
        expected.append(int(np.where(order == TXT2IMG[t])[0][0]))
    assert r["img_r1"] == pytest.approx(100 * np.mean(np.array(expected) < 1))
    # caption 1 (image 0): scores [.1,.8,.8] -> image 0 last (rank 2); caption 5: [.5,.3,.1] rank 2
    assert expected[1] == 2 and expected[5] == 2 and expected[3] == 0
    assert r["r_mean"] == pytest.approx((r["txt_r_mean"] + r["img_r_mean"]) / 2)


def test_recall_perfect_and_shape_check():
    s = np.full((3, 6), -1.0)
    for i, ts in enumerate(IMG2TXT):
        s[i, ts] = 1.0
    r = recall_at_k(s, s.T, TXT2IMG, IMG2TXT)
    assert r["txt_r1"] == r["img_r1"] == 100.0
    with pytest.raises(ValueError, match="scores_t2i"):
        recall_at_k(s, s, TXT2IMG, IMG2TXT)


def test_two_stage_only_topk_reranked():
    sims = _hand_matrix()
    calls = []

    def itm(img_idx, txt_idx):
        calls.append((img_idx.copy(), txt_idx.copy()))
        return np.where(np.asarray(TXT2IMG)[txt_idx] == img_idx, 5.0, -5.0)  # oracle ITM

    i2t, t2i = two_stage_scores(sims, k=2, itm_scores=itm)
    assert all(len(c[0]) == 2 for c in calls) and len(calls) == 3 + 6
    assert (i2t == -100.0).sum(axis=1).tolist() == [4, 4, 4]   # non-candidates
    assert i2t[0, 0] == 5.0 and i2t[0, 5] == -5.0             # image 0 top-2 by ITC: 0 and 5
    assert t2i.shape == (6, 3)
    r = recall_at_k(i2t, t2i, TXT2IMG, IMG2TXT)
    assert r["txt_r1"] == pytest.approx(100 / 3)  # only image 0 has an own caption in its top-2
    i2t_v, _ = two_stage_scores(sims, k=2, itm_scores=itm, add_itc=True)  # video: ITM + ITC
    assert i2t_v[0, 0] == pytest.approx(5.9)


def test_iou_touching_disjoint_contained():
    a = np.array([[0, 0, 2, 2]] * 4, dtype=float)
    b = np.array([[2, 0, 4, 2],      # touching edge: 0
                  [5, 5, 6, 6],      # disjoint: 0
                  [0, 0, 2, 2],      # identical: 1
                  [1, 0, 3, 2]])     # half overlap: 2 / (4 + 4 - 2) = 1/3
    np.testing.assert_allclose(box_iou(a, b), [0, 0, 1, 1 / 3], atol=1e-12)


def test_grounding_accuracy_clamps_predictions():
    gt = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    pred = np.array([[-0.5, -0.5, 0.5, 0.5],   # clamped to gt exactly -> IoU 1 (0.25 unclamped)
                     [0.0, 0.0, 0.5, 0.5]])    # disjoint
    out = grounding_accuracy(pred, gt)
    assert out["acc@0.5"] == 50.0 and out["n"] == 2
    assert box_iou(pred[:1], gt[:1])[0] == pytest.approx(0.25)
    px = grounding_accuracy([[90, 90, 120, 130]], [[90, 90, 100, 100]], width=100, height=100)
    assert px["acc@0.5"] == 100.0
    np.testing.assert_allclose(cxcywh_to_xyxy([[0.5, 0.5, 0.2, 0.4]]), [[0.4, 0.3, 0.6, 0.7]])
    np.testing.assert_allclose(clamp_boxes([[-1, 2, 3, 4]], 2, 3), [[0, 2, 2, 3]])


def test_iou_threshold_is_inclusive():
    # IoU exactly 0.5: [0,0,2,1] vs [0,0,1,1] -> 1 / 2
    out = grounding_accuracy([[0, 0, 2, 1]], [[0, 0, 1, 1]], width=10, height=10)
    assert out["acc@0.5"] == 100.0


def test_accuracy():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 75.0
    assert accuracy(["cat", "dog"], ["cat", "cats"]) == 50.0
    with pytest.raises(KeyError, match="id 'b'"):
        accuracy_by_id({"a": 1}, {"a": 1, "b": 0})
