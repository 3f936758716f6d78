"""The orchestration loop: one asyncio event loop (uvloop when installed) beside the engine's threads.

Everything the Python side does while the engine runs is a task of this loop: draining records
(every ``tick_s``) into the records file and the open windows' meters, probe control, the live
line, power samplers and metric scrapes. Nothing polls with ``time.sleep``; probe control waits on
the drain ticks (:meth:`Orchestrator.tick`).

SIGINT and SIGTERM set :attr:`Orchestrator.interrupted`; the next :meth:`~Orchestrator.tick` raises
:class:`Interrupted` in the task waiting on it, so the run stops at a tick boundary with every
record drained and written (the caller writes a summary marked incomplete).

Early stop (``stop_after_failing_s``): when every request that ended in the last N seconds failed
and no output arrived meanwhile (the server went away), the run stops the same way, with the
verdict in :attr:`Orchestrator.stopped_early` (:class:`FailingStreak`).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

import numpy as np

from .engine import ERROR_KINDS, Engine, Snapshot, now_ns
from .client_check import LoopLag
from .measure import WindowMeter

T = TypeVar("T")


class Interrupted(Exception):
    """The run was asked to stop (SIGINT / SIGTERM / :meth:`Orchestrator.interrupt`, or an early
    stop). ``reason`` is what a probe cut short says: "interrupted", or the early-stop verdict."""

    def __init__(self, signal_name: str = "interrupt", reason: str = "interrupted") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.reason = reason


_CANCELLED = ERROR_KINDS.index("cancelled")


class FailingStreak:
    """Whether the server went away: every request that ended since ``since_ns`` failed and no
    output event arrived since. Fed each drained batch (:meth:`add`) and the engine's output event
    count (:meth:`progress`); :meth:`due` once the streak has lasted ``after_s``. Cancelled
    records (the client's own stop) neither start nor end a streak."""

    #: what a probe or tier cut short by an early stop says (the summary holds the full verdict)
    REASON = "stopped early: every request failed (--stop-after-failing)"

    def __init__(self, after_s: float) -> None:
        self.after_ns = int(after_s * 1e9)
        self.since_ns: int | None = None
        self.kinds: dict[str, int] = {}
        self._events = -1

    def _reset(self) -> None:
        self.since_ns, self.kinds = None, {}

    def add(self, batch: np.ndarray) -> None:
        batch = batch[batch["error_kind"] != _CANCELLED]
        if not batch.size:
            return
        ok = batch["error_kind"] == 0
        failed = batch[~ok]
        if ok.any():
            self._reset()
            failed = failed[failed["done_ns"] > batch["done_ns"][ok].max()]
        if failed.size:
            first = int(failed["done_ns"].min())
            self.since_ns = first if self.since_ns is None else min(self.since_ns, first)
            kinds, counts = np.unique(failed["error_kind"], return_counts=True)
            for k, n in zip(kinds.tolist(), counts.tolist()):
                self.kinds[ERROR_KINDS[k]] = self.kinds.get(ERROR_KINDS[k], 0) + n

    def progress(self, output_events: int) -> None:
        """Output arrived since the last call: the server is answering, the streak ends."""
        if output_events != self._events:
            self._events = output_events
            self._reset()

    def due(self, now: int) -> bool:
        return self.after_ns > 0 and self.since_ns is not None and now - self.since_ns >= self.after_ns

    def verdict(self, now: int) -> str:
        failures = sum(self.kinds.values())
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items(), key=lambda kv: -kv[1]))
        span = (now - (self.since_ns or now)) / 1e9
        return (f"stopped early: every request of the last {span:.0f}s failed ({failures} failures: {kinds}) and "
                "no output arrived; the server stopped answering (--stop-after-failing)")


