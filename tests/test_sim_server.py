"""The simulated server over HTTP: the OpenAI surface, usage, output-length semantics, metrics, CLI."""

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

import agentperf_native as ap
from agentperf_native.sim.presets import BatchingParams
from conftest import assert_ran

CLI = [sys.executable, "-m", "agentperf_native.cli"]
FAST = BatchingParams(max_batch=8, prefill_tokens_per_s=1e6, step_base_s=0.002, step_per_seq_s=0.0001,
                      prefix_cache_tokens=100_000, kv_capacity_tokens=50_000)


def post(url, body, timeout=10):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode()


def events(raw):
    """The JSON payloads of an SSE body (without [DONE])."""
    out = []
    for block in raw.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line[6:]))
    return out


def sample(text, name):
    """The value of an unlabelled sample in a Prometheus text page."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the page")


def chat(content, **kw):
    return {"model": "agentperf-sim", "messages": [{"role": "user", "content": content}], **kw}


@pytest.fixture
def batching(sim):
    return sim(params=FAST)


def test_health_models_and_metrics(batching):
    base = batching.url.removesuffix("/v1")
    assert json.loads(urllib.request.urlopen(base + "/health").read()) == {"status": "ok"}
    models = json.loads(urllib.request.urlopen(batching.url + "/models").read())
    assert models["data"][0]["id"] == "agentperf-sim"
    post(batching.url + "/chat/completions", chat("hi", max_tokens=4))
    text = urllib.request.urlopen(base + "/metrics").read().decode()
    for name in ("agentperf_sim_requests_running", "agentperf_sim_requests_waiting",
                 "agentperf_sim_prefix_cache_hit_rate", "agentperf_sim_kv_cache_usage_ratio",
                 "agentperf_sim_generation_tokens_total 4", "agentperf_sim_requests_total 1",
                 'agentperf_sim_faults_injected_total{kind="slow_headers"} 0',
                 'agentperf_sim_info{model_kind="batching",preset="custom"'):
        assert name in text, name
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/v2/nothing")
    assert e.value.code == 404


def test_non_streaming_answers_with_usage_and_cached_tokens(batching):
    body = chat("x" * 400, max_tokens=5)
    status, raw = post(batching.url + "/chat/completions", body)
    first = json.loads(raw)
    assert status == 200 and first["object"] == "chat.completion"
    assert first["choices"][0]["message"]["content"] == "tok " * 5
    assert first["choices"][0]["finish_reason"] == "length"
    messages_bytes = len(json.dumps(body["messages"]))  # json.dumps' default spacing, as sent
    usage = first["usage"]
    assert usage["prompt_tokens"] == -(-messages_bytes // 4)
    assert usage["completion_tokens"] == 5 and usage["total_tokens"] == usage["prompt_tokens"] + 5
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    second = json.loads(post(batching.url + "/chat/completions", body)[1])
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == (usage["prompt_tokens"] - 1) // 16 * 16
    text = json.loads(post(batching.url + "/completions", {"prompt": "y" * 100, "max_tokens": 2})[1])
    assert text["object"] == "text_completion" and text["choices"][0]["text"] == "tok tok "
    assert text["usage"]["prompt_tokens"] == 25


def test_streaming_usage_and_continuous_usage_stats(batching):
    _, raw = post(batching.url + "/chat/completions",
                  chat("hello", max_tokens=6, stream=True, stream_options={"include_usage": True}))
    ev = events(raw)
    assert ev[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [e for e in ev if e["choices"] and e["choices"][0]["delta"].get("content")]
    assert len(content) == 6 and all("usage" not in e for e in content)
    assert ev[-2]["choices"][0]["finish_reason"] == "length"
    assert ev[-1]["choices"] == [] and ev[-1]["usage"]["completion_tokens"] == 6
    _, raw = post(batching.url + "/completions",
                  {"prompt": "hello", "max_tokens": 4, "stream": True,
                   "stream_options": {"include_usage": True, "continuous_usage_stats": True}})
    ev = events(raw)
    text = [e for e in ev if e["choices"] and e["choices"][0]["text"]]
    assert [e["usage"]["completion_tokens"] for e in text] == [1, 2, 3, 4]
    assert all(e["usage"]["prompt_tokens"] == 2 for e in text)
    _, raw = post(batching.url + "/chat/completions", chat("hello", max_tokens=3, stream=True))
    assert all("usage" not in e for e in events(raw))  # not asked for


def test_token_id_prompts_on_completions(batching):
    ids = list(range(100, 150))
    usage = json.loads(post(batching.url + "/completions", {"prompt": ids, "max_tokens": 2})[1])["usage"]
    assert usage["prompt_tokens"] == 50 and usage["prompt_tokens_details"]["cached_tokens"] == 0
    usage = json.loads(post(batching.url + "/completions", {"prompt": ids + [7, 8], "max_tokens": 2})[1])["usage"]
    assert usage["prompt_tokens"] == 52 and usage["prompt_tokens_details"]["cached_tokens"] == 48
    with pytest.raises(urllib.error.HTTPError) as e:
        post(batching.url + "/completions", {"prompt": [[1, 2], [3]]})
    assert e.value.code == 400


@pytest.mark.parametrize("kind", ["null", "batching"])
def test_ignore_eos_min_tokens_and_early_stop(sim, kind):
    model = {"params": FAST} if kind == "batching" else {"ttft_s": 0.0, "itl_s": 0.0005}
    server = sim(early_stop_probability=1.0, seed=3, **model)
    lengths = []
    for i in range(12):
        answer = json.loads(post(server.url + "/chat/completions", chat(f"q{i}", max_tokens=40, min_tokens=10))[1])
        n = answer["usage"]["completion_tokens"]
        assert 10 <= n < 40 and answer["choices"][0]["finish_reason"] == "stop"
        lengths.append(n)
    assert len(set(lengths)) > 3
    again = json.loads(post(server.url + "/chat/completions", chat("q0", max_tokens=40, min_tokens=10))[1])
    assert again["usage"]["completion_tokens"] == lengths[0]  # the EOS point is a function of the request
    exact = json.loads(post(server.url + "/chat/completions", chat("q0", max_tokens=40, ignore_eos=True))[1])
    assert exact["usage"]["completion_tokens"] == 40 and exact["choices"][0]["finish_reason"] == "length"
    default = sim(**model)  # early_stop_probability 0: always max_tokens
    assert json.loads(post(default.url + "/chat/completions", chat("q0", max_tokens=40))[1])["usage"][
        "completion_tokens"] == 40


def test_bad_requests_are_answered_400_with_a_message(batching):
    cases = [({"model": "m"}, "'messages' is required"), (chat("x", max_tokens=0), "max_tokens"),
             (chat("x", max_tokens=5, min_tokens=9), "min_tokens"), (chat("x", max_tokens=60_000), "KV cache")]
    for body, message in cases:
        with pytest.raises(urllib.error.HTTPError) as e:
            post(batching.url + "/chat/completions", body)
        assert e.value.code == 400
        assert message in json.loads(e.value.read())["error"]["message"]
    assert batching.metrics()["requests_rejected"] == len(cases)


def test_metrics_show_the_queue_kv_usage_and_hit_rate(sim):
    server = sim(params=BatchingParams(max_batch=2, step_base_s=0.01, kv_capacity_tokens=100_000,
                                       prefix_cache_tokens=100_000))
    threads = [threading.Thread(target=post, args=(server.url + "/chat/completions", chat(f"a{i}" * 50, max_tokens=40)))
               for i in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while (server.metrics()["requests_running"], server.metrics()["requests_waiting"]) != (2, 4) and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    m = server.metrics()
    text = server.metrics_text()
    for t in threads:
        t.join()
    assert (m["requests_running"], m["requests_waiting"]) == (2, 4)
    assert m["kv_used_tokens"] > 0 and m["kv_capacity_tokens"] == 100_000
    assert "agentperf_sim_requests_waiting 4" in text and "agentperf_sim_requests_running 2" in text
    ratio = sample(text, "agentperf_sim_kv_cache_usage_ratio")
    assert 0 < ratio < 1
    post(server.url + "/chat/completions", chat("a0" * 50, max_tokens=2))
    m = server.metrics()
    assert m["requests_waiting"] == 0 and m["requests_running"] == 0 and m["kv_used_tokens"] == 0
    hit_rate = sample(server.metrics_text(), "agentperf_sim_prefix_cache_hit_rate")
    assert hit_rate == pytest.approx(m["cache_hit_tokens"] / m["cache_query_tokens"]) and hit_rate > 0


def test_cache_hits_across_turns_but_not_across_agents(sim):
    server = sim(params=FAST)
    conv = ap.Conversation(system="You are an agent. " + "s" * 600, turns=[
        ap.Turn(messages=[{"role": "user", "content": "u" * 400}], output_tokens=3),
        ap.Turn(messages=[{"role": "assistant", "content": "a" * 400}, {"role": "user", "content": "t" * 400}],
                output_tokens=3),
        ap.Turn(messages=[{"role": "assistant", "content": "b" * 400}, {"role": "user", "content": "v" * 400}],
                output_tokens=3)])
    engine = ap.Engine(server.url, ap.encode([conv], model=server.model), workers=1, random_start_turn=False)
    _, records = ap.run_phase(engine, 4, 0.5)
    assert (records["error_kind"] == 0).all()
    first_pass = []
    for agent in np.unique(records["agent_id"]):
        mine = np.sort(records[records["agent_id"] == agent], order="scheduled_ns")[:3]
        first_pass.append(mine)
        assert mine["cached_tokens"][0] == 0  # same text as the other agents, another isolation prefix
        # Turn k+1 finds turn k's prompt in the cache (all but its last partial block).
        assert (mine["cached_tokens"][1:] >= mine["prompt_tokens"][:-1] - 16).all()
        assert (mine["cached_tokens"][1:] < mine["prompt_tokens"][1:]).all()
    assert server.metrics()["cache_hit_tokens"] > 0


def test_serve_sim_with_a_preset_and_parameters():
    proc = subprocess.Popen(CLI + ["serve-sim", "--port", "0", "--preset", "h200-class", "--param", "max_batch=2",
                                   "--param", "step_base_s=0.001", "--tokens-per-chunk", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        url = line.strip().split()[-1]
        _, raw = post(url + "/chat/completions", chat("hi", max_tokens=5, stream=True,
                                                      stream_options={"include_usage": True}))
        content = [e for e in events(raw) if e["choices"] and e["choices"][0]["delta"].get("content")]
        assert [e["choices"][0]["delta"]["content"] for e in content] == ["tok ", "tok tok ", "tok tok "]
        metrics = urllib.request.urlopen(url.removesuffix("/v1") + "/metrics", timeout=5).read().decode()
        assert 'model_kind="batching",preset="custom"' in metrics
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "model: batching" in err
    bad = subprocess.run(CLI + ["serve-sim", "--port", "0", "--param", "max_batch=4"], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode != 0 and "batching" in bad.stderr


def test_run_without_url_starts_the_default_preset(tmp_path):
    trajectories = tmp_path / "small.jsonl"
    trajectories.write_text(json.dumps({"id": "t", "system": "s" * 200, "turns": [
        {"messages": [{"role": "user", "content": "u" * 400}], "output_tokens": 8, "tool_delay_s": 0.05},
        {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "v" * 400}],
         "output_tokens": 8}]}) + "\n")
    out = tmp_path / "res"
    proc = subprocess.run(CLI + ["run", "--trajectories", str(trajectories), "--concurrency", "4", "--duration", "2s",
                                 "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert_ran(proc, out)
    assert "built-in simulated server (demo preset)" in proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["server"]["model_kind"] == "batching" and manifest["server"]["preset"] == "demo"
    assert manifest["server"]["params"]["max_batch"] == 64
    summary = json.loads((out / "summary.json").read_text())["phase"]
    assert summary["requests"] > 0 and summary["requests_failed"] == 0


def test_h2c_serves_the_engine_as_http1_does(sim):
    server = sim(ttft_s=0.05, itl_s=0.005)
    engine = ap.Engine(server.url, ap.encode([ap.Conversation(turns=[ap.Turn(
        messages=[{"role": "user", "content": "hi"}], output_tokens=20)])], model=server.model), workers=1,
        protocol="h2")
    summary, records = ap.run_phase(engine, 16, 1.5)
    assert summary.requests_failed == 0 and summary.requests >= 32
    assert server.metrics()["connections_accepted"] == 1  # 16 agents multiplexed on one connection
    assert 0.05 <= summary.ttft_s["p95"] < 0.055
    assert summary.output_speed_tps["p50"] == pytest.approx(19 / (19 * 0.005), rel=0.02)
    assert (records["output_tokens"] == 20).all()


def test_h2c_requests_and_headers(sim):
    pytest.importorskip("h2")
    import socket

    import h2.config
    import h2.connection
    import h2.events

    server = sim(params=FAST)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    requests = {
        "health": ("GET", "/health", None),
        "chat": ("POST", "/v1/chat/completions", chat("hello", max_tokens=3)),
        "stream": ("POST", "/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 2, "stream": True}),
        "bad": ("POST", "/v1/chat/completions", {"model": "m"}),
    }
    ids = {}
    for name, (method, path, body) in requests.items():
        sid = conn.get_next_available_stream_id()
        ids[sid] = name
        conn.send_headers(sid, [(":method", method), (":path", path), (":scheme", "http"), (":authority", "sim")],
                          end_stream=body is None)
        if body is not None:
            conn.send_data(sid, json.dumps(body).encode(), end_stream=True)
    sock.sendall(conn.data_to_send())
    headers, bodies, ended = {}, {}, set()
    while len(ended) < len(requests):
        for ev in conn.receive_data(sock.recv(65536)):
            if isinstance(ev, h2.events.ResponseReceived):
                headers[ids[ev.stream_id]] = {k.decode(): v.decode() for k, v in ev.headers}
            elif isinstance(ev, h2.events.DataReceived):
                bodies[ids[ev.stream_id]] = bodies.get(ids[ev.stream_id], b"") + ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                ended.add(ids[ev.stream_id])
        sock.sendall(conn.data_to_send())
    sock.close()
    assert headers["health"][":status"] == "200" and json.loads(bodies["health"]) == {"status": "ok"}
    answer = json.loads(bodies["chat"])
    assert answer["usage"]["completion_tokens"] == 3
    assert int(headers["chat"]["content-length"]) == len(bodies["chat"])
    assert headers["stream"]["content-type"] == "text/event-stream" and "content-length" not in headers["stream"]
    assert [e["choices"][0]["text"] for e in events(bodies["stream"].decode()) if e["choices"]][:2] == ["tok ", "tok "]
    assert headers["bad"][":status"] == "400"
