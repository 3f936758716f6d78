"""Importers, on small fixtures written for these tests in each source's format (tests/data/trajectories)."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agentperf_native.cli.trajectories import trajectories
from agentperf_native.trajectories import (ImportOptions, SourceError, convert_files, detect_format, import_file,
                                           load, load_native, turn_metadata)
from agentperf_native.trajectories.importers.kv_cache_tester import hash_namespace

DATA = Path(__file__).parent / "data" / "trajectories"
NO_ESTIMATE = ImportOptions(estimate_output_tokens=False)


def one(name, options=NO_ESTIMATE):
    result = import_file(DATA / name, options=options)
    assert len(result.conversations) == 1, result.notes
    return result.conversations[0]


@pytest.mark.parametrize("name, fmt", [
    ("mini_swe_agent.traj.json", "mini-swe-agent"), ("mini_swe_agent_failed.traj.json", "mini-swe-agent"),
    ("swe_agent.traj", "swe-agent"), ("claude_code_session.jsonl", "claude-code"),
    ("openai_messages.jsonl", "openai-messages"), ("kv_cache_tester.json", "kv-cache-tester"),
    ("mooncake.jsonl", "mooncake")])
def test_formats_are_detected(name, fmt):
    assert detect_format(DATA / name) == fmt


def test_undetectable_files_say_to_pass_format(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"hello": 1}')
    with pytest.raises(SourceError, match="cannot tell the format") as e:
        detect_format(p)
    # each command says how to name the format (run has no --format): the CLI's own words follow
    assert e.value.wrong_format
    r = CliRunner().invoke(trajectories, ["inspect", str(p)])
    assert r.exit_code == 4 and "cannot tell the format from its first JSON object; pass --format" in r.output


def test_mini_swe_agent():
    c = one("mini_swe_agent.traj.json")
    assert c.id == "toy__calc-1" and c.system == "You are a toy agent."
    assert [t.output_tokens for t in c.turns] == [30, 45, 12]
    assert [t.prompt_tokens for t in c.turns] == [120, 180, 260]
    assert [t.cached_tokens for t in c.turns] == [0, 128, 256]
    assert [t.tool_delay_s for t in c.turns] == [0.5, 2.0, 0.0]  # last action timestamp - response timestamp
    assert c.turns[0].messages == [{"role": "user", "content": "Fix the toy bug in calc.py."}]
    reply, *results = c.turns[2].messages
    assert reply["role"] == "assistant" and [tc["id"] for tc in reply["tool_calls"]] == ["c2", "c3"]
    assert "extra" not in reply and "reasoning_content" not in reply and "index" not in reply["tool_calls"][0]
    assert [(m["role"], m["tool_call_id"]) for m in results] == [("tool", "c2"), ("tool", "c3")]
    assert turn_metadata(c, 1)["reasoning_tokens"] == 20 and turn_metadata(c, 1)["prompt_cache_miss_tokens"] == 52
    md = c.metadata
    assert (md["source"], md["model"], md["language"], md["api_calls"], md["unanswered_calls"]) == \
        ("mini-swe-agent", "toy/toy-model", "python", 4, 1)
    assert md["trailing_messages"] == 1  # the last tool result: no call followed it


def test_mini_swe_agent_without_an_answered_call_gives_a_note():
    r = import_file(DATA / "mini_swe_agent_failed.traj.json")
    assert r.conversations == [] and "no answered model call" in r.notes[0] and "Timeout" in r.notes[0]


def test_swe_agent():
    c = one("swe_agent.traj")
    assert len(c.turns) == 3  # two replies in history + the final reply only in 'trajectory'
    assert c.system == "SETTING: toy"
    assert [m["content"] for m in c.turns[0].messages] == ["Demonstration: ...", "ISSUE: add subtracts"]
    assert c.turns[1].messages[0]["tool_calls"][0]["function"]["name"] == "bash"
    assert c.turns[1].messages[1] == {"role": "tool", "content": "calc.py", "tool_call_id": "t1"}
    assert c.turns[2].messages[1]["tool_call_id"] == "t2"
    assert all("thought" not in m and "agent" not in m for t in c.turns for m in t.messages)
    assert [t.tool_delay_s for t in c.turns] == [0.25, 1.5, 0.0]
    assert [t.output_tokens for t in c.turns] == [None, None, None]
    md = c.metadata
    assert (md["model"], md["api_calls"], md["tokens_sent"], md["tokens_received"], md["instance_id"]) == \
        ("toy-4o", 3, 900, 40, "toy__calc-1")


def test_swe_agent_estimates_output_tokens_with_the_tokenizer():
    pytest.importorskip("tiktoken", reason="estimates need tiktoken (and bpe-openai)")
    c = one("swe_agent.traj", ImportOptions())
    assert [t.output_tokens for t in c.turns] == [3, 3, 6]  # "List files." / "Open it." / "All good, submitting now."
    assert turn_metadata(c, 0)["output_tokens_estimated"] == "cl100k_base"


def test_claude_code():
    r = import_file(DATA / "claude_code_session.jsonl", options=NO_ESTIMATE)
    main, side = r.conversations
    assert main.id == "sess-1" and len(main.turns) == 3
    assert [t.output_tokens for t in main.turns] == [77, 21, 9]  # the largest usage of the split reply
    assert [t.prompt_tokens for t in main.turns] == [510, 555, 587]
    assert [t.cached_tokens for t in main.turns] == [0, 510, 550]
    reply = main.turns[1].messages[0]
    assert reply["content"] == "Reading it." and reply["tool_calls"][0]["function"] == \
        {"name": "Read", "arguments": '{"file_path": "calc.py"}'}
    assert main.turns[1].messages[1] == {"role": "tool", "tool_call_id": "tu1", "content": "def add(a,b): return a-b"}
    assert main.turns[2].messages == [{"role": "assistant", "content": "Found it: it subtracts."},
                                      {"role": "user", "content": "Great, fix it please."}]
    assert main.turns[0].tool_delay_s == pytest.approx(0.5) and main.turns[1].tool_delay_s == pytest.approx(30.0)
    assert [turn_metadata(main, k).get("next_input") for k in range(3)] == ["tool_result", "user", None]
    assert turn_metadata(main, 0)["thinking_blocks"] == 1
    assert main.metadata["trailing_messages"] == 1  # the <synthetic> message after the last call
    assert side.id == "sess-1:sidechain" and side.metadata["parent_id"] == "sess-1" and len(side.turns) == 1
    assert any("not valid JSON" in n for n in r.notes) and any("repeated uuid" in n for n in r.notes)


def test_openai_messages():
    r = import_file(DATA / "openai_messages.jsonl", options=NO_ESTIMATE)
    a, b = r.conversations
    assert "no assistant message" in r.notes[0]
    assert (a.id, a.system, a.tools[0]["function"]["name"]) == ("oa-1", "You are helpful.", "bash")
    assert [t.output_tokens for t in a.turns] == [17, 6]
    assert (a.turns[0].prompt_tokens, a.turns[0].cached_tokens, a.turns[1].prompt_tokens) == (60, 32, 90)
    assert [t.tool_delay_s for t in a.turns] == [1.5, 0.0]
    assert "usage" not in a.turns[1].messages[0] and "simulated_tool_delay_ms_after" not in a.turns[1].messages[0]
    assert a.metadata["trailing_messages"] == 1
    assert b.id == "openai_messages-2" and [t.tool_delay_s for t in b.turns] == [0.25, 0.0]
    assert [m["content"] for m in b.turns[1].messages] == ["hi", "again"]


def test_kv_cache_tester():
    parent, sub = import_file(DATA / "kv_cache_tester.json").conversations
    ns = hash_namespace("toytrace")
    assert parent.id == "toytrace" and parent.block_size == 64
    assert [t.input_tokens for t in parent.turns] == [200, 330, 400, 140]
    assert [t.output_tokens for t in parent.turns] == [30, 40, 0, 25]
    assert [[h & 0xFFFFFFFF for h in t.hash_ids] for t in parent.turns] == [[1, 2, 3], [1, 2, 3, 4, 5],
                                                                            [1, 2, 3, 4, 5, 6], [1, 9]]
    assert all(h >> 32 == ns for t in parent.turns for h in t.hash_ids)
    assert [t.tool_delay_s for t in parent.turns] == [3.0, 7.5, 5.0, 0.0]
    assert [turn_metadata(parent, k).get("delay_source") for k in range(4)] == ["think_time", "t-api_time", "think_time", None]
    assert turn_metadata(parent, 1)["api_time"] == 1.5 and turn_metadata(parent, 0)["stop"] == "tool_use"
    assert parent.metadata["hash_namespace"] == ns and parent.metadata["tool_tokens"] == 100
    assert sub.id == "toytrace:agent_001" and sub.metadata["parent_id"] == "toytrace"
    assert (sub.metadata["spawned_after_turn"], sub.metadata["start_offset_s"], sub.metadata["subagent_type"]) == (1, 8.0, "Explore")
    assert [t.input_tokens for t in sub.turns] == [130, 192] and sub.turns[0].tool_delay_s == 1.0
    assert sub.metadata["model"] == "claude-toy-small"


def test_kv_cache_tester_errors_name_the_request(tmp_path):
    bad = json.loads((DATA / "kv_cache_tester.json").read_text())
    bad["requests"][1]["hash_ids"] = [1, 2]
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(SourceError, match=r"bad.json: requests\[1\]: 2 hash_ids do not cover in=330"):
        import_file(p)


def test_mooncake_sessions_by_prefix_and_one_per_request():
    convs = import_file(DATA / "mooncake.jsonl").conversations
    assert [[turn_metadata(c, k)["line"] for k in range(len(c.turns))] for c in convs] == [[1, 3, 5, 6], [2], [4]]
    s = convs[0]
    assert s.block_size == 512 and [t.input_tokens for t in s.turns] == [1100, 1600, 2048, 2600]
    assert [t.tool_delay_s for t in s.turns] == [2.0, 3.0, 4.0, 0.0]
    assert s.turns[3].hash_ids == [0, 1, 3, 5, 6, 9] and s.metadata["start_s"] == 0.0
    flat = import_file(DATA / "mooncake.jsonl", options=ImportOptions(mooncake_sessions="none")).conversations
    assert len(flat) == 6 and all(len(c.turns) == 1 for c in flat)


def test_mooncake_errors_name_the_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}\n'
                 '{"timestamp": 1, "input_length": 0, "output_length": 1, "hash_ids": [1]}\n')
    with pytest.raises(SourceError, match=r"m.jsonl:2: field 'input_length' must be a positive integer"):
        import_file(p)


def test_format_can_be_forced_and_a_wrong_one_is_explained(tmp_path):
    assert len(import_file(DATA / "mooncake.jsonl", "mooncake").conversations) == 3
    with pytest.raises(SourceError, match="not a kv-cache-tester trace"):
        import_file(DATA / "mini_swe_agent.traj.json", "kv-cache-tester")


def test_convert_everything_then_load_back(tmp_path):
    out = tmp_path / "all.jsonl"
    results = convert_files([DATA], out, options=NO_ESTIMATE)
    assert {name for _, name, _ in results} == {"mini-swe-agent", "swe-agent", "claude-code", "openai-messages",
                                                "kv-cache-tester", "mooncake"}
    back = load_native(out)
    assert len(back) == sum(len(r.conversations) for _, _, r in results)
    assert len({c.id for c in back}) == len(back)
    assert load(out)[0].metadata == back[0].metadata


def test_cli_convert_and_inspect(tmp_path):
    out = tmp_path / "o.jsonl"
    r = CliRunner().invoke(trajectories, ["convert", str(DATA / "kv_cache_tester.json"),
                                          str(DATA / "openai_messages.jsonl"), "-o", str(out), "--no-estimate-output-tokens"])
    assert r.exit_code == 0, r.output
    assert "kv-cache-tester" in r.output and "note:" in r.output and "wrote" in r.output
    r = CliRunner().invoke(trajectories, ["inspect", str(DATA / "mooncake.jsonl"), "--json"])
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output)
    assert (stats["sessions"], stats["turns"], stats["token_only_sessions"]) == (3, 6, 3)
    r = CliRunner().invoke(trajectories, ["convert", str(tmp_path / "nope.json"), "-o", str(out)])
    assert r.exit_code != 0 and "no such file" in r.output
