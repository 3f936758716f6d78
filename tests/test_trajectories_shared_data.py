"""Every real file in ../shared/data converts, and the conversions keep the sources' figures.

The expected figures are read from the source files here, independently of the importers. The data
is not part of this repository (see shared/data/README.md): without it these tests skip.
"""

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from agentperf_native.trajectories import ImportOptions, import_file, source_files, turn_metadata

SHARED = Path(os.environ.get("AGENTPERF_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"the shared real-data folder {SHARED} is absent "
                                "(it sits beside the repository; set AGENTPERF_SHARED_DATA to point elsewhere)")
NO_ESTIMATE = ImportOptions(estimate_output_tokens=False)


def files(sub):
    found = source_files([SHARED / sub])
    assert found, f"{SHARED / sub} holds no source files"
    return found


@pytest.fixture(scope="module")
def converted():
    return {p: import_file(p, options=NO_ESTIMATE) for p in source_files([SHARED])}


def test_every_file_converts_or_says_why_not(converted):
    expected = {p for p in SHARED.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".traj")}
    assert set(converted) == expected and len(expected) > 150
    for path, result in converted.items():
        assert result.conversations or result.notes, path
        if not result.conversations:  # only mini-swe-agent runs whose one model call failed
            assert "mini-swe-agent" in str(path) and "no answered model call" in result.notes[0]


def test_mini_swe_agent_keeps_every_call_and_usage(converted):
    for path in files("mini-swe-agent"):
        src = json.loads(path.read_text())
        replies = [m for m in src["messages"] if m["role"] == "assistant"]
        usage = [m["extra"]["response"]["usage"] for m in replies]
        convs = converted[path].conversations
        if not replies:
            assert convs == []
            continue
        (c,) = convs
        assert len(c.turns) == len(replies), path
        assert [t.output_tokens for t in c.turns] == [u["completion_tokens"] for u in usage]
        assert [t.prompt_tokens for t in c.turns] == [u["prompt_tokens"] for u in usage]
        assert [t.cached_tokens for t in c.turns] == [u["prompt_tokens_details"]["cached_tokens"] for u in usage]
        assert c.system == src["messages"][0]["content"]
        # every message is replayed but the system prompt, the exit marker, the last reply and what followed it
        sent = [m for t in c.turns for m in t.messages]
        assert len(sent) + 1 + c.metadata.get("trailing_messages", 0) == len(src["messages"]) - 2
        assert all(t.tool_delay_s >= 0 for t in c.turns) and c.turns[-1].tool_delay_s == 0


def test_swe_agent_keeps_every_call(converted):
    for path in files("swe-agent"):
        src = json.loads(path.read_text())
        n_replies = sum(m["role"] == "assistant" for m in src["history"])
        steps = src.get("trajectory") or []
        (c,) = converted[path].conversations
        assert len(c.turns) == (len(steps) or n_replies), path
        stats = src.get("info", {}).get("model_stats")
        if isinstance(stats, dict) and stats.get("api_calls"):
            assert len(c.turns) == stats["api_calls"] and c.metadata["tokens_received"] == stats["tokens_received"]
        for k, step in enumerate(steps[:-1]):
            if "execution_time" in step:
                assert c.turns[k].tool_delay_s == pytest.approx(float(step["execution_time"]))


def _claude_calls(path):
    calls, seen = {}, set()
    for line in path.read_text().splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(e, dict) or e.get("type") != "assistant" or not isinstance(e.get("message"), dict):
            continue
        m = e["message"]
        if not isinstance(m.get("content"), list) or m.get("model") == "<synthetic>" or e.get("uuid") in seen:
            continue
        seen.add(e.get("uuid"))
        key = (e.get("sessionId"), e.get("requestId") or m.get("id"))
        calls[key] = max(calls.get(key, 0), m.get("usage", {}).get("output_tokens", 0))
    return calls


def test_claude_code_keeps_every_call_and_usage(converted):
    for path in files("claude-code"):
        calls = _claude_calls(path)
        convs = converted[path].conversations
        assert sum(len(c.turns) for c in convs) == len(calls), path
        assert sum(t.output_tokens for c in convs for t in c.turns) == sum(calls.values())


def _kv_requests(requests):
    for r in requests:
        if r.get("type") == "subagent":
            yield from _kv_requests(r.get("requests") or [])
        else:
            yield r


@pytest.fixture(scope="module")
def kv_sessions(converted):
    return {p: converted[p].conversations for p in files("kv-cache-tester")}


def test_kv_cache_tester_keeps_every_request(kv_sessions):
    for path, convs in kv_sessions.items():
        src = json.loads(path.read_text())
        reqs = list(_kv_requests(src["requests"]))
        turns = [(c, k) for c in convs for k in range(len(c.turns))]
        assert len(turns) == len(reqs), path
        assert [c.turns[k].input_tokens for c, k in turns] == [r["in"] for r in reqs]
        assert [c.turns[k].output_tokens for c, k in turns] == [r["out"] for r in reqs]
        assert [[h & 0xFFFFFFFF for h in c.turns[k].hash_ids] for c, k in turns] == [r["hash_ids"] for r in reqs]
        parent = convs[0]
        for k in range(len(parent.turns) - 1):
            think = src["requests"][k + 1].get("think_time")
            if think is not None and all(r.get("type") != "subagent" for r in src["requests"]):
                assert parent.turns[k].tool_delay_s == think
        assert all(turn_metadata(c, k)["t"] == r["t"] for (c, k), r in zip(turns, reqs))


def test_mooncake_keeps_every_request(converted):
    for path in files("mooncake"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        convs = converted[path].conversations
        turns = [(t, turn_metadata(c, k)) for c in convs for k, t in enumerate(c.turns)]
        assert len(turns) == len(rows)
        assert Counter((t.input_tokens, t.output_tokens, tuple(t.hash_ids)) for t, _ in turns) == \
            Counter((r["input_length"], r["output_length"], tuple(r["hash_ids"])) for r in rows)
        for t, meta in turns:
            assert rows[meta["line"] - 1]["input_length"] == t.input_tokens
        for c in convs:  # a session's requests arrive in order and extend each other's full blocks
            times = [turn_metadata(c, k)["timestamp_ms"] for k in range(len(c.turns))]
            assert times == sorted(times)


def test_kv_cache_tester_prompts_are_token_exact(kv_sessions):
    pytest.importorskip("tiktoken", reason="token-exact prompts need tiktoken (and bpe-openai)")
    from agentperf_native.trajectories import load_tokenizer, prompt_text, prompt_token_ids, turn_prompt_blocks

    def lead(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    # block layout and sharing, for every session
    for convs in kv_sessions.values():
        for c in convs:
            for k, t in enumerate(c.turns):
                blocks = turn_prompt_blocks(c, k)
                assert sum(n for _, n in blocks) == t.input_tokens
                if k + 1 < len(c.turns):
                    assert lead(blocks, turn_prompt_blocks(c, k + 1)) == lead(t.hash_ids, c.turns[k + 1].hash_ids)
    # text and ids, token by token, for one whole session
    tok = load_tokenizer("cl100k_base")
    (c,) = kv_sessions[SHARED / "kv-cache-tester" / "trace_0022.json"]
    bs = c.block_size
    previous = None
    for k, t in enumerate(c.turns):
        ids = prompt_token_ids(c, k, tok)
        assert len(ids) == t.input_tokens
        assert len(tok.encode(prompt_text(c, k, tok))) == t.input_tokens
        if previous is not None:
            shared = lead(c.turns[k - 1].hash_ids, t.hash_ids)
            assert previous[:shared * bs] == ids[:shared * bs]
        previous = ids
