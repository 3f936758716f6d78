#!/usr/bin/env python3
"""The Python side stays flat: CPU of the orchestration (everything but the engine's native
workers) per minute of a long AA-profile probe.

Starts the built-in simulator as its own process (``serve-sim``, null model), then one
``agentperf-native run`` probe at ``--agents`` agents with ``--profile aa`` (30 s warm-up, a window
of at least 10 minutes) against it. Every ``--every`` seconds it reads the run process's per-thread
CPU time from ``/proc/PID/task/*/stat``: threads named ``apn-worker-*`` are the engine's native
workers; every other thread (the asyncio loop, the records writer, executors) is the Python side.
It prints, and writes as JSON, the Python side's and the workers' CPU-seconds per minute over the
window (from ``phases.json``'s window start), so the first and the last minute can be compared.

    python benchmarks/bench_python_side.py --agents 1000 --json benchmarks/python-side-2cpu-vm.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentperf_native.microbench import cpu

def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds by side: ``workers`` (native engine threads) and ``python`` (every other thread)."""
    threads = cpu.sample(pid).threads.values()
    workers = sum(ns for name, ns in threads if cpu.is_client_thread(name)) / 1e9
    return {"workers": workers, "python": sum(ns for _, ns in threads) / 1e9 - workers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--every", type=float, default=60.0, help="seconds between CPU readings")
    ap.add_argument("--sim-ttft", default="200ms")
    ap.add_argument("--sim-itl", default="20ms")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    out = Path(tempfile.mkdtemp(prefix="apn-pyside-"))
    sim = subprocess.Popen([sys.executable, "-m", "agentperf_native.cli", "serve-sim", "--port", "0", "--ttft",
                            args.sim_ttft, "--itl", args.sim_itl], stdout=subprocess.PIPE, text=True)
    url = None
    for line in sim.stdout:  # type: ignore[union-attr]
        m = re.search(r"listening on (\S+)", line)
        if m:
            url = m.group(1)
            break
    assert url, "serve-sim did not start"
    cmd = [sys.executable, "-m", "agentperf_native.cli", "run", "--url", url, "--profile", "aa",
           "--start-concurrency", str(args.agents), "--max-concurrency", str(args.agents), "--tier", "1:1000",
           "--power", "none", "--ramp", "10s", "--out", str(out)]
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    readings = []  # (monotonic s, cpu by side)
    window_start = None
    try:
        while run.poll() is None:
            readings.append((time.monotonic(), thread_cpu(run.pid)))
            if window_start is None:
                try:
                    probes = json.loads((out / "phases.json").read_text())["probes"]
                    if probes and probes[0].get("state") == "measuring":
                        window_start = time.monotonic()
                        print(f"window open at reading {len(readings)}", file=sys.stderr)
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(args.every)
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=600)
        sim.send_signal(signal.SIGINT)
        sim.wait(timeout=30)
    minutes = []
    for (t0, c0), (t1, c1) in zip(readings, readings[1:]):
        if window_start is not None and t0 >= window_start - 1:
            span = (t1 - t0) / 60.0
            minutes.append({"minute": len(minutes) + 1, "python_cpu_s_per_min": (c1["python"] - c0["python"]) / span,
                            "workers_cpu_s_per_min": (c1["workers"] - c0["workers"]) / span})
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    result = {"command": " ".join(cmd), "agents": args.agents, "machine": platform.platform(),
              "cpus": os.cpu_count(), "minutes": minutes, "results_dir": str(out),
              "probe": (json.loads((out / "phases.json").read_text())["probes"] or [{}])[0]
              if (out / "phases.json").exists() else None,
              "validity": summary.get("validity")}
    for m in minutes:
        print(f"minute {m['minute']:2d}: python side {m['python_cpu_s_per_min']:6.2f} CPU-s/min, "
              f"engine workers {m['workers_cpu_s_per_min']:6.2f} CPU-s/min")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not minutes:
        print(err[-2000:], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
