"""Engine snapshots across processes: sent as plain data, merged exactly.

A :class:`~agentperf_native.engine.Snapshot` holds counters (summed over shards), gauges (summed
over the live shards) and four log-linear histograms. A histogram travels as its bucket counts,
exact minimum and maximum, and exact mean; it is rebuilt with the same counts in the same buckets,
the same minimum and maximum, so every percentile of the merged histogram is the one a single
histogram holding every shard's values would give (never an average of percentiles). The merged
mean is exact too (:class:`MergedHistogram`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from ..engine import Snapshot

HISTOGRAMS = ("ttft_ns", "itl_ns", "e2e_ns", "output_speed_mtps", "client_delay_ns")
#: Gauges describe what a shard holds now: a lost shard holds nothing.
GAUGES = ("agents_target", "agents_live", "agents_active", "agents_engaged", "requests_in_flight",
          "connections_open")


class MergedHistogram(_core.HistogramSnapshot):
    """A :class:`~agentperf_native._core.HistogramSnapshot` whose ``mean`` is the exact mean of
    every merged part (the buckets alone would give it only to the bucket width)."""

    def __init__(self, sub_bucket_bits: int = 8) -> None:
        super().__init__(sub_bucket_bits)
        self._sum = 0.0

    @property
    def mean(self) -> float:  # type: ignore[override]
        return self._sum / self.count if self.count else 0.0

    def merge(self, other: _core.HistogramSnapshot) -> None:  # type: ignore[override]
        super().merge(other)
        self._sum += other.mean * other.count


def histogram_parts(h: _core.HistogramSnapshot) -> dict[str, Any]:
    """A histogram as plain data (non-empty buckets only)."""
    counts = h.counts()
    nz = np.flatnonzero(counts)
    return {"bits": h.sub_bucket_bits, "index": nz.astype(np.int32), "count": counts[nz], "min": h.min,
            "max": h.max, "mean": h.mean}


def histogram_from_parts(parts: dict[str, Any]) -> MergedHistogram:
    """The histogram :func:`histogram_parts` described: same buckets, counts, minimum and maximum."""
    h = MergedHistogram(parts["bits"])
    index, counts = parts["index"], parts["count"].astype(np.uint64).copy()
    total = int(counts.sum())
    if total == 0:
        return h
    vmin, vmax = int(parts["min"]), int(parts["max"])
    where = {int(i): k for k, i in enumerate(index)}
    h.record(vmin)  # the exact extremes first, then the rest of each bucket at a value inside it
    counts[where[h.bucket_index(vmin)]] -= 1
    if total > 1:
        h.record(vmax)
        counts[where[h.bucket_index(vmax)]] -= 1
    for i, c in zip(index, counts):
        if c:
            h.record(min(max(h.bucket_lower(int(i)), vmin), vmax), int(c))
    h._sum = float(parts["mean"]) * total
    return h


def snapshot_parts(snap: Snapshot, offset_ns: int) -> dict[str, Any]:
    """A shard's snapshot as plain data, its time on the driver's clock."""
    d = dict(vars(snap))
    d["taken_ns"] = snap.taken_ns + offset_ns
    for name in HISTOGRAMS:
        d[name] = histogram_parts(getattr(snap, name))
    return d


def merge(parts: list[dict[str, Any]], live: list[bool], taken_ns: int) -> Snapshot:
    """One snapshot of every shard: counters summed, gauges summed over the live shards,
    histograms merged; ``parts`` holds each shard's newest snapshot (a lost shard's last one)."""
    out: dict[str, Any] = {"taken_ns": taken_ns, "requests_by_kind": {}, "last_connection_error": ""}
    for name in HISTOGRAMS:
        out[name] = None
    for index, (p, alive) in enumerate(zip(parts, live)):
        for key, value in p.items():
            if key in ("taken_ns", "last_connection_error") or key in HISTOGRAMS:
                continue
            if key == "requests_by_kind":
                for kind, n in value.items():
                    out[key][kind] = out[key].get(kind, 0) + n
            else:
                out[key] = out.get(key, 0) + (value if alive or key not in GAUGES else 0)
        if p.get("last_connection_error") and not out["last_connection_error"]:
            out["last_connection_error"] = f"shard {index}: {p['last_connection_error']}"
        for name in HISTOGRAMS:
            h = histogram_from_parts(p[name])
            if out[name] is None:
                out[name] = h
            else:
                out[name].merge(h)
    return Snapshot(**out)
