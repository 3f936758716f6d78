#!/usr/bin/env python3
"""Is the simulator ever the bottleneck? Paced streams served by ``serve-sim`` on one core.

Starts ``agentperf-native serve-sim`` pinned to one CPU (``taskset -c SERVER_CPU``) and drives it
with the native engine pinned to another (``CLIENT_CPU``; this process and its threads), STREAMS
agents, each repeating a one-turn request of TOKENS output tokens with no tool delay. Agents arrive
over one request cycle (a ramp) so that the streams' phases are spread.

Measured over DURATION_S after a warm-up:
- delivered output events per second (every inter-event gap the engine recorded, plus the first
  event of each request started) against the ideal rate the server's model promises
  (null: STREAMS * events per request / (TTFT + (events - 1) * ITL); batching: the closed form);
- per-request TTFT and output speed percentiles against the model's;
- the server process's CPU time per wall second, i.e. the fraction of its one core it used; what
  else ran on that core (/proc/stat); the client's CPU and the load average, since a shared machine
  makes other work compete (CPU: agentperf_native.microbench.cpu).

Usage: bench_sim_streams.py [--streams 1000] [--duration 20] [--warmup 5] [--preset null|gb300-class|...]
       [--ttft 0.05] [--itl 0.01] [--tokens 64] [--server-cpu 1] [--client-cpu 0] [--protocol h1|h2]
Prints one JSON object; --markdown also prints a table row for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

import agentperf_native as ap
from agentperf_native.microbench import cpu
from agentperf_native.sim.closed_form import WorkloadShape, predict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--preset", default="null")
    p.add_argument("--ttft", type=float, default=0.05, help="null preset: seconds")
    p.add_argument("--itl", type=float, default=0.01, help="null preset: seconds")
    p.add_argument("--tokens", type=int, default=64, help="output tokens per request")
    p.add_argument("--server-cpu", type=int, default=1)
    p.add_argument("--client-cpu", type=int, default=0)
    p.add_argument("--client-workers", type=int, default=1)
    p.add_argument("--protocol", choices=["h1", "h2"], default="h1", help="h2: h2c, 100 streams per connection")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()

    cmd = ["taskset", "-c", str(args.server_cpu), sys.executable, "-m", "agentperf_native.cli", "serve-sim",
           "--port", "0", "--preset", args.preset, "--ttft", f"{args.ttft}s", "--itl", f"{args.itl}s"]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if "listening on" not in line:
            raise SystemExit(f"serve-sim did not start: {line}{server.stderr.read()}")
        url = line.strip().split()[-1]
        os.sched_setaffinity(0, {args.client_cpu})  # the engine's threads inherit it

        content = "Write a short story about a benchmark."
        conv = ap.Conversation(turns=[ap.Turn(messages=[{"role": "user", "content": content}],
                                              output_tokens=args.tokens)])
        workload = ap.encode([conv], model="agentperf-sim")
        if args.preset == "null":
            events = args.tokens
            cycle = args.ttft + (events - 1) * args.itl
            ideal_ttft, ideal_speed = args.ttft, (args.tokens - 1) / ((events - 1) * args.itl)
        else:
            from agentperf_native.sim.presets import get_preset

            params = get_preset(args.preset).batching
            prompt = -(-len(json.dumps([{"role": "user", "content": "[rid:0123456789abcdef] " + content}],
                                       separators=(",", ":"))) // 4)
            pred = predict(args.streams, params, WorkloadShape(prompt, args.tokens))
            events = 1 + -(-(args.tokens - 1) // params.tokens_per_chunk)
            cycle, ideal_ttft, ideal_speed = pred.cycle_s, pred.ttft_p95_s, pred.output_speed_p25_tps
        ideal_events_per_s = args.streams * events / cycle
        engine = ap.Engine(url, workload, workers=args.client_workers, random_start_turn=False,
                           spawn_interval_s=cycle / args.streams, protocol=args.protocol)
        engine.set_concurrency(args.streams)
        engine.start()
        chunks = []
        try:
            time.sleep(cycle + args.warmup)
            chunks.append(engine.drain_records())
            s0, w0 = engine.snapshot(), time.monotonic()
            c0, r0 = cpu.process_cpu_s(server.pid), cpu.sample()
            b0, k0 = cpu.core_busy_s(args.server_cpu), cpu.core_busy_s(args.client_cpu)
            deadline = w0 + args.duration
            while (t := time.monotonic()) < deadline:
                time.sleep(min(0.5, deadline - t))
                chunks.append(engine.drain_records())
            s1, w1 = engine.snapshot(), time.monotonic()
            c1, r1 = cpu.process_cpu_s(server.pid), cpu.sample()
            b1, k1 = cpu.core_busy_s(args.server_cpu), cpu.core_busy_s(args.client_cpu)
        finally:
            engine.stop()
        records = np.concatenate(chunks + [engine.drain_records()])
    finally:
        server.terminate()
        server.wait(timeout=10)

    wall = w1 - w0
    client_cpu_s = cpu.cpu_between(r0, r1)["total_s"]
    start_ns, end_ns = s0.taken_ns, s1.taken_ns
    # Requests scheduled in the window that could finish before it closed (the rest are cancelled by stop()).
    window = ap.summarize(records, concurrency=args.streams, window_start_ns=start_ns,
                          window_end_ns=end_ns - int(cycle * 1e9))
    delivered = (s1.itl_ns.count - s0.itl_ns.count) + (s1.requests_started - s0.requests_started)
    result = {
        "preset": args.preset,
        "protocol": args.protocol,
        "streams": args.streams,
        "tokens": args.tokens,
        "events_per_request": events,
        "wall_s": wall,
        "ideal_events_per_s": ideal_events_per_s,
        "delivered_events_per_s": delivered / wall,
        "delivered_vs_ideal": delivered / wall / ideal_events_per_s,
        "server_cpu_core_fraction": (c1 - c0) / wall,
        # Everything else that ran on the server's core meanwhile (other processes, softirqs charged there).
        "server_core_others_fraction": max(0.0, (b1 - b0) - (c1 - c0)) / wall,
        "client_core_others_fraction": max(0.0, (k1 - k0) - client_cpu_s) / wall,
        "load_average_1m": os.getloadavg()[0],
        "client_cpu_core_fraction": client_cpu_s / wall,
        "requests": window.requests_total,
        "failed": window.requests_failed,
        "ideal_ttft_s": ideal_ttft,
        "ttft_p50_s": window.ttft_s["p50"],
        "ttft_p95_s": window.ttft_s["p95"],
        "ttft_p99_s": window.ttft_s["p99"],
        "ideal_output_speed_tps": ideal_speed,
        "output_speed_p5_tps": window.output_speed_tps["p5"],
        "output_speed_p50_tps": window.output_speed_tps["p50"],
        "server_cpu": args.server_cpu,
        "client_cpu": args.client_cpu,
    }
    print(json.dumps(result))
    if args.markdown:
        r = result
        print(f"| {r['preset']} | {r['protocol']} | {r['streams']} | {r['ideal_events_per_s']:,.0f} | "
              f"{r['delivered_events_per_s']:,.0f} ({r['delivered_vs_ideal']:.1%}) | {r['server_cpu_core_fraction']:.0%} | "
              f"{r['ttft_p50_s'] * 1e3:.1f} / {r['ttft_p95_s'] * 1e3:.1f} (ideal {r['ideal_ttft_s'] * 1e3:.1f}) | "
              f"{r['output_speed_p5_tps']:.1f} / {r['output_speed_p50_tps']:.1f} "
              f"(ideal {r['ideal_output_speed_tps']:.1f}) "
              f"| {r['failed']} | {r['server_core_others_fraction']:.0%} / {r['client_core_others_fraction']:.0%} |")


if __name__ == "__main__":
    main()
