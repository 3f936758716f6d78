"""The closed form against what the engine measures on the batching simulator (within 5 %).

A fixed-length workload with no tool delay: every agent repeats one request (a 1000-token prompt,
cached after the agent's first request, and 21 output tokens). The agents arrive over one batch
turnover (a ramp), as real fleets do, and the steady state is judged on the requests scheduled
after the ramp and two agent cycles. Three concurrencies: below the tier's capacity, at it, and
above it (the batch full, requests queueing).
"""

import json

import pytest

import agentperf_native as ap
from agentperf_native.sim.closed_form import WorkloadShape, max_concurrency, predict
from agentperf_native.sim.presets import BatchingParams
from agentperf_native.tiers import Tier

PARAMS = BatchingParams(max_batch=16, max_batched_tokens=8192, prefill_tokens_per_s=20_000, step_base_s=0.020,
                        step_per_seq_s=0.001, step_per_context_token_s=0.5e-6, block_tokens=16,
                        prefix_cache_tokens=1_000_000)
TIER = Tier("25t/s@2s", min_output_speed_tps=25.0, max_ttft_s=2.0)
OUTPUT_TOKENS = 21
CONTENT = "x" * 3900


def prompt_tokens() -> int:
    """The prompt-token rule applied to the messages as the engine sends them (isolation prefix included)."""
    messages = [{"role": "system", "content": "[rid:0123456789abcdef] You are a test."},
                {"role": "user", "content": CONTENT}]
    return -(-len(json.dumps(messages, separators=(",", ":"))) // 4)


def workload():
    turn = ap.Turn(messages=[{"role": "user", "content": CONTENT}], output_tokens=OUTPUT_TOKENS)
    conv = ap.Conversation(system="You are a test.", turns=[turn])
    return ap.encode([conv], model="agentperf-sim")


SHAPE = WorkloadShape(prompt_tokens=prompt_tokens(), output_tokens=OUTPUT_TOKENS)
CAPACITY = max_concurrency(TIER, PARAMS, SHAPE)


def test_the_tier_capacity_is_speed_bound_below_the_batch_limit():
    assert SHAPE.prompt_tokens == 1000
    assert CAPACITY == 14
    assert not predict(CAPACITY, PARAMS, SHAPE).saturated
    assert predict(32, PARAMS, SHAPE).saturated


@pytest.mark.parametrize("agents", [4, CAPACITY, 32], ids=["below", "near", "above"])
def test_engine_measurements_agree_with_the_closed_form(agents):
    pred = predict(agents, PARAMS, SHAPE)
    turnover_s = pred.cycle_s if not pred.saturated else (1 + OUTPUT_TOKENS - 1) * pred.step_s
    spawn_s = turnover_s / min(agents, PARAMS.max_batch)
    warm_s = agents * spawn_s + 2 * pred.cycle_s
    duration_s = warm_s + max(4.0, 3 * pred.cycle_s)
    with ap.SimServer(params=PARAMS) as server:
        engine = ap.Engine(server.url, workload(), workers=1, spawn_interval_s=spawn_s)
        start = ap.now_ns()
        _, records = ap.run_phase(engine, agents, duration_s)
        metrics = server.metrics()
    steady = ap.measure(records, window_start_ns=start + int(warm_s * 1e9), window_end_ns=start + int(duration_s * 1e9))
    ok = records[records["error_kind"] == 0]
    assert len(ok) == len(records)
    assert (ok["prompt_tokens"] == SHAPE.prompt_tokens).all()  # the documented prompt-token rule
    assert steady.requests >= 25
    window = records[records["scheduled_ns"] >= start + int(warm_s * 1e9)]
    assert (window["cached_tokens"] == pred.cached_tokens).all()
    speed, ttft = steady.output_speed_tps["p25"], steady.ttft_s["p95"]
    detail = (f"N={agents}: P25 speed {speed:.2f} vs {pred.output_speed_p25_tps:.2f} tok/s, "
              f"P95 TTFT {ttft:.4f} vs {pred.ttft_p95_s:.4f} s")
    assert speed == pytest.approx(pred.output_speed_p25_tps, rel=0.05), detail
    assert ttft == pytest.approx(pred.ttft_p95_s, rel=0.05), detail
    # The tier verdicts the closed form gives hold for the measurement away from the boundary.
    if agents < CAPACITY:
        assert speed >= TIER.min_output_speed_tps and ttft <= TIER.max_ttft_s
    if agents > CAPACITY:
        assert speed < TIER.min_output_speed_tps
        assert metrics["prompt_tokens"] > 0 and metrics["steps"] > 0
    print(detail)
