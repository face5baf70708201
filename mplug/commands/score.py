"""`mplug score {vqa,caption,grounding}`: score a predictions file; prints one JSON object."""
from __future__ import annotations

import argparse
import json


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="{vqa,caption,grounding}")
    vqa = sub.add_parser("vqa", help="official VQA v2 accuracy (percent)",
                         description="Predictions [{\"question_id\", \"answer\"}] against the VQA v2 "
                         "question and annotation files. Prints {\"overall\", \"perAnswerType\"} "
                         "in percent, rounded to 2 decimals as the official evaluator.")
    vqa.add_argument("--pred", required=True, help="predictions JSON")
    vqa.add_argument("--questions", required=True, help="VQA v2 questions JSON")
    vqa.add_argument("--annotations", required=True, help="VQA v2 annotations JSON")
    _ci_args(vqa)
    vqa.set_defaults(func=_vqa)
    cap = sub.add_parser("caption", help="BLEU/METEOR/ROUGE_L/CIDEr/SPICE (x100)",
                         description="Predictions [{\"image_id\", \"caption\"}] against COCO-format "
                         "references. Metrics after PTB tokenisation, x100 as the paper prints "
                         "them. SPICE is null with a reason under \"unavailable\" when its Stanford "
                         "CoreNLP models are absent. Images with a NoCaps \"domain\" add "
                         "per-domain scores under \"nocaps\".")
    cap.add_argument("--pred", required=True, help="predictions JSON")
    cap.add_argument("--refs", required=True, help="COCO caption annotation JSON")
    _ci_args(cap)
    cap.set_defaults(func=_caption)
    grd = sub.add_parser("grounding", help="Acc@0.5 (percent) of [x1,y1,x2,y2] boxes",
                         description="Boxes [x1, y1, x2, y2] keyed by expression id (see "
                         "mplug/eval/score.py for the accepted shapes). Predicted boxes are "
                         "clamped to the image when the references give width/height.")
    grd.add_argument("--pred", required=True, help="predicted boxes JSON")
    grd.add_argument("--refs", required=True, help="reference boxes JSON")
    _ci_args(grd)
    grd.set_defaults(func=_grounding)


def _ci_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ci-resamples", type=int, default=1000, help="bootstrap resamples of the 95%% "
                   "intervals printed under \"ci95\" (default 1000; 0: none)")
    p.add_argument("--ci-seed", type=int, default=0, help="bootstrap seed (default 0)")


def _ci(args: argparse.Namespace) -> dict:
    return {"resamples": args.ci_resamples, "seed": args.ci_seed}


def _print(obj: dict) -> int:
    print(json.dumps(obj, sort_keys=False))
    return 0


def _vqa(args: argparse.Namespace) -> int:
    from mplug.eval.score import score_vqa_files

    return _print(score_vqa_files(args.pred, args.questions, args.annotations, **_ci(args)))


def _caption(args: argparse.Namespace) -> int:
    from mplug.eval.score import score_caption_files

    return _print(score_caption_files(args.pred, args.refs, **_ci(args)))


def _grounding(args: argparse.Namespace) -> int:
    from mplug.eval.score import score_grounding_files

    return _print(score_grounding_files(args.pred, args.refs, **_ci(args)))
