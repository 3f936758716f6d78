"""Server dialects: the table of facts, the fields each request carries, and the pre-flight's
probing against servers that behave like vLLM, llama.cpp, transformers serve, SGLang and
TensorRT-LLM (a local replay server with each one's rules), plus the recorded SSE of the real ones."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import agentperf_native as ap
from agentperf_native import dialects, preflight
from agentperf_native.dialects import DIALECTS, DialectError
from agentperf_native.endpoint import Endpoint, Transport, list_models
from agentperf_native.workload import RequestPolicy, encode

DATA = Path(__file__).parent / "data" / "dialects"


# ---- the fields a request carries -----------------------------------------------------------------

@pytest.mark.parametrize("name,exact", [
    ("vllm", {"max_tokens": 9, "ignore_eos": True, "min_tokens": 9}),
    ("llama.cpp", {"max_tokens": 9, "ignore_eos": True}),
    ("transformers", {"max_tokens": 9, "generation_config": '{"min_new_tokens": 9}'}),
])
def test_each_dialect_forces_exact_lengths_its_own_way_and_recorded_sends_only_the_cap(name, exact):
    d = DIALECTS[name]
    assert d.length_fields("exact", 9) == exact
    assert d.length_fields("recorded", 9) == {"max_tokens": 9}


def test_a_dialect_without_exact_lengths_refuses_and_says_why():
    d = dialects.replace(DIALECTS["transformers"], exact_length="none")
    with pytest.raises(DialectError, match="use --output-length recorded"):
        d.length_fields("exact", 5)
    assert d.length_fields("recorded", 5) == {"max_tokens": 5}


def _bodies(policy, include_usage=True):
    conv = ap.Conversation(system="S", turns=[
        ap.Turn(messages=[{"role": "user", "content": "a"}], output_tokens=5),
        ap.Turn(messages=[{"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}], output_tokens=7)])
    w = encode([conv], model="m", policy=policy, include_usage=include_usage)
    return [json.loads(b"{" + w.core.turn_body(0, t) + b"}") for t in range(2)]


def test_generation_config_goes_into_every_turn_with_that_turns_length():
    bodies = _bodies(RequestPolicy(output="exact", exact_method="generation_config"), include_usage=False)
    assert [json.loads(b["generation_config"]) for b in bodies] == [{"min_new_tokens": 5}, {"min_new_tokens": 7}]
    assert [len(b["messages"]) for b in bodies] == [2, 4]
    # recorded lengths: no generation_config at all
    assert all("generation_config" not in b for b in _bodies(RequestPolicy(exact_method="generation_config")))


def test_ignore_eos_dialect_sends_no_min_tokens():
    p = RequestPolicy(output="exact", exact_method="ignore_eos")
    assert p.lengths(7) == (7, -1) and p.ignore_eos
    p = RequestPolicy(output="exact")
    assert p.lengths(7) == (7, 7) and p.ignore_eos
    assert not RequestPolicy().ignore_eos and RequestPolicy().lengths(7) == (7, -1)


# ---- identification ---------------------------------------------------------------------------------

def test_identify_from_the_servers_self_description():
    assert dialects.identify([{"id": "m", "owned_by": "vllm"}]).name == "vllm"
    assert dialects.identify([{"id": "m", "owned_by": "sglang"}]).name == "sglang"
    assert dialects.identify([{"id": "m", "owned_by": "llamacpp"}]).name == "llama.cpp"
    assert dialects.identify(None, None, {"default_generation_settings": {"n_ctx": 4096}}).name == "llama.cpp"
    assert dialects.identify([{"id": "m", "owned_by": "someone"}]).name == "openai"
    with pytest.raises(DialectError, match="unknown dialect 'nope'"):
        dialects.get("nope")


# ---- recorded SSE of the real servers agree with the table --------------------------------------------

@pytest.mark.parametrize("name,file", [("vllm", "vllm-chat.sse"), ("llama.cpp", "llama.cpp-completions.sse"),
                                       ("transformers", "transformers-chat.sse")])
def test_recorded_streams_match_the_dialect_table(name, file):
    s = preflight._read_stream((DATA / file).read_bytes())
    d = DIALECTS[name]
    assert s.outputs > 0 and s.usage
    assert s.done == d.done_marker
    assert s.cached == (d.cached_tokens != "none")


# ---- the pre-flight probes a server and settles on a dialect ------------------------------------------

class Behaviour:
    """A server's rules for the replay server."""

    def __init__(self, owned_by="", refuse=(), unknown="ignored", usage="stream_options", done=True,
                 honours=("ignore_eos", "min_tokens"), props=None, cached=True):
        self.owned_by, self.refuse, self.unknown, self.usage = owned_by, set(refuse), unknown, usage
        self.done, self.honours, self.props, self.cached = done, set(honours), props, cached


