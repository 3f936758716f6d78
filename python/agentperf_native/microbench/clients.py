"""One measured run of one client over paced streams: the engine or the baseline reader.

Both clients run in this process on their own native thread(s) and are measured the same way, over
one window after a warm-up:

* **events**: output events received in the window (engine: its snapshot's inter-event gaps plus
  the first event of each request started; baseline: its output-event counter);
* **CPU**: :mod:`.cpu` over this process's threads between the window's edges, split into the
  native client threads (``apn-worker-N`` / ``apn-baseline-0``) and the rest (the Python thread
  that polls); events per CPU-second use the sum;
* **delivered share**: events per second over the ideal rate of the streams
  (:meth:`NullModel.ideal_events_per_s`);
* **client-added delay**: for each request finished in the window, the client's read time of its
  first and of its last output event minus the server's time of handing that event to the kernel
  (the server's stamps, by X-Request-Id; only with the microbenchmark's own server). The engine's
  records carry the kernel's receive stamps, so its read time is taken as that stamp plus the
  request's client-added delay (the most any of its reads waited: an upper bound); how far the
  kernel stamps themselves are from the server's is kept beside it (``kernel_stamp_vs_server``);
* **memory per stream**: this process's RSS once every stream runs minus before the client was
  created, over the streams.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from .. import _core
from ..endpoint import Endpoint
from . import cpu
from .server import NullModel

#: The chat message every stream asks to continue (the engine adds its cache-isolation prefix).
PROMPT = "Write a short story about a benchmark."
CLIENTS = ("engine", "baseline")


@dataclass
class RunSpec:
    """What one run drives: ``streams`` closed-loop streams against ``url`` whose server paces as
    ``model``; ``arrivals`` ``spread`` (streams start over one response cycle, so their events are
    out of phase) or ``lockstep`` (all start at once; with the microbenchmark's server every event
    of every stream falls on one grid)."""

    url: str
    model: NullModel
    streams: int
    protocol: str = "h1"
    streams_per_connection: int = 100
    arrivals: str = "spread"
    duration_s: float = 10.0
    warmup_s: float = 2.0
    workers: int = 1
    poll_s: float = 0.25

    def spawn_interval_s(self) -> float:
        return self.model.cycle_s() / self.streams if self.arrivals == "spread" else 0.0

    def ramp_s(self) -> float:
        return self.model.cycle_s() if self.arrivals == "spread" else 0.0

    def connections(self) -> int:
        return self.streams if self.protocol == "h1" else -(-self.streams // self.streams_per_connection)


def request_body(tokens: int, model: str = "agentperf-sim") -> bytes:
    """The baseline reader's request: the engine's for this workload (same message length, max_tokens, stream)."""
    return json.dumps({"model": model,
                       "messages": [{"role": "user", "content": "[rid:0123456789abcdef] " + PROMPT}],
                       "max_tokens": tokens, "stream": True, "stream_options": {"include_usage": True}},
                      separators=(",", ":")).encode()


def percentiles_ms(deltas_ns: np.ndarray) -> dict:
    if deltas_ns.size == 0:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "samples": 0}
    p50, p99 = np.percentile(deltas_ns, [50, 99])
    return {"p50_ms": float(p50) / 1e6, "p99_ms": float(p99) / 1e6, "max_ms": float(deltas_ns.max()) / 1e6,
            "samples": int(deltas_ns.size)}


def client_added_delay(client: np.ndarray, server: list[list[int]]) -> dict:
    """Delay from the server's stamps to the client's, per request (``client``: rows of request_id,
    first_token_ns, last_token_ns), pooled over first and last events; requests the server has no
    stamp for are counted in ``unmatched``."""
    if client.size == 0:
        return {**percentiles_ms(np.empty(0)), "requests": 0, "unmatched": 0}
    srv = {int(r[0]): (int(r[1]), int(r[2])) for r in server}
    deltas, unmatched = [], 0
    for rid, first, last in client.tolist():
        s = srv.get(int(rid) % (1 << 64))  # ids are unsigned; the array holds them as int64
        if s is None or not s[0]:
            unmatched += 1
            continue
        deltas += [first - s[0], last - s[1]]
    return {**percentiles_ms(np.asarray(deltas, dtype=np.int64)), "requests": len(client) - unmatched,
            "unmatched": unmatched}


class _Client:
    """What a measured run needs from a client."""

    name: str

    def events(self) -> int: ...
    def poll(self) -> None: ...
    def problems(self) -> list[str]: ...
    def stamps_in(self, t0_ns: int, t1_ns: int) -> np.ndarray: ...
    def details(self) -> dict: ...
    def stop(self) -> None: ...


class EngineClient(_Client):
    name = "engine"

    def __init__(self, spec: RunSpec) -> None:
        from ..engine import ERROR_KINDS, Engine
        from ..workload import Conversation, Turn, encode

        conv = Conversation(turns=[Turn(messages=[{"role": "user", "content": PROMPT}],
                                        output_tokens=spec.model.tokens, tool_delay_s=0.0)])
        self._cancelled = ERROR_KINDS.index("cancelled")
        self._kinds = ERROR_KINDS
        self.eng = Engine(spec.url, encode([conv], model="agentperf-sim"), concurrency=spec.streams,
                          workers=spec.workers, random_start_turn=False, protocol=spec.protocol,
                          streams_per_connection=spec.streams_per_connection,
                          spawn_interval_s=spec.spawn_interval_s(), request_timeout_s=60.0)
        self._chunks: list[np.ndarray] = []
        self.eng.start()

    def _snap_events(self, s) -> int:
        # output_events moves when a request completes; events as they arrive: every event but a
        # request's first is one recorded gap, and each request started brings its first event.
        return s.itl_ns.count + s.requests_started

    def events(self) -> int:
        self.last_snapshot = self.eng.snapshot()
        return self._snap_events(self.last_snapshot)

    def poll(self) -> None:
        batch = self.eng.drain_records()
        if batch.size:
            self._chunks.append(batch[["request_id", "first_token_ns", "last_token_ns", "error_kind",
                                       "client_delay_us"]].copy())

    def _records(self) -> np.ndarray:
        self.poll()
        return np.concatenate(self._chunks) if self._chunks else np.empty(0)

    def stamps_in(self, t0_ns: int, t1_ns: int, *, kernel: bool = False) -> np.ndarray:
        """(request id, first, last) per request: the read times (kernel stamp + client-added
        delay), or with ``kernel`` the kernel's stamps."""
        r = self._records()
        if r.size == 0:
            return np.empty((0, 3), dtype=np.int64)
        ok = (r["error_kind"] == 0) & (r["last_token_ns"] >= t0_ns) & (r["last_token_ns"] < t1_ns)
        r = r[ok]
        added = 0 if kernel else r["client_delay_us"].astype(np.int64) * 1000
        return np.stack([r["request_id"].astype(np.int64), r["first_token_ns"] + added, r["last_token_ns"] + added],
                        axis=1)

    def problems(self) -> list[str]:
        s = self.eng.snapshot()
        failed = {k: v for k, v in s.requests_by_kind.items() if k not in ("none", "cancelled") and v}
        out = [f"engine: failed requests {failed}"] if failed else []
        if s.last_connection_error:
            out.append(f"engine: {s.last_connection_error}")
        return out

    def details(self) -> dict:
        s = self.eng.snapshot()
        return {"connections_open": s.connections_open, "connections_opened": s.connections_opened,
                "agents_engaged": s.agents_engaged, "requests_ok": s.requests_ok,
                "requests_failed": s.requests_failed, "records_dropped": s.records_dropped}

    def stop(self) -> None:
        self.eng.stop()


