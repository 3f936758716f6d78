"""The engine against the built-in null server, whose answer is known exactly."""

import time

import numpy as np
import pytest

import agentperf_native as ap
from conftest import one_turn_workload

KIND = {name: i for i, name in enumerate(ap.ERROR_KINDS)}


@pytest.mark.parametrize("agents", [1, 256])
def test_ttft_and_output_speed_match_the_server_pacing(sim, agents):
    # 100 tokens at 10 ms after a 200 ms TTFT: TTFT 200 ms, output speed 100 tok/s.
    server = sim(ttft_s=0.2, itl_s=0.01, workers=1)
    # Agents arrive over 1 s (a ramp), as they do in a real fleet, rather than in one burst of 256
    # simultaneous requests that a single-threaded server would queue.
    engine = ap.Engine(server.url, one_turn_workload(100), workers=2, spawn_interval_s=1.0 / agents)
    summary, records = ap.run_phase(engine, agents, 3.0)
    ok = records[records["error_kind"] == 0]
    assert summary.requests_failed == 0, summary.failures_by_kind
    assert len(ok) >= 2 * agents
    # The oracle: the server's own stamps of the same requests (same clock, matched by request id),
    # so load from a neighbour that slows the server moves both sides alike.
    stamps = {s["request_id"]: s for s in server.stamps()}
    mine = [(r, stamps[int(r["request_id"])]) for r in ok if int(r["request_id"]) in stamps]
    assert len(mine) == len(ok)
    ttft_ms = np.array([(r["first_token_ns"] - r["scheduled_ns"]) / 1e6 for r, _ in mine])
    server_ttft_ms = np.array([(s["first_token_ns"] - s["received_ns"]) / 1e6 for _, s in mine])
    speed = np.array([(r["output_tokens"] - 1) / ((r["last_token_ns"] - r["first_token_ns"]) / 1e9) for r, _ in mine])
    server_speed = np.array([(s["output_tokens"] - 1) / ((s["last_token_ns"] - s["first_token_ns"]) / 1e9)
                             for _, s in mine])
    gap = ttft_ms - server_ttft_ms  # request transmission + response delivery + client wake-up
    assert (gap > 0).all()
    assert abs(np.median(ttft_ms) - np.median(server_ttft_ms)) <= 2, np.percentile(gap, [0, 50, 95, 100])
    assert abs(np.percentile(ttft_ms, 95) - np.percentile(server_ttft_ms, 95)) <= 2, np.percentile(gap, [50, 95])
    assert np.median(np.abs(speed - server_speed) / server_speed) <= 0.02, np.percentile(speed - server_speed, [5, 50, 95])
    # ... and the server answered no sooner than configured (200 ms): what it sent
    # is what the client measured.
    assert (server_ttft_ms >= 199.9).all()
    # Usage is the token count, not the event count; both are 100 here, and nothing is estimated.
    assert (ok["output_tokens"] == 100).all()
    assert (ok["output_events"] == 100).all()
    assert not (ok["flags"] & ap.engine.FLAG_TOKENS_ESTIMATED).any()
    # Each agent reused one keep-alive connection: only its first request opened one... (none, since
    # connections are opened before the first turn is scheduled).
    assert not (ok["flags"] & ap.engine.FLAG_NEW_CONNECTION).any()


def test_a_ramp_spaces_agent_arrivals(sim):
    server = sim(ttft_s=0.0, itl_s=0.001)
    engine = ap.Engine(server.url, one_turn_workload(5, turns=50), workers=2, spawn_interval_s=0.02,
                       random_start_turn=False)
    _, records = ap.run_phase(engine, 20, 0.8)
    first = np.array([records[records["agent_id"] == a]["scheduled_ns"].min() for a in np.unique(records["agent_id"])])
    first.sort()
    gaps_ms = np.diff(first) / 1e6
    assert len(first) == 20
    assert (first[-1] - first[0]) / 1e9 >= 0.3  # 20 arrivals at >= 20 ms apart, engine-wide
    assert np.median(gaps_ms) >= 15, gaps_ms


def test_events_are_not_counted_as_tokens(sim):
    # Four tokens per event (speculative-decoding shape): 100 tokens arrive in 25 events.
    server = sim(ttft_s=0.05, itl_s=0.01, tokens_per_chunk=4)
    engine = ap.Engine(server.url, one_turn_workload(100), workers=1)
    _, records = ap.run_phase(engine, 2, 1.0)
    ok = records[records["error_kind"] == 0]
    assert len(ok) > 0
    assert (ok["output_tokens"] == 100).all()
    assert (ok["output_events"] == 25).all()


@pytest.mark.parametrize(
    "fault, kind, status",
    [
        ("http_500", "http_status", 500),
        ("http_429", "http_status", 429),
        ("http_503", "http_status", 503),
        ("truncate", "truncated", 200),
        ("reset", "reset", 200),
        ("malformed", "sse_malformed", 200),
    ],
)
def test_bad_responses_become_failed_records_and_the_run_goes_on(sim, fault, kind, status):
    server = sim(ttft_s=0.01, itl_s=0.002, faults={fault: 0.5}, seed=7)
    engine = ap.Engine(server.url, one_turn_workload(20), workers=1)
    summary, records = ap.run_phase(engine, 4, 1.5)
    failed = records[records["error_kind"] != 0]
    ok = records[records["error_kind"] == 0]
    assert len(failed) > 0 and len(ok) > 0, "the run must go on after failures"
    assert set(np.unique(failed["error_kind"])) == {KIND[kind]}
    assert (failed["http_status"] == status).all()
    assert summary.failures_by_kind == {kind: summary.requests_failed}
    assert summary.error_rate == pytest.approx(summary.requests_failed / summary.requests)
    assert server.metrics()["faults"][fault] >= len(failed)


