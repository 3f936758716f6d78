#!/usr/bin/env python3
"""HTTP/2 vs HTTP/1.1: output events per client CPU-second, against h2load; and 20,000+ agents over HTTP/2.

Part 1 (events per CPU-second). For each number of concurrent streams (``--streams``, default
1,000 and 10,000), each arrival pattern (``--arrivals``) and each client (``--clients``), a fresh
``agentperf-native serve-sim`` (null model, TTFT ``--ttft``, one event every ``--itl``, ``--tokens``
tokens per response; 0 s / 50 ms / 64: 20 tokens/s per stream) runs pinned to ``--server-cpu``
and one client runs pinned to ``--client-cpu``:

* ``h1``     - ``engine_client.py --protocol h1``: the engine, one keep-alive connection per stream;
* ``h2``     - ``engine_client.py --protocol h2``: the engine over h2c, ``--streams-per-connection``
               (100) streams per connection, so 10,000 streams use 100 connections;
* ``h2load`` - nghttp2's ``h2load -c CONNECTIONS -m STREAMS_PER_CONNECTION -D ... --warm-up-time ...``
               POSTing the same request body (``max_tokens`` = ``--tokens``, ``stream``, include_usage).

Every client sends the next request on a stream as soon as the previous response ends (closed loop).
Arrival patterns: ``spread`` - the streams start spread over one response time, so their events
are out of phase (the engine with ``--ramp``; h2load with ``--rps``, which paces each connection's
request starts, then keeps its ``-m`` streams busy); ``lockstep`` - every stream starts at once
(the engine without ramp; h2load's default), so events arrive in bursts, one per ITL.

Two numbers per run, over a window after ``--warmup``:

* h1, h2 (the engine): ``engine_client.py``'s own report over its ``--duration`` window, as in
  ``bench_ingest.py``: output events as they arrive (from its snapshot: inter-event gaps recorded
  plus the first event of each request started) and the CPU of every thread of its process (the
  native worker and the Python polling thread; ``agentperf_native.microbench.cpu``);
* h2load: measured from outside, from ``--warmup`` + 1 s to ``--warmup`` + ``--duration`` - 1 s after
  it starts (inside its ``-D`` measurement): **events** = the growth of the server's
  ``agentperf_sim_generation_tokens_total`` (read from ``/metrics`` over a keep-alive connection
  opened before the client): one output token per event (``tokens_per_chunk`` 1), i.e. the content
  events sent to h2load (role, usage and ``[DONE]`` don't count); **CPU** = the h2load process's
  on-CPU time by ``agentperf_native.microbench.cpu``, read at once after the counters.

The engine is measured the outside way too (``external`` in the JSON, "ext" in the table) as a
cross-check; it is left out where the server answered ``/metrics`` late (a server saturated by
10,000 HTTP/1.1 streams answers it seconds late, so the window's edges are unknown). h2load's own
report is kept as well: requests succeeded during its measurement times ``--tokens`` events, over
``-D`` seconds (exact only when responses end spread in time; in lock-step they end in bursts).

Part 2 (``--agents N``): the engine holds N agents over h2c (``--agents-streams-per-connection``
per connection) against serve-sim with a longer ITL (the event rate stays at ``--agents-rate``
events/s at most), for ``--agents-hold`` seconds after they all started. Recorded: the client's
VmRSS before the engine is created and after every agent is running (memory per agent), the
lowest agents_engaged / requests in flight / connections seen in the hold, failures, and the
server's running-requests gauge.

The runner fails (exit 1) when a client saw an error, an engine record failed, h2load reported a
failed request, the server rejected a request, or (part 2) an agent was not served.

    python benchmarks/bench_h2.py --repeat 2 --nice -10 --json benchmarks/h2-2cpu-vm.json --agents 20000
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentperf_native.microbench import cpu as cpuacct

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

TARGET_H2_OVER_H1 = 5.0       # HTTP/2 uses >= 5x fewer client CPU-seconds per event than HTTP/1.1 (10,000 streams)
TARGET_H2LOAD_OVER_H2 = 1.5   # ... and is within 1.5x of h2load on the same streams
CLIENTS = ("h1", "h2", "h2load")
ARRIVALS = ("spread", "lockstep")
PERF_EVENTS = ("task-clock,context-switches,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait,"
               "syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_writev,syscalls:sys_enter_write")


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# Processes, pinning, CPU and memory accounting

NICE = 0  # set from --nice


def pin_fn(cpu: int | None):
    def setup() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        if NICE:
            os.setpriority(os.PRIO_PROCESS, 0, NICE)
    return setup if (cpu is not None or NICE) else None


def plan_pinning(args) -> dict:
    if args.no_pin:
        return {"pinned": False, "why": "--no-pin", "server_cpu": None, "client_cpu": None}
    if not hasattr(os, "sched_setaffinity"):
        return {"pinned": False, "why": "os.sched_setaffinity is unavailable", "server_cpu": None, "client_cpu": None}
    allowed = sorted(os.sched_getaffinity(0))
    if args.server_cpu not in allowed or args.client_cpu not in allowed or args.server_cpu == args.client_cpu:
        return {"pinned": False, "why": f"CPUs {args.server_cpu}/{args.client_cpu} not both in {allowed}",
                "server_cpu": None, "client_cpu": None}
    return {"pinned": True, "why": "", "server_cpu": args.server_cpu, "client_cpu": args.client_cpu,
            "allowed_cpus": allowed}


def parse_metrics(text: str) -> dict[str, float]:
    """A Prometheus text page as {name: value} (unlabelled samples only)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


