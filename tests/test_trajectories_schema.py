"""Schema v1: loading, validation errors (file, line, field, what to do), writing, round trips."""

import json

import pytest

import agentperf_native as ap
from agentperf_native.trajectories import (SCHEMA_ID, TrajectoryError, conversation_from_dict, conversation_to_dict,
                                           load, load_native, turn_metadata, write_jsonl)


def write_lines(tmp_path, *objs, name="t.jsonl"):
    p = tmp_path / name
    p.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return p


CHAT = {"schema": SCHEMA_ID, "id": "c1", "system": "sys",
        "tools": [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}],
        "turns": [{"messages": [{"role": "user", "content": "go"}], "output_tokens": 5, "tool_delay_s": 1.5,
                   "prompt_tokens": 100, "cached_tokens": 64, "metadata": {"finish_reason": "tool_calls"}},
                  {"messages": [{"role": "assistant", "content": "", "tool_calls": [
                      {"id": "a", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
                      {"role": "tool", "tool_call_id": "a", "content": "ok"}], "output_tokens": 7}],
        "metadata": {"source": "test", "model": "m", "language": "python"}}
TOKENS = {"id": "k1", "block_size": 64, "turns": [{"hash_ids": [1, 2, 3], "input_tokens": 200, "output_tokens": 9},
                                                  {"hash_ids": [1, 2, 3, 4], "input_tokens": 256, "output_tokens": 0}]}


def test_chat_and_token_only_lines_load_into_conversations(tmp_path):
    convs = load_native(write_lines(tmp_path, CHAT, TOKENS))
    c, k = convs
    assert isinstance(c, ap.Conversation) and isinstance(c.turns[0], ap.Turn)
    assert (c.id, c.system, c.tools[0]["function"]["name"]) == ("c1", "sys", "bash")
    t0 = c.turns[0]
    assert (t0.output_tokens, t0.tool_delay_s, t0.prompt_tokens, t0.cached_tokens) == (5, 1.5, 100, 64)
    assert c.turns[1].messages[0]["tool_calls"][0]["id"] == "a"
    assert turn_metadata(c, 0) == {"finish_reason": "tool_calls"} and turn_metadata(c, 1) == {}
    assert c.metadata["model"] == "m"
    assert (k.block_size, k.turns[0].hash_ids, k.turns[0].input_tokens, k.turns[1].output_tokens) == (64, [1, 2, 3], 200, 0)
    assert k.turns[0].messages is None


def test_round_trip_is_exact(tmp_path):
    convs = load_native(write_lines(tmp_path, CHAT, TOKENS))
    out = tmp_path / "out.jsonl"
    assert write_jsonl(convs, out) == 2
    again = [json.loads(line) for line in out.read_text().splitlines()]
    expected_chat = dict(CHAT)
    expected_chat["turns"] = [dict(CHAT["turns"][0]), dict(CHAT["turns"][1], tool_delay_s=0.0)]
    assert again[0] == expected_chat
    assert again[1]["schema"] == SCHEMA_ID and again[1]["turns"][0]["hash_ids"] == [1, 2, 3]
    assert [conversation_to_dict(c) for c in load_native(out)] == again


def test_readme_conversation_format_loads_without_version_marker(tmp_path):
    legacy = {"id": "demo-0001", "system": "You are ...",
              "turns": [{"messages": [{"role": "user", "content": "Fix the bug"}], "output_tokens": 150, "tool_delay_s": 1.2},
                        {"messages": [{"role": "assistant", "content": "..."}, {"role": "user", "content": "<output>"}],
                         "output_tokens": 80, "tool_delay_s": 0.4}], "metadata": {"source": "demo"}}
    (c,) = load(write_lines(tmp_path, legacy))
    assert len(c.turns) == 2 and c.turns[1].tool_delay_s == 0.4
    # and what this project writes stays readable by workload.load_conversations when it has no tools
    out = tmp_path / "w.jsonl"
    write_jsonl([c], out)
    assert ap.load_conversations(out)[0].turns[0].output_tokens == 150


def test_missing_ids_get_file_and_line(tmp_path):
    (c,) = load_native(write_lines(tmp_path, {"turns": [{"messages": [{"role": "user", "content": "x"}]}]}, name="abc.jsonl"))
    assert c.id == "abc-1"


@pytest.mark.parametrize("line, field, todo", [
    ("{not json", "not valid JSON", "one trajectory object"),
    ({"schema": "agentperf.trajectory.v9", "turns": []}, "'schema'", "convert the file"),
    ({"turns": []}, "'turns'", "add at least one turn"),
    ({"turns": [{"messages": []}]}, "'messages'", "list the messages"),
    ({"turns": [{"messages": [{"content": "x"}]}]}, "messages[0]", "string 'role'"),
    ({"turns": [{"messages": [{"role": "user"}], "output_tokens": -1}]}, "'output_tokens'", "fix it"),
    ({"turns": [{"messages": [{"role": "user"}], "tool_delay_s": -2}]}, "'tool_delay_s'", "fix it"),
    ({"turns": [{"messages": [{"role": "user"}], "tool_delay_s": True}]}, "'tool_delay_s'", "fix it"),
    ({"turns": [{"messages": [{"role": "user"}], "prompt_tokens": 5, "cached_tokens": 6}]}, "'cached_tokens'", "fix one"),
    ({"turns": [{"messages": [{"role": "user"}], "output_token": 5}]}, "unknown field 'output_token'", "metadata"),
    ({"turns": [{"messages": [{"role": "user"}]}], "extra": 1}, "unknown field 'extra'", "metadata"),
    ({"turns": [{"messages": [{"role": "user"}]}], "system": 3}, "'system'", "fix it"),
    ({"turns": [{"messages": [{"role": "user"}]}], "tools": [{"name": "x"}]}, "tools[0]", "fix the definition"),
    ({"turns": [{"hash_ids": [1, 2]}]}, "'block_size'", "add \"block_size\""),
    ({"block_size": 64, "turns": [{"hash_ids": [1, 2], "input_tokens": 500}]}, "do not cover", "fix 'input_tokens'"),
    ({"block_size": 64, "turns": [{"hash_ids": [1, -2]}]}, "'hash_ids'", "list the block hashes"),
    ({"block_size": 64, "turns": [{"hash_ids": [1], "messages": [{"role": "user"}]}]}, "exactly one of", "keep one"),
    ({"block_size": 64, "turns": [{"hash_ids": [1]}, {"messages": [{"role": "user"}]}]}, "mix chat", "split"),
])
def test_errors_name_file_line_field_and_what_to_do(tmp_path, line, field, todo):
    good = {"id": "ok", "turns": [{"messages": [{"role": "user", "content": "x"}]}]}
    p = write_lines(tmp_path, good, line, name="bad.jsonl")
    with pytest.raises(TrajectoryError) as e:
        load_native(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:2") and field in msg and todo in msg, msg


def test_duplicate_ids_and_empty_files_are_refused(tmp_path):
    one = {"id": "same", "turns": [{"messages": [{"role": "user", "content": "x"}]}]}
    with pytest.raises(TrajectoryError, match=r":2: field 'id' repeats 'same' from line 1"):
        load_native(write_lines(tmp_path, one, one))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(TrajectoryError, match="holds no trajectories"):
        load_native(empty)
    with pytest.raises(TrajectoryError, match="no such file"):
        load_native(tmp_path / "missing.jsonl")


def test_trajectory_error_is_a_workload_error():
    with pytest.raises(ap.WorkloadError):
        conversation_from_dict({"turns": 1}, "x")


def test_turn_metadata_must_align_when_writing():
    c = ap.Conversation(turns=[ap.Turn(messages=[{"role": "user", "content": "x"}])], metadata={"turn_metadata": [{}, {}]})
    with pytest.raises(TrajectoryError, match="one entry"):
        conversation_to_dict(c)


def test_written_files_are_replaced_atomically_with_a_normal_mode(tmp_path):
    out = tmp_path / "sub" / "o.jsonl"
    c = ap.Conversation(turns=[ap.Turn(messages=[{"role": "user", "content": "x"}], output_tokens=3)], id="a")
    write_jsonl([c], out)
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)
    assert [p.name for p in out.parent.iterdir()] == ["o.jsonl"]
