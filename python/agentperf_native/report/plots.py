"""PNG charts of a results directory, for people.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend switch), so it
works headless and does not disturb a caller's own matplotlib state.

- ``capacity_search.png``: the probes in the order they ran, one subplot per tier.
- ``slo_vs_concurrency.png``: P25 output speed and P95 TTFT against concurrency, tier thresholds.
- ``throughput.png``: output throughput against concurrency, each tier's maximum marked.
- ``agents_per_mw.png``: agents per megawatt per tier (only when power was measured).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullLocator
from matplotlib.transforms import blended_transform_factory

from .load import Results, TierResult

PASS = "#2e7d32"
FAIL = "#c62828"
NOT_STEADY = "#9e9e9e"
DATA = "#263238"
PHASE_BG = {"ramp": "#e3f2fd", "bisect": "#fff8e1"}
PHASE_BG_OTHER = "#f3e5f5"
#: Tier colours (no green / red: those mean pass / fail).
TIER_COLORS = ["#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#4e342e", "#5d4037", "#283593"]

RC = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 14,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 110,
}

FILES = {
    "capacity": "capacity_search.png",
    "slo": "slo_vs_concurrency.png",
    "throughput": "throughput.png",
    "power": "agents_per_mw.png",
    "power_timeline": "power_timeline.png",
}


# ----------------------------------------------------------------------------------------------
# helpers

def _num(v: Any) -> float | None:
    """A finite float, or None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _speed_p25(p: dict[str, Any]) -> float | None:
    """The P25 output speed the SLO is judged on (failed requests as violations), else the P25 of
    the successful requests."""
    v = _num(p.get("slo_output_speed_p25_tps"))
    if v is None:
        v = _num((p.get("output_speed_tps") or {}).get("p25"))
    return v


def _ttft_p95(p: dict[str, Any]) -> float | None:
    v = _num(p.get("slo_ttft_p95_s"))
    if v is None:
        v = _num((p.get("ttft_s") or {}).get("p95"))
    return v


def _title(results: Results, what: str) -> str:
    """Two lines: what the chart shows; the model and endpoint (and the run's status when it is
    not complete)."""
    t = f"{what}\n{_ellipsize(results.model, 60)} @ {_ellipsize(results.endpoint, 70)}"
    if results.status != "complete":
        t += f"  ({results.status.replace(' (', ': ').rstrip(')')})"
    return t