def parse_seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)\s*(us|ms|s)", text.strip())
    if not m:
        raise ValueError(f"bad duration {text!r}; write e.g. 50ms")
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


class Server:
    """serve-sim (null model) in its own process, pinned; the port comes from its 'listening on' line."""

    def __init__(self, *, ttft: str, itl: str, tokens: int, workers: int, cpu: int | None) -> None:
        self.cmd = [sys.executable, "-m", "agentperf_native.cli", "serve-sim", "--host", "127.0.0.1", "--port", "0",
                    "--ttft", ttft, "--itl", itl, "--tokens", str(tokens), "--workers", str(workers)]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=pin_fn(cpu))
        line = self.proc.stdout.readline()
        m = re.search(r"listening on http://([\d.]+):(\d+)/v1", line)
        if not m:
            self.proc.kill()
            raise BenchError(f"serve-sim did not start: {line!r} {self.proc.stderr.read()[-2000:]}")
        self.host, self.port = m.group(1), int(m.group(2))
        # /metrics over one keep-alive connection opened now: a new connection made while the
        # server is saturated by 10,000 HTTP/1.1 streams can wait seconds to be accepted.
        self._conn: http.client.HTTPConnection | None = None
        self.metrics()

    def metrics(self) -> dict[str, float]:
        for attempt in (0, 1):
            try:
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                self._conn.request("GET", "/metrics")
                resp = self._conn.getresponse()
                return parse_metrics(resp.read().decode())
            except (OSError, http.client.HTTPException):
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> str:
        if self._conn is not None:
            self._conn.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.strip()


def request_body(tokens: int) -> bytes:
    """The request h2load sends: the engine's request for this workload (same messages, max_tokens, stream)."""
    return json.dumps({"model": "agentperf-sim",
                       "messages": [{"role": "user",
                                     "content": "[rid:0123456789abcdef] Write a short story about a benchmark."}],
                       "max_tokens": tokens, "stream": True, "stream_options": {"include_usage": True}}).encode()


# --------------------------------------------------------------------------------------------
# Part 1: one client run


def cycle_s(args) -> float:
    """Seconds per response on the null model: TTFT, then (tokens - 1) gaps of ITL."""
    return parse_seconds(args.ttft) + (args.tokens - 1) * parse_seconds(args.itl)


def client_cmd(client: str, streams: int, arrivals: str, args, host: str, port: int, body_path: Path) -> list[str]:
    spc = args.streams_per_connection
    if client in ("h1", "h2"):
        return [sys.executable, str(HERE / "engine_client.py"), host, str(port), str(streams), str(args.duration),
                "--warmup", str(args.warmup), "--max-tokens", str(args.tokens), "--protocol", client,
                "--streams-per-connection", str(spc), "--ramp", f"{cycle_s(args) if arrivals == 'spread' else 0:g}"]
    connections = math.ceil(streams / spc)
    per_conn = math.ceil(streams / connections)
    cmd = [args.h2load, "-c", str(connections), "-m", str(per_conn), "-t", "1",
           "-D", f"{args.duration + 2:g}", "--warm-up-time", f"{args.warmup:g}"]
    if arrivals == "spread":
        cmd += ["--rps", str(args.h2load_rps or h2load_rps(per_conn, args))]
    return cmd + ["-d", str(body_path), "-H", "content-type: application/json",
                  f"http://{host}:{port}/v1/chat/completions"]


def h2load_rps(per_conn: int, args) -> int:
    """h2load --rps for spread arrivals: each connection starts its streams over ~0.9 response times.

    h2load paces a connection's request starts with a timer every 1/rps s; after the ramp the limit
    is above the rate at which the streams complete (per_conn / response time), and a finished
    stream's next request goes out at once (h2load queues the pending ones), so -m streams stay
    busy. The timer period must not divide the ITL evenly: at rps 40 and 50 ms ITL (a start every
    25 ms) every stream of a connection falls on one of two phases of the ITL and their events
    arrive together, as in lock-step; so rps is bumped until rps x ITL is at least 0.1 away from a
    multiple of 0.5.
    """
    rps = math.ceil(1.15 * per_conn / cycle_s(args))
    itl = parse_seconds(args.itl)
    while min((rps * itl) % 0.5, 0.5 - (rps * itl) % 0.5) < 0.1:
        rps += 1
    return rps


def sample(proc_pid: int, server: Server, pinning: dict) -> dict:
    """The server's counters, then (at once) the CPU times; `t` is when the counters came back."""
    t_ask = time.monotonic()
    m = server.metrics()
    s = {"t": time.monotonic(), "client_cpu_s": cpuacct.process_cpu_s(proc_pid), "server_cpu_s": cpuacct.process_cpu_s(server.proc.pid),
         "client_rss_kib": cpuacct.status_kib(proc_pid, "VmRSS")}
    s["metrics_fetch_s"] = s["t"] - t_ask
    s["tokens"] = m["agentperf_sim_generation_tokens_total"]
    s["requests"] = m["agentperf_sim_requests_total"]
    s["rejected"] = m["agentperf_sim_requests_rejected_total"]
    s["running"] = m["agentperf_sim_requests_running"]
    if pinning["pinned"]:
        s["client_core_busy_s"] = cpuacct.core_busy_s(pinning["client_cpu"])
        s["server_core_busy_s"] = cpuacct.core_busy_s(pinning["server_cpu"])
    return s