KNOWN = {"model", "stream", "max_tokens", "messages", "stream_options", "ignore_eos", "min_tokens"}


def _serve(b: Behaviour):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, status, body: bytes, ctype="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/v1/models":
                return self._send(200, json.dumps({"data": [{"id": "m", "owned_by": b.owned_by}]}).encode())
            if self.path == "/props" and b.props is not None:
                return self._send(200, json.dumps(b.props).encode())
            self._send(404, b'{"error":"not found"}')

        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            bad = [k for k in req if k in b.refuse or (k not in KNOWN | {"generation_config"} and b.unknown == "rejected")]
            if bad:
                return self._send(422, json.dumps({"detail": f"unexpected field {bad[0]}"}).encode())
            n = req["max_tokens"]
            forced = ("ignore_eos" in b.honours and req.get("ignore_eos")) or \
                     ("min_tokens" in b.honours and req.get("min_tokens")) or \
                     ("generation_config" in b.honours and "generation_config" in req)
            n = n if forced else max(1, n // 2)  # unforced: the model stops early
            out = b"".join(b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n' for _ in range(n))
            if b.usage == "always" or (req.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": 9, "completion_tokens": n}
                if b.cached:
                    usage["prompt_tokens_details"] = {"cached_tokens": 0}
                out += b'data: {"choices":[],"usage":' + json.dumps(usage).encode() + b"}\n\n"
            if b.done:
                out += b"data: [DONE]\n\n"
            self._send(200, out, "text/event-stream")

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


BEHAVIOURS = {
    "vllm": (Behaviour(owned_by="vllm"), "vllm", "ignore_eos+min_tokens"),
    "llama.cpp": (Behaviour(owned_by="llamacpp", honours=("ignore_eos",), props={"total_slots": 1}), "llama.cpp",
                  "ignore_eos"),
    "transformers": (Behaviour(owned_by="huggingface", refuse=("ignore_eos", "min_tokens"), unknown="rejected",
                               usage="always", done=False, honours=("generation_config",), cached=False),
                     "transformers", "generation_config"),
    "sglang": (Behaviour(owned_by="sglang"), "sglang", "ignore_eos+min_tokens"),
    "trtllm": (Behaviour(owned_by="tensorrt_llm", unknown="rejected", refuse=("generation_config",)), "trtllm",
               "ignore_eos+min_tokens"),
    "unknown, no exact": (Behaviour(owned_by="x", honours=()), "openai", "none"),
}


@pytest.mark.parametrize("case", list(BEHAVIOURS))
def test_preflight_probes_optional_fields_one_at_a_time_and_settles(case):
    behaviour, name, exact = BEHAVIOURS[case]
    srv = _serve(behaviour)
    try:
        e = Endpoint.parse(f"http://127.0.0.1:{srv.server_address[1]}/v1")
        _, listing, _ = list_models(e, Transport())
        pre = preflight.check(e, "m", Transport(), listing=listing["data"])
    finally:
        srv.shutdown()
    assert pre.ok, pre.problem  # a refused optional field never fails the pre-flight
    assert pre.dialect == name and pre.chosen.exact_length == exact
    assert pre.chosen.usage == behaviour.usage and pre.done_marker == behaviour.done
    assert pre.chosen.unknown_fields == behaviour.unknown
    assert pre.honours_exact_length == (exact != "none")
    for field in behaviour.refuse & {"ignore_eos", "min_tokens"}:
        assert pre.probes[field]["status"] == 422 and "unexpected field" in pre.probes[field]["detail"]


def test_a_named_dialect_is_used_without_probing_and_a_wrong_one_fails_with_the_servers_answer():
    behaviour = BEHAVIOURS["transformers"][0]
    srv = _serve(behaviour)
    try:
        e = Endpoint.parse(f"http://127.0.0.1:{srv.server_address[1]}/v1")
        good = preflight.check(e, "m", Transport(), dialect="transformers", output="exact")
        bad = preflight.check(e, "m", Transport(), dialect="vllm", output="exact")
    finally:
        srv.shutdown()
    assert good.ok and good.dialect_source == "--dialect" and good.probes == {} and good.honours_exact_length
    assert not bad.ok and "--dialect vllm" in bad.problem and "HTTP 422" in bad.problem
