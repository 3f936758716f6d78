"""The sampler interface (power/sampler.py): method choice per window, totals, flags, timeline,
JSON, and both ways of running (asyncio task, thread) with a synthetic in-memory source."""

from __future__ import annotations

import asyncio
import csv
import json
import threading

import pytest

from agentperf_native.power import (ConstantSampler, Device, PowerSampler, PowerUnavailable, Reading,
                                    agents_per_mw, now_ns)

S = 1_000_000_000


class Synthetic(PowerSampler):
    """A source whose readings the test adds itself (``add_readings``) or that reads a constant."""

    source = "synthetic"

    def __init__(self, n: int = 2, watts: float = 100.0, **kw):
        kw.setdefault("interval_s", 0.1)
        kw.setdefault("boundary", "board")
        super().__init__(**kw)
        self.n, self.watts = n, watts
        self.reads = 0
        self.closed = False
        self.gate: threading.Event | None = None

    def _open(self):
        return [Device(index=i, name=f"synthetic {i}", uuid=f"SYN-{i}") for i in range(self.n)]

    def _read(self):
        if self.gate is not None:            # a blocking library call, released by the test
            assert self.gate.wait(10)
            self.gate = None
        self.reads += 1
        t = now_ns()
        return [Reading(i, t, self.watts, None) for i in range(self.n)]

    def _close(self):
        self.closed = True


def feed(s: Synthetic, *, watts=(100.0, 200.0), counter=True, samples=True, step_s=0.1, until_s=10.0,
         skip=lambda t: False):
    rows = []
    for k in range(int(round(until_s / step_s)) + 1):
        t = int(round(k * step_s * S))
        if skip(t):
            continue
        for d, w in enumerate(watts):
            rows.append(Reading(d, t, w if samples else None, 5e6 + w * t / S if counter else None))
    s.add_readings(rows)


def opened(**kw) -> Synthetic:
    s = Synthetic(**kw)
    s.open()
    return s


def test_counter_is_preferred_and_samples_cross_check():
    s = opened()
    feed(s)
    w = s.window(1 * S, 9 * S)
    assert w.method == "energy_counter"
    assert w.mean_w == pytest.approx(300.0)
    assert w.energy_j == pytest.approx(2400.0)
    assert [d.mean_w for d in w.devices] == pytest.approx([100.0, 200.0])
    assert [d.sampled_mean_w for d in w.devices] == pytest.approx([100.0, 200.0])
    assert w.coverage == 1.0 and not w.flagged and w.boundary == "board"
    assert w.mean_w_per_accelerator == pytest.approx(150.0)
    assert agents_per_mw(30, w) == pytest.approx(30 / 300e-6)


def test_samples_only_are_integrated():
    s = opened()
    feed(s, counter=False)
    w = s.window(1 * S, 9 * S)
    assert w.method == "integrated_samples"
    assert w.energy_j == pytest.approx(2400.0)


def test_window_shorter_than_the_counter_update_falls_back_to_power_x_time():
    s = opened()
    s.counter_update_ns = 100_000_000
    feed(s)
    w = s.window(int(1.01 * S), int(1.06 * S))
    assert w.method == "power_x_time"
    assert w.energy_j == pytest.approx(300.0 * 0.05)
    assert any("shorter than the energy counter's update period" in n for n in w.notes)


