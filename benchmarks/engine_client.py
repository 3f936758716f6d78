#!/usr/bin/env python3
"""Drives ``agentperf_native.Engine`` as the ``run`` command does, and reports its CPU cost.

One conversation with one turn asking ``max_tokens`` (64) output tokens and no tool delay, so every
agent sends its next request on its keep-alive connection as soon as a response ends. The engine
runs ``CONNECTIONS`` agents on one worker thread; the main (Python) thread polls ``snapshot()``
every 0.5 s and drains the records, as ``phase.run_phase`` does.

Usage: engine_client.py HOST PORT CONNECTIONS DURATION_S [--warmup S] [--max-tokens N] [--workers N]
                        [--protocol h1|h2] [--streams-per-connection N] [--ramp S] [--request-timeout S]
CONNECTIONS is the number of agents (streams): with --protocol h2 they share
ceil(CONNECTIONS / streams-per-connection) connections.
Counters come from the engine's snapshot (output events as they arrive: inter-event gaps recorded
plus first events of the requests started; see below); CPU time is every thread of the process
(engine worker plus the polling thread) by ``agentperf_native.microbench.cpu``, both measured over
DURATION_S after the warm-up, which starts once the engine has started. Prints one JSON object on
stdout. ``--client baseline`` reads the same streams with the minimal native reader instead.

Also reported: the process's resident memory (VmRSS from /proc/self/status) before the engine is
created, after the warm-up and at the end of the window (so memory per agent can be derived), and
the lowest / highest agents_engaged, requests_in_flight and connections_open seen at the polls
inside the window (whether every agent stayed served).
"""

from __future__ import annotations

import argparse
import json
import time

from agentperf_native import _core
from agentperf_native import engine as engine_mod
from agentperf_native.microbench import cpu
from agentperf_native.microbench.clients import PROMPT, request_body
from agentperf_native.workload import Conversation, Turn, encode


