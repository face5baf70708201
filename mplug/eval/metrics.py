"""One import point for every metric (the modules stay small and separately testable).

    vqa_accuracy, question_accuracy, normalize_answer      official VQA v2 accuracy
    score_captions, score_nocaps, ptb_tokenize, simple_tokenize, spice_status, CiderReward
    recall_at_k, two_stage_scores                          retrieval (ALBEF/mPLUG itm_eval)
    box_iou, clamp_boxes, cxcywh_to_xyxy, grounding_accuracy
    accuracy, accuracy_by_id                               NLVR2, SNLI-VE, video QA
"""
from mplug.eval.accuracy import accuracy, accuracy_by_id
from mplug.eval.caption_eval import (CAPTION_METRICS, NOCAPS_DOMAINS, ptb_tokenize,
                                     score_captions, score_nocaps, simple_tokenize, spice_status)
from mplug.eval.grounding_eval import box_iou, clamp_boxes, cxcywh_to_xyxy, grounding_accuracy
from mplug.eval.retrieval_eval import NON_CANDIDATE, TOPK, recall_at_k, two_stage_scores
from mplug.eval.vqa_eval import normalize_answer, question_accuracy, vqa_accuracy


def __getattr__(name: str):
    if name == "CiderReward":  # numpy-heavy; imported on demand
        from mplug.eval.cider_reward import CiderReward

        return CiderReward
    raise AttributeError(name)


__all__ = ["accuracy", "accuracy_by_id", "CAPTION_METRICS", "NOCAPS_DOMAINS", "ptb_tokenize",
           "score_captions", "score_nocaps", "simple_tokenize", "spice_status", "box_iou",
           "clamp_boxes", "cxcywh_to_xyxy", "grounding_accuracy", "NON_CANDIDATE", "TOPK",
           "recall_at_k", "two_stage_scores", "normalize_answer", "question_accuracy",
           "vqa_accuracy", "CiderReward"]