def test_a_server_that_never_answers_times_out(sim):
    server = sim(faults={"stall": 1.0}, stall_s=0)
    engine = ap.Engine(server.url, one_turn_workload(10), workers=1, request_timeout_s=0.3)
    summary, records = ap.run_phase(engine, 2, 1.0, drain_timeout_s=2.0)
    assert len(records) >= 4
    assert (records["error_kind"] == KIND["timeout"]).all()
    # The timeout is measured from the scheduled time.
    elapsed = (records["done_ns"] - records["scheduled_ns"]) / 1e9
    assert np.all((elapsed >= 0.3) & (elapsed < 0.4)), elapsed
    assert summary.requests_failed == summary.requests


def test_connection_refused_is_a_connect_failure():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    engine = ap.Engine(f"http://127.0.0.1:{port}/v1", one_turn_workload(10), workers=1)
    _, records = ap.run_phase(engine, 2, 0.5, drain_timeout_s=1.0)
    assert len(records) >= 2
    assert (records["error_kind"] == KIND["connect"]).all()


def test_concurrency_can_be_raised_and_lowered_while_running(sim):
    server = sim(ttft_s=0.01, itl_s=0.005)
    engine = ap.Engine(server.url, one_turn_workload(10, turns=3, tool_delay_s=0.05), workers=2)
    engine.start()
    try:
        engine.set_concurrency(10)
        _wait(lambda: engine.snapshot().agents_active == 10)
        _wait(lambda: engine.snapshot().requests_ok > 20)
        engine.set_concurrency(30)
        _wait(lambda: engine.snapshot().agents_active == 30)
        engine.set_concurrency(3)
        _wait(lambda: engine.snapshot().agents_live == 3)
        snap = engine.snapshot()
        assert snap.agents_active == 3 and snap.agents_target == 3
        engine.set_concurrency(0)
        _wait(lambda: engine.snapshot().agents_live == 0)
        assert engine.snapshot().requests_in_flight == 0
    finally:
        engine.stop()
    records = engine.drain_records()
    # Agents that left finished their in-flight request: nothing was cancelled or failed.
    assert (records["error_kind"] == 0).all()
    assert len(np.unique(records["agent_id"])) >= 30


def test_agents_replay_turns_in_order_and_start_new_conversations(sim):
    server = sim(ttft_s=0.0, itl_s=0.001)
    engine = ap.Engine(server.url, one_turn_workload(5, turns=4), workers=1, random_start_turn=False)
    _, records = ap.run_phase(engine, 3, 1.0)
    assert (records["error_kind"] == 0).all()
    for agent in np.unique(records["agent_id"]):
        mine = np.sort(records[records["agent_id"] == agent], order="scheduled_ns")
        turns = mine["turn"].tolist()
        assert turns[:8] == [0, 1, 2, 3, 0, 1, 2, 3][: len(turns[:8])]
        # The context grows turn by turn within a conversation.
        first_pass = mine[:4]
        assert np.all(np.diff(first_pass["request_bytes"]) > 0)
        # Closed loop: a turn is scheduled no earlier than the previous one completed.
        assert np.all(mine["scheduled_ns"][1:] >= mine["done_ns"][:-1])


def test_tool_delay_spaces_the_turns(sim):
    server = sim(ttft_s=0.0, itl_s=0.001)
    engine = ap.Engine(server.url, one_turn_workload(2, turns=10, tool_delay_s=0.1), workers=1,
                       random_start_turn=False)
    _, records = ap.run_phase(engine, 1, 0.8)
    mine = np.sort(records, order="scheduled_ns")
    gaps = (mine["scheduled_ns"][1:] - mine["done_ns"][:-1]) / 1e9
    assert len(gaps) >= 3
    assert np.allclose(gaps, 0.1, atol=1e-6), gaps  # scheduled exactly at done + delay
    lateness = (mine["sent_ns"] - mine["scheduled_ns"]) / 1e6
    assert np.all(lateness < 5), lateness  # the timer fired within a few ms


def test_stop_turns_in_flight_requests_into_cancelled_records(sim):
    server = sim(ttft_s=5.0, itl_s=0.01)
    engine = ap.Engine(server.url, one_turn_workload(10), workers=1)
    engine.set_concurrency(5)
    engine.start()
    _wait(lambda: engine.snapshot().requests_in_flight == 5)
    engine.stop()
    records = engine.drain_records()
    assert len(records) == 5
    assert (records["error_kind"] == KIND["cancelled"]).all()


def test_snapshot_histograms_agree_with_records(sim):
    server = sim(ttft_s=0.05, itl_s=0.002)
    engine = ap.Engine(server.url, one_turn_workload(20), workers=2)
    _, records = ap.run_phase(engine, 8, 1.0)
    snap = engine.snapshot()
    ok = records[records["error_kind"] == 0]
    assert snap.requests_ok == len(ok)
    assert snap.ttft_ns.count == len(ok)
    exact = np.percentile(ok["first_token_ns"] - ok["scheduled_ns"], 50, method="inverted_cdf")
    assert abs(snap.ttft_ns.percentile(50) - exact) <= exact * snap.ttft_ns.relative_error() + 1


def _wait(cond, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)
