"""The orchestration loop: one asyncio event loop (uvloop when installed) beside the engine's threads.

Everything the Python side does while the engine runs is a task of this loop: draining records
(every ``tick_s``) into the records file and the open windows' meters, probe control, the live
line, power samplers and metric scrapes. Nothing polls with ``time.sleep``; probe control waits on
the drain ticks (:meth:`Orchestrator.tick`).

SIGINT and SIGTERM set :attr:`Orchestrator.interrupted`; the next :meth:`~Orchestrator.tick` raises
:class:`Interrupted` in the task waiting on it, so the run stops at a tick boundary with every
record drained and written (the caller writes a summary marked incomplete).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

import numpy as np

from .engine import Engine, Snapshot, now_ns
from .measure import WindowMeter

T = TypeVar("T")


class Interrupted(Exception):
    """The run was asked to stop (SIGINT / SIGTERM / :meth:`Orchestrator.interrupt`)."""

    def __init__(self, signal_name: str = "interrupt") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class Orchestrator:
    """Drains ``engine`` every ``tick_s`` on the running loop and hands each batch to ``sink``
    (e.g. :class:`~agentperf_native.results.RecordFile`), to every meter in :attr:`meters` and to
    every listener. Use inside :func:`run_loop` (``async with Orchestrator(...)``)."""

    def __init__(self, engine: Engine, *, sink: Any = None, tick_s: float = 0.25, keep_records: bool = False) -> None:
        self.engine = engine
        self.sink = sink
        self.tick_s = tick_s
        self.meters: set[WindowMeter] = set()
        self.listeners: list[Callable[[np.ndarray], None]] = []
        self.interrupted: str | None = None
        self.kept: list[np.ndarray] | None = [] if keep_records else None
        self._tick = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.snapshot: Snapshot | None = None

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
            raise Interrupted(self.interrupted)
        self._tick.clear()
        await self._tick.wait()
        if self.interrupted:
            raise Interrupted(self.interrupted)
        assert self.snapshot is not None
        return self.snapshot

    async def _drain_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self.drain()
            self.snapshot = self.engine.snapshot()
            self._tick.set()
            next_at += self.tick_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))


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


__all__ = ["Interrupted", "Orchestrator", "now_ns", "run_loop"]
