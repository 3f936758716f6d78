"""The shard side: one native engine in its own process, driven by calls from the driver.

The same :class:`Shard` serves a local process (:mod:`.local`, a pipe) and a Ray actor
(:mod:`.ray_shards`). Its records leave it on the driver's clock (its own clock + the offset the
driver measured), with the shard column set and agent ids made global; window boundaries arrive as
driver times and are mapped to the shard's own clock (:meth:`Shard.window_counts`).
"""

from __future__ import annotations

import os
import resource
import socket
from typing import Any

import numpy as np

from ..client_check import WindowCpu
from ..engine import Engine, now_ns
from ..measure import _Column
from .clock import boot_id
from .snapshot import snapshot_parts
from .spec import ShardSpec

#: Record fields on the monotonic clock (0 means "did not happen" and stays 0).
TIME_FIELDS = ("scheduled_ns", "sent_ns", "first_byte_ns", "first_token_ns", "last_token_ns", "done_ns")


class Shard:
    """Builds the engine of ``spec`` and answers the driver's calls (:meth:`call`)."""

    def __init__(self, spec: ShardSpec) -> None:
        self.index, self.count = spec.index, spec.count
        workload = spec.recipe.encode()
        if workload.digest != spec.digest:
            raise RuntimeError(f"shard {spec.index} encoded a different workload (sha256 {workload.digest[:12]} "
                               f"vs the driver's {spec.digest[:12]}): install the same agentperf-native and "
                               "tokenizer everywhere")
        self.engine = Engine(spec.endpoint, workload, **spec.engine)
        self.offset_ns = 0
        self._scheduled = _Column(np.int64)  # this probe's scheduled times (own clock), for window_counts
        self._failed = _Column(np.bool_)

    # -- the calls -----------------------------------------------------------------------------
    def hello(self) -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid(), "boot_id": boot_id(),
                "workers": self.engine.workers, "seed": self.engine._core.seed}

    def clock(self) -> int:
        return now_ns()

    def set_offset(self, offset_ns: int) -> None:
        self.offset_ns = int(offset_ns)

    def start(self) -> None:
        self.engine.start()

    def stop(self) -> None:
        self.engine.stop()

    def set_concurrency(self, agents: int) -> None:
        self.engine.set_concurrency(agents)

    def new_isolation_epoch(self) -> None:
        self.engine.new_isolation_epoch()
        self._scheduled, self._failed = _Column(np.int64), _Column(np.bool_)

    def snapshot(self) -> dict[str, Any]:
        return snapshot_parts(self.engine.snapshot(), self.offset_ns)

    def cpu_mark(self) -> None:
        """A probe window opens: the self-check's per-worker CPU is counted from now, in this process."""
        self._window_cpu = WindowCpu()

    def cpu_close(self) -> tuple[dict[str, float], dict[str, float]]:
        """This shard's workers' CPU and waiting shares since :meth:`cpu_mark`."""
        window = getattr(self, "_window_cpu", None)
        return window.close() if window is not None else ({}, {})

    def drain(self) -> np.ndarray:
        """Records finished since the last call: driver clock, global agent ids, shard column."""
        records = self.engine.drain_records()
        if records.size:
            self._scheduled.extend(records["scheduled_ns"])
            self._failed.extend(records["error_kind"] != 0)
            if self.offset_ns:
                for name in TIME_FIELDS:
                    col = records[name]
                    col[col != 0] += self.offset_ns
            records["agent_id"] = records["agent_id"] * self.count + self.index
            records["shard"] = self.index
        return records

    def first_failures(self) -> list[dict[str, Any]]:
        return self.engine.first_failures()

    def window_counts(self, start_ns: int, end_ns: int) -> dict[str, int]:
        """Requests of this probe scheduled in the window ``[start_ns, end_ns)`` given on the driver's
        clock, counted on this shard's own clock (drained so far)."""
        start, end = start_ns - self.offset_ns, end_ns - self.offset_ns
        sched = self._scheduled.values
        inside = (sched >= start) & (sched < end)
        return {"shard": self.index, "requests": int(np.count_nonzero(inside)),
                "requests_failed": int(np.count_nonzero(inside & self._failed.values))}

    def usage(self) -> dict[str, float]:
        """This process's CPU time and peak memory so far."""
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {"cpu_user_s": ru.ru_utime, "cpu_system_s": ru.ru_stime, "max_rss_bytes": ru.ru_maxrss * 1024}

    def call(self, method: str, *args: Any) -> Any:
        if method.startswith("_") or method == "call":
            raise AttributeError(method)
        return getattr(self, method)(*args)

    def close(self) -> None:
        self.engine.stop()