def perf_profile(pid: int, prefix: Path, span: float, server: Server) -> dict:
    """perf stat (syscalls, context switches), then perf record -g, each for `span` seconds.

    The events of the perf stat span are counted by the server around it (perf slows the client)."""
    out = {"span_s": span}
    t0 = server.metrics()["agentperf_sim_generation_tokens_total"]
    r = subprocess.run(["perf", "stat", "-x", ",", "-e", PERF_EVENTS, "-p", str(pid), "--", "sleep", f"{span:g}"],
                       capture_output=True, text=True)
    out["events"] = server.metrics()["agentperf_sim_generation_tokens_total"] - t0
    prefix.with_suffix(".perf-stat.txt").write_text(r.stderr)
    for line in r.stderr.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[0].replace(".", "", 1).isdigit():
            out[f[2]] = float(f[0])
    data = prefix.with_suffix(".perf.data")
    subprocess.run(["perf", "record", "-F", "1999", "-g", "-o", str(data), "-p", str(pid), "--", "sleep", f"{span:g}"],
                   capture_output=True)
    out["perf_data"] = str(data)
    return out


def run_client(client: str, streams: int, arrivals: str, args, pinning: dict, body_path: Path, rnd: int) -> dict:
    server = Server(ttft=args.ttft, itl=args.itl, tokens=args.tokens, workers=args.server_workers,
                    cpu=pinning["server_cpu"])
    proc = None
    try:
        load_before = os.getloadavg()
        cmd = client_cmd(client, streams, arrivals, args, server.host, server.port, body_path)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=pin_fn(pinning["client_cpu"]))
        # The engine's own window starts after its imports (~0.5 s) plus --warmup; h2load's after
        # --warm-up-time. The external window sits inside both.
        time.sleep(max(0.0, t0 + args.warmup + 1.0 - time.monotonic()))
        if proc.poll() is not None:
            raise BenchError(f"{client} exited early ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        a = sample(proc.pid, server, pinning)
        profile = None
        if args.profile:
            span = max(1.0, min(5.0, (args.duration - 2.5) / 2))
            profile = perf_profile(proc.pid, args.profile / f"{client}-{streams}-{arrivals}-round{rnd}", span, server)
        # Ends >= 2 s before the engine's own window (and h2load's -D) ends, whatever A's fetch took.
        time.sleep(max(0.0, t0 + args.warmup + args.duration - 1.0 - time.monotonic()))
        b = sample(proc.pid, server, pinning)
        try:
            stdout, stderr = proc.communicate(timeout=args.warmup + args.duration + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        server_log = server.stop()
    if proc.returncode != 0:
        raise BenchError(f"{client} exited with {proc.returncode}: {stdout[-2000:]} {stderr[-3000:]}")

    dt = b["t"] - a["t"]
    ext_cpu = b["client_cpu_s"] - a["client_cpu_s"]
    ext_events = b["tokens"] - a["tokens"]
    external = {"window_s": dt, "events": ext_events, "client_cpu_s": ext_cpu,
                "events_per_s": ext_events / dt,
                "events_per_cpu_s": ext_events / ext_cpu if ext_cpu > 0 else float("inf"),
                "metrics_fetch_s": [a["metrics_fetch_s"], b["metrics_fetch_s"]]}
    own = None
    if client in ("h1", "h2"):
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise BenchError(f"{client} printed no JSON: {stdout[-2000:]} {stderr[-2000:]}")
        own = json.loads(lines[-1])
        own_cpu = own["cpu_s"]
        own["events_per_cpu_s"] = own["output_events"] / own_cpu if own_cpu > 0 else float("inf")
        own["events_per_s"] = own["output_events"] / own["wall_s"]
        # The engine's own numbers are primary: its window and CPU are exact, while the
        # server's counters can come late when the server is saturated (10,000 HTTP/1.1 streams).
        window, events, cpu = own["wall_s"], own["output_events"], own_cpu
        source = "engine_client (snapshot events, microbench.cpu)"
    else:
        window, events, cpu = dt, ext_events, ext_cpu
        source = "server tokens generated, /proc/PID/task/*/schedstat"
    ideal = streams * args.tokens / cycle_s(args)
    r = {
        "client": client, "streams": streams, "arrivals": arrivals, "round": rnd, "command": cmd,
        "server_command": server.cmd, "measured_by": source,
        "window_s": window, "events": events, "client_cpu_s": cpu,
        "events_per_s": events / window, "ideal_events_per_s": ideal, "delivered_fraction": events / window / ideal,
        "events_per_cpu_s": events / cpu if cpu > 0 else float("inf"),
        "cpu_us_per_event": cpu * 1e6 / events if events else float("nan"),
        "client_cpu_share": cpu / window,
        "external": external,
        "server_cpu_share": (b["server_cpu_s"] - a["server_cpu_s"]) / dt,
        "server_requests_in_window": b["requests"] - a["requests"],
        "server_rejected_in_window": b["rejected"] - a["rejected"],
        "server_running": [a["running"], b["running"]],
        "metrics_fetch_s": [a["metrics_fetch_s"], b["metrics_fetch_s"]],
        "client_rss_kib": b["client_rss_kib"],
        "load_avg_before": [round(x, 2) for x in load_before],
        "server_log": server_log[-500:],
    }
    if "client_core_busy_s" in a and max(r["metrics_fetch_s"]) < 0.25:
        # (unknown when the server's counters came late: the window's edges then fall after the
        # engine stopped, when its exited threads' schedstat times are gone)
        r["client_core_others_share"] = max(0.0, (b["client_core_busy_s"] - a["client_core_busy_s"]) - ext_cpu) / dt
        r["server_core_others_share"] = max(0.0, (b["server_core_busy_s"] - a["server_core_busy_s"])
                                            - (b["server_cpu_s"] - a["server_cpu_s"])) / dt
    if profile:
        n = profile["events"] or float("nan")
        for key in list(profile):
            if ":" in key or key == "context-switches":
                profile[key.split(":")[-1] + "_per_event"] = profile[key] / n
        if "task-clock" in profile:
            profile["cpu_us_per_event_under_perf"] = profile["task-clock"] * 1e3 / n
        r["profile"] = profile
    if own is not None:
        r["engine"] = own
    else:
        r["h2load"] = parse_h2load(stdout)
        r["h2load"]["events_from_succeeded"] = r["h2load"].get("succeeded", 0) * args.tokens
        r["h2load"]["events_per_s_from_succeeded"] = r["h2load"]["events_from_succeeded"] / (args.duration + 2)
    return r


def parse_h2load(output: str) -> dict:
    res: dict = {"output_tail": output[-1500:]}
    m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", output, re.M)
    if m:
        res.update(zip(("total", "started", "done", "succeeded", "failed", "errored", "timeout"), map(int, m.groups())))
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output, re.M)
    if m:
        res.update(zip(("status_2xx", "status_3xx", "status_4xx", "status_5xx"), map(int, m.groups())))
    m = re.search(r"^Application protocol: (\S+)", output, re.M)
    res["protocol"] = m.group(1) if m else None
    return res


def problems_of(r: dict, args) -> list[str]:
    tag = f"round {r['round']} {r['client']} {r['streams']} {r['arrivals']}"
    out = []
    if r["events"] <= 0:
        out.append(f"{tag}: no events")
    if r["client"] == "h2load" and max(r["metrics_fetch_s"]) > 0.25:
        out.append(f"{tag}: reading the server's /metrics took {max(r['metrics_fetch_s']):.2f} s (window edges uncertain)")
    if r["client"] == "h2load" and min(r["server_running"]) < 0.99 * r["streams"]:
        # (the engine's own snapshot tracks its streams; the gauge lags on a saturated server)
        out.append(f"{tag}: the server had {min(r['server_running']):.0f} requests running at a window edge")
    if r["server_rejected_in_window"]:
        out.append(f"{tag}: the server rejected {r['server_rejected_in_window']} requests")
    e = r.get("engine")
    if e is not None:
        if e["errors"] or e["failures_by_kind"] or e["records_failed_total"] or e["records_dropped"]:
            out.append(f"{tag}: engine errors {e['errors']} {e['failures_by_kind']} records failed "
                       f"{e['records_failed_total']} dropped {e['records_dropped']}")
        if e["connections_opened_in_window"]:
            out.append(f"{tag}: {e['connections_opened_in_window']} reconnects in the window")
        lo = e["window_min_max"].get("agents_engaged", [0, 0])[0]
        if lo < r["streams"]:
            out.append(f"{tag}: only {lo} of {r['streams']} agents engaged in the window (longer --warmup?)")
    h = r.get("h2load")
    if h is not None:
        if h.get("protocol") != "h2c":
            out.append(f"{tag}: h2load did not speak h2c: {h.get('output_tail')}")
        if h.get("failed", 1) or h.get("errored", 1) or h.get("timeout", 1):
            out.append(f"{tag}: h2load failures {h}")
        if h.get("status_3xx", 1) or h.get("status_4xx", 1) or h.get("status_5xx", 1):
            out.append(f"{tag}: h2load non-2xx statuses")
    return out


# --------------------------------------------------------------------------------------------
# Part 2: many agents held over HTTP/2


def run_agents(n: int, args, pinning: dict) -> dict:
    itl = max(parse_seconds(args.agents_itl), n / args.agents_rate)
    tokens = args.tokens
    cycle = (tokens - 1) * itl
    ramp = cycle if args.agents_ramp is None else args.agents_ramp
    warmup = ramp + args.agents_settle
    server = Server(ttft="0s", itl=f"{itl * 1e3:g}ms", tokens=tokens, workers=args.agents_server_workers,
                    cpu=pinning["server_cpu"])
    proc = None
    try:
        cmd = [sys.executable, str(HERE / "engine_client.py"), server.host, str(server.port), str(n),
               str(args.agents_hold), "--warmup", f"{warmup:g}", "--max-tokens", str(tokens), "--protocol", "h2",
               "--streams-per-connection", str(args.agents_streams_per_connection), "--ramp", f"{ramp:g}"]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=pin_fn(pinning["client_cpu"]))
        samples = []
        # The client's hold runs from ~0.5 s (imports) + warmup to that + hold: sample inside it.
        first, last = t0 + warmup + 1.5, t0 + warmup + args.agents_hold
        time.sleep(max(0.0, first - time.monotonic()))
        while time.monotonic() < last and proc.poll() is None:
            s = sample(proc.pid, server, pinning)
            s["client_hwm_kib"] = cpuacct.status_kib(proc.pid, "VmHWM")
            samples.append(s)
            time.sleep(min(1.0, max(0.0, last - time.monotonic())))
        stdout, stderr = proc.communicate(timeout=args.agents_hold + warmup + 120)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        server_log = server.stop()
    if proc.returncode != 0:
        raise BenchError(f"agents {n}: engine_client exited with {proc.returncode}: {stderr[-3000:]}")
    own = json.loads([ln for ln in stdout.splitlines() if ln.startswith("{")][-1])
    held = own["rss_kib_end"] - own["rss_kib_before_engine"]
    in_use = own["rss_kib_after_warmup"] - own["rss_kib_before_engine"]
    running = [s["running"] for s in samples]
    dt = samples[-1]["t"] - samples[0]["t"] if len(samples) > 1 else float("nan")
    events = samples[-1]["tokens"] - samples[0]["tokens"] if len(samples) > 1 else 0
    cpu = samples[-1]["client_cpu_s"] - samples[0]["client_cpu_s"] if len(samples) > 1 else float("nan")
    return {
        "agents": n, "command": cmd, "server_command": server.cmd, "itl_s": itl, "ramp_s": ramp, "warmup_s": warmup,
        "hold_s": args.agents_hold,
        "connections": own["connections_open"], "connections_opened": own["connections_opened"],
        "rss_kib_before_engine": own["rss_kib_before_engine"], "rss_kib_after_warmup": own["rss_kib_after_warmup"],
        "rss_kib_end": own["rss_kib_end"],
        "rss_kib_peak": max((s["client_hwm_kib"] or 0) for s in samples) if samples else None,
        "bytes_per_agent_after_warmup": in_use * 1024 / n, "bytes_per_agent_end": held * 1024 / n,
        "engaged_min_max": own["window_min_max"].get("agents_engaged"),
        "in_flight_min_max": own["window_min_max"].get("requests_in_flight"),
        "connections_min_max": own["window_min_max"].get("connections_open"),
        "server_running_min_max": [min(running), max(running)] if running else None,
        "responses_in_hold": own["responses"], "errors": own["errors"], "failures_by_kind": own["failures_by_kind"],
        "records_failed_total": own["records_failed_total"], "records_dropped": own["records_dropped"],
        "events_per_s": events / dt if dt == dt and dt > 0 else None,
        "ideal_events_per_s": n * tokens / cycle,
        "client_cpu_share": cpu / dt if dt == dt and dt > 0 else None,
        "ttft_p50_ms": own["ttft_p50_ms"], "itl_p50_ms": own["itl_p50_ms"],
        "engine": own, "server_log": server_log[-500:],
    }