class BaselineClient(_Client):
    name = "baseline"

    def __init__(self, spec: RunSpec) -> None:
        if spec.protocol != "h1":
            raise ValueError("the baseline reader speaks HTTP/1.1 only: use --protocol h1 with --baseline")
        ep = Endpoint.parse(spec.url)
        if ep.scheme != "http":
            raise ValueError("the baseline reader speaks plain http:// only")
        self.reader = _core.BaselineReader(host=ep.host, port=ep.port, path=ep.base_path + "/chat/completions",
                                           body=request_body(spec.model.tokens), streams=spec.streams,
                                           spawn_interval_ns=int(spec.spawn_interval_s() * 1e9))
        self._stamps: list = []
        self.reader.start()

    def events(self) -> int:
        self.last_counters = self.reader.counters()
        return int(self.last_counters["output_events"])

    def poll(self) -> None:
        self._stamps += self.reader.drain_stamps()

    def stamps_in(self, t0_ns: int, t1_ns: int) -> np.ndarray:
        self.poll()
        rows = [(rid, f, last) for rid, f, last, n in self._stamps if n > 0 and t0_ns <= last < t1_ns]
        return np.asarray(rows, dtype=np.uint64).astype(np.int64).reshape(-1, 3)

    def problems(self) -> list[str]:
        c = self.reader.counters()
        out = []
        if c["errors"]:
            out.append(f"baseline: {c['errors']} errors ({c['reconnects']} reconnects)")
        if self.reader.error():
            out.append(f"baseline: {self.reader.error()}")
        return out

    def details(self) -> dict:
        return dict(self.reader.counters())

    def stop(self) -> None:
        self.reader.stop()


