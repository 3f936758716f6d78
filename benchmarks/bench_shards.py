#!/usr/bin/env python3
"""More HTTP/1.1 agents than one process can open sockets for: ``run --shards`` against ``serve-sim --processes``.

One process can open about 20,000 sockets here (the hard RLIMIT_NOFILE), so 25,000 HTTP/1.1 agents
(one keep-alive connection each) need at least two client processes and two server processes.
This runs, as a user would:

    agentperf-native serve-sim --port 0 --processes P --ttft TTFT --itl ITL
    agentperf-native run --url URL --concurrency N --shards S --protocol h1 --ramp R --warmup W \\
        --duration D --tool-delay fixed:T --trajectories (one conversation of --turns turns of
        --tokens output tokens each) --power none --out OUT

Long tool delays and short outputs keep the event rate low enough for 2 cores (N / T requests/s).
Sampled every second from outside (``/proc/PID/stat`` and ``/proc/PID/status`` of the driver, each
shard — pids from the run's manifest — and each server process): RSS and CPU time. Recorded:

* **memory per agent**: the shards' RSS summed in the middle of the window, divided by N (and the
  same minus the shards' RSS before any agent existed, i.e. what the agents themselves cost);
* **client CPU per event**: the driver's and shards' CPU time over the measured window, divided by
  the output events (SSE events carrying output) of the requests that finished inside it; also per
  request;
* failures (must be 0), requests, the lowest number of connections the shards held in the window.

The runner fails (exit 1) when a request failed or the run is not complete.

    python benchmarks/bench_shards.py --agents 25000 --json benchmarks/shards-2cpu-vm.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procwatch import CLI, Sampler, children, proc_sample, start_serve_sim  # noqa: E402

def write_trajectory(path: Path, turns: int, tokens: int) -> None:
    conv = {"id": "bench", "system": "You are a test.",
            "turns": [{"messages": [{"role": "user", "content": f"step {i}"}], "output_tokens": tokens,
                       "tool_delay_s": 1.0} for i in range(turns)]}
    path.write_text(json.dumps(conv) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=25_000)
    ap.add_argument("--shards", default="2")
    ap.add_argument("--processes", type=int, default=2, help="serve-sim processes")
    ap.add_argument("--duration", default="60s")
    ap.add_argument("--ramp", default="25s")
    ap.add_argument("--warmup", default="30s")
    ap.add_argument("--tool-delay", type=float, default=30.0)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=4)
    ap.add_argument("--ttft", default="50ms")
    ap.add_argument("--itl", default="10ms")
    ap.add_argument("--out", default=None, help="results directory (default: a temporary one)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    out = Path(args.out) if args.out else tmp / "results"
    traj = tmp / "bench.jsonl"
    write_trajectory(traj, args.turns, args.tokens)
    sampler = Sampler()
    server, url = start_serve_sim("--processes", str(args.processes), "--ttft", args.ttft, "--itl", args.itl)
    try:
        sampler.pids["server0"] = server.pid
        for i, child in enumerate(children(server.pid), start=1):
            sampler.pids[f"server{i}"] = child
        cmd = CLI + ["run", "--url", url, "--model", "agentperf-sim", "--trajectories", str(traj), "--concurrency",
                     str(args.agents), "--duration", args.duration, "--ramp", args.ramp, "--warmup", args.warmup,
                     "--shards", args.shards, "--protocol", "h1", "--tool-delay", f"fixed:{args.tool_delay:g}",
                     "--power", "none", "--out", str(out)]
        print("$ " + " ".join(cmd[2:]), file=sys.stderr)
        run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler.pids["driver"] = run.pid
        sampler.start()
        baseline: dict[str, tuple] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:  # the shards' pids, from the manifest
            try:
                shards = json.loads((out / "manifest.json").read_text())["shards"]["shards"]
                for s in shards:
                    sampler.pids[f"shard{s['index']}"] = s["pid"]
                    baseline[f"shard{s['index']}"] = proc_sample(s["pid"])
                break
            except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
                time.sleep(0.2)
        stdout, stderr = run.communicate()
        sampler.stop.set()
        sampler.join()
    finally:
        server.terminate()
        server_err = server.communicate(timeout=60)[1]
    print(stderr[-3000:], file=sys.stderr)
    if run.returncode != 0:
        print(f"run failed ({run.returncode})", file=sys.stderr)
        return 1

    from agentperf_native.results import read_records

    summary = json.loads((out / "summary.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    phase = summary["phase"]
    w0, w1 = phase["window_start_ns"], phase["window_end_ns"]
    records = read_records(out)
    inside = (records["done_ns"] >= w0) & (records["done_ns"] < w1)
    events = int(records["output_events"][inside].sum())
    requests = int(np.count_nonzero(inside))
    a, mid, b = sampler.at(w0), sampler.at((w0 + w1) // 2), sampler.at(w1)
    client = [k for k in mid if k.startswith("shard") or k == "driver"]
    cpu = sum(b[k][0] - a[k][0] for k in client if k in a and k in b)
    shard_rss = sum(v[1] for k, v in mid.items() if k.startswith("shard"))
    shard_base = sum(v[1] for k, v in baseline.items() if v)
    in_window = [row for t, row in sampler.samples if w0 <= t < w1]
    min_fds = min((sum(v[2] for k, v in row.items() if k.startswith("shard")) for row in in_window), default=-1)
    result = {
        "command": " ".join(["agentperf-native"] + cmd[3:]),
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(),
                    "rlimit_nofile": __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)},
        "agents": args.agents, "shards": manifest["shards"]["count"], "server_processes": args.processes,
        "window_s": phase["duration_s"], "requests": phase["requests"], "requests_failed": phase["requests_failed"],
        "failures_by_kind": phase["failures_by_kind"], "records": len(records),
        "records_failed": int(np.count_nonzero(records["error_kind"] != 0)),
        "ttft_p50_s": phase["ttft_s"]["p50"], "ttft_p99_s": phase["ttft_s"]["p99"],
        "send_lateness_p99_ms": phase["send_lateness_p99_ms"],
        "min_shard_fds_in_window": min_fds,
        "shard_rss_bytes": shard_rss, "shard_rss_before_agents_bytes": shard_base,
        "memory_per_agent_bytes": shard_rss / args.agents,
        "memory_per_agent_marginal_bytes": (shard_rss - shard_base) / args.agents,
        "driver_rss_bytes": mid.get("driver", (0, 0, 0))[1],
        "server_rss_bytes": sum(v[1] for k, v in mid.items() if k.startswith("server")),
        "client_cpu_s_in_window": cpu, "output_events_in_window": events, "requests_done_in_window": requests,
        "client_cpu_us_per_event": 1e6 * cpu / events if events else None,
        "client_cpu_us_per_request": 1e6 * cpu / requests if requests else None,
        "client_cpu_share": cpu / phase["duration_s"],
        "per_process_cpu_s_in_window": {k: b[k][0] - a[k][0] for k in mid if k in a and k in b},
        "shard_clocks": [s["clock"] for s in manifest["shards"]["shards"]],
        "server_stop_line": server_err.strip().splitlines()[-1] if server_err.strip() else "",
        "validity": summary["validity"],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    ok = summary["complete"] and phase["requests_failed"] == 0 and result["records_failed"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