def run_baseline(args) -> dict:
    """The same streams read by the minimal native reader (agentperf-native microbench --baseline)."""
    reader = _core.BaselineReader(host=args.host, port=args.port, body=request_body(args.max_tokens),
                                  streams=args.connections, spawn_interval_ns=int(args.ramp / args.connections * 1e9))
    reader.start()
    try:
        time.sleep(args.warmup)
        k0, c0, w0 = reader.counters(), cpu.sample(), time.monotonic()
        while reader.drain_stamps() is not None and (t := time.monotonic()) < w0 + args.duration:
            time.sleep(min(args.poll, w0 + args.duration - t))
        k1, c1, w1 = reader.counters(), cpu.sample(), time.monotonic()
    finally:
        reader.stop()
    used = cpu.cpu_between(c0, c1)
    out = {k: k1[k] - k0[k] for k in k1}
    return {"client": "baseline", "connections": args.connections, "warmup_s": args.warmup, "wall_s": w1 - w0,
            "cpu_s": used["total_s"], "cpu_client_threads_s": used["client_threads_s"], **out,
            "failures_by_kind": {"reader": reader.error()} if reader.error() else {}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("connections", type=int)
    p.add_argument("duration", type=float)
    p.add_argument("--warmup", type=float, default=0.0)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--poll", type=float, default=0.5, help="snapshot/drain period (s)")
    p.add_argument("--protocol", choices=["h1", "h2"], default="h1", help="HTTP/1.1 or h2c (prior knowledge)")
    p.add_argument("--streams-per-connection", type=int, default=100, help="HTTP/2 streams per connection")
    p.add_argument("--ramp", type=float, default=0.0, help="spread agent arrivals over this many seconds")
    p.add_argument("--request-timeout", type=float, default=600.0, help="per-request timeout (s)")
    p.add_argument("--user-stamps", action="store_true", help="no kernel receive stamps (user-space stamps only)")
    p.add_argument("--client", choices=["engine", "baseline"], default="engine",
                   help="baseline: the minimal native reader instead of the engine (HTTP/1.1)")
    args = p.parse_args()
    if args.client == "baseline":
        print(json.dumps(run_baseline(args)))
        return
    rss_start = cpu.rss_kib()

    conv = Conversation(turns=[Turn(messages=[{"role": "user", "content": PROMPT}],
                                    output_tokens=args.max_tokens, tool_delay_s=0.0)])
    workload = encode([conv], model="agentperf-sim")
    eng = engine_mod.Engine(f"http://{args.host}:{args.port}/v1", workload, concurrency=args.connections,
                            workers=args.workers, random_start_turn=False, protocol=args.protocol,
                            streams_per_connection=args.streams_per_connection,
                            spawn_interval_s=args.ramp / max(1, args.connections),
                            request_timeout_s=args.request_timeout, kernel_stamps=not args.user_stamps)
    cancelled = engine_mod.ERROR_KINDS.index("cancelled")
    records = 0
    record_errors = 0  # failed records other than the ones cancelled by stop()

    def drain() -> None:
        nonlocal records, record_errors
        batch = eng.drain_records()
        records += int(batch.size)
        if batch.size:
            kind = batch["error_kind"]
            record_errors += int(((kind != 0) & (kind != cancelled)).sum())

    track: dict[str, list[int]] = {}  # gauge -> [min, max] over the polls inside the window

    def poll_until(deadline: float, tracking: bool = False):
        snap = None
        while (t := time.monotonic()) < deadline:
            time.sleep(min(args.poll, deadline - t))
            snap = eng.snapshot()
            drain()
            if tracking:
                for key in ("agents_engaged", "requests_in_flight", "connections_open"):
                    v = getattr(snap, key)
                    lo_hi = track.setdefault(key, [v, v])
                    lo_hi[0], lo_hi[1] = min(lo_hi[0], v), max(lo_hi[1], v)
        return snap

    eng.start()
    try:
        poll_until(time.monotonic() + args.warmup)
        s0, c0, w0 = eng.snapshot(), cpu.sample(), time.monotonic()
        rss_warm = cpu.rss_kib()
        poll_until(w0 + args.duration, tracking=True)
        s1, c1, w1 = eng.snapshot(), cpu.sample(), time.monotonic()
        rss_end = cpu.rss_kib()
    finally:
        eng.stop()
    drain()

    used = cpu.cpu_between(c0, c1)
    failures = {k: s1.requests_by_kind.get(k, 0) - s0.requests_by_kind.get(k, 0) for k in s1.requests_by_kind}
    used = cpu.cpu_between(c0, c1)
    failures = {k: v for k, v in failures.items() if v and k != "none"}
    result = {
        "client": "engine",
        "connections": args.connections,
        "protocol": args.protocol,
        "streams_per_connection": args.streams_per_connection if args.protocol == "h2" else 1,
        "workers": args.workers,
        "warmup_s": args.warmup,
        "wall_s": w1 - w0,
        "cpu_s": used["total_s"],
        "cpu_client_threads_s": used["client_threads_s"],
        # output_events counts a request's events when the request completes, so over a window it
        # moves in steps of (streams x tokens) when the streams run in step. Events as they arrive:
        # every event but a request's first is one inter-event gap (itl_ns, recorded per event), and
        # each request started in the window brings its first event (TTFT 0 on the null server).
        "output_events": (s1.itl_ns.count - s0.itl_ns.count) + (s1.requests_started - s0.requests_started),
        "output_events_committed": s1.output_events - s0.output_events,
        "output_tokens": s1.output_tokens - s0.output_tokens,
        "responses": s1.requests_ok - s0.requests_ok,
        "errors": s1.requests_failed - s0.requests_failed,
        "failures_by_kind": failures,
        "agents_active": s1.agents_active,
        "agents_engaged": s1.agents_engaged,
        "requests_in_flight": s1.requests_in_flight,
        "connections_open": s1.connections_open,
        "connections_opened": s1.connections_opened,
        "connections_opened_in_window": s1.connections_opened - s0.connections_opened,
        "last_connection_error": s1.last_connection_error,
        "window_min_max": track,
        "rss_kib_before_engine": rss_start,
        "rss_kib_after_warmup": rss_warm,
        "rss_kib_end": rss_end,
        "ttft_p50_ms": s1.ttft_ns.percentile(50) / 1e6 if s1.ttft_ns.count else None,
        "records_drained_total": records,
        "records_failed_total": record_errors,
        "records_dropped": s1.records_dropped,
        "itl_p50_ms": s1.itl_ns.percentile(50) / 1e6 if s1.itl_ns.count else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
