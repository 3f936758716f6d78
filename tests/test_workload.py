"""Workload loading, encoding, and what the engine actually puts on the wire."""

import json
from pathlib import Path
import re
import socket
import threading

import numpy as np
import pytest

import agentperf_native as ap


class RecordingServer:
    """A loopback HTTP/1.1 server that records request bodies and answers a short SSE stream."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests = []  # (connection index, head, body)
        self.lock = threading.Lock()
        self.threads = []
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        index = 0
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn, index), daemon=True)
            t.start()
            index += 1

    def _serve(self, conn, index):
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
                while len(rest) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    rest += data
                body, buf = rest[:length], rest[length:]
                with self.lock:
                    self.requests.append((index, head.decode(), body))
                events = [
                    {"choices": [{"index": 0, "delta": {"content": "ok"}}]},
                    {"choices": [{"index": 0, "delta": {"content": " done"}}]},
                    {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 2,
                                              "prompt_tokens_details": {"cached_tokens": 5}}},
                ]
                payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
                chunk = f"{len(payload):x}\r\n{payload}\r\n0\r\n\r\n".encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n" + chunk)

    def close(self):
        self.running = False
        self.sock.close()


@pytest.fixture
def recorder():
    s = RecordingServer()
    yield s
    s.close()


def conversation():
    return ap.Conversation(
        system="You are a careful agent. \"Quotes\" and \\ backslashes and ünïcode survive.",
        turns=[
            ap.Turn(messages=[{"role": "user", "content": "Fix the bug in parser.py"}], output_tokens=42),
            ap.Turn(messages=[{"role": "assistant", "content": "```bash\nls\n```"},
                              {"role": "user", "content": "<output>parser.py</output>"}], output_tokens=7),
            ap.Turn(messages=[{"role": "assistant", "content": "```bash\ncat parser.py\n```"},
                              {"role": "user", "content": "def parse(): pass"}], output_tokens=300),
        ],
    )


def test_recorded_replay_sends_the_recorded_messages_in_order(recorder):
    conv = conversation()
    workload = ap.encode([conv], model="m-1", path="/v1/chat/completions")
    engine = ap.Engine(f"http://127.0.0.1:{recorder.port}/v1", workload, workers=1, random_start_turn=False)
    _, records = ap.run_phase(engine, 2, 0.5)
    assert (records["error_kind"] == 0).all()
    assert (records["output_tokens"] == 2).all() and (records["cached_tokens"] == 5).all()
    assert (records["prompt_tokens"] == 11).all()
    by_conn = {}
    for index, head, body in recorder.requests:
        assert head.startswith("POST /v1/chat/completions HTTP/1.1")
        by_conn.setdefault(index, []).append(json.loads(body))
    assert len(by_conn) == 2  # one keep-alive connection per agent, reused across turns
    prefixes = set()
    for bodies in by_conn.values():
        assert len(bodies) >= 3
        for k, req in enumerate(bodies[:3]):
            assert req["model"] == "m-1" and req["stream"] is True
            assert req["stream_options"] == {"include_usage": True}
            assert req["max_tokens"] == conv.turns[k].output_tokens
            expected = [{"role": "system", "content": conv.system}]
            for turn in conv.turns[: k + 1]:
                expected.extend(turn.messages)
            sent = req["messages"]
            match = re.match(r"^\[rid:[0-9a-f]{16}\] ", sent[0]["content"])
            assert match, sent[0]["content"][:40]
            prefixes.add(match.group(0))
            sent[0]["content"] = sent[0]["content"][match.end():]
            assert sent == expected
    assert len(prefixes) == 2  # one isolation prefix per agent, the same on all its turns


def test_request_bytes_match_the_body_written(recorder):
    workload = ap.encode([conversation()], model="m")
    engine = ap.Engine(f"http://127.0.0.1:{recorder.port}", workload, workers=1, random_start_turn=False,
                       cache_isolation=False)
    _, records = ap.run_phase(engine, 1, 0.3)
    bodies = [b for _, _, b in recorder.requests]
    assert sorted(records["request_bytes"].tolist()) == sorted(len(b) for b in bodies)
    assert all(not json.loads(b)["messages"][0]["content"].startswith("[rid:") for b in bodies)


def test_encoded_fragments_are_shared_not_copied_per_agent():
    convs = [conversation() for _ in range(3)]
    workload = ap.encode(convs, model="m")
    one = workload.core.fragment_bytes
    assert one > 0
    # The encoded size depends on the conversations only; agents add nothing to it.
    assert ap.encode(convs, model="m").core.fragment_bytes == one
    assert workload.requests_per_pass == 9
    assert len(workload.digest) == 64


def test_digest_pins_the_workload():
    a = ap.encode([conversation()], model="m").digest
    changed = conversation()
    changed.turns[1].output_tokens = 8
    assert ap.encode([changed], model="m").digest != a
    assert ap.encode([conversation()], model="m").digest == a


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("{not json", ":1: not valid JSON"),
        ('{"turns": []}', "'turns' must be a non-empty list"),
        ('{"turns": [{"messages": []}]}', "turns[0]: field 'messages' must be a non-empty list"),
        ('{"turns": [{"messages": [{"content": "x"}]}]}', "messages[0]: a message must be an object with a string 'role'"),
        ('{"turns": [{"messages": [{"role": "user", "content": "x"}], "output_tokens": -3}]}', "'output_tokens' must be an integer >= 0"),
        ('{"turns": [{"messages": [{"role": "user", "content": "x"}], "tool_delay_s": -1}]}', "'tool_delay_s' must be a number of seconds >= 0"),
    ],
)
def test_loader_errors_name_file_line_and_field(tmp_path, line, fragment):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"turns": [{"messages": [{"role": "user", "content": "hi"}]}]})
    path.write_text(good + "\n" + line + "\n" if "not json" not in line else line + "\n")
    with pytest.raises(ap.WorkloadError) as e:
        ap.load_conversations(path)
    msg = str(e.value)
    assert str(path) in msg and fragment in msg
    if "not json" not in line:
        assert f"{path}:2" in msg


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(ap.WorkloadError, match="no such file"):
        ap.load_conversations(tmp_path / "nope.jsonl")


def test_bundled_default_loads_and_grows_context():
    convs = ap.load_conversations(ap.bundled_path())
    assert len(convs) >= 16
    workload = ap.encode(convs, model="m")
    sizes = np.array(workload.core.fragment_bytes)
    assert sizes > 0
    assert max(len(c.turns) for c in convs) > 10


def _bodies_by_connection(recorder):
    out = {}
    for index, _, body in recorder.requests:
        out.setdefault(index, []).append(json.loads(body))
    return out


def _strip_prefix(req):
    content = req["messages"][0]["content"]
    m = re.match(r"^\[rid:[0-9a-f]{16}\] ", content)
    if m:
        req["messages"][0]["content"] = content[m.end():]
    return m.group(0) if m else None


def test_generated_history_feeds_back_what_the_server_streamed(recorder):
    conv = conversation()
    workload = ap.encode([conv], model="m", policy=ap.RequestPolicy(history="generated"))
    engine = ap.Engine(f"http://127.0.0.1:{recorder.port}", workload, workers=1, random_start_turn=False)
    _, records = ap.run_phase(engine, 1, 0.4)
    assert (records["error_kind"] == 0).all()
    bodies = _bodies_by_connection(recorder)[0]
    assert len(bodies) >= 3
    for k, req in enumerate(bodies[:3]):
        _strip_prefix(req)
        expected = [{"role": "system", "content": conv.system}]
        for j, turn in enumerate(conv.turns[: k + 1]):
            for i, m in enumerate(turn.messages):
                if j > 0 and i == 0 and m["role"] == "assistant":
                    m = dict(m, content="ok done")  # what the recording server streamed ("ok" + " done")
                expected.append(m)
        assert req["messages"] == expected


def test_exact_output_policy_asks_for_exact_lengths(recorder):
    conv = conversation()
    workload = ap.encode([conv], model="m", policy=ap.RequestPolicy(output="exact"))
    engine = ap.Engine(f"http://127.0.0.1:{recorder.port}", workload, workers=1, random_start_turn=False)
    _, records = ap.run_phase(engine, 1, 0.3)
    bodies = _bodies_by_connection(recorder)[0]
    for k, req in enumerate(bodies[:3]):
        n = conv.turns[k].output_tokens
        assert req["max_tokens"] == n and req["min_tokens"] == n and req["ignore_eos"] is True
    # The recording server sends 2 tokens: under-generation is flagged on every record.
    ok = records[records["error_kind"] == 0]
    assert len(ok) and (ok["flags"] & ap.engine.FLAG_UNDER_GENERATED).all()


def test_fixed_output_policy_and_tools_are_sent(recorder):
    conv = conversation()
    conv.tools = [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}]
    workload = ap.encode([conv], model="m", policy=ap.RequestPolicy(output="fixed:64"))
    engine = ap.Engine(f"http://127.0.0.1:{recorder.port}", workload, workers=1, random_start_turn=False)
    ap.run_phase(engine, 1, 0.2)
    req = _bodies_by_connection(recorder)[0][0]
    assert req["max_tokens"] == 64 and req["min_tokens"] == 64
    assert req["tools"] == conv.tools


def test_shared_system_prompt_keeps_the_prefix_out_of_it(recorder):
    conv = conversation()
    workload = ap.encode([conv], model="m", policy=ap.RequestPolicy(share_system_prompt=True))
    engine = ap.Engine(f"http://127.0.0.1:{recorder.port}", workload, workers=1, random_start_turn=False)
    ap.run_phase(engine, 2, 0.3)
    for bodies in _bodies_by_connection(recorder).values():
        req = bodies[0]
        assert req["messages"][0] == {"role": "system", "content": conv.system}
        assert re.match(r"^\[rid:[0-9a-f]{16}\] Fix the bug", req["messages"][1]["content"])


def test_a_new_isolation_epoch_gives_fresh_prefixes(recorder):
    workload = ap.encode([conversation()], model="m")
    engine = ap.Engine(f"http://127.0.0.1:{recorder.port}", workload, workers=1, random_start_turn=False)
    ap.run_phase(engine, 1, 0.2)
    first = {_strip_prefix(json.loads(b)) for _, _, b in recorder.requests}
    recorder.requests.clear()
    engine.new_isolation_epoch()
    ap.run_phase(engine, 1, 0.2)
    second = {_strip_prefix(json.loads(b)) for _, _, b in recorder.requests}
    assert len(first) == 1 and len(second) == 1 and first != second


def _first_delays(spec: str, seed: int, agents: int = 6, cap_s: float | None = None) -> dict[int, float]:
    """Each agent's delay between turn 0 and turn 1 of one conversation, from its records."""
    conv = ap.Conversation(turns=[ap.Turn(messages=[{"role": "user", "content": f"turn {i}"}], output_tokens=4,
                                          tool_delay_s=0.3) for i in range(3)])
    workload = ap.encode([conv], model="agentperf-sim",
                         policy=ap.RequestPolicy(tool_delay=spec, tool_delay_cap_s=cap_s))
    with ap.SimServer(ttft_s=0.005, itl_s=0.001) as server:
        engine = ap.Engine(server.url, workload, workers=1, seed=seed, random_start_turn=False)
        _, records = ap.run_phase(engine, agents, 1.8)
    out = {}
    for a in range(agents):
        mine = records[(records["agent_id"] == a) & (records["error_kind"] == 0)]
        t0, t1 = mine[mine["turn"] == 0], mine[mine["turn"] == 1]
        assert len(t0) and len(t1), f"agent {a} did not reach turn 1"
        out[a] = (int(t1["scheduled_ns"][0]) - int(t0["done_ns"][0])) / 1e9
    return out


