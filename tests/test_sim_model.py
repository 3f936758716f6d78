"""The simulator's performance model in virtual time, and the closed form against it."""

import math

import pytest

from agentperf_native import _core
from agentperf_native.sim.closed_form import (WorkloadShape, batch_limit, max_concurrency, predict, predict_null,
                                       simulate, steady_cached_tokens)
from agentperf_native.sim.presets import PRESETS, BatchingParams, apply_overrides, get_preset
from agentperf_native.tiers import PRESETS as TIER_PRESETS
from agentperf_native.tiers import parse_tier

MS = 1_000_000

#: A small engine with round numbers: 20 ms + 1 ms per decoding sequence + 0.5 us per context token.
PARAMS = BatchingParams(max_batch=16, max_batched_tokens=8192, prefill_tokens_per_s=20_000, step_base_s=0.020,
                        step_per_seq_s=0.001, step_per_context_token_s=0.5e-6, block_tokens=16,
                        prefix_cache_tokens=1_000_000)


def model(**changes):
    p = apply_overrides(PARAMS, changes)
    return _core.SimModel("batching", p.tokens_per_chunk, params=p.core_params())


def run_all(m, until=None):
    out = []
    while (d := m.next_deadline_ns) >= 0 and (until is None or d <= until):
        out.extend(m.advance(d))
    return out


def events_of(events, cookie):
    return [e for e in events if e[0] == cookie]


def test_prefill_time_with_and_without_cache_hits():
    m = model(step_per_seq_s=0, step_per_context_token_s=0, prefill_tokens_per_s=10_000)
    blocks = list(range(1, 63))  # 62 full blocks of 16 tokens
    m.submit(1000, 2, 0, blocks, 1)
    cold = events_of(run_all(m), 1)
    assert cold[0][4] == 20 * MS + 100 * MS  # base + 1000 tokens at 10k tok/s
    assert cold[0][3] == 0  # cached_tokens
    m.submit(1000, 2, 1000 * MS, blocks, 2)
    warm = events_of(run_all(m), 2)
    assert warm[0][3] == 992
    assert warm[0][4] - 1000 * MS == 20 * MS + 800_000  # only 8 tokens prefilled
    st = m.stats()
    assert st["cache_query_tokens"] == 2000 and st["cache_hit_tokens"] == 992


def test_decode_speed_falls_with_batch_size():
    speeds = []
    for batch in (1, 4, 16):
        m = model(step_per_context_token_s=0, prefill_tokens_per_s=1e12)
        for i in range(batch):
            m.submit(1, 21, 0, [], i)
        ev = events_of(run_all(m), 0)
        speeds.append(20 / ((ev[-1][4] - ev[0][4]) / 1e9))
    assert speeds == pytest.approx([1 / 0.021, 1 / 0.024, 1 / 0.036])


def test_requests_queue_when_the_batch_is_full():
    m = model(max_batch=2, step_per_seq_s=0, step_per_context_token_s=0, prefill_tokens_per_s=1e12)
    for i in range(3):
        m.submit(1, 5, 0, [], i)
    m.advance(0)
    assert (m.stats()["running"], m.stats()["waiting"]) == (2, 1)
    ev = run_all(m)
    assert events_of(ev, 0)[-1][4] == 100 * MS  # 5 steps of 20 ms
    assert events_of(ev, 2)[0][4] == 120 * MS  # admitted when a slot frees, prefill step, first token
    assert m.stats()["waiting"] == 0 and m.stats()["running"] == 0


def test_kv_usage_is_reported_while_sequences_run():
    m = model(kv_capacity_tokens=10_000, prefill_tokens_per_s=1e12)
    m.submit(1000, 10, 0, [], 1)
    run_all(m, until=50 * MS)
    st = m.stats()
    assert st["kv_capacity_tokens"] == 10_000
    assert 1000 < st["kv_used_tokens"] < 1010
    run_all(m)
    assert m.stats()["kv_used_tokens"] == 0