def agents_problems(r: dict) -> list[str]:
    n = r["agents"]
    out = []
    if r["engaged_min_max"] is None or r["engaged_min_max"][0] != n:
        out.append(f"agents {n}: engaged {r['engaged_min_max']}")
    if r["errors"] or r["failures_by_kind"] or r["records_failed_total"] or r["records_dropped"]:
        out.append(f"agents {n}: failures {r['errors']} {r['failures_by_kind']} {r['records_failed_total']}")
    if r["server_running_min_max"] is None or r["server_running_min_max"][0] < 0.99 * n:
        out.append(f"agents {n}: server running {r['server_running_min_max']}")
    return out


# --------------------------------------------------------------------------------------------
# Reporting


def machine_info() -> dict:
    info = {"nproc": os.cpu_count(), "python": sys.version.split()[0], "kernel": os.uname().release}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for key in ("Model name", "CPU(s)", "Hypervisor vendor", "Thread(s) per core", "CPU family", "Model"):
            m = re.search(rf"^{re.escape(key)}:\s*(.+)$", out, re.M)
            if m:
                info[key] = m.group(1).strip()
    except (OSError, subprocess.SubprocessError):
        pass
    for exe, flag in (("h2load", "--version"), ("nginx", "-v")):
        try:
            r = subprocess.run([shutil.which(exe) or exe, flag], capture_output=True, text=True, timeout=10)
            info[exe] = (r.stdout + r.stderr).strip()
        except (OSError, subprocess.SubprocessError):
            pass
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")  # read-only git calls: no index refresh
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, env=env).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, env=env).stdout.strip()
        info["git_head"] = head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import agentperf_native
        info["agentperf_native"] = f"{getattr(agentperf_native, '__version__', '?')} at {agentperf_native.__file__}"
    except ImportError:
        pass
    return info


