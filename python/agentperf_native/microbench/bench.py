"""``agentperf-native microbench``: the client's own cost on this machine, against the floor.

:func:`run` measures the engine (and with ``baseline`` the minimal native reader, on the same
streams, one after the other) over paced streams from the null server, started in its own process
unless ``url`` names one. :func:`sweep` finds, per protocol, the most streams the engine drives at
``>= MIN_DELIVERED`` of the ideal event rate with a client-added delay p99 under
``MAX_DELAY_P99_MS``: the stream count doubles from ``start`` until a run fails (or ``max_streams``),
then bisects between the last pass and the first failure, at most ``max_runs`` runs per protocol.
"""

from __future__ import annotations

import os
import platform
import resource
import socket
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

from ..endpoint import Endpoint
from . import clients
from .clients import RunSpec
from .server import NullModel, ServerProcess

MIN_DELIVERED = 0.99
MAX_DELAY_P99_MS = 1.0


@dataclass
class Options:
    streams: int = 1000
    duration_s: float = 10.0
    warmup_s: float = 2.0
    ttft_s: float = 0.0
    itl_s: float = 0.02
    tokens: int = 64
    protocols: tuple[str, ...] = ("h1",)
    streams_per_connection: int = 100
    arrivals: str = "spread"
    workers: int = 1
    url: str | None = None
    baseline: bool = False
    repeat: int = 1
    server_cpu: int | None = None
    client_cpu: int | None = None
    # sweep
    sweep: bool = False
    sweep_start: int = 100
    sweep_max: int = 20000
    sweep_runs: int = 12


def raise_fd_limit(streams: int) -> None:
    """HTTP/1.1 needs one descriptor per stream: lift the soft limit to the hard one if short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = streams + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(want, soft)) if hard != resource.RLIM_INFINITY
                                                    else want, hard))


def fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def machine() -> dict:
    info = {"nproc": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "load_avg": list(os.getloadavg())}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def passes(r: dict) -> bool:
    """A sweep run passes: delivered >= MIN_DELIVERED and (when measured) delay p99 < MAX_DELAY_P99_MS."""
    if r["problems"] or r["delivered_share"] < MIN_DELIVERED:
        return False
    d = r.get("client_added_delay")
    return d is None or (d["p99_ms"] is not None and d["p99_ms"] < MAX_DELAY_P99_MS)


class _Target:
    """The server every run of one invocation uses: ours (with its stamps) or the user's."""

    def __init__(self, opts: Options) -> None:
        self.model = NullModel(ttft_s=opts.ttft_s, itl_s=opts.itl_s, tokens=opts.tokens,
                               lockstep=opts.arrivals == "lockstep")
        self.server: ServerProcess | None = None
        if opts.url:
            ep = Endpoint.parse(opts.url)
            try:
                socket.create_connection((ep.host, ep.port), timeout=5).close()
            except OSError as e:
                raise RuntimeError(f"cannot reach {opts.url}: {e.strerror or e}; is the server running?") from None
            self.url, self.stamps = opts.url, None
        else:
            self.server = ServerProcess(self.model, cpu=opts.server_cpu)
            self.url, self.stamps = self.server.url, self.server.stamps

    def describe(self) -> dict:
        if self.server is None:
            return {"url": self.url, "kind": "external (--url); no server stamps, so no client-added delay",
                    "model_assumed": vars(self.model)}
        return {"url": self.url, "kind": "built-in null server in its own process", "pid": self.server.pid,
                "command": self.server.command, "model": vars(self.model)}

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


def _spec(opts: Options, target: _Target, streams: int, protocol: str) -> RunSpec:
    return RunSpec(url=target.url, model=target.model, streams=streams, protocol=protocol,
                   streams_per_connection=opts.streams_per_connection, arrivals=opts.arrivals,
                   duration_s=opts.duration_s, warmup_s=opts.warmup_s, workers=opts.workers)


def run(opts: Options, progress: Callable[[str], None] = lambda s: None) -> dict:
    """The whole microbenchmark as one JSON-able document."""
    if opts.client_cpu is not None:
        os.sched_setaffinity(0, {opts.client_cpu})
    raise_fd_limit(max(opts.streams, opts.sweep_max if opts.sweep else 0))
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    target = _Target(opts)
    doc: dict = {"command": sys.argv, "options": vars(opts) | {"protocols": list(opts.protocols)},
                 "machine": machine(), "server": target.describe(), "started_at": started,
                 "targets": {"min_delivered": MIN_DELIVERED, "max_delay_p99_ms": MAX_DELAY_P99_MS},
                 "runs": [], "sweep": None}
    try:
        for rnd in range(1, opts.repeat + 1):
            for protocol in opts.protocols:
                names = ["engine"] + (["baseline"] if opts.baseline else [])
                if rnd % 2 == 0:
                    names.reverse()  # alternate the order: drift on a shared machine hits both alike
                for name in names:
                    progress(f"round {rnd}/{opts.repeat}: {name}, {opts.streams} streams over {protocol}, "
                             f"{opts.arrivals} arrivals, {opts.warmup_s:g}s warm-up + {opts.duration_s:g}s")
                    r = clients.measure(name, _spec(opts, target, opts.streams, protocol), target.stamps)
                    r["round"] = rnd
                    doc["runs"].append(r)
        if opts.sweep:
            doc["sweep"] = {p: sweep(opts, target, p, progress) for p in opts.protocols}
    finally:
        target.close()
    doc["comparison"] = compare(doc["runs"])
    doc["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return doc


def compare(runs: list[dict]) -> dict:
    """Engine over baseline events per CPU-second, per protocol that has both: per round, and the
    ratio of the medians over the rounds."""
    out = {}
    for proto in dict.fromkeys(r["protocol"] for r in runs):
        eps = {name: [r["events_per_cpu_s"] for r in runs if r["client"] == name and r["protocol"] == proto
                      and r["events_per_cpu_s"]] for name in ("engine", "baseline")}
        if not eps["engine"] or not eps["baseline"]:
            continue
        by_round = [e / b for e, b in zip(eps["engine"], eps["baseline"])]
        out[proto] = {"engine_over_baseline": statistics.median(eps["engine"]) / statistics.median(eps["baseline"]),
                      "by_round": by_round,
                      "median_events_per_cpu_s": {k: statistics.median(v) for k, v in eps.items()}}
    return out


def sweep(opts: Options, target: _Target, protocol: str, progress: Callable[[str], None]) -> dict:
    """Most streams at >= MIN_DELIVERED with delay p99 < MAX_DELAY_P99_MS (see the module docstring)."""
    tried: list[dict] = []

    def attempt(n: int) -> bool:
        progress(f"sweep {protocol}: {n} streams")
        r = clients.measure("engine", _spec(opts, target, n, protocol), target.stamps)
        r["passed"] = passes(r)
        tried.append(r)
        return r["passed"]

    good, bad, n = 0, None, max(1, opts.sweep_start)
    limit = opts.sweep_max
    if protocol == "h1":
        limit = min(limit, fd_limit() - 256)  # one descriptor per stream
    while len(tried) < opts.sweep_runs:
        n = min(n, limit)
        if attempt(n):
            good = n
            if n >= limit:
                break
            n *= 2
        else:
            bad = n
            break
    while bad is not None and bad - good > max(1, good // 20) and len(tried) < opts.sweep_runs:
        mid = (good + bad) // 2
        if attempt(mid):
            good = mid
        else:
            bad = mid
    return {"protocol": protocol, "max_streams": good, "first_failing": bad, "limit": limit,
            "reached_limit": bad is None and good >= limit, "runs": tried}
