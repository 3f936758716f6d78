"""The server's context limit, known before measuring (limits.py): which conversations overflow
and from which turn, and what skip / truncate do with them."""

import pytest

import agentperf_native as ap
from agentperf_native import limits
from conftest import assert_ran


def conv(name, sizes):
    # turn k's prompt is sum(sizes[:k+1]) tokens by the counter below
    return ap.Conversation(id=name, turns=[ap.Turn(messages=[{"role": "user", "content": "x" * s}], output_tokens=10)
                                           for s in sizes])


def count(c, k):
    return sum(len(m["content"]) for t in c.turns[: k + 1] for m in t.messages)


CONVS = [conv("fits", [100, 100, 100]), conv("late", [300, 300, 300, 300]), conv("first", [2000, 10])]


def plan(action="skip", limit=1000):
    return limits.plan(CONVS, limit, "test", count, "test counter", lambda c, k: c.turns[k].output_tokens, action)


def test_plan_finds_the_first_turn_that_overflows():
    p = plan()
    need = {o["id"]: (o["first_overflow_turn"], o["tokens"]) for o in p.overflowing}
    # "late": turn 2 needs 900 + 10 + margin 16 = 926 <= 1000, turn 3 needs 1226
    assert need == {"late": (3, 1200 + 10 + limits.MARGIN_TOKENS), "first": (0, 2010 + 10 + limits.MARGIN_TOKENS)}
    assert "2 of 3 conversations need more context than the server's limit of 1000 tokens" in p.message()


def test_skip_keeps_the_conversations_that_fit_and_truncate_keeps_their_turns_that_fit():
    p = plan("skip")
    assert [c.id for c in limits.apply(CONVS, p)] == ["fits"]
    p = plan("truncate")
    kept = limits.apply(CONVS, p)
    assert [(c.id, len(c.turns)) for c in kept] == [("fits", 3), ("late", 3)]
    assert p.dropped_turns == 1 + 2 and p.kept_conversations == 2
    assert "truncated to the turns that fit (3 turns dropped)" in p.message()


def test_no_limit_or_no_overflow_changes_nothing():
    assert plan(limit=None).overflowing == [] and plan(limit=None).message() is None
    assert limits.apply(CONVS, plan(limit=100_000)) is CONVS
    with pytest.raises(ValueError, match="skip, truncate, refuse"):
        plan("drop")


def test_the_first_failure_of_each_kind_is_shown_with_the_servers_answer(tmp_path):
    """A server that refuses long requests with a reason: the run's notes and summary say it."""
    import json
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if "turn 1" in json.dumps(req["messages"]):
                body = b'{"error":{"message":"This model\'s maximum context length is 8 tokens"}}'
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
            else:
                body = (b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
                        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\ndata: [DONE]\n\n')
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    wl = tmp_path / "w.jsonl"
    wl.write_text(json.dumps({"id": "c", "turns": [
        {"messages": [{"role": "user", "content": f"turn {k}"}], "output_tokens": 1, "tool_delay_s": 0.05}
        for k in range(2)]}) + "\n")
    try:
        proc = subprocess.run([sys.executable, "-m", "agentperf_native.cli", "run", "--url",
                               f"http://127.0.0.1:{srv.server_address[1]}/v1", "--model", "m", "--trajectories",
                               str(wl), "--concurrency", "1", "--duration", "1s", "--start-turn", "first",
                               "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    finally:
        srv.shutdown()
    assert proc.returncode == 3, proc.stderr  # completed; the refused requests make the result not valid
    assert_ran(proc, tmp_path / "out", invalid_for=("error rate", "were refused for their length"))
    notes = json.loads((tmp_path / "out" / "summary.json").read_text())["notes"]
    said = [n for n in notes if "failed as http_status 400" in n]
    assert len(said) == 1 and "maximum context length is 8 tokens" in said[0] and "turn 1" in said[0]
    assert said[0] in proc.stderr