def summarize(runs: list[dict], min_delivered: float) -> dict:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["streams"], r["arrivals"], r["client"]), []).append(r)
    med = {}
    for key, rs in groups.items():
        keep = [r for r in rs if r["delivered_fraction"] >= min_delivered] or rs
        med[key] = {"events_per_cpu_s": statistics.median(r["events_per_cpu_s"] for r in keep),
                    "delivered_fraction": statistics.median(r["delivered_fraction"] for r in rs),
                    "runs": len(rs), "runs_in_median": len(keep)}
    ratios = {}
    for (streams, arrivals, client), m in med.items():
        if client != "h2":
            continue
        h1 = med.get((streams, arrivals, "h1"))
        hl = med.get((streams, arrivals, "h2load"))
        key = f"{streams}/{arrivals}"
        ratios[key] = {}
        if h1:
            ratios[key]["h1_cpu_per_event_over_h2"] = m["events_per_cpu_s"] / h1["events_per_cpu_s"]
        if hl:
            ratios[key]["h2_cpu_per_event_over_h2load"] = hl["events_per_cpu_s"] / m["events_per_cpu_s"]
    return {"medians": {f"{s}/{a}/{c}": v for (s, a, c), v in sorted(med.items())}, "ratios_of_medians": ratios}


def round_ratios(runs: list[dict]) -> dict:
    by = {(r["round"], r["streams"], r["arrivals"], r["client"]): r["events_per_cpu_s"] for r in runs}
    out = {}
    for (rnd, s, a, c), v in by.items():
        if c != "h2":
            continue
        k = f"round{rnd}/{s}/{a}"
        out[k] = {}
        if (rnd, s, a, "h1") in by:
            out[k]["h1_cpu_per_event_over_h2"] = v / by[(rnd, s, a, "h1")]
        if (rnd, s, a, "h2load") in by:
            out[k]["h2_cpu_per_event_over_h2load"] = by[(rnd, s, a, "h2load")] / v
    return out


