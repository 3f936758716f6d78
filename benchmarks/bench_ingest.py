#!/usr/bin/env python3
"""Client overhead: output events ingested per client CPU-second, raw C vs engine vs Python.

Each client reads the same paced streams from the native simulated server (``serve-sim``, TTFT 0,
one event every ``--itl``, ``--tokens`` tokens per response) over ``--streams`` keep-alive
connections, sending the next request as soon as a response ends:

* ``raw_c``  - benchmarks/raw_epoll_reader.c, a raw epoll reader that only counts (the floor);
* ``baseline`` - the same kind of reader shipped in the package (``microbench --baseline``);
* ``engine`` - agentperf_native.Engine (one worker thread + the Python polling thread);
* ``python`` - benchmarks/python_uvloop_client.py, a plain asyncio/uvloop client that de-chunks,
               splits SSE events and json.loads each one (an asyncio.Protocol);
* ``python_streams`` - the same client written with asyncio streams (readline/readexactly).

The server runs as its own process pinned to ``--server-cpu``; each client runs pinned to
``--client-cpu``. A fresh server is started for each client run. Every client warms up for
``--warmup`` seconds, then counts output events (events that carry output text) over ``--duration``
seconds; its CPU is read from outside, the same way for every client
(``agentperf_native.microbench.cpu``: the on-CPU time of all its threads), inside that window. The runner prints a
table, the ratios engine/python and raw_c/engine against the targets, and fails (exit 1) when a
client received no events or saw errors.

Run it with the Python that has agentperf_native and uvloop installed::

    python benchmarks/bench_ingest.py --streams 1000 --duration 20 --repeat 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from agentperf_native.endpoint import Endpoint
from agentperf_native.microbench import cpu
from agentperf_native.microbench.bench import machine
from agentperf_native.microbench.server import NullModel, ServerProcess

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RAW_SRC = HERE / "raw_epoll_reader.c"
DEFAULT_RAW_BIN = HERE / "build" / "raw_epoll_reader"

TARGET_ENGINE_OVER_PYTHON = 10.0  # the engine ingests >= 10x the events per CPU-second of Python
TARGET_RAW_OVER_ENGINE = 2.0      # ... and is within 2x of the raw C reader

CLIENTS = ("raw_c", "baseline", "engine", "python", "python_streams")
PERF_EVENTS = ("task-clock,context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_read,"
               "syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_write,"
               "syscalls:sys_enter_writev")


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# Building the raw reader


def build_raw(bin_path: Path, how: str) -> Path:
    """Builds raw_epoll_reader when missing or older than its source; returns the binary's path."""
    if bin_path.exists() and bin_path.stat().st_mtime >= RAW_SRC.stat().st_mtime:
        return bin_path
    bin_path.parent.mkdir(parents=True, exist_ok=True)
    if how == "cmake":
        build_dir = bin_path.parent / "cmake"
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                        "-DAGENTPERF_BUILD_PYTHON=OFF", "-DAGENTPERF_BUILD_BENCHMARKS=ON"], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "raw_epoll_reader"], check=True,
                       stdout=subprocess.DEVNULL)
        shutil.copy2(build_dir / "raw_epoll_reader", bin_path)
    else:
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-O2", "-Wall", "-o", str(bin_path), str(RAW_SRC)], check=True)
    print(f"built {bin_path} ({how})", file=sys.stderr)
    return bin_path


# --------------------------------------------------------------------------------------------
# Processes, pinning, CPU accounting


NICE = 0  # set from --nice


def pin_fn(cpu: int | None):
    def setup() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        if NICE:
            os.setpriority(os.PRIO_PROCESS, 0, NICE)
    return setup if (cpu is not None or NICE) else None


def plan_pinning(args) -> dict:
    """Which CPUs the server and the clients run on, or why they are not pinned."""
    if args.no_pin:
        return {"pinned": False, "why": "--no-pin", "server_cpu": None, "client_cpu": None}
    if not hasattr(os, "sched_setaffinity"):
        return {"pinned": False, "why": "os.sched_setaffinity is unavailable", "server_cpu": None, "client_cpu": None}
    allowed = sorted(os.sched_getaffinity(0))
    if args.server_cpu not in allowed or args.client_cpu not in allowed or args.server_cpu == args.client_cpu:
        return {"pinned": False, "why": f"CPUs {args.server_cpu}/{args.client_cpu} not both available in {allowed}",
                "server_cpu": None, "client_cpu": None}
    return {"pinned": True, "why": "", "server_cpu": args.server_cpu, "client_cpu": args.client_cpu,
            "allowed_cpus": allowed}


