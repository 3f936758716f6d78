"""HTTP/2 and TLS against real peers on loopback (installed by the test setup)."""

import numpy as np
import pytest

import agentperf_native as ap
from conftest import one_turn_workload
from peers.servers import Hypercorn


@pytest.fixture(scope="module")
def h2c():
    server = Hypercorn()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def h2tls():
    server = Hypercorn(tls=True)
    yield server
    server.stop()


def _run(url, protocol, agents=8, duration=1.5, **kw):
    workload = kw.pop("workload", None) or one_turn_workload(20, model="peer-model")
    engine = ap.Engine(url, workload, workers=1, protocol=protocol, **kw)
    summary, records = ap.run_phase(engine, agents, duration)
    return summary, records, engine.snapshot()


def test_h2c_multiplexes_agents_and_matches_http1(h2c):
    s1, r1, snap1 = _run(h2c.url, "h1")
    s2, r2, snap2 = _run(h2c.url, "h2")
    assert s1.requests_failed == 0 and s2.requests_failed == 0, (s1.failures_by_kind, s2.failures_by_kind)
    assert snap1.connections_opened == 8  # one keep-alive connection per agent
    assert snap2.connections_opened == 1  # eight agents' streams on one connection
    for r in (r1, r2):
        ok = r[r["error_kind"] == 0]
        assert (ok["output_tokens"] == 20).all() and (ok["output_events"] == 20).all()
    # Same streams, same timings: the server's pacing (20 ms TTFT) is what both measure.
    ttft1, ttft2 = s1.ttft_s["p50"], s2.ttft_s["p50"]
    assert 0.02 <= ttft1 < 0.04 and 0.02 <= ttft2 < 0.04, (ttft1, ttft2)
    assert abs(ttft1 - ttft2) < 0.01
    assert abs(s1.requests_total - s2.requests_total) <= 0.2 * s1.requests_total


def test_streams_per_connection_opens_more_connections(h2c):
    _, _, snap = _run(h2c.url, "h2", agents=10, duration=1.0, streams_per_connection=4)
    assert snap.connections_opened == 3


def test_large_request_bodies_do_not_stall(h2c):
    big = ap.Conversation(system="x" * 150_000, turns=[ap.Turn(messages=[{"role": "user", "content": "go"}], output_tokens=5)])
    workload = ap.encode([big], model="peer-model")
    s, r, _ = _run(h2c.url, "h2", agents=4, duration=1.0, workload=workload)
    assert s.requests_failed == 0 and s.requests_ok > 4
    assert (r["request_bytes"] > 150_000).all()


@pytest.mark.parametrize("protocol, connections", [("auto", 1), ("h2", 1), ("h1", 8)])
def test_tls_with_alpn(h2tls, protocol, connections):
    s, r, snap = _run(h2tls.url, protocol, ca_file=str(h2tls.cert))
    assert s.requests_failed == 0, (s.failures_by_kind, snap.last_connection_error)
    assert s.requests_ok > 0
    assert snap.connections_opened == connections


def test_tls_verification_is_on_by_default(h2tls):
    s, r, snap = _run(h2tls.url, "auto", agents=2, duration=0.5)
    assert s.requests_ok == 0 and s.requests_failed > 0
    assert set(np.unique(r["error_kind"])) == {ap.ERROR_KINDS.index("connect")}
    assert "certificate verification failed" in snap.last_connection_error
    assert "--ca" in snap.last_connection_error


def test_tls_insecure_skips_verification(h2tls):
    s, _, _ = _run(h2tls.url, "h2", agents=2, duration=0.5, insecure=True)
    assert s.requests_failed == 0 and s.requests_ok > 0