def print_tables(runs: list[dict], summary: dict, agents: list[dict], args) -> None:
    print(f"\nnull server: TTFT {args.ttft}, ITL {args.itl}, {args.tokens} tokens per response "
          f"({1 / parse_seconds(args.itl):g} events/s per stream); server workers {args.server_workers}")
    hdr = (f"{'rnd':>3} {'streams':>7} {'arrivals':<8} {'client':<6} {'conns':>6} {'events':>9} {'ev/s':>8} "
           f"{'%ideal':>7} {'cpu s':>6} {'cpu%':>5} {'ev/CPU-s':>9} {'us/ev':>6} {'ext ev/CPU-s':>12} "
           f"{'srv cpu%':>8} {'others c/s':>10} {'load1':>5}")
    print(hdr)
    print("-" * len(hdr))
    for r in runs:
        conns = (r["streams"] if r["client"] == "h1" else math.ceil(r["streams"] / args.streams_per_connection))
        own = r["external"]["events_per_cpu_s"] if "engine" in r and max(r["metrics_fetch_s"]) < 0.25 else None
        others = (f"{100 * r['client_core_others_share']:.0f}/{100 * r['server_core_others_share']:.0f}%"
                  if "client_core_others_share" in r else "-")
        flag = "*" if r["delivered_fraction"] < args.min_delivered else " "
        print(f"{r['round']:>3} {r['streams']:>7} {r['arrivals']:<8} {r['client']:<6} {conns:>6} {r['events']:>9.0f} "
              f"{r['events_per_s']:>8.0f} {100 * r['delivered_fraction']:>6.1f}{flag}{r['client_cpu_s']:>6.2f} "
              f"{100 * r['client_cpu_share']:>4.0f}% {r['events_per_cpu_s']:>9.0f} {r['cpu_us_per_event']:>6.2f} "
              f"{'-' if own is None else round(own):>12} {100 * r['server_cpu_share']:>7.0f}% {others:>10} "
              f"{r['load_avg_before'][0]:>5.2f}")
    print(f"  * below {100 * args.min_delivered:g}% of the ideal event rate (server or client fell behind)")
    print("  h1/h2: the engine's own count and CPU over its window; h2load: the server's tokens and "
          "/proc schedstat.\n  ext: the engine measured like h2load, from outside (- where the server's "
          "/metrics came late)")
    print("\nmedian events per client CPU-second:")
    for key, m in summary["medians"].items():
        print(f"  {key:<26} {m['events_per_cpu_s']:>10.0f}  (delivered {100 * m['delivered_fraction']:.1f}%, "
              f"{m['runs_in_median']}/{m['runs']} runs)")
    print("\nratios (of the medians): h1 CPU per event / h2 CPU per event (target >= "
          f"{TARGET_H2_OVER_H1:g}x at 10,000 streams); h2 / h2load (target <= {TARGET_H2LOAD_OVER_H2:g}x)")
    for key, rt in summary["ratios_of_medians"].items():
        parts = []
        if "h1_cpu_per_event_over_h2" in rt:
            v = rt["h1_cpu_per_event_over_h2"]
            parts.append(f"h1/h2 {v:.2f}x" + (f" ({'met' if v >= TARGET_H2_OVER_H1 else 'MISSED'})"
                                              if key.startswith("10000/") else ""))
        if "h2_cpu_per_event_over_h2load" in rt:
            v = rt["h2_cpu_per_event_over_h2load"]
            parts.append(f"h2/h2load {v:.2f}x ({'met' if v <= TARGET_H2LOAD_OVER_H2 else 'MISSED'})")
        print(f"  {key:<16} " + ", ".join(parts))
    profiled = [r for r in runs if r.get("profile")]
    if profiled:
        print("\nper output event, perf stat mid-window (perf perturbs the run): read(), epoll_wait, "
              "epoll_ctl, context switches, CPU us under perf")
        for r in profiled:
            pr = r["profile"]
            vals = [pr.get(k, float("nan")) for k in ("sys_enter_read_per_event",
                                                       "sys_enter_epoll_wait_per_event", "sys_enter_epoll_ctl_per_event",
                                                       "context-switches_per_event", "cpu_us_per_event_under_perf")]
            print(f"  round {r['round']} {r['streams']:>6} {r['arrivals']:<8} {r['client']:<6} "
                  + " ".join(f"{v:6.3f}" for v in vals))
    for a in agents:
        print(f"\nagents over h2c: {a['agents']} agents on {a['connections']} connections, ITL {a['itl_s'] * 1e3:g} ms, "
              f"held {a['hold_s']:g} s after a {a['warmup_s']:g} s ramp + settle")
        print(f"  VmRSS before the engine {a['rss_kib_before_engine'] / 1024:.1f} MiB, all agents running "
              f"{a['rss_kib_after_warmup'] / 1024:.1f} MiB, end of hold {a['rss_kib_end'] / 1024:.1f} MiB, peak "
              f"{(a['rss_kib_peak'] or 0) / 1024:.1f} MiB -> {a['bytes_per_agent_after_warmup']:.0f} B / agent "
              f"({a['bytes_per_agent_end']:.0f} at the end)")
        print(f"  engaged min/max {a['engaged_min_max']}, in flight {a['in_flight_min_max']}, connections "
              f"{a['connections_min_max']}, server running {a['server_running_min_max']}; responses "
              f"{a['responses_in_hold']}, errors {a['errors']} {a['failures_by_kind']}")
        if a["events_per_s"]:
            print(f"  events/s {a['events_per_s']:.0f} (ideal {a['ideal_events_per_s']:.0f}), client CPU "
                  f"{100 * a['client_cpu_share']:.0f}%, TTFT p50 {a['ttft_p50_ms']:.2f} ms, ITL p50 {a['itl_p50_ms']:.1f} ms")