def sample_cpus(pinning: dict, client_pid: int, server_pid: int) -> dict:
    out = {"t": time.monotonic(), "client": cpu.process_cpu_s(client_pid), "server": cpu.process_cpu_s(server_pid)}
    if pinning["pinned"]:
        out["client_cpu"] = cpu.core_busy_s(pinning["client_cpu"])
        out["server_cpu"] = cpu.core_busy_s(pinning["server_cpu"])
    return out


def window_cpu(a: dict, b: dict) -> dict:
    """The client's and the server's CPU per wall second between two samples, and what else ran on
    their CPUs (share of one CPU) when pinned."""
    dt = b["t"] - a["t"]
    res = {"window_s": dt, "client_cpu_share": (b["client"] - a["client"]) / dt,
           "server_cpu_share": (b["server"] - a["server"]) / dt}
    if "client_cpu" in a:
        for side in ("client", "server"):
            busy = b[f"{side}_cpu"] - a[f"{side}_cpu"]
            res[f"{side}_cpu_other_share"] = max(0.0, busy - (b[side] - a[side])) / dt
    return res


def start_server(args, cpu_index: int | None) -> ServerProcess:
    """The null server (TTFT 0, one event every --itl, --tokens per response) in its own process."""
    faults = dict(f.partition("=")[::2] for f in args.sim_fault)
    return ServerProcess(NullModel(ttft_s=0.0, itl_s=parse_ns(args.itl) / 1e9, tokens=args.tokens), cpu=cpu_index,
                         nice=NICE, faults={k: float(v or 1) for k, v in faults.items()})


def client_cmd(name: str, args, raw_bin: Path, host: str, port: int) -> list[str]:
    common = [host, str(port), str(args.streams), str(args.duration)]
    if name == "raw_c":
        return [str(raw_bin), *common, str(args.warmup), str(args.tokens)]
    if name in ("engine", "baseline"):
        return [sys.executable, str(HERE / "engine_client.py"), *common, "--warmup", str(args.warmup),
                "--max-tokens", str(args.tokens), "--client", name]
    api = "streams" if name == "python_streams" else "protocol"
    return [sys.executable, str(HERE / "python_uvloop_client.py"), *common, "--warmup", str(args.warmup),
            "--max-tokens", str(args.tokens), "--api", api]


def profile_client(pid: int, name: str, args, rnd: int) -> dict:
    """perf stat (syscall and context-switch counts), then perf record -g, inside the measured window."""
    span = max(1.0, min(5.0, (args.duration - 2) / 2))
    time.sleep(args.warmup + 1)
    out = {"window_s": span}
    stat_file = args.profile / f"{name}-round{rnd}.perf-stat.txt"
    r = subprocess.run(["perf", "stat", "-x", ",", "-e", PERF_EVENTS, "-p", str(pid), "--", "sleep", str(span)],
                       capture_output=True, text=True)
    stat_file.write_text(r.stderr)
    for line in r.stderr.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[0].replace(".", "", 1).isdigit():
            out[f[2]] = float(f[0])
    data = args.profile / f"{name}-round{rnd}.perf.data"
    subprocess.run(["perf", "record", "-F", "1999", "-g", "-o", str(data), "-p", str(pid), "--", "sleep", str(span)],
                   capture_output=True)
    out["perf_data"] = str(data)
    return out