def make_client(name: str, spec: RunSpec) -> _Client:
    if name == "engine":
        return EngineClient(spec)
    if name == "baseline":
        return BaselineClient(spec)
    raise ValueError(f"unknown client {name!r} (known: {', '.join(CLIENTS)})")


def measure(name: str, spec: RunSpec, server_stamps: Callable[[int], list] | None = None) -> dict:
    """Runs client ``name`` over ``spec`` and returns its measurement (see the module docstring).

    ``server_stamps(since_ns)``: the server's stamps (None: no delay is measured)."""
    rss0 = cpu.rss_kib()
    t_start_ns = _core.now_ns()
    client = make_client(name, spec)
    try:
        def wait_until(deadline: float) -> None:
            while (t := time.monotonic()) < deadline:
                time.sleep(min(spec.poll_s, deadline - t))
                client.poll()

        wait_until(time.monotonic() + spec.ramp_s() + spec.warmup_s)
        rss1 = cpu.rss_kib()
        e0, c0, w0 = client.events(), cpu.sample(), _core.now_ns()
        wait_until(c0.t + spec.duration_s)
        e1, c1, w1 = client.events(), cpu.sample(), _core.now_ns()
        problems = client.problems()
        details = client.details()
        stamps = client.stamps_in(w0, w1)
        kernel_stamps = client.stamps_in(w0, w1, kernel=True) if isinstance(client, EngineClient) else None
    finally:
        client.stop()
    used = cpu.cpu_between(c0, c1)
    wall = (w1 - w0) / 1e9
    events = e1 - e0
    ideal = spec.model.ideal_events_per_s(spec.streams)
    per_thread = {k: v / wall for k, v in sorted(used["by_thread"].items())}
    out = {
        "client": name,
        "streams": spec.streams,
        "protocol": spec.protocol,
        "connections": spec.connections(),
        "arrivals": spec.arrivals,
        "window_s": wall,
        "output_events": events,
        "events_per_s": events / wall,
        "ideal_events_per_s": ideal,
        "delivered_share": events / wall / ideal,
        # A window edge can cut each stream's events by one either way.
        "delivered_share_resolution": spec.streams / (ideal * wall),
        "cpu_s": used["total_s"],
        "cpu_client_threads_s": used["client_threads_s"],
        "cpu_other_threads_s": used["other_s"],
        "events_per_cpu_s": events / used["total_s"] if used["total_s"] > 0 else None,
        "cpu_us_per_event": used["total_s"] * 1e6 / events if events else None,
        "client_cpu_share": used["total_s"] / wall,
        "client_cpu_share_by_thread": per_thread,
        "rss_kib_before": rss0,
        "rss_kib_running": rss1,
        "memory_per_stream_kib": (rss1 - rss0) / spec.streams if rss0 is not None and rss1 is not None else None,
        "problems": problems,
        "details": details,
    }
    if server_stamps is not None:
        server = server_stamps(t_start_ns)
        out["client_added_delay"] = client_added_delay(stamps, server)
        if kernel_stamps is not None:
            out["kernel_stamp_vs_server"] = client_added_delay(kernel_stamps, server)
    else:
        out["client_added_delay"] = None
    return out


def spec_dict(spec: RunSpec) -> dict:
    d = asdict(spec)
    d["model"] = asdict(spec.model)
    return d
