"""The client's self-check in every probe: worker CPU, event-loop lag, send lateness, and the
client-bound verdict when one crosses its limit."""

import time

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