def run_client(name: str, args, raw_bin: Path, pinning: dict, rnd: int) -> dict:
    server = start_server(args, pinning["server_cpu"])
    ep = Endpoint.parse(server.url)
    try:
        load_before = os.getloadavg()
        cmd = client_cmd(name, args, raw_bin, ep.host, ep.port)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=pin_fn(pinning["client_cpu"]))
        profile = profile_client(proc.pid, name, args, rnd) if args.profile else None
        # CPU from outside, the same way for every client (agentperf_native.microbench.cpu), inside
        # the client's own window: [warm-up + 0.5 s, warm-up + duration - 0.5 s] after its start.
        time.sleep(max(0.0, args.warmup + 0.5 - (time.monotonic() - t0)))
        a = sample_cpus(pinning, proc.pid, server.proc.pid)
        time.sleep(max(0.5, args.duration - 1.0 - (args.profile is not None) * (time.monotonic() - a["t"])))
        b = sample_cpus(pinning, proc.pid, server.proc.pid)
        measured = window_cpu(a, b)
        try:
            stdout, stderr = proc.communicate(timeout=args.warmup + args.duration + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
    finally:
        server.stop()
    if proc.returncode != 0:
        raise BenchError(f"{name} exited with {proc.returncode}: {stderr[-3000:]}")
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise BenchError(f"{name} printed no JSON: {stdout[-2000:]} {stderr[-2000:]}")
    r = json.loads(lines[-1])
    r["client"] = name
    r["command"] = cmd
    r["load_avg_before"] = [round(x, 2) for x in load_before]
    r["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    r.update(measured)
    ideal = args.streams * 1e9 / parse_ns(args.itl)
    # Events per CPU-second = the client's event rate over its own window / its CPU rate inside it.
    r["events_per_s"] = r["output_events"] / r["wall_s"] if r["wall_s"] > 0 else 0.0
    r["ideal_events_per_s"] = ideal
    r["delivered_fraction"] = r["events_per_s"] / ideal if ideal > 0 else float("nan")
    share = r["client_cpu_share"]
    r["events_per_cpu_s"] = r["events_per_s"] / share if share > 0 else float("inf")
    r["cpu_us_per_event"] = share * 1e6 / r["events_per_s"] if r["events_per_s"] else float("nan")
    if profile:
        rate = r["events_per_s"] * profile["window_s"]
        if rate > 0:
            for key in list(profile):
                if key.startswith(("raw_syscalls", "syscalls", "context-switches")):
                    profile[key.split(":")[-1] + "_per_event"] = profile[key] / rate
        r["profile"] = profile
    return r


def parse_ns(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)\s*(ns|us|ms|s)", text.strip())
    if not m:
        raise ValueError(f"bad duration {text!r}; write e.g. 20ms")
    return float(m.group(1)) * {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[m.group(2)]


# --------------------------------------------------------------------------------------------
# Checks and reporting


def sanity_problems(r: dict) -> list[str]:
    problems = []
    if r.get("output_events", 0) <= 0:
        problems.append(f"{r['client']}: received no output events")
    if r.get("responses", 0) <= 0:
        problems.append(f"{r['client']}: completed no response")
    if r.get("errors", 0) != 0:
        problems.append(f"{r['client']}: saw {r['errors']} errors")
    if r.get("reconnects", 0) != 0:
        problems.append(f"{r['client']}: reconnected {r['reconnects']} times")
    if r.get("failures_by_kind"):
        problems.append(f"{r['client']}: failed requests {r['failures_by_kind']}")
    if r.get("records_failed_total", 0) != 0:
        problems.append(f"{r['client']}: {r['records_failed_total']} failed records")
    if r.get("records_dropped", 0) != 0:
        problems.append(f"{r['client']}: {r['records_dropped']} records dropped")
    return problems


def ratios(by_client: dict) -> dict:
    out = {}
    e = by_client.get("engine", {}).get("events_per_cpu_s")
    p = by_client.get("python", {}).get("events_per_cpu_s")
    c = by_client.get("raw_c", {}).get("events_per_cpu_s")
    if e and p:
        out["engine_over_python"] = e / p
    if c and e:
        out["raw_c_over_engine"] = c / e
    b = by_client.get("baseline", {}).get("events_per_cpu_s")
    if b and e:
        out["engine_over_baseline"] = e / b
    if b and c:
        out["raw_c_over_baseline"] = c / b
    ps = by_client.get("python_streams", {}).get("events_per_cpu_s")
    if e and ps:
        out["engine_over_python_streams"] = e / ps
    return out


def print_table(rounds: list[dict], args) -> None:
    hdr = (f"{'run':>3} {'client':<14} {'out events':>10} {'ev/s':>8} {'%ideal':>8}"
           f"{'cpu%':>5} {'ev/CPU-s':>9} {'us/ev':>6} {'srv cpu%':>8} {'other c/s':>9} {'load1':>5}")
    print(hdr)
    print("-" * len(hdr))
    for i, rnd in enumerate(rounds, 1):
        for name in args.clients:
            r = rnd["clients"].get(name)
            if not r:
                continue
            if "client_cpu_other_share" in r:
                other = f"{100 * r['client_cpu_other_share']:.0f}/{100 * r['server_cpu_other_share']:.0f}%"
            else:
                other = "-"
            print(f"{i:>3} {name:<14} {r['output_events']:>10} {r['events_per_s']:>8.0f} "
                  f"{100 * r['delivered_fraction']:>6.1f}%{'*' if r['delivered_fraction'] < args.min_delivered else ' '}"
                  f"{100 * r['client_cpu_share']:>4.0f}% {r['events_per_cpu_s']:>9.0f} {r['cpu_us_per_event']:>6.2f} "
                  f"{100 * r['server_cpu_share']:>7.0f}% {other:>9} {r['load_avg_before'][0]:>5.2f}")
        rt = rnd["ratios"]
        parts = []
        if "engine_over_python" in rt:
            parts.append(f"engine/python {rt['engine_over_python']:.2f}x (target >= {TARGET_ENGINE_OVER_PYTHON:g}x)")
        if "raw_c_over_engine" in rt:
            parts.append(f"raw_c/engine {rt['raw_c_over_engine']:.2f}x (target <= {TARGET_RAW_OVER_ENGINE:g}x)")
        if "engine_over_python_streams" in rt:
            parts.append(f"engine/python_streams {rt['engine_over_python_streams']:.2f}x")
        if parts:
            print("    ratios: " + ", ".join(parts))


def summarize(rounds: list[dict], min_delivered: float) -> dict:
    per_client: dict[str, list[float]] = {}
    every: dict[str, list[float]] = {}
    for rnd in rounds:
        for name, r in rnd["clients"].items():
            every.setdefault(name, []).append(r["events_per_cpu_s"])
            if r["delivered_fraction"] >= min_delivered:
                per_client.setdefault(name, []).append(r["events_per_cpu_s"])
    for name, v in every.items():
        if name not in per_client:  # every run fell behind: use them all, flagged in the table
            per_client[name] = v
    med = {name: statistics.median(v) for name, v in per_client.items()}
    rt = ratios({name: {"events_per_cpu_s": v} for name, v in med.items()})
    verdict = {}
    if "engine_over_python" in rt:
        verdict["engine_over_python_met"] = rt["engine_over_python"] >= TARGET_ENGINE_OVER_PYTHON
    if "raw_c_over_engine" in rt:
        verdict["raw_c_over_engine_met"] = rt["raw_c_over_engine"] <= TARGET_RAW_OVER_ENGINE
    return {"median_events_per_cpu_s": med, "runs_in_median": {k: len(v) for k, v in per_client.items()},
            "ratios_of_medians": rt, "targets": verdict}


def machine_info() -> dict:
    info = machine()
    # Which source the numbers belong to (read-only git calls: no index refresh, no lock).
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, env=env).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, env=env).stdout.strip()
        info["git_head"] = head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def main() -> int:
    p = argparse.ArgumentParser(description="Events ingested per client CPU-second: raw C vs engine vs Python.")
    p.add_argument("--streams", type=int, default=1000, help="concurrent streams (connections)")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per client")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring (connects, ramp)")
    p.add_argument("--itl", default="20ms", help="server pacing between events")
    p.add_argument("--tokens", type=int, default=64, help="output tokens (events) per response")
    p.add_argument("--repeat", type=int, default=1, help="rounds (each round runs every client once)")
    p.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated subset of " + ",".join(CLIENTS))
    p.add_argument("--server-cpu", type=int, default=1)
    p.add_argument("--client-cpu", type=int, default=0)
    p.add_argument("--no-pin", action="store_true", help="do not pin server and client to CPUs")
    p.add_argument("--nice", type=int, default=0,
                   help="nice value for server and clients (e.g. -10 on a shared machine; negative needs root)")
    p.add_argument("--min-delivered", type=float, default=0.99,
                   help="a run that delivered less than this fraction of the ideal event rate is flagged "
                        "'behind' (the client fell behind, e.g. CPU contention, and batched reads) and left "
                        "out of the medians")
    p.add_argument("--raw-bin", type=Path, default=DEFAULT_RAW_BIN, help="raw_epoll_reader binary (built if missing)")
    p.add_argument("--build-with", choices=("cc", "cmake"), default="cc")
    p.add_argument("--sim-fault", action="append", default=[], metavar="KIND=P",
                   help="inject a server fault (serve-sim --fault); to check that the sanity checks fire")
    p.add_argument("--json", dest="json_out", type=Path, default=None, help="write all results here")
    p.add_argument("--profile", type=Path, default=None,
                   help="also run perf stat and perf record -g on each client mid-window, into this folder "
                        "(perturbs the CPU numbers a little; use for explanation, not for the table)")
    args = p.parse_args()
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    global NICE
    NICE = args.nice
    for c in args.clients:
        if c not in CLIENTS:
            p.error(f"unknown client {c!r}; choose from {', '.join(CLIENTS)}")
    parse_ns(args.itl)
    if args.streams < 1 or args.duration <= 0:
        p.error("--streams and --duration must be positive")

    raw_bin = build_raw(args.raw_bin, args.build_with) if "raw_c" in args.clients else args.raw_bin
    if args.profile:
        if not shutil.which("perf"):
            p.error("--profile needs perf on PATH")
        args.profile.mkdir(parents=True, exist_ok=True)
    pinning = plan_pinning(args)
    if not pinning["pinned"]:
        print(f"note: not pinned ({pinning['why']})", file=sys.stderr)

    rounds = []
    problems: list[str] = []
    for i in range(args.repeat):
        rnd = {"round": i + 1, "clients": {}}
        for name in args.clients:
            print(f"round {i + 1}/{args.repeat}: {name} ({args.streams} streams, {args.warmup:g}s warm-up + "
                  f"{args.duration:g}s)...", file=sys.stderr, flush=True)
            r = run_client(name, args, raw_bin, pinning, i + 1)
            rnd["clients"][name] = r
            problems += [f"round {i + 1}: {x}" for x in sanity_problems(r)]
        rnd["ratios"] = ratios(rnd["clients"])
        rounds.append(rnd)

    summary = summarize(rounds, args.min_delivered)
    print(f"\n{args.streams} streams x {args.tokens} tokens at {args.itl} (ideal {args.streams * 1e9 / parse_ns(args.itl):.0f} "
          f"events/s); {args.duration:g}s measured after {args.warmup:g}s warm-up; "
          + (f"server on CPU {pinning['server_cpu']}, client on CPU {pinning['client_cpu']}" if pinning["pinned"]
             else "not pinned"))
    print_table(rounds, args)
    med = summary["median_events_per_cpu_s"]
    rt = summary["ratios_of_medians"]
    if any(r["delivered_fraction"] < args.min_delivered for rnd in rounds for r in rnd["clients"].values()):
        print(f"  * fell behind (< {100 * args.min_delivered:g}% of ideal): batched reads; left out of the medians")
    print("  other c/s: share of the client's / the server's CPU used by other processes during the window")
    n = summary["runs_in_median"]
    print("\nmedian events per client CPU-second: " + ", ".join(f"{k} {v:.0f} ({n[k]} runs)" for k, v in med.items()))
    if "engine_over_python" in rt:
        ok = summary["targets"]["engine_over_python_met"]
        print(f"engine/python {rt['engine_over_python']:.2f}x (target >= {TARGET_ENGINE_OVER_PYTHON:g}x): "
              f"{'met' if ok else 'MISSED'}")
    if "raw_c_over_engine" in rt:
        ok = summary["targets"]["raw_c_over_engine_met"]
        print(f"raw_c/engine {rt['raw_c_over_engine']:.2f}x (target <= {TARGET_RAW_OVER_ENGINE:g}x): "
              f"{'met' if ok else 'MISSED'}")
    if "engine_over_python_streams" in rt:
        print(f"engine/python_streams {rt['engine_over_python_streams']:.2f}x")
    for key in ("engine_over_baseline", "raw_c_over_baseline"):
        if key in rt:
            print(f"{key.replace('_over_', '/')} {rt[key]:.3f}x")
    if args.profile:
        print("\nper output event (perf stat, mid-window): syscalls, read(), epoll waits, context switches")
        for rnd in rounds:
            for name, r in rnd["clients"].items():
                pr = r.get("profile", {})
                waits = pr.get("sys_enter_epoll_wait_per_event", 0) + pr.get("sys_enter_epoll_pwait_per_event", 0)
                print(f"  round {rnd['round']} {name:<14} {pr.get('sys_enter_per_event', float('nan')):5.2f} "
                      f"{pr.get('sys_enter_read_per_event', float('nan')):5.2f} {waits:5.2f} "
                      f"{pr.get('context-switches_per_event', float('nan')):5.3f}")

    if args.json_out:
        doc = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "machine": machine_info(), "pinning": pinning, "rounds": rounds, "summary": summary,
               "problems": problems, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"results: {args.json_out}")

    if problems:
        print("\nFAILED sanity checks:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench_ingest: {e}", file=sys.stderr)
        sys.exit(1)
