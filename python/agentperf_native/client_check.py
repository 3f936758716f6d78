"""The client's self-check: evidence in every probe that the client was not the bottleneck.

Per probe window it records, from this process:

- the CPU share of each native engine worker (``apn-worker-N``), from per-thread CPU time
  (:mod:`agentperf_native.microbench.cpu`, the one CPU-accounting method of the package), and its
  busy share: on a CPU plus runnable but waiting for one (a worker starved by other processes on
  its cores shows a low CPU share and a busy share near 100 %);
- the event loop's lag: how late the orchestrator's drain tick woke up (P99 and max);
- send lateness: scheduled → first byte written, P99 (measured from the records by
  :mod:`agentperf_native.measure`);
- client-added delay: how long response bytes waited in the socket between the kernel's receive
  stamp and the client reading them, per request the most of its reads, P50 / P99 / max (from the
  records by :mod:`agentperf_native.measure`). Token times are the kernel's stamps, so this delay
  is not in TTFT or ITL; it is evidence of a client that reads behind the server.

When a figure crosses its limit (:data:`LIMITS`) the run's validity verdict says "client-bound",
with the figure and what to do. The limits are chosen so that a client under them adds far less
than the tiers' resolution: a worker above 90 % CPU has no headroom left for a burst of events, one
busy (running or waiting to run) 95 % of the time never catches up with its sockets,
a loop more than 100 ms late delays every control decision of a probe, a request sent 50 ms
after its schedule shifts TTFT by as much, and bytes left 50 ms in the socket mean the client reads
slower than the server writes (once the socket buffer fills, the server itself is held back).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .microbench import cpu

#: The limits above which a probe is client-bound.
LIMITS = {"worker_cpu_share": 0.90, "worker_busy_share": 0.95, "loop_lag_p99_ms": 100.0,
          "send_lateness_p99_ms": 50.0, "client_delay_p99_ms": 50.0}
ADVICE = "give the engine more workers (--workers), use --protocol h2, or split the agents over --shards"


class LoopLag:
    """Lateness of a periodic wake-up, as (monotonic ns, lag ns) pairs, bounded."""

    def __init__(self, keep: int = 100_000) -> None:
        self.samples: deque[tuple[int, int]] = deque(maxlen=keep)

    def add(self, at_ns: int, lag_ns: int) -> None:
        self.samples.append((at_ns, max(0, lag_ns)))

    def between(self, start_ns: int, end_ns: int) -> np.ndarray:
        return np.array([lag for t, lag in self.samples if start_ns <= t <= end_ns], dtype=np.int64)


@dataclass
class WindowCpu:
    """Per-thread CPU of this process from a window's start; :meth:`close` gives the shares."""

    start: cpu.CpuSample = field(default_factory=cpu.sample)

    def close(self) -> tuple[dict[str, float], dict[str, float]]:
        """({worker: CPU share}, {worker: share of the window runnable but waiting for a CPU})."""
        used = cpu.cpu_between(self.start, cpu.sample())
        wall = used["wall_s"]
        if wall <= 0:
            return {}, {}
        return ({name: s / wall for name, s in sorted(used["by_thread"].items()) if name.startswith("apn-worker")},
                {name: s / wall for name, s in sorted(used["wait_by_thread"].items()) if name.startswith("apn-worker")})


def figures(worker_share: dict[str, float], lags_ns: np.ndarray, send_lateness_p99_ms: float | None,
            client_delay_ms: dict[str, float | None] | None = None,
            worker_wait: dict[str, float] | None = None) -> dict:
    """The self-check of one window, as stored in ``Probe.client``; the record-based figures
    (send lateness, client-added delay) may be filled in later, when the window's records are in."""
    lag_ms = lags_ns / 1e6
    return {
        "worker_cpu_share": {k: round(v, 4) for k, v in worker_share.items()},
        "worker_cpu_share_max": round(max(worker_share.values()), 4) if worker_share else None,
        "worker_wait_share": {k: round(v, 4) for k, v in (worker_wait or {}).items()},
        "worker_busy_share_max": round(max(v + (worker_wait or {}).get(k, 0.0) for k, v in worker_share.items()), 4)
        if worker_share and worker_wait else None,
        "loop_lag_p99_ms": round(float(np.percentile(lag_ms, 99)), 3) if lag_ms.size else None,
        "loop_lag_max_ms": round(float(lag_ms.max()), 3) if lag_ms.size else None,
        "loop_ticks": int(lag_ms.size),
        "send_lateness_p99_ms": send_lateness_p99_ms,
        "client_added_delay_ms": client_delay_ms or None,
    }


def bound_by(client: dict | None) -> list[str]:
    """What in one window's self-check crossed its limit, each as 'figure value > limit'."""
    if not client:
        return []
    out = []
    share = client.get("worker_cpu_share_max")
    if share is not None and share > LIMITS["worker_cpu_share"]:
        out.append(f"engine worker CPU {share:.0%} > {LIMITS['worker_cpu_share']:.0%}")
    busy = client.get("worker_busy_share_max")
    if busy is not None and busy > LIMITS["worker_busy_share"] and not (share is not None and share > LIMITS["worker_cpu_share"]):
        out.append(f"engine worker busy {busy:.0%} of the window (on a CPU or waiting for one: other processes "
                   f"take its cores) > {LIMITS['worker_busy_share']:.0%}")
    lag = client.get("loop_lag_p99_ms")
    if lag is not None and lag > LIMITS["loop_lag_p99_ms"]:
        out.append(f"event-loop lag P99 {lag:.0f} ms > {LIMITS['loop_lag_p99_ms']:.0f} ms")
    late = client.get("send_lateness_p99_ms")
    if late is not None and late > LIMITS["send_lateness_p99_ms"]:
        out.append(f"P99 send lateness {late:.0f} ms > {LIMITS['send_lateness_p99_ms']:.0f} ms")
    delay = (client.get("client_added_delay_ms") or {}).get("p99")
    if delay is not None and delay > LIMITS["client_delay_p99_ms"]:
        out.append(f"P99 client-added delay {delay:.0f} ms > {LIMITS['client_delay_p99_ms']:.0f} ms "
                   "(response bytes waited that long in the socket)")
    return out
