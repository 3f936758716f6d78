"""The capacity search against the simulator, whose capacity is known in closed form."""

import json
import signal
import subprocess
import sys
import time

import pytest

import agentperf_native as ap
from agentperf_native.sim.closed_form import predict
from agentperf_native.orchestrate import Orchestrator, run_loop
from agentperf_native.probe import PhaseRules, ProbeRunner
from agentperf_native.search import search
from agentperf_native.tiers import Tier, resolve_tiers
from test_sim_capacity import PARAMS, SHAPE, workload


def with_runner(engine, tiers, rules, body):
    """Runs ``await body(runner)`` on the orchestration loop, as the run command does."""
    orch = Orchestrator(engine)

    async def main():
        async with orch:
            runner = ProbeRunner(orch, tiers, rules, [1], origin_ns=ap.now_ns())
            try:
                return await body(runner)
            finally:
                engine.stop()

    return run_loop(main)


def _tier_with_capacity(n: int, name: str) -> Tier:
    """A tier whose closed-form capacity is exactly n: its speed threshold sits halfway between the
    predicted P25 speeds at n and n + 1 agents (so measurement noise cannot move the answer)."""
    fast, slow = predict(n, PARAMS, SHAPE).output_speed_p25_tps, predict(n + 1, PARAMS, SHAPE).output_speed_p25_tps
    assert fast > slow * 1.02, "the model must separate n and n + 1 by more than the noise"
    return Tier(name, (fast + slow) / 2, 5.0)


def test_search_finds_each_tiers_capacity_with_a_ramp_then_a_bisection():
    tiers = [_tier_with_capacity(6, "A"), _tier_with_capacity(11, "B")]
    spawn_s = predict(11, PARAMS, SHAPE).cycle_s / PARAMS.max_batch  # agents out of lock-step
    with ap.SimServer(params=PARAMS) as server:
        engine = ap.Engine(server.url, workload(), workers=1, spawn_interval_s=spawn_s)
        rules = PhaseRules(warmup_s=0.5, window_s=3.0, drain_timeout_s=30)
        result = with_runner(engine, tiers, rules, lambda r: search(r, start=1, max_concurrency=64))
    found = {t.name: t.max_agents for t in result.tiers}
    assert found == {"A": 6, "B": 11}, [(p.concurrency, p.slo_output_speed_p25_tps, p.tier_pass) for p in result.probes]
    phases = [p.phase for p in result.probes]
    ramp = [p.concurrency for p in result.probes if p.phase == "ramp"]
    assert ramp == [1, 2, 4, 8, 16]  # doubling until every tier failed
    assert phases == ["ramp"] * len(ramp) + ["bisect"] * (len(phases) - len(ramp))  # then bisection
    assert all(p.steady for p in result.probes)
    for t in result.tiers:
        assert t.stop_reason.startswith("resolution reached")
        assert t.first_fail == t.max_agents + 1


def test_a_tier_that_passes_at_the_ceiling_does_not_stop_the_others_bisection():
    # B passes everywhere (it reaches the ceiling); A's closed-form capacity, 6, must still be found.
    tiers = [_tier_with_capacity(6, "A"), Tier("B", 0.001, 1000.0)]
    spawn_s = predict(8, PARAMS, SHAPE).cycle_s / PARAMS.max_batch
    with ap.SimServer(params=PARAMS) as server:
        engine = ap.Engine(server.url, workload(), workers=1, spawn_interval_s=spawn_s)
        rules = PhaseRules(warmup_s=0.5, window_s=3.0, drain_timeout_s=30)
        result = with_runner(engine, tiers, rules, lambda r: search(r, start=1, max_concurrency=8))
    found = {t.name: (t.max_agents, t.stop_reason) for t in result.tiers}
    assert found["A"][0] == 6, [(p.concurrency, p.slo_output_speed_p25_tps, p.tier_pass) for p in result.probes]
    assert found["A"][1].startswith("resolution reached")
    assert found["B"][0] == 8 and found["B"][1].startswith("ceiling reached")
    assert [p.concurrency for p in result.probes if p.phase == "bisect"] == [6, 7]


