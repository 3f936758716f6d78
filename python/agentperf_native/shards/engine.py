"""The driver's view of several shards: the interface of one :class:`~agentperf_native.engine.Engine`.

:class:`ShardedEngine` has ``start``, ``stop``, ``set_concurrency``, ``new_isolation_epoch``,
``running``, ``snapshot`` and ``drain_records``, so the probe runner, the search, a fixed phase and
the live line drive it unchanged. Every call fans out to the live shards and then collects their
answers. The concurrency is split over the live shards (:func:`~.spec.partition`); snapshots merge
exactly (:mod:`.snapshot`); records arrive on the driver's clock with a ``shard`` column.

Clocks: each shard's offset to the driver's clock is measured by round trips when the shards
start and again at every isolation epoch (each probe); see :mod:`.clock`.

A shard that dies (or stops answering) is *lost*: its reason is appended to :attr:`losses`,
``on_loss(reason)`` is called, and the run goes on with the others (its records drained so far
are kept; its counters stay in the snapshot totals). A probe that saw a loss is not steady
(``probe.py`` reads :attr:`losses`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..engine import RECORD_DTYPE, Snapshot, now_ns
from .clock import UNCERTAINTY_LIMIT_NS, ClockSync, boot_id, sync
from .handle import ShardHandle, ShardLost
from .snapshot import merge
from .spec import partition

CALL_TIMEOUT_S = 60.0


class ShardedEngine:
    """Drives ``handles`` (started shards) as one engine. ``kind``: "local" or "ray"."""

    def __init__(self, handles: list[ShardHandle], *, endpoint, workload, kind: str,
                 on_loss: Callable[[str], None] | None = None, call_timeout_s: float = CALL_TIMEOUT_S,
                 details: dict[str, Any] | None = None) -> None:
        self.handles = handles
        self.endpoint = endpoint
        self.workload = workload
        self.kind = kind
        self.on_loss = on_loss
        self.call_timeout_s = call_timeout_s
        self.details = details or {}
        self.alive = [True] * len(handles)
        self.losses: list[str] = []
        self.clocks = [ClockSync() for _ in handles]
        self.usage: list[dict | None] = [None] * len(handles)
        self._last: list[dict | None] = [None] * len(handles)
        self._concurrency = 0
        self._running = False
        self._driver_boot = boot_id()
        self.sync_clocks()

    # -- the Engine interface --------------------------------------------------------------------
    @property
    def workers(self) -> int:
        return sum(int(h.info.get("workers", 0)) for h in self.handles)

    @property
    def shards(self) -> int:
        return len(self.handles)

    @property
    def live_shards(self) -> int:
        return len(self._live())

    @property
    def concurrency(self) -> int:
        return self._concurrency

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> "ShardedEngine":
        self._fan("start")
        self._running = True
        return self

    def stop(self) -> None:
        if self._running:
            self._fan("stop")
        self._running = False

    def set_concurrency(self, agents: int) -> None:
        if agents < 0:
            raise ValueError("concurrency must be >= 0")
        self._concurrency = int(agents)
        live = self._live()
        shares = partition(self._concurrency, len(live)) if live else []
        self._fan("set_concurrency", per_shard={i: (n,) for i, n in zip(live, shares)})

    def new_isolation_epoch(self) -> None:
        """A new epoch on every shard; the clocks are measured again (drift between probes)."""
        self.sync_clocks()
        self._fan("new_isolation_epoch")

    def snapshot(self) -> Snapshot:
        got = self._fan("snapshot")
        for i, parts in got.items():
            self._last[i] = parts
        have = [i for i, p in enumerate(self._last) if p is not None]
        return merge([self._last[i] for i in have], [self.alive[i] for i in have], now_ns())

    def drain_records(self) -> np.ndarray:
        batches = [b for b in self._fan("drain").values() if b.size]
        if not batches:
            return np.empty(0, dtype=RECORD_DTYPE)
        # dtype given: NumPy 2 would otherwise promote the padded record dtype to a packed one
        return batches[0] if len(batches) == 1 else np.concatenate(batches, dtype=RECORD_DTYPE)

    def first_failures(self) -> list[dict[str, Any]]:
        """The first failure body of each (kind, status) over the shards (the lowest shard's first)."""
        seen: dict[tuple, dict[str, Any]] = {}
        for _, kept in sorted(self._fan("first_failures").items()):
            for f in kept:
                seen.setdefault((f["kind"], f["http_status"]), f)
        return list(seen.values())

    def __enter__(self) -> "ShardedEngine":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- shards ----------------------------------------------------------------------------------
    def window_cpu(self) -> "_ShardsWindowCpu":
        """The self-check's per-worker CPU over a probe window, counted inside each shard (the
        workers run there): :meth:`_ShardsWindowCpu.close` gives the shares by ``shardI/apn-worker-N``."""
        self._fan("cpu_mark")
        return _ShardsWindowCpu(self)

    def window_counts(self, start_ns: int, end_ns: int) -> list[dict]:
        """Each live shard's count of the requests scheduled in a window given on the driver's
        clock (each maps it to its own clock)."""
        return [v for _, v in sorted(self._fan("window_counts", start_ns, end_ns).items())]

    def sync_clocks(self) -> None:
        for i in self._live():
            h = self.handles[i]
            try:
                same = bool(self._driver_boot) and h.info.get("boot_id") == self._driver_boot
                clock = sync(self.clocks[i], lambda: h.call("clock", timeout_s=self.call_timeout_s), same_host=same)
                h.call("set_offset", clock.offset_ns, timeout_s=self.call_timeout_s)
            except ShardLost as e:
                self._lose(i, str(e))

    def read_usage(self) -> None:
        """Each live shard's CPU time and peak memory (kept for :meth:`describe`)."""
        for i, u in self._fan("usage").items():
            self.usage[i] = u

    def problems(self) -> list[str]:
        """What the validity verdict must say about the shards: clocks known worse than 5 ms."""
        out = []
        for i, c in enumerate(self.clocks):
            if c.flagged:
                out.append(f"shard {i} ({self.handles[i].where}): clock offset known to ±{c.uncertainty_ns / 1e6:.1f} ms "
                           f"(more than {UNCERTAINTY_LIMIT_NS / 1e6:g} ms): its windows may not line up")
        return out

    def describe(self) -> dict[str, Any]:
        """The manifest's ``shards`` entry."""
        return {"count": len(self.handles), "kind": self.kind, **self.details,
                "agent_ids": "engine-wide id x count + shard index",
                "clock": "records mapped to the driver's CLOCK_MONOTONIC: shard time + offset_ns",
                "losses": list(self.losses),
                "shards": [{"index": i, "alive": self.alive[i], **h.info, "clock": self.clocks[i].to_dict(),
                            "usage": self.usage[i]}
                           for i, h in enumerate(self.handles)]}

    def kill_shard(self, index: int) -> None:
        """Ends shard ``index`` at once, as a crash would (tests)."""
        self.handles[index].kill()

    def close(self) -> None:
        for i, h in enumerate(self.handles):
            if self.alive[i]:
                h.close()
            self.alive[i] = False

    # -- fan-out ---------------------------------------------------------------------------------
    def _live(self) -> list[int]:
        return [i for i, a in enumerate(self.alive) if a]

    def _fan(self, method: str, *args: Any, per_shard: dict[int, tuple] | None = None) -> dict[int, Any]:
        """Calls ``method`` on every live shard at once; returns the answers by shard index."""
        tickets = {}
        for i in self._live():
            try:
                tickets[i] = self.handles[i].send(method, *(per_shard[i] if per_shard is not None else args))
            except ShardLost as e:
                self._lose(i, str(e))
        answers = {}
        for i, ticket in tickets.items():
            try:
                answers[i] = self.handles[i].receive(ticket, self.call_timeout_s)
            except ShardLost as e:
                self._lose(i, str(e))
        return answers

    def _lose(self, index: int, why: str) -> None:
        if not self.alive[index]:
            return
        self.alive[index] = False
        self.handles[index].kill()
        left = len(self._live())
        reason = f"shard {index} ({self.handles[index].where}) lost: {why}"
        self.losses.append(reason)
        if self.on_loss is not None:
            self.on_loss(reason + (f"; {left} shard(s) left" if left else "; no shard left"))


class _ShardsWindowCpu:
    """:class:`~agentperf_native.client_check.WindowCpu` over the shards of a :class:`ShardedEngine`."""

    def __init__(self, engine: ShardedEngine) -> None:
        self.engine = engine

    def close(self) -> tuple[dict[str, float], dict[str, float]]:
        cpu: dict[str, float] = {}
        wait: dict[str, float] = {}
        for i, (c, w) in sorted(self.engine._fan("cpu_close").items()):
            cpu.update({f"shard{i}/{name}": v for name, v in c.items()})
            wait.update({f"shard{i}/{name}": v for name, v in w.items()})
        return cpu, wait
