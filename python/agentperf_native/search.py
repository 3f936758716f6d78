"""The capacity search: an exponential ramp, then a bisection per tier, with shared probes.

The ramp probes start, 2×start, 4×start, … up to ``max_concurrency`` until every tier has failed
once (or the ceiling is reached). Each tier then has a last pass and (unless it passed at the
ceiling) a first fail; the bisection probes the midpoint of the widest open gap until every tier's
gap is within the resolution. One probe judges every tier at once, so a probe made for one tier's
bisection also narrows the others'. A tier that passes at the ceiling, or fails at 1, stops only
itself: every other tier is still bisected. The search stops early only when a steady probe shows
the server failing more than ``max_error_rate`` of its requests. A probe during which a shard of a
sharded engine died is kept (not steady, with the reason) and measured again on the other shards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .orchestrate import Interrupted
from .probe import ProbeRunner
from .results.schema import Probe, TierResult


@dataclass
class SearchResult:
    tiers: list[TierResult]
    probes: list[Probe]
    stop_reason: str
    interrupted: bool = False


def resolved(last_pass: int, first_fail: int | None, resolution: float) -> bool:
    """A tier is resolved when nothing lies between its last pass and first fail (or the gap is at
    most ``max(1, resolution × last pass)``)."""
    if first_fail is None:
        return False
    return first_fail - last_pass <= max(1, math.floor(last_pass * resolution))


class _Bounds:
    """Each tier's last pass, first fail and the probe at its maximum."""

    def __init__(self, names: list[str]) -> None:
        self.last_pass = {n: 0 for n in names}
        self.first_fail: dict[str, int | None] = {n: None for n in names}
        self.best: dict[str, Probe | None] = {n: None for n in names}

    def apply(self, probe: Probe) -> None:
        c = probe.concurrency
        for name, passed in probe.tier_pass.items():
            ff = self.first_fail[name]
            if passed and c > self.last_pass[name] and (ff is None or c < ff):
                self.last_pass[name], self.best[name] = c, probe
            elif not passed and c > self.last_pass[name] and (ff is None or c < ff):
                self.first_fail[name] = c


async def search(runner: ProbeRunner, *, start: int = 1, max_concurrency: int = 4096, resolution: float = 0.0,
                 max_error_rate: float = 0.5, on_probe: Callable[[Probe], None] | None = None) -> SearchResult:
    """Runs the search with ``runner`` (see the module docstring). An interruption ends it with
    every finished probe kept and ``interrupted`` set."""
    if start < 1 or max_concurrency < start:
        raise ValueError("need 1 <= start concurrency <= max concurrency")
    names = [t.name for t in runner.tiers]
    bounds = _Bounds(names)
    tried: dict[int, Probe] = {}
    result = SearchResult(tiers=[], probes=runner.probes, stop_reason="")

    async def probe_at(c: int, phase: str) -> Probe:
        p = await runner.run(c, phase)
        if p.index in runner.lost_probes and getattr(runner.engine, "live_shards", 0):
            if on_probe:
                on_probe(p)
            p = await runner.run(c, phase)  # a shard died: measured again on the others, the lost probe kept
        tried[c] = p
        bounds.apply(p)
        if on_probe:
            on_probe(p)
        return p

    def too_many_errors(p: Probe) -> str:
        if p.steady and p.error_rate > max_error_rate:
            return f"server errors: {p.error_rate:.0%} of requests failed at concurrency {p.concurrency}"
        return ""

    stop = ""
    try:
        c = start
        while True:  # the ramp
            stop = too_many_errors(await probe_at(c, "ramp"))
            if stop or all(bounds.first_fail[n] is not None for n in names) or c >= max_concurrency:
                break
            c = min(c * 2, max_concurrency)
        while not stop:  # the bisection: the widest open gap first
            open_tiers = [n for n in names if bounds.first_fail[n] is not None
                          and not resolved(bounds.last_pass[n], bounds.first_fail[n], resolution)]
            if not open_tiers:
                break
            name = max(open_tiers, key=lambda n: bounds.first_fail[n] - bounds.last_pass[n])  # type: ignore[operator]
            mid = (bounds.last_pass[name] + bounds.first_fail[name]) // 2  # type: ignore[operator]
            if mid in tried:  # measured already (a non-monotonic server): its verdict stands for this tier
                p = tried[mid]
                if p.tier_pass[name]:
                    bounds.last_pass[name], bounds.best[name] = mid, p
                else:
                    bounds.first_fail[name] = mid
                continue
            stop = too_many_errors(await probe_at(mid, "bisect"))
    except Interrupted as e:
        result.interrupted = True
        stop = e.reason  # "interrupted", or an early stop's verdict
    for t in runner.tiers:
        lp, ff, bp = bounds.last_pass[t.name], bounds.first_fail[t.name], bounds.best[t.name]
        if result.interrupted:
            reason = stop
        elif lp == 0:
            reason = f"never passed (failed at concurrency {ff})" if ff else "never passed"
        elif ff is None:
            reason = f"ceiling reached: passes at {lp} (--max-concurrency {max_concurrency})"
        elif resolved(lp, ff, resolution):
            reason = f"resolution reached: passes at {lp}, fails at {ff}"
        else:
            reason = stop or "stopped"
        result.tiers.append(TierResult(
            name=t.name, min_output_speed_tps=t.min_output_speed_tps, max_ttft_s=t.max_ttft_s, max_agents=lp,
            probe_index=bp.index if bp else None, first_fail=ff,
            throughput_output_tps=bp.throughput_output_tps if bp else None, stop_reason=reason))
    result.stop_reason = stop or "every tier resolved"
    return result
