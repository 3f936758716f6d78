"""CPU and memory accounting of the microbenchmark: one method, used by every client and script.

CPU time is read per thread from ``/proc/PID/task/TID/schedstat`` (on-CPU nanoseconds; where the
kernel has no schedstat, ``utime + stime`` from ``/proc/PID/task/TID/stat`` in clock ticks). The
same file gives the time each thread spent runnable but waiting for a CPU (its second field): a
thread whose on-CPU plus waiting time fills the wall clock never sleeps, so it has more work than
CPU (a starved client). A
:class:`CpuSample` holds every thread of one process at one instant; the difference of two samples
(:func:`cpu_between`) is the CPU each thread used in between. Threads are told apart by name: the
engine's native workers are ``apn-worker-N``, the baseline reader ``apn-baseline-0``; everything
else (the Python threads) is "other". A thread that exits between two samples takes its time with
it, so sample while the threads being measured run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: Thread-name prefixes of the native client threads (engine workers, baseline reader).
CLIENT_THREAD_PREFIXES = ("apn-worker", "apn-baseline")


def _thread_times_ns(task_dir: str) -> tuple[int | None, int | None]:
    """(on-CPU ns, runnable-but-waiting ns) of one thread; the wait is None without schedstat."""
    try:
        with open(f"{task_dir}/schedstat") as f:
            on_cpu, wait = f.read().split()[:2]
            return int(on_cpu), int(wait)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"{task_dir}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // TICKS, None
    except (OSError, ValueError, IndexError):
        return None, None


@dataclass
class CpuSample:
    """CPU nanoseconds of every thread of one process at ``t`` (monotonic seconds)."""

    t: float
    threads: dict[int, tuple[str, int]] = field(default_factory=dict)  # tid -> (name, cpu ns)
    waits: dict[int, int] = field(default_factory=dict)  # tid -> runnable-but-waiting ns (where known)

    @property
    def total_ns(self) -> int:
        return sum(ns for _, ns in self.threads.values())


def sample(pid: int | None = None) -> CpuSample:
    """Every thread of process ``pid`` (None: this one). Raises ProcessLookupError when it is gone."""
    base = f"/proc/{pid if pid is not None else 'self'}/task"
    try:
        tids = os.listdir(base)
    except FileNotFoundError:
        raise ProcessLookupError(f"no process {pid}") from None
    s = CpuSample(t=time.monotonic())
    for tid in tids:
        d = f"{base}/{tid}"
        ns, wait = _thread_times_ns(d)
        if ns is None:
            continue
        if wait is not None:
            s.waits[int(tid)] = wait
        try:
            with open(f"{d}/comm") as f:
                name = f.read().strip()
        except OSError:
            name = "?"
        s.threads[int(tid)] = (name, ns)
    return s


def is_client_thread(name: str) -> bool:
    return name.startswith(CLIENT_THREAD_PREFIXES)


def cpu_between(a: CpuSample, b: CpuSample) -> dict:
    """CPU used between two samples of one process: ``total_s``, ``client_threads_s`` (native
    client threads), ``other_s`` (the rest), ``by_thread`` ({name: seconds}, client threads only),
    ``wait_by_thread`` ({name: seconds runnable but waiting for a CPU}, client threads whose wait
    the kernel reports) and ``wall_s``."""
    by_thread: dict[str, float] = {}
    wait_by_thread: dict[str, float] = {}
    total = client = 0
    for tid, (name, ns) in b.threads.items():
        d = ns - a.threads.get(tid, (name, 0))[1]
        total += d
        if is_client_thread(name):
            client += d
            by_thread[name] = by_thread.get(name, 0.0) + d / 1e9
            if tid in b.waits:
                wait = b.waits[tid] - a.waits.get(tid, 0)
                wait_by_thread[name] = wait_by_thread.get(name, 0.0) + wait / 1e9
    return {"wall_s": b.t - a.t, "total_s": total / 1e9, "client_threads_s": client / 1e9,
            "other_s": (total - client) / 1e9, "by_thread": by_thread, "wait_by_thread": wait_by_thread}


def process_cpu_s(pid: int | None = None) -> float:
    """CPU seconds of a whole process so far (the sum over its live threads)."""
    return sample(pid).total_ns / 1e9


def status_kib(pid: int | None = None, key: str = "VmRSS") -> int | None:
    """A memory line of /proc/PID/status in KiB (VmRSS: resident set, VmHWM: its peak), or None."""
    try:
        with open(f"/proc/{pid if pid is not None else 'self'}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_kib(pid: int | None = None) -> int | None:
    """Resident set size (VmRSS, KiB) of a process (None: this one), or None where /proc does not say."""
    return status_kib(pid, "VmRSS")


def core_busy_s(cpu: int) -> float:
    """Busy seconds of one CPU since boot, every process (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                return (sum(v[:8]) - v[3] - v[4]) / TICKS
    return float("nan")