def test_each_agent_draws_its_own_tool_delays_reproducibly_from_the_seed():
    first = _first_delays("uniform:0.5,1.5", seed=7)
    assert all(0.5 <= d <= 1.5 for d in first.values()), first
    assert len({round(d, 4) for d in first.values()}) == 6, f"agents waited the same 'random' delay: {first}"
    again = _first_delays("uniform:0.5,1.5", seed=7)
    assert again == pytest.approx(first, abs=1e-6)
    other = _first_delays("uniform:0.5,1.5", seed=8)
    assert other != pytest.approx(first, abs=1e-3)


@pytest.mark.parametrize("spec, cap, expected", [("none", None, 0.0), ("recorded", None, 0.3),
                                                 ("fixed:0.25", None, 0.25), ("fixed:9", 0.2, 0.2)])
def test_tool_delay_policies_on_the_wire(spec, cap, expected):
    got = _first_delays(spec, seed=1, agents=2, cap_s=cap)
    assert got == pytest.approx({0: expected, 1: expected}, abs=0.002)


@pytest.mark.parametrize("bad", ["sometimes", "fixed:-1", "uniform:3,1", "lognormal:0,1"])
def test_bad_tool_delay_specs_say_how_to_write_them(bad):
    with pytest.raises(ValueError, match="lognormal:MEDIAN,SIGMA"):
        ap.RequestPolicy(tool_delay=bad)