def _ellipsize(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "\u2026"


def _tier_caption(t: TierResult) -> str:
    parts = []
    if t.min_output_speed_tps is not None:
        parts.append(f"P25 speed \u2265 {t.min_output_speed_tps:g} tok/s")
    if t.max_ttft_s is not None:
        parts.append(f"P95 TTFT \u2264 {t.max_ttft_s:g} s")
    return ", ".join(parts)


def _int_axis(axis, values: Iterable[float], log: bool) -> None:
    """Integer ticks for a concurrency axis; on a log axis, ticks at the given values (thinned)."""
    vals = sorted({int(v) for v in values if v and v > 0})
    fmt = FuncFormatter(lambda x, _pos: f"{int(round(x)):,}" if x >= 1 else "")
    if log and vals:
        if len(vals) > 10:
            lo, hi = vals[0], vals[-1]
            pw = [2 ** k for k in range(int(math.floor(math.log2(lo))), int(math.ceil(math.log2(hi))) + 1)]
            vals = sorted(set(pw) | {hi})
            if len(vals) > 12:
                vals = vals[:: math.ceil(len(vals) / 10)] + [hi]
        axis.set_major_locator(FixedLocator(vals))
        axis.set_minor_locator(NullLocator())
    else:
        axis.set_major_locator(MaxNLocator(integer=True, nbins=10))
    axis.set_major_formatter(fmt)


def _use_log(values: Iterable[float], ratio: float = 16.0) -> bool:
    vals = [v for v in values if v and v > 0]
    return bool(vals) and max(vals) / min(vals) > ratio


def _spread(positions: list[float], gap: float, lo: float = 0.0, hi: float = 1.0) -> list[float]:
    """Moves sorted-by-value label positions (axes fraction) apart by at least ``gap``, keeping
    them inside [lo, hi]. Returns positions in the input order."""
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    out = [0.0] * len(positions)
    prev = -math.inf
    for i in order:
        y = max(positions[i], prev + gap, lo)
        out[i] = y
        prev = y
    overflow = prev - hi
    if overflow > 0:  # shift everything down, then re-space from the top
        nxt = math.inf
        for i in reversed(order):
            y = min(out[i] - overflow, nxt - gap)
            out[i] = y
            nxt = y
    return out


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png", facecolor="white")
    return path


# ----------------------------------------------------------------------------------------------
# (1) capacity search

def plot_capacity_search(results: Results, path: Path) -> Path:
    """One subplot per tier: probes in run order (x), their concurrency (y), green pass / red fail /
    grey not steady, ramp and bisect phases shaded, dashed line at the tier's maximum."""
    probes = results.probes
    tiers = results.tiers or [TierResult("(no tier)", None, None, 0, None, None, "")]
    xs = [int(p.get("index", i)) for i, p in enumerate(probes)]
    cs = [int(p.get("concurrency", 0)) for p in probes]
    log = _use_log(cs)

    n = len(tiers)
    fig = Figure(figsize=(11, 1.6 + 3.0 * n), layout="constrained")
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    fig.suptitle(_title(results, "Capacity search"))

    # headroom above the highest probe for the value labels and the phase names
    cmax = max(cs + [max((t.max_agents for t in tiers), default=1), 1])
    cmin = max(min(cs + [cmax]), 1)

    for ax, tier in zip(axes, tiers):
        tr = blended_transform_factory(ax.transData, ax.transAxes)
        # phase shading: contiguous runs of the same phase
        start = 0
        for i in range(1, len(probes) + 1):
            if i == len(probes) or probes[i].get("phase") != probes[start].get("phase"):
                phase = str(probes[start].get("phase") or "?")
                x0, x1 = xs[start] - 0.5, xs[i - 1] + 0.5
                ax.axvspan(x0, x1, color=PHASE_BG.get(phase, PHASE_BG_OTHER), zorder=0, lw=0)
                ax.text((x0 + x1) / 2, 0.97, phase, transform=tr, ha="center", va="top",
                        fontsize=10, style="italic", color="#455a64")
                start = i

        ax.plot(xs, cs, color="#b0bec5", lw=1.2, zorder=1)
        for x, c, p in zip(xs, cs, probes):
            if not p.get("steady", False):
                color, mk = NOT_STEADY, "s"
            elif (p.get("tier_pass") or {}).get(tier.name):
                color, mk = PASS, "o"
            else:
                color, mk = FAIL, "X"
            ax.scatter([x], [c], s=90, color=color, marker=mk, edgecolor="white", linewidth=0.8, zorder=3)
            ax.annotate(f"{c:,}", (x, c), textcoords="offset points", xytext=(0, 9), ha="center",
                        fontsize=9, color="#37474f", zorder=4)

        if tier.max_agents > 0:
            ax.axhline(tier.max_agents, color=PASS, ls="--", lw=1.4, zorder=2)
            ax.annotate(f"max {tier.max_agents:,} agents", (0.005, tier.max_agents),
                        xycoords=blended_transform_factory(ax.transAxes, ax.transData),
                        textcoords="offset points", xytext=(2, -4), ha="left", va="top", fontsize=9.5,
                        color=PASS, fontweight="bold",
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85), zorder=5)
            result = f"max {tier.max_agents:,} agents"
        else:
            result = "never passed" if probes else "no probes"
        cap = _tier_caption(tier)
        ax.set_title(f"{_ellipsize(tier.name, 50)}" + (f"  ({cap})" if cap else "") + f": {result}",
                     loc="left", fontsize=11.5)
        ax.set_ylabel("concurrency (agents)")

        if log:
            ax.set_yscale("log", base=2)
            lo = math.log2(cmin) - 0.3
            hi = math.log2(cmax)
            ax.set_ylim(2 ** lo, 2 ** (lo + (hi - lo) / 0.72))
        else:
            ax.set_ylim(0, cmax / 0.75)
        _int_axis(ax.yaxis, cs + [tier.max_agents], log)
        ax.grid(axis="y", color="#eceff1", lw=0.8, zorder=0)

    if xs:
        axes[-1].set_xlim(min(xs) - 0.5, max(xs) + 0.5)
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(len(xs), 20)))
    else:
        axes[-1].text(0.5, 0.5, "no probe has finished", transform=axes[-1].transAxes, ha="center")
    axes[-1].set_xlabel("probe # (order in which probes ran)")

    handles = [
        Line2D([], [], marker="o", ls="", color=PASS, markersize=9, label="pass (steady)"),
        Line2D([], [], marker="X", ls="", color=FAIL, markersize=9, label="fail (steady)"),
        Line2D([], [], marker="s", ls="", color=NOT_STEADY, markersize=9, label="not steady"),
        Line2D([], [], color=PASS, ls="--", lw=1.4, label="tier maximum"),
        Patch(color=PHASE_BG["ramp"], label="ramp phase"),
        Patch(color=PHASE_BG["bisect"], label="bisect phase"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=6, frameon=False)
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------
# (2) SLO metrics against concurrency

def _series(probes: list[dict[str, Any]], value) -> tuple[list[tuple[int, float]], list[tuple[int, float]], int]:
    """(steady points, not-steady points, probes without a value)."""
    steady, other, missing = [], [], 0
    for p in probes:
        v = value(p)
        if v is None:
            missing += 1
            continue
        (steady if p.get("steady") else other).append((int(p.get("concurrency", 0)), v))
    return steady, other, missing


def _line_through(points: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    """One value per concurrency (the last measured), sorted by concurrency."""
    by_c: dict[int, float] = {}
    for c, v in points:
        by_c[c] = v
    cs = sorted(by_c)
    return cs, [by_c[c] for c in cs]


def _threshold_lines(ax, tiers: list[TierResult], attr: str, unit_fmt) -> None:
    """Horizontal dashed lines at each tier's threshold, labelled at the right edge, labels
    moved apart so they never overlap."""
    vals = [(i, getattr(t, attr)) for i, t in enumerate(tiers) if getattr(t, attr) is not None]
    if not vals:
        return
    for i, v in vals:
        ax.axhline(v, color=TIER_COLORS[i % len(TIER_COLORS)], ls="--", lw=1.4, zorder=2)
    # positions in axes fraction (limits are final by now)
    to_axes = ax.transData + ax.transAxes.inverted()
    ys = [to_axes.transform((1, v))[1] for _, v in vals]
    placed = _spread(ys, gap=0.06, lo=0.0, hi=1.0)
    for (i, v), y, y0 in zip(vals, placed, ys):
        color = TIER_COLORS[i % len(TIER_COLORS)]
        # outside the plot area, right of the axes, so a label never hides a data point
        ax.annotate(unit_fmt(v), xy=(1.0, y0), xycoords="axes fraction", xytext=(1.02, y),
                    textcoords="axes fraction", ha="left", va="center", fontsize=10, color=color,
                    annotation_clip=False,
                    arrowprops=dict(arrowstyle="-", color=color, lw=0.8, ls=":") if abs(y - y0) > 0.01 else None)


def _value_panel(ax, results: Results, value, attr: str, title: str, ylabel: str, unit_fmt,
                 better_low: bool) -> int:
    steady, other, missing = _series(results.probes, value)
    all_c = [c for c, _ in steady + other]
    xlog = _use_log(all_c)
    thresholds = [getattr(t, attr) for t in results.tiers if getattr(t, attr) is not None]
    all_v = [v for _, v in steady + other] + thresholds
    ylog = _use_log(all_v, ratio=30.0)

    cs, vs = _line_through(steady)
    if cs:
        ax.plot(cs, vs, color=DATA, lw=1.6, marker="o", markersize=7, zorder=3, label="steady probe")
    if other:
        ax.scatter([c for c, _ in other], [v for _, v in other], s=55, facecolor="white",
                   edgecolor=NOT_STEADY, linewidth=1.6, marker="s", zorder=3, label="not steady")
    if xlog:
        ax.set_xscale("log", base=2)
    _int_axis(ax.xaxis, all_c, xlog)
    if ylog:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    elif all_v:
        ax.set_ylim(0, max(all_v) * 1.12)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}"))
    if all_c:
        if xlog:
            ax.set_xlim(min(all_c) / 1.25, max(all_c) * 1.25)
        else:
            pad = max(0.5, (max(all_c) - min(all_c)) * 0.05)
            ax.set_xlim(max(0, min(all_c) - pad), max(all_c) + pad)
    ax.set_title(title, loc="left")
    ax.set_xlabel("concurrency (agents)")
    ax.set_ylabel(ylabel)
    ax.grid(color="#eceff1", lw=0.8, zorder=0)
    _threshold_lines(ax, results.tiers, attr, unit_fmt)
    if not all_c:
        ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center", color="#78909c")
    return missing


def plot_slo_vs_concurrency(results: Results, path: Path) -> Path:
    """Two panels: P25 output speed and P95 TTFT against concurrency, each tier's threshold a
    labelled dashed line."""
    fig = Figure(figsize=(13, 6.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    fig.suptitle(_title(results, "SLO metrics vs concurrency"))
    m1 = _value_panel(ax1, results, _speed_p25, "min_output_speed_tps",
                      "P25 output speed (higher is better)", "P25 output speed (tok/s)",
                      lambda v: f"\u2265 {v:g} tok/s", better_low=False)
    m2 = _value_panel(ax2, results, _ttft_p95, "max_ttft_s",
                      "P95 time to first token (lower is better)", "P95 TTFT (s)",
                      lambda v: f"\u2264 {v:g} s", better_low=True)

    handles = [Line2D([], [], color=DATA, marker="o", lw=1.6, label="steady probe"),
               Line2D([], [], color=NOT_STEADY, marker="s", ls="", markerfacecolor="white",
                      markeredgewidth=1.6, label="not steady")]
    for i, t in enumerate(results.tiers):
        handles.append(Line2D([], [], color=TIER_COLORS[i % len(TIER_COLORS)], ls="--", lw=1.4,
                              label=f"tier {_ellipsize(t.name, 40)}"))
    note = "Percentiles over the requests started in each probe's steady window; failed requests count as violations."
    if m1 or m2:
        note += f"\nProbes without a value (not shown): speed {m1}, TTFT {m2}."
    ncol = len(handles) if len(handles) <= 4 else math.ceil(len(handles) / 2)
    leg = fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False,
                     title=note, title_fontsize=9.5)
    leg.get_title().set_color("#546e7a")
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------
# (3) throughput

def plot_throughput(results: Results, path: Path) -> Path:
    """Output throughput (tok/s, whole deployment) against concurrency; each tier's maximum a
    vertical dashed line."""
    steady, other, _missing = _series(results.probes, lambda p: _num(p.get("throughput_output_tps")))
    all_c = [c for c, _ in steady + other]
    log = _use_log(all_c)
    fig = Figure(figsize=(11, 5.6), layout="constrained")
    ax = fig.subplots()
    fig.suptitle(_title(results, "Output throughput vs concurrency"))
    cs, vs = _line_through(steady)
    if cs:
        ax.plot(cs, vs, color=DATA, lw=1.8, marker="o", markersize=7, zorder=3)
    if other:
        ax.scatter([c for c, _ in other], [v for _, v in other], s=55, facecolor="white",
                   edgecolor=NOT_STEADY, linewidth=1.6, marker="s", zorder=3)
    if log:
        ax.set_xscale("log", base=2)
    maxima = [(i, t) for i, t in enumerate(results.tiers) if t.max_agents > 0]
    _int_axis(ax.xaxis, all_c + [t.max_agents for _, t in maxima], log)
    all_v = [v for _, v in steady + other]
    ax.set_ylim(0, (max(all_v) if all_v else 1) * 1.1)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    if all_c:
        if log:
            ax.set_xlim(min(all_c) / 1.25, max(all_c) * 1.25)
        else:
            pad = max(0.5, (max(all_c) - min(all_c)) * 0.05)
            ax.set_xlim(max(0, min(all_c) - pad), max(all_c) + pad)

    # one vertical line per tier maximum, named in the legend (tiers sharing a maximum: offset dashes)
    sharing: dict[int, int] = {}
    for _i, t in maxima:
        sharing[t.max_agents] = sharing.get(t.max_agents, 0) + 1
    seen: dict[int, int] = {}
    tier_handles = []
    for i, t in maxima:
        color = TIER_COLORS[i % len(TIER_COLORS)]
        n, k = sharing[t.max_agents], seen.get(t.max_agents, 0)
        seen[t.max_agents] = k + 1
        # n tiers on one line: their dashes alternate (each draws every n-th dash)
        dash = "--" if n == 1 else (10.0 * k, (5.0, 10.0 * n - 5.0))
        ax.axvline(t.max_agents, color=color, ls=dash, lw=1.6, zorder=2)
        tier_handles.append(Line2D([], [], color=color, ls="--", lw=1.6,
                                   label=f"{_ellipsize(t.name, 36)}: max {t.max_agents:,} agents"))
    ax.set_xlabel("concurrency (agents)")
    ax.set_ylabel("output throughput (tok/s, all agents)")
    ax.grid(color="#eceff1", lw=0.8, zorder=0)
    handles = [Line2D([], [], color=DATA, marker="o", lw=1.8, label="steady probe")]
    if other:
        handles.append(Line2D([], [], color=NOT_STEADY, marker="s", ls="", markerfacecolor="white",
                              markeredgewidth=1.6, label="not steady"))
    all_handles = handles + tier_handles
    fig.legend(handles=all_handles, loc="outside lower center", frameon=False,
               ncol=len(all_handles) if len(all_handles) <= 3 else math.ceil(len(all_handles) / 2))
    if not all_c:
        ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center", color="#78909c")
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------
# (4) agents per MW

def _power_method(results: Results) -> str | None:
    methods = sorted({str((p.get("power") or {}).get("method")) for p in results.probes
                      if (p.get("power") or {}).get("method")})
    return ", ".join(methods) if methods else None


def plot_agents_per_mw(results: Results, path: Path) -> Path | None:
    """Horizontal bars, one per tier: agents per megawatt of mean accelerator power at the tier's
    maximum. None (nothing written) when no tier has a value."""
    rows = [(t, t.agents_per_mw) for t in results.tiers]
    if not any(v is not None for _, v in rows):
        return None
    fig = Figure(figsize=(11, 2.2 + 0.65 * len(rows)), layout="constrained")
    ax = fig.subplots()
    fig.suptitle(_title(results, "Agents per MW at each tier's maximum"))
    names = [_ellipsize(t.name, 40) for t, _ in rows][::-1]
    vals = [v or 0.0 for _, v in rows][::-1]
    colors = [TIER_COLORS[i % len(TIER_COLORS)] for i in range(len(rows))][::-1]
    bars = ax.barh(names, vals, color=colors, height=0.6, zorder=3)
    top = max(vals) or 1.0
    for bar, (t, v) in zip(bars, rows[::-1]):
        if v is not None:
            text = f"{v:,.0f} agents/MW ({t.max_agents:,} agents)"
        else:
            text = "never passed" if t.max_agents == 0 else "no power data"
        ax.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2, text,
                va="center", ha="left", fontsize=10, color="#37474f")
    ax.set_xlim(0, top * 1.35)
    ax.set_xlabel("agents per MW of mean accelerator power (agents / MW)")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax.grid(axis="x", color="#eceff1", lw=0.8, zorder=0)
    method = _power_method(results)
    if method:
        ax.set_title(f"power method: {method}", loc="left", fontsize=10, color="#546e7a")
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------
# (5) power over time, the probes' windows shaded

def plot_power_timeline(results: Results, path: Path) -> Path | None:
    """Total accelerator power over the run (``power.csv``), each probe's window shaded and
    labelled with its concurrency. None when the run measured no power."""
    import csv

    src = results.dir / "power.csv"
    if not src.exists():
        return None
    origin = results.manifest.get("time_origin_ns")
    by_t: dict[int, float] = {}
    with src.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            w = row.get("power_w")
            if w not in (None, ""):
                by_t[int(row["t_ns"])] = by_t.get(int(row["t_ns"]), 0.0) + float(w)
    if not by_t or not isinstance(origin, int):
        return None
    ts = sorted(by_t)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.subplots()
    fig.suptitle(_title(results, "Accelerator power over the run"))
    ax.plot([(t - origin) / 1e9 for t in ts], [by_t[t] for t in ts], color="#37474f", lw=1.2, zorder=3)
    for p in results.probes:
        w0, w1 = p.get("window_start_s"), p.get("window_end_s")
        if isinstance(w0, (int, float)) and isinstance(w1, (int, float)) and w1 > w0:
            ax.axvspan(w0, w1, color="#90caf9" if p.get("steady") else "#eeeeee", alpha=0.45, zorder=1)
            ax.text((w0 + w1) / 2, 1.0, f"c={p.get('concurrency')}", transform=blended_transform_factory(
                ax.transData, ax.transAxes), ha="center", va="bottom", fontsize=8, color="#546e7a")
    ax.set_xlabel("time since the run started (s)")
    ax.set_ylabel("power, all accelerators (W)")
    ax.set_ylim(bottom=0)
    ax.grid(color="#eceff1", lw=0.8, zorder=0)
    method = _power_method(results)
    if method:
        ax.set_title(f"power method: {method}; shaded: probe windows", loc="left", fontsize=10, color="#546e7a")
    return _save(fig, path)


def plot_server_metrics(results: Results, path: Path) -> Path | None:
    """The server's own view of each probe (its /metrics, ``Probe.server_metrics``) against
    concurrency: requests running and waiting, KV-cache usage, prefix-cache hit rate, preemptions.
    None when no probe carries server metrics."""
    rows = [(p.get("concurrency"), p["server_metrics"]) for p in results.probes
            if isinstance(p.get("server_metrics"), dict) and isinstance(p.get("concurrency"), int)]
    if not rows:
        return None
    rows.sort(key=lambda r: r[0])
    xs = [c for c, _ in rows]
    family = rows[0][1].get("family") or "server"

    def gauge(m: dict, q: str) -> float | None:
        v = m.get(q)
        return _num(v.get("mean")) if isinstance(v, dict) else None

    panels = [
        ("requests (mean over the window)", [("running", lambda m: gauge(m, "running"), "#1e88e5"),
                                             ("waiting", lambda m: gauge(m, "waiting"), "#e53935")]),
        ("KV-cache usage (mean, fraction)", [("KV cache", lambda m: gauge(m, "kv_cache_usage"), "#6d4c41")]),
        ("prefix-cache hit rate (window)", [("hits / queries", lambda m: _num(m.get("prefix_cache_hit_rate_window"))
                                             if m.get("prefix_cache_hit_rate_window") is not None
                                             else gauge(m, "prefix_cache_hit_rate"), "#43a047")]),
        ("preemptions (in the window)", [("preemptions", lambda m: _num(m.get("preemptions")), "#8e24aa")]),
    ]
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    axes = fig.subplots(2, 2).flatten()
    fig.suptitle(_title(results, f"Server metrics ({family} /metrics) per probe"))
    for ax, (title, series) in zip(axes, panels):
        drawn = False
        for label, get, color in series:
            pts = [(x, get(m)) for x, (_, m) in zip(xs, rows)]
            pts = [(x, y) for x, y in pts if y is not None]
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], "o-", color=color, label=label, ms=4, zorder=3)
                drawn = True
        ax.set_title(title, loc="left", fontsize=10)
        ax.set_xlabel("concurrency (agents)")
        ax.grid(color="#eceff1", lw=0.8, zorder=0)
        if drawn:
            ax.set_ylim(bottom=0)
            if len(series) > 1:
                ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not reported by this server", transform=ax.transAxes, ha="center", va="center",
                    color="#90a4ae")
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------

def write_plots(results: Results, out_dir: str | Path) -> list[Path]:
    """Writes the PNGs into ``out_dir`` and returns their paths (none when no probe finished)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not results.probes:
        return []
    paths: list[Path] = []
    with matplotlib.rc_context(RC):
        paths.append(plot_capacity_search(results, out / FILES["capacity"]))
        paths.append(plot_slo_vs_concurrency(results, out / FILES["slo"]))
        paths.append(plot_throughput(results, out / FILES["throughput"]))
        p = plot_agents_per_mw(results, out / FILES["power"])
        if p is not None:
            paths.append(p)
        p = plot_power_timeline(results, out / FILES["power_timeline"])
        if p is not None:
            paths.append(p)
        p = plot_server_metrics(results, out / "server_metrics.png")
        if p is not None:
            paths.append(p)
    return paths