def test_counter_update_period_is_estimated_from_readings():
    s = opened()
    # the counter moves every 0.5 s although it is read every 0.1 s
    rows = [Reading(0, k * S // 10, None, float(100 * (k // 5))) for k in range(60)]
    s.add_readings(rows)
    assert s.counter_period_ns(0) == S // 2


def test_distrusted_counter_uses_samples_and_says_why():
    s = opened()
    feed(s, watts=(100.0, 100.0))
    s.distrust_counter(1, "device 1: counter disagrees")
    w = s.window(1 * S, 9 * S)
    assert w.method == "energy_counter+integrated_samples"
    assert w.devices[1].method == "integrated_samples"
    assert "device 1: counter disagrees" in w.notes


def test_counter_reset_is_noted():
    s = opened(n=1)
    rows = []
    for k in range(101):
        t = k * S // 10
        rows.append(Reading(0, t, 100.0, 100.0 * (t / S if k <= 50 else (t / S - 5.0))))
    s.add_readings(rows)
    w = s.window(1 * S, 9 * S)
    assert w.devices[0].counter_resets == 1
    assert any("reset" in n for n in w.notes)


def test_a_gap_flags_the_window():
    s = opened()
    feed(s, counter=False, skip=lambda t: 3 * S < t < 8 * S)
    w = s.window(1 * S, 9 * S)
    assert w.flagged and "gap of 5.00 s" in w.flag_reason
    assert w.coverage == pytest.approx(6 / 8)
    assert w.largest_gap_s == pytest.approx(5.0)
    # energy over the whole window is extrapolated from the covered part, and says so
    assert w.energy_j == pytest.approx(300.0 * 8)
    assert w.measured_energy_j == pytest.approx(300.0 * 6)
    assert any("without readings" in n for n in w.notes)


def test_a_device_without_readings_gives_no_total():
    s = opened()
    s.add_readings([Reading(0, t * S, 100.0, None) for t in range(10)])
    w = s.window(1 * S, 8 * S)
    assert w.mean_w is None and w.energy_j is None
    assert w.devices[0].mean_w == pytest.approx(100.0)


def test_timeline_and_csv(tmp_path):
    s = opened()
    feed(s, until_s=1.0)
    rows = s.timeline()
    assert len(rows) == 2 * 11
    assert rows[0] == (0, 0, 100.0, 0.0)
    t, dev, p, e = rows[-1]
    assert (t, dev, p) == (S, 1, 200.0) and e == pytest.approx(200.0)
    path = s.write_timeline(tmp_path / "power.csv")
    with path.open() as f:
        got = list(csv.reader(f))
    assert got[0] == ["t_ns", "device", "power_w", "energy_j"] and len(got) == 23


def test_timeline_derives_power_for_a_counter_only_device():
    s = opened(n=1)
    s.add_readings([Reading(0, k * S, None, 50.0 * k) for k in range(4)])
    assert [r[2] for r in s.timeline()] == [None, 50.0, 50.0, 50.0]


def test_json_forms():
    s = opened()
    feed(s)
    w = s.window(1 * S, 2 * S)
    d = json.loads(json.dumps(w.to_dict()))
    for key in ("energy_j", "mean_w", "coverage", "largest_gap_s", "method", "boundary", "interval_s",
                "flagged", "flag_reason", "notes", "devices", "duration_s"):
        assert key in d
    assert d["devices"][0]["uuid"] == "SYN-0"
    assert json.loads(json.dumps(s.to_dict()))["devices"][1]["name"] == "synthetic 1"


def test_out_of_order_readings_are_dropped():
    s = opened(n=1)
    s.add_readings([Reading(0, 2 * S, 10.0), Reading(0, 1 * S, 99.0), Reading(0, 3 * S, 10.0)])
    assert [r[2] for r in s.timeline()] == [10.0, 10.0]


def test_run_does_not_block_the_loop():
    # The first read blocks until a coroutine on the same loop releases it: if run() called the
    # source on the loop's thread this would never finish.
    async def main():
        s = Synthetic(interval_s=0.02)
        s.gate = threading.Event()
        stop = asyncio.Event()
        task = asyncio.create_task(s.run(stop))
        await asyncio.sleep(0)
        s.gate.set()
        a = now_ns()
        w = await s.window_settled(a, a, timeout_s=10)   # waits for a reading at or after a
        stop.set()
        await asyncio.wait_for(task, 10)
        return s, w, a

    s, w, a = asyncio.run(asyncio.wait_for(main(), 20))
    assert s.reads >= 2 and s.closed
    assert s.timeline()[-1][0] >= a
    assert s.started_ns is not None and s.stopped_ns >= s.started_ns
    assert w.method == "integrated_samples"


def test_run_takes_a_last_reading_at_stop():
    async def main():
        s = Synthetic(interval_s=3600)   # one regular reading, then only the one at stop
        stop = asyncio.Event()
        task = asyncio.create_task(s.run(stop))
        await s.window_settled(0, 0, timeout_s=10)
        mark = now_ns()
        stop.set()
        await asyncio.wait_for(task, 10)
        return s, mark

    s, mark = asyncio.run(main())
    assert s.reads == 2 and s.timeline()[-1][0] >= mark


def test_run_raises_when_the_source_is_unavailable():
    class Broken(Synthetic):
        def _open(self):
            raise PowerUnavailable("synthetic: nothing here")

    async def main():
        await Broken().run(asyncio.Event())

    with pytest.raises(PowerUnavailable, match="nothing here"):
        asyncio.run(main())


def test_failed_reads_leave_gaps_not_exceptions():
    class Flaky(Synthetic):
        def _read(self):
            raise OSError("device went away")

    s = Flaky()
    s.open()
    s.sample_once()
    assert s.failures == 1
    assert any("device went away" in n for n in s.window(0, 1).notes)


def test_start_stop_thread():
    s = Synthetic(interval_s=0.01)
    s.start()
    s.stop()
    assert s.reads >= 2 and s.closed
    w = s.window(s.started_ns, s.stopped_ns)
    assert w.devices[0].mean_w == pytest.approx(100.0)


def test_constant():
    c = ConstantSampler(700, 8)
    w = c.window(0, 10 * S)
    assert w.method == "constant" and w.mean_w == pytest.approx(5600.0) and w.energy_j == pytest.approx(56000.0)
    assert w.coverage == 1.0 and not w.flagged and len(w.devices) == 8
    assert any("not a measurement" in n for n in w.notes)
    with pytest.raises(ValueError):
        ConstantSampler(0)


@pytest.mark.parametrize("scale, trusted", [(1.0, True), (5.0, True), (0.5, True), (12.0, False), (0.05, False)])
def test_counter_cross_check_against_power_x_time(scale, trusted):
    # A counter reading `scale` × the truth (AMD-SMI on some parts): kept within 0.1–10×.
    s = opened(n=1)
    s.add_readings([Reading(0, k * S // 10, 200.0, scale * 200.0 * k / 10) for k in range(11)])
    s.cross_check_counters(after_s=2.0)
    assert s.has_counter(0)                       # not enough readings yet: nothing decided
    s.add_readings([Reading(0, k * S // 10, 200.0, scale * 200.0 * k / 10) for k in range(11, 31)])
    s.cross_check_counters(after_s=2.0)
    assert s.has_counter(0) is trusted
    w = s.window(0, 3 * S)
    if trusted:
        assert w.method == "energy_counter" and w.mean_w == pytest.approx(200.0 * scale)
    else:
        assert w.method == "integrated_samples" and w.mean_w == pytest.approx(200.0)
        assert any("outside 0.1–10×" in n for n in w.notes)
