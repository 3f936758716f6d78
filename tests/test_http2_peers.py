"""HTTP/2 and TLS against real peers on loopback (installed by the test setup): hypercorn (h2c and
TLS), nginx as an HTTP/2 front proxying to the simulator, and nghttp2's h2load as a client of the
simulator's h2c side."""

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import agentperf_native as ap
from conftest import one_turn_workload
from peers.servers import Hypercorn, Nginx, run_h2load


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
    assert abs(s1.requests - s2.requests) <= 0.2 * s1.requests


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
    # Over TLS too the token times are the kernel's receive stamps (of the ciphertext reads).
    assert not (r["flags"] & ap.engine.FLAG_USER_STAMPS).any()
    assert snap.client_delay_ns.count == s.requests_ok * 20 or snap.client_delay_ns.count >= r["output_events"].sum()


def test_tls_verification_is_on_by_default(h2tls):
    s, r, snap = _run(h2tls.url, "auto", agents=2, duration=0.5)
    assert s.requests_ok == 0 and s.requests_failed > 0
    assert set(np.unique(r["error_kind"])) == {ap.ERROR_KINDS.index("connect")}
    assert "certificate verification failed" in snap.last_connection_error
    assert "--ca" in snap.last_connection_error


def test_tls_insecure_skips_verification(h2tls):
    s, _, _ = _run(h2tls.url, "h2", agents=2, duration=0.5, insecure=True)
    assert s.requests_failed == 0 and s.requests_ok > 0


# --- nginx: an HTTP/2 front (TLS) proxying to the simulator over HTTP/1.1 ------------------------

NGINX_TTFT_S, NGINX_ITL_S, NGINX_TOKENS = 0.05, 0.005, 20


@pytest.fixture(scope="module")
def nginx_front():
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (scripts/setup.sh installs nginx-light)")
    sim = ap.SimServer(ttft_s=NGINX_TTFT_S, itl_s=NGINX_ITL_S, output_tokens=NGINX_TOKENS).start()
    try:
        front = Nginx(sim.port)
    except Exception:
        sim.stop()
        raise
    yield front, sim
    front.stop()
    sim.stop()


def test_nginx_h2_front_streams_match_http1(nginx_front):
    front, sim = nginx_front
    workload = one_turn_workload(NGINX_TOKENS, model=sim.model)
    before, m0 = len(front.protocols()), sim.metrics()
    runs = {}
    for protocol in ("h2", "h1"):
        s, r, snap = _run(front.url, protocol, workload=workload, ca_file=str(front.cert))
        assert s.requests_failed == 0, (protocol, s.failures_by_kind, snap.last_connection_error, front.error_log())
        assert s.requests_ok >= 8 * 4  # 1.5 s of 125 ms requests per agent
        ok = r[r["error_kind"] == 0]
        # Every event came through the proxy one by one (proxy_buffering off), none merged or lost.
        assert (ok["output_tokens"] == NGINX_TOKENS).all() and (ok["output_events"] == NGINX_TOKENS).all()
        assert (ok["http_status"] == 200).all()
        runs[protocol] = (s, snap)
    assert runs["h2"][1].connections_opened == 1  # eight agents multiplexed on one TLS connection
    assert runs["h1"][1].connections_opened == 8
    # nginx saw each run's requests in the protocol asked for (ALPN h2 vs http/1.1).
    seen = Counter(front.protocols()[before:])
    assert seen["HTTP/2.0"] == runs["h2"][0].requests_ok, seen
    assert seen["HTTP/1.1"] == runs["h1"][0].requests_ok, seen
    # Same streams, same timings: the simulator's pacing shows through the proxy on both paths.
    t2, t1 = runs["h2"][0].ttft_s["p50"], runs["h1"][0].ttft_s["p50"]
    assert abs(t2 - t1) < 0.003, (t2, t1)
    for t in (t1, t2):
        assert NGINX_TTFT_S <= t < NGINX_TTFT_S + 0.005, (t1, t2)
    for s, _ in runs.values():
        assert abs(s.output_speed_tps["p50"] - 1 / NGINX_ITL_S) < 0.05 / NGINX_ITL_S, s.output_speed_tps
    # The simulator behind nginx served exactly those requests and tokens.
    m1, n = sim.metrics(), sum(s.requests_ok for s, _ in runs.values())
    assert m1["requests_total"] - m0["requests_total"] == n
    assert m1["tokens_generated"] - m0["tokens_generated"] == n * NGINX_TOKENS


# --- h2load: nghttp2's load generator as a client of the simulator's h2c side ---------------------


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load is not installed (nghttp2-client)")
def test_h2load_against_simulator_h2c(sim):
    tokens, ttft, itl = 16, 0.02, 0.002
    server = sim(ttft_s=ttft, itl_s=itl)
    body = json.dumps({"model": server.model, "messages": [{"role": "user", "content": "Write a story."}],
                       "max_tokens": tokens, "stream": True, "stream_options": {"include_usage": True}}).encode()
    m0 = server.metrics()
    res = run_h2load(f"http://127.0.0.1:{server.port}/v1/chat/completions", body,
                     "-n", "200", "-c", "4", "-m", "10", timeout_s=30)
    m1 = server.metrics()
    assert res["protocol"] == "h2c", res["output"]
    assert res["total"] == res["succeeded"] == 200, res["output"]
    assert res["failed"] == res["errored"] == res["timeout"] == 0
    assert res["status_2xx"] == 200
    # The simulator served exactly those requests, each with its max_tokens output tokens.
    assert m1["requests_total"] - m0["requests_total"] == 200
    assert m1["requests_rejected"] == m0["requests_rejected"]
    assert m1["tokens_generated"] - m0["tokens_generated"] == 200 * tokens
    # Timings: h2load's request time is the whole stream, TTFT + (tokens - 1) ITL, as the engine's
    # end-to-end time over HTTP/1.1 on the same server and the same request.
    ideal = ttft + (tokens - 1) * itl
    assert ideal <= res["request_mean_s"] < ideal + 0.005, res["output"]
    s, r, _ = _run(server.url, "h1", agents=4, duration=1.0, workload=one_turn_workload(tokens, model=server.model))
    assert s.requests_failed == 0
    ok = r[r["error_kind"] == 0]
    assert (ok["output_tokens"] == tokens).all() and (ok["output_events"] == tokens).all()
    assert abs(s.e2e_s["p50"] - res["request_mean_s"]) < 0.003, (s.e2e_s, res["request_mean_s"])
