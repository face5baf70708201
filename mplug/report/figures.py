"""Figures 1, 3, 4 from the measured fusion benchmark (`results/<run>/bench/fusion.json`).

Shape read (missing fields are tolerated; a row without `time_s` is skipped):
    {"hardware": str | provenance.hardware() dict, "n_samples": int (forward passes timed),
     "default_stride": int (stride of the 'skip' bar in Figures 1 and 4; default 3),
     "rows": [{"network": "skip" | "connected" | "two_stream" | "asymmetric",
               "stride": int | null, "schedule": "official" | "paper" | null,
               "time_s": float, "flops": float | null,
               "ratio_time": float | null, "ratio_flops": float | null,
               "figure": [1, 3, 4] (optional: which figures the row belongs to),
               "vqa": float | null, "nlvr2": float | null   (accuracy, when an ablation was trained)}]}
Without `figure`, Figure 3 takes the `skip` rows by stride and Figures 1/4 one row per network.
"""
from __future__ import annotations

import base64
import io
from typing import Any

LABELS = {"connected": "connected-attention", "two_stream": "co-attention",
          "asymmetric": "asymmetric co-attention", "skip": "skip-connected (mPLUG)"}
FIG_NETWORKS = {1: ("connected", "two_stream", "skip"), 4: ("connected", "two_stream", "asymmetric", "skip")}
PAPER_CLAIMS = {
    1: "Paper (Fig. 1, §1): the skip-connected network is at least 4x faster than the other fusion networks.",
    3: "Paper (Fig. 3, §5.3.1): running time falls about 5x from S=1 to S=6; S=6 is nearly 30% faster "
       "than S=3 (time = forward of 100 samples).",
    4: "Paper (Fig. 4, §5.3.2): skip-connected is 4x faster than co-attention and connected-attention; "
       "asymmetric co-attention runs slightly faster than skip-connected.",
}


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def figure_rows(data: dict, fig: int) -> list[dict]:
    """The rows of `data['rows']` that figure `fig` plots, in plotting order."""
    rows = [r for r in data.get("rows", []) if isinstance(r, dict) and _num(r.get("time_s"))]
    tagged = [r for r in rows if isinstance(r.get("figure"), list)]
    if tagged:
        rows = [r for r in tagged if fig in r["figure"]]
        return sorted(rows, key=lambda r: (r.get("stride") or 0)) if fig == 3 else rows
    if fig == 3:
        return sorted([r for r in rows if r.get("network") == "skip" and _num(r.get("stride"))],
                      key=lambda r: r["stride"])
    default = data.get("default_stride", 3)
    out = []
    for net in FIG_NETWORKS[fig]:
        cands = [r for r in rows if r.get("network") == net]
        if net == "skip":
            cands = [r for r in cands if r.get("stride") == default] or cands
        if cands:
            out.append(cands[0])
    return out


def _label(r: dict, fig: int) -> str:
    if fig == 3:
        return f"S={r.get('stride')}"
    return LABELS.get(r.get("network"), str(r.get("network")))


def plot(data: dict, fig: int, hardware: str) -> tuple[bytes, list[dict]] | None:
    """PNG bytes and the plotted rows (with speed-ups) for figure `fig`, or None without data."""
    rows = figure_rows(data, fig)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [_label(r, fig) for r in rows]
    times = [float(r["time_s"]) for r in rows]
    ref = max(times)
    fig_, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    ax.bar(labels, times, color=["#c0504d" if r.get("network") != "skip" else "#4f81bd" for r in rows]
           if fig != 3 else "#4f81bd")
    ax.set_ylabel(f"forward time of {data.get('n_samples', '?')} samples (s)")
    accs = [(k, [r.get(k) for r in rows]) for k in ("vqa", "nlvr2") if any(_num(r.get(k)) for r in rows)]
    if accs:
        ax2 = ax.twinx()
        for (k, vals), mk in zip(accs, ("o-", "s--")):
            ax2.plot(labels, [v if _num(v) else float("nan") for v in vals], mk, color="black", label=k.upper())
        ax2.set_ylabel("accuracy (%)")
        ax2.legend(loc="upper right", fontsize=8)
    title = {1: "Figure 1: fusion networks", 3: "Figure 3: stride S of the skip-connected network",
             4: "Figure 4: cross-modal fusion variants"}[fig]
    ax.set_title(f"{title}\nmeasured on {hardware}", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    fig_.tight_layout()
    buf = io.BytesIO()
    fig_.savefig(buf, format="png")
    plt.close(fig_)
    table = [{"label": lab, "time_s": t, "speedup_vs_slowest": ref / t if t else None,
              "flops": r.get("flops"), "vqa": r.get("vqa"), "nlvr2": r.get("nlvr2")}
             for lab, t, r in zip(labels, times, rows)]
    return buf.getvalue(), table


def to_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