# --- the closed form -------------------------------------------------------------------------

WORKLOAD = WorkloadShape(prompt_tokens=1000, output_tokens=21)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 13, 16, 32, 48, 64])
def test_closed_form_agrees_with_the_model_in_virtual_time(n):
    pred = predict(n, PARAMS, WORKLOAD)
    sim = simulate(n, PARAMS, WORKLOAD, duration_s=30)
    assert sim.requests > 40
    assert sim.cached_tokens_mean == pred.cached_tokens == 992
    assert sim.output_speed_p25_tps == pytest.approx(pred.output_speed_p25_tps, rel=0.02)
    assert sim.ttft_p95_s == pytest.approx(pred.ttft_p95_s, rel=0.03)


def test_closed_form_regimes():
    # Unsaturated up to the batch limit: one waiting step + one prefill step, speed falls with N.
    p8, p16 = predict(8, PARAMS, WORKLOAD), predict(16, PARAMS, WORKLOAD)
    assert not p8.saturated and not p16.saturated
    assert p8.output_speed_p25_tps > p16.output_speed_p25_tps
    assert p8.ttft_p95_s == pytest.approx(2 * p8.step_s, rel=0.1)
    # Saturated: every extra batch-full of agents adds one slot turnover (21 steps) of queueing.
    p32, p48 = predict(32, PARAMS, WORKLOAD), predict(48, PARAMS, WORKLOAD)
    assert p32.saturated and p48.saturated
    assert p48.ttft_p95_s - p32.ttft_p95_s == pytest.approx(21 * p32.step_s, rel=1e-9)
    assert p32.output_speed_p25_tps == p48.output_speed_p25_tps
    # Without a cache hit the prefill costs the whole prompt (its own, and the others' in shared steps).
    cold = predict(8, PARAMS, WorkloadShape(1000, 21, cached_tokens=0))
    assert cold.cached_tokens == 0
    assert cold.ttft_p95_s - p8.ttft_p95_s > 992 / 20_000


def test_max_concurrency_at_a_tier():
    # Speed-bound tier: the speed falls below 25 tok/s between 14 and 15 agents.
    assert max_concurrency(parse_tier("25:2"), PARAMS, WORKLOAD) == 14
    # TTFT-bound tier: 1 s of P95 TTFT is reached in saturation.
    n = max_concurrency(parse_tier("20:1"), PARAMS, WORKLOAD)
    assert predict(n, PARAMS, WORKLOAD).ttft_p95_s <= 1.0 < predict(n + 1, PARAMS, WORKLOAD).ttft_p95_s
    assert n > batch_limit(PARAMS, WORKLOAD)
    assert max_concurrency(parse_tier("1000:1"), PARAMS, WORKLOAD) == 0
    assert max_concurrency(parse_tier("1:100"), PARAMS, WORKLOAD, limit=50) == 50


def test_kv_capacity_and_cache_capacity_enter_the_closed_form():
    small_kv = apply_overrides(PARAMS, {"kv_capacity_tokens": 10_210})
    assert batch_limit(small_kv, WORKLOAD) == 10  # 1021 tokens per request
    assert predict(12, small_kv, WORKLOAD).saturated
    small_cache = apply_overrides(PARAMS, {"prefix_cache_tokens": 62 * 16 * 10})
    assert steady_cached_tokens(small_cache, WORKLOAD, 10) == 992
    assert steady_cached_tokens(small_cache, WORKLOAD, 11) == 0  # LRU cycling through 11 agents misses


def test_closed_form_with_a_fixed_tool_delay_is_an_approximation():
    # Far from the batch limit it is close; near it the arrivals' phases matter (see SIMULATOR.md).
    w = WorkloadShape(prompt_tokens=1000, output_tokens=21, tool_delay_s=0.5)
    for n in (8, 48, 64):
        pred, sim = predict(n, PARAMS, w), simulate(n, PARAMS, w, duration_s=40)
        assert sim.output_speed_p25_tps == pytest.approx(pred.output_speed_p25_tps, rel=0.03)
        assert sim.ttft_p95_s == pytest.approx(pred.ttft_p95_s, rel=0.05)
    pred, sim = predict(16, PARAMS, w), simulate(16, PARAMS, w, duration_s=40)
    assert sim.output_speed_p25_tps == pytest.approx(pred.output_speed_p25_tps, rel=0.05)
    assert sim.ttft_p95_s == pytest.approx(pred.ttft_p95_s, rel=0.1)