def test_a_phase_whose_agents_cannot_become_active_is_not_a_pass():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens: no agent can ever send a request
    engine = ap.Engine(f"http://127.0.0.1:{port}/v1", workload(), workers=1)
    rules = PhaseRules(warmup_s=0.1, window_s=0.5, activation_timeout_s=1.0, drain_timeout_s=2)
    probe = with_runner(engine, resolve_tiers(["1:100"]), rules, lambda r: r.run(4, "ramp"))
    assert not probe.steady
    assert "0 of 4 agents became active" in probe.not_steady_reason
    assert probe.tier_pass == {"1t/s@100s": False}


def test_window_rules_that_cannot_be_met_make_the_probe_not_steady():
    with ap.SimServer(ttft_s=0.01, itl_s=0.001) as server:
        engine = ap.Engine(server.url, workload(), workers=1)
        rules = PhaseRules(warmup_s=0.1, window_s=0.3, min_trajectories=10_000, max_window_s=0.6, drain_timeout_s=5)
        probe = with_runner(engine, resolve_tiers(["1:100"]), rules, lambda r: r.run(2, "ramp"))
    assert probe.requests > 0
    assert not probe.steady and "window rules not met" in probe.not_steady_reason
    assert not any(probe.tier_pass.values())


def test_failed_requests_count_as_violations():
    with ap.SimServer(ttft_s=0.01, itl_s=0.001, faults={"http_503": 0.5}) as server:
        engine = ap.Engine(server.url, workload(), workers=1)
        rules = PhaseRules(warmup_s=0.1, window_s=1.0, drain_timeout_s=5)
        probe = with_runner(engine, resolve_tiers(["1:100"]), rules, lambda r: r.run(4, "ramp"))
    # Every successful request is fast, but half failed: the P25 speed is a failure's 0.
    assert probe.steady and probe.requests_failed > probe.requests * 0.3
    assert probe.output_speed_tps["p25"] > 100
    assert probe.slo_output_speed_p25_tps == 0.0
    assert probe.tier_pass == {"1t/s@100s": False}


def test_interrupting_a_search_keeps_every_finished_probe(tmp_path):
    out = tmp_path / "res"
    convs = tmp_path / "short.jsonl"
    turns = [{"messages": [{"role": "user", "content": f"step {i}"}], "output_tokens": 5} for i in range(5)]
    convs.write_text(json.dumps({"id": "short", "turns": turns}) + "\n")
    cmd = [sys.executable, "-m", "agentperf_native.cli", "run", "--sim-preset", "null", "--sim-ttft", "20ms",
           "--sim-itl", "2ms", "--tier", "10:5", "--warmup", "0.2s", "--window", "1s", "--tool-delay", "none",
           "--max-concurrency", "64", "--trajectories", str(convs), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    probes = []
    while time.monotonic() < deadline and len(probes) < 2:
        time.sleep(0.2)
        try:
            probes = json.loads((out / "phases.json").read_text())["probes"]
        except (FileNotFoundError, json.JSONDecodeError):
            pass
    assert len(probes) >= 2, proc.stderr.read() if proc.poll() is not None else "no probes"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["interrupted"] is True
    kept = json.loads((out / "phases.json").read_text())["probes"]
    assert len(kept) >= len(probes)
    assert [p["concurrency"] for p in kept[:2]] == [1, 2]
    assert "interrupted" in stdout  # the tier table says so
    assert (out / "report.html").exists()


def test_tier_presets_and_specs():
    assert [t.name for t in resolve_tiers(preset="gpt-oss-120b")] == [
        "gpt-oss-120b 100t/s@5s", "gpt-oss-120b 250t/s@3s", "gpt-oss-120b 500t/s@2s", "gpt-oss-120b 2000t/s@1s"]
    t = resolve_tiers(["60:5"])[0]
    assert (t.min_output_speed_tps, t.max_ttft_s) == (60.0, 5.0)
    assert t.passes(60.0, 5.0) and not t.passes(59.9, 1.0) and not t.passes(100, 5.01)
    with pytest.raises(ValueError, match="SPEED:TTFT"):
        resolve_tiers(["fast"])