def test_bad_output_policy_is_refused():
    with pytest.raises(ValueError, match="fixed:N"):
        ap.RequestPolicy(output="fixed:zero")


FIXTURES = Path(__file__).parent / "data" / "trajectories"


def test_converted_mini_swe_agent_run_is_replayed_exactly(recorder):
    from agentperf_native.trajectories import load

    conv = load(FIXTURES / "mini_swe_agent.traj.json")[0]
    assert len(conv.turns) >= 2
    workload = ap.encode([conv], model="m", policy=ap.RequestPolicy(tool_delay="none"))
    engine = ap.Engine(f"http://127.0.0.1:{recorder.port}", workload, workers=1, random_start_turn=False)
    _, records = ap.run_phase(engine, 1, 0.3 + 0.05 * len(conv.turns))
    bodies = _bodies_by_connection(recorder)[0]
    assert len(bodies) >= len(conv.turns)
    history = [] if conv.system is None else [{"role": "system", "content": conv.system}]
    for k, turn in enumerate(conv.turns):
        req = bodies[k]
        assert _strip_prefix(req) is not None  # the isolation prefix comes first ...
        history.extend(turn.messages)
        assert req["messages"] == history  # ... then exactly the recorded messages, in order
        assert req["max_tokens"] == turn.output_tokens  # the recorded completion tokens


