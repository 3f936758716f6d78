#!/usr/bin/env python3
"""Drives ``agentperf_native.Engine`` as the ``run`` command does, and reports its CPU cost.

One conversation with one turn asking ``max_tokens`` (64) output tokens and no tool delay, so every
agent sends its next request on its keep-alive connection as soon as a response ends. The engine
runs ``CONNECTIONS`` agents on one worker thread; the main (Python) thread polls ``snapshot()``
every 0.5 s and drains the records, as ``phase.run_phase`` does.

Usage: engine_client.py HOST PORT CONNECTIONS DURATION_S [--warmup S] [--max-tokens N] [--workers N]
                        [--protocol h1|h2] [--streams-per-connection N] [--ramp S]
Counters come from the engine's snapshot (output events as they arrive: inter-event gaps recorded
plus first events of the requests started; see below); CPU time is ``resource.getrusage(RUSAGE_SELF)`` (the
whole process: engine worker thread plus the polling thread), both measured over DURATION_S
after the warm-up, which starts once the engine has started. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from agentperf_native import engine as engine_mod
from agentperf_native.workload import Conversation, Turn, encode


def cpu_s() -> tuple[float, float, int, int]:
    """User s, system s, voluntary and involuntary context switches of the whole process."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime, ru.ru_nvcsw, ru.ru_nivcsw


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
    args = p.parse_args()

    conv = Conversation(turns=[Turn(messages=[{"role": "user", "content": "Write a short story about a benchmark."}],
                                    output_tokens=args.max_tokens, tool_delay_s=0.0)])
    workload = encode([conv], model="agentperf-sim")
    eng = engine_mod.Engine(f"http://{args.host}:{args.port}/v1", workload, concurrency=args.connections,
                            workers=args.workers, random_start_turn=False, protocol=args.protocol,
                            streams_per_connection=args.streams_per_connection,
                            spawn_interval_s=args.ramp / max(1, args.connections))
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

    def poll_until(deadline: float):
        snap = None
        while (t := time.monotonic()) < deadline:
            time.sleep(min(args.poll, deadline - t))
            snap = eng.snapshot()
            drain()
        return snap

    eng.start()
    try:
        poll_until(time.monotonic() + args.warmup)
        s0, c0, w0 = eng.snapshot(), cpu_s(), time.monotonic()
        poll_until(w0 + args.duration)
        s1, c1, w1 = eng.snapshot(), cpu_s(), time.monotonic()
    finally:
        eng.stop()
    drain()

    failures = {k: s1.requests_by_kind.get(k, 0) - s0.requests_by_kind.get(k, 0) for k in s1.requests_by_kind}
    failures = {k: v for k, v in failures.items() if v and k != "none"}
    result = {
        "client": "engine",
        "connections": args.connections,
        "workers": args.workers,
        "warmup_s": args.warmup,
        "wall_s": w1 - w0,
        "cpu_user_s": c1[0] - c0[0],
        "cpu_sys_s": c1[1] - c0[1],
        "vol_ctx_switches": c1[2] - c0[2],
        "invol_ctx_switches": c1[3] - c0[3],
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
        "records_drained_total": records,
        "records_failed_total": record_errors,
        "records_dropped": s1.records_dropped,
        "itl_p50_ms": s1.itl_ns.percentile(50) / 1e6 if s1.itl_ns.count else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