def test_closed_form_with_uncached_prompts_is_an_approximation():
    # Prefill-heavy steps (50 ms of prefill beside 30 ms of decode) make steps unequal: the P95 TTFT
    # of the unsaturated regime is then within about 15 %, the rest closer.
    w = WorkloadShape(prompt_tokens=1000, output_tokens=21, cached_tokens=0)
    for n, ttft_rel in ((1, 0.01), (8, 0.2), (32, 0.05), (64, 0.05)):
        pred, sim = predict(n, PARAMS, w), simulate(n, PARAMS, w, duration_s=40)
        assert sim.cached_tokens_mean == 0
        assert sim.output_speed_p25_tps == pytest.approx(pred.output_speed_p25_tps, rel=0.05)
        assert sim.ttft_p95_s == pytest.approx(pred.ttft_p95_s, rel=ttft_rel)


def test_speculative_decoding_shape():
    p = apply_overrides(PARAMS, {"tokens_per_chunk": 4})
    w = WorkloadShape(prompt_tokens=1000, output_tokens=41)  # 40 tokens after the first: 10 steps
    pred, sim = predict(8, p, w), simulate(8, p, w, duration_s=30)
    assert pred.output_speed_p25_tps == pytest.approx(4 / pred.step_s)
    assert sim.output_speed_p25_tps == pytest.approx(pred.output_speed_p25_tps, rel=0.02)


def test_null_model_closed_form():
    null = get_preset("null")
    speed, ttft = predict_null(null.ttft_s, null.itl_s, output_tokens=101)
    assert (speed, ttft) == (pytest.approx(100.0), 0.2)
    assert predict_null(0.05, 0.002, output_tokens=100, tokens_per_chunk=4)[0] == pytest.approx(99 / (24 * 0.002))


def test_presets_are_labelled_and_valid():
    for name, preset in PRESETS.items():
        assert preset.name == name
        if preset.kind == "batching":
            assert "ILLUSTRATIVE" in preset.description
            _core.SimModel("batching", preset.batching.tokens_per_chunk, params=preset.batching.core_params())
            shape = WorkloadShape(prompt_tokens=27_000, output_tokens=150)
            assert max_concurrency(parse_tier("20:10"), preset.batching, shape, limit=100_000) > 0
    # The GB300-class shape holds more agents than the H200-class one at the published tiers it can meet.
    shape = WorkloadShape(prompt_tokens=27_000, output_tokens=150, cached_tokens=25_000)
    for tier in TIER_PRESETS["dsv4-pro"][:2]:
        assert (max_concurrency(tier, get_preset("gb300-class").batching, shape)
                > max_concurrency(tier, get_preset("h200-class").batching, shape))


def test_parameter_overrides_are_checked():
    assert apply_overrides(PARAMS, {"max_batch": "32", "step_base_s": "0.01"}).max_batch == 32
    assert apply_overrides(PARAMS, {"prefill_tokens_per_s": "3e4"}).prefill_tokens_per_s == 30_000
    with pytest.raises(ValueError, match="unknown model parameter 'bogus'"):
        apply_overrides(PARAMS, {"bogus": 1})
    with pytest.raises(ValueError, match="not a number"):
        apply_overrides(PARAMS, {"max_batch": "many"})
    with pytest.raises(ValueError, match="max_batch"):
        _core.SimModel("batching", 1, params={"max_batch": 0})
    assert math.isclose(PARAMS.step_s(10, 10_000, 2000), 0.020 + 0.010 + 0.005 + 0.1)