def test_converted_mini_swe_agent_run_in_generated_mode_feeds_back_the_stream(recorder):
    from agentperf_native.trajectories import load

    conv = load(FIXTURES / "mini_swe_agent.traj.json")[0]
    workload = ap.encode([conv], model="m", policy=ap.RequestPolicy(history="generated", tool_delay="none"))
    engine = ap.Engine(f"http://127.0.0.1:{recorder.port}", workload, workers=1, random_start_turn=False)
    ap.run_phase(engine, 1, 0.3 + 0.05 * len(conv.turns))
    bodies = _bodies_by_connection(recorder)[0]
    for k in range(1, len(conv.turns)):
        replies = [m for m in bodies[k]["messages"] if m["role"] == "assistant"]
        assert len(replies) == k
        assert all(m["content"] == "ok done" for m in replies)  # what the server streamed
        # Everything else (tool calls, tool results) stays as recorded.
        recorded = [m for t in conv.turns[: k + 1] for m in t.messages if m["role"] == "assistant"]
        assert [m.get("tool_calls") for m in replies] == [m.get("tool_calls") for m in recorded]


def test_token_only_trace_sends_token_exact_prompts(recorder):
    from agentperf_native.trajectories import load, load_tokenizer

    conv = load(FIXTURES / "kv_cache_tester.json")[0]
    tok = load_tokenizer("cl100k_base")
    workload = ap.encode([conv], model="m", tokenizer=tok, token_prompts="token_ids",
                         policy=ap.RequestPolicy(tool_delay="none"))
    engine = ap.Engine(f"http://127.0.0.1:{recorder.port}", workload, workers=1, random_start_turn=False)
    ap.run_phase(engine, 1, 0.3 + 0.05 * len(conv.turns))
    reqs = [(head, json.loads(b)) for _, head, b in recorder.requests]
    assert len(reqs) >= len(conv.turns)
    isolation = 4  # token ids of the per-agent prefix
    prompts = []
    for k, turn in enumerate(conv.turns):
        head, req = reqs[k]
        assert head.startswith("POST /v1/completions ")
        assert len(req["prompt"]) == turn.input_tokens + isolation
        prompts.append(req["prompt"][isolation:])
    # Consecutive turns share exactly the recorded leading blocks.
    block = conv.block_size
    for k in range(1, len(conv.turns)):
        a, b = conv.turns[k - 1].hash_ids, conv.turns[k].hash_ids
        shared = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        if shared:
            assert prompts[k][: shared * block] == prompts[k - 1][: shared * block]
        if shared < len(b) and shared * block < len(prompts[k - 1]):
            assert prompts[k][shared * block: (shared + 1) * block] != prompts[k - 1][shared * block: (shared + 1) * block]
