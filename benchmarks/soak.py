#!/usr/bin/env python3
"""Soak: a long run at 2,000 agents against the simulator with 1 % mixed faults.

Question: does the client hold steady for half an hour under a misbehaving server — memory and open
descriptors flat after the first minute, every injected fault accounted for in the records? It runs
as a user would:

    agentperf-native serve-sim --port 0 --ttft TTFT --itl ITL --fault KIND=P ... (1 % in all)
    agentperf-native run --url URL --concurrency 2000 --duration 30m --protocol h1 \\
        --trajectories (growing-context conversations) --tool-delay fixed:T --power none --out OUT

Sampled every ``--every`` seconds from outside (``/proc``): the client's and the server's RSS, open
descriptors and CPU time. At the end, the simulator's own count of injected faults
(``agentperf_sim_faults_injected_total`` on its ``/metrics``) is set against the error kinds of the
records in ``requests.bin``:

* http_500 + http_429 + http_503 → records of kind ``http_status`` (by status code: 500, 429, 503);
* reset → ``reset``; truncate → ``truncated`` (or ``reset``: the close can come as a reset);
* malformed → ``sse_malformed``; stall (never answers) → ``timeout`` at ``--request-timeout``.

The server also counts the pre-flight's requests, which are not records, and requests still in
flight at the end of the run are recorded as ``cancelled`` (the server injected their fault, or not,
before the client stopped waiting): both are reported, and the accounting must close within them.
"Flat": the least-squares slope of RSS and of descriptors over the samples after the first minute,
and their range. The runner fails (exit 1) when the run did not complete, a fault is unaccounted
for, or a request failed in a way no fault explains.

    python benchmarks/soak.py --json benchmarks/soak-2cpu-vm.json              # 30 min, 2,000 agents
    python benchmarks/soak.py --agents 200 --duration 2m                        # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procwatch import CLI, Sampler, start_serve_sim  # noqa: E402

# 1 % in all, each kind of fault the simulator can inject that ends a request badly
FAULTS = {"http_500": 0.002, "http_429": 0.0015, "http_503": 0.0015, "reset": 0.0015, "truncate": 0.0015,
          "malformed": 0.0015, "stall": 0.0005}
WORDS = "the quick brown fox jumps over a lazy dog while tools run and files change".split()


def write_trajectories(path: Path, conversations: int, turns: int, words: int, tokens: int) -> None:
    """Conversations whose context grows every turn (each user turn adds ``words`` words)."""
    with path.open("w") as f:
        for c in range(conversations):
            turn_list = []
            for t in range(turns):
                text = " ".join(WORDS[(c + t + i) % len(WORDS)] for i in range(words))
                turn_list.append({"messages": [{"role": "user", "content": f"c{c} t{t}: {text}"}],
                                  "output_tokens": tokens, "tool_delay_s": 1.0})
            f.write(json.dumps({"id": f"soak-{c}", "system": "You are a coding agent.", "turns": turn_list}) + "\n")


def sim_counters(url: str) -> dict[str, float]:
    """The simulator's counters from its ``/metrics`` page: ``name{labels}`` → value."""
    base = url.rsplit("/v1", 1)[0]
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(agentperf_sim_[a-z_]+(?:\{[^}]*\})?) ([0-9.eE+-]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def slope_per_min(ts_s: np.ndarray, ys: np.ndarray) -> float:
    return float(np.polyfit(ts_s / 60.0, ys, 1)[0]) if len(ts_s) > 2 else 0.0


def flatness(samples: list, name: str, t0_ns: int, skip_s: float, end_ns: int) -> dict:
    """RSS and descriptors of process ``name`` from ``skip_s`` seconds after ``t0_ns`` until ``end_ns``
    (the end of the measured phase: after it the run tears down and writes its report): range and slope."""
    rows = [(t, row[name]) for t, row in samples if name in row and (t - t0_ns) / 1e9 >= skip_s and t <= end_ns]
    if not rows:
        return {}
    ts = np.array([(t - t0_ns) / 1e9 for t, _ in rows])
    rss = np.array([v[1] for _, v in rows]) / 2**20
    fds = np.array([v[2] for _, v in rows], dtype=float)
    return {"samples": len(rows), "rss_mib_first": round(float(rss[0]), 1), "rss_mib_last": round(float(rss[-1]), 1),
            "rss_mib_min": round(float(rss.min()), 1), "rss_mib_max": round(float(rss.max()), 1),
            "rss_mib_per_min": round(slope_per_min(ts, rss), 3),
            "fds_min": int(fds.min()), "fds_max": int(fds.max()), "fds_per_min": round(slope_per_min(ts, fds), 3)}


def account(records: np.ndarray, counters: dict[str, float]) -> dict:
    """Injected faults (the server's count) against the records' error kinds."""
    from agentperf_native.engine import ERROR_KINDS

    kind = np.array(ERROR_KINDS)[records["error_kind"]]
    status = records["http_status"]
    injected = {k: int(counters.get(f'agentperf_sim_faults_injected_total{{kind="{k}"}}', 0)) for k in FAULTS}
    rec = {
        "http_500": int(np.count_nonzero((kind == "http_status") & (status == 500))),
        "http_429": int(np.count_nonzero((kind == "http_status") & (status == 429))),
        "http_503": int(np.count_nonzero((kind == "http_status") & (status == 503))),
        "reset+truncate": int(np.count_nonzero((kind == "reset") | (kind == "truncated"))),
        "malformed": int(np.count_nonzero(kind == "sse_malformed")),
        "stall": int(np.count_nonzero(kind == "timeout")),
    }
    inj = {**{k: injected[k] for k in ("http_500", "http_429", "http_503", "malformed", "stall")},
           "reset+truncate": injected["reset"] + injected["truncate"]}
    explained = {"http_status", "reset", "truncated", "sse_malformed", "timeout", "cancelled", "none"}
    other = {k: int(n) for k, n in zip(*np.unique(kind, return_counts=True)) if k not in explained}
    return {"injected": injected, "by_fault": {k: {"injected": inj[k], "recorded": rec[k]} for k in inj},
            "cancelled_at_stop": int(np.count_nonzero(kind == "cancelled")), "unexplained_failures": other,
            "server_requests": int(counters.get("agentperf_sim_requests_total", 0)), "records": len(records)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=2000)
    ap.add_argument("--duration", default="30m")
    ap.add_argument("--ramp", default="20s")
    ap.add_argument("--every", type=float, default=10.0, help="sampling interval, s")
    ap.add_argument("--tool-delay", type=float, default=2.0)
    ap.add_argument("--conversations", type=int, default=64)
    ap.add_argument("--turns", type=int, default=12)
    ap.add_argument("--words", type=int, default=120, help="words added to the context per turn")
    ap.add_argument("--tokens", type=int, default=48, help="output tokens per turn")
    ap.add_argument("--ttft", default="100ms")
    ap.add_argument("--itl", default="20ms")
    ap.add_argument("--request-timeout", default="20s")
    ap.add_argument("--out", default=None, help="results directory (default: a temporary one)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    out = Path(args.out) if args.out else tmp / "results"
    traj = tmp / "soak.jsonl"
    write_trajectories(traj, args.conversations, args.turns, args.words, args.tokens)
    fault_args = [a for k, p in FAULTS.items() for a in ("--fault", f"{k}={p:g}")]
    server_args = ["--ttft", args.ttft, "--itl", args.itl, "--stall", "0s", *fault_args]
    server_cmd = CLI + ["serve-sim", "--port", "0", *server_args]
    server, url = start_serve_sim(*server_args)
    sampler = Sampler(args.every)
    try:
        cmd = CLI + ["run", "--url", url, "--model", "agentperf-sim", "--trajectories", str(traj),
                     "--concurrency", str(args.agents), "--duration", args.duration, "--ramp", args.ramp,
                     "--warmup", "0s", "--protocol", "h1", "--tool-delay", f"fixed:{args.tool_delay:g}",
                     "--request-timeout", args.request_timeout, "--power", "none", "--out", str(out)]
        print("$ " + " ".join(["agentperf-native"] + server_cmd[3:]), file=sys.stderr)
        print("$ " + " ".join(["agentperf-native"] + cmd[3:]), file=sys.stderr)
        t0 = time.monotonic_ns()
        run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler.pids.update(client=run.pid, server=server.pid)
        sampler.start()
        stdout, stderr = run.communicate()
        wall_s = (time.monotonic_ns() - t0) / 1e9
        sampler.stop.set()
        sampler.join()
        counters = sim_counters(url)
    finally:
        server.terminate()
        server.communicate(timeout=60)
    print(stderr[-3000:], file=sys.stderr)

    from agentperf_native.results import read_records

    summary = json.loads((out / "summary.json").read_text())
    records = read_records(out)
    acc = account(records, counters)
    samples = sampler.samples
    series = [{"t_s": round((t - t0) / 1e9, 1),
               **{f"{n}_rss_mib": round(row[n][1] / 2**20, 1) for n in ("client", "server") if n in row},
               **{f"{n}_fds": row[n][2] for n in ("client", "server") if n in row},
               **{f"{n}_cpu_s": round(row[n][0], 1) for n in ("client", "server") if n in row}}
              for t, row in samples]
    phase = summary.get("phase") or {}
    end_ns = phase.get("window_end_ns") or samples[-1][0]  # the engine's clock is CLOCK_MONOTONIC too
    result = {
        "command": " ".join(["agentperf-native"] + cmd[3:]),
        "server_command": " ".join(["agentperf-native"] + server_cmd[3:]),
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(),
                    "loadavg_at_end": os.getloadavg(), "rlimit_nofile": resource.getrlimit(resource.RLIMIT_NOFILE)},
        "agents": args.agents, "wall_s": round(wall_s, 1), "exit_code": run.returncode,
        "complete": summary.get("complete"), "validity": summary.get("validity"),
        "requests": phase.get("requests"), "requests_failed": phase.get("requests_failed"),
        "failures_by_kind": phase.get("failures_by_kind"),
        "client": flatness(samples, "client", t0, 60.0, end_ns), "server": flatness(samples, "server", t0, 60.0, end_ns),
        "faults": acc, "series": series,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "series"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if verdict(result, acc) else 1


def verdict(result: dict, acc: dict) -> bool:
    """True when the run completed and every failure is an injected fault and every fault a failure
    (within the pre-flight's requests and the requests cut at the stop)."""
    problems = []
    if not result["complete"]:
        problems.append("the run did not complete")
    if acc["unexplained_failures"]:
        problems.append(f"failures no fault explains: {acc['unexplained_failures']}")
    slack = acc["cancelled_at_stop"] + (acc["server_requests"] - acc["records"])
    for k, v in acc["by_fault"].items():
        if v["recorded"] > v["injected"] or v["injected"] - v["recorded"] > slack:
            problems.append(f"{k}: injected {v['injected']}, recorded {v['recorded']} (slack {slack})")
    for p in problems:
        print("soak: " + p, file=sys.stderr)
    return not problems


if __name__ == "__main__":
    sys.exit(main())
