"""Watching benchmark processes from outside: CPU time, RSS and open descriptors from ``/proc``.

Shared by the benchmark scripts that run ``agentperf-native`` as a user would (a subprocess) and
sample it and its server without touching either.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

#: The command line of the installed package, as a user runs it.
CLI = [sys.executable, "-m", "agentperf_native.cli"]

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_sample(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, RSS bytes) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as f:
            rss_pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK, rss_pages * PAGE


def open_fds(pid: int) -> int:
    """Open descriptors of a process (-1 when it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def children(pid: int, settle_s: float = 0.5) -> list[int]:
    """The child pids of ``pid`` (after ``settle_s``, so that a forking server has forked)."""
    time.sleep(settle_s)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


class Sampler(threading.Thread):
    """Every ``interval_s``: monotonic ns, and per named pid (CPU s, RSS bytes, open fds)."""

    def __init__(self, interval_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.pids: dict[str, int] = {}
        self.samples: list[tuple[int, dict[str, tuple[float, int, int]]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval_s):
            row = {}
            for name, pid in list(self.pids.items()):
                s = proc_sample(pid)
                if s is not None:
                    row[name] = (*s, open_fds(pid))
            self.samples.append((time.monotonic_ns(), row))

    def at(self, t_ns: int) -> dict[str, tuple[float, int, int]]:
        """The sample nearest ``t_ns``."""
        return min(self.samples, key=lambda s: abs(s[0] - t_ns))[1]


def start_serve_sim(*args: str) -> tuple[subprocess.Popen, str]:
    """``agentperf-native serve-sim --port 0 ARGS`` as a child process, and its URL once it listens.
    Raises RuntimeError (with the server's error output) when it does not start."""
    server = subprocess.Popen(CLI + ["serve-sim", "--port", "0", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    if "listening on" not in line:
        server.kill()
        raise RuntimeError(f"serve-sim did not start: {server.communicate()[1]}")
    return server, line.split()[-1]
