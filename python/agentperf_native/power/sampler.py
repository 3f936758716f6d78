"""The power sampler interface: every source (NVML, AMD-SMI, a Prometheus/DCGM endpoint, the
simulator, a constant) is a :class:`PowerSampler`.

A sampler reads its devices every ``interval_s`` and keeps every reading (monotonic ns, the same
CLOCK_MONOTONIC the engine stamps records with): instantaneous power in W and, where the source has
one, a cumulative energy counter in J. :meth:`PowerSampler.window` turns the readings over any
interval into a :class:`PowerWindow` through :mod:`.integrate` (the only place that integrates).

Two ways to run one:

- on the orchestrator's asyncio loop: ``task = loop.create_task(sampler.run(stop_event))``; the
  blocking library / HTTP calls go through ``loop.run_in_executor`` on the sampler's own thread,
  so the loop never blocks; set ``stop_event`` and await the task to stop (it takes one last
  reading, so a window ending at the stop is covered);
- from synchronous code: :meth:`PowerSampler.start` / :meth:`PowerSampler.stop` (a thread).

Per window, the method is chosen per device in this order: the energy counter (``energy_counter``)
when the device has one that is trusted and the window is longer than the counter's update period;
``power_x_time`` (the power at the window's midpoint × its length) when the window is shorter than
that period; integrated instantaneous samples (``integrated_samples``) otherwise.

Thread safety: readings are appended by the sampling thread and read by :meth:`window` /
:meth:`timeline` under one lock; everything else is meant for the thread that owns the sampler.
"""

from __future__ import annotations

import abc
import asyncio
import csv
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import integrate

#: The columns of ``power.csv`` (:meth:`PowerSampler.timeline`).
TIMELINE_COLUMNS = ("t_ns", "device", "power_w", "energy_j")


class PowerUnavailable(RuntimeError):
    """The source cannot be used here (library missing, no driver, no device, endpoint down).
    The message is one line a user can act on."""


def now_ns() -> int:
    """CLOCK_MONOTONIC in ns: the clock the engine stamps its records with."""
    return time.monotonic_ns()


@dataclass(frozen=True)
class Device:
    """One measured accelerator. ``index`` is the sampler's own numbering (0..n-1, the ``device``
    column of ``power.csv``); ``source_index`` the index the source uses (NVML index, ``gpu``
    label); ``host`` the node it is on when the source says (Prometheus ``Hostname`` / URL)."""

    index: int
    name: str = ""
    uuid: str = ""
    source_index: str = ""
    host: str = ""


@dataclass(frozen=True)
class Reading:
    """One reading of one device at ``t_ns``: instantaneous power (W) and/or the cumulative energy
    counter (J, as the source reports it, resets included). Either may be None."""

    device: int
    t_ns: int
    power_w: float | None = None
    energy_j: float | None = None


@dataclass
class DeviceWindow:
    """One device over a window. ``energy_j`` is the estimate over the whole window
    (``mean_w`` × duration); ``measured_energy_j`` the energy over the covered part only."""

    index: int
    name: str
    uuid: str
    method: str
    energy_j: float | None
    mean_w: float | None
    measured_energy_j: float | None
    coverage: float
    largest_gap_s: float
    readings: int
    counter_resets: int = 0
    sampled_mean_w: float | None = None   #: from the instantaneous samples, beside a counter (cross-check)
    notes: list[str] = field(default_factory=list)


