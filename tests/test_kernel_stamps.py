"""Token times from the kernel's receive stamps: independent of how busy the client's CPU is.

The oracle is the simulator's own stamps of the same requests (matched by X-Request-Id, on the same
CLOCK_MONOTONIC): when it handed each request's first and last output event to the kernel. On
loopback the kernel stamps the bytes as they are sent, so the client's kernel stamps must sit on
the server's whatever load the client's cores carry, while its user-space stamps (kernel stamp +
client-added delay) drift with that load.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import agentperf_native as ap
from agentperf_native.engine import FLAG_USER_STAMPS
from agentperf_native.measure import WindowMeter
from conftest import one_turn_workload

HOG = "while True: pass"


class _CpuHogs:
    """Two CPU-bound processes on the cores this process's new threads will run on."""

    def __init__(self, n: int = 2) -> None:
        self.cores = sorted(os.sched_getaffinity(0))[:2]
        self.saved = os.sched_getaffinity(0)
        self.procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(n)]
        for p in self.procs:
            os.sched_setaffinity(p.pid, self.cores)
        # Threads inherit the creating thread's affinity: the engine's workers share the hogs' cores.
        os.sched_setaffinity(0, self.cores)

    def stop(self) -> None:
        os.sched_setaffinity(0, self.saved)
        for p in self.procs:
            p.kill()
            p.wait()


def _ms(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64) / 1e6


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_ttft_from_kernel_stamps_holds_with_two_cpu_hogs_beside_the_client(sim, protocol):
    server = sim(ttft_s=0.05, itl_s=0.01, workers=1)
    hogs = _CpuHogs()
    try:
        engine = ap.Engine(server.url, one_turn_workload(30), workers=1, protocol=protocol, spawn_interval_s=0.01)
        summary, records = ap.run_phase(engine, 64, 3.0)
        snap = engine.snapshot()
    finally:
        hogs.stop()
    ok = records[records["error_kind"] == 0]
    assert summary.requests_failed == 0 and len(ok) >= 100, summary.failures_by_kind
    assert not (ok["flags"] & FLAG_USER_STAMPS).any()  # every read carried a kernel stamp
    stamps = {s["request_id"]: s for s in server.stamps()}
    pairs = [(r, stamps[int(r["request_id"])]) for r in ok if int(r["request_id"]) in stamps]
    assert len(pairs) == len(ok)
    sent = np.array([r["sent_ns"] for r, _ in pairs])
    kernel_first = np.array([r["first_token_ns"] for r, _ in pairs])
    server_first = np.array([s["first_token_ns"] for _, s in pairs])
    delay = np.array([int(r["client_delay_us"]) * 1000 for r, _ in pairs])
    ttft_kernel, ttft_server = _ms(kernel_first - sent), _ms(server_first - sent)
    # The user-space view of the same events: at most kernel stamp + the request's largest delay.
    ttft_user = _ms(kernel_first + delay - sent)
    report = {p: {"kernel": round(float(np.percentile(ttft_kernel, p) - np.percentile(ttft_server, p)), 3),
                  "user": round(float(np.percentile(ttft_user, p) - np.percentile(ttft_server, p)), 3)}
              for p in (50, 99)}
    report["client_added_delay_ms_p50_p99_max"] = [round(float(x), 3) for x in np.percentile(_ms(delay), [50, 99, 100])]
    print(f"TTFT percentile minus the server's (ms), {protocol}: {report}")
    for p in (50, 99):
        assert abs(report[p]["kernel"]) < 1.0, report
    # Request by request, the kernel's stamp is never before the server's send (the server stamps
    # around its write, so either may come first by a few microseconds).
    gap = _ms(kernel_first - server_first)
    print(f"per request, kernel minus server (ms): min {gap.min():.3f}, p99 {np.percentile(gap, 99):.3f}")
    assert gap.min() > -0.05, report
    if protocol == "h1":
        # Each request has its connection to itself here, so no other request's bytes share its
        # reads: its own stamp sits on the server's. (On one HTTP/2 connection carrying every
        # stream, bytes that wait in the socket while the starved client is off its core are merged
        # by the kernel into one segment stamped with the newest arrival, tcp_try_coalesce: a first
        # token merged with later frames carries their stamp. The percentiles above still hold.)
        assert np.percentile(np.abs(gap), 99) < 1.0, report
    assert (delay >= 0).all() and (delay > 0).mean() > 0.5, report
    # Every output event went into the live client-added delay histogram.
    assert snap.client_delay_ns.count == int(ok["output_events"].sum()) + int(
        records[records["error_kind"] != 0]["output_events"].sum())


def test_without_kernel_stamps_every_record_says_so(sim):
    server = sim(ttft_s=0.01, itl_s=0.002)
    engine = ap.Engine(server.url, one_turn_workload(10), workers=1, kernel_stamps=False)
    summary, records = ap.run_phase(engine, 4, 0.6)
    assert summary.requests_ok > 4
    assert (records["flags"] & FLAG_USER_STAMPS != 0).all()
    assert (records["client_delay_us"] == 0).all()
    assert engine.snapshot().client_delay_ns.count == 0
    stats = WindowMeter(0, end_ns=ap.engine.now_ns()).add(records).stats()
    assert stats.requests_user_stamps == len(records)
    assert stats.client_delay_ms == {"p50": None, "p99": None, "max": None}


def test_kernel_stamped_records_give_the_window_its_client_added_delay(sim):
    server = sim(ttft_s=0.01, itl_s=0.002)
    engine = ap.Engine(server.url, one_turn_workload(10), workers=1)
    summary, records = ap.run_phase(engine, 4, 0.6)
    assert summary.requests_user_stamps == 0
    d = summary.client_delay_ms
    assert 0 <= d["p50"] <= d["p99"] <= d["max"] == records["client_delay_us"].max() / 1e3