def markdown(doc: dict) -> str:
    """The tables of benchmarks/README.md ("HTTP/2 vs HTTP/1.1") from a results document."""
    cfg, runs, summary, agents = doc["config"], doc["runs"], doc["summary"], doc["agents"]
    spc = cfg["streams_per_connection"]
    out = []
    if runs:
        out += ["| round | streams | arrivals | client | connections | events/s | % ideal | client CPU | "
                "**events / CPU-s** | µs / event | ext. events / CPU-s | server CPU | other c/s | load1 |",
                "|" + "---|" * 14]
        for r in runs:
            conns = r["streams"] if r["client"] == "h1" else math.ceil(r["streams"] / spc)
            ext = (f"{r['external']['events_per_cpu_s']:,.0f}"
                   if "engine" in r and max(r["metrics_fetch_s"]) < 0.25 else "-")
            others = (f"{100 * r['client_core_others_share']:.0f}/{100 * r['server_core_others_share']:.0f} %"
                      if r.get("client_core_others_share") is not None else "-")
            flag = " *" if r["delivered_fraction"] < cfg["min_delivered"] else ""
            out.append(f"| {r['round']} | {r['streams']:,} | {r['arrivals']} | {r['client']} | {conns:,} | "
                       f"{r['events_per_s']:,.0f} | {100 * r['delivered_fraction']:.1f}{flag} | "
                       f"{100 * r['client_cpu_share']:.0f} % | **{r['events_per_cpu_s']:,.0f}** | "
                       f"{r['cpu_us_per_event']:.2f} | {ext} | {100 * r['server_cpu_share']:.0f} % | {others} | "
                       f"{r['load_avg_before'][0]:.2f} |")
        out.append("")
        rounds = sorted({r["round"] for r in runs})
        out += ["| streams | arrivals | " + " | ".join(f"h1 / h2, round {i}" for i in rounds)
                + " | **of the medians** | target | " + " | ".join(f"h2 / h2load, round {i}" for i in rounds)
                + " | **of the medians** | target |", "|" + "---|" * (6 + 2 * len(rounds))]
        by_round = summary["ratios_by_round"]
        for key, rt in summary["ratios_of_medians"].items():
            streams, arrivals = key.split("/")
            cells = [f"{int(streams):,}", arrivals]
            h1 = [by_round.get(f"round{i}/{key}", {}).get("h1_cpu_per_event_over_h2") for i in rounds]
            hl = [by_round.get(f"round{i}/{key}", {}).get("h2_cpu_per_event_over_h2load") for i in rounds]
            v = rt.get("h1_cpu_per_event_over_h2")
            cells += [f"{x:.2f}×" if x else "-" for x in h1]
            cells.append(f"**{v:.2f}×**" if v else "-")
            cells.append((f"≥ {TARGET_H2_OVER_H1:g}×: " + ("met" if v >= TARGET_H2_OVER_H1 else "**missed**"))
                         if streams == "10000" and v else "-")
            v = rt.get("h2_cpu_per_event_over_h2load")
            cells += [f"{x:.2f}×" if x else "-" for x in hl]
            cells.append(f"**{v:.2f}×**" if v else "-")
            cells.append((f"≤ {TARGET_H2LOAD_OVER_H2:g}×: " + ("met" if v <= TARGET_H2LOAD_OVER_H2 else "**missed**"))
                         if v else "-")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    if agents:
        out += ["| agents | connections | ITL | VmRSS before the engine | all agents running | end of hold | "
                "**memory per agent** | agents engaged (min) | requests in flight (min) | server running (min) | "
                "failed | events/s (ideal) | client CPU |", "|" + "---|" * 13]
        for a in agents:
            out.append(f"| {a['agents']:,} | {a['connections']} | {a['itl_s'] * 1e3:g} ms | "
                       f"{a['rss_kib_before_engine'] / 1024:.1f} MiB | {a['rss_kib_after_warmup'] / 1024:.1f} MiB | "
                       f"{a['rss_kib_end'] / 1024:.1f} MiB | **{a['bytes_per_agent_after_warmup'] / 1024:.2f} KiB** "
                       f"({a['bytes_per_agent_end'] / 1024:.2f} at the end) | {a['engaged_min_max'][0]:,} | "
                       f"{a['in_flight_min_max'][0]:,} | {a['server_running_min_max'][0]:,.0f} | "
                       f"{a['errors'] + a['records_failed_total']} | {a['events_per_s']:,.0f} "
                       f"({a['ideal_events_per_s']:,.0f}) | {100 * a['client_cpu_share']:.0f} % |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", default="1000,10000", help="comma-separated concurrent stream counts")
    p.add_argument("--clients", default=",".join(CLIENTS), help="subset of " + ",".join(CLIENTS))
    p.add_argument("--arrivals", default=",".join(ARRIVALS), help="subset of " + ",".join(ARRIVALS))
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=10.0,
                   help="seconds before measuring (connects, ramp, first responses); 10,000 HTTP/1.1 "
                        "connections take several seconds to open on a busy server")
    p.add_argument("--ttft", default="0s")
    p.add_argument("--itl", default="50ms", help="server pacing between events (50ms: 20 tokens/s per stream)")
    p.add_argument("--tokens", type=int, default=64, help="output tokens (events) per response")
    p.add_argument("--streams-per-connection", type=int, default=100, help="h2 and h2load streams per connection")
    p.add_argument("--server-workers", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--server-cpu", type=int, default=1)
    p.add_argument("--client-cpu", type=int, default=0)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--nice", type=int, default=0, help="nice value for server and client (negative needs root)")
    p.add_argument("--min-delivered", type=float, default=0.99,
                   help="runs below this fraction of the ideal event rate are flagged and left out of the medians")
    p.add_argument("--h2load", default=shutil.which("h2load") or "h2load")
    p.add_argument("--h2load-rps", type=int, default=None,
                   help="h2load --rps for spread arrivals (default: see h2load_rps())")
    p.add_argument("--profile", type=Path, default=None,
                   help="perf stat + perf record -g of each client mid-window into this folder (perturbs the numbers)")
    p.add_argument("--agents", default="", help="part 2: comma-separated agent counts held over h2c (e.g. 20000)")
    p.add_argument("--agents-only", action="store_true", help="skip part 1")
    p.add_argument("--agents-itl", default="200ms", help="part 2: ITL at least this")
    p.add_argument("--agents-rate", type=float, default=100_000.0,
                   help="part 2: the ITL grows so that agents x 1/ITL stays at most this many events/s")
    p.add_argument("--agents-ramp", type=float, default=None, help="part 2: arrival ramp (s); default one response time")
    p.add_argument("--agents-settle", type=float, default=5.0, help="part 2: seconds after the ramp before holding")
    p.add_argument("--agents-hold", type=float, default=30.0, help="part 2: seconds held and measured")
    p.add_argument("--agents-streams-per-connection", type=int, default=100)
    p.add_argument("--agents-server-workers", type=int, default=1)
    p.add_argument("--json", dest="json_out", type=Path, default=None)
    p.add_argument("--markdown", action="store_true", help="also print the README tables")
    p.add_argument("--markdown-from", type=Path, default=None, metavar="JSON",
                   help="print the README tables of an earlier run's --json file and exit")
    args = p.parse_args()
    if args.markdown_from:
        print(markdown(json.loads(args.markdown_from.read_text())))
        return 0
    global NICE
    NICE = args.nice
    streams_list = [int(x) for x in args.streams.split(",") if x.strip()]
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    arrivals_list = [a.strip() for a in args.arrivals.split(",") if a.strip()]
    for c in clients:
        if c not in CLIENTS:
            p.error(f"unknown client {c!r}")
    for a in arrivals_list:
        if a not in ARRIVALS:
            p.error(f"unknown arrival pattern {a!r}")
    if "h2load" in clients and not args.agents_only and shutil.which(args.h2load) is None:
        p.error("h2load not found (Debian: nghttp2-client)")
    if args.profile:
        if not shutil.which("perf"):
            p.error("--profile needs perf")
        args.profile.mkdir(parents=True, exist_ok=True)
    pinning = plan_pinning(args)
    if not pinning["pinned"]:
        print(f"note: not pinned ({pinning['why']})", file=sys.stderr)

    runs: list[dict] = []
    problems: list[str] = []
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-h2-") as tmp:
        body_path = Path(tmp) / "body.json"
        body_path.write_bytes(request_body(args.tokens))
        if not args.agents_only:
            for rnd in range(1, args.repeat + 1):
                for streams in streams_list:
                    for arrivals in arrivals_list:
                        for client in clients:
                            print(f"round {rnd}/{args.repeat}: {client} {streams} streams {arrivals} "
                                  f"({args.warmup:g}s warm-up + {args.duration:g}s)...", file=sys.stderr, flush=True)
                            r = run_client(client, streams, arrivals, args, pinning, body_path, rnd)
                            runs.append(r)
                            problems += problems_of(r, args)
    agents = []
    for n in [int(x) for x in args.agents.split(",") if x.strip()]:
        print(f"agents: {n} over h2c...", file=sys.stderr, flush=True)
        a = run_agents(n, args, pinning)
        agents.append(a)
        problems += agents_problems(a)

    summary = summarize(runs, args.min_delivered) if runs else {"medians": {}, "ratios_of_medians": {}}
    summary["ratios_by_round"] = round_ratios(runs)
    print_tables(runs, summary, agents, args)
    if args.json_out:
        doc = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "argv": sys.argv, "machine": machine_info(), "pinning": pinning, "started_at": started,
               "load_avg_at_start": load_at_start, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "targets": {"h1_cpu_per_event_over_h2_at_10000": TARGET_H2_OVER_H1,
                           "h2_cpu_per_event_over_h2load": TARGET_H2LOAD_OVER_H2},
               "runs": runs, "summary": summary, "agents": agents, "problems": problems}
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"results: {args.json_out}")
    if args.markdown:
        print("\n" + markdown({"config": vars(args), "runs": runs, "summary": summary, "agents": agents}))
    if problems:
        print("\nFAILED sanity checks:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench_h2: {e}", file=sys.stderr)
        sys.exit(1)
