"""`mplug bench {fusion,train,generate,retrieval,video,loader} [--quick] [options] --json PATH`.

Each prints its table (with the hardware it ran on) and writes PATH atomically. `--quick` gives
CI shapes (under 2 minutes each on a CPU); every shape option overrides the defaults of either
mode. JSON shapes: mplug/report/README.md (bench/*.json).
"""
from __future__ import annotations

import argparse
from typing import Any

from mplug.errors import ConfigError


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from None


def _batch(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: an integer or 'auto'") from None


def _strs(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="small CI shapes (CPU, < 2 min)")
    p.add_argument("--json", required=True, metavar="PATH", help="write the result JSON here")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda[:N]")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (the fastest is kept)")


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)

    p = sub.add_parser("fusion", help="Figures 1, 3, 4: forward time of each fusion network")
    _common(p)
    p.add_argument("--samples", type=int, help="forward samples timed (default 100; quick 8)")
    p.add_argument("--batch", type=int, help="batch size (default 10; quick 8)")
    p.add_argument("--width", type=int, help="hidden width (default 768; quick 256)")
    p.add_argument("--heads", type=int, help="attention heads (default width/64)")
    p.add_argument("--layers", type=int, help="fusion layers (default 6)")
    p.add_argument("--n-visual", type=int, help="visual tokens (default 577; quick 197)")
    p.add_argument("--n-text", type=int, help="text tokens (default 35)")
    p.add_argument("--strides", type=_ints, help="skip strides, comma-separated (default 1,2,3,6)")
    p.add_argument("--schedules", type=_strs, help="official,paper (default both)")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help="default fp32")
    p.add_argument("--attn-impl", choices=("sdpa", "eager"), help="default sdpa")
    p.set_defaults(func=_fusion)

    p = sub.add_parser("train", help="Table 6: samples/s, peak memory, FLOPs per sample and MFU, cumulative settings")
    _common(p)
    p.add_argument("--model", help="model config (default mplug_base; quick mplug_smoke)")
    p.add_argument("--batch", type=_batch, help="micro batch per device, or 'auto': per setting "
                   "the largest that fits (default 64; quick 4)")
    p.add_argument("--headroom", type=float, help="--batch auto: fraction of device memory left "
                   "free (default 0.1)")
    p.add_argument("--max-batch", type=int, help="--batch auto: cap (default 4096 GPU, 16 CPU)")
    p.add_argument("--image-res", type=int, help="image resolution (default 256; quick: model's)")
    p.add_argument("--text-len", type=int, help="text tokens (default 30; quick 16)")
    p.add_argument("--steps", type=int, help="timed optimizer steps (default 10; quick 2)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 2; quick 1)")
    p.add_argument("--settings", type=_strs, help="subset of baseline,+bf16,+grad_ckpt,+zero")
    p.add_argument("--queue-size", type=int, help="ITC queue size (default: the model's)")
    p.add_argument("--no-distill", dest="distill", action="store_false", default=None,
                   help="no momentum distillation (default: on, as official pre-training)")
    p.add_argument("--adamw-impl", choices=("auto", "foreach", "for_loop", "fused"),
                   help="torch AdamW implementation (default auto: torch's choice)")
    p.set_defaults(func=_train)

    p = sub.add_parser("generate", help="beam search: plain recompute vs cached decoding")
    _common(p)
    p.add_argument("--model", help="model config (default mplug_base)")
    p.add_argument("--tasks", type=_strs, help="caption,vqa (default both)")
    p.add_argument("--batch", type=int, help="images (default 4)")
    p.add_argument("--image-res", type=int, help="default: the model's (384; quick 192)")
    p.add_argument("--width", type=int, help="text width (default: model's; quick 256)")
    p.add_argument("--vision-width", type=int, help="ViT width (default: model's; quick 256)")
    p.add_argument("--vision-layers", type=int, help="ViT layers (default: model's; quick 2)")
    p.add_argument("--decoder-layers", type=int, help="decoder layers (default: model's, 12)")
    p.add_argument("--beam-size", type=int, help="default 5")
    p.add_argument("--caption-min", type=int, help="default 8")
    p.add_argument("--caption-max", type=int, help="default 25")
    p.add_argument("--vqa-max", type=int, help="default 10")
    p.add_argument("--question-len", type=int, help="VQA question tokens (default 12)")
    p.add_argument("--no-breakdown", dest="breakdown", action="store_false", default=None,
                   help="time end to end only (skip the encoding-alone and decode-only timings)")
    p.add_argument("--caches", type=_strs, help="also time decode-only with these cached modes: "
                   "static (fixed-shape KV cache), graph (+ CUDA graphs via torch.compile)")
    p.add_argument("--profile", action="store_true", default=None,
                   help="print torch.profiler's top ops of one cached generate call per task")
    p.set_defaults(func=_generate)

    _register_retrieval(sub)

    p = sub.add_parser("video", help="video decoding: frames decoded per second (PyAV, seeking)")
    _common(p)
    p.add_argument("--width", type=int, help="frame width (default 320; quick 160)")
    p.add_argument("--height", type=int, help="frame height (default 240; quick 120)")
    p.add_argument("--frames", type=int, help="video length in frames (default 300; quick 90)")
    p.add_argument("--num-frames", type=int, help="frames sampled per video (default 8)")
    p.add_argument("--videos", type=int, help="decodes per timed repeat (default 4; quick 2)")
    p.set_defaults(func=_video)

    _register_loader(sub)