class Orchestrator:
    """Drains ``engine`` every ``tick_s`` on the running loop and hands each batch to ``sink``
    (e.g. :class:`~agentperf_native.results.RecordFile`), to every meter in :attr:`meters` and to
    every listener. Use inside :func:`run_loop` (``async with Orchestrator(...)``)."""

    def __init__(self, engine: Engine, *, sink: Any = None, tick_s: float = 0.25, keep_records: bool = False,
                 stop_after_failing_s: float = 0.0) -> None:
        self.engine = engine
        self.sink = sink
        self.tick_s = tick_s
        self.meters: set[WindowMeter] = set()
        self.listeners: list[Callable[[np.ndarray], None]] = []
        self.interrupted: str | None = None
        self.stopped_early: str | None = None  # the verdict of an early stop (FailingStreak)
        self.streak = FailingStreak(stop_after_failing_s) if stop_after_failing_s > 0 else None
        self.kept: list[np.ndarray] | None = [] if keep_records else None
        self._tick = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.snapshot: Snapshot | None = None
        self.loop_lag = LoopLag()  # how late each drain tick woke up (the client's self-check)

    async def __aenter__(self) -> "Orchestrator":
        self.spawn(self._drain_loop(), name="drain")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.drain()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task:
        """Runs ``coro`` as a side task, cancelled when the orchestrator closes."""
        task = asyncio.get_running_loop().create_task(coro, name=name or None)
        self._tasks.append(task)
        return task

    def interrupt(self, signal_name: str = "interrupt") -> None:
        self.interrupted = self.interrupted or signal_name
        self._tick.set()

    def drain(self) -> np.ndarray:
        """Drains the engine now and hands the batch on; returns it."""
        batch = self.engine.drain_records()
        if batch.size:
            if self.sink is not None:
                self.sink.write(batch)
            for meter in list(self.meters):
                meter.add(batch)
            for listener in self.listeners:
                listener(batch)
            if self.kept is not None:
                self.kept.append(batch)
            if self.streak is not None:
                self.streak.add(batch)
        return batch

    def records(self) -> np.ndarray:
        """Every record drained so far (only with ``keep_records``)."""
        if not self.kept:
            return self.engine.drain_records()[:0]
        if len(self.kept) > 1:
            self.kept[:] = [np.concatenate(self.kept, dtype=self.kept[0].dtype)]  # NumPy 2 would pack the dtype
        return self.kept[0]

    async def tick(self) -> Snapshot:
        """Waits for the next drain tick; returns the engine snapshot taken with it. Raises
        :class:`Interrupted` once the run was asked to stop."""
        if self.interrupted:
            raise self._interrupted()
        self._tick.clear()
        await self._tick.wait()
        if self.interrupted:
            raise self._interrupted()
        assert self.snapshot is not None
        return self.snapshot

    def _interrupted(self) -> Interrupted:
        return Interrupted(self.interrupted or "interrupt",
                           reason=FailingStreak.REASON if self.stopped_early else "interrupted")

    def _check_streak(self) -> None:
        if self.streak is None or self.interrupted or self.snapshot is None:
            return
        self.streak.progress(self.snapshot.output_events)
        now = now_ns()
        if self.streak.due(now):
            self.stopped_early = self.streak.verdict(now)
            self.interrupt("early stop")

    async def _drain_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self.drain()
            self.snapshot = self.engine.snapshot()
            self._check_streak()
            self._tick.set()
            next_at += self.tick_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            late = loop.time() - next_at
            self.loop_lag.add(now_ns(), int(late * 1e9))
            if late > self.tick_s:
                next_at = loop.time()  # a late tick is counted once, not carried into the next ones


def run_loop(main: Callable[[], Awaitable[T]], *, on_signal: Callable[[str], None] | None = None) -> T:
    """Runs ``main()`` on a fresh event loop (uvloop when installed). SIGINT and SIGTERM call
    ``on_signal(name)`` (typically :meth:`Orchestrator.interrupt`) instead of killing the process;
    a second signal of the same run raises KeyboardInterrupt (the user insists)."""
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        loop = asyncio.new_event_loop()
    seen: list[str] = []

    def handler(name: str) -> None:
        if seen:
            raise KeyboardInterrupt
        seen.append(name)
        if on_signal:
            on_signal(name)

    installed = []
    if on_signal is not None and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handler, sig.name)
            installed.append(sig)
    try:
        return loop.run_until_complete(main())
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


__all__ = ["FailingStreak", "Interrupted", "Orchestrator", "now_ns", "run_loop"]
