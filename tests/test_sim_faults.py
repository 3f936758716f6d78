"""Each fault knob of the simulator produces the failure it names, as the engine classifies it."""

import numpy as np
import pytest

import agentperf_native as ap
from agentperf_native.sim.presets import BatchingParams
from conftest import one_turn_workload

KIND = {name: i for i, name in enumerate(ap.ERROR_KINDS)}
FAST = BatchingParams(max_batch=16, prefill_tokens_per_s=1e6, step_base_s=0.002, step_per_seq_s=0.0001)
MODELS = {"batching": {"params": FAST}, "null": {"ttft_s": 0.01, "itl_s": 0.002}}


def fault_count(server, fault):
    line = f'agentperf_sim_faults_injected_total{{kind="{fault}"}} '
    return int(next(x for x in server.metrics_text().splitlines() if x.startswith(line)).split()[-1])


@pytest.mark.parametrize("model, protocol", [("batching", "h1"), ("null", "h1"), ("batching", "h2")])
@pytest.mark.parametrize(
    "fault, kind, status",
    [("http_500", "http_status", 500), ("http_429", "http_status", 429), ("http_503", "http_status", 503),
     ("reset", "reset", 200), ("truncate", "truncated", 200), ("malformed", "sse_malformed", 200)],
)
def test_fault_becomes_the_named_error_kind(sim, model, protocol, fault, kind, status):
    server = sim(faults={fault: 0.4}, seed=11, **MODELS[model])
    engine = ap.Engine(server.url, one_turn_workload(20), workers=1, protocol=protocol)
    summary, records = ap.run_phase(engine, 4, 1.0)
    failed, ok = records[records["error_kind"] != 0], records[records["error_kind"] == 0]
    assert len(failed) > 0 and len(ok) > 0, "the run must go on after failures"
    assert set(np.unique(failed["error_kind"])) == {KIND[kind]}
    assert (failed["http_status"] == status).all()
    assert summary.failures_by_kind == {kind: summary.requests_failed}
    assert fault_count(server, fault) == server.metrics()["faults"][fault] > 0
    if protocol == "h2" and fault == "truncate":
        # HTTP/2: closing the connection truncates every stream open on it.
        assert len(failed) >= server.metrics()["faults"][fault] - 4
    else:
        assert server.metrics()["faults"][fault] >= len(failed)
    if fault == "reset" or (fault == "truncate" and protocol == "h1"):
        # Halfway: some output arrived before the connection (HTTP/2: the stream) went.
        assert (failed["output_events"] > 0).all() and (failed["output_events"] < 20).all()
    # The model is not left holding the requests that failed.
    assert server.metrics()["requests_running"] == 0 and server.metrics()["requests_waiting"] == 0


@pytest.mark.parametrize("model, protocol", [("batching", "h1"), ("null", "h1"), ("batching", "h2")])
def test_a_stall_delays_the_answer_and_a_long_one_times_out(sim, model, protocol):
    server = sim(faults={"stall": 1.0}, stall_s=0.3, **MODELS[model])
    engine = ap.Engine(server.url, one_turn_workload(5), workers=1, request_timeout_s=5, protocol=protocol)
    _, records = ap.run_phase(engine, 2, 0.5)
    assert (records["error_kind"] == 0).all()
    ttft = (records["first_token_ns"] - records["scheduled_ns"]) / 1e9
    assert (ttft >= 0.3).all() and (ttft < 0.4).all(), ttft
    assert (records["first_byte_ns"] - records["sent_ns"] >= 0.3e9).all()  # nothing at all meanwhile
    timeout_engine = ap.Engine(server.url, one_turn_workload(5), workers=1, request_timeout_s=0.2, protocol=protocol)
    _, records = ap.run_phase(timeout_engine, 2, 0.5, drain_timeout_s=2)
    assert len(records) >= 2 and (records["error_kind"] == KIND["timeout"]).all()
    assert fault_count(server, "stall") >= 6


@pytest.mark.parametrize("model, protocol", [("batching", "h1"), ("null", "h1"), ("batching", "h2")])
def test_slow_headers_hold_the_response_headers(sim, model, protocol):
    server = sim(faults={"slow_headers": 1.0}, slow_headers_s=0.25, **MODELS[model])
    engine = ap.Engine(server.url, one_turn_workload(5), workers=1, request_timeout_s=5, protocol=protocol)
    _, records = ap.run_phase(engine, 2, 0.5)
    assert (records["error_kind"] == 0).all()
    headers = (records["first_byte_ns"] - records["sent_ns"]) / 1e9
    assert (headers >= 0.25).all() and (headers < 0.35).all(), headers
    assert (records["output_tokens"] == 5).all()
    timeout_engine = ap.Engine(server.url, one_turn_workload(5), workers=1, request_timeout_s=0.15, protocol=protocol)
    _, records = ap.run_phase(timeout_engine, 2, 0.4, drain_timeout_s=2)
    assert len(records) >= 2 and (records["error_kind"] == KIND["timeout"]).all()
    assert (records["first_byte_ns"] == 0).all()
    assert fault_count(server, "slow_headers") >= 4


def test_faults_are_off_by_default_and_counted_separately(sim):
    server = sim(**MODELS["batching"])
    engine = ap.Engine(server.url, one_turn_workload(10), workers=1)
    _, records = ap.run_phase(engine, 4, 0.5)
    assert (records["error_kind"] == 0).all()
    assert set(server.metrics()["faults"].values()) == {0}
    with pytest.raises(ValueError, match="unknown fault 'bogus'"):
        ap.SimServer(faults={"bogus": 0.1})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ap.SimServer(faults={"reset": 2.0})
