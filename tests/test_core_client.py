"""The native client's own surface, against the built-in simulator: request ids, per-run nonces and
tool delay policies (agents draw their delays at run time), the one-shot request, the simulator's
own stamps and its power model."""

import json
import time

import numpy as np
import pytest

import agentperf_native as ap
from agentperf_native import _core
from agentperf_native.engine import RECORD_DTYPE

KIND = {name: i for i, name in enumerate(ap.ERROR_KINDS)}


def core_workload(turns=3, max_tokens=5, tool_delay_ns=0, conversations=1, tool_delay=None):
    """A chat workload built on the native API directly (so its tool delay policy can be set)."""
    w = _core.Workload()
    w.set_request(path="/v1/chat/completions", model="agentperf-sim")
    for c in range(conversations):
        fragments = ['{"role":"system","content":"', 'You are a test."}']
        specs = []
        for t in range(turns):
            fragments.append(',{"role":"user","content":"conversation %d turn %d"}' % (c, t))
            specs.append((0, len(fragments), 1, max_tokens, -1, tool_delay_ns))
        w.add_conversation(fragments, list(range(len(fragments))), specs)
    if tool_delay:
        w.set_tool_delay(**tool_delay)
    w.finalize()
    return w


def run_core(server, workload, agents, seconds, **kw):
    e = _core.Engine(workload, "127.0.0.1", server.port, **kw)
    e.set_concurrency(agents)
    e.start()
    time.sleep(seconds)  # the phase length: how long the load runs, not a wait for a condition
    e.set_concurrency(0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        s = e.snapshot()
        if s["agents_live"] == 0 and s["requests_in_flight"] == 0:
            break
        time.sleep(0.01)
    e.stop()
    return e, e.drain_records().reshape(-1).view(RECORD_DTYPE)


def test_every_request_has_a_run_unique_request_id(sim):
    server = sim(ttft_s=0.0, itl_s=0.001)
    _, recs = run_core(server, core_workload(), 6, 0.5, workers=2)
    assert len(recs) > 20
    ids = recs["request_id"]
    assert (ids != 0).all()
    assert len(np.unique(ids)) == len(ids)
    # The worker index is in the high bits: ids of different workers never collide.
    assert set((ids >> 40).tolist()) == set(recs["worker"].tolist())


def test_run_nonce_is_a_readable_engine_setting():
    w = core_workload()
    assert _core.Engine(w, "127.0.0.1", 1).run_nonce == 0
    e = _core.Engine(w, "127.0.0.1", 1, seed=5, run_nonce=2**63 + 11)
    assert e.run_nonce == 2**63 + 11 and e.seed == 5


def test_fixed_tool_delay_policy_spaces_the_turns_exactly(sim):
    server = sim(ttft_s=0.0, itl_s=0.001)
    # The recorded delay (3 s) is ignored under the fixed policy.
    w = core_workload(turns=20, tool_delay_ns=3_000_000_000, tool_delay={"kind": "fixed", "a_s": 0.05})
    _, recs = run_core(server, w, 1, 0.6, random_start_turn=False)
    mine = np.sort(recs, order="scheduled_ns")
    gaps = mine["scheduled_ns"][1:] - mine["done_ns"][:-1]
    assert len(gaps) >= 3
    assert (gaps == 50_000_000).all(), gaps


def test_uniform_tool_delays_are_drawn_per_agent_and_reproducible(sim):
    server = sim(ttft_s=0.0, itl_s=0.001)
    w = core_workload(turns=50, tool_delay={"kind": "uniform", "a_s": 0.01, "b_s": 0.03, "cap_s": 0.025})
    runs = []
    for _ in range(2):
        _, recs = run_core(server, w, 2, 0.5, random_start_turn=False, seed=9)
        per_agent = {}
        for a in np.unique(recs["agent_id"]):
            mine = np.sort(recs[recs["agent_id"] == a], order="scheduled_ns")
            per_agent[int(a)] = (mine["scheduled_ns"][1:] - mine["done_ns"][:-1]).tolist()
        runs.append(per_agent)
    for agent, gaps in runs[0].items():
        assert len(gaps) >= 3
        assert all(10_000_000 <= g <= 25_000_000 for g in gaps), gaps
        assert len(set(gaps)) > 1  # drawn per turn, not one value
        other = runs[1][agent]
        n = min(len(gaps), len(other))
        assert gaps[:n] == other[:n]  # the same seed: the same delays, agent by agent
    assert runs[0][0][:3] != runs[0][1][:3]  # each agent has its own stream


def test_tool_delay_policy_is_checked():
    w = _core.Workload()
    with pytest.raises(ValueError):
        w.set_tool_delay("gaussian")
    w = _core.Workload()
    w.set_request(path="/v1/chat/completions", model="m")
    w.add_conversation(['{"role":"user","content":"x"}'], [0], [(0, 1, -1, 5, -1, 0)])
    w.set_tool_delay("uniform", 2.0, 1.0)
    with pytest.raises(ValueError):
        w.finalize()


# --- the one-shot request: the engine's own client for pre-flight and model listing ---------------

CHAT = json.dumps({"model": "agentperf-sim", "stream": True, "max_tokens": 7,
                   "stream_options": {"include_usage": True},
                   "messages": [{"role": "user", "content": "hello"}]}).encode()


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_http_request_get_models(sim, protocol):
    server = sim(ttft_s=0.0, itl_s=0.001)
    r = _core.http_request("127.0.0.1", server.port, "GET", "/v1/models", protocol=protocol, timeout_s=5)
    assert r["error_kind"] == "" and r["error"] == "", r
    assert r["status"] == 200
    assert r["protocol"] == protocol
    names = {k.lower() for k, _ in r["headers"]}
    assert "content-type" in names
    models = json.loads(r["body"])
    assert [m["id"] for m in models["data"]] == ["agentperf-sim"]


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_http_request_streamed_post_collects_the_whole_stream(sim, protocol):
    server = sim(ttft_s=0.0, itl_s=0.001)
    r = _core.http_request("127.0.0.1", server.port, "POST", "/v1/chat/completions", protocol=protocol,
                           headers=[("Content-Type", "application/json"), ("X-Request-Id", "00000000000000ab")],
                           body=CHAT, timeout_s=5)
    assert r["error_kind"] == "", r
    assert r["status"] == 200 and r["protocol"] == protocol
    text = r["body"].decode()
    assert text.rstrip().endswith("data: [DONE]")
    usage = [json.loads(line[6:]) for line in text.splitlines()
             if line.startswith("data: {") and '"usage"' in line and '"completion_tokens"' in line]
    assert usage and usage[-1]["usage"]["completion_tokens"] == 7


def test_http_request_reports_status_and_errors(sim):
    server = sim(ttft_s=0.0, itl_s=0.001)
    r = _core.http_request("127.0.0.1", server.port, "GET", "/no/such/path", timeout_s=5)
    assert r["error_kind"] == "" and r["status"] == 404  # a complete answer, whatever its status
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = _core.http_request("127.0.0.1", port, "GET", "/v1/models", timeout_s=5)
    assert r["error_kind"] == "connect" and r["status"] == 0
    assert r["error"]
    r = _core.http_request("no-such-host.invalid", 80, "GET", "/", timeout_s=5)
    assert r["error_kind"] == "connect" and "resolve" in r["error"]
    with pytest.raises(ValueError):
        _core.http_request("127.0.0.1", port, "GET", "/", protocol="h3")
    with pytest.raises(ValueError):
        _core.http_request("127.0.0.1", port, "GET", "no-slash")


def test_http_request_times_out_on_a_silent_server():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts (in the kernel) and never answers
    try:
        t0 = time.monotonic()
        r = _core.http_request("127.0.0.1", listener.getsockname()[1], "GET", "/v1/models", timeout_s=0.3)
        assert r["error_kind"] == "timeout", r
        assert time.monotonic() - t0 >= 0.3
    finally:
        listener.close()


def test_http_request_tls_failure_is_reported_as_tls():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def answer_garbage():
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")  # not a TLS record
        conn.close()

    import threading

    t = threading.Thread(target=answer_garbage)
    t.start()
    try:
        r = _core.http_request("127.0.0.1", port, "GET", "/", tls=True, timeout_s=5)
        assert r["error_kind"] == "tls", r
        assert r["error"]
    finally:
        t.join()
        listener.close()


# --- the simulator's own stamps: timing oracles that CPU load on the box cannot fail --------------

@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_client_timings_bracket_the_servers_own_stamps(sim, protocol):
    ttft_ns, itl_ns = 20_000_000, 2_000_000
    server = sim(ttft_s=ttft_ns / 1e9, itl_s=itl_ns / 1e9)
    _, recs = run_core(server, core_workload(turns=4, max_tokens=6), 4, 0.6, protocol=protocol)
    ok = recs[recs["error_kind"] == 0]
    assert len(ok) >= 8
    stamps = {s["request_id"]: s for s in server._core.stamps()}
    for r in ok:
        s = stamps[int(r["request_id"])]  # every request the client made, the server saw by its id
        assert s["complete"] and s["status"] == 200
        # One clock on both sides, so the order of events is exact whatever the load on the CPU:
        # the client schedules and sends before the server has the request; the server hands each
        # token to the kernel before the client reads it.
        assert r["scheduled_ns"] <= r["sent_ns"] <= s["received_ns"]
        # The null model answers after its TTFT, less at most the 50 us it coalesces events by
        # (SIMULATOR.md): the server's side of the TTFT, on the server's own clock.
        assert s["received_ns"] + ttft_ns - 50_000 <= s["first_token_ns"]
        assert s["first_token_ns"] <= r["first_token_ns"]
        assert s["last_token_ns"] <= r["last_token_ns"] <= r["done_ns"]
        # The client's TTFT holds the server's, plus what lies between them (never negative).
        client_ttft = r["first_token_ns"] - r["scheduled_ns"]
        server_ttft = s["first_token_ns"] - s["received_ns"]
        assert client_ttft >= server_ttft
        assert r["output_tokens"] == s["output_tokens"] == 6
        assert r["output_events"] == s["output_events"]
    assert len({int(r["request_id"]) for r in ok} - set(stamps)) == 0


def test_stamps_need_a_request_id_and_survive_stop(sim):
    server = sim(ttft_s=0.0, itl_s=0.001)
    r = _core.http_request("127.0.0.1", server.port, "POST", "/v1/chat/completions", body=CHAT,
                           headers=[("Content-Type", "application/json")], timeout_s=5)
    assert r["status"] == 200
    assert server._core.stamps() == []  # no X-Request-Id: not logged
    r = _core.http_request("127.0.0.1", server.port, "POST", "/v1/chat/completions", body=CHAT,
                           headers=[("Content-Type", "application/json"), ("X-Request-Id", "00000000000000ff")],
                           timeout_s=5)
    assert r["status"] == 200
    (s,) = server._core.stamps()
    assert s["request_id"] == 255 and s["output_tokens"] == 7 and s["complete"]
    server.stop()
    assert [x["request_id"] for x in server._core.stamps()] == [255]
