"""`mplug bench fusion`: forward time of N samples through each fusion network (Figures 1, 3, 4).

Networks (all with the same width, layer count and inputs, random init, eval mode, no grad):
connected-attention, two-stream co-attention, asymmetric co-attention, and the skip-connected
network for every stride S under both schedules ('official' = released code, 'paper' =
Algorithm 1; see mplug/models/fusion.py). Each row carries the analytic FLOPs of that network
(mplug/models/flops.py) and both ratios against ONE reference: the skip-connected network with
the paper's default stride S=3 under the official schedule (mPLUG-base, the network of the
paper's Figures 1 and 4). Ratios > 1 mean slower / more FLOPs than the reference.

Timing: every network is run once per round, `repeats` rounds (interleaved, so load from other
jobs hits all networks alike); `time_s` is the fastest round, `median_s` the median.

Paper shapes by default: width 768, 6 fusion layers, 577 visual tokens (ViT-B/16 at 384 px),
35 text tokens (the paper's 30-40), 100 samples.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from mplug.bench.common import envelope, format_table, measure_interleaved, parse_dtype, setup
from mplug.errors import ConfigError

PAPER_CLAIMS = {
    "connected_vs_skip": ("connected-attention / skip-connected (S=3) time", ">= 4 (Figs 1, 4)", 4.0),
    "two_stream_vs_skip": ("co-attention / skip-connected (S=3) time", ">= 4 (Figs 1, 4)", 4.0),
    "s1_vs_s6": ("skip S=1 / skip S=6 time", "~5 (Fig 3)", 5.0),
    "s6_speedup_vs_s3": ("1 - time(S=6)/time(S=3)", "~0.30 (Fig 3)", 0.30),
}
AGREEMENT = 0.8  # measured ratio should reach at least 80% of the FLOP ratio


@dataclass
class FusionBenchOptions:
    samples: int = 100
    batch: int = 10
    width: int = 768
    heads: int | None = None  # default width // 64
    layers: int = 6
    n_visual: int = 577
    n_text: int = 35
    strides: tuple[int, ...] = (1, 2, 3, 6)
    schedules: tuple[str, ...] = ("official", "paper")
    ref_stride: int = 3
    repeats: int = 3
    warmup: int = 1
    threads: int | None = None
    device: str = "auto"
    dtype: str = "fp32"
    attn_impl: str = "sdpa"

    @classmethod
    def quick(cls, **kw: Any) -> "FusionBenchOptions":
        """CI shapes: width 256, 197 visual tokens (ViT-B/16 at 224 px), 16 samples."""
        base = dict(samples=8, batch=8, width=256, n_visual=197, repeats=5)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)

    def validate(self) -> "FusionBenchOptions":
        for key in ("samples", "batch", "width", "layers", "n_visual", "n_text", "repeats"):
            if getattr(self, key) < 1:
                raise ConfigError(f"bench fusion --{key.replace('_', '-')}={getattr(self, key)}: must be >= 1")
        heads = self.heads or max(1, self.width // 64)
        if self.width % heads:
            raise ConfigError(f"bench fusion: width {self.width} is not divisible by {heads} heads (--heads)")
        if self.ref_stride not in self.strides:
            raise ConfigError(f"bench fusion: the reference stride {self.ref_stride} must be in --strides")
        if "official" not in self.schedules:
            raise ConfigError("bench fusion: --schedules must include 'official' (the reference)")
        return self


def networks(opts: FusionBenchOptions) -> list[dict[str, Any]]:
    """The (network, stride, schedule, figure) rows to measure, in report order."""
    rows = [{"network": n, "stride": None, "schedule": None, "figure": f}
            for n, f in (("connected", [1, 4]), ("two_stream", [1, 4]), ("asymmetric", [4]))]
    for sched in opts.schedules:
        for s in opts.strides:
            fig = []
            if sched == "official":
                fig = [3] + ([1, 4] if s == opts.ref_stride else [])
            rows.append({"network": "skip", "stride": s, "schedule": sched, "figure": fig})
    return rows


def fusion_config(opts: FusionBenchOptions, network: str, stride: int | None, schedule: str | None):
    from mplug.models.registry import get_config

    heads = opts.heads or max(1, opts.width // 64)
    return get_config("mplug_base").replace(
        fusion_type=network, stride=stride or 1, schedule=schedule or "official",
        fusion_layers=opts.layers, attn_impl=opts.attn_impl, **{
            "text.hidden": opts.width, "text.heads": heads, "text.intermediate": 4 * opts.width,
            "text.attention_dropout": 0.0, "text.hidden_dropout": 0.0})


def run_fusion(opts: FusionBenchOptions, progress: bool = True) -> dict[str, Any]:
    """Measure every network; return the bench/fusion.json object (see mplug/report/figures.py)."""
    import torch
    from tqdm import tqdm

    from mplug.models.flops import fusion_flops_for
    from mplug.models.fusion import FusionEncoder, fusion_schedule

    opts.validate()
    device = setup(opts.threads, opts.device)
    dtype = parse_dtype(opts.dtype)
    n_batches = math.ceil(opts.samples / opts.batch)
    sizes = [min(opts.batch, opts.samples - i * opts.batch) for i in range(n_batches)]
    gen = torch.Generator().manual_seed(0)
    # the same inputs for every network: (b, N, D) visual, (b, L, D) text, all tokens real
    inputs = [(torch.randn(b, opts.n_visual, opts.width, generator=gen).to(device, dtype),
               torch.randn(b, opts.n_text, opts.width, generator=gen).to(device, dtype)) for b in sizes]
    specs, fns, rows = networks(opts), {}, []
    for i, spec in enumerate(specs):
        cfg = fusion_config(opts, spec["network"], spec["stride"], spec["schedule"])
        model = FusionEncoder(cfg).to(device, dtype).eval()

        @torch.no_grad()
        def forward_all(model=model):
            for v, t in inputs:
                model(v, None, t, None)

        fns[str(i)] = forward_all
        flops = fusion_flops_for(cfg, n_visual=opts.n_visual, n_text=opts.n_text, batch=opts.samples)
        rows.append({**spec, "flops": float(flops),
                     "layers": "".join("C" if k == "connected" else "T" if k == "two_stream" else "A"
                                       for k in fusion_schedule(cfg))})
    # every network once per round, rounds repeated: machine load hits all networks alike
    timings = measure_interleaved(_progress(fns, progress, tqdm), device, opts.warmup, opts.repeats)
    for i, row in enumerate(rows):
        row.update(timings[str(i)].to_dict())
    add_ratios(rows, opts.ref_stride)
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()}
    settings["heads"] = opts.heads or max(1, opts.width // 64)
    return envelope("fusion", rows, settings, n_samples=opts.samples,
                    default_stride=opts.ref_stride, reference=f"skip S={opts.ref_stride} (official)",
                    claims=claims(rows, opts.ref_stride))


def _progress(fns: dict, progress: bool, tqdm) -> dict:
    """Wrap each callable so a tqdm bar advances once per timed forward pass."""
    if not progress:
        return fns
    bar = tqdm(desc="fusion forward passes", unit="pass")

    def wrap(fn):
        def run():
            fn()
            bar.update(1)
        return run
    return {k: wrap(f) for k, f in fns.items()}


def _ref(rows: list[dict], stride: int, schedule: str = "official") -> dict | None:
    return next((r for r in rows if r["network"] == "skip" and r["stride"] == stride
                 and r["schedule"] == schedule), None)


def add_ratios(rows: list[dict], ref_stride: int) -> None:
    """ratio_time / ratio_flops against the reference row, and whether the measured ratio reaches
    80% of the FLOP ratio (`agrees`; speed-ups are judged on the ratio >= 1 side)."""
    ref = _ref(rows, ref_stride)
    for r in rows:
        r["ratio_time"] = r["time_s"] / ref["time_s"]
        r["ratio_flops"] = r["flops"] / ref["flops"]
        m, f = r["ratio_time"], r["ratio_flops"]
        # compare the size of the effect whichever side of 1 it lies on
        m_eff, f_eff = (m, f) if f >= 1 else (1 / m, 1 / f)
        r["measured_over_flops"] = m_eff / f_eff
        r["agrees"] = bool(m_eff >= AGREEMENT * f_eff) if abs(f - 1) > 1e-9 else None


def claims(rows: list[dict], ref_stride: int) -> list[dict[str, Any]]:
    """The paper's efficiency claims: measured value, FLOP-model value, the paper's figure."""
    def row(net, stride=None):
        if net == "skip":
            return _ref(rows, stride)
        return next((r for r in rows if r["network"] == net), None)

    ref, s1, s6 = row("skip", ref_stride), row("skip", 1), row("skip", 6)
    out = []
    for key, (what, paper, _) in PAPER_CLAIMS.items():
        if key == "connected_vs_skip" or key == "two_stream_vs_skip":
            a, b = row(key.split("_vs_")[0]), ref
        elif key == "s1_vs_s6":
            a, b = s1, s6
        else:
            a, b = s6, row("skip", 3)
        if a is None or b is None:
            continue
        m, f = a["time_s"] / b["time_s"], a["flops"] / b["flops"]
        if key == "s6_speedup_vs_s3":
            m, f = 1 - m, 1 - f
        out.append({"claim": what, "paper": paper, "measured": m, "flops_model": f})
    return out


COLUMNS = [("network", "network", ""), ("stride", "S", ""), ("schedule", "schedule", ""),
           ("layers", "layers", ""), ("time_s", "time (s)", ".4f"), ("flops", "FLOPs", ".3e"),
           ("ratio_time", "time ratio", ".2f"), ("ratio_flops", "FLOP ratio", ".2f"),
           ("measured_over_flops", "meas/FLOP", ".2f"), ("agrees", ">=80%", "")]


def summary(result: dict[str, Any]) -> str:
    """The printed table plus the claims."""
    s = result["settings"]
    lines = [f"fusion forward time of {result['n_samples']} samples (batch {s['batch']}, width "
             f"{s['width']}, {s['layers']} layers, {s['n_visual']} visual + {s['n_text']} text tokens, "
             f"{s['dtype']}, {s['attn_impl']}) on {result['hardware_name']}",
             f"ratios against {result['reference']}; layers: A asymmetric, C connected, T two-stream",
             format_table(result["rows"], COLUMNS), "", "paper claims:"]
    for c in result["claims"]:
        lines.append(f"  {c['claim']}: measured {c['measured']:.2f}, FLOP model "
                     f"{c['flops_model']:.2f}, paper {c['paper']}")
    return "\n".join(lines)