def _register_loader(sub) -> None:
    p = sub.add_parser("loader", help="the training data path alone: samples/s per DataLoader "
                       "worker count, for one job on its data (vs the train bench's step)")
    _common(p)
    p.add_argument("--config", help="run config (default config/config.yaml)")
    p.add_argument("--job", help="a pretrain or finetune job of the config (default pretrain_14m)")
    p.add_argument("--model", help="model key (default: the first enabled model running the job)")
    p.add_argument("--data", help="the run's data folder (default data/<run>/)")
    p.add_argument("--workers", type=_ints, help="DataLoader worker counts (default 0,2,4,8; quick 0,2)")
    p.add_argument("--batch", type=int, help="micro batch (default: the job's batch_size)")
    p.add_argument("--batches", type=int, help="batches timed per row after the first (default 20; quick 4)")
    p.add_argument("--train-json", help="a `mplug bench train` JSON of this hardware: loader / step rate")
    p.set_defaults(func=_loader)


def _register_retrieval(sub) -> None:
    p = sub.add_parser("retrieval", help="ITM rerank: plain vs cached image K/V; --full: the whole "
                       "COCO-5K-shaped evaluation end to end")
    _common(p)
    p.add_argument("--full", action="store_true", help="time the whole evaluation (5,000 images, "
                   "25,000 texts, ITC all pairs, ITM rerank both ways) with a breakdown")
    p.add_argument("--models", type=_strs, help="default mplug_large,mplug_base")
    p.add_argument("--model", help="--full: model config (default mplug_large; quick mplug_tiny)")
    p.add_argument("--k", type=int, help="candidates per image (default 256; quick 64; full quick 8)")
    p.add_argument("--images", type=int, help="images reranked (default 1; --full 5000, quick 24)")
    p.add_argument("--texts-per-image", type=int, help="--full: captions per image (default 5)")
    p.add_argument("--image-res", type=int, help="--full: default the model's (mplug_large 336)")
    p.add_argument("--text-len", type=int, help="--full: text tokens (default 30; quick 12)")
    p.add_argument("--batch", type=int, help="--full: images/texts per encoder call (default 64)")
    p.add_argument("--no-compare", dest="compare", action="store_false", default=None,
                   help="--full with --dtype bf16/fp16: skip the fp32 run it is compared with")
    p.add_argument("--n-visual", type=int, help="visual tokens (default 577; quick 197)")
    p.add_argument("--n-text", type=int, help="text tokens (default 30)")
    p.add_argument("--chunk", type=int, help="pairs per fusion call (default 128; quick 64)")
    p.add_argument("--width", type=int, help="fusion width (default: model's 768; quick 256)")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help="default fp32")
    p.set_defaults(func=_retrieval)


def _options(cls, args: argparse.Namespace, names: list[str]):
    import dataclasses

    fields = {f.name for f in dataclasses.fields(cls)}
    if args.repeats is not None and "repeats" not in fields:
        raise ConfigError(f"--repeats: `mplug bench {args.bench}` times --steps steps once; use --steps")
    kw: dict[str, Any] = {n: getattr(args, n, None) for n in names + ["threads", "repeats"]}
    kw = {k: v for k, v in kw.items() if v is not None and k in fields}
    kw["device"] = args.device
    return cls.quick(**kw) if args.quick else cls(**kw)


def _finish(args: argparse.Namespace, result: dict, summary) -> int:
    from mplug.utils.io import atomic_write_json

    print(summary(result))
    atomic_write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0


def _fusion(args: argparse.Namespace) -> int:
    from mplug.bench.fusion import FusionBenchOptions, run_fusion, summary

    opts = _options(FusionBenchOptions, args, ["samples", "batch", "width", "heads", "layers",
                                               "n_visual", "n_text", "strides", "schedules",
                                               "dtype", "attn_impl"])
    return _finish(args, run_fusion(opts), summary)


def _train(args: argparse.Namespace) -> int:
    from mplug.bench.train import TrainBenchOptions, run_train, summary

    opts = _options(TrainBenchOptions, args, ["model", "batch", "headroom", "max_batch", "image_res",
                                              "text_len", "steps", "warmup", "settings", "queue_size",
                                              "distill", "adamw_impl"])
    return _finish(args, run_train(opts), summary)


def _generate(args: argparse.Namespace) -> int:
    from mplug.bench.generate import GenerateBenchOptions, run_generate, summary

    opts = _options(GenerateBenchOptions, args, [
        "model", "tasks", "batch", "image_res", "width", "vision_width", "vision_layers",
        "decoder_layers", "beam_size", "caption_min", "caption_max", "vqa_max", "question_len",
        "breakdown", "profile", "caches"])
    return _finish(args, run_generate(opts), summary)


def _retrieval(args: argparse.Namespace) -> int:
    if args.full:
        from mplug.bench.retrieval_full import FullRetrievalOptions, run_full_retrieval
        from mplug.bench.retrieval_full import summary as full_summary

        opts = _options(FullRetrievalOptions, args, ["model", "images", "texts_per_image", "image_res",
                                                     "text_len", "k", "batch", "chunk", "dtype", "compare"])
        return _finish(args, run_full_retrieval(opts), full_summary)
    from mplug.bench.retrieval import RetrievalBenchOptions, run_retrieval, summary

    opts = _options(RetrievalBenchOptions, args, ["models", "k", "images", "n_visual", "n_text",
                                                  "chunk", "width", "dtype"])
    return _finish(args, run_retrieval(opts), summary)


def _video(args: argparse.Namespace) -> int:
    from mplug.bench.video import VideoBenchOptions, run_video, summary

    opts = _options(VideoBenchOptions, args, ["width", "height", "frames", "num_frames", "videos"])
    return _finish(args, run_video(opts), summary)


def _loader(args: argparse.Namespace) -> int:
    from mplug.bench.loader import LoaderBenchOptions, run_loader, summary

    opts = _options(LoaderBenchOptions, args, ["config", "job", "model", "data", "workers", "batch",
                                               "batches", "train_json"])
    return _finish(args, run_loader(opts), summary)
