"""The microbenchmark's printed summary, its JSON file and its plot."""

from __future__ import annotations

import json
from pathlib import Path

from .bench import MAX_DELAY_P99_MS, MIN_DELIVERED


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def summary(doc: dict) -> str:
    lines = []
    hdr = (f"{'round':>5} {'client':<9} {'proto':<5} {'streams':>7} {'events/s':>9} {'delivered':>9} {'events/CPU-s':>12} "
           f"{'µs/event':>8} {'client CPU':>10} {'delay p50/p99/max ms':>22} {'KiB/stream':>10}")
    lines += [hdr, "-" * len(hdr)]
    for r in doc["runs"]:
        d = r["client_added_delay"]
        delay = "-" if d is None else f"{_ms(d['p50_ms'])}/{_ms(d['p99_ms'])}/{_ms(d['max_ms'])}"
        mem = "-" if r["memory_per_stream_kib"] is None else f"{r['memory_per_stream_kib']:.2f}"
        eps = r["events_per_cpu_s"]
        lines.append(f"{r.get('round', 1):>5} {r['client']:<9} {r['protocol']:<5} {r['streams']:>7} {r['events_per_s']:>9.0f} "
                     f"{100 * r['delivered_share']:>8.1f}% {eps if eps is None else round(eps):>12} "
                     f"{r['cpu_us_per_event'] or float('nan'):>8.2f} {100 * r['client_cpu_share']:>9.1f}% "
                     f"{delay:>22} {mem:>10}")
        for t, share in r["client_cpu_share_by_thread"].items():
            lines.append(f"{'':<15} {t}: {100 * share:.1f}% of a core")
        for p in r["problems"]:
            lines.append(f"{'':<15} problem: {p}")
    for proto, c in doc.get("comparison", {}).items():
        rounds = ", ".join(f"{100 * x:.1f}%" for x in c["by_round"])
        lines.append(f"{proto}: engine reaches {100 * c['engine_over_baseline']:.1f}% of the baseline reader's "
                     f"events per CPU-second (medians; by round: {rounds})")
    for proto, s in (doc.get("sweep") or {}).items():
        how = "the limit" if s["reached_limit"] else f"first failing {s['first_failing']}"
        lines.append(f"sweep {proto}: {s['max_streams']} streams at >= {100 * MIN_DELIVERED:g}% delivered and "
                     f"delay p99 < {MAX_DELAY_P99_MS:g} ms ({how}; {len(s['runs'])} runs)")
    return "\n".join(lines)


def write(doc: dict, out: Path) -> list[Path]:
    """microbench.json and microbench.png into ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "microbench.json"]
    paths[0].write_text(json.dumps(doc, indent=2) + "\n")
    png = plot(doc, out / "microbench.png")
    return paths + ([png] if png else [])


def plot(doc: dict, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = doc.get("sweep") or {}
    fig, axes = plt.subplots(1, 2 if sweeps else 1, figsize=(11 if sweeps else 6, 4), squeeze=False)
    ax = axes[0][0]
    labels = [f"{r['client']}\n{r['protocol']} {r['streams']}\nround {r.get('round', 1)}" for r in doc["runs"]]
    values = [r["events_per_cpu_s"] or 0 for r in doc["runs"]]
    ax.bar(labels, values, color=["tab:blue" if r["client"] == "engine" else "tab:gray" for r in doc["runs"]])
    ax.set_ylabel("output events per client CPU-second")
    ax.set_title("client cost (higher is cheaper)")
    if sweeps:
        ax = axes[0][1]
        for proto, s in sweeps.items():
            runs = sorted(s["runs"], key=lambda r: r["streams"])
            ax.plot([r["streams"] for r in runs], [100 * r["delivered_share"] for r in runs], "o-",
                    label=f"{proto} delivered %")
            ax2 = ax.twinx()
            ax2.plot([r["streams"] for r in runs],
                     [(r["client_added_delay"] or {}).get("p99_ms") or 0 for r in runs], "x--",
                     label=f"{proto} delay p99 (ms)")
            ax2.set_ylabel("client-added delay p99 (ms)")
        ax.axhline(100 * MIN_DELIVERED, color="gray", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("streams")
        ax.set_ylabel("delivered share of the ideal rate (%)")
        ax.set_title("sweep")
        ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
