"""The client's self-check in every probe: worker CPU, event-loop lag, send lateness, and the
client-bound verdict when one crosses its limit."""

import os
import subprocess
import sys
import time

import pytest

import agentperf_native as ap
from agentperf_native import client_check
from agentperf_native.orchestrate import Orchestrator, run_loop
from agentperf_native.probe import PhaseRules, ProbeRunner
from agentperf_native.results.schema import validity_of
from conftest import one_turn_workload


def test_every_probe_carries_the_self_check(sim):
    server = sim(ttft_s=0.01, itl_s=0.005)
    engine = ap.Engine(server.url, one_turn_workload(20), workers=2)
    probe, _ = ap.run_phase(engine, 4, 1.5, tick_s=0.1)
    c = probe.client
    assert set(c["worker_cpu_share"]) == {"apn-worker-0", "apn-worker-1"}
    assert all(0 <= v <= 1.05 for v in c["worker_cpu_share"].values()), c
    assert c["worker_cpu_share_max"] == max(c["worker_cpu_share"].values())
    assert c["loop_ticks"] >= 10  # 1.5 s of 0.1 s ticks
    assert 0 <= c["loop_lag_p99_ms"] <= c["loop_lag_max_ms"]
    assert c["send_lateness_p99_ms"] == probe.send_lateness_p99_ms
    assert not client_check.bound_by(c), c  # 4 agents on an idle engine are nowhere near a limit
    assert validity_of([probe], interrupted=False).valid


def test_a_blocked_event_loop_makes_the_window_client_bound(sim):
    """Something on the loop (here a listener that blocks 250 ms per drain) delays every tick: the
    probe's loop lag shows it and the verdict says client-bound, with the figure and what to do."""
    server = sim(ttft_s=0.01, itl_s=0.005)
    engine = ap.Engine(server.url, one_turn_workload(20), workers=1)
    orch = Orchestrator(engine, tick_s=0.1)
    orch.listeners.append(lambda batch: time.sleep(0.25))

    async def main():
        async with orch:
            runner = ProbeRunner(orch, [], PhaseRules.fixed(2.0), [], origin_ns=ap.now_ns())
            try:
                return await runner.run(2, "fixed")
            finally:
                engine.stop()

    probe = run_loop(main)
    assert probe.client["loop_lag_p99_ms"] > 100, probe.client
    verdict = validity_of([probe], interrupted=False)
    assert not verdict.valid and verdict.client_saturated
    problem = next(p for p in verdict.problems if p.startswith("client-bound"))
    assert "event-loop lag P99" in problem and "at 2 agents" in problem and "--workers" in problem


def test_each_limit_is_judged_on_its_own():
    ok = {"worker_cpu_share_max": 0.5, "loop_lag_p99_ms": 3.0, "send_lateness_p99_ms": 1.0}
    assert client_check.bound_by(ok) == []
    assert client_check.bound_by({**ok, "worker_cpu_share_max": 0.95}) == ["engine worker CPU 95% > 90%"]
    assert client_check.bound_by({**ok, "send_lateness_p99_ms": 80.0}) == ["P99 send lateness 80 ms > 50 ms"]
    assert client_check.bound_by({**ok, "loop_lag_p99_ms": 150.0}) == ["event-loop lag P99 150 ms > 100 ms"]
    assert client_check.bound_by(None) == []
    busy = client_check.bound_by({**ok, "worker_busy_share_max": 0.97})
    assert len(busy) == 1 and busy[0].startswith("engine worker busy 97% of the window"), busy
    # a worker over the CPU limit is said once (its busy share is at least its CPU share)
    assert len(client_check.bound_by({**ok, "worker_cpu_share_max": 0.95, "worker_busy_share_max": 0.99})) == 1
    delay = client_check.bound_by({**ok, "client_added_delay_ms": {"p50": 10.0, "p99": 70.0, "max": 90.0}})
    assert len(delay) == 1 and delay[0].startswith("P99 client-added delay 70 ms > 50 ms"), delay
    assert client_check.bound_by({**ok, "client_added_delay_ms": {"p50": 1.0, "p99": 5.0, "max": 9.0}}) == []


def _worker_tid() -> int:
    for t in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{t}/comm") as f:
            if f.read().startswith("apn-worker"):
                return int(t)
    raise AssertionError("no engine worker thread")


@pytest.mark.parametrize("starved", [False, True])
def test_a_starved_worker_makes_the_window_client_bound_and_a_quiet_one_does_not(sim, starved):
    """The same 400 streams, once with the worker's core to itself and once starved: the worker
    runs at the idle scheduling class on one core with two busy loops beside it, so it gets a few
    percent of the CPU (whatever the test's own nice value, which the loops inherit) while it needs
    far more. The starved window is client-bound (the worker is busy — running or waiting to run —
    all the time, requests go out late, bytes wait in the socket); the quiet one is not."""
    server = sim(ttft_s=0.01, itl_s=0.01)
    engine = ap.Engine(server.url, one_turn_workload(50), workers=1, spawn_interval_s=0.00125)
    engine.start()
    hogs = []
    if starved:
        core = min(os.sched_getaffinity(0))
        tid = _worker_tid()
        os.sched_setaffinity(tid, {core})
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
        for hog in hogs:
            os.sched_setaffinity(hog.pid, {core})
    try:
        probe, _ = ap.run_phase(engine, 400, 3.0)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    verdict = validity_of([probe], interrupted=False)
    c = probe.client
    figures = {k: c[k] for k in ("worker_cpu_share_max", "worker_busy_share_max", "send_lateness_p99_ms",
                                 "client_added_delay_ms")}
    if not starved:
        assert verdict.valid and not verdict.client_saturated, (verdict.problems, figures)
        assert c["worker_busy_share_max"] < 0.8, figures
        return
    assert not verdict.valid and verdict.client_saturated, figures
    problem = next(p for p in verdict.problems if p.startswith("client-bound"))
    # The starved worker shows on every side: busy nearly all the time on a few percent of CPU,
    # requests out late, bytes left in the socket (which of them crosses its limit first varies).
    assert any(f in problem for f in ("engine worker busy", "P99 send lateness", "P99 client-added delay"))
    assert "--shards" in problem, problem
    assert c["worker_busy_share_max"] > 0.75 and c["worker_cpu_share_max"] < 0.2, figures
    assert c["worker_busy_share_max"] > 3 * c["worker_cpu_share_max"], figures
