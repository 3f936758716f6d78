"""SLO tiers as data: a tier is (minimum P25 output speed, maximum P95 TTFT).

A probe passes a tier when, over the requests started inside its steady window (failed ones
counted as violations: output speed 0, TTFT infinite), the 25th percentile of per-request output
speed is at least the tier's speed and the 95th percentile of TTFT at most its TTFT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Tier:
    name: str
    min_output_speed_tps: float
    max_ttft_s: float

    def passes(self, p25_output_speed_tps: float | None, p95_ttft_s: float | None) -> bool:
        if p25_output_speed_tps is None or p95_ttft_s is None:
            return False
        return p25_output_speed_tps >= self.min_output_speed_tps and p95_ttft_s <= self.max_ttft_s


def _preset(model: str, pairs: list[tuple[float, float]]) -> list[Tier]:
    return [Tier(f"{model} {speed:g}t/s@{ttft:g}s", speed, ttft) for speed, ttft in pairs]


#: Published AA-AgentPerf tiers (they change: keep them as data).
PRESETS: dict[str, list[Tier]] = {
    "dsv4-pro": _preset("dsv4-pro", [(20, 10), (60, 5), (180, 3)]),
    "gpt-oss-120b": _preset("gpt-oss-120b", [(100, 5), (250, 3), (500, 2), (2000, 1)]),
}

_SPEC = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*:\s*(\d+(?:\.\d*)?)\s*(?:s)?\s*$")


def parse_tier(spec: str) -> Tier:
    """``"60:5"`` → 60 tokens/s P25 output speed and 5 s P95 TTFT."""
    m = _SPEC.match(spec)
    if not m:
        raise ValueError(f"tier {spec!r}: write SPEED:TTFT, e.g. 60:5 (P25 output speed in tokens/s, "
                         "P95 time to first token in seconds)")
    speed, ttft = float(m.group(1)), float(m.group(2))
    if speed <= 0 or ttft <= 0:
        raise ValueError(f"tier {spec!r}: speed and TTFT must be > 0")
    return Tier(f"{speed:g}t/s@{ttft:g}s", speed, ttft)


def resolve_tiers(specs: list[str] | tuple[str, ...] = (), preset: str | None = None) -> list[Tier]:
    """Tiers from ``--tier`` specs and/or a ``--tiers`` preset (default: the dsv4-pro preset)."""
    tiers: list[Tier] = []
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"unknown tier preset {preset!r}; use one of {', '.join(PRESETS)}")
        tiers.extend(PRESETS[preset])
    tiers.extend(parse_tier(s) for s in specs)
    if not tiers:
        tiers = list(PRESETS["dsv4-pro"])
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        raise ValueError(f"tiers repeat: {', '.join(names)}")
    return tiers