@dataclass
class PowerWindow:
    """Energy and mean power over ``[start_ns, end_ns]`` of the monotonic clock, per device
    (:attr:`devices`) and in total. ``coverage`` is the lowest device coverage, ``largest_gap_s``
    the largest device gap; ``flagged`` (with ``flag_reason``) when coverage < 95 % or a gap > 3 s.
    ``method`` is the devices' method, or several joined by ``+``; ``notes`` are sentences (fell
    back and why, resets, cross-check disagreements)."""

    source: str
    start_ns: int
    end_ns: int
    energy_j: float | None
    mean_w: float | None
    measured_energy_j: float | None
    coverage: float
    largest_gap_s: float
    method: str
    boundary: str
    interval_s: float
    flagged: bool
    flag_reason: str | None
    devices: list[DeviceWindow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def accelerators(self) -> int:
        return len(self.devices)

    @property
    def mean_w_per_accelerator(self) -> float | None:
        if self.mean_w is None or not self.devices:
            return None
        return self.mean_w / len(self.devices)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what ``phases.json`` stores as a probe's ``power``)."""
        d = asdict(self)
        d["duration_s"] = self.duration_s
        return d


class PowerSampler(abc.ABC):
    """The interface every power source implements; see the module docstring for how to run one.

    Subclasses implement :meth:`_open` (blocking: load the library, find the devices, return them),
    :meth:`_read` (blocking: one reading of every device) and optionally :meth:`_close`. They may
    set :attr:`notes` (sentences about the source), mark a device's counter untrusted with
    :meth:`distrust_counter`, and override :attr:`counter_update_ns` when they know it.
    """

    #: The name of the source (``nvml``, ``amdsmi``, ``prometheus``, ``sim``, ``constant``).
    source: str = "?"

    def __init__(self, *, interval_s: float, boundary: str, max_bridge_s: float = integrate.MAX_GAP_S,
                 min_coverage: float = integrate.MIN_COVERAGE, max_gap_s: float = integrate.MAX_GAP_S) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = float(interval_s)
        self.boundary = boundary
        self.max_bridge_ns = int(max_bridge_s * 1e9)
        self.min_coverage = min_coverage
        self.max_gap_s = max_gap_s
        self.devices: list[Device] = []
        self.notes: list[str] = []
        #: The counter's update period when known (measured or documented); None: estimated from readings.
        self.counter_update_ns: int | None = None
        self._counter_ok: dict[int, str | None] = {}   # device -> None (trusted) or why not
        self._cross_checked: set[int] = set()
        self._lock = threading.Lock()
        self._p_t: dict[int, list[int]] = {}
        self._p_w: dict[int, list[float]] = {}
        self._e_t: dict[int, list[int]] = {}
        self._e_j: dict[int, list[float]] = {}
        self._failures = 0
        self._last_failure: str | None = None
        self._opened = False
        self._thread: threading.Thread | None = None
        self._thread_stop = threading.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._readers: list[tuple[int, asyncio.Future]] = []
        self._last_read_ns = -1
        self.started_ns: int | None = None
        self.stopped_ns: int | None = None

    # ---- to implement ------------------------------------------------------------------------

    @abc.abstractmethod
    def _open(self) -> list[Device]:
        """Blocking. Load the library / reach the endpoint and return the devices; raise
        :class:`PowerUnavailable` with a one-line reason when the source cannot be used."""

    @abc.abstractmethod
    def _read(self) -> list[Reading]:
        """Blocking. One reading of every device (stamped with :func:`now_ns`)."""

    def _close(self) -> None:
        """Blocking. Release the library (called once, after the last reading)."""

    def _after_read(self) -> None:
        """Called on the sampling thread after each stored reading (e.g. a start-up cross-check)."""

    # ---- state ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Blocking. Opens the source once (idempotent); raises :class:`PowerUnavailable`."""
        if self._opened:
            return
        devices = self._open()
        if not devices:
            raise PowerUnavailable(f"{self.source}: no device to measure")
        self.devices = list(devices)
        for d in self.devices:
            self._counter_ok.setdefault(d.index, None)
            for store in (self._p_t, self._p_w, self._e_t, self._e_j):
                store.setdefault(d.index, [])
        self._opened = True

    def close(self) -> None:
        if self._opened:
            self._opened = False
            self._close()

    def sample_once(self) -> int:
        """Blocking. Takes one reading of every device and stores it; returns its time. A failed
        read is counted (see :attr:`failures`) and leaves a gap, it never raises."""
        try:
            readings = self._read()
        except Exception as e:  # a source that fails mid-run leaves a gap, reported as coverage
            self._failures += 1
            self._last_failure = _one_line(e)
            return now_ns()
        self.add_readings(readings)
        self._after_read()
        return max((r.t_ns for r in readings), default=now_ns())

    def add_readings(self, readings: Iterable[Reading]) -> None:
        """Stores readings (the sampling thread calls this; tests and replays may too). Readings
        of one device must come in time order; an out-of-order one is dropped."""
        with self._lock:
            for r in readings:
                for t, v, ts, vs in ((r.t_ns, r.power_w, self._p_t, self._p_w),
                                     (r.t_ns, r.energy_j, self._e_t, self._e_j)):
                    if v is None:
                        continue
                    times = ts.setdefault(r.device, [])
                    if times and t <= times[-1]:
                        continue
                    times.append(t)
                    vs.setdefault(r.device, []).append(float(v))
                self._counter_ok.setdefault(r.device, None)
                self._last_read_ns = max(self._last_read_ns, r.t_ns)

    def distrust_counter(self, device: int, why: str) -> None:
        """Stops using ``device``'s energy counter (windows use its power samples); ``why`` is a
        sentence that goes into every window's notes."""
        self._counter_ok[device] = why

    def cross_check_counters(self, *, after_s: float, ratio_range: tuple[float, float] = (0.1, 10.0)) -> None:
        """Once a device has ``after_s`` of counter readings, compares its counter's energy with
        its sampled power × time over them, once; outside ``ratio_range`` the counter is distrusted
        (some parts report it wrong). Sources that need it call this from :meth:`_after_read`."""
        for d in self.devices:
            if d.index in self._cross_checked:
                continue
            pt, pw, et, ej = self._snapshot(d.index)
            if not et or et[-1] - et[0] < after_s * 1e9:
                continue
            self._cross_checked.add(d.index)
            a, b = et[0], et[-1]
            sampled = integrate.sample_energy(pt, pw, a, b, max_bridge_ns=self.max_bridge_ns)
            if sampled.coverage < 0.5 or sampled.energy_j <= 0:
                continue
            ratio = integrate.counter_energy(et, ej, a, b).energy_j / (sampled.energy_j / sampled.coverage)
            if not ratio_range[0] <= ratio <= ratio_range[1]:
                self.distrust_counter(d.index, f"device {d.index}: the energy counter read {ratio:.2f}× the sampled "
                                      f"power × time over the first {after_s:g} s (outside {ratio_range[0]:g}–"
                                      f"{ratio_range[1]:g}×): using the power samples")

    @property
    def failures(self) -> int:
        """Reads that failed (each leaves a gap)."""
        return self._failures

    def has_counter(self, device: int) -> bool:
        with self._lock:
            return bool(self._e_t.get(device)) and self._counter_ok.get(device) is None

    def has_samples(self, device: int) -> bool:
        with self._lock:
            return bool(self._p_t.get(device))

    # ---- synchronous running ---------------------------------------------------------------

    def start(self) -> None:
        """Blocking open, a first reading, then a thread reading every ``interval_s`` until
        :meth:`stop`. Raises :class:`PowerUnavailable` when the source cannot be used."""
        if self._thread is not None:
            return
        self.open()
        self.started_ns = now_ns()
        self.sample_once()
        self._thread_stop.clear()
        self._thread = threading.Thread(target=self._thread_main, name=f"power-{self.source}", daemon=True)
        self._thread.start()

    def _thread_main(self) -> None:
        interval_ns = int(self.interval_s * 1e9)
        next_ns = now_ns() + interval_ns
        while not self._thread_stop.wait(max(0.0, (next_ns - now_ns()) / 1e9)):
            self.sample_once()
            next_ns = _next_deadline(next_ns, interval_ns)

    def stop(self) -> None:
        """Stops the thread, takes a last reading and closes the source (blocking)."""
        if self._thread is not None:
            self._thread_stop.set()
            self._thread.join()
            self._thread = None
            self.sample_once()
        self.stopped_ns = now_ns()
        self.close()

    # ---- asyncio running --------------------------------------------------------------------

    async def run(self, stop_event: asyncio.Event) -> None:
        """Samples every ``interval_s`` until ``stop_event`` is set, without blocking the loop
        (library calls run on this sampler's own executor thread), then takes a last reading and
        closes. Raises :class:`PowerUnavailable` (from the open) when the source cannot be used."""
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"power-{self.source}")
        try:
            await loop.run_in_executor(self._executor, self.open)
            self.started_ns = now_ns()
            interval_ns = int(self.interval_s * 1e9)
            next_ns = now_ns()
            while True:
                await loop.run_in_executor(self._executor, self.sample_once)
                self._wake_readers()
                next_ns = _next_deadline(next_ns, interval_ns)
                if stop_event.is_set():
                    break
                try:
                    await asyncio.wait_for(stop_event.wait(), max(0.0, (next_ns - now_ns()) / 1e9))
                    break
                except asyncio.TimeoutError:
                    pass
            await loop.run_in_executor(self._executor, self.sample_once)
            self._wake_readers()
        finally:
            self.stopped_ns = now_ns()
            executor, self._executor = self._executor, None
            executor.submit(self.close)
            executor.shutdown(wait=False)
            for _, fut in self._readers:
                if not fut.done():
                    fut.set_result(None)
            self._readers.clear()

    def _wake_readers(self) -> None:
        keep = []
        for t_ns, fut in self._readers:
            if self._last_read_ns >= t_ns:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((t_ns, fut))
        self._readers = keep

    async def window_settled(self, start_ns: int, end_ns: int, *, timeout_s: float | None = None) -> PowerWindow:
        """:meth:`window` once a reading at or after ``end_ns`` exists (so the window's end is
        bracketed), waiting at most ``timeout_s`` (default: two intervals + 1 s). For a sampler
        that :meth:`run` runs (or is about to run) on this loop; once it has stopped this returns
        at once."""
        if self.stopped_ns is None and self._last_read_ns < end_ns:
            fut = asyncio.get_running_loop().create_future()
            self._readers.append((end_ns, fut))
            wait = timeout_s if timeout_s is not None else 2 * self.interval_s + 1.0
            try:
                await asyncio.wait_for(asyncio.shield(fut), wait)
            except asyncio.TimeoutError:
                pass
        return self.window(start_ns, end_ns)

    # ---- results -----------------------------------------------------------------------------

    def _snapshot(self, device: int) -> tuple[list[int], list[float], list[int], list[float]]:
        with self._lock:
            return (list(self._p_t.get(device, ())), list(self._p_w.get(device, ())),
                    list(self._e_t.get(device, ())), list(self._e_j.get(device, ())))

    def counter_period_ns(self, device: int) -> int | None:
        """How often ``device``'s counter changes: :attr:`counter_update_ns` when the source knows,
        else the median interval between readings whose value changed (None without a counter)."""
        if self.counter_update_ns is not None:
            return self.counter_update_ns
        _, _, et, ej = self._snapshot(device)
        changes = [t for i, t in enumerate(et) if i and ej[i] != ej[i - 1]]
        if len(changes) < 3:
            return None
        return int(statistics.median(b - a for a, b in zip(changes, changes[1:])))

    def window(self, start_ns: int, end_ns: int) -> PowerWindow:
        """Energy and mean power over ``[start_ns, end_ns]`` (monotonic ns), per device and in
        total, from the readings stored so far. Never blocks on the source."""
        if end_ns < start_ns:
            raise ValueError(f"window ends ({end_ns}) before it starts ({start_ns})")
        devices = [self._device_window(d, start_ns, end_ns) for d in self.devices]
        return self._combine(start_ns, end_ns, devices)

    def _device_window(self, d: Device, start_ns: int, end_ns: int) -> DeviceWindow:
        pt, pw, et, ej = self._snapshot(d.index)
        notes: list[str] = []
        distrust = self._counter_ok.get(d.index)
        period = self.counter_period_ns(d.index) if et else None
        duration = end_ns - start_ns
        sampled = integrate.sample_energy(pt, pw, start_ns, end_ns, max_bridge_ns=self.max_bridge_ns) if pt else None
        if et and distrust is None and (period is None or duration >= period or not pt):
            integ = integrate.counter_energy(et, ej, start_ns, end_ns)
            method = "energy_counter"
            if integ.resets:
                notes.append(f"device {d.index}: the energy counter went backwards {integ.resets} time(s) "
                             "(reset); the energy before each reset inside its reading interval is lost")
            if period is not None and duration and period > 0.01 * duration:
                notes.append(f"device {d.index}: the counter changes every {period / 1e6:.0f} ms, "
                             f"{period / duration:.1%} of the window: its edges are uncertain by up to that much")
        elif pt and et and distrust is None:
            integ = integrate.power_x_time(pt, pw, start_ns, end_ns, max_distance_ns=self.max_bridge_ns)
            method = "power_x_time"
            notes.append(f"device {d.index}: window ({duration / 1e6:.0f} ms) shorter than the energy counter's "
                         f"update period ({(period or 0) / 1e6:.0f} ms): power at the midpoint × time")
        else:
            integ = sampled if sampled is not None else integrate.sample_energy([], [], start_ns, end_ns)
            method = "integrated_samples"
            if distrust:
                notes.append(distrust)
        mean = integ.mean_w
        sampled_mean = sampled.mean_w if (sampled is not None and method != "integrated_samples") else None
        if mean and sampled_mean and abs(sampled_mean - mean) > 0.1 * mean:
            notes.append(f"device {d.index}: sampled power ({sampled_mean:.1f} W) and the counter "
                         f"({mean:.1f} W) disagree by more than 10 %")
        return DeviceWindow(
            index=d.index, name=d.name, uuid=d.uuid, method=method,
            energy_j=None if mean is None else mean * duration / 1e9,
            mean_w=mean, measured_energy_j=integ.energy_j if integ.covered_ns else None,
            coverage=integ.coverage, largest_gap_s=integ.largest_gap_ns / 1e9,
            readings=integ.readings, counter_resets=integ.resets, sampled_mean_w=sampled_mean, notes=notes)

    def _combine(self, start_ns: int, end_ns: int, devices: Sequence[DeviceWindow], *,
                 method: str | None = None) -> PowerWindow:
        notes = list(self.notes)
        for dw in devices:
            notes.extend(dw.notes)
        if self._failures:
            notes.append(f"{self._failures} read(s) failed so far (last: {self._last_failure})")
        measured = [dw for dw in devices if dw.mean_w is not None]
        mean = sum(dw.mean_w for dw in measured) if measured and len(measured) == len(devices) else None  # type: ignore[misc]
        if measured and len(measured) < len(devices):
            notes.append(f"{len(devices) - len(measured)} of {len(devices)} devices have no reading in the window: "
                         "no total")
        coverage = min((dw.coverage for dw in devices), default=0.0)
        gap = max((dw.largest_gap_s for dw in devices), default=(end_ns - start_ns) / 1e9)
        if method is None:
            method = "+".join(sorted({dw.method for dw in devices})) or "none"
        flagged, reason = integrate.assess(coverage, gap, min_coverage=self.min_coverage, max_gap_s=self.max_gap_s)
        if mean is not None and coverage < 1.0:
            notes.append(f"the energy over the {1 - coverage:.1%} of the window without readings is the mean "
                         "power of the rest × its length")
        duration_s = (end_ns - start_ns) / 1e9
        measured_j = sum(dw.measured_energy_j or 0.0 for dw in devices) if measured else None
        return PowerWindow(
            source=self.source, start_ns=start_ns, end_ns=end_ns,
            energy_j=None if mean is None else mean * duration_s, mean_w=mean, measured_energy_j=measured_j,
            coverage=coverage, largest_gap_s=gap, method=method, boundary=self.boundary,
            interval_s=self.interval_s, flagged=flagged, flag_reason=reason, devices=list(devices),
            notes=_dedupe(notes))

    def timeline(self) -> list[tuple[int, int, float | None, float | None]]:
        """Rows for ``power.csv`` (:data:`TIMELINE_COLUMNS`), in time order: ``power_w`` the
        instantaneous sample (or, for a counter-only device, the counter's rate since the previous
        reading); ``energy_j`` the device's energy since its first counter reading, resets
        removed (empty without a counter)."""
        rows: dict[tuple[int, int], list[float | None]] = {}
        for d in self.devices:
            pt, pw, et, ej = self._snapshot(d.index)
            for t, w in zip(pt, pw):
                rows[(t, d.index)] = [w, None]
            if et:
                mono, _ = integrate.unwrap_counter(ej)
                base = mono[0]
                for i, (t, j) in enumerate(zip(et, mono)):
                    row = rows.setdefault((t, d.index), [None, None])
                    row[1] = j - base
                    if row[0] is None and i:
                        row[0] = (j - mono[i - 1]) / ((t - et[i - 1]) / 1e9)
        return [(t, dev, v[0], v[1]) for (t, dev), v in sorted(rows.items())]

    def write_timeline(self, path: str | Path) -> Path:
        """Writes :meth:`timeline` as CSV with a header (``power.csv``)."""
        path = Path(path)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(TIMELINE_COLUMNS)
            for t, dev, p, e in self.timeline():
                w.writerow([t, dev, "" if p is None else f"{p:.3f}", "" if e is None else f"{e:.3f}"])
        return path

    def describe(self) -> list[str]:
        """Lines for ``power probe``: the devices and what each can be measured with."""
        lines = []
        for d in self.devices:
            where = f" on {d.host}" if d.host else ""
            ident = f" {d.uuid}" if d.uuid else ""
            lines.append(f"  device {d.index}: {d.name or '?'}{ident}{where}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The sampler's description for JSON (``manifest.json`` / ``power.json``)."""
        return {
            "source": self.source,
            "boundary": self.boundary,
            "interval_s": self.interval_s,
            "devices": [asdict(d) for d in self.devices],
            "counters": {str(d.index): ("trusted" if self._counter_ok.get(d.index) is None and self._snapshot(d.index)[2]
                                   else (self._counter_ok.get(d.index) or "none")) for d in self.devices},
            "counter_update_ms": None if self.counter_update_ns is None else self.counter_update_ns / 1e6,
            "failures": self._failures,
            "started_ns": self.started_ns,
            "stopped_ns": self.stopped_ns,
            "notes": list(self.notes),
        }


def _next_deadline(prev_ns: int, interval_ns: int) -> int:
    """The next tick after ``prev_ns`` that is still in the future (missed ticks are skipped,
    which shows as a gap rather than a burst of readings)."""
    nxt = prev_ns + interval_ns
    now = now_ns()
    if nxt <= now:
        nxt += ((now - nxt) // interval_ns + 1) * interval_ns
    return nxt


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _dedupe(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in items:
        seen.setdefault(i, None)
    return list(seen)

